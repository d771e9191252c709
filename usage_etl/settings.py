"""Runtime settings, read from the environment (and a `.env` file in the working directory).

| variable | default | meaning |
|---|---|---|
| USAGE_ETL_DATABASE_URL | (embedded PostgreSQL) | SQLAlchemy URL of the database, psycopg driver |
| USAGE_ETL_SCHEMA | public | schema of the summary, grain and quarantine tables |
| USAGE_ETL_SOURCE_SCHEMA | public | schema of the raw source table |
| USAGE_ETL_SOURCE_TABLE | chat_messages | raw source table |
| USAGE_ETL_SOURCE_CONFIG | (none) | source mapping file (TOML/YAML, docs/source_config.md); overrides the two above |
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

from usage_etl.sources.config import SourceConfig, SourceConfigError, identifier_problem, load_source_config


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the setting."""


@dataclass(frozen=True)
class SourceColumns:
    """Column names of the raw source table (the default chat_messages mapping).

    `metadata` is the jsonb column holding `{"usage": {...}, "status": ...}`. With a source
    configuration these mirror it: a field read from a JSON path or a constant shows as None.
    """

    id: str = "id"
    user_id: str | None = "user_id"
    conversation_id: str | None = "conversation_id"
    agent_id: str | None = "agent_id"
    model: str | None = "model"
    created_at: str = "created_at"
    metadata: str | None = "metadata"


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
    # The source mapping (source_config.py). None: the default chat_messages mapping over the
    # fields above. When set it wins, and source_schema/source_table/source_columns mirror it.
    source: SourceConfig | None = None

    def __post_init__(self) -> None:
        if self.source is not None:
            object.__setattr__(self, "source_schema", self.source.schema_name)
            object.__setattr__(self, "source_table", self.source.table)
            object.__setattr__(self, "source_columns", _mirror(self.source))

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def source_config(self) -> SourceConfig:
        """The effective source mapping (`source`, or the default one over the legacy fields)."""
        if self.source is not None:
            return self.source
        c = self.source_columns
        return SourceConfig.default(
            self.source_schema, self.source_table, id=c.id, user=c.user_id or "user_id",
            conversation=c.conversation_id, agent=c.agent_id, model=c.model, time=c.created_at,
            metadata=c.metadata or "metadata",
        )

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
        for var, default in (("USAGE_ETL_SCHEMA", "public"), ("USAGE_ETL_SOURCE_SCHEMA", "public"), ("USAGE_ETL_SOURCE_TABLE", "chat_messages")):
            if problem := identifier_problem(env.get(var, default)):
                raise ConfigError(f"{var}: the name {env[var][:80]!r} {problem}")
        source = None
        if env.get("USAGE_ETL_SOURCE_CONFIG"):
            try:
                source = load_source_config(env["USAGE_ETL_SOURCE_CONFIG"])
            except SourceConfigError as exc:
                raise ConfigError(f"USAGE_ETL_SOURCE_CONFIG: {exc}") from None
        return cls(
            source=source,
            database_url=env.get("USAGE_ETL_DATABASE_URL") or None,
            schema=env.get("USAGE_ETL_SCHEMA", "public"),
            source_schema=env.get("USAGE_ETL_SOURCE_SCHEMA", "public"),
            source_table=env.get("USAGE_ETL_SOURCE_TABLE", "chat_messages"),
            timezone=tz,
            start_date=start_date,
            data_dir=Path(env.get("USAGE_ETL_DATA_DIR", ".usage_etl")),
        )


def _mirror(src: SourceConfig) -> SourceColumns:
    c = src.columns

    def plain(ref) -> str | None:
        return ref.column if ref is not None and ref.column and not ref.path else None

    usage = src.tokens.usage
    return SourceColumns(
        id=c.id, user_id=plain(c.user), conversation_id=plain(c.conversation), agent_id=plain(c.agent),
        model=plain(c.model), created_at=c.time, metadata=usage.column if usage is not None else None,
    )


def _load_dotenv() -> None:
    # `dagster dev` reads .env itself; the CLI gets the same behaviour here. USAGE_ETL_DOTENV=0
    # turns it off (the tests do, so a demo's .env cannot change what they see).
    if os.environ.get("USAGE_ETL_DOTENV") == "0":
        return
    try:
        from dotenv import load_dotenv
    except ImportError:  # python-dotenv comes with dagster; stay usable without it
        return
    load_dotenv(Path.cwd() / ".env", override=False)
