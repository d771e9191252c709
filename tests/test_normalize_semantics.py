"""Token semantics of normalize() for configured sources: flat columns, explicit providers, paid
amounts, status mapping and breakdown columns. Pure Polars, hand-computed values."""

from __future__ import annotations

from datetime import datetime, timezone

import polars as pl
import pytest

from usage_etl.normalize import normalize
from usage_etl.sources.postgres import RAW_SCHEMA

AT = datetime(2026, 3, 30, 10, tzinfo=timezone.utc)
CANON = ["input_tokens", "cache_creation_input_tokens", "cache_creation_1h_input_tokens", "cache_read_input_tokens",
         "output_tokens", "reasoning_tokens"]


def raw(rows: list[dict], dims: tuple[str, ...] = ()) -> pl.DataFrame:
    base = {"user_id": "u", "created_at": AT, "status": "success", "usage_type": "columns"}
    full = [{**base, "message_id": str(i), **r} for i, r in enumerate(rows)]
    schema = {**RAW_SCHEMA, **{d: pl.String() for d in dims}}
    return pl.DataFrame([{k: r.get(k) for k in schema} for r in full], schema=schema)


def tokens(frame: pl.DataFrame) -> list[tuple]:
    return frame.sort("message_id").select(CANON).rows()


def test_flat_columns_are_canonical_and_absent_counts_are_zero() -> None:
    n = normalize(raw([
        {"u_input_tokens": "100", "u_output_tokens": "40", "u_cache_read_input_tokens": "900", "u_reasoning_tokens": "15",
         "u_cache_creation_input_tokens": "300", "u_cache_creation_1h_input_tokens": "200"},
        {},  # a failed request that logged no tokens: still a message, all zeros
        {"u_input_tokens": "120.00", "u_output_tokens": "7"},  # numeric(10,2) read as text
    ]), "flat")
    assert tokens(n.messages) == [(100, 300, 200, 900, 40, 15), (0, 0, 0, 0, 0, 0), (120, 0, 0, 0, 7, 0)]
    assert n.quarantine.height == 0


def test_explicit_openai_chat_on_flat_columns() -> None:
    # prompt includes cached, completion includes reasoning: input = 1000 - 400.
    n = normalize(raw([{"u_prompt_tokens": "1000", "u_completion_tokens": "300", "u_prompt_cached_tokens": "400",
                        "u_completion_reasoning_tokens": "100"}]), "openai_chat")
    assert tokens(n.messages) == [(600, 0, 0, 400, 300, 100)]


def test_explicit_responses_and_anthropic() -> None:
    r = normalize(raw([{"u_input_tokens": "500", "u_output_tokens": "80", "u_input_cached_tokens": "100",
                        "u_output_reasoning_tokens": "30"}]), "openai_responses")
    assert tokens(r.messages) == [(400, 0, 0, 100, 80, 30)]
    a = normalize(raw([{"u_input_tokens": "10", "u_output_tokens": "5", "u_cache_read_input_tokens": "7"},
                       {"u_cache_read_input_tokens": "7"}]), "anthropic")
    # Anthropic rows need input or output tokens; the second row has neither.
    assert tokens(a.messages) == [(10, 0, 0, 7, 5, 0)]
    assert a.quarantine.select("message_id", "reason", "detail").rows() == [("1", "missing_usage", "no token column reported a value")]


def test_explicit_semantics_with_usage_object_of_wrong_type() -> None:
    n = normalize(raw([{"usage_type": "string", "u_input_tokens": None}]), "anthropic")
    assert n.quarantine.select("reason", "detail").rows() == [("missing_usage", "metadata.usage is string")]


def test_status_mapping_paid_amount_and_dimensions() -> None:
    n = normalize(raw([
        {"status": " FAILED ", "paid_amount": "0.05", "dim_network": "base"},
        {"status": "error", "paid_amount": None, "dim_network": None},  # not in this source's error values
        {"status": "success", "paid_amount": "2.5e-1", "dim_network": "solana"},
        {"status": "success", "paid_amount": "$1.00", "dim_network": "base"},
    ], dims=("dim_network",)), "flat", error_values=["failed"])
    m = n.messages.sort("message_id")
    assert m.select("status", "paid_amount", "dim_network").rows() == [
        ("error", 0.05, "base"), ("success", None, None), ("success", 0.25, "solana")]
    assert n.quarantine.select("message_id", "reason", "detail").rows() == [("3", "invalid_paid_amount", "paid_amount=$1.00")]


def test_unknown_semantics() -> None:
    with pytest.raises(ValueError, match="unknown token semantics 'bedrock'"):
        normalize(raw([{}]), "bedrock")


def test_raw_frame_without_the_added_columns() -> None:
    # A raw frame shaped like the original chat_messages contract (no u_reasoning_tokens, no
    # paid_amount) still normalizes, with paid_amount null.
    old = raw([{"usage_type": "object", "u_input_tokens": "10", "u_output_tokens": "5"}]).drop("u_reasoning_tokens", "paid_amount")
    n = normalize(old)
    assert tokens(n.messages) == [(10, 0, 0, 0, 5, 0)]
    assert n.messages["paid_amount"].to_list() == [None]
