"""When the usage assets run: nightly run with catch-up, retries, rollups, batching, freshness.

All of it runs in the Dagster daemon; there is no loop or scheduler of our own.

- **Nightly + catch-up** (sensor `usage_etl_nightly`): on its first evaluation after the nightly
  cron tick (01:00 in the business timezone) it requests, as ONE Dagster backfill, every daily
  partition since the start date that is missing or whose latest run failed, and the weeks and
  months over them. On a normal night that is yesterday, its week and its month; after an outage
  of N days it is all N days at once (no `max_catchup_runs` cap: the sensor looks at partitions,
  not at missed ticks). The backfill runs days before the weeks and months above them, in runs of
  at most `batch_size` contiguous partitions, oldest first.
- **Failed partitions** stay "missing or failed" and are requested again on the next nightly tick.
  A partition whose latest `integrity` check failed with ERROR counts as failed too, although
  Dagster shows it materialized (the step wrote it, then the blocking check failed the step).
- **Gate for weeks and months**: requested only when every existing day of theirs is materialized
  with no ERROR from its check, or in the same backfill without one, and never while one of their
  days is running; a new week or month with no day yet is not materialized (dagster issues
  #25723, #34094). A week over a day whose check failed with ERROR waits until a rerun of the
  day passes; then `rollup_condition` (or the next nightly tick) rolls it up.
- **Ingestion first**: with a Claude Code source configured, the unpartitioned ingestion asset
  (`claude_code_messages`, upstream of the days) is part of every backfill that runs days, so the
  daemon lands new transcript lines before it aggregates the days they belong to.
- **Late-arriving data**: `late_data` requests changed days the same way (one backfill).
- **Rollups after any other run of a day** (e.g. from the UI's Materialize dialog, or a nightly
  rerun of a day whose check had failed): declarative automation on the weekly and monthly assets
  (sensor `usage_etl_automation`, evaluated in the code server for its custom condition).

Why a sensor and not `AutomationCondition` for the days: declarative automation cannot see a daily
request from a weekly partition (`will_be_requested` only spans assets with the same partitions)
and emits a backfill only when an asset gets more than one partition, so a normal night would
launch the day, its week and its month as three separate runs racing each other.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import dagster as dg
import polars as pl

from usage_etl.defs import asset_checks
from usage_etl.defs.dagster_internals import AssetGraphSubset, BulkActionsFilter, BulkActionStatus
from usage_etl.settings import AutomationSettings, Settings
from usage_etl.sources import claude_code

AC = dg.AutomationCondition
GRANULARITIES = ("daily", "weekly", "monthly")
ASSET_KEYS = {g: dg.AssetKey(f"{g}_user_usage") for g in GRANULARITIES}
TARGET = dg.AssetSelection.assets(*ASSET_KEYS.values())
NIGHTLY_SENSOR = "usage_etl_nightly"
AUTOMATION_SENSOR = "usage_etl_automation"


# --- which partitions to run --------------------------------------------------------------------

# status: materialized | failed | check_failed | running, null = never. check_failed: materialized,
# but the latest `integrity` check of the partition failed with ERROR.
STATUS_SCHEMA = {"key": pl.String(), "status": pl.String()}
REDO = ["failed", "check_failed"]
_STATUS_NAMES = {dg.AssetPartitionStatus.MATERIALIZED: "materialized", dg.AssetPartitionStatus.FAILED: "failed", dg.AssetPartitionStatus.IN_PROGRESS: "running"}


def plan(daily: pl.DataFrame, weekly: pl.DataFrame, monthly: pl.DataFrame, *, missing: bool, days: Iterable[str] = ()) -> dict[str, list[str]]:
    """The partitions one backfill should run, by granularity, each list sorted (oldest first).

    Inputs are `STATUS_SCHEMA` frames of all current partitions of each asset. Days run if listed in
    `days` or (with `missing`) never materialized, failed or check_failed, unless running. A week or
    month runs if it has an existing day, none of its days is running, left missing/failed or
    check_failed (a rerun must pass the check first), and a day of it runs — or (with `missing`) it
    is itself missing, failed or check_failed.
    """
    status = pl.col("status")
    idle = (status != "running").fill_null(True)
    redo = status.is_null() | status.is_in(REDO)
    d = daily.with_columns(day=pl.col("key").str.to_date("%Y-%m-%d")).with_columns(
        due=idle & ((redo & missing) | pl.col("key").is_in(list(days))),
        done=(status == "materialized").fill_null(False),
        blocked=(status == "check_failed").fill_null(False),
        weekly=pl.col("day").dt.truncate("1w").dt.to_string("%Y-%m-%d"),
        monthly=pl.col("day").dt.truncate("1mo").dt.to_string("%Y-%m-%d"),
    )
    out = {"daily": sorted(d.filter("due")["key"].to_list())}
    for g, rollups in (("weekly", weekly), ("monthly", monthly)):
        over = d.group_by(pl.col(g).alias("key")).agg(
            has_due=pl.col("due").any(), ready=((pl.col("due") | pl.col("done")) & ~pl.col("blocked")).all()
        )
        wanted = rollups.join(over, on="key", how="inner").filter(pl.col("ready") & idle & (pl.col("has_due") | (redo & missing)))
        out[g] = sorted(wanted["key"].to_list())
    return out


def statuses(instance: dg.DagsterInstance, parts: dict[str, dg.TimeWindowPartitionsDefinition], now: datetime) -> dict[str, pl.DataFrame]:
    """`STATUS_SCHEMA` frames of every current partition of the three assets, from the instance's
    partition status (what the UI shows); partitions of an unfinished backfill count as running,
    materialized ones whose latest `integrity` check failed with ERROR as check_failed."""
    busy: dict[dg.AssetKey, set[str]] = {k: set() for k in ASSET_KEYS.values()}
    active = instance.get_backfills(filters=BulkActionsFilter(statuses=[BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING]))
    for backfill in active:
        target = backfill.asset_backfill_data.target_subset if backfill.asset_backfill_data else None
        for key in (target.partitions_subsets_by_asset_key if target else {}):
            if key in busy:
                busy[key] |= set(target.get_partitions_subset(key).get_partition_keys())
    frames = {}
    for g, key in ASSET_KEYS.items():
        keys = parts[g].get_partition_keys(current_time=now)
        by_key = instance.get_status_by_partition(key, keys, parts[g]) or {}
        names = ["running" if k in busy[key] else _STATUS_NAMES.get(by_key.get(k)) for k in keys]
        broken = asset_checks.failed_with_error(instance, key, [k for k, n in zip(keys, names) if n == "materialized"])
        names = ["check_failed" if k in broken else n for k, n in zip(keys, names)]
        frames[g] = pl.DataFrame({"key": keys, "status": names}, schema=STATUS_SCHEMA)
    return frames


def ingestion_keys(settings: Settings) -> set[dg.AssetKey]:
    """The unpartitioned ingestion asset upstream of the days ({} without a Claude Code source)."""
    return {dg.AssetKey(claude_code.MESSAGES_TABLE)} if settings.source_config.claude_code else set()


def backfill_request(
    parts: dict[str, dg.TimeWindowPartitionsDefinition],
    wanted: dict[str, list[str]],
    tags: dict[str, str],
    ingest: Iterable[dg.AssetKey] = (),
) -> dg.RunRequest:
    """One Dagster backfill of `wanted` partitions (the daemon orders days before rollups), with
    the unpartitioned `ingest` assets when days are wanted: the daemon runs them before the days."""
    subset = AssetGraphSubset(
        partitions_subsets_by_asset_key={ASSET_KEYS[g]: parts[g].subset_with_partition_keys(ks) for g, ks in wanted.items() if ks},
        non_partitioned_asset_keys=set(ingest) if wanted.get("daily") else set(),
    )
    return dg.RunRequest.for_asset_graph_subset(asset_graph_subset=subset, tags=tags)


def describe(wanted: dict[str, list[str]]) -> str:
    return ", ".join(f"{g} {len(ks)} ({ks[0]}..{ks[-1]})" if len(ks) > 1 else f"{g} {ks[0]}" for g, ks in wanted.items() if ks)


def build_nightly_sensor(settings: Settings, auto: AutomationSettings, parts: dict[str, dg.TimeWindowPartitionsDefinition]) -> dg.SensorDefinition:
    """The nightly run with catch-up (see module doc). The cursor is the previous evaluation time:
    the first evaluation only starts the clock; catch-up starts at the next nightly tick. With a
    Claude Code source the backfill ingests new transcript lines first (`ingestion_keys`)."""
    ingest = ingestion_keys(settings)

    @dg.sensor(
        name=NIGHTLY_SENSOR,
        asset_selection=TARGET | dg.AssetSelection.assets(*ingest),
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"At {auto.nightly_cron} ({settings.timezone}): one backfill of every missing or failed day "
        "since the start date, then the weeks and months over them.",
    )
    def usage_etl_nightly(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        now = datetime.now(timezone.utc)
        tick = latest_tick(auto.nightly_cron, now, settings.timezone)
        cursor = now.isoformat()
        if not context.cursor:
            return dg.SensorResult(skip_reason="first evaluation: catch-up starts at the next nightly tick", cursor=cursor)
        if tick <= datetime.fromisoformat(context.cursor):
            return dg.SensorResult(skip_reason=f"waiting for the nightly tick after {tick.isoformat()}", cursor=cursor)
        wanted = plan(**statuses(context.instance, parts, now), missing=True)
        if not any(wanted.values()):
            return dg.SensorResult(skip_reason=f"nightly tick {tick.isoformat()}: nothing to run (every partition is materialized or running)", cursor=cursor)
        context.log.info(f"nightly tick {tick.isoformat()}: backfill of {describe(wanted)}")
        return dg.SensorResult(run_requests=[backfill_request(parts, wanted, {"usage_etl/trigger": "nightly"}, ingest)], cursor=cursor)

    return usage_etl_nightly


# --- definitions attributes of the assets ---------------------------------------------------------


class DayCheckFailedWithError(dg.AutomationCondition):
    """True for the week and month partitions over a day whose latest `integrity` check failed with
    ERROR (what `asset_checks.require_daily_checks_passed` refuses to roll up).

    Not `AC.any_deps_match(AC.any_checks_match(AC.check_failed(), blocking_only=True))`: Dagster's
    check_failed is true for WARN failures too, and WARN (e.g. a completeness gap left by an
    earlier batch of a catch-up) must not hold back a rollup. Custom, so the sensor evaluating it
    runs in the code server (`automation_sensor`)."""

    @property
    def name(self) -> str:
        return "a day's integrity check failed with ERROR"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        daily = ASSET_KEYS["daily"]
        days = context.candidate_subset.compute_parent_subset(daily)
        broken = asset_checks.failed_with_error(context.asset_graph_view.instance, daily, sorted(days.expensively_compute_partition_keys()))
        if not broken:
            return dg.AutomationResult(context, context.get_empty_subset())
        over = days.compute_intersection_with_partition_keys(set(broken)).compute_child_subset(context.key)
        return dg.AutomationResult(context, context.candidate_subset.compute_intersection(over))


def days_digest(instance: dg.DagsterInstance, daily_key: dg.AssetKey, partitions_def: dg.TimeWindowPartitionsDefinition, key: str) -> str | None:
    """SHA-256 (hex) over the `grain_digest` of each existing day of the week or month `key`, from
    each day's latest materialization; None when a day has none (never materialized, or recorded
    without figures), so the caller cannot mistake unknown for unchanged."""
    import hashlib

    tw = partitions_def.time_window_for_partition_key(key)
    days = pl.date_range(tw.start.date(), tw.end.date(), closed="left", eager=True).cast(pl.String).to_list()
    digests = []
    for day in days:
        records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=daily_key, asset_partitions=[day]), limit=1).records
        if not records:
            continue  # a day not yet in the partitions (week or month in progress) is not part of it
        value = records[0].asset_materialization.metadata.get("grain_digest")
        if value is None:
            return None
        digests.append(f"{day}:{value.value}")
    return hashlib.sha256(",".join(digests).encode("ascii")).hexdigest() if digests else None


class DaysChangedSinceRollup(dg.AutomationCondition):
    """True for the week and month partitions whose days' grains differ from what their latest
    materialization rolled up (`daily_grain_digest` vs `days_digest` now), or where either is
    unknown. An identical rerun of a day (same grain digest) leaves its week and month alone."""

    @property
    def name(self) -> str:
        return "a day's grain differs from the one rolled up"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        instance, pdef = context.asset_graph_view.instance, context.partitions_def
        changed = set()
        for key in context.candidate_subset.expensively_compute_partition_keys():
            latest = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=context.key, asset_partitions=[key]), limit=1).records
            rolled = latest[0].asset_materialization.metadata.get("daily_grain_digest") if latest else None
            now = days_digest(instance, ASSET_KEYS["daily"], pdef, key)
            if rolled is None or now is None or rolled.value != now:
                changed.add(key)
        return dg.AutomationResult(context, context.candidate_subset.compute_intersection_with_partition_keys(changed))


def rollup_condition() -> dg.AutomationCondition:
    """Weeks and months re-run after any run of one of their days outside a backfill that already
    includes them (e.g. a day re-run from the UI), once no day of theirs is missing or running and
    none's latest check failed with ERROR. The update stays pending (`since_last_handled`) while a
    day is blocked, so the rollup follows the day's passing rerun. A rerun that leaves a day's grain
    as it was (`DaysChangedSinceRollup`) does not roll up again."""
    has_days = AC.any_deps_match(AC.missing() | ~AC.missing()).with_label("has a day")
    # Each part is labelled: the automation sensor's evaluations in the UI then say which one held
    # a week or month back (its own skip line is Dagster's, "returned an empty result").
    return (
        AC.any_deps_updated().since_last_handled().with_label("a day was updated since the last rollup")
        & has_days
        & (~AC.any_deps_missing()).with_label("no day missing")
        & (~AC.any_deps_in_progress()).with_label("no day running")
        & (~AC.in_progress()).with_label("not running itself")
        & ~DayCheckFailedWithError()
        & DaysChangedSinceRollup()
    ).with_label("usage_etl rollup after a day changed")


def backfill_policy(auto: AutomationSettings) -> dg.BackfillPolicy:
    """Runs of a backfill cover at most `batch_size` partitions (0: the whole range)."""
    if auto.batch_size == 0:
        return dg.BackfillPolicy.single_run()
    return dg.BackfillPolicy.multi_run(max_partitions_per_run=auto.batch_size)


_TICK_FORMAT = "%Y-%m-%dT%H:%M:%S%z"


def latest_tick(cron: str, now: datetime, tz: str, lookback: timedelta = timedelta(days=62)) -> datetime:
    """The latest tick of `cron` (in `tz`) at or before `now`, as Dagster computes it.

    Public API only: the period in progress of a cron-partitioned definition (end_offset=1) starts
    at the latest tick, DST transitions handled as in Dagster's schedules. `lookback` must hold at
    least one tick (62 days covers monthly crons).
    """
    start = (now - lookback).astimezone(ZoneInfo(tz)).strftime(_TICK_FORMAT)
    pdef = dg.TimeWindowPartitionsDefinition(start=start, cron_schedule=cron, timezone=tz, fmt=_TICK_FORMAT, end_offset=1)
    return datetime.strptime(pdef.get_partition_keys(current_time=now)[-1], _TICK_FORMAT)


def freshness_policy(settings: Settings, auto: AutomationSettings) -> dg.FreshnessPolicy:
    """Fresh when materialized between the nightly tick and the deadline (01:00-02:00 by default):
    an asset still carrying yesterday's materialization at 02:00 shows as failing freshness."""
    tz = settings.timezone
    # any ordinary day serves to measure the gap between the nightly tick and the deadline
    deadline = latest_tick(auto.fresh_by_cron, datetime(2026, 1, 15, 12, tzinfo=ZoneInfo(tz)), tz)
    nightly = latest_tick(auto.nightly_cron, deadline - timedelta(seconds=1), tz)
    return dg.FreshnessPolicy.cron(deadline_cron=auto.fresh_by_cron, lower_bound_delta=deadline - nightly, timezone=tz)


def automation_sensor() -> dg.AutomationConditionSensorDefinition:
    """Evaluates `rollup_condition` of the weekly and monthly assets."""
    return dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR,
        target=dg.AssetSelection.assets(ASSET_KEYS["weekly"], ASSET_KEYS["monthly"]),
        default_status=dg.DefaultSensorStatus.RUNNING,
        emit_backfills=True,
        use_user_code_server=True,  # DayCheckFailedWithError is Python, not a serializable built-in
        description="Re-runs the weeks and months over a day that was re-run outside a backfill.",
    )
