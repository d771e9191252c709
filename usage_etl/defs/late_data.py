"""Late-arriving data: find the days whose raw rows changed after they were materialized.

Each daily materialization records the fingerprint of its raw window (`sql/
raw_window_fingerprints.sql`: row count, max id, max created_at, sum of row versions) in the
`raw_window_fingerprint` table: the fingerprint of the rows the run read, recorded with the rows
it wrote, so a row arriving during the run makes the fingerprint differ rather than go unseen. A sensor computes the current fingerprints of
the last `lookback` days in one grouped query (no full rescan, no jsonb parsing) and, for each
materialized day whose fingerprint differs, requests one backfill of those days and the weeks
and months over them (the same plan and gate as the nightly run, `automation.plan`), and reports
each such day of the external raw asset as observed anew (a runless `AssetObservation` with the new
fingerprint as data version), so the UI shows what changed and when.

The raw asset is only ever *observed*, never materialized: every run that reads days (the nightly
and late-data backfills, `usage-etl backfill`) first records one observation per day with the
day's raw row count and fingerprint (`observe`). Recorded before the run starts, it is the input
data version the day's materialization reads, so the day stays fresh; a later observation with a
different fingerprint marks the day stale. (A materialization of the raw asset would be wrong
twice: Dagster prefers an upstream's latest materialization to its observations when it records
a step's input version, and the UI would count unobserved days as missing.)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta

import dagster as dg
import polars as pl
import sqlalchemy as sa

from usage_etl.sources import fingerprint
from usage_etl.sources.postgres import source_name
from usage_etl.defs import automation
from usage_etl.defs import catalog
from usage_etl.settings import AutomationSettings
from usage_etl.settings import Settings
from usage_etl.defs.resources import PostgresResource

DATA_VERSION_TAG = "dagster/data_version"  # the tag Dagster reads a data version from (no public constant)
RAW_KEY = dg.AssetKey("raw_messages")
SENSOR_NAME = "usage_etl_late_data"
EMPTY_VERSION = "empty"  # the data version of a day without raw rows (as `fingerprint.changed_days`)


def raw_asset(settings: Settings, partitions_def: dg.PartitionsDefinition, owners: Sequence[str] = ()) -> dg.AssetsDefinition:
    """The raw source table as an observable source asset, partitioned like the daily asset, with
    `owners` (`AutomationSettings.owners`) in the catalog. The UI shows it observed, not missing.

    Its observe function (the UI's "Observe", one day per run) records the day's `observations`;
    the backfill commands and sensors record the same events without a run (`observe`)."""
    spec = dg.AssetSpec(
        RAW_KEY,
        partitions_def=partitions_def,
        group_name="usage",
        kinds={"postgres"},
        owners=list(owners),
        metadata=catalog.raw_metadata(settings),
        description=f"Raw messages in {source_name(settings)}, written by the application; Dagster only observes "
        "them. Each day is observed (raw row count, fingerprint as data version) before a run reads it, and again "
        f"by the `{SENSOR_NAME}` sensor when its rows change after the day was materialized.",
    )

    # no annotations (this module postpones them): the context is untyped, the resource by key
    @dg.multi_observable_source_asset(specs=[spec], partitions_def=partitions_def, name="observe_raw_messages", required_resource_keys={"db"})
    def raw_messages(context):
        db = context.resources.db
        keys = context.partition_keys
        if len(keys) != 1:
            raise dg.Failure(f"observe one day per run, not {len(keys)}; `usage-etl backfill` observes a range before running it")
        [event] = observe(db.engine, settings, keys)
        return dg.ObserveResult(asset_key=RAW_KEY, data_version=dg.DataVersion(event.tags[DATA_VERSION_TAG]), metadata=event.metadata)

    return raw_messages


def _observation(day: str, version: str, md: dict) -> dg.AssetObservation:
    return dg.AssetObservation(asset_key=RAW_KEY, partition=day, tags={DATA_VERSION_TAG: version}, metadata=md)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def observations(current: pl.DataFrame, days: list[str]) -> list[dg.AssetObservation]:
    """One observation of the raw asset per day of `days` (partition keys): `dagster/row_count`
    and `rows` (raw rows of the day), `max_id`, `max_created_at` and `fingerprint` (the data version
    the late-data sensor compares; "empty" for a day without rows). `current` holds
    `fingerprint.current_fingerprints` of those days."""
    by_day = {row["day"].isoformat(): row for row in current.iter_rows(named=True)}
    out = []
    for day in days:
        row = by_day.get(day, {"row_count": 0, "max_id": None, "max_created_at": None, "version": EMPTY_VERSION})
        out.append(_observation(day, row["version"], {
            "dagster/row_count": row["row_count"], "rows": row["row_count"], "max_id": row["max_id"],
            "max_created_at": _iso(row["max_created_at"]), "fingerprint": row["version"],
        }))
    return out


def observe(engine: sa.Engine, settings: Settings, days: list[str]) -> list[dg.AssetObservation]:
    """`observations` of `days` (partition keys, any order) from one grouped fingerprint query."""
    if not days:
        return []
    first, last = date.fromisoformat(min(days)), date.fromisoformat(max(days))
    with engine.connect() as conn:
        current = fingerprint.current_fingerprints(conn, settings, first, last + timedelta(days=1))
    return observations(current, sorted(days))


def updates(changed: pl.DataFrame) -> list[dg.AssetObservation]:
    """One runless observation of the raw asset per changed day, its data version the new
    fingerprint (what the sensor daemon stores for a sensor's `asset_events`): `rows` now,
    `rows_at_materialization`, `max_created_at`, `materialized_at`, `fingerprint`."""
    return [
        _observation(row["day"].isoformat(), row["version"], {
            "dagster/row_count": row["row_count"],
            "rows": row["row_count"],
            "rows_at_materialization": row["row_count_recorded"],
            "max_created_at": _iso(row["max_created_at"]),
            "materialized_at": row["recorded_at"].isoformat(),
            "fingerprint": row["version"],
        })
        for row in changed.iter_rows(named=True)
    ]


def build_sensor(settings: Settings, auto: AutomationSettings, parts: dict[str, dg.TimeWindowPartitionsDefinition]) -> dg.SensorDefinition:
    """Every `late_data_interval_seconds`: one backfill of the days whose raw rows changed since
    they were materialized, with their weeks and months (`automation.plan`), and a runless
    observation of each such day of the raw asset (its new fingerprint) for the UI.

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
