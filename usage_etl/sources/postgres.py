"""Read one time window of raw messages from a PostgreSQL table into Polars.

The SELECT is built from the source mapping (`source_config.SourceConfig`): plain columns, key
paths inside json/jsonb columns or constants. Token fields are pulled out of JSON by the server,
so only short text values cross the wire, and the result arrives over ADBC as Arrow: no Python loop over rows.
Values stay text here on purpose: whether "12", "1.5", "-3" or "abc" is a valid token count is
decided in `normalize.py`, where a bad value becomes a quarantine row instead of a failed query.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import adbc_driver_postgresql.dbapi as adbc
import pyarrow as pa
import polars as pl
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB

from usage_etl.frames import DIMENSION_PREFIX, KEY_SCHEMA
from usage_etl.settings import Settings
from usage_etl.source_config import AUTO_USAGE_FIELDS, RAW_TOKEN_SLOTS, FieldRef, SourceConfig

# Token slots of the raw frame read by `auto` semantics: name -> key path inside the usage object.
USAGE_FIELDS: dict[str, tuple[str, ...]] = AUTO_USAGE_FIELDS
# Every token slot of the raw frame (the auto ones plus u_reasoning_tokens of flat tables).
TOKEN_SLOTS: list[str] = RAW_TOKEN_SLOTS

# Raw frame columns (all text but created_at); `raw_schema` adds one dim_<name> per breakdown.
# usage_type: jsonb type of the usage object ("object", ...), or "columns" when tokens are columns.
RAW_SCHEMA: dict[str, pl.DataType] = {
    **KEY_SCHEMA,
    "usage_type": pl.String(),
    **{name: pl.String() for name in TOKEN_SLOTS},
    "paid_amount": pl.String(),
    # Service tier as reported (columns.service_tier, and service_tier inside the usage object).
    "service_tier": pl.String(),
    "u_service_tier": pl.String(),
}


def source_name(settings: Settings) -> str:
    """`schema.table` of the raw source: how quarantine and fingerprint rows name their source."""
    return f"{settings.source_schema}.{settings.source_table}"


def raw_schema(source: SourceConfig) -> dict[str, pl.DataType]:
    """`RAW_SCHEMA` plus a String column `dim_<name>` per configured breakdown dimension."""
    return {**RAW_SCHEMA, **{DIMENSION_PREFIX + d: pl.String() for d in source.dimensions}}


def _refs(source: SourceConfig) -> list[FieldRef]:
    c = source.columns
    refs = [c.user, c.conversation, c.agent, c.model, c.status, c.paid_amount, c.service_tier, source.tokens.usage]
    refs += list(source.tokens.refs().values()) + list(source.breakdowns.values())
    return [r for r in refs if r is not None and r.column is not None]


def source_table(settings: Settings) -> sa.TableClause:
    """The source table with every column the mapping reads.

    Columns read by key path are typed JSON so paths render as -> / ->>, which work on json and
    jsonb alike (jsonb subscripting would not work on json).
    """
    src = settings.source_config
    refs = _refs(src)
    json_cols = {r.column for r in refs if r.path}
    names = dict.fromkeys([src.columns.id, src.columns.time, *[r.column for r in refs]])
    cols = [
        sa.column(n, sa.TIMESTAMP(timezone=True) if n == src.columns.time else postgresql.JSON if n in json_cols else None)
        for n in names
        if n is not None
    ]
    return sa.table(src.table, *cols, schema=src.schema_name)


def json_node(t: sa.TableClause, ref: FieldRef) -> sa.ColumnElement:
    """The JSON value at `ref`'s key path (col -> 'a' -> 'b'); the column itself for no path."""
    node = t.c[ref.column]
    for k in ref.path:
        node = node[k]
    return node


def field_text(t: sa.TableClause, ref: FieldRef | None) -> sa.ColumnElement:
    """A field reference as a text expression: column::text, col->'a'->>'b', a constant, or NULL."""
    if ref is None:
        return sa.null().cast(sa.Text)
    if ref.value is not None:
        return sa.literal(ref.value, sa.Text)
    if not ref.path:
        return sa.cast(t.c[ref.column], sa.Text)
    return json_node(t, FieldRef(column=ref.column, path=ref.path[:-1]))[ref.path[-1]].astext


def window_query(settings: Settings, start: datetime | None, end: datetime | None) -> sa.Select:
    """SELECT of the raw frame (`raw_schema(settings.source_config)`) for `start <= time < end`.

    Built from the source mapping; identifiers are quoted by SQLAlchemy and every field is
    extracted by the server (json paths with -> / ->>), so only short text values cross the wire.
    `start`/`end` are tz-aware instants; both None selects the rows whose time IS NULL
    (they belong to no window and are quarantined separately).
    """
    src = settings.source_config
    c = src.columns
    t = source_table(settings)
    usage = src.tokens.usage
    if usage is None:
        usage_type = sa.literal("columns", sa.Text)
    else:
        usage_type = sa.func.jsonb_typeof(sa.cast(json_node(t, usage), JSONB))
    query = sa.select(
        sa.cast(t.c[c.id], sa.Text).label("message_id"),
        field_text(t, c.user).label("user_id"),
        field_text(t, c.conversation).label("conversation_id"),
        field_text(t, c.agent).label("agent_id"),
        field_text(t, c.model).label("model"),
        t.c[c.time].label("created_at"),
        field_text(t, c.status).label("status"),
        usage_type.label("usage_type"),
        *[field_text(t, ref).label(slot) for slot, ref in src.tokens.refs().items()],
        field_text(t, c.paid_amount).label("paid_amount"),
        field_text(t, c.service_tier).label("service_tier"),
        field_text(t, usage.child("service_tier") if usage is not None else None).label("u_service_tier"),
        *[field_text(t, ref).label(DIMENSION_PREFIX + name) for name, ref in src.breakdowns.items()],
    )
    ts = t.c[c.time]
    if start is None and end is None:
        return query.where(ts.is_(None))
    return query.where(ts >= start, ts < end)


