"""Database connection: a SQLAlchemy engine (psycopg 3 driver) and its URL for ADBC reads.

`USAGE_ETL_DATABASE_URL` names the server (`postgresql+psycopg://user@host:5432/db`). Without it,
an embedded PostgreSQL (the `pgserver` package) is started in `USAGE_ETL_DATA_DIR/pgdata`, so the
demo runs on a machine with nothing but Python.
"""

from __future__ import annotations

import functools
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from usage_etl.config import ConfigError, Settings


@functools.cache
def embedded_url(data_dir: str) -> str:
    """Start (or join) the embedded PostgreSQL in `data_dir` and return its SQLAlchemy URL."""
    import pgserver  # heavy import, only when no server is configured

    pgdata = Path(data_dir).resolve() / "pgdata"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode=None)  # keep running for `make ui`
    return server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)


def database_url(settings: Settings) -> sa.URL:
    """The configured URL, forced to the psycopg 3 driver. Raises ConfigError if malformed."""
    raw = settings.database_url or embedded_url(str(settings.data_dir))
    try:
        url = sa.make_url(raw)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"USAGE_ETL_DATABASE_URL is not a SQLAlchemy URL: {raw!r}") from exc
    if url.get_backend_name() != "postgresql":
        raise ConfigError(f"USAGE_ETL_DATABASE_URL must be a PostgreSQL URL, got {url.get_backend_name()!r}")
    return url.set(drivername="postgresql+psycopg")


@functools.cache
def make_engine(url: sa.URL) -> sa.Engine:
    """One pooled engine per URL and process."""
    return sa.create_engine(url, pool_pre_ping=True)


class PostgresResource(dg.ConfigurableResource):
    """PostgreSQL for the pipeline. `database_url` empty -> USAGE_ETL_DATABASE_URL or embedded."""

    database_url: str = ""

    def url(self) -> sa.URL:
        base = Settings.from_env()
        return database_url(Settings(**{**base.__dict__, "database_url": self.database_url or base.database_url}))

    @property
    def engine(self) -> sa.Engine:
        return make_engine(self.url())
