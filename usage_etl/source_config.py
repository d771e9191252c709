"""Source mapping: which table holds the raw usage rows and how its columns map to the canonical frame.

One TOML (or YAML) file, named by `USAGE_ETL_SOURCE_CONFIG`, describes a source; `docs/source_config.md`
documents every key and `examples/` has one file per known schema. Without a file the source is the
default `chat_messages` mapping (`SourceConfig.default()`), the same as `examples/003_chat_messages.toml`.

A *field reference* (`FieldRef`) says where a value comes from:
- `"col"` — a column (any type; read as text);
- `{ column = "metadata", path = "usage.input_tokens" }` — a key path inside a json/jsonb column
  (`path` is dot-separated or a list of keys);
- `{ value = "claude-sonnet-4-20250514" }` — a constant (e.g. the model of a table that does not log it).

Token semantics (docs/architecture.md, "Canonical frame") decide which token fields exist and how they become canonical tokens:
`auto` (detect per row from the usage object: OpenAI chat, OpenAI responses, else Anthropic),
`anthropic`, `openai_chat`, `openai_responses`, or `flat` (the canonical fields themselves).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_serializer, model_validator

Semantics = Literal["auto", "anthropic", "openai_chat", "openai_responses", "flat"]

# Raw-frame token slots read by `auto`, with their key paths inside the usage object.
AUTO_USAGE_FIELDS: dict[str, tuple[str, ...]] = {
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
# Every raw token slot: the auto ones plus the reasoning count of flat tables.
RAW_TOKEN_SLOTS = [*AUTO_USAGE_FIELDS, "u_reasoning_tokens"]

# Per explicit semantics: config field name -> (raw slot, default key path inside `tokens.usage`).
SEMANTIC_FIELDS: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {
    "anthropic": {
        "input_tokens": ("u_input_tokens", ("input_tokens",)),
        "output_tokens": ("u_output_tokens", ("output_tokens",)),
        "cache_creation_input_tokens": ("u_cache_creation_input_tokens", ("cache_creation_input_tokens",)),
        "cache_creation_1h_input_tokens": ("u_cache_creation_1h_input_tokens", ("cache_creation", "ephemeral_1h_input_tokens")),
        "cache_read_input_tokens": ("u_cache_read_input_tokens", ("cache_read_input_tokens",)),
    },
    "openai_chat": {
        "prompt_tokens": ("u_prompt_tokens", ("prompt_tokens",)),
        "completion_tokens": ("u_completion_tokens", ("completion_tokens",)),
        "cached_tokens": ("u_prompt_cached_tokens", ("prompt_tokens_details", "cached_tokens")),
        "reasoning_tokens": ("u_completion_reasoning_tokens", ("completion_tokens_details", "reasoning_tokens")),
    },
    "openai_responses": {
        "input_tokens": ("u_input_tokens", ("input_tokens",)),
        "output_tokens": ("u_output_tokens", ("output_tokens",)),
        "cached_tokens": ("u_input_cached_tokens", ("input_tokens_details", "cached_tokens")),
        "reasoning_tokens": ("u_output_reasoning_tokens", ("output_tokens_details", "reasoning_tokens")),
    },
    "flat": {
        name: (slot, (name,))
        for name, slot in [
            ("input_tokens", "u_input_tokens"),
            ("cache_creation_input_tokens", "u_cache_creation_input_tokens"),
            ("cache_creation_1h_input_tokens", "u_cache_creation_1h_input_tokens"),
            ("cache_read_input_tokens", "u_cache_read_input_tokens"),
            ("output_tokens", "u_output_tokens"),
            ("reasoning_tokens", "u_reasoning_tokens"),
        ]
    },
}
# A row carries usage when one of these is present (flat: always; absent fields count 0).
REQUIRED_ANY: dict[str, tuple[str, ...]] = {
    "anthropic": ("input_tokens", "output_tokens"),
    "openai_chat": ("prompt_tokens", "completion_tokens"),
    "openai_responses": ("input_tokens", "output_tokens"),
    "flat": (),
}

# Status values counted as errors (compared trimmed and lower-cased); anything else is a success.
DEFAULT_ERROR_VALUES = ("error", "failed", "failure", "cancelled", "canceled", "timeout", "rejected")

_DIMENSION_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


# PostgreSQL cuts longer names to 63 bytes without an error: a 64-byte table name would name another table.
MAX_IDENTIFIER_BYTES = 63


def identifier_problem(name: str) -> str | None:
    """Why `name` cannot be a PostgreSQL table, schema or column name, or None if it can. Any other
    character (%, :, quotes, spaces, uppercase) is fine: SQLAlchemy quotes every identifier."""
    if not name:
        return "is empty"
    if "\x00" in name:
        return "contains a NUL character"
    size = len(name.encode())
    if size > MAX_IDENTIFIER_BYTES:
        return f"is {size} bytes; PostgreSQL names are at most {MAX_IDENTIFIER_BYTES} bytes"
    return None


def _identifier(name: str | None) -> str | None:
    if name is not None and (problem := identifier_problem(name)):
        raise ValueError(f"name {name[:80]!r} {problem}")
    return name


class SourceConfigError(ValueError):
    """The source configuration is malformed; the message names the file and the bad key."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def __hash__(self) -> int:  # dict fields: hash the canonical JSON (Settings is hashable)
        return hash(self.model_dump_json())


