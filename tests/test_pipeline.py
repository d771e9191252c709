"""Partition runs against PostgreSQL: windows in a timezone, rollups, partition replace."""

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from tests.rows import anthropic, insert, msg, openai, uid, utc
from usage_etl import pipeline, store
from usage_etl.defs import partitions
from usage_etl.pricing.book import load_price_book

BOOK = load_price_book()


def run(engine, db_url, settings, period_type, key):
    pdef = partitions.build(settings)[period_type]
    window = partitions.window(pdef, period_type, key)
    if period_type == "daily":
        return pipeline.run_daily(engine, db_url, settings, BOOK, window)
    return pipeline.run_rollup(engine, db_url, settings, window)


def table(engine, name="user_token_usage", order="user_id, period_type, period_start"):
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text(f"SELECT * FROM {name} ORDER BY {order}"))]


def test_message_at_2330_utc_belongs_to_next_day_in_tokyo(engine, db_url, settings):
    tokyo = settings.replace(timezone="Asia/Tokyo", start_date=datetime(2026, 3, 1).date())
    insert(engine, tokyo, [msg(1, utc(2026, 3, 9, 23, 30), anthropic(10, 5))])
    assert run(engine, db_url, tokyo, "daily", "2026-03-09").messages == 0
    r = run(engine, db_url, tokyo, "daily", "2026-03-10")
    assert (r.messages, r.users) == (1, 1)
    [row] = table(engine)
    jst = ZoneInfo("Asia/Tokyo")
    assert row["period_start"] == datetime(2026, 3, 10, tzinfo=jst)  # = 2026-03-09 15:00 UTC
    assert row["period_end"] == datetime(2026, 3, 11, tzinfo=jst)
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (10, 5, 15)


def test_dst_week_in_new_york_is_167_hours(engine, db_url, settings):
    ny = settings.replace(timezone="America/New_York", start_date=datetime(2026, 3, 2).date())
    insert(
        engine,
        ny,
        [
            msg(1, utc(2026, 3, 2, 5, 0), anthropic(1, 1)),  # Mon 00:00 EST: first instant of the week
            msg(1, utc(2026, 3, 9, 3, 30), anthropic(2, 2)),  # Sun 23:30 EDT: still in the week
            msg(1, utc(2026, 3, 9, 4, 30), anthropic(4, 4)),  # Mon 00:30 EDT: next week
        ],
    )
    for day in range(2, 10):
        run(engine, db_url, ny, "daily", f"2026-03-{day:02d}")
    r = run(engine, db_url, ny, "weekly", "2026-03-02")
    assert r.messages == 2
    row = next(x for x in table(engine) if x["period_type"] == "weekly")
    assert row["period_start"] == utc(2026, 3, 2, 5)
    assert row["period_end"] == utc(2026, 3, 9, 4)  # 167 hours later: the clock sprang forward
    assert (row["input_tokens"], row["output_tokens"], row["message_count"]) == (3, 3, 2)


def test_weekly_conversation_count_is_distinct_over_the_week(engine, db_url, settings):
    # conversation 1 on Monday and Tuesday, conversation 2 on Tuesday only
    insert(
        engine,
        settings,
        [
            msg(1, utc(2026, 3, 2, 10), anthropic(1, 1), conv=1),
            msg(1, utc(2026, 3, 3, 10), anthropic(1, 1), conv=1),
            msg(1, utc(2026, 3, 3, 11), anthropic(1, 1), conv=2),
        ],
    )
    run(engine, db_url, settings, "daily", "2026-03-02")
    run(engine, db_url, settings, "daily", "2026-03-03")
    run(engine, db_url, settings, "weekly", "2026-03-02")
    run(engine, db_url, settings, "monthly", "2026-03-01")
    counts = {(r["period_type"], r["period_start"].date().isoformat()): r["conversation_count"] for r in table(engine)}
    assert counts == {
        ("daily", "2026-03-02"): 1,
        ("daily", "2026-03-03"): 2,
        ("weekly", "2026-03-02"): 2,  # not 1 + 2
        ("monthly", "2026-03-01"): 2,
    }


