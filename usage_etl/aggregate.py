"""Pure Polars aggregation: messages -> conversation-day grain -> per-user summaries.

Weekly and monthly summaries are computed from the conversation-day grain, never from raw rows,
with the same `summarize` function the daily summary uses. The grain keeps the conversation id,
so a week's `conversation_count` is the exact distinct count over the week, not a sum of days.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from usage_etl.frames import DIMENSION_PREFIX, TOKEN_COLUMNS, MAX_COST_PICO_PER_USER_DAY, MAX_PAID_MICRO_PER_USER_DAY

GRAIN_KEYS = ["user_id", "day", "conversation_id", "agent_id", "model"]
TOKEN_SUMS = TOKEN_COLUMNS  # every canonical token column is summed
COUNT_SUMS = ["message_count", "error_count", "unpriced_message_count", "cost_pico_usd"]

# Conversation-day grain: GRAIN_KEYS (day = Date in the business timezone), TOKEN_SUMS (tokens),
# message_count, error_count, unpriced_message_count (Int64), cost_pico_usd (Int64, 1e-12 USD,
# priced messages only), paid_micro (Int64 1e-6 of the source's paid unit, null if none reported),
# first_activity, last_activity (Datetime us UTC), price_book_version (String, the book that priced
# the row; see sql/0002_price_book_version.sql).
GRAIN_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.String(),
    "day": pl.Date(),
    "conversation_id": pl.String(),
    "agent_id": pl.String(),
    "model": pl.String(),
    **{c: pl.Int64() for c in TOKEN_SUMS + COUNT_SUMS},
    "paid_micro": pl.Int64(),
    "first_activity": pl.Datetime("us", "UTC"),
    "last_activity": pl.Datetime("us", "UTC"),
    "price_book_version": pl.String(),
}

UNKNOWN_MODEL = "(unknown)"

# Breakdown grain: the conversation-day grain per (dimension, value) of a configured breakdown.
BREAKDOWN_KEYS = ["dimension", "value"]
BREAKDOWN_GRAIN_SCHEMA: dict[str, pl.DataType] = {"dimension": pl.String(), "value": pl.String(), **GRAIN_SCHEMA}
NO_VALUE = "(none)"  # value of a message whose dimension is null


def _sum_if_any(col: str) -> pl.Expr:
    # Null when no row reported a value: "not reported" must not read as 0.
    return pl.when(pl.col(col).is_not_null().any()).then(pl.col(col).sum()).alias(col)


def _checked_cost_sum() -> pl.Expr:
    """Sum of cost_pico_usd (pico-USD) in Int128, cast back to Int64 strictly: a sum beyond
    Int64 (about $9.2M in one row) raises InvalidOperationError instead of wrapping to a wrong
    value. Nulls (unpriced messages) are skipped."""
    return pl.col("cost_pico_usd").cast(pl.Int128).sum().cast(pl.Int64, strict=True)


def _versions(col: str) -> pl.Expr:
    # Sorted distinct values joined by ',': one version, or several when days were priced by
    # different books (a partial reprice). Null when no row has one.
    distinct = pl.col(col).drop_nulls().unique().sort().str.join(",")
    return pl.when(pl.col(col).is_not_null().any()).then(distinct).alias(col)


def _paid_micro() -> pl.Expr:
    # paid_amount <= frames.MAX_PAID_AMOUNT (10^9), so the product stays exact in Float64.
    return (pl.col("paid_amount") * 1_000_000).round().cast(pl.Int64)


def user_day_bounds(priced: pl.LazyFrame, timezone: str) -> pl.LazyFrame:
    """`priced` plus `bound_reason` and `bound_detail` (String, null within bounds): a user's
    messages of one day (in `timezone`) whose total cost is above `frames.MAX_COST_PICO_PER_USER_DAY`
    pico-USD are `cost_out_of_range`, whose total paid amount is above `MAX_PAID_MICRO_PER_USER_DAY`
    millionths `paid_amount_out_of_range`. Sums are taken in Int128, so nothing wraps; every message
    of such a user-day gets the reason (no order among them decides which are kept)."""
    by = ["user_id", pl.col("created_at").dt.convert_time_zone(timezone).dt.date()]
    cost = pl.col("cost_pico_usd").cast(pl.Int128).sum().over(by)
    paid = _paid_micro().cast(pl.Int128).sum().over(by)
    return priced.with_columns(
        bound_reason=pl.when(cost > MAX_COST_PICO_PER_USER_DAY)
        .then(pl.lit("cost_out_of_range"))
        .when(paid > MAX_PAID_MICRO_PER_USER_DAY)
        .then(pl.lit("paid_amount_out_of_range")),
        bound_detail=pl.when(cost > MAX_COST_PICO_PER_USER_DAY)
        .then(pl.lit("user-day cost_pico_usd=") + cost.cast(pl.String) + pl.lit(f" (max {MAX_COST_PICO_PER_USER_DAY})"))
        .when(paid > MAX_PAID_MICRO_PER_USER_DAY)
        .then(pl.lit("user-day paid_micro=") + paid.cast(pl.String) + pl.lit(f" (max {MAX_PAID_MICRO_PER_USER_DAY})")),
    )


def conversation_day_grain(
    priced: pl.LazyFrame, timezone: str, price_book_version: str | None = None, *, by: Sequence[str] = ()
) -> pl.LazyFrame:
    """Group priced canonical messages to the conversation-day grain (`GRAIN_SCHEMA`).

    `priced` is the canonical frame plus `cost_pico_usd` (Int64, null = unpriced) and `priced`
    (Boolean). `day` is the message's calendar date in `timezone`. `price_book_version` is the
    `PriceBook.version` that priced the frame, recorded on every grain row. `by`: further key
    columns, placed first (the breakdown grain uses dimension, value).
    """
    keys = [*by, *GRAIN_KEYS]
    return (
        priced.with_columns(
            day=pl.col("created_at").dt.convert_time_zone(timezone).dt.date(),
            paid_micro=_paid_micro(),
        )
        .group_by(keys)
        .agg(
            *[pl.col(c).sum() for c in TOKEN_SUMS],
            pl.len().cast(pl.Int64).alias("message_count"),
            (pl.col("status") == "error").sum().cast(pl.Int64).alias("error_count"),
            (~pl.col("priced")).sum().cast(pl.Int64).alias("unpriced_message_count"),
            _checked_cost_sum(),
            _sum_if_any("paid_micro"),
            pl.col("created_at").min().alias("first_activity"),
            pl.col("created_at").max().alias("last_activity"),
        )
        .with_columns(price_book_version=pl.lit(price_book_version, pl.String))
        .select(*by, *GRAIN_SCHEMA)
        .sort(keys, nulls_last=True)
    )


def breakdown_grain(
    priced: pl.LazyFrame, timezone: str, dimensions: Sequence[str], price_book_version: str | None = None
) -> pl.LazyFrame:
    """Conversation-day grain per breakdown dimension value (`BREAKDOWN_GRAIN_SCHEMA`).

    `priced` carries one String column `dim_<name>` per dimension. Each message counts once per
    dimension, under its value (`NO_VALUE` when null), so per dimension the values add up to the
    user's totals, and keeping conversation_id keeps weekly/monthly distinct counts exact.
    """
    if not dimensions:
        return pl.LazyFrame(schema=BREAKDOWN_GRAIN_SCHEMA)
    cols = [DIMENSION_PREFIX + d for d in dimensions]
    long = (
        priced.unpivot(on=cols, index=[c for c in priced.collect_schema().names() if c not in cols], variable_name="dimension", value_name="value")
        .with_columns(pl.col("dimension").str.strip_prefix(DIMENSION_PREFIX), pl.col("value").fill_null(NO_VALUE))
    )
    return conversation_day_grain(long, timezone, price_book_version, by=BREAKDOWN_KEYS)


def summarize(grain: pl.LazyFrame, *, by_model: bool = False, by: Sequence[str] = ()) -> pl.LazyFrame:
    """Per-user (or per-user-and-model, or per-user-and-`by`) measures over all grain rows given (one window).

    Output: user_id, [model], input/cache_creation_input/cache_creation_1h_input/cache_read_input/
    output/reasoning/total tokens (Int64, tokens), message_count, error_count, conversation_count
    (exact distinct non-null conversations), agent_ids, models (sorted distinct List[String]),
    cost_pico_usd (Int64, 1e-12 USD), unpriced_message_count, paid_micro (Int64 or null),
    first_activity, last_activity, price_book_version (String: the sorted distinct versions of
    the rows, comma-separated; null if none). A null model is reported as "(unknown)" in the by-model rows.
    """
    keys = ["user_id", *by]
    if by_model:
        grain = grain.with_columns(model=pl.col("model").fill_null(UNKNOWN_MODEL))
        keys.append("model")
    models = pl.col("model").drop_nulls()
    if by_model:
        models = pl.col("model").filter(pl.col("model") != UNKNOWN_MODEL)
    models = models.unique().sort()
    return (
        grain.group_by(keys)
        .agg(
            *[pl.col(c).sum() for c in TOKEN_SUMS],
            *[pl.col(c).sum() for c in ("message_count", "error_count")],
            pl.col("conversation_id").drop_nulls().n_unique().cast(pl.Int64).alias("conversation_count"),
            pl.col("agent_id").drop_nulls().unique().sort().alias("agent_ids"),
            models.alias("models"),
            _checked_cost_sum(),
            pl.col("unpriced_message_count").sum(),
            _sum_if_any("paid_micro"),
            pl.col("first_activity").min(),
            pl.col("last_activity").max(),
            _versions("price_book_version"),
        )
        .with_columns(
            total_tokens=pl.col("input_tokens")
            + pl.col("cache_creation_input_tokens")
            + pl.col("cache_read_input_tokens")
            + pl.col("output_tokens")
        )
        .sort(keys)
    )
