"""The check inputs read from PostgreSQL: expected figures from raw by SQL, and rules on a range."""

from datetime import date, datetime, timezone

import polars as pl
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from check_data import D1_FIGURES, D2_FIGURES, U1, U2, figures, messages
from usage_etl import cli, pipeline, sample
from usage_etl.checks import runner as check_runner
from usage_etl.settings import ConfigError, Thresholds
from usage_etl.defs import partitions
from usage_etl.checks.rules import EXPECTED_SCHEMA
from usage_etl.pricing.book import load_price_book
from usage_etl.sources.postgres import read_arrow

D1, D2 = "2026-03-02", "2026-03-03"  # a Monday and a Tuesday
NOW = datetime(2026, 3, 4, 8, tzinfo=timezone.utc)  # latest complete day: D2


@pytest.fixture
def cfg(settings):
    return settings.replace(start_date=date(2026, 3, 2))


def expected(cfg, db_url) -> pl.DataFrame:
    start, end = datetime(2026, 3, 2, tzinfo=timezone.utc), datetime(2026, 3, 4, tzinfo=timezone.utc)
    frame = read_arrow(db_url, check_runner.expected_query(cfg, start, end, D1, "2026-03-04"), {"day": pl.String(), **EXPECTED_SCHEMA})
    return frame.sort("day", "user_id")


def materialize_days(engine, db_url, cfg, keys=(D1, D2)):
    pdef = partitions.build(cfg)["daily"]
    for key in keys:
        pipeline.run_daily(engine, db_url, cfg, load_price_book(), partitions.window(pdef, "daily", key))


def with_day(day: str, rows) -> pl.DataFrame:
    return figures(rows).select(pl.lit(day).alias("day"), pl.all())


def test_expected_query_applies_provider_semantics_and_drops_quarantined_rows(engine, db_url, cfg):
    sample.write(engine, cfg, messages(date(2026, 3, 2), bad=True))
    # Before the pipeline ran, nothing is quarantined: the row with a non-integer token count is
    # left out by the query itself (instead of failing it), the negative one still counts.
    before = expected(cfg, db_url)
    assert before.filter(pl.col("day") == D1, pl.col("user_id") == U2).select("message_count", "input_tokens", "output_tokens").row(0) == (1, 10, 5)
    assert before.filter(pl.col("day") == D2, pl.col("user_id") == U1).select("message_count", "input_tokens").row(0) == (2, 195)

    materialize_days(engine, db_url, cfg)
    assert expected(cfg, db_url).equals(pl.concat([with_day(D1, D1_FIGURES), with_day(D2, D2_FIGURES)]))


def test_expected_query_groups_by_business_day(engine, db_url, cfg):
    # m6 is at 23:30 UTC on D2 = 18:30 in New York (still D2); m5 at 09:00 UTC = 04:00 local D2;
    # D1's messages (10:00-11:00 UTC) stay on D1.
    sample.write(engine, cfg, messages(date(2026, 3, 2)))
    ny = cfg.replace(timezone="America/New_York")
    moved = expected(ny, db_url)
    assert moved.equals(pl.concat([with_day(D1, D1_FIGURES), with_day(D2, D2_FIGURES)]))
    tokyo = cfg.replace(timezone="Asia/Tokyo")  # UTC+9: m6 (23:30 UTC on D2) falls on 2026-03-04
    start, end = datetime(2026, 3, 1, 15, tzinfo=timezone.utc), datetime(2026, 3, 4, 15, tzinfo=timezone.utc)
    days = read_arrow(db_url, check_runner.expected_query(tokyo, start, end, "2026-03-02", "2026-03-05"), {"day": pl.String(), **EXPECTED_SCHEMA})
    assert days.filter(pl.col("user_id") == U2).sort("day")["day"].to_list() == ["2026-03-02", "2026-03-04"]


def test_evaluate_clean_days_pass_every_rule(engine, db_url, cfg):
    sample.write(engine, cfg, messages(date(2026, 3, 2)))
    materialize_days(engine, db_url, cfg)
    pdefs = partitions.build(cfg)
    pipeline.run_rollup(engine, db_url, cfg, partitions.window(pdefs["weekly"], "weekly", D1))
    daily = check_runner.evaluate(engine, cfg, "daily", [D1, D2], materialized_daily={D1, D2}, now=NOW)
    weekly = check_runner.evaluate(engine, cfg, "weekly", [D1], now=NOW)
    for key, outcomes in [*daily.items(), *weekly.items()]:
        assert [o.check for o in outcomes if not o.passed] == [], (key, [o.summary for o in outcomes])
    recon = daily[D1][0]
    assert recon.check == "reconciles_with_raw"
    assert recon.metadata["expected_totals"] == {"message_count": 3, "input_tokens": 260, "cache_creation_input_tokens": 10,
                                                 "cache_read_input_tokens": 70, "output_tokens": 135, "reasoning_tokens": 30,
                                                 "total_tokens": 475}
    rollup = weekly[D1][0]
    assert rollup.check == "rollup_matches_daily" and rollup.metadata["daily_rows"] == 4 and rollup.metadata["users"] == 2


