"""`usage-etl report usage` and the session read function `user_session_usage` (sql/0006), over
the Claude Code fixture (tests/fixtures/claude_code, see test_claude_code.py) landed and
materialized: printed figures are exactly the stored ones, session totals exactly SQL over the grain.

Fixture sessions: alice sess-a1 (4 messages, 2026-03-30 10:00:01 .. 2026-03-31 00:30:00 UTC, main +
sidechain, Sonnet 4 and Opus 4.1) and bob sess-b1 (2 messages, 2026-03-30 23:59:59 .. 2026-03-31
08:00:00, over midnight).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from datetime import date, datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings as hsettings
from hypothesis import strategies as st
from usage_helpers import example, materialize_all, settings_for

from usage_etl import store, usage_report
from usage_etl.cli import main

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "claude_code"
DAYS, WEEKS, MONTHS = ("2026-03-30", "2026-03-31"), ("2026-03-30", "2026-03-30"), ("2026-03-01", "2026-03-01")
MEASURES = ["input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens", "reasoning_tokens",
            "total_tokens", "message_count", "conversation_count", "unpriced_message_count", "cost_usd"]


@pytest.fixture
def loaded(engine, db_url, tmp_path):
    shutil.copytree(FIXTURES, tmp_path / "projects")
    src = example("004_claude_code_jsonl.toml")
    cc = src.claude_code.model_copy(update={"root": tmp_path / "projects", "user": None, "user_from_folder": True})
    settings = settings_for(db_url, src.model_copy(update={"claude_code": cc}))
    materialize_all(settings, DAYS, WEEKS, MONTHS, also=("claude_code_messages",))
    return engine


def run(*args: str) -> str:
    out = CliRunner().invoke(main, ["report", "usage", *args])
    assert out.exit_code == 0, out.output
    return out.output


def sql_rows(engine, sql: str, **params) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(sql), params).mappings()]


def test_session_totals_equal_sql_over_the_grain(loaded):
    engine = loaded
    rows = sql_rows(engine, "SELECT * FROM user_session_usage() ORDER BY user_id, conversation_id")
    by_hand = {
        # msg_A (10, 100, 1000, 50) + msg_B (5, 3000, 0, 40) + sidechain msg_S (3, 0, 200, 30) + msg_D next day (7, 0, 500, 70)
        ("alice", "sess-a1"): (25, 3100, 2000, 1700, 190, 0, 5015, 4, 2, ["claude-sonnet-4-20250514"], ["main", "sidechain"]),
        # msg_N on Mar 30 (3, 0, 0, 9) + msg_E on Mar 31 (100, 50, 0, 200): one session over midnight
        ("bob", "sess-b1"): (103, 50, 0, 0, 209, 0, 362, 2, 2, ["claude-opus-4-1-20250805", "claude-sonnet-4-20250514"], ["main"]),
    }
    got = {(r["user_id"], r["conversation_id"]): (r["input_tokens"], r["cache_creation_input_tokens"], r["cache_creation_1h_input_tokens"],
           r["cache_read_input_tokens"], r["output_tokens"], r["reasoning_tokens"], r["total_tokens"], r["message_count"], r["days"],
           r["models"], r["agent_ids"]) for r in rows}
    assert got == by_hand
    assert [(r["first_activity"], r["last_activity"], r["first_day"], r["last_day"]) for r in rows] == [
        (datetime(2026, 3, 30, 10, 0, 2, tzinfo=timezone.utc), datetime(2026, 3, 31, 0, 30, tzinfo=timezone.utc), date(2026, 3, 30), date(2026, 3, 31)),
        (datetime(2026, 3, 30, 23, 59, 59, tzinfo=timezone.utc), datetime(2026, 3, 31, 8, tzinfo=timezone.utc), date(2026, 3, 30), date(2026, 3, 31)),
    ]
    # Cost: the grain's pico-USD summed, then rounded once half-up to 6 places.
    grain = sql_rows(engine, "SELECT user_id, conversation_id, sum(cost_pico_usd) AS pico, min(day) AS d0 FROM user_conversation_day_usage "
                             "GROUP BY 1, 2 ORDER BY 1, 2")
    for r, g in zip(rows, grain):
        assert r["cost_pico_usd"] == g["pico"] > 0
        assert r["cost_usd"] == (Decimal(g["pico"]) / 10**12).quantize(Decimal("0.000001"), ROUND_HALF_UP)
    # Any range: Mar 31 only, one user; per model.
    mar31 = sql_rows(engine, "SELECT conversation_id, model, input_tokens, output_tokens, message_count, days, cost_pico_usd "
                             "FROM user_session_usage(DATE '2026-03-31', DATE '2026-03-31', 'bob', true)")
    assert [tuple(r.values())[:-1] for r in mar31] == [("sess-b1", "claude-opus-4-1-20250805", 100, 200, 1, 1)]
    # Equal to an independent GROUP BY over the grain, for every range of the two days.
    for first, last in ((date(2026, 3, 30), date(2026, 3, 30)), (date(2026, 3, 31), date(2026, 3, 31)), (date(2026, 3, 30), date(2026, 3, 31))):
        assert sql_rows(engine, "SELECT user_id, conversation_id, model, message_count, total_tokens, cost_pico_usd "
                                "FROM user_session_usage(:a, :b, NULL, true) ORDER BY 1, 2, 3", a=first, b=last) == sql_rows(
            engine, "SELECT user_id, conversation_id, coalesce(model, '(unknown)') AS model, sum(message_count) AS message_count, "
                    "sum(input_tokens + cache_creation_input_tokens + cache_read_input_tokens + output_tokens) AS total_tokens, "
                    "sum(cost_pico_usd) AS cost_pico_usd FROM user_conversation_day_usage WHERE day BETWEEN :a AND :b "
                    "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3", a=first, b=last)


def _stored(engine, table: str, period_type: str, extra: str = "") -> list[dict]:
    cols = ", ".join(MEASURES)
    return sql_rows(engine, f"SELECT to_char(period_start AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS period_start, user_id{extra}, {cols}, "
                            f"models FROM {table} WHERE period_type = :p ORDER BY period_start, user_id{extra}", p=period_type)


@pytest.mark.parametrize("period", ["daily", "weekly", "monthly"])
def test_json_and_csv_print_exactly_the_stored_rows(loaded, period):
    engine = loaded
    stored = _stored(engine, "user_token_usage", period)
    assert len(stored) == {"daily": 4, "weekly": 2, "monthly": 2}[period]
    doc = json.loads(run("--period", period, "--json"))
    assert [{k: r[k] for k in ("period_start", "user_id", *MEASURES, "models")} for r in doc["rows"]] == [
        {**s, "cost_usd": f"{s['cost_usd']:f}"} for s in stored
    ]
    assert all(isinstance(r[m], int) for r in doc["rows"] for m in MEASURES if m != "cost_usd")
    [totals] = sql_rows(engine, "SELECT sum(total_tokens) AS t, sum(message_count) AS m, sum(cost_usd) AS c FROM user_token_usage WHERE period_type = :p", p=period)
    assert (doc["totals"]["total_tokens"], doc["totals"]["message_count"], doc["totals"]["cost_usd"]) == (totals["t"], totals["m"], f"{totals['c']:f}")
    assert doc["totals"]["total_tokens"] == 5377  # 4438 + 577 + 12 + 350, whatever the period

    lines = list(csv.DictReader(io.StringIO(run("--period", period, "--csv"))))
    assert [{k: r[k] for k in ("period_start", "user_id", *MEASURES)} for r in lines] == [
        {k: f"{s[k]:f}" if k == "cost_usd" else str(s[k]) for k in ("period_start", "user_id", *MEASURES)} for s in stored
    ]
    assert [r["models"] for r in lines] == [";".join(s["models"]) for s in stored]


def test_breakdown_by_model_user_and_range(loaded):
    engine = loaded
    doc = json.loads(run("--period", "daily", "--breakdown", "model", "--user", "bob", "--since", "20260331", "--until", "2026-03-31", "--json"))
    stored = [s for s in _stored(engine, "user_token_usage_by_model", "daily", ", model") if s["user_id"] == "bob" and s["period_start"] == "2026-03-31"]
    assert [r["period"] for r in doc["rows"]] == ["2026-03-31"]
    assert doc["rows"][0]["breakdown"] == [{"model": s["model"], **{m: f"{s[m]:f}" if m == "cost_usd" else s[m] for m in MEASURES}} for s in stored]
    assert [p["model"] for p in doc["rows"][0]["breakdown"]] == ["claude-opus-4-1-20250805"]
    # A month overlapping the range is reported whole, as stored.
    monthly = json.loads(run("--period", "monthly", "--since", "2026-03-31", "--user", "alice", "--json"))
    assert [(r["period"], r["total_tokens"], r["message_count"]) for r in monthly["rows"]] == [("2026-03", 5015, 4)]
    # Session, per model, as CSV: one line per session and model.
    lines = list(csv.DictReader(io.StringIO(run("--period", "session", "--breakdown", "model", "--csv"))))
    assert [(r["session"], r["model"], r["total_tokens"], r["days"]) for r in lines] == [
        ("sess-a1", "claude-sonnet-4-20250514", "5015", "2"),
        ("sess-b1", "claude-opus-4-1-20250805", "350", "2"),  # the session's days; the model's own figures
        ("sess-b1", "claude-sonnet-4-20250514", "12", "2"),
    ]


def test_table_has_totals_and_json_round_trips(loaded, settings):
    engine = loaded
    table = run("--period", "session")
    assert table.splitlines()[0] == "usage report, session (all days, all users, timezone UTC)"
    total = [line.split() for line in table.splitlines() if line.startswith("Total")]
    assert total == [["Total", "128", "399", "3,150", "1,700", "5,377", "6", "0.04"]]
    for period in usage_report.PERIODS:
        report = usage_report.build(engine, settings, period, breakdown="model")
        assert usage_report.from_json(usage_report.to_json(report)) == report
    out = CliRunner().invoke(main, ["report", "usage", "--json", "--csv"])
    assert out.exit_code == 2 and "give --json or --csv, not both" in out.output
    out = CliRunner().invoke(main, ["report", "usage", "--since", "2026-04-02", "--until", "2026-04-01"])
    assert out.exit_code == 2 and "until 2026-04-01 is before since 2026-04-02" in out.output
    assert run("--since", "2027-01-01").startswith("no daily usage 2027-01-01..…")


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # engine is only read
@given(st.lists(st.integers(0, 10**17), min_size=1, max_size=5))
def test_session_cost_rounding_matches_the_summary_tables(engine, picos):
    """The SQL rounding of summed pico-USD equals store._decimal's (the summary tables' cost_usd)."""
    with engine.connect() as conn:
        sql = conn.execute(sa.text("SELECT (round(sum(x), -6) * 0.000000000001)::numeric(18, 6) FROM unnest(CAST(:xs AS bigint[])) AS x"),
                           {"xs": picos}).scalar_one()
    ours = pl.DataFrame({"p": [sum(picos)]}).select(store._decimal("p", 12, "c"))["c"][0]
    assert f"{sql:f}" == ours


@hsettings(max_examples=100, deadline=None)
@given(rows=st.lists(st.fixed_dictionaries({
    "period": st.just("2026-03-30"), "period_start": st.just(date(2026, 3, 30)), "user_id": st.text(min_size=1, max_size=8),
    **{m: st.integers(0, 2**63 - 1) for m in MEASURES if m != "cost_usd"},
    "cost_usd": st.decimals(min_value=0, max_value=Decimal("999999999999.999999"), places=6),
    "models": st.lists(st.text(alphabet="abc-.0123456789", min_size=1, max_size=6), max_size=3),
}), max_size=4))
def test_json_and_csv_round_trip_any_figures(rows):
    report = usage_report.UsageReport("daily", "UTC", None, None, None, None, rows)
    assert usage_report.from_json(usage_report.to_json(report)) == report
    parsed = list(csv.DictReader(io.StringIO(usage_report.to_csv(report))))
    assert [{m: int(r[m]) if m != "cost_usd" else Decimal(r[m]) for m in MEASURES} for r in parsed] == [{m: r[m] for m in MEASURES} for r in rows]
    assert [r["user_id"] for r in parsed] == [r["user_id"] for r in rows]
