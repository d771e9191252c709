"""Provider token semantics and quarantine reasons, read through the real SQL extraction."""

import polars as pl

from tests.rows import anthropic, insert, msg, openai, uid, utc
from usage_etl.normalize import normalize
from usage_etl.sources.postgres import read_window

WINDOW = (utc(2026, 3, 10), utc(2026, 3, 11))


def _normalized(engine, settings, db_url, rows):
    insert(engine, settings, rows)
    return normalize(read_window(settings, db_url, *WINDOW))


def test_anthropic_usage_keeps_cache_apart(engine, settings, db_url):
    n = _normalized(engine, settings, db_url, [msg(1, utc(2026, 3, 10, 12), anthropic(100, 50, cache_write=30, cache_read=20), id=1)])
    row = n.messages.row(0, named=True)
    assert (row["input_tokens"], row["cache_creation_input_tokens"], row["cache_read_input_tokens"]) == (100, 30, 20)
    assert (row["output_tokens"], row["reasoning_tokens"], row["status"]) == (50, 0, "success")
    assert row["message_id"] == uid(1) and row["user_id"] == uid(1)


def test_openai_chat_prompt_includes_cached_and_completion_includes_reasoning(engine, settings, db_url):
    # prompt 1000 of which 400 cached; completion 300 of which 120 reasoning
    n = _normalized(engine, settings, db_url, [msg(1, utc(2026, 3, 10, 12), openai(1000, 300, cached=400, reasoning=120), model="gpt-4o")])
    row = n.messages.row(0, named=True)
    assert row["input_tokens"] == 600  # 1000 - 400, not 1000
    assert row["cache_read_input_tokens"] == 400
    assert row["cache_creation_input_tokens"] == 0
    assert row["output_tokens"] == 300  # reasoning stays inside output
    assert row["reasoning_tokens"] == 120
    total = row["input_tokens"] + row["cache_read_input_tokens"] + row["output_tokens"]
    assert total == 1300  # prompt + completion: nothing counted twice


def test_openai_responses_input_includes_cached(engine, settings, db_url):
    meta = {"usage": {"input_tokens": 500, "input_tokens_details": {"cached_tokens": 200}, "output_tokens": 80, "output_tokens_details": {"reasoning_tokens": 30}}}
    n = _normalized(engine, settings, db_url, [msg(1, utc(2026, 3, 10, 12), meta, model="gpt-5")])
    row = n.messages.row(0, named=True)
    assert (row["input_tokens"], row["cache_read_input_tokens"], row["output_tokens"], row["reasoning_tokens"]) == (300, 200, 80, 30)


def test_status_error_and_claude_code_one_hour_cache(engine, settings, db_url):
    meta = anthropic(10, 5, cache_write=100, status="error")
    meta["usage"]["cache_creation"] = {"ephemeral_5m_input_tokens": 40, "ephemeral_1h_input_tokens": 60}
    n = _normalized(engine, settings, db_url, [msg(1, utc(2026, 3, 10, 1), meta)])
    row = n.messages.row(0, named=True)
    assert (row["status"], row["cache_creation_input_tokens"], row["cache_creation_1h_input_tokens"]) == ("error", 100, 60)


def test_bad_rows_are_quarantined_with_reason_and_nothing_is_lost(engine, settings, db_url):
    at = utc(2026, 3, 10, 8)
    rows = [
        msg(1, at, anthropic(1, 1), id=1),  # good
        msg(None, at, anthropic(1, 1), id=2),
        msg(1, at, {"status": "success"}, id=3),
        msg(1, at, None, id=4),
        msg(1, at, '{"usage": "oops"}', id=5),
        msg(1, at, '{"usage": {"input_tokens": -5, "output_tokens": 3}}', id=6),
        msg(1, at, '{"usage": {"prompt_tokens": 12.5, "completion_tokens": 3}}', id=7),
        msg(1, at, '{"usage": {"input_tokens": "many", "output_tokens": 3}}', id=8),
        msg(1, at, openai(100, 10, cached=150), id=9),
        msg(1, at, openai(100, 10, reasoning=11), id=10),
    ]
    n = _normalized(engine, settings, db_url, rows)
    assert n.messages["message_id"].to_list() == [uid(1)]
    got = dict(n.quarantine.select("message_id", "reason").iter_rows())
    assert got == {
        uid(2): "missing_user_id",
        uid(3): "missing_usage",
        uid(4): "missing_usage",
        uid(5): "missing_usage",
        uid(6): "negative_tokens",
        uid(7): "non_integer_tokens",
        uid(8): "non_integer_tokens",
        uid(9): "cached_exceeds_prompt",
        uid(10): "reasoning_exceeds_output",
    }
    detail = dict(n.quarantine.select("message_id", "detail").iter_rows())
    assert detail[uid(6)] == "input_tokens=-5"
    assert detail[uid(7)] == "prompt_tokens=12.5"
    assert detail[uid(4)] == "metadata.usage is absent"
    assert n.messages.height + n.quarantine.height == len(rows)
    assert n.messages.schema["created_at"] == pl.Datetime("us", "UTC")


def test_token_counts_above_the_sanity_bound_are_quarantined(engine, settings, db_url):
    # MAX_TOKENS_PER_FIELD = 10^9 tokens per field: at the bound a row is kept, above it the row is
    # quarantined (its cost could overflow Int64 pico-USD: 2e11 x $75/MTok = 1.5e19 > 2^63 - 1).
    at = utc(2026, 3, 10, 8)
    rows = [
        msg(1, at, anthropic(10, 1_000_000_000), id=1, model="claude-opus-4-1"),
        msg(1, at, anthropic(10, 1_000_000_001), id=2, model="claude-opus-4-1"),
        msg(1, at, anthropic(10, 200_000_000_000), id=3, model="claude-opus-4-1"),
        msg(1, at, openai(200_000_000_000, 10, cached=199_999_999_999), id=4, model="gpt-4o"),
        msg(1, at, '{"usage": {"input_tokens": -5, "output_tokens": 200000000000}}', id=5),
        msg(1, at, anthropic(10, 5, cache_write=2_000_000_000), id=6),
    ]
    n = _normalized(engine, settings, db_url, rows)
    assert n.messages["message_id"].to_list() == [uid(1)]
    assert n.messages["output_tokens"].to_list() == [1_000_000_000]
    got = {r["message_id"]: (r["reason"], r["detail"]) for r in n.quarantine.iter_rows(named=True)}
    assert got == {
        uid(2): ("tokens_out_of_range", "output_tokens=1000000001"),
        uid(3): ("tokens_out_of_range", "output_tokens=200000000000"),
        # the raw prompt is out of range even though prompt - cached (1 token) would not be
        uid(4): ("tokens_out_of_range", "prompt_tokens=200000000000"),
        uid(5): ("negative_tokens", "input_tokens=-5"),  # first match wins
        uid(6): ("tokens_out_of_range", "cache_creation_input_tokens=2000000000"),
    }
    assert n.messages.height + n.quarantine.height == len(rows)
