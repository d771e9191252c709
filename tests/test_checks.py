"""Each integrity rule passes on consistent input and fails, with the right figures, on broken input."""

from datetime import datetime, timezone

import polars as pl
import pytest

from usage_etl.checks import rules as checks

W0 = datetime(2026, 1, 5, tzinfo=timezone.utc)
W1 = datetime(2026, 1, 6, tzinfo=timezone.utc)
WEEK_END = datetime(2026, 1, 12, tzinfo=timezone.utc)


def row(user: str, *, start: datetime = W0, end: datetime = W1, period_type: str = "daily", model: str | None = None, **over) -> dict:
    """One consistent summary row: input 100, cache_creation 10, cache_read 20, output 50
    (reasoning 5), total 180, 2 messages, 1 conversation, cost 1.5 USD."""
    r = {
        "user_id": user, "period_type": period_type, "period_start": start, "period_end": end,
        "input_tokens": 100, "cache_creation_input_tokens": 10, "cache_read_input_tokens": 20,
        "output_tokens": 50, "reasoning_tokens": 5, "total_tokens": 180,
        "message_count": 2, "error_count": 0, "conversation_count": 1, "unpriced_message_count": 0,
        "cost_micro_usd": 1_500_000,
    }
    if model is not None:
        r["model"] = model
    return {**r, **over}


def frame(rows: list[dict], by_model: bool = False) -> pl.DataFrame:
    schema = checks.BY_MODEL_SCHEMA if by_model else checks.SUMMARY_SCHEMA
    return pl.DataFrame(rows, schema=schema)


def expected(rows: list[dict]) -> pl.DataFrame:
    return frame(rows).select(list(checks.EXPECTED_SCHEMA))


# --- reconciliation -------------------------------------------------------------------------------

def test_reconcile_passes_when_figures_match():
    out = checks.reconcile(expected([row("a"), row("b")]), frame([row("b"), row("a")]))
    assert out.passed and out.severity is checks.Severity.ERROR and out.rule.blocking
    assert out.metadata["users_differing"] == 0
    assert out.metadata["expected_totals"]["total_tokens"] == 360
    assert out.metadata["actual_totals"]["message_count"] == 4


def test_reconcile_fails_naming_user_and_numbers():
    actual = frame([row("a"), row("b", output_tokens=57, total_tokens=187)])
    out = checks.reconcile(expected([row("a"), row("b")]), actual)
    assert not out.passed
    assert out.metadata["users_differing"] == 1
    assert out.metadata["first_differences"] == [
        {"user_id": "b", "measure": "output_tokens", "expected": 50, "actual": 57},
        {"user_id": "b", "measure": "total_tokens", "expected": 180, "actual": 187},
    ]
    assert out.metadata["expected_totals"]["output_tokens"] == 100
    assert out.metadata["actual_totals"]["output_tokens"] == 107
    assert out.summary == "1 user(s) differ from raw; first: b output_tokens expected 50, actual 57"


def test_reconcile_fails_for_user_missing_from_summary():
    out = checks.reconcile(expected([row("a"), row("b")]), frame([row("a")]))
    assert not out.passed
    first = out.metadata["first_differences"][0]
    assert first == {"user_id": "b", "measure": "message_count", "expected": 2, "actual": None}


# --- rollup consistency ---------------------------------------------------------------------------

def _days(user: str, n: int = 2, **over) -> list[dict]:
    return [row(user, start=datetime(2026, 1, 5 + i, tzinfo=timezone.utc), end=datetime(2026, 1, 6 + i, tzinfo=timezone.utc), **over) for i in range(n)]


def _week(user: str, **over) -> dict:
    sums = {c: 2 * v for c, v in row(user).items() if c in checks.ADDITIVE or c == checks.COST}
    return row(user, start=W0, end=WEEK_END, period_type="weekly", **{**sums, "conversation_count": 1, **over})


def test_rollup_passes_when_week_equals_sum_of_days():
    out = checks.rollup_consistency(frame([_week("a"), _week("b")]), frame(_days("a") + _days("b")))
    assert out.passed, out.summary
    assert out.metadata["rollup_totals"]["total_tokens"] == 720 == out.metadata["daily_totals"]["total_tokens"]


