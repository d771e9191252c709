"""Database connection: a SQLAlchemy engine (psycopg 3 driver) and its URL for ADBC reads.

Plain functions, no Dagster: the CLI, the pipeline and the Dagster resource all connect through here.

`USAGE_ETL_DATABASE_URL` names the server (`postgresql+psycopg://user@host:5432/db`). Without it,
an embedded PostgreSQL (the `pgserver` package) is started in `USAGE_ETL_DATA_DIR/pgdata`, so the
demo runs on a machine with nothing but Python.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import polars as pl
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from usage_etl.settings import ConfigError, Settings


@functools.cache
def embedded_url(data_dir: str) -> str:
    """Start (or join) the embedded PostgreSQL in `data_dir` and return its SQLAlchemy URL."""
    import pgserver  # heavy import, only when no server is configured

    pgdata = Path(data_dir).resolve() / "pgdata"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode=None)  # keep running for `make ui`
    return server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)


def database_url(settings: Settings) -> sa.URL:
    """The configured URL, forced to the psycopg 3 driver. Raises ConfigError if malformed (the
    message never shows the password)."""
    raw = settings.database_url or embedded_url(str(settings.data_dir))
    try:
        url = sa.make_url(raw)
    except sa.exc.ArgumentError:
        raise ConfigError("USAGE_ETL_DATABASE_URL is not a SQLAlchemy URL (postgresql+psycopg://user@host:5432/db)") from None
    except ValueError:  # a port that is not a number
        raise ConfigError("USAGE_ETL_DATABASE_URL: the port is not a number (postgresql+psycopg://user@host:5432/db)") from None
    if url.get_backend_name() != "postgresql":
        raise ConfigError(f"USAGE_ETL_DATABASE_URL must be a PostgreSQL URL, got {url.get_backend_name()!r}")
    return url.set(drivername="postgresql+psycopg")


@functools.cache
def make_engine(url: sa.URL, connect_timeout: int = 10) -> sa.Engine:
    """One pooled engine per URL (and connect timeout) and process. `connect_timeout` (seconds,
    USAGE_ETL_CONNECT_TIMEOUT_SECONDS) bounds each connection attempt, so a server that accepts
    TCP but never answers fails the attempt instead of hanging."""
    return sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": connect_timeout})


# --- table I/O shared by the store and the Claude Code ingestion ---------------------------------


# Quotes identifiers for SQL sent to the driver without parameters (DDL, COPY). The engine's own
# preparer doubles "%" (psycopg's placeholder escape), which only a parameterized execute undoes.
_PLAIN = postgresql.dialect(paramstyle="numeric_dollar").identifier_preparer


def quote(name: str) -> str:
    """`name` as a quoted identifier for `execute_ddl` and `copy_frame`."""
    return _PLAIN.quote(name)


def quote_table(table: sa.TableClause) -> str:
    """`schema.table` quoted for `execute_ddl` and `copy_frame`."""
    return _PLAIN.format_table(table)


def execute_ddl(conn: sa.Connection, sql: str) -> None:
    """Run a statement whose only variable parts are identifiers quoted by `quote`/`quote_table`,
    on the connection's transaction, as it is: no parameters, so neither ":" nor "%" in a name is
    read as a placeholder."""
    with conn.connection.driver_connection.cursor() as cur:
        cur.execute(sql)


# The catalog state reflection depends on: the table's oid and its columns (name, type, nullable)
# and constraints. One catalog query, about a tenth of what reflecting a table costs.
_SIGNATURE = sa.text(
    """SELECT c.oid::bigint, md5(concat_ws('|',
         (SELECT string_agg(a.attname || ':' || a.atttypid || ':' || a.atttypmod || ':' || a.attnotnull, ',' ORDER BY a.attnum)
            FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
         (SELECT string_agg(k.conname || ':' || pg_get_constraintdef(k.oid), ',' ORDER BY k.conname)
            FROM pg_constraint k WHERE k.conrelid = c.oid),
         (SELECT string_agg(i.indexrelid::text, ',' ORDER BY i.indexrelid) FROM pg_index i WHERE i.indrelid = c.oid)))
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = :schema AND c.relname = :name"""
)
_REFLECTED: dict[tuple, sa.Table] = {}


def reflect(conn: sa.Connection, schema: str, name: str) -> sa.Table:
    """The table `schema.name` as the catalog describes it on `conn`. Reflected once per database
    and catalog state (a daily partition writes six tables): a migration or any change of its
    columns, constraints or indexes is reflected again."""
    sig = conn.execute(_SIGNATURE, {"schema": schema, "name": name}).one_or_none()
    if sig is None:  # missing: let SQLAlchemy raise NoSuchTableError
        return sa.Table(name, sa.MetaData(schema=schema), autoload_with=conn)
    key = (conn.engine.url.render_as_string(hide_password=True), schema, name, *sig)
    table = _REFLECTED.get(key)
    if table is None:
        table = _REFLECTED[key] = sa.Table(name, sa.MetaData(schema=schema), autoload_with=conn)
    return table


def _pg_array(col: str) -> pl.Expr:
    # PostgreSQL array literal, each element double-quoted with \ and " escaped.
    quoted = pl.lit('"') + pl.element().str.replace_all(r'([\\"])', r"\$1") + pl.lit('"')
    return (pl.lit("{") + pl.col(col).list.eval(quoted).list.join(",") + pl.lit("}")).alias(col)


def copy_frame(conn: sa.Connection, table: str, frame: pl.DataFrame) -> None:
    """COPY a frame into `table` (quoted by `quote_table` or `quote`) as CSV; list columns become
    array literals.

    Every text value is written quoted and NULL as an unquoted empty field (PostgreSQL's CSV
    default), so no text value can read back as NULL: "", "\\N", quotes, backslashes, newlines and
    emoji arrive exactly as they are in the frame.
    """
    lists = [c for c, t in frame.schema.items() if isinstance(t, pl.List)]
    buf = io.BytesIO()
    frame.with_columns(*[_pg_array(c) for c in lists]).write_csv(buf, quote_style="non_numeric", null_value="")
    cols = ", ".join(quote(c) for c in frame.columns)
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:
        with cur.copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT csv, HEADER true)") as cp:
            cp.write(buf.getbuffer())


def temp_like(conn: sa.Connection, target: sa.Table, name: str) -> tuple[sa.Table, str]:
    """A temp table shaped like `target`, dropped at commit: (its Table, its name as `quote` gives it)."""
    execute_ddl(conn, f"CREATE TEMP TABLE {quote(name)} (LIKE {quote_table(target)} INCLUDING DEFAULTS) ON COMMIT DROP")
    stage = sa.Table(name, sa.MetaData(), *[sa.Column(c.name, c.type) for c in target.columns])
    return stage, quote(name)
