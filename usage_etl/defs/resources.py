"""The Dagster resource for PostgreSQL: a thin wrapper over `usage_etl.db`."""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa

from usage_etl.db import database_url, make_engine
from usage_etl.settings import Settings


class PostgresResource(dg.ConfigurableResource):
    """PostgreSQL for the pipeline. `database_url` empty -> USAGE_ETL_DATABASE_URL or embedded."""

    database_url: str = ""

    def url(self) -> sa.URL:
        base = Settings.from_env()
        return database_url(base.replace(database_url=self.database_url) if self.database_url else base)

    @property
    def engine(self) -> sa.Engine:
        return make_engine(self.url(), Settings.from_env().connect_timeout_seconds)
