"""Runtime settings, read from the environment (and a `.env` file in the working directory).

| variable | default | meaning |
|---|---|---|
| USAGE_ETL_DATABASE_URL | (embedded PostgreSQL) | SQLAlchemy URL of the database, psycopg driver |
| USAGE_ETL_SCHEMA | public | schema of the summary, grain and quarantine tables |
| USAGE_ETL_SOURCE_SCHEMA | public | schema of the raw source table |
| USAGE_ETL_SOURCE_TABLE | chat_messages | raw source table |
| USAGE_ETL_TIMEZONE | UTC | IANA business timezone of day/week/month windows |
| USAGE_ETL_START_DATE | 2026-01-01 | first daily partition (weeks/months start on or before it) |
| USAGE_ETL_DATA_DIR | .usage_etl | where the embedded PostgreSQL keeps its data |
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the setting."""


@dataclass(frozen=True)
class SourceColumns:
    """Column names of the raw source table (the default chat_messages mapping).

    `usage_json` is the jsonb column holding `{"usage": {...}, "status": ...}`.
    """

    id: str = "id"
    user_id: str = "user_id"
    conversation_id: str | None = "conversation_id"
    agent_id: str | None = "agent_id"
    model: str | None = "model"
    created_at: str = "created_at"
    metadata: str = "metadata"


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    schema: str = "public"
    source_schema: str = "public"
    source_table: str = "chat_messages"
    source_columns: SourceColumns = field(default_factory=SourceColumns)
    timezone: str = "UTC"
    start_date: date = date(2026, 1, 1)
    data_dir: Path = Path(".usage_etl")

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        """Build settings from `env` (default: os.environ after loading `.env`).

        Raises ConfigError naming the variable when a value is malformed.
        """
        if env is None:
            _load_dotenv()
            env = dict(os.environ)
        tz = env.get("USAGE_ETL_TIMEZONE", "UTC")
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"USAGE_ETL_TIMEZONE={tz!r} is not an IANA timezone name") from exc
        start = env.get("USAGE_ETL_START_DATE", "2026-01-01")
        try:
            start_date = date.fromisoformat(start)
        except ValueError as exc:
            raise ConfigError(f"USAGE_ETL_START_DATE={start!r} is not a date (YYYY-MM-DD)") from exc
        return cls(
            database_url=env.get("USAGE_ETL_DATABASE_URL") or None,
            schema=env.get("USAGE_ETL_SCHEMA", "public"),
            source_schema=env.get("USAGE_ETL_SOURCE_SCHEMA", "public"),
            source_table=env.get("USAGE_ETL_SOURCE_TABLE", "chat_messages"),
            timezone=tz,
            start_date=start_date,
            data_dir=Path(env.get("USAGE_ETL_DATA_DIR", ".usage_etl")),
        )


def _load_dotenv() -> None:
    # `dagster dev` reads .env itself; the CLI and tests get the same behaviour here.
    try:
        from dotenv import load_dotenv
    except ImportError:  # python-dotenv comes with dagster; stay usable without it
        return
    load_dotenv(Path.cwd() / ".env", override=False)
