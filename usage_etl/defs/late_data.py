"""Late-arriving data: find the days whose raw rows changed after they were materialized.

Each daily materialization records the fingerprint of its raw window (`sql/
raw_window_fingerprints.sql`: row count, max id, max created_at, sum of row versions) in the
`raw_window_fingerprint` table, taken *before* the window is read, so a row arriving during the run
makes the fingerprint differ rather than go unseen. A sensor computes the current fingerprints of
the last `lookback` days in one grouped query (no full rescan, no jsonb parsing) and, for each
materialized day whose fingerprint differs, requests one backfill of those days and the weeks
and months over them (the same plan and gate as the nightly run, `automation.plan`), and reports
each such day of the external raw asset as updated (a runless `AssetMaterialization` with the new
fingerprint as data version), so the UI shows what changed and when.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import dagster as dg
import polars as pl
import sqlalchemy as sa

from usage_etl.sources import fingerprint
from usage_etl.sources.postgres import source_name
from usage_etl.defs import automation
from usage_etl.settings import AutomationSettings
from usage_etl.settings import Settings
from usage_etl.defs.resources import PostgresResource

DATA_VERSION_TAG = "dagster/data_version"  # the tag Dagster reads a data version from (no public constant)
RAW_KEY = dg.AssetKey("raw_messages")
SENSOR_NAME = "usage_etl_late_data"
def raw_asset(settings: Settings, partitions_def: dg.PartitionsDefinition) -> dg.AssetSpec:
    """The raw source table as an external asset, partitioned like the daily asset."""
    return dg.AssetSpec(
        RAW_KEY,
        partitions_def=partitions_def,
        group_name="usage",
        kinds={"postgres"},
        description=f"Raw messages in {source_name(settings)}, written by the application. "
        f"The `{SENSOR_NAME}` sensor reports a day as updated when its rows change after the day was "
        "materialized; the data version is the day's fingerprint.",
    )


def updates(changed: pl.DataFrame) -> list[dg.AssetMaterialization]:
    """One runless materialization of the raw asset per changed day, its data version the new
    fingerprint (what the sensor daemon stores for a sensor's `asset_events`)."""
    return [
        dg.AssetMaterialization(
            asset_key=RAW_KEY,
            partition=row["day"].isoformat(),
            tags={DATA_VERSION_TAG: row["version"]},
            metadata={
                "rows": row["row_count"],
                "rows_at_materialization": row["row_count_recorded"],
                "max_created_at": row["max_created_at"].isoformat() if row["max_created_at"] else None,
                "materialized_at": row["recorded_at"].isoformat(),
            },
        )
        for row in changed.iter_rows(named=True)
    ]


def build_sensor(settings: Settings, auto: AutomationSettings, parts: dict[str, dg.TimeWindowPartitionsDefinition]) -> dg.SensorDefinition:
    """Every `late_data_interval_seconds`: one backfill of the days whose raw rows changed since
    they were materialized, with their weeks and months (`automation.plan`), and a runless
    materialization of each such day of the raw asset for the UI.

    A day in a running backfill or run is left alone (it records a new fingerprint); a day whose
    latest run or latest ERROR check failed is left to the nightly run, so a permanent error is
    retried once a night, not every interval.
    """

    @dg.sensor(
        name=SENSOR_NAME,
        asset_selection=automation.TARGET,
        minimum_interval_seconds=auto.late_data_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Late-arriving data: compares the raw source's per-day fingerprint of the last "
        f"{auto.late_data_lookback_days} days with the one recorded when each day was materialized.",
    )
    def usage_etl_late_data(context: dg.SensorEvaluationContext, db: PostgresResource) -> dg.SensorResult:
        now = datetime.now(settings.tz)
        since = max(now.date() - timedelta(days=auto.late_data_lookback_days), settings.start_date)
        src = settings.source_config
        if not sa.inspect(db.engine).has_table(src.table, schema=src.schema_name):
            # e.g. `make ui` before any data: say so instead of failing every tick with a SQL error
            return dg.SensorResult(skip_reason=f"source table {src.schema_name}.{src.table} does not exist (or this "
                                   "database user cannot see it); `usage-etl source check` tells more")
        changed = fingerprint.detect(db.engine, settings, now.date(), auto.late_data_lookback_days).with_columns(key=pl.col("day").dt.to_string("%Y-%m-%d"))
        status = automation.statuses(context.instance, parts, now)
        failed = status["daily"].filter(pl.col("status").is_in(automation.REDO))["key"].to_list()
        wanted = automation.plan(**status, missing=False, days=changed.filter(~pl.col("key").is_in(failed))["key"].to_list())
        if not wanted["daily"]:
            left = f"{changed.height} changed, running or failed" if changed.height else "none"
            return dg.SensorResult(skip_reason=f"raw rows changed after materialization since {since}: {left}")
        context.log.info(f"raw rows changed after materialization; backfill of {automation.describe(wanted)}")
        return dg.SensorResult(
            run_requests=[automation.backfill_request(parts, wanted, {"usage_etl/trigger": "late_data"})],
            asset_events=updates(changed.filter(pl.col("key").is_in(wanted["daily"]))),
        )

    return usage_etl_late_data
