"""Runtime settings: one typed model (pydantic-settings) read from the environment and `./.env`.

Every variable is `USAGE_ETL_<FIELD>` (upper case). The model has three sections that read the same
environment: `Settings` (database, schemas, source, time), `AutomationSettings` (orchestration) and
`Thresholds` (integrity-check warnings). A malformed value raises `ConfigError` with one line naming
the variable, its value and what is expected.

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
| USAGE_ETL_CONNECT_TIMEOUT_SECONDS | 10 | bound of each connection attempt (whole seconds, >= 1) |
| USAGE_ETL_CONNECT_RETRIES | 3 | CLI: retries of a transient connection error before a command starts (waits 1, 2, 4 ... s) |
| USAGE_ETL_DOTENV | 1 | 0: do not read `./.env` |

`AutomationSettings` and `Thresholds` list their own variables.
"""

from __future__ import annotations

import contextvars
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
import warnings
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import cronsim
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from usage_etl.source_config import SourceConfig, SourceConfigError, identifier_problem, load_source_config

PREFIX = "USAGE_ETL_"
DEFAULT_MAX_UNPRICED_SHARE = 0.001  # 0.1% of messages
DEFAULT_MAX_QUARANTINE_SHARE = 0.01  # 1% of raw rows


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the setting."""


# --- the shared environment source --------------------------------------------------------------

# `from_env(env)` reads a given mapping instead of os.environ (tests, and the CLI's explicit env).
_ENV: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar("usage_etl_env", default=None)


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source over `_ENV` when one is set, else os.environ."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        given = _ENV.get()
        if given is None:
            return super()._load_env_vars()
        return {k.lower(): v for k, v in given.items() if v != "" or not self.env_ignore_empty}


def _dotenv_enabled() -> bool:
    # `dagster dev` reads .env itself; the CLI gets the same behaviour. USAGE_ETL_DOTENV=0 turns it
    # off (the tests do, so a demo's .env cannot change what they see).
    return os.environ.get("USAGE_ETL_DOTENV") != "0"


class _EnvModel(BaseSettings):
    """Base of the settings sections: same prefix, same sources, same one-line errors."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, frozen=True, extra="ignore", populate_by_name=True, env_ignore_empty=True)
    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, _MappingEnvSource(settings_cls)]
        if _ENV.get() is None and _dotenv_enabled():
            sources.append(dotenv_settings)
        return tuple(sources)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(_one_line(type(self), exc)) from None

    @classmethod
    def variable(cls, field: str) -> str:
        """The environment variable of `field` (its validation alias, else PREFIX + FIELD)."""
        alias = cls.model_fields[field].validation_alias
        return alias if isinstance(alias, str) else PREFIX + field.upper()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any):
        """Read the section from `env` (default: os.environ, then `./.env`).

        Raises ConfigError naming the variable when a value is malformed.
        """
        token = _ENV.set(env)
        try:
            return cls(_env_file=Path.cwd() / ".env", **overrides)
        finally:
            _ENV.reset(token)


