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


def _arrays(engine: sa.Engine, period_type: str) -> dict[str, tuple[list, list]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT user_id, agent_ids, models FROM user_token_usage WHERE period_type = :p"), {"p": period_type}).all()
    return {u: (a, m) for u, a, m in rows}


def test_001_usage_logs_credits_without_tokens(engine, db_url) -> None:
    run_sql_file(engine, SEED_SQL / "001_usage_logs.sql")
    rep = '{"model_used": "sdxl", "api_provider": "replicate", "prompt_length": 150}'
    insert(engine, "usage_logs", [
        {"user_id": U1, "created_at": "2026-03-30T10:00Z", "action": "image_generation", "credits_consumed": "2.5", "metadata": rep, "format": "image", "quality": "high"},
        {"user_id": U1, "created_at": "2026-03-30T11:00Z", "action": "image_generation", "credits_consumed": "2.5", "metadata": rep, "format": "image", "quality": "standard"},
        {"user_id": U1, "created_at": "2026-03-31T09:00Z", "action": "video_generation", "credits_consumed": "10.0",
         "metadata": '{"model_used": "svd", "api_provider": "replicate"}', "format": "video", "quality": "high"},
        {"user_id": U2, "created_at": "2026-03-31T15:00Z", "action": "image_generation", "credits_consumed": "0.75", "metadata": None, "format": "image", "quality": "low"},
    ])
    with engine.begin() as conn:  # the table's default: 1.0 credit
        conn.execute(sa.text("INSERT INTO usage_logs (user_id, created_at, action, metadata) VALUES "
                             "(:u, '2026-04-01T08:00Z', 'prompt_enhance', '{\"model_used\": \"qwen\", \"api_provider\": \"openrouter\"}')"), {"u": U1})

    materialize_all(settings_for(db_url, example("001_usage_logs.toml")), DAYS, WEEKS, MONTHS)

    # No tokens in this table: every token column and the cost are 0; paid_amount = credits.
    def credits(messages: int, paid: str) -> tuple:
        return (messages, 0, 0, 0, 0, 0, 0, 0, 0, D("0.000000"), D(paid))

    assert summary(engine, "daily") == {
        (U1, MAR30): credits(2, "5.000000"),
        (U1, MAR31): credits(1, "10.000000"),
        (U1, APR1): credits(1, "1.000000"),
        (U2, MAR31): credits(1, "0.750000"),
    }
    assert summary(engine, "weekly") == {(U1, MAR30): credits(4, "16.000000"), (U2, MAR30): credits(1, "0.750000")}
    assert summary(engine, "monthly") == {
        (U1, MAR): credits(3, "15.000000"),
        (U1, APR): credits(1, "1.000000"),
        (U2, MAR): credits(1, "0.750000"),
    }
    assert _arrays(engine, "weekly") == {U1: ([], ["qwen", "sdxl", "svd"]), U2: ([], [])}
    # The seed's "usage by action type" and "usage by format and quality", per user and week.
    assert summary(engine, "weekly", table="user_token_usage_by_dimension", keys=("dimension", "value")) == {
        (U1, MAR30, "action", "image_generation"): credits(2, "5.000000"),
        (U1, MAR30, "action", "video_generation"): credits(1, "10.000000"),
        (U1, MAR30, "action", "prompt_enhance"): credits(1, "1.000000"),
        (U1, MAR30, "format", "image"): credits(2, "5.000000"),
        (U1, MAR30, "format", "video"): credits(1, "10.000000"),
        (U1, MAR30, "format", "(none)"): credits(1, "1.000000"),
        (U1, MAR30, "quality", "high"): credits(2, "12.500000"),
        (U1, MAR30, "quality", "standard"): credits(1, "2.500000"),
        (U1, MAR30, "quality", "(none)"): credits(1, "1.000000"),
        (U1, MAR30, "api_provider", "replicate"): credits(3, "15.000000"),
        (U1, MAR30, "api_provider", "openrouter"): credits(1, "1.000000"),
        (U2, MAR30, "action", "image_generation"): credits(1, "0.750000"),
        (U2, MAR30, "format", "image"): credits(1, "0.750000"),
        (U2, MAR30, "quality", "low"): credits(1, "0.750000"),
        (U2, MAR30, "api_provider", "(none)"): credits(1, "0.750000"),
    }


T1 = "11111111-0000-4000-8000-000000000001"
T2 = "11111111-0000-4000-8000-000000000002"
W1, W2 = "0x1111aaaa", "0x2222bbbb"


def test_000_x402_prompt_template_usage_logs(engine, db_url) -> None:
    run_sql_file(engine, SEED_SQL / "000_x402_prompt_template_usage_logs.sql")
    row = dict(error_message=None, payment_signature="sig", execution_time_ms=1200)
    insert(engine, "x402_prompt_template_usage_logs", [
        {**row, "caller_id": W1, "created_at": "2026-03-30T10:00Z", "template_id": T1, "status": "success", "input_tokens": 1200, "output_tokens": 300, "amount_paid": "0.05", "network": "base"},
        # A failed execution: no token counts, but it was paid for.
        {**row, "caller_id": W1, "created_at": "2026-03-30T10:05Z", "template_id": T1, "status": "failed", "input_tokens": None, "output_tokens": None, "amount_paid": "0.05", "network": "base"},
        {**row, "caller_id": W1, "created_at": "2026-03-31T12:00Z", "template_id": T2, "status": "success", "input_tokens": 800, "output_tokens": 200, "amount_paid": "0.10", "network": "solana"},
        # The template owner's test run (amount 0), and a row without payment details.
        {**row, "caller_id": W2, "created_at": "2026-04-01T09:00Z", "template_id": T1, "status": "success", "input_tokens": 100, "output_tokens": 50, "amount_paid": "0", "network": "base"},
        {**row, "caller_id": W2, "created_at": "2026-04-01T09:30Z", "template_id": T1, "status": "success", "input_tokens": 100, "output_tokens": 50, "amount_paid": None, "network": None},
    ])

    materialize_all(settings_for(db_url, example("000_x402_prompt_template_usage_logs.toml")), DAYS, WEEKS, MONTHS)

    # No model is logged, so nothing is priced: cost 0 (and every message unpriced, never $0 silently).
    assert summary(engine, "daily") == {
        (W1, MAR30): (2, 1, 0, 1200, 0, 0, 300, 0, 1500, D("0.000000"), D("0.100000")),
        (W1, MAR31): (1, 0, 0, 800, 0, 0, 200, 0, 1000, D("0.000000"), D("0.100000")),
        (W2, APR1): (2, 0, 0, 200, 0, 0, 100, 0, 300, D("0.000000"), D("0.000000")),
    }
    assert summary(engine, "weekly") == {
        (W1, MAR30): (3, 1, 0, 2000, 0, 0, 500, 0, 2500, D("0.000000"), D("0.200000")),
        (W2, MAR30): (2, 0, 0, 200, 0, 0, 100, 0, 300, D("0.000000"), D("0.000000")),
    }
    assert summary(engine, "monthly") == {
        (W1, MAR): (3, 1, 0, 2000, 0, 0, 500, 0, 2500, D("0.000000"), D("0.200000")),
        (W2, APR): (2, 0, 0, 200, 0, 0, 100, 0, 300, D("0.000000"), D("0.000000")),
    }
    assert _arrays(engine, "weekly") == {W1: ([T1, T2], []), W2: ([T1], [])}
    assert summary(engine, "weekly", table="user_token_usage_by_dimension", keys=("dimension", "value")) == {
        (W1, MAR30, "template_id", T1): (2, 1, 0, 1200, 0, 0, 300, 0, 1500, D("0.000000"), D("0.100000")),
        (W1, MAR30, "template_id", T2): (1, 0, 0, 800, 0, 0, 200, 0, 1000, D("0.000000"), D("0.100000")),
        (W1, MAR30, "network", "base"): (2, 1, 0, 1200, 0, 0, 300, 0, 1500, D("0.000000"), D("0.100000")),
        (W1, MAR30, "network", "solana"): (1, 0, 0, 800, 0, 0, 200, 0, 1000, D("0.000000"), D("0.100000")),
        (W2, MAR30, "template_id", T1): (2, 0, 0, 200, 0, 0, 100, 0, 300, D("0.000000"), D("0.000000")),
        (W2, MAR30, "network", "base"): (1, 0, 0, 100, 0, 0, 50, 0, 150, D("0.000000"), D("0.000000")),
        # Paid amount not reported at all: null, not 0.
        (W2, MAR30, "network", "(none)"): (1, 0, 0, 100, 0, 0, 50, 0, 150, D("0.000000"), None),
    }


def _chat(id_: int, user: str, conv: str, agent: str, model: str, at: str, usage: dict | None, status: str = "success") -> dict:
    import json

    meta = {"status": status} if usage is None else {"usage": usage, "status": status}
    return {"id": f"00000000-0000-4000-8000-{id_:012d}", "user_id": user, "conversation_id": conv, "agent_id": agent,
            "model": model, "created_at": at, "metadata": json.dumps(meta)}


C1, C2, C3 = (f"cccccccc-0000-4000-8000-00000000000{i}" for i in (1, 2, 3))
A1, A2 = (f"dddddddd-0000-4000-8000-00000000000{i}" for i in (1, 2))


def test_003_chat_messages_default_mapping(engine, db_url) -> None:
    from usage_etl.settings import Settings
    from usage_etl.sample import ensure_source_table

    settings = settings_for(db_url, None)  # no configuration file: the default mapping
    assert settings.source_config == example("003_chat_messages.toml")
    ensure_source_table(engine, Settings())
    insert(engine, "chat_messages", [
        _chat(1, U1, C1, A1, "claude-sonnet-4-20250514", "2026-03-30T10:00Z", {
            "input_tokens": 100, "output_tokens": 50, "cache_creation_input_tokens": 200, "cache_read_input_tokens": 1000,
            "cache_creation": {"ephemeral_5m_input_tokens": 120, "ephemeral_1h_input_tokens": 80}}),
        _chat(2, U1, C1, A1, "gpt-4o", "2026-03-30T10:01Z", {
            "prompt_tokens": 1000, "completion_tokens": 300, "prompt_tokens_details": {"cached_tokens": 400},
            "completion_tokens_details": {"reasoning_tokens": 100}}, status="error"),
        _chat(3, U1, C2, A2, "gpt-4o", "2026-03-31T09:00Z", {
            "input_tokens": 500, "output_tokens": 80, "input_tokens_details": {"cached_tokens": 100},
            "output_tokens_details": {"reasoning_tokens": 30}}),
        _chat(4, U2, C3, A1, "claude-sonnet-4-20250514", "2026-03-31T11:00Z", {"input_tokens": 10, "output_tokens": 5}),
        _chat(5, U2, C3, A1, "claude-sonnet-4-20250514", "2026-03-31T12:00Z", None),
        _chat(6, U2, C3, A1, "claude-sonnet-4-20250514", "2026-03-31T12:05Z", {"input_tokens": -1, "output_tokens": 3}),
    ])

    materialize_all(settings, DAYS, WEEKS, MONTHS)

    def tokens(rows: dict) -> dict:  # cost left to the price book's own tests
        return {k: v[:9] + v[10:] for k, v in rows.items()}

    # Anthropic: input excludes cache. OpenAI chat: input = prompt - cached (1000 - 400), cache_read =
    # cached, output includes reasoning. OpenAI responses: input = 500 - 100, cache_read = 100.
    assert tokens(summary(engine, "daily")) == {
        (U1, MAR30): (2, 1, 1, 100 + 600, 200, 1000 + 400, 50 + 300, 100, 2650, None),
        (U1, MAR31): (1, 0, 1, 400, 0, 100, 80, 30, 580, None),
        (U2, MAR31): (1, 0, 1, 10, 0, 0, 5, 0, 15, None),
    }
    assert tokens(summary(engine, "weekly")) == {
        (U1, MAR30): (3, 1, 2, 1100, 200, 1500, 430, 130, 3230, None),
        (U2, MAR30): (1, 0, 1, 10, 0, 0, 5, 0, 15, None),
    }
    assert tokens(summary(engine, "monthly")) == {
        (U1, MAR): (3, 1, 2, 1100, 200, 1500, 430, 130, 3230, None),
        (U2, MAR): (1, 0, 1, 10, 0, 0, 5, 0, 15, None),
    }
    with engine.connect() as conn:
        quarantined = conn.execute(sa.text("SELECT partition_key, message_id, reason FROM usage_quarantine ORDER BY message_id")).all()
        one_hour = conn.execute(sa.text("SELECT sum(cache_creation_1h_input_tokens) FROM user_conversation_day_usage")).scalar_one()
        by_dimension = conn.execute(sa.text("SELECT count(*) FROM user_token_usage_by_dimension")).scalar_one()
    assert quarantined == [
        ("2026-03-31", "00000000-0000-4000-8000-000000000005", "missing_usage"),
        ("2026-03-31", "00000000-0000-4000-8000-000000000006", "negative_tokens"),
    ]
    assert one_hour == 80
    assert by_dimension == 0  # no breakdowns configured


def test_removing_a_dimension_removes_its_rows(engine, db_url) -> None:
    # Pipeline functions directly (the Dagster wiring is covered above).
    from usage_etl import pipeline
    from usage_etl.defs import partitions
    from usage_etl.pricing.book import load_price_book

    run_sql_file(engine, SEED_SQL / "002_ai_usage_log.sql")
    insert(engine, "ai_usage_log", [
        {"user_id": U1, "created_at": "2026-03-30T10:00Z", "session_id": "s1", "request_type": "report", "customer_id": 7, "input_tokens": 1, "output_tokens": 2},
    ])

    def run(source) -> dict:
        settings = settings_for(db_url, source)
        p = partitions.build(settings)
        pipeline.run_daily(engine, db_url, settings, load_price_book(), partitions.window(p["daily"], "daily", "2026-03-30"))
        pipeline.run_rollup(engine, db_url, settings, partitions.window(p["weekly"], "weekly", "2026-03-30"))
        with engine.connect() as conn:
            return dict(conn.execute(sa.text("SELECT period_type || ':' || dimension, count(*) FROM user_token_usage_by_dimension GROUP BY 1")).all())

    full = example("002_ai_usage_log.toml")
    assert run(full) == {"daily:customer_id": 1, "daily:request_type": 1, "weekly:customer_id": 1, "weekly:request_type": 1}
    only_type = full.model_copy(update={"breakdowns": {"request_type": full.breakdowns["request_type"]}})
    assert run(only_type) == {"daily:request_type": 1, "weekly:request_type": 1}
    assert run(full.model_copy(update={"breakdowns": {}})) == {}
