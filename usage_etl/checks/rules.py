"""Data-integrity rules for one partition of the summary tables, as pure functions.

Every rule takes Polars frames or plain numbers and returns a `CheckOutcome`; reading the inputs
is `check_runner.py`, the Dagster asset checks are `asset_checks.py`, and `usage-etl check` runs
the same rules outside Dagster.

Summary frame (`SUMMARY_SCHEMA`): the rows of `user_token_usage` (or `user_token_usage_by_model`,
plus a `model` column) of one window as read back from PostgreSQL:

| column | dtype | unit |
|---|---|---|
| user_id, period_type | String | |
| period_start, period_end | Datetime(us, UTC) | window [start, end) |
| input_tokens … total_tokens (`TOKENS`) | Int64 | tokens |
| message_count, error_count, conversation_count, unpriced_message_count | Int64 | messages, conversations |
| cost_micro_usd | Int64 | 1e-6 USD (the table's numeric(18,6) cost_usd, exactly) |
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

import polars as pl

from usage_etl.settings import DEFAULT_MAX_QUARANTINE_SHARE, DEFAULT_MAX_UNPRICED_SHARE

TOKENS = [
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "total_tokens",
]
# Figures reconciled against raw: the message count and each token sum.
RECONCILED = ["message_count", *TOKENS]
# Measures that add up exactly across days and models.
ADDITIVE = [*TOKENS, "message_count", "error_count", "unpriced_message_count"]
COST = "cost_micro_usd"

SUMMARY_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.String(),
    "period_type": pl.String(),
    "period_start": pl.Datetime("us", "UTC"),
    "period_end": pl.Datetime("us", "UTC"),
    **{c: pl.Int64() for c in TOKENS},
    **{c: pl.Int64() for c in ("message_count", "error_count", "conversation_count", "unpriced_message_count")},
    COST: pl.Int64(),
}
BY_MODEL_SCHEMA: dict[str, pl.DataType] = {"model": pl.String(), **SUMMARY_SCHEMA}
# Expected figures of one window per user, computed from raw rows (see check_runner.expected_query).
EXPECTED_SCHEMA: dict[str, pl.DataType] = {"user_id": pl.String(), **{c: pl.Int64() for c in RECONCILED}}

MAX_EXAMPLES = 10  # rows of examples kept in a failure's metadata


class Severity(str, Enum):
    ERROR = "ERROR"
    WARN = "WARN"


@dataclass(frozen=True)
class Rule:
    name: str  # the rule's name, `<name>/…` in the integrity check's metadata
    severity: Severity
    period_types: tuple[str, ...]
    description: str

    @property
    def blocking(self) -> bool:
        """ERROR rules block, WARN rules never do: every rule reports into one blocking Dagster
        check per partition, whose severity is the worst failed rule's (`asset_checks.combine`),
        and only an ERROR evaluation fails the step and holds back the weeks and months above."""
        return self.severity is Severity.ERROR


ALL = ("daily", "weekly", "monthly")
RULES = (
    Rule("reconciles_with_raw", Severity.ERROR, ("daily",),
         "Message count and each token sum per user equal SQL over the raw source minus quarantined rows."),
    Rule("rollup_matches_daily", Severity.ERROR, ("weekly", "monthly"),
         "Each user's sums equal the sums of their daily rows in the window; conversation_count lies "
         "between the largest daily count and the sum of the daily counts."),
    Rule("keys_and_values", Severity.ERROR, ALL,
         "Unique keys, no negative tokens, reasoning <= output, total = input + cache_creation + cache_read "
         "+ output, by-model rows add up to the user's row, period_start/period_end equal the window."),
    Rule("completeness", Severity.WARN, ("daily",),
         "No missing daily partition between the configured start date and the latest complete day."),
    Rule("pricing_coverage", Severity.WARN, ALL,
         "Share of unpriced messages and tokens at most the threshold (default 0.1%); unpriced models listed."),
    Rule("quarantine_rate", Severity.WARN, ALL,
         "Share of raw rows rejected into quarantine at most the threshold (default 1%), by reason."),
    Rule("no_duplicate_raw_rows", Severity.WARN, ("daily",),
         "No message id appears twice among the window's raw rows (a known cause of overcounting)."),
)
RULES_BY_NAME = {r.name: r for r in RULES}


def rules_for(period_type: str) -> list[Rule]:
    return [r for r in RULES if period_type in r.period_types]


@dataclass(frozen=True)
class CheckOutcome:
    """Result of one rule on one partition. `metadata` holds JSON-compatible values only; lists of
    dicts are example rows (shown as tables)."""

    check: str
    passed: bool
    summary: str  # one line: what was found
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def rule(self) -> Rule:
        return RULES_BY_NAME[self.check]

    @property
    def severity(self) -> Severity:
        return self.rule.severity


def _rows(frame: pl.DataFrame, limit: int = MAX_EXAMPLES) -> list[dict[str, Any]]:
    return frame.head(limit).to_dicts()


def _differences(expected: pl.DataFrame, actual: pl.DataFrame, keys: list[str], measures: list[str]) -> pl.DataFrame:
    """Long frame (keys, measure, expected, actual) of every measure that differs; a row missing on
    one side shows null there. Sorted by keys, then by the order of `measures`."""
    left, right = (f.select(*keys, *measures).sort(keys) for f in (expected, actual))
    if left.equals(right):  # the usual case, in a fraction of the time of the full comparison
        return pl.DataFrame(schema={**left.select(keys).schema, "measure": pl.String, "expected": pl.Int64, "actual": pl.Int64})
    joined = expected.select(*keys, *measures).join(
        actual.select(*keys, *measures), on=keys, how="full", coalesce=True, suffix="_actual"
    )
    long = joined.select(
        *keys, *[pl.struct(expected=pl.col(m), actual=pl.col(f"{m}_actual")).alias(m) for m in measures]
    ).unpivot(index=keys, variable_name="measure").unnest("value")
    order = pl.col("measure").replace_strict(measures, list(range(len(measures))), return_dtype=pl.Int32)
    return long.filter(pl.col("expected").ne_missing(pl.col("actual"))).sort(*keys, order)


def _first_users(diff: pl.DataFrame, limit: int = MAX_EXAMPLES) -> pl.DataFrame:
    users = diff.select(pl.col("user_id").unique(maintain_order=True).head(limit))
    return diff.join(users, on="user_id", how="semi", maintain_order="left")


def _totals(frame: pl.DataFrame, measures: list[str]) -> dict[str, int]:
    return {m: int(v or 0) for m, v in frame.select(pl.col(m).sum() for m in measures).row(0, named=True).items()}


def reconcile(expected: pl.DataFrame, actual: pl.DataFrame) -> CheckOutcome:
    """Rule `reconciles_with_raw`. `expected`: `EXPECTED_SCHEMA` rows from raw; `actual`: the
    partition's summary rows (`SUMMARY_SCHEMA`). Fails if any user's message count or token sum
    differs, or a user is on one side only; the metadata names the first users that differ."""
    diff = _differences(expected, actual, ["user_id"], RECONCILED)
    users = diff["user_id"].n_unique()
    totals = _totals(expected, RECONCILED)
    md: dict[str, Any] = {
        "users_expected": expected.height,
        "users_actual": actual.height,
        "users_differing": users,
        "messages_expected": totals["message_count"],
        "total_tokens_expected": totals["total_tokens"],
        "expected_totals": totals,
        "actual_totals": _totals(actual, RECONCILED),
    }
    if users:
        md["first_differences"] = _rows(_first_users(diff), limit=10 * len(RECONCILED))
        first = diff.row(0, named=True)
        summary = (
            f"{users} user(s) differ from raw; first: {first['user_id']} {first['measure']} "
            f"expected {first['expected']}, actual {first['actual']}"
        )
    else:
        summary = f"{expected.height} users, {md['expected_totals']['message_count']} messages match raw"
    return CheckOutcome("reconciles_with_raw", users == 0, summary, md)


def rollup_consistency(rollup: pl.DataFrame, daily: pl.DataFrame) -> CheckOutcome:
    """Rule `rollup_matches_daily`. `rollup`: one weekly/monthly window's summary rows; `daily`: the
    daily summary rows inside that window (both `SUMMARY_SCHEMA`).

    Additive measures must be equal; cost_micro_usd may differ by the rounding of each stored value
    (at most (days + 1) / 2 micro-USD per user); conversation_count must lie between the largest
    daily count and the sum of the daily counts (a conversation can span days)."""
    days = daily.group_by("user_id").agg(
        *[pl.col(c).sum() for c in ADDITIVE],
        pl.col(COST).sum(),
        pl.len().alias("days"),
        pl.col("conversation_count").max().alias("conversations_max_day"),
        pl.col("conversation_count").sum().alias("conversations_sum_days"),
    )
    diff = _differences(days, rollup, ["user_id"], ADDITIVE)
    both = rollup.join(days, on="user_id", how="inner", suffix="_days")
    cost = both.filter((pl.col(COST) - pl.col(f"{COST}_days")).abs() * 2 > pl.col("days") + 1).select(
        "user_id", pl.lit(COST).alias("measure"), pl.col(f"{COST}_days").alias("expected"), pl.col(COST).alias("actual")
    )
    diff = pl.concat([diff, cost]).sort("user_id", maintain_order=True)
    convs = both.filter(
        (pl.col("conversation_count") < pl.col("conversations_max_day"))
        | (pl.col("conversation_count") > pl.col("conversations_sum_days"))
    ).select("user_id", "conversation_count", "conversations_max_day", "conversations_sum_days")
    users = diff["user_id"].n_unique()
    md: dict[str, Any] = {
        "users": rollup.height,
        "daily_rows": daily.height,
        "users_differing": users,
        "conversation_count_violations": convs.height,
        "rollup_totals": _totals(rollup, ADDITIVE),
        "daily_totals": _totals(daily, ADDITIVE),
    }
    if users:
        md["first_differences"] = _rows(_first_users(diff), limit=10 * len(ADDITIVE))
    if convs.height:
        md["conversation_count_examples"] = _rows(convs.sort("user_id"))
    passed = users == 0 and convs.height == 0
    if passed:
        summary = f"{rollup.height} users equal the sums of {daily.height} daily rows"
    else:
        summary = f"{users} user(s) differ from their daily rows, {convs.height} conversation_count violation(s)"
    return CheckOutcome("rollup_matches_daily", passed, summary, md)


def keys_and_values(
    rows: pl.DataFrame, by_model: pl.DataFrame, *, period_type: str, window_start: datetime, window_end: datetime
) -> CheckOutcome:
    """Rule `keys_and_values` over one window's user rows and by-model rows (`SUMMARY_SCHEMA`,
    `BY_MODEL_SCHEMA`); `window_start`/`window_end` are tz-aware instants. Counts each kind of
    violation; passes when every count is 0."""
    total = sum((pl.col(c) for c in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")), pl.lit(0))
    row_flags = {
        "negative_tokens": pl.any_horizontal(pl.col(c) < 0 for c in TOKENS),
        "reasoning_exceeds_output": pl.col("reasoning_tokens") > pl.col("output_tokens"),
        "total_mismatch": pl.col("total_tokens") != total,
        "window_mismatch": (pl.col("period_type") != period_type)
        | (pl.col("period_start") != pl.lit(window_start).dt.convert_time_zone("UTC"))
        | (pl.col("period_end") != pl.lit(window_end).dt.convert_time_zone("UTC")),
    }
    key = ["user_id", "period_type", "period_start"]
    flagged = pl.concat([
        rows.select("user_id", pl.lit(None, pl.String).alias("model"), pl.struct(key).is_duplicated().alias("duplicate_keys"), **row_flags),
        by_model.select("user_id", "model", pl.struct(*key, "model").is_duplicated().alias("duplicate_keys"), **row_flags),
    ])
    models = by_model.group_by("user_id").agg(*[pl.col(c).sum() for c in ADDITIVE], pl.col(COST).sum(), pl.len().alias("models"))
    by_model_diff = _differences(models, rows, ["user_id"], ADDITIVE)
    cost_diff = rows.join(models, on="user_id", how="inner", suffix="_models").filter(
        (pl.col(COST) - pl.col(f"{COST}_models")).abs() * 2 > pl.col("models") + 1
    )
    mismatched = pl.concat([by_model_diff.select("user_id"), cost_diff.select("user_id")]).unique(maintain_order=True)
    flags = ["duplicate_keys", *row_flags]
    counts = {**flagged.select(pl.col(flags).sum()).row(0, named=True), "by_model_mismatch": mismatched.height}
    md: dict[str, Any] = {"rows": rows.height, "by_model_rows": by_model.height, **counts}
    for k, n in counts.items():  # examples only for what failed
        if n:
            found = mismatched if k == "by_model_mismatch" else flagged.filter(k).select("user_id", "model")
            md[f"{k}_examples"] = _rows(found.sort("user_id"))
    bad = {k: n for k, n in counts.items() if n}
    summary = (", ".join(f"{k} {n}" for k, n in bad.items())) if bad else f"{rows.height} user rows and {by_model.height} by-model rows valid"
    return CheckOutcome("keys_and_values", not bad, summary, md)


def _ranges(keys: Sequence[str]) -> list[str]:
    """Sorted ISO dates -> runs of consecutive days as 'first…last' (or a single date)."""
    if not keys:
        return []
    runs = (
        pl.DataFrame({"d": pl.Series(keys).str.to_date()})
        .sort("d")
        .with_columns(run=(pl.col("d").diff().dt.total_days() != 1).fill_null(True).cum_sum())
        .group_by("run", maintain_order=True)
        .agg(pl.col("d").min().alias("a"), pl.col("d").max().alias("b"))
        .select(pl.when(pl.col("a") == pl.col("b")).then(pl.col("a").cast(pl.String))
                .otherwise(pl.col("a").cast(pl.String) + "…" + pl.col("b").cast(pl.String)))
    )
    return runs.to_series().to_list()


def completeness(expected_keys: Sequence[str], present_keys: Iterable[str]) -> CheckOutcome:
    """Rule `completeness` (WARN). `expected_keys`: the daily partition keys from the configured
    start date to the latest complete day; `present_keys`: the keys that have been materialized."""
    present = set(present_keys)
    gaps = sorted(k for k in expected_keys if k not in present)
    ranges = _ranges(gaps)
    md: dict[str, Any] = {
        "expected_partitions": len(expected_keys),
        "missing_partitions": len(gaps),
        "first_expected": expected_keys[0] if expected_keys else None,
        "last_expected": expected_keys[-1] if expected_keys else None,
    }
    if gaps:
        md["gaps"] = ranges[:100]
    summary = f"{len(gaps)} daily partition(s) missing: {', '.join(ranges[:5])}{' …' if len(ranges) > 5 else ''}" if gaps else (
        f"all {len(expected_keys)} daily partitions materialized"
    )
    return CheckOutcome("completeness", not gaps, summary, md)


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def pricing_coverage(by_model: pl.DataFrame, *, max_share: float = DEFAULT_MAX_UNPRICED_SHARE) -> CheckOutcome:
    """Rule `pricing_coverage` (WARN) over one window's by-model rows (`BY_MODEL_SCHEMA`).

    Unpriced tokens are the tokens of (user, model) rows that have unpriced messages (a model is
    priced or not for a whole day). Fails when either share exceeds `max_share` (a fraction)."""
    unpriced = by_model.filter(pl.col("unpriced_message_count") > 0)
    messages, tokens = (int(x or 0) for x in by_model.select(pl.col("message_count").sum(), pl.col("total_tokens").sum()).row(0))
    u_messages, u_tokens = (int(x or 0) for x in unpriced.select(pl.col("unpriced_message_count").sum(), pl.col("total_tokens").sum()).row(0))
    models = unpriced.group_by("model").agg(pl.col("unpriced_message_count").sum()).sort("unpriced_message_count", "model", descending=[True, False])
    md: dict[str, Any] = {
        "messages": messages,
        "unpriced_messages": u_messages,
        "unpriced_message_share": round(_share(u_messages, messages), 6),
        "total_tokens": tokens,
        "unpriced_tokens": u_tokens,
        "unpriced_token_share": round(_share(u_tokens, tokens), 6),
        "max_share": max_share,
        "unpriced_models": models["model"].to_list(),
    }
    passed = _share(u_messages, messages) <= max_share and _share(u_tokens, tokens) <= max_share
    summary = (
        f"{u_messages}/{messages} messages ({md['unpriced_message_share']:.2%}) and "
        f"{md['unpriced_token_share']:.2%} of tokens unpriced"
        + (f": {', '.join(md['unpriced_models'])}" if u_messages else "")
    )
    return CheckOutcome("pricing_coverage", passed, summary, md)


def quarantine_rate(
    messages: int, rejected_by_reason: Mapping[str, int], *, max_share: float = DEFAULT_MAX_QUARANTINE_SHARE
) -> CheckOutcome:
    """Rule `quarantine_rate` (WARN). `messages`: rows aggregated in the window; `rejected_by_reason`:
    quarantined raw rows of the window per reason. Fails when rejected / (messages + rejected) >
    `max_share` (a fraction)."""
    rejected = sum(rejected_by_reason.values())
    raw = messages + rejected
    share = _share(rejected, raw)
    md: dict[str, Any] = {
        "raw_rows": raw,
        "rejected_rows": rejected,
        "rejected_share": round(share, 6),
        "max_share": max_share,
        "rejected_by_reason": dict(sorted(rejected_by_reason.items())),
    }
    reasons = ", ".join(f"{r} {n}" for r, n in sorted(rejected_by_reason.items()))
    summary = f"{rejected}/{raw} raw rows ({share:.2%}) quarantined" + (f": {reasons}" if reasons else "")
    return CheckOutcome("quarantine_rate", share <= max_share, summary, md)


def duplicate_raw_rows(duplicates: pl.DataFrame) -> CheckOutcome:
    """Rule `no_duplicate_raw_rows` (WARN). `duplicates`: message_id (String), copies (Int64, > 1)
    for each id found more than once among the window's raw rows."""
    extra = int(duplicates["copies"].sum() - duplicates.height) if duplicates.height else 0
    md: dict[str, Any] = {"duplicate_ids": duplicates.height, "extra_rows": extra}
    if duplicates.height:
        md["examples"] = _rows(duplicates.sort("copies", "message_id", descending=[True, False]))
    summary = f"{duplicates.height} message id(s) repeated, {extra} extra row(s)" if duplicates.height else "no repeated message ids"
    return CheckOutcome("no_duplicate_raw_rows", duplicates.height == 0, summary, md)