def test_cost_unpriced_and_by_model_rows(engine, db_url, settings):
    insert(
        engine,
        settings,
        [
            msg(1, utc(2026, 3, 10, 1), anthropic(1000, 500, cache_write=200, cache_read=100), model="claude-sonnet-4-20250514", agent=2),
            msg(1, utc(2026, 3, 10, 2), openai(1000, 100, cached=400), model="gpt-4o-2024-08-06", agent=1),
            msg(1, utc(2026, 3, 10, 3), anthropic(7, 3), model="some-local-model", agent=1),
        ],
    )
    r = run(engine, db_url, settings, "daily", "2026-03-10")
    # Sonnet 4, USD per million: 3 input, 15 output, 3.75 cache write (5m), 0.30 cache read
    #   1000*3 + 500*15 + 200*3.75 + 100*0.30 = 3000 + 7500 + 750 + 30 = 11280 micro-USD
    # GPT-4o: 2.50 input, 10 output, 1.25 cached input; input = 1000 - 400 uncached
    #   600*2.5 + 400*1.25 + 100*10 = 1500 + 500 + 1000 = 3000 micro-USD
    assert r.cost_usd == Decimal("0.014280")
    [row] = table(engine)
    assert row["cost_usd"] == Decimal("0.014280")
    assert row["unpriced_message_count"] == 1  # never priced at $0 silently
    assert row["models"] == ["claude-sonnet-4-20250514", "gpt-4o-2024-08-06", "some-local-model"]
    assert row["agent_ids"] == [uid(1), uid(2)]
    by_model = {x["model"]: (x["cost_usd"], x["message_count"], x["unpriced_message_count"], x["input_tokens"]) for x in table(engine, "user_token_usage_by_model", "model")}
    assert by_model == {
        "claude-sonnet-4-20250514": (Decimal("0.011280"), 1, 0, 1000),
        "gpt-4o-2024-08-06": (Decimal("0.003000"), 1, 0, 600),
        "some-local-model": (Decimal("0.000000"), 1, 1, 7),
    }
    assert r.unpriced_models == ["some-local-model"]


def test_rerun_is_idempotent_and_removes_stale_users(engine, db_url, settings):
    insert(engine, settings, [msg(1, utc(2026, 3, 10, 1), anthropic(10, 1)), msg(2, utc(2026, 3, 10, 2), anthropic(20, 2), id=77)])
    first = run(engine, db_url, settings, "daily", "2026-03-10")
    assert first.writes["user_token_usage"] == store.WriteStats(inserted=2)
    before = {n: table(engine, n, "1") if n.endswith("day_usage") else table(engine, n) for n in ("user_token_usage", "user_token_usage_by_model")}
    for _ in range(2):
        again = run(engine, db_url, settings, "daily", "2026-03-10")
        assert again.rows_written == 0
        assert {n: table(engine, n) for n in before} == before  # computed_at included
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM chat_messages WHERE id = :id"), {"id": uid(77)})
    gone = run(engine, db_url, settings, "daily", "2026-03-10")
    assert gone.writes["user_token_usage"] == store.WriteStats(deleted=1)
    assert [r["user_id"] for r in table(engine)] == [uid(1)]
    assert table(engine)[0]["computed_at"] == before["user_token_usage"][0]["computed_at"]  # untouched row


def test_failure_before_commit_leaves_previous_rows(engine, db_url, settings, monkeypatch):
    insert(engine, settings, [msg(1, utc(2026, 3, 10, 1), anthropic(10, 1))])
    run(engine, db_url, settings, "daily", "2026-03-10")
    before = [table(engine, n, "1") for n in ("user_token_usage", "user_token_usage_by_model", "user_conversation_day_usage")]
    insert(engine, settings, [msg(2, utc(2026, 3, 10, 2), anthropic(99, 9))])
    original = store.upsert_window

    def fail_on_by_model(conn, target, *a, **k):
        if target.name == "user_token_usage_by_model":
            raise RuntimeError("injected failure")
        return original(conn, target, *a, **k)

    monkeypatch.setattr(store, "upsert_window", fail_on_by_model)
    with pytest.raises(RuntimeError, match="injected"):
        run(engine, db_url, settings, "daily", "2026-03-10")
    after = [table(engine, n, "1") for n in ("user_token_usage", "user_token_usage_by_model", "user_conversation_day_usage")]
    assert after == before


def test_quarantine_accounting_per_window(engine, db_url, settings):
    at = utc(2026, 3, 10, 5)
    insert(
        engine,
        settings,
        [
            msg(1, at, anthropic(5, 5)),
            msg(2, at, anthropic(5, 5)),
            msg(None, at, anthropic(5, 5), id=901),
            msg(1, at, '{"usage": {"input_tokens": -1, "output_tokens": 1}}', id=902),
            msg(1, None, anthropic(5, 5), id=903),  # no created_at: in no window
            msg(1, utc(2026, 3, 11, 5), '{"usage": {}}', id=904),  # next day's problem
        ],
    )
    r = run(engine, db_url, settings, "daily", "2026-03-10")
    assert (r.raw_rows, r.messages, r.rejected_rows) == (4, 2, 2)
    assert r.raw_rows == r.messages + r.rejected_rows
    assert r.rejected_by_reason == {"missing_user_id": 1, "negative_tokens": 1}
    assert pipeline.quarantine_unpartitioned(engine, db_url, settings) == 1
    rows = table(engine, "usage_quarantine", "message_id")
    assert [(x["message_id"], x["partition_key"], x["reason"], x["source"]) for x in rows] == [
        (uid(901), "2026-03-10", "missing_user_id", "public.chat_messages"),
        (uid(902), "2026-03-10", "negative_tokens", "public.chat_messages"),
        (uid(903), None, "missing_created_at", "public.chat_messages"),
    ]
    run(engine, db_url, settings, "daily", "2026-03-10")  # rerun: quarantine replaced, not appended
    assert len(table(engine, "usage_quarantine", "message_id")) == 3
