"""Read one time window of raw messages from a PostgreSQL table into Polars.

Token fields are pulled out of the jsonb `metadata` column by the server, so only short text
values cross the wire, and the result arrives over ADBC as Arrow: no Python loop over rows.
Values stay text here on purpose: whether "12", "1.5", "-3" or "abc" is a valid token count is
decided in `normalize.py`, where a bad value becomes a quarantine row instead of a failed query.
"""

from __future__ import annotations

from datetime import datetime

import adbc_driver_postgresql.dbapi as adbc
import polars as pl
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB

from usage_etl.config import Settings

# Raw frame columns produced by `window_query`, besides message_id/user_id/…/created_at/status.
# name -> JSON path under metadata->'usage'.
USAGE_FIELDS: dict[str, tuple[str, ...]] = {
    "u_input_tokens": ("input_tokens",),
    "u_output_tokens": ("output_tokens",),
    "u_cache_creation_input_tokens": ("cache_creation_input_tokens",),
    "u_cache_creation_1h_input_tokens": ("cache_creation", "ephemeral_1h_input_tokens"),
    "u_cache_read_input_tokens": ("cache_read_input_tokens",),
    "u_prompt_tokens": ("prompt_tokens",),
    "u_completion_tokens": ("completion_tokens",),
    "u_prompt_cached_tokens": ("prompt_tokens_details", "cached_tokens"),
    "u_completion_reasoning_tokens": ("completion_tokens_details", "reasoning_tokens"),
    "u_input_cached_tokens": ("input_tokens_details", "cached_tokens"),
    "u_output_reasoning_tokens": ("output_tokens_details", "reasoning_tokens"),
}

RAW_SCHEMA: dict[str, pl.DataType] = {
    "message_id": pl.String(),
    "user_id": pl.String(),
    "conversation_id": pl.String(),
    "agent_id": pl.String(),
    "model": pl.String(),
    "created_at": pl.Datetime("us", "UTC"),
    "status": pl.String(),
    "usage_type": pl.String(),
    **{name: pl.String() for name in USAGE_FIELDS},
    "paid_amount": pl.String(),
}
# What the caller paid for the message, if the source records it: metadata->>'amount_paid'
# (a JSON number or numeric string, in the source's currency or credits; absent = not reported).
PAID_FIELD = "amount_paid"


def source_table(settings: Settings) -> sa.TableClause:
    c = settings.source_columns
    cols = [sa.column(n) for n in (c.id, c.user_id, c.created_at) if n]
    cols += [sa.column(n) for n in (c.conversation_id, c.agent_id, c.model) if n]
    cols.append(sa.column(c.metadata, JSONB))
    return sa.table(settings.source_table, *cols, schema=settings.source_schema)


def window_query(settings: Settings, start: datetime | None, end: datetime | None) -> sa.Select:
    """SELECT of the raw frame (`RAW_SCHEMA`) for `start <= created_at < end`.

    `start`/`end` are tz-aware instants; both None selects the rows whose created_at IS NULL
    (they belong to no window and are quarantined separately).
    """
    c = settings.source_columns
    t = source_table(settings)
    meta = t.c[c.metadata]
    usage = meta["usage"]

    def text(name: str | None) -> sa.ColumnElement:
        return sa.cast(t.c[name], sa.Text) if name else sa.null().cast(sa.Text)

    def path(keys: tuple[str, ...]) -> sa.ColumnElement:
        node = usage
        for k in keys[:-1]:
            node = node[k]
        return node[keys[-1]].astext

    query = sa.select(
        text(c.id).label("message_id"),
        text(c.user_id).label("user_id"),
        text(c.conversation_id).label("conversation_id"),
        text(c.agent_id).label("agent_id"),
        text(c.model).label("model"),
        t.c[c.created_at].label("created_at"),
        meta["status"].astext.label("status"),
        sa.func.jsonb_typeof(usage).label("usage_type"),
        *[path(keys).label(name) for name, keys in USAGE_FIELDS.items()],
        meta[PAID_FIELD].astext.label("paid_amount"),
    )
    ts = t.c[c.created_at]
    if start is None and end is None:
        return query.where(ts.is_(None))
    return query.where(ts >= start, ts < end)


def compile_sql(stmt: sa.ClauseElement) -> str:
    """Render a statement for ADBC: identifiers quoted by SQLAlchemy, values as literals."""
    return str(stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))


def libpq_uri(url: sa.URL) -> str:
    """The SQLAlchemy URL as a libpq connection URI (what ADBC expects)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def read_arrow(url: sa.URL, stmt: sa.ClauseElement, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Run one SELECT over ADBC and return it as a Polars frame cast to `schema`."""
    with adbc.connect(libpq_uri(url)) as conn, conn.cursor() as cur:
        cur.execute(compile_sql(stmt))
        table = cur.fetch_arrow_table()
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    if frame.height == 0:
        return pl.DataFrame(schema=schema)
    return frame.cast(schema)  # type: ignore[arg-type]


def read_window(settings: Settings, url: sa.URL, start: datetime | None, end: datetime | None) -> pl.DataFrame:
    """Raw rows of one window (`RAW_SCHEMA`); see `window_query`."""
    return read_arrow(url, window_query(settings, start, end), RAW_SCHEMA)
