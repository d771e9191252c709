"""Dagster asset checks that run the integrity rules (`checks.py`) on every partition.

Each asset (daily, weekly, monthly) declares one partitioned, blocking check, `integrity`
(`check_specs`), and evaluates it in its own step right after writing, on each partition of the run
(`start`, then `evaluations()`). The evaluation's metadata carries each rule's verdict (`<rule>/passed`) and figures;
its severity is ERROR when an ERROR rule failed (reconciliation, rollup consistency, keys and
values), which fails the step and blocks what depends on it, and WARN when only WARN rules failed.

Why in the asset's step and one check: every check evaluation, and every step, is stored as events
in Dagster's storage, tens of ms each on the default SQLite instance. A separate check step, or one
check per rule, cost more than the rules themselves and took the checks well past 20% of a
partition's run time (bench/checks_overhead.py measures it). The price: Dagster cannot run the
check without rematerializing; `usage-etl check` re-verifies any range without writing.

Per-partition results: Dagster 1.13's `AssetCheckResult` carries no partition and takes the run's
single partition key, while our runs cover ranges (single-run backfills). So the step yields one
`AssetCheckEvaluation(partition=key)` per partition (Dagster plans one row per partition of a
partitioned check and fills it from these). Partitioned checks are a preview API in 1.13 (its
warning is silenced here on purpose); tests/test_asset_checks.py pins the behaviour.

Weekly and monthly partitions cannot share a run with daily ones (different partitions
definitions), so Dagster's blocking never reaches them; the rollup assets call
`require_daily_checks_passed`, which refuses to roll up a window while the check of one of its
days last failed with ERROR, however the rollup was launched.
"""

# No `from __future__ import annotations`: Dagster inspects the context annotation at definition time.
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Iterator, Sequence
from typing import Any

import dagster as dg
import polars as pl
import sqlalchemy as sa

from usage_etl import pipeline
from usage_etl.checks import runner as check_runner
from usage_etl.checks import rules as checks
from usage_etl.defs.dagster_internals import AssetCheckEvaluationTargetMaterializationData, PartitionKeyFilter
from usage_etl.settings import Settings, Thresholds

_SEVERITY = {checks.Severity.ERROR: dg.AssetCheckSeverity.ERROR, checks.Severity.WARN: dg.AssetCheckSeverity.WARN}


def _md_table(rows: Sequence[dict[str, Any]]) -> str:
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join("" if r.get(c) is None else str(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def _cell(text: str) -> str:
    """A markdown table cell: no line breaks, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


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


CHECK = "integrity"


def _description(period_type: str) -> str:
    rules = checks.rules_for(period_type)
    return (
        "All integrity rules of the partition; the metadata holds each rule's verdict (`<rule>/passed`) and "
        "figures. Fails with ERROR (blocking downstream) when a rule of severity ERROR fails, with WARN when "
        "only WARN rules fail.\n\n" + "\n".join(f"- {r.name} ({r.severity.value}): {r.description}" for r in rules)
    )


def combine(outcomes: list[checks.CheckOutcome]) -> dict[str, Any]:
    """A partition's rule outcomes -> AssetCheckEvaluation fields (passed, severity, description,
    metadata). Severity ERROR when an ERROR rule failed, else WARN; failed rules listed ERROR first.
    Metadata starts with `all_rules` (text: each rule, its severity and pass/FAIL, read at a glance)
    and `all_rules_detail` (a table: rule | severity | result | detail), named to sort first as the
    UI lists metadata by name; then `<rule>/<figure>` keys, passing rules only their scalar figures."""
    failed = sorted((o for o in outcomes if not o.passed), key=lambda o: o.severity is not checks.Severity.ERROR)
    worst = failed[0].severity if failed else checks.Severity.ERROR
    md: dict[str, Any] = {
        "all_rules": "; ".join(f"{o.check} ({o.severity.value}) {'pass' if o.passed else 'FAIL'}" for o in outcomes),
        "all_rules_detail": [
            {"rule": o.check, "severity": o.severity.value, "result": "pass" if o.passed else "FAIL", "detail": _cell(o.summary)}
            for o in outcomes
        ],
    }
    for o in outcomes:
        md[f"{o.check}/passed"] = o.passed
        # A passing rule shows its figures; lists and tables only come with a failure (every
        # evaluation is stored twice in Dagster's event storage, once per partition).
        md.update({f"{o.check}/{k}": v for k, v in o.metadata.items() if not o.passed or not isinstance(v, (list, dict))})
    description = "; ".join(f"{o.check} ({o.severity.value}): {o.summary}" for o in failed) if failed else (
        f"{len(outcomes)} rules pass: " + ", ".join(o.check for o in outcomes)
    )
    return {"passed": not failed, "severity": _SEVERITY[worst], "description": description, "metadata": to_metadata(md)}


def check_specs(asset_name: str, period_type: str, pdef: dg.PartitionsDefinition) -> list[dg.AssetCheckSpec]:
    """The `integrity` check of asset `asset_name`, partitioned like it, blocking."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)  # partitions_def on a check: used on purpose
        return [dg.AssetCheckSpec(CHECK, asset=asset_name, description=_description(period_type), blocking=True, partitions_def=pdef)]


class PendingChecks:
    """The rules of a run's partitions, evaluated in a background thread as each partition is
    written (`submit`): their queries overlap the writing of the next partitions and Dagster
    recording the materialization, instead of adding to the step's time."""

    def __init__(self, context: dg.AssetExecutionContext, engine: sa.Engine, settings: Settings, period_type: str,
                 daily_key: dg.AssetKey, thresholds: Thresholds | None) -> None:
        self.context, self.period_type = context, period_type
        self.asset_key = context.asset_key
        self.selected = dg.AssetCheckKey(self.asset_key, CHECK) in context.selected_asset_check_keys
        self.keys: list[str] = []
        self._futures: list[Future] = []
        if not self.selected:
            return  # an asset built without its check (bench/checks_overhead.py)
        run_keys = context.partition_keys
        # This run's partitions count as materialized: they are, by the time the result is read.
        self._materialized = (context.instance.get_materialized_partitions(daily_key) | set(run_keys)) if period_type == "daily" else set()
        self._thresholds = thresholds or Thresholds.from_env()
        self._engine, self._settings = engine, settings
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="usage_etl_checks")

    def audit(self) -> pipeline.Audit | None:
        """How the pipeline evaluates the rules inside each partition's write transaction (None when
        the check is not selected); a failure is reported by this check rather than raised."""
        if not self.selected:
            return None
        return pipeline.Audit(frozenset(self._materialized), self._thresholds, raise_on_error=False)

    def submit(self, key: str, result: pipeline.PartitionResult | None = None) -> None:
        """Start evaluating the rules on partition `key`, which is written; a `result` whose audit
        already evaluated them (inside its write transaction) is reported as it is."""
        if not self.selected:
            return
        self.keys.append(key)
        if result is not None and result.audit:
            done: Future = Future()
            done.set_result({key: result.audit})
            self._futures.append(done)
            return
        self._futures.append(self._pool.submit(
            check_runner.evaluate, self._engine, self._settings, self.period_type, [key],
            materialized_daily=self._materialized, thresholds=self._thresholds,
        ))

    def evaluations(self) -> Iterator[dg.AssetCheckEvaluation | dg.Output]:
        """One `integrity` evaluation per partition, then the check's output. Yield from it after
        the asset's `MaterializeResult`. Re-raises what the evaluation raised."""
        if not self.selected:
            return
        try:
            results = {k: v for f in self._futures for k, v in f.result().items()}
        finally:
            self._pool.shutdown(cancel_futures=True)
        targets = _targets(self.context.instance, self.asset_key, self.keys)
        errors: list[str] = []
        for key, outcomes in results.items():
            errors += [f"{key} {o.check}: {o.summary}" for o in outcomes if not o.passed and o.severity is checks.Severity.ERROR]
            yield dg.AssetCheckEvaluation(
                asset_key=self.asset_key, check_name=CHECK, target_materialization_data=targets.get(key), blocking=True,
                partition=key, **combine(outcomes),
            )
        check_key = dg.AssetCheckKey(self.asset_key, CHECK)
        yield dg.Output(None, output_name=self.context.assets_def.get_output_name_for_asset_check_key(check_key))
        # Every log line is an event in the run's storage; the evaluations carry the details.
        if errors:
            self.context.log.error(f"{len(errors)} ERROR rule(s) failed on {self.period_type} partitions:\n" + "\n".join(errors[:20]))


