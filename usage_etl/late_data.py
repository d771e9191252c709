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

from datetime import date, datetime, time, timedelta

import dagster as dg
import polars as pl
import sqlalchemy as sa
from dagster._core.definitions.data_version import DATA_VERSION_TAG
from dagster._time import get_current_datetime
from sqlalchemy.dialects.postgresql import insert

from usage_etl import automation, pipeline, store
from usage_etl.automation import AutomationSettings
from usage_etl.config import Settings
from usage_etl.migrations import read_sql
from usage_etl.pricing import PriceBook
from usage_etl.resources import PostgresResource

RAW_KEY = dg.AssetKey("raw_messages")
SENSOR_NAME = "usage_etl_late_data"
TABLE = "raw_window_fingerprint"
FINGERPRINT = ["row_count", "max_id", "max_created_at", "xmin_sum"]
FINGERPRINT_SCHEMA: dict[str, pl.DataType] = {  # in the order of sql/raw_window_fingerprints.sql
    "day": pl.Date(),
    "row_count": pl.Int64(),
    "max_id": pl.String(),
    "max_created_at": pl.Datetime("us", "UTC"),
    "xmin_sum": pl.String(),  # exact numeric as text
    "version": pl.String(),  # short hash of the other columns: the raw day's data version
}


def raw_asset(settings: Settings, partitions_def: dg.PartitionsDefinition) -> dg.AssetSpec:
    """The raw source table as an external asset, partitioned like the daily asset."""
    return dg.AssetSpec(
        RAW_KEY,
        partitions_def=partitions_def,
        group_name="usage",
        kinds={"postgres"},
        description=f"Raw messages in {pipeline.source_name(settings)}, written by the application. "
        f"The `{SENSOR_NAME}` sensor reports a day as updated when its rows change after the day was "
        "materialized; the data version is the day's fingerprint.",
    )


def _fingerprint_sql(conn: sa.Connection, settings: Settings) -> sa.TextClause:
    prep = conn.dialect.identifier_preparer
    c = settings.source_columns
    return sa.text(
        read_sql("raw_window_fingerprints.sql").format(
            source=prep.format_table(sa.table(settings.source_table, schema=settings.source_schema)),
            id=prep.quote(c.id),
            created_at=prep.quote(c.created_at),
        )
    )


def _bounds(settings: Settings, first: date, end: date) -> dict:
    tz = settings.tz
    return {"start": datetime.combine(first, time(0), tz), "end": datetime.combine(end, time(0), tz), "tz": settings.timezone}


def current_fingerprints(conn: sa.Connection, settings: Settings, first: date, end: date) -> pl.DataFrame:
    """Fingerprints of the raw rows of days [first, end) in the business timezone
    (`FINGERPRINT_SCHEMA`; days without rows are absent)."""
    rows = conn.execute(_fingerprint_sql(conn, settings), _bounds(settings, first, end)).all()
    return pl.DataFrame([tuple(r) for r in rows], schema=FINGERPRINT_SCHEMA, orient="row")


def _table(settings: Settings) -> sa.TableClause:
    cols = ["source", "day", *FINGERPRINT, "recorded_at"]
    return sa.table(TABLE, *[sa.column(c) for c in cols], schema=settings.schema)


def recorded_fingerprints(conn: sa.Connection, settings: Settings, first: date, end: date) -> pl.DataFrame:
    """Fingerprints recorded at the latest materialization of days [first, end): `day`, the
    `FINGERPRINT` columns and `recorded_at` (Datetime us UTC)."""
    t = _table(settings)
    stmt = sa.select(
        t.c.day, t.c.row_count, t.c.max_id, t.c.max_created_at, sa.cast(t.c.xmin_sum, sa.Text).label("xmin_sum"), t.c.recorded_at
    ).where(t.c.source == pipeline.source_name(settings), t.c.day >= first, t.c.day < end)
    schema = {**{k: v for k, v in FINGERPRINT_SCHEMA.items() if k != "version"}, "recorded_at": pl.Datetime("us", "UTC")}
    return pl.DataFrame([tuple(r) for r in conn.execute(stmt).all()], schema=schema, orient="row")


