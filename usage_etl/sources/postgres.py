"""Read one time window of raw messages from a PostgreSQL table into Polars.

The SELECT is built from the source mapping (`source_config.SourceConfig`): plain columns, key
paths inside json/jsonb columns or constants. Token fields are pulled out of JSON by the server,
so only short text values cross the wire, and the result arrives over ADBC as Arrow, streamed as
binary COPY (`unbound`: the values reach the query through transaction-local settings, so the
query itself has no parameter): no Python loop over rows. A daily run reads its window in one
snapshot (`open_window`) and hashes only the rows it quarantines (`WindowSnapshot.digests`).
Values stay text here on purpose: whether "12", "1.5", "-3" or "abc" is a valid token count is
decided in `normalize.py`, where a bad value becomes a quarantine row instead of a failed query.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal

import adbc_driver_postgresql.dbapi as adbc
import pyarrow as pa
import polars as pl
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import BindParameter

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
    jsonb alike (jsonb subscripting would not work on json). Also the system column `xmin`.
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
    return sa.table(src.table, *cols, sa.column("xmin"), schema=src.schema_name)


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


# The row version (the inserting or last updating transaction's id) read with a daily window, for
# its late-data fingerprint; xmin is a system column of every table, so no user column has the name.
ROW_VERSION = "row_version"


def window_query(settings: Settings, start: datetime | None, end: datetime | None, *, row_versions: bool = False) -> sa.Select:
    """SELECT of the raw frame (`raw_schema(settings.source_config)`) for `start <= time < end`.

    Built from the source mapping; identifiers are quoted by SQLAlchemy and every field is
    extracted by the server (json paths with -> / ->>), so only short text values cross the wire.
    `start`/`end` are tz-aware instants; both None selects the rows whose time IS NULL
    (they belong to no window and are quarantined separately). `row_versions` adds
    `row_version` (bigint): each row's xmin, as `sql/raw_window_fingerprints.sql` sums it.
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
    if row_versions:
        query = query.add_columns(sa.cast(sa.cast(t.c.xmin, sa.Text), sa.BigInteger).label(ROW_VERSION))
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
# Connections (by id) holding an `open_window` snapshot's transaction.
_IN_SNAPSHOT: set[int] = set()


@contextmanager
def shared_connections() -> Iterator[None]:
    """Within this context (e.g. one run over many partitions), `read_arrow` reuses an ADBC
    connection per thread and database instead of opening one per read; all are closed when the
    outermost context exits. A read is its own transaction (`read_arrow`) or an `open_window`
    snapshot, so no snapshot or lock is held between reads."""
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


# ADBC streams a query's result as binary COPY only when the query has no parameters; with
# parameters libpq buffers the whole result as text first (a 1M-row window: 3.3 s and ~1.4 GiB
# against 2.2 s and ~0.8 GiB). So a read moves its values into transaction-local settings with one
# small parameterized statement, and the query reads each once, in an InitPlan
# (`(SELECT current_setting('usage_etl.p1'))::type`): still no value in the SQL text.
_SETTING = "usage_etl.p{}"
def _as_setting(bind: BindParameter) -> tuple[str | None, sa.types.TypeEngine] | None:
    """(text of the value, or None for NULL; the SQL type it is cast back to), or None when the
    value cannot make the round trip exactly (the statement then keeps its parameters)."""
    value, kind = bind.effective_value, bind.type
    if value is None:
        return None, kind if isinstance(kind, (sa.DateTime, sa.Date, sa.Integer, sa.Numeric, sa.Boolean)) else sa.Text()
    if isinstance(value, bool):
        return ("true" if value else "false", sa.Boolean()) if isinstance(kind, sa.Boolean) else None
    if isinstance(value, datetime):
        aware = value.tzinfo is not None and value.utcoffset() is not None
        # the value's own offset, exact; a naive value only for a column without a time zone
        return (value.isoformat(), kind) if isinstance(kind, sa.DateTime) and aware == bool(kind.timezone) else None
    if isinstance(value, date):
        return (value.isoformat(), kind) if isinstance(kind, sa.Date) else None
    if isinstance(value, int):
        return (str(value), sa.BigInteger()) if isinstance(kind, sa.Integer) else None  # bigint: any int64
    if isinstance(value, Decimal):
        return (str(value), sa.Numeric()) if isinstance(kind, sa.Numeric) and value.is_finite() else None
    if isinstance(value, str) and not isinstance(kind, (sa.DateTime, sa.Date, sa.Integer, sa.Numeric, sa.Boolean, sa.Enum)):
        return value, sa.Text()  # text, and the key types of JSON paths
    return None