class FieldRef(_Model):
    """Where one value comes from: a column, a key path in a json/jsonb column, or a constant."""

    column: str | None = None
    path: tuple[str, ...] = ()
    value: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"column": data}
        if isinstance(data, dict) and isinstance(data.get("path"), str):
            return {**data, "path": tuple(data["path"].split("."))}
        return data

    @model_validator(mode="after")
    def _one_source(self) -> FieldRef:
        if (self.column is None) == (self.value is None):
            raise ValueError("give exactly one of column=... or value=...")
        if self.value is not None and self.path:
            raise ValueError("path applies to a json column, not to a constant value")
        if self.column is not None and not self.column:
            raise ValueError("column name is empty")
        _identifier(self.column)
        if any(not k for k in self.path):
            raise ValueError("path has an empty key")
        return self

    @model_serializer(mode="wrap")
    def _compact(self, handler: Any) -> Any:
        # Dump as written in a file: "col" for a plain column, else only the keys given.
        if self.column is not None and not self.path:
            return self.column
        return {k: v for k, v in handler(self).items() if v not in (None, (), [])}

    def child(self, *keys: str) -> FieldRef:
        return FieldRef(column=self.column, path=self.path + keys)

    def describe(self) -> str:
        """`col`, `col->'a'->>'b'` or `'constant'`, as the value appears in SQL."""
        if self.value is not None:
            return repr(self.value)
        if not self.path:
            return str(self.column)
        inner = "".join(f"->'{k}'" for k in self.path[:-1])
        return f"{self.column}{inner}->>'{self.path[-1]}'"


class Table(_Model):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    # `schema` would shadow a BaseModel attribute: stored as schema_, written `schema` in the file.
    schema_: str = Field("public", alias="schema", min_length=1)
    table: str = Field("chat_messages", min_length=1)

    @field_validator("schema_", "table")
    @classmethod
    def _name(cls, v: str) -> str:
        return _identifier(v)  # type: ignore[return-value]


class Columns(_Model):
    id: str  # unique message/request id (any type)
    time: str  # timestamptz event time: drives partitioning

    @field_validator("id", "time")
    @classmethod
    def _name(cls, v: str) -> str:
        return _identifier(v)  # type: ignore[return-value]
    user: FieldRef
    conversation: FieldRef | None = None
    agent: FieldRef | None = None
    model: FieldRef | None = None
    status: FieldRef | None = None
    paid_amount: FieldRef | None = None
    # Where the provider reports the service tier it served (OpenAI: the response's top-level
    # `service_tier`); `usage.service_tier` of the usage object (Anthropic) is read as well.
    service_tier: FieldRef | None = None


class Tokens(_Model):
    """Token semantics, the optional usage object, and per-field references.

    A field given explicitly is read from there; otherwise, with `usage`, from its default key path
    inside the usage object; otherwise it is not reported. Which fields exist depends on the
    semantics (`SEMANTIC_FIELDS`); `auto` takes none and reads every provider's fields from `usage`.
    """

    semantics: Semantics = "auto"
    usage: FieldRef | None = None
    input_tokens: FieldRef | None = None
    output_tokens: FieldRef | None = None
    cache_creation_input_tokens: FieldRef | None = None
    cache_creation_1h_input_tokens: FieldRef | None = None
    cache_read_input_tokens: FieldRef | None = None
    prompt_tokens: FieldRef | None = None
    completion_tokens: FieldRef | None = None
    cached_tokens: FieldRef | None = None
    reasoning_tokens: FieldRef | None = None

    @property
    def fields(self) -> dict[str, FieldRef]:
        """The token fields given explicitly."""
        return {k: v for k, v in self if k not in ("semantics", "usage") and v is not None}

    @model_validator(mode="after")
    def _check(self) -> Tokens:
        names = list(self.fields)
        if self.semantics == "auto":
            if self.usage is None:
                raise ValueError("semantics 'auto' needs usage = { column = ..., path = ... } (the usage JSON object)")
            if names:
                raise ValueError(f"semantics 'auto' detects fields per row; choose a semantics to map {names[0]!r}")
            return self
        allowed = SEMANTIC_FIELDS[self.semantics]
        for name in names:
            if name not in allowed:
                raise ValueError(f"unknown token field {name!r} for semantics {self.semantics!r} (expected one of: {', '.join(allowed)})")
        return self

    def refs(self) -> dict[str, FieldRef | None]:
        """Raw token slot (`RAW_TOKEN_SLOTS`) -> where it is read from (None: not reported)."""
        out: dict[str, FieldRef | None] = {slot: None for slot in RAW_TOKEN_SLOTS}
        if self.semantics == "auto":
            assert self.usage is not None
            out.update({slot: self.usage.child(*keys) for slot, keys in AUTO_USAGE_FIELDS.items()})
            return out
        explicit = self.fields
        for name, (slot, keys) in SEMANTIC_FIELDS[self.semantics].items():
            if name in explicit:
                out[slot] = explicit[name]
            elif self.usage is not None:
                out[slot] = self.usage.child(*keys)
        return out


