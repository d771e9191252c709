"""Provider token semantics -> the canonical message frame; invalid rows -> quarantine frame.

Canonical frame (docs/architecture.md, "Canonical frame"), one row per valid message:

| column | dtype | unit / meaning |
|---|---|---|
| message_id, user_id | String | source id, requester |
| conversation_id, agent_id, model | String (nullable) | |
| created_at | Datetime(us, UTC) | event time |
| status | String | "success" or "error" |
| input_tokens | Int64 | tokens, uncached input only |
| cache_creation_input_tokens | Int64 | tokens written to the prompt cache (5-minute + 1-hour) |
| cache_creation_1h_input_tokens | Int64 | the 1-hour part of the above (0 if not reported) |
| cache_read_input_tokens | Int64 | tokens read from the prompt cache |
| output_tokens | Int64 | all output tokens, reasoning included |
| reasoning_tokens | Int64 | the reasoning part of output_tokens |
| paid_amount | Float64 (nullable) | what the caller paid, if the source says |

Extra columns: `service_tier` (String, canonical: `service_tier.canonical_service_tier` of the
first reported of a `service_tier` breakdown, `columns.service_tier`, `usage.service_tier`), and
one String column `dim_<name>` per configured breakdown dimension, passed through (a breakdown
named `service_tier` carries the canonical served tier, the one pricing uses).

Token semantics (`semantics=`, from the source mapping): `auto` detects the provider per row from
the usage object (the rules below, in this order); `anthropic`, `openai_chat` and
`openai_responses` apply one rule to every row; `flat` reads the canonical fields as they are
(input excludes cache, output includes reasoning, reasoning from `u_reasoning_tokens`) and treats
an absent field as 0, so a log row counts as a message even when it reports no tokens.

Provider rules (each avoids a known double count; docs/architecture.md, "Canonical frame"):
- OpenAI chat (`prompt_tokens`/`completion_tokens` present): prompt includes cached, completion
  includes reasoning -> input = prompt - cached, cache_read = cached, output = completion.
- OpenAI responses (`input_tokens_details`/`output_tokens_details` present): input_tokens includes
  cached -> input = input - cached, cache_read = cached; output includes reasoning.
- Anthropic (otherwise, `input_tokens`/`output_tokens`): input excludes cache; cache fields apart;
  thinking is inside output and not reported separately (reasoning = 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from usage_etl.frames import (
    CANONICAL_SCHEMA,
    DETAIL_CHARS,
    DIMENSION_PREFIX,
    MAX_KEY_BYTES,
    MAX_PAID_AMOUNT,
    MAX_TOKENS_PER_FIELD,
    TOKEN_COLUMNS,
    WHITESPACE,
)
from usage_etl.service_tier import canonical_service_tier
from usage_etl.source_config import DEFAULT_ERROR_VALUES, REQUIRED_ANY, SEMANTIC_FIELDS
from usage_etl.sources.postgres import TOKEN_SLOTS

QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "message_id": pl.String(),
    "user_id": pl.String(),
    "created_at": pl.Datetime("us", "UTC"),
    "reason": pl.String(),
    "detail": pl.String(),
    "raw_digest": pl.Int64(),  # sources.postgres.RAW_DIGEST of the raw row (null if not read)
}

# Status values counted as errors by default; anything else (or no status) is a success.
ERROR_STATUSES = list(DEFAULT_ERROR_VALUES)

# Whole numbers; "120.00" (a numeric(p, s) column read as text) is the whole number 120.
# Raw-frame columns added for configured sources; optional in the input (null when absent).
ADDED_RAW_COLUMNS = ["u_reasoning_tokens", "paid_amount", "service_tier", "u_service_tier"]

# ASCII digits and blanks only: "\\d" and "\\s" would also match "١٢٣" or "１２", which
# str.to_integer cannot read (they became 0 tokens).
_BLANK = "[ \t\n\r]*"
_INTEGER = rf"^{_BLANK}-?[0-9]{{1,18}}(\.0*)?{_BLANK}$"
_DECIMAL = rf"^{_BLANK}\+?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?{_BLANK}$"  # non-negative: a payment, not a refund
# Text keys trimmed, blank = missing, at most MAX_KEY_BYTES (message_id stays as the source has it).
TEXT_KEYS = ["user_id", "conversation_id", "agent_id", "model"]


@dataclass(frozen=True)
class Normalized:
    messages: pl.DataFrame  # CANONICAL_SCHEMA + service_tier + dim_* (String) columns + raw_digest (Int64)
    quarantine: pl.DataFrame  # QUARANTINE_SCHEMA


def _int(name: str) -> pl.Expr:
    return pl.col(name).str.strip_chars(WHITESPACE).str.replace(r"\.0*$", "").str.to_integer(strict=False)


def _key(name: str) -> pl.Expr:
    trimmed = pl.col(name).str.strip_chars(WHITESPACE)
    return pl.when(trimmed != "").then(trimmed).alias(name)


def _clip(value: pl.Expr) -> pl.Expr:
    """A raw value quoted in a detail: at most DETAIL_CHARS characters, then "…"."""
    return pl.when(value.str.len_chars() > DETAIL_CHARS).then(value.str.slice(0, DETAIL_CHARS) + pl.lit("…")).otherwise(value)


def _kinds(semantics: str, present: dict[str, pl.Expr]) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """(chat, responses, has_usage) row masks for the semantics; the rest is Anthropic-shaped."""
    if semantics == "auto":
        chat = present["u_prompt_tokens"] | present["u_completion_tokens"]
        responses = ~chat & (present["u_input_cached_tokens"] | present["u_output_reasoning_tokens"])
        anthropic = ~chat & ~responses & (present["u_input_tokens"] | present["u_output_tokens"])
        return chat, responses, (pl.col("usage_type") == "object") & (chat | responses | anthropic)
    if semantics not in SEMANTIC_FIELDS:
        raise ValueError(f"unknown token semantics {semantics!r}")
    fields = SEMANTIC_FIELDS[semantics]
    reported = pl.lit(True)
    if REQUIRED_ANY[semantics]:
        reported = pl.any_horizontal(*[present[fields[f][0]] for f in REQUIRED_ANY[semantics]])
    shaped = pl.col("usage_type").is_in(["object", "columns"])
    return pl.lit(semantics == "openai_chat"), pl.lit(semantics == "openai_responses"), shaped & reported


def normalize(
    raw: pl.LazyFrame | pl.DataFrame,
    semantics: str = "auto",
    error_values: Sequence[str] = ERROR_STATUSES,
) -> Normalized:
    """Split raw rows (`sources.postgres.raw_schema`) into canonical messages and quarantine rows.

    `semantics`: auto | anthropic | openai_chat | openai_responses | flat (module doc).
    `error_values`: status values (trimmed, case-insensitive) that make a message an error.
    Every input row lands in exactly one of the two outputs, so
    `raw.height == messages.height + quarantine.height`. Reasons, first match wins:
    missing_user_id (null, empty or blank), key_too_long (a user, conversation, agent, model or
    breakdown value above `frames.MAX_KEY_BYTES` = 512 UTF-8 bytes after trimming),
    missing_created_at, missing_usage, non_integer_tokens (anything but ASCII digits with an
    optional "-" and ".000"), negative_tokens, tokens_out_of_range (a token field above
    `frames.MAX_TOKENS_PER_FIELD` = 10^9 tokens), cached_exceeds_prompt, reasoning_exceeds_output,
    cache_1h_exceeds_cache_creation, invalid_paid_amount, paid_amount_out_of_range (above
    `frames.MAX_PAID_AMOUNT` = 10^9). Text keys come out trimmed (`frames.WHITESPACE`), blank ones
    null. Details quote at most `frames.DETAIL_CHARS` characters of a value. A `raw_digest` column
    of the input is passed through to the quarantine. Raises ValueError for an unknown semantics.
    """
    lf = raw.lazy()
    names = lf.collect_schema().names()
    # Raw frames built before these columns existed: not reported.
    lf = lf.with_columns(*[pl.lit(None, pl.String).alias(c) for c in ADDED_RAW_COLUMNS if c not in names])
    dims = [c for c in names if c.startswith(DIMENSION_PREFIX)]
    if "raw_digest" not in names:
        lf = lf.with_columns(raw_digest=pl.lit(None, pl.Int64))
    keys = TEXT_KEYS + dims
    lf = lf.with_columns(*[_key(c) for c in keys])
    too_long_key = pl.lit(None, pl.String)
    for k in reversed(keys):
        n = pl.col(k).str.len_bytes()
        too_long_key = pl.when(n > MAX_KEY_BYTES).then(pl.lit(f"{k} is ") + n.cast(pl.String) + pl.lit(f" bytes (max {MAX_KEY_BYTES})")).otherwise(too_long_key)
    fields = list(TOKEN_SLOTS)
    present = {f: pl.col(f).is_not_null() for f in fields}
    chat, responses, has_usage = _kinds(semantics, present)
    paid_text = pl.col("paid_amount").str.strip_chars(WHITESPACE)
    tier_dim = DIMENSION_PREFIX + "service_tier"
    served = canonical_service_tier(
        pl.coalesce(*[pl.col(c) for c in (tier_dim, "service_tier", "u_service_tier") if c in dims or c != tier_dim])
    )

    # A field is garbled when present but not an integer literal.
    non_integer = pl.lit(None, pl.String)
    for f in reversed(fields):
        non_integer = pl.when(present[f] & (~pl.col(f).str.contains(_INTEGER) | _int(f).is_null())).then(
            pl.lit(f.removeprefix("u_") + "=") + _clip(pl.col(f))
        ).otherwise(non_integer)
    negative = pl.lit(None, pl.String)
    for f in reversed(fields):
        negative = pl.when(_int(f) < 0).then(pl.lit(f.removeprefix("u_") + "=") + _clip(pl.col(f))).otherwise(negative)
    # Above MAX_TOKENS_PER_FIELD (10^9 tokens): not a real message, and it could overflow the
    # Int64 pico-USD cost (see pricing.MAX_TOKENS_PER_FIELD).
    too_large = pl.lit(None, pl.String)
    for f in reversed(fields):
        too_large = pl.when(_int(f) > MAX_TOKENS_PER_FIELD).then(pl.lit(f.removeprefix("u_") + "=") + _clip(pl.col(f))).otherwise(too_large)

    v = {f: _int(f).fill_null(0) for f in fields}
    cached = pl.when(chat).then(v["u_prompt_cached_tokens"]).otherwise(v["u_input_cached_tokens"])
    canon = {
        "input_tokens": pl.when(chat)
        .then(v["u_prompt_tokens"] - cached)
        .when(responses)
        .then(v["u_input_tokens"] - cached)
        .otherwise(v["u_input_tokens"]),
        "cache_creation_input_tokens": pl.when(chat | responses).then(0).otherwise(v["u_cache_creation_input_tokens"]),
        "cache_creation_1h_input_tokens": pl.when(chat | responses).then(0).otherwise(v["u_cache_creation_1h_input_tokens"]),
        "cache_read_input_tokens": pl.when(chat | responses).then(cached).otherwise(v["u_cache_read_input_tokens"]),
        "output_tokens": pl.when(chat).then(v["u_completion_tokens"]).otherwise(v["u_output_tokens"]),
        "reasoning_tokens": pl.when(chat)
        .then(v["u_completion_reasoning_tokens"])
        .when(responses)
        .then(v["u_output_reasoning_tokens"])
        .otherwise(v["u_reasoning_tokens"]),  # Anthropic: never reported (null -> 0); flat tables
    }
    lf = lf.with_columns(
        **{k: e.cast(pl.Int64) for k, e in canon.items()}, _non_integer=non_integer, _negative=negative, _too_large=too_large
    )

    paid = paid_text.cast(pl.Float64, strict=False)
    reason = (
        pl.when(pl.col("user_id").is_null())
        .then(pl.lit("missing_user_id"))
        .when(too_long_key.is_not_null())
        .then(pl.lit("key_too_long"))
        .when(pl.col("created_at").is_null())
        .then(pl.lit("missing_created_at"))
        .when(~has_usage)
        .then(pl.lit("missing_usage"))
        .when(pl.col("_non_integer").is_not_null())
        .then(pl.lit("non_integer_tokens"))
        .when(pl.col("_negative").is_not_null())
        .then(pl.lit("negative_tokens"))
        .when(pl.col("_too_large").is_not_null())
        .then(pl.lit("tokens_out_of_range"))
        .when(pl.col("input_tokens") < 0)
        .then(pl.lit("cached_exceeds_prompt"))
        .when(pl.col("reasoning_tokens") > pl.col("output_tokens"))
        .then(pl.lit("reasoning_exceeds_output"))
        .when(pl.col("cache_creation_1h_input_tokens") > pl.col("cache_creation_input_tokens"))
        .then(pl.lit("cache_1h_exceeds_cache_creation"))
        .when(pl.col("paid_amount").is_not_null() & (~paid_text.str.contains(_DECIMAL) | paid.is_null()))
        .then(pl.lit("invalid_paid_amount"))
        .when(pl.col("paid_amount").is_not_null() & (paid > MAX_PAID_AMOUNT))  # inf included
        .then(pl.lit("paid_amount_out_of_range"))
    )
    usage_detail = (
        pl.when(pl.col("usage_type") == "columns")
        .then(pl.lit("no token column reported a value"))
        .otherwise(pl.lit("metadata.usage is ") + pl.col("usage_type").fill_null("absent"))
    )
    detail = (
        pl.when(pl.col("_reason") == "key_too_long")
        .then(too_long_key)
        .when(~has_usage)
        .then(usage_detail)
        .when(pl.col("_reason").is_in(["invalid_paid_amount", "paid_amount_out_of_range"]))
        .then(pl.lit("paid_amount=") + _clip(pl.col("paid_amount")))
        .otherwise(pl.coalesce("_non_integer", "_negative", "_too_large"))
    )
    lf = lf.with_columns(_reason=reason).with_columns(_detail=detail)

    errors = [e.strip().lower() for e in error_values]
    status = (
        pl.when(pl.col("status").str.to_lowercase().str.strip_chars().is_in(errors))
        .then(pl.lit("error"))
        .otherwise(pl.lit("success"))
    )
    good, bad = pl.collect_all(
        [
            lf.filter(pl.col("_reason").is_null()).select(
                *[pl.col(c) for c in ("message_id", "user_id", "conversation_id", "agent_id", "model", "created_at")],
                status.alias("status"),
                *[pl.col(c) for c in TOKEN_COLUMNS],
                paid_text.cast(pl.Float64).alias("paid_amount"),
                served.alias("service_tier"),
                *[served.alias(d) if d == tier_dim else pl.col(d) for d in dims],
                "raw_digest",
            ),
            lf.filter(pl.col("_reason").is_not_null()).select(
                "message_id",
                pl.col("user_id").str.slice(0, MAX_KEY_BYTES),  # a key_too_long user, cut
                "created_at",
                pl.col("_reason").alias("reason"),
                pl.col("_detail").alias("detail"),
                "raw_digest",
            ),
        ]
    )
    schema = {**CANONICAL_SCHEMA, "service_tier": pl.String(), **{d: pl.String() for d in dims}, "raw_digest": pl.Int64()}
    return Normalized(messages=good.cast(schema), quarantine=bad.cast(QUARANTINE_SCHEMA))  # type: ignore[arg-type]
