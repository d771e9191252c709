"""Sample data through Dagster's own `materialize`, checked against plain SQL over the raw table."""

from datetime import date

import dagster as dg
import pytest
import sqlalchemy as sa

from usage_etl import sample
from usage_etl.defs import automation
from usage_etl.defs import runs
from usage_etl.defs.assets import build_assets
from usage_etl.defs.resources import PostgresResource

# Plain SQL over chat_messages minus quarantined rows, with the provider semantics of docs/architecture.md ("Canonical frame")
# written out independently of the pipeline. Periods in UTC (the test's timezone).
EXPECTED = """
WITH m AS (
    SELECT c.user_id::text AS user_id, c.conversation_id, c.created_at, u,
           (u ? 'prompt_tokens') AS chat,
           coalesce((u -> 'prompt_tokens_details' ->> 'cached_tokens')::bigint, 0) AS cached
    FROM chat_messages c, LATERAL (SELECT c.metadata -> 'usage' AS u) x
    WHERE c.id::text NOT IN (SELECT message_id FROM usage_quarantine WHERE message_id IS NOT NULL)
), t AS (
    SELECT user_id, conversation_id, created_at,
           CASE WHEN chat THEN (u ->> 'prompt_tokens')::bigint - cached ELSE (u ->> 'input_tokens')::bigint END AS input,
           CASE WHEN chat THEN 0 ELSE (u ->> 'cache_creation_input_tokens')::bigint END AS cache_creation,
           CASE WHEN chat THEN cached ELSE (u ->> 'cache_read_input_tokens')::bigint END AS cache_read,
           coalesce((u ->> 'completion_tokens')::bigint, (u ->> 'output_tokens')::bigint) AS output
    FROM m
)
SELECT user_id, p.period_type, date_trunc(p.unit, created_at AT TIME ZONE 'UTC') AS period_start,
       count(*) AS message_count, count(DISTINCT conversation_id) AS conversation_count,
       sum(input) AS input_tokens, sum(cache_creation) AS cache_creation_input_tokens,
       sum(cache_read) AS cache_read_input_tokens, sum(output) AS output_tokens,
       sum(input + cache_creation + cache_read + output) AS total_tokens
FROM t, (VALUES ('daily', 'day'), ('weekly', 'week'), ('monthly', 'month')) AS p(period_type, unit)
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3
"""
ACTUAL = """
SELECT user_id, period_type, period_start AT TIME ZONE 'UTC' AS period_start, message_count, conversation_count,
       input_tokens, cache_creation_input_tokens, cache_read_input_tokens, output_tokens, total_tokens
FROM user_token_usage ORDER BY 1, 2, 3
"""
# One row per partition: the figures its materialization must carry, from the summary and quarantine.
PER_PERIOD = """
WITH s AS (
    SELECT period_type, to_char(period_start AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS key,
           count(*)::int AS users, sum(message_count)::int AS messages, sum(input_tokens)::int AS input_tokens,
           sum(cache_creation_input_tokens)::int AS cache_creation_input_tokens,
           sum(cache_read_input_tokens)::int AS cache_read_input_tokens, sum(output_tokens)::int AS output_tokens,
           sum(reasoning_tokens)::int AS reasoning_tokens, sum(total_tokens)::int AS total_tokens,
           sum(unpriced_message_count)::int AS unpriced_messages
    FROM user_token_usage GROUP BY 1, 2
), c AS (  -- exact: the sum of the grain's pico-USD, rounded once (not the sum of rounded rows)
    SELECT p.period_type, to_char(date_trunc(p.unit, day), 'YYYY-MM-DD') AS key,
           round(sum(cost_pico_usd) / 1e12, 6)::float8 AS cost_usd
    FROM user_conversation_day_usage, (VALUES ('daily', 'day'), ('weekly', 'week'), ('monthly', 'month')) AS p(period_type, unit)
    GROUP BY 1, 2
), q AS (SELECT partition_key AS key, count(*)::int AS n FROM usage_quarantine GROUP BY 1)
SELECT s.*, c.cost_usd, CASE WHEN s.period_type = 'daily' THEN coalesce(q.n, 0) ELSE 0 END AS rejected_rows
FROM s JOIN c USING (period_type, key) LEFT JOIN q ON q.key = s.key
"""
SNAPSHOT_TABLES = ["user_token_usage", "user_token_usage_by_model", "user_conversation_day_usage", "usage_quarantine"]


