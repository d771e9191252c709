"""When the usage assets run: nightly run with catch-up, late-arriving data, retries, freshness.

Everything here is Dagster's declarative automation, evaluated by one automation sensor that the
daemon ticks every 30 s; there is no loop or scheduler of our own.

- **Nightly + catch-up.** At the first tick after `nightly_cron` (01:00 in the business timezone)
  every daily partition since the start date that is missing or whose latest run failed is
  requested — yesterday on a normal night, all N missed days after an outage of N days (no
  `max_catchup_runs` cap: the condition looks at partitions, not at missed ticks). The weeks and
  months over those days are requested on the same tick; the sensor emits the whole request as one
  backfill, which runs days before the weeks and months above them (oldest first within each).
- **Failed partitions** stay "missing or failed" and are requested again on the next nightly tick.
- **Late-arriving data.** `late_data` reports a day of the external raw asset as updated when its
  rows changed after the day was materialized; such a day is requested at once, with its week and
  month.
- **Rollups** (weeks, months) also follow any other (re)materialization of one of their days, such as
  a manual run from the UI. They never run while a day of theirs is missing or in progress, and a
  new week or month with no day yet is not materialized (dagster issues #25723, #34094).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
from dagster._utils.schedules import get_latest_completed_cron_tick, is_valid_cron_string

from usage_etl.config import ConfigError, Settings

AC = dg.AutomationCondition
SENSOR_NAME = "usage_etl_automation"


@dataclass(frozen=True)
class AutomationSettings:
    """Orchestration settings, from the environment.

    | variable | default | meaning |
    |---|---|---|
    | USAGE_ETL_NIGHTLY_CRON | 0 1 * * * | nightly tick, business timezone |
    | USAGE_ETL_FRESH_BY_CRON | 0 2 * * * | deadline by which the daily asset is expected fresh |
    | USAGE_ETL_LATE_DATA_LOOKBACK_DAYS | 7 | days before today checked for late-arriving data |
    | USAGE_ETL_LATE_DATA_INTERVAL_SECONDS | 3600 | how often the late-data sensor runs |
    | USAGE_ETL_BACKFILL_BATCH_SIZE | 30 | partitions per run in a backfill (0: whole range in one run) |
    | USAGE_ETL_RETRY_MAX | 3 | retries of a step after a transient database error |
    | USAGE_ETL_RETRY_DELAY_SECONDS | 30 | first retry delay, doubled each time (jittered) |
    """

    nightly_cron: str = "0 1 * * *"
    fresh_by_cron: str = "0 2 * * *"
    late_data_lookback_days: int = 7
    late_data_interval_seconds: int = 3600
    batch_size: int = 30
    retry_max: int = 3
    retry_delay_seconds: float = 30.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "AutomationSettings":
        """Raises ConfigError naming the variable when a value is malformed."""
        env = dict(os.environ) if env is None else env
        d = cls()

        def cron(name: str, default: str) -> str:
            value = env.get(name, default)
            if not is_valid_cron_string(value):
                raise ConfigError(f"{name}={value!r} is not a cron expression")
            return value

        def number(name: str, default, kind=int, minimum=0):
            raw = env.get(name)
            try:
                value = kind(raw) if raw is not None else default
            except ValueError as exc:
                raise ConfigError(f"{name}={raw!r} is not a number") from exc
            if value < minimum:
                raise ConfigError(f"{name}={raw!r} must be >= {minimum}")
            return value

        return cls(
            nightly_cron=cron("USAGE_ETL_NIGHTLY_CRON", d.nightly_cron),
            fresh_by_cron=cron("USAGE_ETL_FRESH_BY_CRON", d.fresh_by_cron),
            late_data_lookback_days=number("USAGE_ETL_LATE_DATA_LOOKBACK_DAYS", d.late_data_lookback_days, minimum=1),
            late_data_interval_seconds=number("USAGE_ETL_LATE_DATA_INTERVAL_SECONDS", d.late_data_interval_seconds, minimum=30),
            batch_size=number("USAGE_ETL_BACKFILL_BATCH_SIZE", d.batch_size),
            retry_max=number("USAGE_ETL_RETRY_MAX", d.retry_max),
            retry_delay_seconds=number("USAGE_ETL_RETRY_DELAY_SECONDS", d.retry_delay_seconds, float),
        )


def _nightly_tick(settings: Settings, auto: AutomationSettings) -> dg.AutomationCondition:
    return AC.cron_tick_passed(auto.nightly_cron, settings.timezone)


def daily_condition(settings: Settings, auto: AutomationSettings) -> dg.AutomationCondition:
    """Daily partitions: due on the nightly tick if missing or failed; at once if their raw data
    changed after they were materialized (the raw asset is the daily asset's only dependency)."""
    due = (_nightly_tick(settings, auto) & (AC.missing() | AC.execution_failed())).with_label("nightly: missing or failed")
    late = (~AC.missing() & AC.any_deps_updated()).with_label("raw data changed since materialized")
    return ((due | late) & ~AC.in_progress()).with_label("usage_etl daily")


def rollup_condition(settings: Settings, auto: AutomationSettings) -> dg.AutomationCondition:
    """Weekly and monthly partitions.

    Dagster cannot see a daily request of this tick from a weekly partition (`will_be_requested`
    only spans assets with the same partitions), so the daily condition itself is evaluated on the
    days of each week or month: a week is requested together with any of its days.
    """
    day_runs = AC.any_deps_match(daily_condition(settings, auto)).with_label("a day runs this tick")
    own_retry = (_nightly_tick(settings, auto) & (AC.missing() | AC.execution_failed())).with_label("nightly: missing or failed")
    day_updated = AC.any_deps_updated().since_last_handled().with_label("a day was updated since")
    has_days = AC.any_deps_match(~AC.missing() | daily_condition(settings, auto)).with_label("has a day")
    day_left_missing = AC.any_deps_match(AC.missing() & ~daily_condition(settings, auto)).with_label("a day is missing")
    return (
        (day_runs | own_retry | day_updated)
        & has_days
        & ~day_left_missing
        & ~AC.any_deps_in_progress()
        & ~AC.in_progress()
    ).with_label("usage_etl rollup")


def backfill_policy(auto: AutomationSettings) -> dg.BackfillPolicy:
    """Runs of a backfill cover at most `batch_size` partitions (0: the whole range)."""
    if auto.batch_size == 0:
        return dg.BackfillPolicy.single_run()
    return dg.BackfillPolicy.multi_run(max_partitions_per_run=auto.batch_size)


def freshness_policy(settings: Settings, auto: AutomationSettings) -> dg.FreshnessPolicy:
    """Fresh when materialized between the nightly tick and the deadline (01:00-02:00 by default):
    an asset still carrying yesterday's materialization at 02:00 shows as failing freshness."""
    tz = settings.timezone
    # any ordinary day serves to measure the gap between the nightly tick and the deadline
    deadline = get_latest_completed_cron_tick(auto.fresh_by_cron, datetime(2026, 1, 15, 12, tzinfo=ZoneInfo(tz)), tz)
    nightly = get_latest_completed_cron_tick(auto.nightly_cron, deadline - timedelta(seconds=1), tz)
    return dg.FreshnessPolicy.cron(deadline_cron=auto.fresh_by_cron, lower_bound_delta=deadline - nightly, timezone=tz)


def automation_sensor(auto: AutomationSettings) -> dg.AutomationConditionSensorDefinition:
    """The one sensor that evaluates the conditions above; one backfill per tick."""
    return dg.AutomationConditionSensorDefinition(
        SENSOR_NAME,
        target=dg.AssetSelection.groups("usage"),
        default_status=dg.DefaultSensorStatus.RUNNING,
        emit_backfills=True,
        description="Nightly run with catch-up, late-arriving data and rollups of the usage assets.",
    )