class Status(_Model):
    error_values: tuple[str, ...] = DEFAULT_ERROR_VALUES

    @field_validator("error_values")
    @classmethod
    def _normalized(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(s.strip().lower() for s in v)


class ClaudeCode(_Model):
    """Claude Code JSONL transcripts landed into the `claude_code_messages` table."""

    root: Path
    user: str | None = None
    user_from_folder: bool = False

    @model_validator(mode="after")
    def _one_user(self) -> ClaudeCode:
        if (self.user is None) == (not self.user_from_folder):
            raise ValueError("give exactly one of user = '...' or user_from_folder = true")
        return self


class SourceConfig(_Model):
    """A validated source mapping; see the module doc and docs/source_config.md."""

    source: Table = Table()
    columns: Columns
    tokens: Tokens
    status: Status = Status()
    breakdowns: dict[str, FieldRef] = {}  # dimension name -> field; order kept
    claude_code: ClaudeCode | None = None

    @field_validator("breakdowns")
    @classmethod
    def _dimension_names(cls, v: dict[str, FieldRef]) -> dict[str, FieldRef]:
        for name in v:
            if not _DIMENSION_NAME.match(name):
                raise ValueError(f"breakdown name {name!r} must match {_DIMENSION_NAME.pattern}")
        return v

    @property
    def schema_name(self) -> str:
        return self.source.schema_

    @property
    def table(self) -> str:
        return self.source.table

    @property
    def dimensions(self) -> list[str]:
        return list(self.breakdowns)

    @classmethod
    def default(
        cls,
        schema: str = "public",
        table: str = "chat_messages",
        *,
        id: str = "id",
        user: str = "user_id",
        conversation: str | None = "conversation_id",
        agent: str | None = "agent_id",
        model: str | None = "model",
        time: str = "created_at",
        metadata: str = "metadata",
    ) -> SourceConfig:
        """The chat_messages mapping: jsonb `metadata` = {"usage": {...}, "status": ...}, auto semantics."""
        meta = FieldRef(column=metadata)
        ref = lambda c: FieldRef(column=c) if c else None  # noqa: E731
        return cls(
            source=Table(schema_=schema, table=table),
            columns=Columns(
                id=id, time=time, user=FieldRef(column=user), conversation=ref(conversation), agent=ref(agent),
                model=ref(model), status=meta.child("status"), paid_amount=meta.child("amount_paid"),
                service_tier=meta.child("service_tier"),
            ),
            tokens=Tokens(semantics="auto", usage=meta.child("usage")),
        )


_MESSAGES = {"extra_forbidden": "unknown key", "missing": "required key is missing"}


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and p.startswith(("function-", "tagged-"))))


def parse_source_config(data: dict[str, Any], origin: str = "source config") -> SourceConfig:
    """Validate a decoded TOML/YAML document. Raises SourceConfigError naming every bad key."""
    try:
        return SourceConfig.model_validate(data)
    except ValidationError as exc:
        lines = [f"{_loc(e['loc']) or '(top level)'}: {_MESSAGES.get(e['type'], e['msg'].removeprefix('Value error, '))}" for e in exc.errors(include_url=False)]
        raise SourceConfigError(f"{origin}: " + "; ".join(lines)) from None


def load_source_config(path: str | Path) -> SourceConfig:
    """Read and validate a source configuration file (.toml, or .yaml/.yml).

    Raises SourceConfigError when the file is missing, unreadable, not valid TOML/YAML, or has a
    bad key or value (the message names the file and the key).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SourceConfigError(f"source config {p}: cannot read ({exc.strerror})") from None
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml  # comes with dagster

            data = yaml.safe_load(text) or {}
        else:
            data = tomllib.loads(text)
    except Exception as exc:  # tomllib.TOMLDecodeError / yaml.YAMLError: message says where
        raise SourceConfigError(f"source config {p}: not valid {'YAML' if p.suffix in ('.yaml', '.yml') else 'TOML'}: {exc}") from None
    if not isinstance(data, dict):
        raise SourceConfigError(f"source config {p}: top level must be a table of sections")
    return parse_source_config(data, f"source config {p}")