class _KeepParameters(Exception):
    def __init__(self, bind: BindParameter) -> None:
        super().__init__(f"cannot carry {bind.key!r} ({bind.type}) as text exactly")


def _rebind(stmt: sa.ClauseElement, carry: Callable[[str, sa.types.TypeEngine], sa.ColumnElement]) -> sa.ClauseElement:
    """`stmt` with each bind parameter replaced by `carry(text of its value, its SQL type)` (a NULL
    value by a typed NULL). Raises _KeepParameters for an expanding parameter (an IN list) or one
    whose value would not come back exactly (`_as_setting`)."""

    def replace(element: object) -> sa.ColumnElement | None:
        if not isinstance(element, BindParameter):
            return None
        setting = None if element.expanding else _as_setting(element)
        if setting is None:
            raise _KeepParameters(element)
        text, kind = setting
        return sa.cast(sa.null(), kind) if text is None else carry(text, kind)

    return visitors.replacement_traverse(stmt, {}, replace)


def _setting_name(i: int) -> sa.ColumnElement:
    return sa.literal_column("'" + _SETTING.format(i) + "'")  # our own constant name, not a value


def unbound(stmt: sa.ClauseElement) -> tuple[sa.Select | None, sa.ClauseElement]:
    """(setter, query): `query` is `stmt` with each bind parameter replaced by its value read back
    from a transaction-local setting, `setter` the SELECT of `set_config` calls (its values bound as
    text parameters) to run first in the same transaction. (None, stmt) when `stmt` has no
    parameters, an expanding one (an IN list) or one whose value would not come back exactly
    (see `_as_setting`): such a statement keeps its parameters."""
    values: list[str] = []

    def from_setting(text: str, kind: sa.types.TypeEngine) -> sa.ColumnElement:
        values.append(text)
        return sa.cast(sa.select(sa.func.current_setting(_setting_name(len(values)))).scalar_subquery(), kind)

    try:
        query = _rebind(stmt, from_setting)
    except _KeepParameters:
        return None, stmt
    if not values:
        return None, stmt
    setter = sa.select(*[sa.func.set_config(_setting_name(i), sa.bindparam(f"v{i}", v, sa.Text), sa.true()) for i, v in enumerate(values, 1)])
    return setter, query


def text_bound(stmt: sa.ClauseElement) -> sa.ClauseElement:
    """`stmt` with each bind parameter bound as text and cast back to its type in SQL
    (`CAST($1 AS TIMESTAMP WITH TIME ZONE)`), so ADBC binds text only: it binds a timestamptz
    parameter inside a BEGIN/COMMIT of its own, which would end the caller's transaction. A
    planner given the values (an unnamed statement is planned with them) estimates the casts
    as constants. Raises ValueError for a value `_as_setting` cannot carry exactly."""
    try:
        return _rebind(stmt, lambda text, kind: sa.cast(sa.bindparam(None, text, sa.Text), kind))
    except _KeepParameters as exc:
        raise ValueError(str(exc)) from None


def _execute(conn: adbc.Connection, stmt: sa.ClauseElement | str) -> pa.Table:
    sql, params = (stmt, []) if isinstance(stmt, str) else compile_bound(stmt)
    with conn.cursor() as cur:
        cur.execute(sql, params or None)
        return cur.fetch_arrow_table()


