"""Pricing coverage: per model as logged, how many messages and tokens, whether and how it is
priced, and the priced share. Pure Polars over priced messages or over the grain.

Tokens here are input + cache writes + cache reads + output (reasoning is inside output).
"""

from __future__ import annotations

import polars as pl

from usage_etl.pricing.book import PriceBook, normalize_model_name, price_messages
from usage_etl.service_tier import STANDARD_TIER, canonical_service_tier

__all__ = ["COVERAGE_SCHEMA", "coverage_from_grain", "coverage_from_messages", "match_kind"]

UNKNOWN = "(unknown)"
COVERAGE_SCHEMA: dict[str, pl.DataType] = {
    "model": pl.String(),  # as logged; "(unknown)" when null
    "messages": pl.Int64(),
    "tokens": pl.Int64(),
    "unpriced_messages": pl.Int64(),
    "price_model": pl.String(),  # the book entry it resolves to, null if none
    "match": pl.String(),  # name | alias | name, suffix stripped | alias, suffix stripped | pattern | none
    "reasons": pl.String(),  # why messages are unpriced, with counts; "" when all are priced
    "priced_share": pl.Float64(),  # priced messages / messages
}
_TOKENS = pl.col("input_tokens") + pl.col("cache_creation_input_tokens") + pl.col("cache_read_input_tokens") + pl.col("output_tokens")


def match_kind(model: str | None, book: PriceBook) -> str:
    """How `model` resolves in `book` (the same rules as `pricing.resolve_model`)."""
    if model is None:
        return "none"
    specific, base = normalize_model_name(model)
    lookup = book.lookup()
    if specific in lookup:
        return "name" if lookup[specific] == specific else "alias"
    if base in lookup:
        return "name, suffix stripped" if lookup[base] == base else "alias, suffix stripped"
    if any(pl.Series([specific]).str.contains(p).item() for p, _ in book.patterns):
        return "pattern"
    return "none"


def _with_match(frame: pl.DataFrame, book: PriceBook) -> pl.DataFrame:
    kinds = {m: match_kind(None if m == UNKNOWN else m, book) for m in frame["model"].to_list()}
    return frame.with_columns(match=pl.col("model").replace_strict(kinds, return_dtype=pl.String))


def coverage_from_messages(messages: pl.LazyFrame, book: PriceBook) -> pl.DataFrame:
    """Canonical messages (with or without `service_tier`) -> `COVERAGE_SCHEMA`, most messages first.

    Reasons: `unknown model`, `no price period in effect` (a known model logged outside its
    periods), `no <tier> price` (the period has no prices for the tier that served it).
    """
    names = messages.collect_schema().names()
    tier = canonical_service_tier(pl.col("service_tier")) if "service_tier" in names else pl.lit(STANDARD_TIER)
    priced = price_messages(messages, book).with_columns(__tier=tier)
    # Would the standard prices have applied? Then the tier alone is missing a price.
    as_standard = price_messages(messages.drop("service_tier", strict=False), book).select(__std="priced")
    both = pl.concat([priced, as_standard], how="horizontal")
    reason = (
        pl.when(pl.col("priced")).then(None)
        .when(pl.col("price_model").is_null()).then(pl.lit("unknown model"))
        .when(pl.col("__std") & (pl.col("__tier") != STANDARD_TIER)).then(pl.lit("no ") + pl.col("__tier") + pl.lit(" price"))
        .otherwise(pl.lit("no price period in effect"))
    )
    rows = both.with_columns(model=pl.col("model").fill_null(UNKNOWN), __reason=reason)
    reasons = (
        rows.filter(pl.col("__reason").is_not_null())
        .group_by("model", "__reason").len()
        .sort("model", "len", "__reason", descending=[False, True, False])
        .group_by("model", maintain_order=True)
        .agg(reasons=pl.concat_str(pl.col("__reason"), pl.lit(": "), pl.col("len").cast(pl.String)).str.join("; "))
    )
    out = (
        rows.group_by("model")
        .agg(
            messages=pl.len().cast(pl.Int64),
            tokens=_TOKENS.sum().cast(pl.Int64),
            unpriced_messages=(~pl.col("priced")).sum().cast(pl.Int64),
            price_model=pl.col("price_model").first(),
        )
        .join(reasons, on="model", how="left")
        .with_columns(pl.col("reasons").fill_null(""))
        .collect()
    )
    return _finish(_with_match(out, book))


def coverage_from_grain(grain: pl.DataFrame, book: PriceBook) -> pl.DataFrame:
    """Conversation-day grain rows -> `COVERAGE_SCHEMA`. The grain keeps counts, not reasons:
    `reasons` names the book versions that priced the rows."""
    out = (
        grain.lazy()
        .with_columns(model=pl.col("model").fill_null(UNKNOWN))
        .group_by("model")
        .agg(
            messages=pl.col("message_count").sum().cast(pl.Int64),
            tokens=_TOKENS.sum().cast(pl.Int64),
            unpriced_messages=pl.col("unpriced_message_count").sum().cast(pl.Int64),
            reasons=pl.lit("priced by book ") + pl.col("price_book_version").drop_nulls().unique().sort().str.join(","),
        )
        .collect()
    )
    resolved = {m: b for m, b in zip(out["model"], _resolve(out["model"], book), strict=True)}
    out = out.with_columns(price_model=pl.col("model").replace_strict(resolved, default=None, return_dtype=pl.String))
    return _finish(_with_match(out, book))


def _resolve(models: pl.Series, book: PriceBook) -> list[str | None]:
    from usage_etl.pricing.book import resolve_model

    frame = pl.DataFrame({"m": models.replace(UNKNOWN, None)})
    return frame.select(resolve_model(pl.col("m"), book))["m"].to_list()


def _finish(frame: pl.DataFrame) -> pl.DataFrame:
    return (
        frame.with_columns(priced_share=1 - pl.col("unpriced_messages") / pl.col("messages"))
        .select(list(COVERAGE_SCHEMA))
        .cast(COVERAGE_SCHEMA)  # type: ignore[arg-type]
        .sort(["messages", "model"], descending=[True, False])
    )
