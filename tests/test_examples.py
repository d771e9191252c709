"""Each example configuration, end to end: the seed's table from its DDL, rows in it, the daily,
weekly and monthly assets materialized through Dagster, exact hand-computed totals."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import sqlalchemy as sa
from usage_helpers import SEED_SQL, example, materialize_all, run_sql_file, settings_for, summary

U1 = "aaaaaaaa-0000-4000-8000-000000000001"
U2 = "aaaaaaaa-0000-4000-8000-000000000002"
MAR30, MAR31, APR1 = date(2026, 3, 30), date(2026, 3, 31), date(2026, 4, 1)
MAR, APR = date(2026, 3, 1), date(2026, 4, 1)
# Monday 2026-03-30 starts an ISO week that spans the end of March: the week is not a sum of months.
DAYS, WEEKS, MONTHS = ("2026-03-30", "2026-04-01"), ("2026-03-30", "2026-03-30"), ("2026-03-01", "2026-04-01")


def insert(engine: sa.Engine, table: str, rows: list[dict]) -> None:
    cols = list(rows[0])
    with engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)})"), rows)


def test_002_ai_usage_log(engine, db_url) -> None:
    run_sql_file(engine, SEED_SQL / "002_ai_usage_log.sql")
    row = dict(user_email=None, customer_name=None, model_used="claude-sonnet-4-20250514", latency_ms=900)
    insert(engine, "ai_usage_log", [
        {**row, "user_id": U1, "created_at": "2026-03-30T10:00Z", "session_id": "s1", "request_type": "report", "customer_id": 7, "input_tokens": 1000, "output_tokens": 200, "status": "success"},
        {**row, "user_id": U1, "created_at": "2026-03-30T23:59Z", "session_id": "s1", "request_type": "report", "customer_id": 7, "input_tokens": 500, "output_tokens": 100, "status": "success"},
        {**row, "user_id": U1, "created_at": "2026-03-31T00:10Z", "session_id": "s1", "request_type": "insight", "customer_id": 7, "input_tokens": 300, "output_tokens": 50, "status": "error"},
        {**row, "user_id": U1, "created_at": "2026-04-01T09:00Z", "session_id": "s2", "request_type": "report", "customer_id": 8, "input_tokens": 2000, "output_tokens": 400, "status": "success"},
        {**row, "user_id": U2, "created_at": "2026-03-31T12:00Z", "session_id": "s3", "request_type": "widget", "customer_id": None, "input_tokens": 10, "output_tokens": 5, "status": "success"},
        {**row, "user_id": U2, "created_at": "2026-03-31T12:05Z", "session_id": "s3", "request_type": "widget", "customer_id": None, "input_tokens": 20, "output_tokens": 15, "status": "success"},
    ])
    # The seed's own generated cost column, Sonnet 4 at $3 / $15 per million tokens, per user.
    with engine.connect() as conn:
        seed_cost = dict(conn.execute(sa.text("SELECT user_id::text, sum(total_cost_usd) FROM ai_usage_log GROUP BY 1")).all())

    materialize_all(settings_for(db_url, example("002_ai_usage_log.toml")), DAYS, WEEKS, MONTHS)

    # (messages, errors, conversations, input, cache_creation, cache_read, output, reasoning, total, cost_usd, paid)
    # cost = input * 3e-6 + output * 15e-6 USD.
    assert summary(engine, "daily") == {
        (U1, MAR30): (2, 0, 1, 1500, 0, 0, 300, 0, 1800, D("0.009000"), None),
        (U1, MAR31): (1, 1, 1, 300, 0, 0, 50, 0, 350, D("0.001650"), None),
        (U1, APR1): (1, 0, 1, 2000, 0, 0, 400, 0, 2400, D("0.012000"), None),
        (U2, MAR31): (2, 0, 1, 30, 0, 0, 20, 0, 50, D("0.000390"), None),
    }
    # Session s1 spans two days: one conversation in the week, not two.
    assert summary(engine, "weekly") == {
        (U1, MAR30): (4, 1, 2, 3800, 0, 0, 750, 0, 4550, D("0.022650"), None),
        (U2, MAR30): (2, 0, 1, 30, 0, 0, 20, 0, 50, D("0.000390"), None),
    }
    assert {u: r[9] for (u, _), r in summary(engine, "weekly").items()} == seed_cost
    assert summary(engine, "monthly") == {
        (U1, MAR): (3, 1, 1, 1800, 0, 0, 350, 0, 2150, D("0.010650"), None),
        (U1, APR): (1, 0, 1, 2000, 0, 0, 400, 0, 2400, D("0.012000"), None),
        (U2, MAR): (2, 0, 1, 30, 0, 0, 20, 0, 50, D("0.000390"), None),
    }

    by_dim = summary(engine, "weekly", table="user_token_usage_by_dimension", keys=("dimension", "value"))
    assert by_dim == {
        # customer 7: three requests of session s1 over two days = one conversation.
        (U1, MAR30, "customer_id", "7"): (3, 1, 1, 1800, 0, 0, 350, 0, 2150, D("0.010650"), None),
        (U1, MAR30, "customer_id", "8"): (1, 0, 1, 2000, 0, 0, 400, 0, 2400, D("0.012000"), None),
        (U1, MAR30, "request_type", "insight"): (1, 1, 1, 300, 0, 0, 50, 0, 350, D("0.001650"), None),
        (U1, MAR30, "request_type", "report"): (3, 0, 2, 3500, 0, 0, 700, 0, 4200, D("0.021000"), None),
        (U2, MAR30, "customer_id", "(none)"): (2, 0, 1, 30, 0, 0, 20, 0, 50, D("0.000390"), None),
        (U2, MAR30, "request_type", "widget"): (2, 0, 1, 30, 0, 0, 20, 0, 50, D("0.000390"), None),
    }
    daily_dim = summary(engine, "daily", table="user_token_usage_by_dimension", keys=("dimension", "value"))
    assert daily_dim[(U1, MAR30, "customer_id", "7")] == (2, 0, 1, 1500, 0, 0, 300, 0, 1800, D("0.009000"), None)
    assert daily_dim[(U1, MAR31, "request_type", "insight")] == (1, 1, 1, 300, 0, 0, 50, 0, 350, D("0.001650"), None)
    assert len(daily_dim) == 8  # one value per (user, day, dimension): U1 3 days x 2, U2 1 day x 2
    monthly_dim = summary(engine, "monthly", table="user_token_usage_by_dimension", keys=("dimension", "value"))
    assert monthly_dim[(U1, MAR, "customer_id", "7")] == (3, 1, 1, 1800, 0, 0, 350, 0, 2150, D("0.010650"), None)
    assert monthly_dim[(U1, APR, "request_type", "report")] == (1, 0, 1, 2000, 0, 0, 400, 0, 2400, D("0.012000"), None)
