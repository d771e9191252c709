"""Late-arriving data: per-day fingerprints of the raw source, and the ones recorded at materialization.

Each daily materialization records the fingerprint of its raw window (`sql/
raw_window_fingerprints.sql`: row count, max id, max created_at, sum of row versions) in the
`raw_window_fingerprint` table: the fingerprint of the rows the run read (`of_rows`, from the read
itself), recorded with the rows it wrote, so a row arriving during the run makes the fingerprint
differ rather than go unseen. `detect` compares the current fingerprints of
recent days (one grouped query, no jsonb parsing) with the recorded ones.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import polars as pl
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from usage_etl.migrations import read_sql
from usage_etl.db import quote, quote_table
from usage_etl.settings import Settings
from usage_etl.sources.postgres import source_name

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


def _fingerprint_sql(conn: sa.Connection, settings: Settings) -> sa.TextClause:
    def name(quoted: str) -> str:
        # sa.text doubles "%" itself; a ":" inside a quoted name must not read as a bind parameter.
        return quoted.replace(":", "\\:")

    c = settings.source_columns
    return sa.text(
        read_sql("raw_window_fingerprints.sql").format(
            source=name(quote_table(sa.table(settings.source_table, schema=settings.source_schema))),
            id=name(quote(c.id)),
            created_at=name(quote(c.created_at)),
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


def of_rows(day: date, rows: pl.DataFrame) -> pl.DataFrame:
    """The fingerprint of one day from its raw rows as read (`WindowSnapshot.versions`:
    message_id, created_at, row_version): one row of `day` and the `FINGERPRINT` columns, as
    `current_fingerprints` computes them on the server (max_id in UTF-8 byte order, as its
    COLLATE "C" in a UTF8 database; xmin_sum exact), or no row for a day without rows. What
    `record` takes."""
    schema = {k: v for k, v in FINGERPRINT_SCHEMA.items() if k != "version"}
    if rows.height == 0:
        return pl.DataFrame(schema=schema)
    return rows.select(
        pl.lit(day).alias("day"),
        pl.len().cast(pl.Int64).alias("row_count"),
        pl.col("message_id").max().alias("max_id"),
        pl.col("created_at").max().alias("max_created_at"),
        pl.col("row_version").cast(pl.Int128).sum().cast(pl.String).alias("xmin_sum"),
    ).cast(schema)  # type: ignore[arg-type]


def _table(settings: Settings) -> sa.TableClause:
    cols = ["source", "day", *FINGERPRINT, "recorded_at"]
    return sa.table(TABLE, *[sa.column(c) for c in cols], schema=settings.schema)


def recorded_fingerprints(conn: sa.Connection, settings: Settings, first: date, end: date) -> pl.DataFrame:
    """Fingerprints recorded at the latest materialization of days [first, end): `day`, the
    `FINGERPRINT` columns and `recorded_at` (Datetime us UTC)."""
    t = _table(settings)
    stmt = sa.select(
        t.c.day, t.c.row_count, t.c.max_id, t.c.max_created_at, sa.cast(t.c.xmin_sum, sa.Text).label("xmin_sum"), t.c.recorded_at
    ).where(t.c.source == source_name(settings), t.c.day >= first, t.c.day < end)
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


def lock_key(settings: Settings, day: date) -> sa.ColumnElement:
    return sa.func.hashtextextended(f"usage_etl:{settings.schema}:raw_window:{source_name(settings)}:{day}", 0)


def record(conn: sa.Connection, settings: Settings, day: date, fingerprint: pl.DataFrame) -> None:
    """Upsert the fingerprint of `day` (one row of `current_fingerprints`, or none: empty day)."""
    t = _table(settings)
    row = fingerprint.row(0, named=True) if fingerprint.height else {"row_count": 0, "max_id": None, "max_created_at": None, "xmin_sum": "0"}
    values = {"source": source_name(settings), "day": day, **{c: row[c] for c in FINGERPRINT}, "recorded_at": sa.func.now()}
    stmt = insert(t).values(values)
    # Only a changed fingerprint is rewritten: rerunning an unchanged day leaves the table identical.
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["source", "day"],
            set_={k: stmt.excluded[k] for k in values if k not in ("source", "day")},
            where=sa.tuple_(*[t.c[c] for c in FINGERPRINT]).is_distinct_from(sa.tuple_(*[stmt.excluded[c] for c in FINGERPRINT])),
        )
    )


def detect(engine: sa.Engine, settings: Settings, today: date, lookback_days: int) -> pl.DataFrame:
    """`changed_days` over the `lookback_days` days before `today` (never before the start date)."""
    first = max(today - timedelta(days=lookback_days), settings.start_date)
    with engine.connect() as conn:
        return changed_days(current_fingerprints(conn, settings, first, today), recorded_fingerprints(conn, settings, first, today))