def _one_line(cls: type[_EnvModel], exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    field = str(err["loc"][0]) if err["loc"] else ""
    var = cls.variable(field) if field in cls.model_fields else field
    value = err.get("input")
    ctx = err.get("ctx") or {}
    kind = err["type"]
    if kind in ("int_parsing", "int_from_float"):
        what = "is not a whole number"
    elif kind == "float_parsing":
        what = "is not a number"
    elif kind == "greater_than_equal":
        what = f"must be at least {ctx['ge']}"
    elif kind == "less_than_equal":
        what = f"must be at most {ctx['le']}"
    elif kind == "value_error":
        what = str(ctx.get("error", err["msg"]))
    else:
        what = err["msg"].lower()
    if kind == "value_error" and what.startswith(var):
        return what  # the validator named the variable itself (e.g. a source-config error)
    return f"{var}={value!r} {what}"


def _cron(value: str) -> str:
    try:
        cronsim.CronSim(value, datetime(2026, 1, 1))
    except cronsim.CronSimError:
        raise ValueError("is not a cron expression") from None
    return value


# --- the sections -------------------------------------------------------------------------------


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


warnings.filterwarnings("ignore", message='Field name "schema" in "Settings" shadows', category=UserWarning)


class Settings(_EnvModel):
    """Where the data is and how time is cut (the table in the module docstring).

    Built with `Settings.from_env()`, or directly with keyword arguments (tests; the environment
    then fills only what is not given). `source` wins over `source_schema`/`source_table`, which
    then mirror it.
    """

    database_url: str | None = None
    schema: str = "public"  # type: ignore[assignment]  # shadows BaseModel's deprecated schema()
    source_schema: str = "public"
    source_table: str = "chat_messages"
    source_columns: SourceColumns = Field(default_factory=SourceColumns, exclude=True)
    timezone: str = "UTC"
    start_date: date = date(2026, 1, 1)
    data_dir: Path = Path(".usage_etl")
    connect_timeout_seconds: int = Field(10, ge=1)
    connect_retries: int = Field(3, ge=0)
    # The source mapping (source_config.py), from USAGE_ETL_SOURCE_CONFIG (a file path) or given.
    # None: the default chat_messages mapping over the fields above.
    source: SourceConfig | None = Field(None, validation_alias="USAGE_ETL_SOURCE_CONFIG")

    @field_validator("database_url", mode="before")
    @classmethod
    def _blank_url(cls, v: Any) -> Any:
        return v or None

    @field_validator("schema", "source_schema", "source_table")
    @classmethod
    def _name(cls, v: str, info: ValidationInfo) -> str:
        # %, :, quotes, spaces and uppercase are fine (SQLAlchemy quotes every identifier); what
        # PostgreSQL cannot keep is refused here, naming the setting.
        if problem := identifier_problem(v):
            raise ValueError(f"{cls.variable(info.field_name)}: the name {v[:80]!r} {problem}")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("is not an IANA timezone name") from None
        return v

    @field_validator("start_date", mode="before")
    @classmethod
    def _date(cls, v: Any) -> Any:
        if isinstance(v, str):
            try:
                return date.fromisoformat(v)
            except ValueError:
                raise ValueError("is not a date (YYYY-MM-DD)") from None
        return v

    @field_validator("source", mode="before")
    @classmethod
    def _source(cls, v: Any) -> Any:
        if isinstance(v, (str, Path)):
            if not str(v):
                return None
            try:
                return load_source_config(v)
            except SourceConfigError as exc:
                raise ValueError(f"USAGE_ETL_SOURCE_CONFIG: {exc}") from None
        return v

    @model_validator(mode="after")
    def _mirror_source(self) -> Settings:
        if self.source is not None:
            object.__setattr__(self, "source_schema", self.source.schema_name)
            object.__setattr__(self, "source_table", self.source.table)
            object.__setattr__(self, "source_columns", _mirror(self.source))
        return self

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes` applied and validated again (the environment is not re-read).
        Raises ConfigError, naming the setting, for a bad value."""
        fields = {k: getattr(self, k) for k in type(self).model_fields}
        fields.update(changes)
        if fields.get("source") is None and "source_columns" not in changes:
            fields.pop("source_columns")  # mirrored from a source that is no longer there
        try:
            return type(self).model_validate(fields)
        except ValidationError as exc:
            raise ConfigError(_one_line(type(self), exc)) from None

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


class AutomationSettings(_EnvModel):
    """Orchestration settings.

    | variable | default | meaning |
    |---|---|---|
    | USAGE_ETL_NIGHTLY_CRON | 0 1 * * * | nightly tick, business timezone |
    | USAGE_ETL_FRESH_BY_CRON | 0 2 * * * | deadline by which the daily asset is expected fresh |
    | USAGE_ETL_LATE_DATA_LOOKBACK_DAYS | 7 | days before today checked for late-arriving data (>= 1) |
    | USAGE_ETL_LATE_DATA_INTERVAL_SECONDS | 3600 | how often the late-data sensor runs (>= 30) |
    | USAGE_ETL_BACKFILL_BATCH_SIZE | 30 | partitions per run in a backfill (0: whole range in one run) |
    | USAGE_ETL_RETRY_MAX | 3 | retries of a step after a transient database error |
    | USAGE_ETL_RETRY_DELAY_SECONDS | 30 | retry k waits (2^k - 1) x this, +- this (Dagster's exponential backoff: 30, 90, 210 s) |
    | USAGE_ETL_PARTITION_WORKERS | 2 | partitions of one run processed at once (threads, one connection each; memory grows with it) |
    | USAGE_ETL_ASSET_OWNERS | (none) | comma-separated owners shown in the Dagster catalog: e-mail addresses or `team:<name>` |
    """

    nightly_cron: str = "0 1 * * *"
    fresh_by_cron: str = "0 2 * * *"
    late_data_lookback_days: int = Field(7, ge=1)
    late_data_interval_seconds: int = Field(3600, ge=30)
    batch_size: int = Field(30, ge=0, validation_alias="USAGE_ETL_BACKFILL_BATCH_SIZE")
    retry_max: int = Field(3, ge=0)
    retry_delay_seconds: float = Field(30.0, ge=0)
    partition_workers: int = Field(2, ge=1)
    asset_owners: str = ""

    _check_cron = field_validator("nightly_cron", "fresh_by_cron")(lambda cls, v: _cron(v))

    @field_validator("asset_owners")
    @classmethod
    def _check_owners(cls, v: str) -> str:
        bad = [o for o in _split(v) if "@" not in o and not (o.startswith("team:") and len(o) > 5)]
        if bad:
            raise ValueError(f"owners must be e-mail addresses or team:<name>, not {', '.join(bad)}")
        return v

    @property
    def owners(self) -> list[str]:
        """`asset_owners` as a list (empty: the catalog shows no owner)."""
        return _split(self.asset_owners)


def _split(v: str) -> list[str]:
    return [o.strip() for o in v.split(",") if o.strip()]


class Thresholds(_EnvModel):
    """WARN thresholds of the integrity checks, as fractions (0.001 = 0.1%).

    | variable | default | meaning |
    |---|---|---|
    | USAGE_ETL_MAX_UNPRICED_SHARE | 0.001 | share of messages without a price above which pricing_coverage warns |
    | USAGE_ETL_MAX_QUARANTINE_SHARE | 0.01 | share of raw rows quarantined above which quarantine_rate warns |
    """

    max_unpriced_share: float = DEFAULT_MAX_UNPRICED_SHARE
    max_quarantine_share: float = DEFAULT_MAX_QUARANTINE_SHARE


# --- readers' security (docs/security.md) ---------------------------------------------------------

MODES = ("postgres", "supabase")
IDENTITIES = ("setting", "role")
# PostgreSQL's rule for a custom setting name (guc.c valid_custom_variable_name): two or more
# dot-separated parts, each a letter, _ or non-ASCII character, then also digits and $.
_PART = r"[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_$\x80-\U0010ffff]*"
SETTING_NAME = re.compile(rf"{_PART}(?:\.{_PART})+")
# Names PostgreSQL refuses for a role (or reads as something else in GRANT ... TO name).
_RESERVED_ROLES = {"public", "none"}


def check_role_name(var: str, value: str) -> str:
    """`value` if PostgreSQL accepts it as a role name (any text, quoted), else ConfigError naming `var`."""
    if not value or "\x00" in value:
        raise ConfigError(f"{var}={value!r} is not a role name: empty or with a NUL character")
    if len(value.encode()) > 63:
        raise ConfigError(f"{var}={value!r} is longer than 63 bytes, the longest name PostgreSQL keeps")
    if value.lower() in _RESERVED_ROLES or value.startswith("pg_"):
        raise ConfigError(f"{var}={value!r} is reserved by PostgreSQL (public, none and pg_* are not role names)")
    return value


def check_setting_name(var: str, value: str) -> str:
    """`value` if it is a valid custom setting name (e.g. usage_etl.user_id), else ConfigError."""
    if not SETTING_NAME.fullmatch(value):
        raise ConfigError(
            f"{var}={value!r} is not a custom setting name: two or more dot-separated parts of letters, "
            "digits, _ and $, each starting with a letter or _ (e.g. usage_etl.user_id)"
        )
    return value



class SecuritySettings(_EnvModel):
    """Who owns, who reads, and how a reader's user id and admin status are known.

    `identity` is what the policies use: 'setting' (session setting `user_setting`), 'role'
    (current_user) or 'supabase' (auth.uid()). `admin_table` is (schema, table) or None. An empty
    USAGE_ETL_ADMIN_ROLE / USAGE_ETL_ANON_ROLE means none.

    | variable | default (postgres mode) | default (supabase mode) | meaning |
    |---|---|---|---|
    | USAGE_ETL_RLS_MODE | postgres | | how a reader is identified: postgres or supabase |
    | USAGE_ETL_RLS_IDENTITY | setting | (not used) | postgres mode: `setting` (a session setting) or `role` (the role name) |
    | USAGE_ETL_RLS_USER_SETTING | usage_etl.user_id | (not used) | the session setting holding the user id |
    | USAGE_ETL_WRITER_ROLE | usage_etl_writer | usage_etl_writer | role owning the tables; the pipeline runs as it |
    | USAGE_ETL_READER_ROLE | usage_etl_reader | authenticated | role of dashboards: reads its own rows |
    | USAGE_ETL_ADMIN_ROLE | usage_etl_admin | usage_etl_admin | members read every row; empty: none |
    | USAGE_ETL_ANON_ROLE | (empty) | anon | role stripped of every privilege on our objects; empty: none |
    | USAGE_ETL_RLS_ADMIN_TABLE | (empty) | public.user_roles | schema.table listing admins; empty: no table check |
    | USAGE_ETL_RLS_ADMIN_USER_COLUMN | user_id | user_id | its user id column (compared as text) |
    | USAGE_ETL_RLS_ADMIN_ROLE_COLUMN | user_role | user_role | its role column (compared as text) |
    | USAGE_ETL_RLS_ADMIN_VALUE | admin | admin | the role column's value that makes a user an admin |
    """

    model_config = SettingsConfigDict(**{**_EnvModel.model_config, "env_ignore_empty": False})

    mode: str = Field("postgres", validation_alias="USAGE_ETL_RLS_MODE")
    identity: str = Field("setting", validation_alias="USAGE_ETL_RLS_IDENTITY")
    user_setting: str = Field("usage_etl.user_id", validation_alias="USAGE_ETL_RLS_USER_SETTING")
    writer_role: str = "usage_etl_writer"
    reader_role: str = "usage_etl_reader"
    admin_role: str | None = "usage_etl_admin"
    anon_role: str | None = None
    admin_table: tuple[str, str] | None = Field(None, validation_alias="USAGE_ETL_RLS_ADMIN_TABLE")
    admin_user_column: str = Field("user_id", validation_alias="USAGE_ETL_RLS_ADMIN_USER_COLUMN")
    admin_role_column: str = Field("user_role", validation_alias="USAGE_ETL_RLS_ADMIN_ROLE_COLUMN")
    admin_value: str = Field("admin", validation_alias="USAGE_ETL_RLS_ADMIN_VALUE")

    @model_validator(mode="before")
    @classmethod
    def _mode_defaults(cls, data: Any) -> Any:
        # Supabase mode changes the defaults: auth.uid() identity, `authenticated`, `anon`, user_roles.
        data = dict(data)

        def key(field: str) -> str:
            alias = cls.model_fields[field].validation_alias
            return alias if isinstance(alias, str) and alias in data else field

        if data.get(key("mode"), "postgres") == "supabase":
            if data.get(key("identity")) not in (None, "supabase"):
                raise ValueError("USAGE_ETL_RLS_IDENTITY applies to USAGE_ETL_RLS_MODE=postgres only (Supabase uses auth.uid())")
            data[key("identity")] = "supabase"
            data.setdefault(key("reader_role"), "authenticated")
            data.setdefault(key("anon_role"), "anon")
            data.setdefault(key("admin_table"), "public.user_roles")
        return data

    @field_validator("admin_role", "anon_role", mode="before")
    @classmethod
    def _empty_is_none(cls, v: Any) -> Any:
        return v or None

    @field_validator("admin_table", mode="before")
    @classmethod
    def _table(cls, v: Any) -> Any:
        if isinstance(v, str):
            return None if not v else tuple(v.split(".", 1)) if "." in v else ("public", v)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> SecuritySettings:
        if self.mode not in MODES:
            raise ValueError(f"USAGE_ETL_RLS_MODE={self.mode!r} must be one of {', '.join(MODES)}")
        allowed = ("supabase",) if self.mode == "supabase" else IDENTITIES
        if self.identity not in allowed:
            raise ValueError(f"USAGE_ETL_RLS_IDENTITY={self.identity!r} must be one of {', '.join(allowed)} in {self.mode} mode")
        check_setting_name("USAGE_ETL_RLS_USER_SETTING", self.user_setting)
        roles = {"USAGE_ETL_WRITER_ROLE": self.writer_role, "USAGE_ETL_READER_ROLE": self.reader_role,
                 "USAGE_ETL_ADMIN_ROLE": self.admin_role, "USAGE_ETL_ANON_ROLE": self.anon_role}
        named = {var: check_role_name(var, v) for var, v in roles.items() if v is not None}
        if len(set(named.values())) != len(named):
            raise ValueError(f"the writer, reader, admin and anonymous roles must differ: {named}")
        if self.admin_table is not None:
            if len(self.admin_table) != 2 or not all(self.admin_table):
                raise ValueError(f"USAGE_ETL_RLS_ADMIN_TABLE={self.admin_table!r} must be schema.table")
            for var, v in (("USAGE_ETL_RLS_ADMIN_USER_COLUMN", self.admin_user_column),
                           ("USAGE_ETL_RLS_ADMIN_ROLE_COLUMN", self.admin_role_column)):
                if not v:
                    raise ValueError(f"{var} is empty: it names a column of USAGE_ETL_RLS_ADMIN_TABLE")
        return self

    @property
    def dashboard_roles(self) -> list[str]:
        """The roles granted read access: the reader role and the admin role (if any)."""
        return [r for r in (self.reader_role, self.admin_role) if r]

    def describe(self) -> str:
        """One line: how readers and admins are identified."""
        who = {"setting": f"session setting {self.user_setting}", "role": "role name (current_user)",
               "supabase": "Supabase auth.uid()"}[self.identity]
        admins = [f"members of {self.admin_role}"] if self.admin_role else []
        if self.admin_table:
            admins.append(f"users with {self.admin_role_column} = {self.admin_value!r} in {'.'.join(self.admin_table)}")
        return f"readers: user id from {who}; admins: {' and '.join(admins) or 'nobody'}"


def _mirror(src: SourceConfig) -> SourceColumns:
    c = src.columns

    def plain(ref) -> str | None:
        return ref.column if ref is not None and ref.column and not ref.path else None

    usage = src.tokens.usage
    return SourceColumns(
        id=c.id, user_id=plain(c.user), conversation_id=plain(c.conversation), agent_id=plain(c.agent),
        model=plain(c.model), created_at=c.time, metadata=usage.column if usage is not None else None,
    )