def start(
    context: dg.AssetExecutionContext,
    engine: sa.Engine,
    settings: Settings,
    period_type: str,
    daily_key: dg.AssetKey,
    thresholds: Thresholds | None = None,
) -> PendingChecks:
    """Prepare the rules of the run's partitions: call `pending.submit(key)` as each partition is
    written, then `yield from pending.evaluations()` after the `MaterializeResult`.

    `daily_key`: the daily asset (completeness). `thresholds` None: from the environment.
    Raises ConfigError if a threshold variable is malformed.
    """
    return PendingChecks(context, engine, settings, period_type, daily_key, thresholds)


def failed_with_error(instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition_keys: Sequence[str]) -> dict[str, str]:
    """{partition key: the evaluation's description} of the partitions of `partition_keys` whose
    latest `integrity` evaluation failed with ERROR severity. WARN failures and partitions never
    checked are left out."""
    key = dg.AssetCheckKey(asset_key, CHECK)
    storage = instance.event_log_storage
    failed = sorted(i.partition_key for i in storage.get_asset_check_partition_info([key], partition_keys=list(partition_keys))
                    if i.latest_execution_status.value == "FAILED")
    blocked: dict[str, str] = {}
    for partition in failed:  # usually none; FAILED does not tell ERROR from WARN, the evaluation does
        latest = storage.get_asset_check_execution_history(key, limit=1, partition_filter=PartitionKeyFilter(key=partition))
        evaluation = latest[0].evaluation if latest else None
        if evaluation is not None and evaluation.severity == dg.AssetCheckSeverity.ERROR:
            blocked[partition] = evaluation.description or ""
    return blocked


def require_daily_checks_passed(context: dg.AssetExecutionContext, daily_key: dg.AssetKey) -> None:
    """Raise `dg.Failure` when the latest evaluation of the daily check failed with ERROR severity
    for a day in this run's time window. WARN failures and days never checked do not block."""
    tw = context.partition_time_window
    days = pl.date_range(tw.start.date(), tw.end.date(), closed="left", eager=True).cast(pl.String).to_list()
    blocked = failed_with_error(context.instance, daily_key, days)
    if blocked:
        listed = "; ".join(f"{day}: {why}" for day, why in list(blocked.items())[:5]) + (" …" if len(blocked) > 5 else "")
        raise dg.Failure(
            description=f"not rolled up: the {CHECK} check of {daily_key.to_user_string()} failed with ERROR for "
            f"{len(blocked)} day(s). {listed}. Fix and rematerialize those days (their checks run again), then retry.",
            metadata={"blocked_days": dg.MetadataValue.json(sorted(blocked))},
            allow_retries=False,  # retrying cannot help until the days are fixed
        )