# $1, $2, … placeholders (what libpq and so ADBC bind); unlike the default "pyformat" paramstyle it
# does not double a % inside quoted identifiers.
_ADBC_DIALECT = postgresql.dialect(paramstyle="numeric_dollar")


def compile_bound(stmt: sa.ClauseElement) -> tuple[str, list]:
    """Render a statement for ADBC: (SQL with $n placeholders, their values in order).
    Identifiers are quoted by SQLAlchemy; no value is rendered into the SQL text."""
    compiled = stmt.compile(dialect=_ADBC_DIALECT, compile_kwargs={"render_postcompile": True})  # IN lists: one $n each
    params = compiled.construct_params()
    return str(compiled), [params[k] for k in compiled.positiontup or ()]


RAW_DIGEST = "raw_digest"


def raw_digest(w: sa.Subquery) -> sa.ColumnElement:
    """A 64-bit hash (Int64) of one raw window row: `hashtextextended` of its values as a row text,
    the time as epoch seconds (independent of the session time zone). Identical rows share it; it
    tells the copies of one message id apart when some are quarantined and others not."""
    values = [sa.func.extract("epoch", c) if c.name == "created_at" else c for c in w.c if c.name != RAW_DIGEST]
    return sa.func.hashtextextended(sa.cast(sa.tuple_(*values), sa.Text), 0)


def with_digest(query: sa.Select) -> sa.Select:
    """`query` (a window SELECT) plus a `raw_digest` column; OFFSET 0 keeps PostgreSQL from
    extracting every field a second time inside the hash."""
    w = query.offset(0).subquery("w")
    return sa.select(w, raw_digest(w).label(RAW_DIGEST))


def libpq_uri(url: sa.URL) -> str:
    """The SQLAlchemy URL as a libpq connection URI (what ADBC expects)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


# While `shared_connections()` is active: one open ADBC connection per (thread, libpq URI). Opening
# one costs ~0.06 s, a tenth of a small daily partition's whole work.
_SHARED: dict[tuple[int, str], adbc.Connection] | None = None
_SHARED_DEPTH = 0
_SHARED_LOCK = threading.Lock()


@contextmanager
def shared_connections() -> Iterator[None]:
    """Within this context (e.g. one run over many partitions), `read_arrow` reuses an ADBC
    connection per thread and database instead of opening one per read; all are closed when the
    outermost context exits. Each read is its own autocommit statement, so no snapshot or lock is
    held between reads."""
    global _SHARED, _SHARED_DEPTH
    with _SHARED_LOCK:
        _SHARED_DEPTH += 1
        if _SHARED is None:
            _SHARED = {}
    try:
        yield
    finally:
        with _SHARED_LOCK:
            _SHARED_DEPTH -= 1
            done, _SHARED = (_SHARED or {}, None) if _SHARED_DEPTH == 0 else ({}, _SHARED)
        for conn in done.values():
            with contextlib.suppress(Exception):
                conn.close()


def _fetch(conn: adbc.Connection, sql: str, params: list) -> pa.Table:
    with conn.cursor() as cur:
        cur.execute(sql, params or None)
        return cur.fetch_arrow_table()


def _fetch_arrow(uri: str, sql: str, params: list) -> pa.Table:
    shared = _SHARED
    if shared is None:
        with adbc.connect(uri) as conn:
            return _fetch(conn, sql, params)
    key = (threading.get_ident(), uri)
    conn = shared.get(key)
    if conn is None:
        conn = shared[key] = adbc.connect(uri, autocommit=True)
    try:
        return _fetch(conn, sql, params)
    except BaseException:
        shared.pop(key, None)  # in an unknown state: the next read opens a fresh one
        with contextlib.suppress(Exception):
            conn.close()
        raise


def read_arrow(url: sa.URL, stmt: sa.ClauseElement, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Run one SELECT over ADBC and return it as a Polars frame cast to `schema` (on this thread's
    shared connection inside `shared_connections()`, else on a new one)."""
    sql, params = compile_bound(stmt)
    table = _fetch_arrow(libpq_uri(url), sql, params)
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    if frame.height == 0:
        return pl.DataFrame(schema=schema)
    return frame.cast(schema)  # type: ignore[arg-type]


def read_window(settings: Settings, url: sa.URL, start: datetime | None, end: datetime | None) -> pl.DataFrame:
    """Raw rows of one window (`raw_schema(settings.source_config)` plus `raw_digest`, Int64); see
    `window_query` and `raw_digest`."""
    schema = {**raw_schema(settings.source_config), RAW_DIGEST: pl.Int64()}
    return read_arrow(url, with_digest(window_query(settings, start, end)), schema)
