"""Dagster asset checks that run the integrity rules (`checks.py`) on every partition.

One multi-asset check per asset (`daily_user_usage_checks`, …) holds a partitioned
`AssetCheckSpec` per rule. Selecting an asset selects its checks, so a materialization run
evaluates them in a step right after the asset's step, on the same partitions; they can also be
run alone from the UI (or `dagster asset check`) to re-verify partitions, e.g. after late data.

Per-partition results: Dagster 1.13's `AssetCheckResult` carries no partition and takes the run's
single partition key, while our runs cover ranges (single-run backfills). So the step yields one
`AssetCheckEvaluation(partition=key)` per rule and partition (Dagster stores a planned row per
partition of a partitioned check and fills it from these). Partitioned checks are a preview API
in 1.13 (the warning is silenced here on purpose); tests/test_asset_checks.py pins the behaviour.

Blocking: a failed blocking ERROR check fails its step and the run. Weekly and monthly
partitions cannot share a run with daily ones (different partitions definitions), so the
rollup assets also call `require_daily_checks_passed`, which refuses to roll up a window while a
blocking check of one of its days last failed, whichever way the rollup was launched.
"""

# No `from __future__ import annotations`: Dagster inspects the context annotation at definition time.
import warnings
from collections.abc import Sequence
from typing import Any

import dagster as dg
import polars as pl
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,  # not exported; what AssetCheckResult fills in itself
)

from usage_etl import check_runner, checks, partitions
from usage_etl.config import Settings
from usage_etl.resources import PostgresResource

_SEVERITY = {checks.Severity.ERROR: dg.AssetCheckSeverity.ERROR, checks.Severity.WARN: dg.AssetCheckSeverity.WARN}


def _md_table(rows: Sequence[dict[str, Any]]) -> str:
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join("" if r.get(c) is None else str(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def to_metadata(md: dict[str, Any]) -> dict[str, Any]:
    """Outcome metadata -> Dagster metadata: numbers stay numbers (plotted in the UI), example
    rows become markdown tables, other lists and dicts JSON."""
    out: dict[str, Any] = {}
    for k, v in md.items():
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            out[k] = dg.MetadataValue.md(_md_table(v))
        elif isinstance(v, (list, dict)):
            out[k] = dg.MetadataValue.json(v)
        elif v is None:
            out[k] = dg.MetadataValue.null()
        else:
            out[k] = v
    return out


def _targets(instance: dg.DagsterInstance, asset_key: dg.AssetKey, keys: Sequence[str]) -> dict[str, Any]:
    """Latest materialization of each partition, so the UI ties each evaluation to it."""
    found: dict[str, Any] = {}

    def take(records) -> None:
        for r in records:  # newest first
            if r.partition_key not in found:
                found[r.partition_key] = AssetCheckEvaluationTargetMaterializationData(
                    storage_id=r.storage_id, run_id=r.run_id, timestamp=r.timestamp
                )

    take(instance.fetch_materializations(dg.AssetRecordsFilter(asset_key, asset_partitions=list(keys)), limit=len(keys)).records)
    for key in set(keys) - found.keys():  # partitions rematerialized less recently than the others
        take(instance.fetch_materializations(dg.AssetRecordsFilter(asset_key, asset_partitions=[key]), limit=1).records)
    return found


def _specs(asset_key: dg.AssetKey, period_type: str, pdef: dg.PartitionsDefinition) -> list[dg.AssetCheckSpec]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)  # partitions_def on a check: used on purpose
        return [
            dg.AssetCheckSpec(r.name, asset=asset_key, description=r.description, blocking=r.blocking, partitions_def=pdef)
            for r in checks.rules_for(period_type)
        ]


def _build(
    settings: Settings, period_type: str, asset_key: dg.AssetKey, daily_key: dg.AssetKey, thresholds: check_runner.Thresholds | None
) -> dg.AssetChecksDefinition:
    pdef = partitions.build(settings)[period_type]

    @dg.multi_asset_check(
        specs=_specs(asset_key, period_type, pdef),
        name=f"{asset_key.path[-1]}_checks",
        can_subset=True,
        pool="usage_etl_db",
        description=f"Integrity rules on each {period_type} partition (usage_etl/checks.py).",
    )
    def _checks(context: dg.AssetCheckExecutionContext, db: PostgresResource):
        keys = context.partition_keys
        selected = {k.name for k in context.selected_asset_check_keys}
        materialized = context.instance.get_materialized_partitions(daily_key) if period_type == "daily" else set()
        results = check_runner.evaluate(
            db.url(), settings, period_type, keys, materialized_daily=materialized, thresholds=thresholds or check_runner.Thresholds.from_env()
        )
        targets = _targets(context.instance, asset_key, keys)
        failed: list[str] = []
        for key, outcomes in results.items():
            for o in outcomes:
                if o.check not in selected:
                    continue
                if not o.passed:
                    failed.append(f"{key} {o.check} ({o.severity.value}): {o.summary}")
                yield dg.AssetCheckEvaluation(
                    asset_key=asset_key,
                    check_name=o.check,
                    passed=o.passed,
                    metadata=to_metadata(o.metadata),
                    target_materialization_data=targets.get(key),
                    severity=_SEVERITY[o.severity],
                    description=o.summary,
                    blocking=o.rule.blocking,
                    partition=key,
                )
        context.log.info(f"{len(selected)} checks on {len(keys)} {period_type} partition(s): {len(failed)} failed")
        for line in failed:
            context.log.warning(line)

    return _checks


def build_asset_checks(
    settings: Settings, assets: Sequence[dg.AssetsDefinition], thresholds: check_runner.Thresholds | None = None
) -> list[dg.AssetChecksDefinition]:
    """The checks of the daily, weekly and monthly assets of `assets.build_assets(settings)`.

    `thresholds` None: read from the environment at run time (`Thresholds.from_env`)."""
    by_name = {a.key.path[-1]: a.key for a in assets}
    daily_key = by_name["daily_user_usage"]
    return [_build(settings, pt, by_name[f"{pt}_user_usage"], daily_key, thresholds) for pt in ("daily", "weekly", "monthly")]


def blocking_daily_checks(daily_key: dg.AssetKey) -> list[dg.AssetCheckKey]:
    return [dg.AssetCheckKey(daily_key, r.name) for r in checks.rules_for("daily") if r.blocking]


def require_daily_checks_passed(context: dg.AssetExecutionContext, daily_key: dg.AssetKey) -> None:
    """Raise `dg.Failure` when the latest evaluation of a blocking daily check failed for a day in
    this run's time window. Days never checked do not block."""
    tw = context.partition_time_window
    days = pl.date_range(tw.start.date(), tw.end.date(), closed="left", eager=True).cast(pl.String).to_list()
    info = context.instance.event_log_storage.get_asset_check_partition_info(blocking_daily_checks(daily_key), partition_keys=days)
    failed = sorted((i.partition_key, i.check_key.name) for i in info if i.latest_execution_status.value == "FAILED")
    if failed:
        listed = ", ".join(f"{day} {name}" for day, name in failed[:10]) + (" …" if len(failed) > 10 else "")
        raise dg.Failure(
            description=f"not rolled up: blocking checks of {daily_key.to_user_string()} failed for {len(failed)} day(s): {listed}. "
            "Fix and rematerialize those days (their checks run again), then retry.",
            metadata={"failed_daily_checks": dg.MetadataValue.json([{"partition": d, "check": n} for d, n in failed])},
        )