def changed_days(current: pl.DataFrame, recorded: pl.DataFrame) -> pl.DataFrame:
    """Recorded days whose current fingerprint differs (a day with no rows now counts as empty).

    Returns `day`, `version` (current data version), `recorded_at` and each fingerprint column as
    `<col>` (now) and `<col>_recorded`, sorted by day.
    """
    empty = {"row_count": pl.lit(0, pl.Int64), "xmin_sum": pl.lit("0")}
    joined = recorded.join(current, on="day", how="left", suffix="_now").with_columns(
        *[pl.col(f"{c}_now").fill_null(v) for c, v in empty.items()],
        pl.col("version").fill_null("empty"),
    )
    differs = pl.any_horizontal([pl.col(c).ne_missing(pl.col(f"{c}_now")) for c in FINGERPRINT])
    return (
        joined.filter(differs)
        .rename({c: f"{c}_recorded" for c in FINGERPRINT})
        .rename({f"{c}_now": c for c in FINGERPRINT})
        .sort("day")
    )


def _lock_key(settings: Settings, day: date) -> sa.ColumnElement:
    return sa.func.hashtextextended(f"usage_etl:{settings.schema}:raw_window:{pipeline.source_name(settings)}:{day}", 0)


def record(conn: sa.Connection, settings: Settings, day: date, fingerprint: pl.DataFrame) -> None:
    """Upsert the fingerprint of `day` (one row of `current_fingerprints`, or none: empty day)."""
    t = _table(settings)
    row = fingerprint.row(0, named=True) if fingerprint.height else {"row_count": 0, "max_id": None, "max_created_at": None, "xmin_sum": "0"}
    values = {"source": pipeline.source_name(settings), "day": day, **{c: row[c] for c in FINGERPRINT}, "recorded_at": sa.func.now()}
    stmt = insert(t).values(values)
    # Only a changed fingerprint is rewritten: rerunning an unchanged day leaves the table identical.
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["source", "day"],
            set_={k: stmt.excluded[k] for k in values if k not in ("source", "day")},
            where=sa.tuple_(*[t.c[c] for c in FINGERPRINT]).is_distinct_from(sa.tuple_(*[stmt.excluded[c] for c in FINGERPRINT])),
        )
    )


def materialize_day(engine: sa.Engine, url: sa.URL, settings: Settings, book: PriceBook, window: store.Window) -> pipeline.PartitionResult:
    """`pipeline.run_daily`, recording the raw window's fingerprint as of just before the read.

    Two runs of one day serialize on a session advisory lock around fingerprint, run and record, so
    the recorded fingerprint always belongs to the rows last written.
    """
    day = window.start.date()
    with engine.connect() as conn:
        conn.execute(sa.select(sa.func.pg_advisory_lock(_lock_key(settings, day))))
        conn.commit()  # the session lock outlives the transaction; no snapshot is held meanwhile
        try:
            fingerprint = current_fingerprints(conn, settings, day, day + timedelta(days=1))
            conn.commit()
            result = pipeline.run_daily(engine, url, settings, book, window)
            record(conn, settings, day, fingerprint)
            conn.commit()
        finally:
            if not conn.invalidated:  # a lost connection has released its session lock already
                conn.rollback()
                conn.execute(sa.select(sa.func.pg_advisory_unlock(_lock_key(settings, day))))
                conn.commit()
    return result


def detect(engine: sa.Engine, settings: Settings, today: date, lookback_days: int) -> pl.DataFrame:
    """`changed_days` over the `lookback_days` days before `today` (never before the start date)."""
    first = max(today - timedelta(days=lookback_days), settings.start_date)
    with engine.connect() as conn:
        return changed_days(current_fingerprints(conn, settings, first, today), recorded_fingerprints(conn, settings, first, today))


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
        now = get_current_datetime(settings.timezone)
        since = max(now.date() - timedelta(days=auto.late_data_lookback_days), settings.start_date)
        src = settings.source_config
        if not sa.inspect(db.engine).has_table(src.table, schema=src.schema_name):
            # e.g. `make ui` before any data: say so instead of failing every tick with a SQL error
            return dg.SensorResult(skip_reason=f"source table {src.schema_name}.{src.table} does not exist (or this "
                                   "database user cannot see it); `usage-etl source check` tells more")
        changed = detect(db.engine, settings, now.date(), auto.late_data_lookback_days).with_columns(key=pl.col("day").dt.to_string("%Y-%m-%d"))
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