def test_rollup_allows_cost_rounding_of_stored_values():
    # Two days stored as rounded micro-USD can differ from the week's own rounding by 1.
    assert checks.rollup_consistency(frame([_week("a", cost_micro_usd=3_000_001)]), frame(_days("a"))).passed
    out = checks.rollup_consistency(frame([_week("a", cost_micro_usd=3_000_002)]), frame(_days("a")))
    assert not out.passed
    assert out.metadata["first_differences"] == [{"user_id": "a", "measure": "cost_micro_usd", "expected": 3_000_000, "actual": 3_000_002}]


def test_rollup_fails_when_week_sum_differs():
    out = checks.rollup_consistency(frame([_week("a", input_tokens=199, total_tokens=359)]), frame(_days("a")))
    assert not out.passed
    assert out.metadata["first_differences"][0] == {"user_id": "a", "measure": "input_tokens", "expected": 200, "actual": 199}


@pytest.mark.parametrize("conversations", [0, 3])
def test_rollup_fails_when_conversation_count_out_of_bounds(conversations):
    # Days have 1 conversation each: the week must have between 1 (max) and 2 (sum).
    out = checks.rollup_consistency(frame([_week("a", conversation_count=conversations)]), frame(_days("a")))
    assert not out.passed
    assert out.metadata["conversation_count_examples"] == [
        {"user_id": "a", "conversation_count": conversations, "conversations_max_day": 1, "conversations_sum_days": 2}
    ]


# --- keys and values ------------------------------------------------------------------------------

def _by_model(user: str) -> list[dict]:
    # Two models that add up to `row(user)`; cost splits 0.7 + 0.8 USD.
    half = {"input_tokens": 50, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 10, "output_tokens": 25,
            "total_tokens": 90, "message_count": 1}
    return [row(user, model="m1", reasoning_tokens=5, cost_micro_usd=700_000, **half),
            row(user, model="m2", reasoning_tokens=0, cost_micro_usd=800_000, **half)]


def _kv(rows: list[dict], models: list[dict]) -> checks.CheckOutcome:
    return checks.keys_and_values(frame(rows), frame(models, by_model=True), period_type="daily", window_start=W0, window_end=W1)


def test_keys_and_values_pass():
    out = _kv([row("a"), row("b")], _by_model("a") + _by_model("b"))
    assert out.passed, out.summary
    assert out.metadata["rows"] == 2 and out.metadata["by_model_rows"] == 4


def _same(r: dict) -> list[dict]:
    return [{**r, "model": "m1"}]  # one model carrying the whole user row


VIOLATIONS = ["duplicate_keys", "negative_tokens", "reasoning_exceeds_output", "total_mismatch", "by_model_mismatch", "window_mismatch"]


@pytest.mark.parametrize(
    "rows, models, violation",
    [
        ([row("a"), row("a")], _by_model("a"), "duplicate_keys"),
        ([row("a", input_tokens=-1, total_tokens=79)], _same(row("a", input_tokens=-1, total_tokens=79)), "negative_tokens"),
        ([row("a", reasoning_tokens=51)], _same(row("a", reasoning_tokens=51)), "reasoning_exceeds_output"),
        ([row("a", total_tokens=181)], _same(row("a", total_tokens=181)), "total_mismatch"),
        ([row("a")], _by_model("a")[:1], "by_model_mismatch"),
        ([row("a")], [], "by_model_mismatch"),
        ([row("a", end=WEEK_END)], _same(row("a")), "window_mismatch"),
    ],
)
def test_keys_and_values_fail(rows, models, violation):
    out = _kv(rows, models)
    assert not out.passed
    assert {k for k in VIOLATIONS if out.metadata[k]} == {violation}
    assert out.metadata[f"{violation}_examples"][0]["user_id"] == "a"


def test_keys_and_values_cost_tolerance_for_by_model_rounding():
    models = _by_model("a")
    models[1]["cost_micro_usd"] = 800_001  # 2 models + user row: rounding allows 1 micro-USD
    assert _kv([row("a")], models).passed
    models[1]["cost_micro_usd"] = 800_002
    out = _kv([row("a")], models)
    assert not out.passed and out.metadata["by_model_mismatch"] == 1