def _fetch(conn: adbc.Connection, stmt: sa.ClauseElement, *, in_transaction: bool = False) -> pa.Table:
    """Run one SELECT on `conn` (autocommit, or inside a transaction of the caller's with
    `in_transaction`) as a binary COPY stream (see `unbound`); an Arrow table."""
    setter, query = unbound(stmt)
    if setter is None:
        return _execute(conn, query)
    if not in_transaction:
        _execute(conn, "BEGIN READ ONLY")
    _execute(conn, setter)
    table = _execute(conn, query)
    if not in_transaction:
        _execute(conn, "COMMIT")
    return table


@contextmanager
def _connection(uri: str) -> Iterator[adbc.Connection]:
    """This thread's shared ADBC connection inside `shared_connections()` (dropped if a statement
    fails: it is in an unknown state), else a new one closed on exit. Autocommit either way."""
    shared = _SHARED
    key = (threading.get_ident(), uri)
    if shared is None or id(shared.get(key)) in _IN_SNAPSHOT:  # never inside another's snapshot
        with adbc.connect(uri, autocommit=True) as conn:
            yield conn
        return
    conn = shared.get(key)
    if conn is None:
        conn = shared[key] = adbc.connect(uri, autocommit=True)
    try:
        yield conn
    except BaseException:
        shared.pop(key, None)  # the next read opens a fresh one
        with contextlib.suppress(Exception):
            conn.close()
        raise