def test_evaluate_flags_corrupted_summary_row_and_bad_rows(engine, db_url, cfg):
    sample.write(engine, cfg, messages(date(2026, 3, 2), bad=True))
    materialize_days(engine, db_url, cfg)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE user_token_usage SET output_tokens = output_tokens + 7 "
                             "WHERE period_type = 'daily' AND user_id = :u AND period_start = '2026-03-02'"), {"u": U1})
    out = check_runner.evaluate(engine, cfg, "daily", [D1, D2], materialized_daily={D1}, now=NOW)
    recon = {k: v[0] for k, v in out.items()}
    assert not recon[D1].passed and recon[D2].passed
    assert recon[D1].metadata["first_differences"] == [{"user_id": U1, "measure": "output_tokens", "expected": 130, "actual": 137}]
    by_check = {o.check: o for o in out[D1]}
    assert by_check["keys_and_values"].metadata["total_mismatch"] == 1  # total no longer input+cache+output
    assert by_check["completeness"].metadata["gaps"] == ["2026-03-03"]
    # D1: 1 of 4 raw rows quarantined (non-integer tokens): 25% > 1%.
    assert by_check["quarantine_rate"].metadata["rejected_by_reason"] == {"non_integer_tokens": 1}
    assert by_check["quarantine_rate"].metadata["raw_rows"] == 4 and not by_check["quarantine_rate"].passed
    failed = check_runner.failed_errors({"daily": out})
    assert [(k, o.check) for _, k, o in failed] == [(D1, "reconciles_with_raw"), (D1, "keys_and_values")]
    table = check_runner.render({"daily": out})
    assert "ERROR daily 2026-03-02 reconciles_with_raw: 1 user(s) differ from raw; first: " + U1 in table


def test_duplicate_message_ids_in_a_source_without_key(engine, db_url, cfg):
    src = cfg.replace(source_table="messages_without_pk")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE messages_without_pk (id uuid, user_id uuid, conversation_id uuid, agent_id uuid, "
                             "model text, created_at timestamptz, metadata jsonb)"))
    frame = messages(date(2026, 3, 2))
    sample.write(engine, src, pl.concat([frame, frame.head(1), frame.head(1)]))  # m1 three times on D1
    out = check_runner.evaluate(engine, src, "daily", [D1, D2], now=NOW)
    dups = {k: next(o for o in v if o.check == "no_duplicate_raw_rows") for k, v in out.items()}
    assert not dups[D1].passed and dups[D2].passed
    assert dups[D1].metadata["duplicate_ids"] == 1 and dups[D1].metadata["extra_rows"] == 2

    # The audit inside the write counts the ids of the frame it read instead: the same outcome.
    window = partitions.window(partitions.build(src)["daily"], "daily", D1)
    result = pipeline.run_daily(engine, db_url, src, load_price_book(), window, audit=pipeline.Audit(raise_on_error=False))
    audited = next(o for o in result.audit if o.check == "no_duplicate_raw_rows")
    assert audited == dups[D1] and audited.metadata["examples"] == dups[D1].metadata["examples"]
    assert audited.metadata["examples"][0]["copies"] == 3


def test_thresholds_from_env():
    t = Thresholds.from_env({"USAGE_ETL_MAX_UNPRICED_SHARE": "0.02"})
    assert t.max_unpriced_share == 0.02 and t.max_quarantine_share == 0.01
    with pytest.raises(ConfigError, match="USAGE_ETL_MAX_QUARANTINE_SHARE"):
        Thresholds.from_env({"USAGE_ETL_MAX_QUARANTINE_SHARE": "1%"})


def test_cli_check_exit_status(engine, db_url, cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    sample.write(engine, cfg, messages(date(2026, 3, 2)))
    materialize_days(engine, db_url, cfg)
    runner = CliRunner()
    ok = runner.invoke(cli.main, ["check", "--start", D1, "--end", D2, "--granularity", "daily"])
    assert ok.exit_code == 0, ok.output
    assert "no ERROR check failed" in ok.output
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE user_token_usage SET input_tokens = 1 WHERE user_id = :u AND period_start = '2026-03-03'"), {"u": U2})
    bad = runner.invoke(cli.main, ["check", "--start", D1, "--end", D2, "--granularity", "daily"])
    assert bad.exit_code == 1
    assert f"reconciles_with_raw: 1 user(s) differ from raw; first: {U2} input_tokens expected 7, actual 1" in bad.output