def _snapshot(engine):
    with engine.connect() as conn:
        return {t: conn.execute(sa.text(f"SELECT * FROM {t} ORDER BY 1, 2, 3, 4, 5")).all() for t in SNAPSHOT_TABLES}


@pytest.mark.parametrize("workers", [1, 3])
def test_sample_month_through_dagster_matches_plain_sql_and_reruns_change_nothing(engine, db_url, settings, workers):
    # 12 days ending 2026-03-04: crosses a month boundary and three ISO weeks. With 3 workers the
    # partitions of each range run three at a time, finishing out of order.
    s = settings.replace(start_date=date(2026, 2, 21))
    frame = sample.generate_frame(sample.SampleSpec(users=25, days=12, messages_per_day=150, seed=7, end=date(2026, 3, 5)))
    sample.write(engine, s, frame)
    assets = build_assets(s, auto=automation.AutomationSettings(partition_workers=workers))
    resources = {"db": PostgresResource(database_url=db_url.render_as_string(hide_password=False))}
    instance = dg.DagsterInstance.ephemeral()

    def materialize_all():
        for g, (a, b) in {"daily": ("2026-02-21", "2026-03-04"), "weekly": ("2026-02-16", "2026-03-02"), "monthly": ("2026-02-01", "2026-03-01")}.items():
            keys = runs.partition_keys(g, date.fromisoformat(a), date(2026, 3, 4), s)
            assert keys[0] == a and keys[-1] == b
            [result] = runs.materialize_range(g, keys, inst=instance, resources=resources, assets=assets)
            assert result.success

    materialize_all()
    with engine.connect() as conn:
        expected = conn.execute(sa.text(EXPECTED)).all()
        actual = conn.execute(sa.text(ACTUAL)).all()
        quarantined = conn.execute(sa.text("SELECT count(*) FROM usage_quarantine")).scalar_one()
    assert len(actual) > 100
    assert actual == expected
    # nothing lost: every raw row is aggregated or quarantined
    assert sum(r.message_count for r in actual if r.period_type == "daily") + quarantined == frame.height

    # Each partition's latest materialization carries that partition's own figures (the UI's
    # partition view and plots), equal to plain SQL over the summary table.
    with engine.connect() as conn:
        per_period = {(r.period_type, r.key): r for r in conn.execute(sa.text(PER_PERIOD)).all()}
    for g, asset_key in automation.ASSET_KEYS.items():
        for key in runs.partition_keys(g, date(2026, 2, 21), date(2026, 3, 4), s):
            [rec] = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key, asset_partitions=[key]), limit=1).records
            md = {k: v.value for k, v in rec.asset_materialization.metadata.items()}
            want = per_period[(g, key)]
            got = {c: md[c] for c in want._fields if c not in ("period_type", "key")}
            assert got == {c: getattr(want, c) for c in got}, (g, key)
            assert md["run_partitions"] == {"daily": 12, "weekly": 3, "monthly": 2}[g]
    days = {k: v for (g, k), v in per_period.items() if g == "daily"}
    assert len({v.messages for v in days.values()}) > 1  # distinct points, not one run total
    daily_md = instance.get_latest_materialization_event(automation.ASSET_KEYS["daily"]).asset_materialization.metadata
    assert sum(v.messages + v.rejected_rows for v in days.values()) + daily_md["rows_without_created_at"].value == frame.height

    before = _snapshot(engine)
    materialize_all()
    assert _snapshot(engine) == before