# --- completeness ---------------------------------------------------------------------------------

KEYS = ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04", "2026-01-05"]


def test_completeness_passes_when_all_materialized():
    out = checks.completeness(KEYS, set(KEYS) | {"2025-12-31"})
    assert out.passed and out.severity is checks.Severity.WARN
    assert out.metadata["missing_partitions"] == 0


def test_completeness_lists_gaps_as_ranges():
    out = checks.completeness(KEYS, {"2026-01-01", "2026-01-04"})
    assert not out.passed
    assert out.metadata["missing_partitions"] == 3
    assert out.metadata["gaps"] == ["2026-01-02…2026-01-03", "2026-01-05"]
    assert out.summary == "3 daily partition(s) missing: 2026-01-02…2026-01-03, 2026-01-05"


# --- pricing coverage -----------------------------------------------------------------------------

def test_pricing_coverage_passes_when_all_priced():
    out = checks.pricing_coverage(frame(_by_model("a"), by_model=True))
    assert out.passed and out.metadata["unpriced_messages"] == 0 and out.metadata["unpriced_models"] == []


def test_pricing_coverage_fails_above_threshold_listing_models():
    models = _by_model("a") + [row("b", model="llama", message_count=1, unpriced_message_count=1, total_tokens=180, cost_micro_usd=0)]
    out = checks.pricing_coverage(frame(models, by_model=True))
    assert not out.passed and out.severity is checks.Severity.WARN
    assert out.metadata["messages"] == 3 and out.metadata["unpriced_messages"] == 1
    assert out.metadata["unpriced_message_share"] == pytest.approx(0.333333)
    assert out.metadata["unpriced_tokens"] == 180 and out.metadata["total_tokens"] == 360
    assert out.metadata["unpriced_models"] == ["llama"]
    # The same data passes with a threshold above both shares.
    assert checks.pricing_coverage(frame(models, by_model=True), max_share=0.5).passed


# --- quarantine rate ------------------------------------------------------------------------------

def test_quarantine_rate_passes_at_threshold():
    out = checks.quarantine_rate(99, {"missing_usage": 1})  # 1 of 100 raw rows = 1%
    assert out.passed and out.metadata["rejected_share"] == 0.01


def test_quarantine_rate_fails_above_threshold_by_reason():
    out = checks.quarantine_rate(98, {"negative_tokens": 1, "missing_usage": 1})
    assert not out.passed and out.severity is checks.Severity.WARN
    assert out.metadata["raw_rows"] == 100 and out.metadata["rejected_rows"] == 2
    assert out.metadata["rejected_by_reason"] == {"missing_usage": 1, "negative_tokens": 1}


# --- duplicate raw rows ---------------------------------------------------------------------------

DUPS_SCHEMA = {"message_id": pl.String, "copies": pl.Int64}


def test_duplicate_raw_rows_passes_without_duplicates():
    out = checks.duplicate_raw_rows(pl.DataFrame(schema=DUPS_SCHEMA))
    assert out.passed and out.metadata == {"duplicate_ids": 0, "extra_rows": 0}


def test_duplicate_raw_rows_counts_extra_rows():
    out = checks.duplicate_raw_rows(pl.DataFrame({"message_id": ["x", "y"], "copies": [2, 3]}, schema=DUPS_SCHEMA))
    assert not out.passed and out.severity is checks.Severity.WARN
    assert out.metadata["duplicate_ids"] == 2 and out.metadata["extra_rows"] == 3
    assert out.metadata["examples"][0] == {"message_id": "y", "copies": 3}


def test_rules_cover_each_period_type():
    assert [r.name for r in checks.rules_for("daily")] == [
        "reconciles_with_raw", "keys_and_values", "completeness", "pricing_coverage", "quarantine_rate", "no_duplicate_raw_rows"]
    assert [r.name for r in checks.rules_for("weekly") if r.blocking] == ["rollup_matches_daily", "keys_and_values"]