def _to_frame(table: pa.Table, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    if frame.height == 0:
        return pl.DataFrame(schema=schema)
    return frame.cast(schema)  # type: ignore[arg-type]


def read_arrow(url: sa.URL, stmt: sa.ClauseElement, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Run one SELECT over ADBC and return it as a Polars frame cast to `schema` (on this thread's
    shared connection inside `shared_connections()`, else on a new one)."""
    with _connection(libpq_uri(url)) as conn:
        return _to_frame(_fetch(conn, stmt), schema)


def read_window(settings: Settings, url: sa.URL, start: datetime | None, end: datetime | None) -> pl.DataFrame:
    """Raw rows of one window (`raw_schema(settings.source_config)` plus `raw_digest`, Int64, of
    every row); see `window_query` and `raw_digest`. A daily run reads with `open_window`, which
    computes the digest only of the rows it quarantines."""
    schema = {**raw_schema(settings.source_config), RAW_DIGEST: pl.Int64()}
    return read_arrow(url, with_digest(window_query(settings, start, end)), schema)


class WindowSnapshot:
    """One window's raw rows read in a REPEATABLE READ, READ ONLY transaction on an ADBC connection
    (see `open_window`), and the `raw_digest` of any of them computed later in the same snapshot.
    The read also brings each row's version (`versions`), so the window's late-data fingerprint
    describes exactly the rows read, with no second pass over them.

    The rows stay an Arrow table (`height` rows) and become Polars frames a slice at a time
    (`frames`): a frame of short text columns costs about twice its Arrow table (a 16-byte view per
    value on top of the Arrow buffers it points into), so a 1M-row window never exists twice.
    Each frame has `raw_schema(settings.source_config)` plus `raw_digest` (Int64) holding the
    row's number in the window (0, 1, …) until `digests` resolves it: hashing every row's text
    costs about a quarter of the read, and only quarantined rows need it.
    """

    def __init__(self, conn: adbc.Connection, settings: Settings, start: datetime, end: datetime) -> None:
        self._conn, self._settings, self._start, self._end = conn, settings, start, end
        self.schema = raw_schema(settings.source_config)
        table = _fetch(conn, window_query(settings, start, end, row_versions=True), in_transaction=True)
        self._versions = table.column(ROW_VERSION)
        self._table = table.drop_columns([ROW_VERSION])
        self.height = self._table.num_rows

    def _frame(self, table: pa.Table) -> pl.DataFrame:
        return _to_frame(table, {c: self.schema[c] for c in table.column_names})

    def frames(self, rows: int = 250_000) -> Iterator[pl.DataFrame]:
        """The window's rows as frames of at most `rows` (>= 1, else ValueError) rows, in order
        (one empty frame for an empty window)."""
        if rows < 1:
            raise ValueError(f"rows must be at least 1, not {rows}")
        for offset in range(0, max(self.height, 1), rows):
            frame = self._frame(self._table.slice(offset, rows)).with_row_index(RAW_DIGEST, offset=offset)
            yield frame.select(*self.schema, pl.col(RAW_DIGEST).cast(pl.Int64))

    def query(self, stmt: sa.Select, schema: dict[str, pl.DataType]) -> pl.DataFrame:
        """Run another SELECT in this snapshot (it sees exactly the rows read); a frame cast to
        `schema`. For a small result: the statement keeps its parameters, bound as text (see
        `text_bound`), so the planner sees their values, as it must to plan an aggregate well."""
        return _to_frame(_execute(self._conn, text_bound(stmt)), schema)

    def versions(self) -> pl.DataFrame:
        """`message_id` (String), `created_at` (Datetime us UTC) and `row_version` (Int64: the
        row's xmin) of every row, in order: what the window's late-data fingerprint is made of."""
        ids = self._frame(self._table.select(["message_id", "created_at"]))
        return ids.with_columns(pl.Series(ROW_VERSION, self._versions, dtype=pl.Int64))

    def rows(self, numbers: pl.Series) -> pl.DataFrame:
        """The rows numbered `numbers` (`raw_schema` columns), in that order; a number outside
        0 <= n < `height` raises pyarrow's IndexError."""
        return self._frame(self._table.take(numbers.cast(pl.Int64).to_arrow()))

    def digests(self, rows: pl.Series) -> pl.Series:
        """`raw_digest` (Int64) of the rows numbered `rows` (0 <= n < `height`; pyarrow raises
        IndexError otherwise), in that order. Within the snapshot every row is found again; a null
        would mean it was not.

        One SELECT of the window's rows that share a created_at with them, joined back on every
        raw column."""
        cols = list(self.schema)
        wanted = self.rows(rows)
        if wanted.height == 0:
            return pl.Series(RAW_DIGEST, [], dtype=pl.Int64)
        # The window's rows at the same instants (usually one or a few per instant), their instants
        # bound as one array literal: `IN (SELECT unnest(…))` is a semi join, so the created_at
        # index is probed per instant, or without the index the instants are hashed (never a
        # comparison of every row with every instant).
        times = wanted["created_at"].unique().sort().dt.to_string("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_list()
        instants = sa.cast(sa.bindparam("times", "{" + ",".join(times) + "}"), ARRAY(sa.TIMESTAMP(timezone=True)))
        w = window_query(self._settings, self._start, self._end).subquery("w")
        chosen = w.c.created_at.in_(sa.select(sa.func.unnest(instants)))
        rows_q = sa.select(w).where(chosen).offset(0).subquery("r")
        table = _fetch(self._conn, sa.select(rows_q, raw_digest(rows_q).label(RAW_DIGEST)), in_transaction=True)
        found = _to_frame(table, {**self.schema, RAW_DIGEST: pl.Int64()}).unique(subset=cols)
        return wanted.join(found, on=cols, how="left", nulls_equal=True, maintain_order="left")[RAW_DIGEST]


@contextmanager
def open_window(settings: Settings, url: sa.URL, start: datetime, end: datetime) -> Iterator[WindowSnapshot]:
    """Read the raw rows of `start <= time < end` (tz-aware instants) into a `WindowSnapshot`,
    whose `digests` stay consistent with the rows read until the context exits; the read-only
    transaction is then rolled back (it holds no lock, only the rows' snapshot). On this thread's
    shared connection inside `shared_connections()` (dropped if anything fails); other reads of
    this thread meanwhile use a connection of their own, so they cannot end the snapshot."""
    with _connection(libpq_uri(url)) as conn:
        _execute(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        _IN_SNAPSHOT.add(id(conn))
        try:
            yield WindowSnapshot(conn, settings, start, end)
        except BaseException:
            with contextlib.suppress(Exception):  # the error that matters is the one raised
                _execute(conn, "ROLLBACK")
            raise
        else:
            _execute(conn, "ROLLBACK")  # read only: nothing to keep
        finally:
            _IN_SNAPSHOT.discard(id(conn))
