"""Fail fast when the source mapping does not fit the table, before any partition is written.

`check_source(engine, settings)` looks at the table's catalog entry and at a sample of its most
recent rows and raises one `MappingError` listing every problem, each naming the table, the
column, the configuration key and the expected type:
- the table or a configured column does not exist, or the source is a view or a foreign table
  (a daily run reads each row's version, `xmin`, for the late-data fingerprint);
- a column has a type that cannot be read as expected (tokens: integer, numeric or text; the time
  column: timestamptz; a key path: json/jsonb);
- a key path never matches in the sample, or a token/paid-amount field has values in the sample but
  none of them is a number (e.g. a path that points at an object).
Per-row problems (one garbled value among many) are not mapping errors: they go to quarantine.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from usage_etl.settings import ConfigError, Settings
from usage_etl.source_config import REQUIRED_ANY, SEMANTIC_FIELDS, FieldRef, SourceConfig
from usage_etl.sources.postgres import json_node, field_text, source_table

SAMPLE_ROWS = 10_000  # most recent rows looked at for key paths and value types

INTEGER_TYPES = {"smallint", "integer", "bigint", "numeric"}
TEXT_TYPES = {"text", "character varying", "character"}
JSON_TYPES = {"json", "jsonb"}
# expected kind -> (description for messages, accepted column types; None = any)
KINDS: dict[str, tuple[str, set[str] | None]] = {
    "any": ("any type (read as text)", None),
    "text": ("a scalar read as text", None),
    "timestamptz": ("timestamp with time zone", {"timestamp with time zone"}),
    "integer": ("an integer (smallint, integer, bigint, numeric with whole values, or text holding integers)", INTEGER_TYPES | TEXT_TYPES),
    "numeric": ("a number (integer, numeric, real, double precision, or text holding numbers)", INTEGER_TYPES | TEXT_TYPES | {"real", "double precision"}),
    "object": ("a JSON object (json or jsonb column)", JSON_TYPES),
}
_INTEGER_RE = r"^\s*-?\d{1,18}(\.0*)?\s*$"
_NUMBER_RE = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"


class MappingError(ConfigError):
    """The source mapping does not fit the source table; the message lists every problem."""


@dataclass(frozen=True)
class Role:
    key: str  # configuration key, e.g. "tokens.input_tokens"
    ref: FieldRef
    kind: str  # a KINDS key
    must_match: bool = True  # a key path must match at least one sampled row


def roles(src: SourceConfig) -> list[Role]:
    """Every configured field with the kind of value it must hold."""
    c = src.columns
    out = [Role("columns.id", FieldRef(column=c.id), "any"), Role("columns.time", FieldRef(column=c.time), "timestamptz")]
    for key, ref in [("user", c.user), ("conversation", c.conversation), ("agent", c.agent), ("model", c.model)]:
        if ref is not None:
            out.append(Role(f"columns.{key}", ref, "text"))
    if c.status is not None:
        # Status is optional per row (absent = success): a source may log it only on errors.
        out.append(Role("columns.status", c.status, "text", must_match=not c.status.path))
    if c.paid_amount is not None:
        # Like status, a paid amount inside a JSON document may be present on some rows only.
        out.append(Role("columns.paid_amount", c.paid_amount, "numeric", must_match=not c.paid_amount.path))
    t = src.tokens
    if t.usage is not None:
        out.append(Role("tokens.usage", t.usage, "object"))
    if t.semantics != "auto":
        explicit = t.fields
        for name, (_, keys) in SEMANTIC_FIELDS[t.semantics].items():
            if name in explicit:
                out.append(Role(f"tokens.{name}", explicit[name], "integer"))
            elif t.usage is not None:
                # Optional fields of the usage object may be absent from every row.
                out.append(Role(f"tokens.{name}", t.usage.child(*keys), "integer", must_match=False))
    out += [Role(f"breakdowns.{name}", ref, "text") for name, ref in src.breakdowns.items()]
    return [r for r in out if r.ref.value is None]


def _columns(conn: sa.Connection, schema: str, table: str) -> dict[str, str]:
    rows = conn.execute(
        sa.text(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = :s AND table_name = :t ORDER BY ordinal_position"
        ),
        {"s": schema, "t": table},
    ).all()
    return dict(rows)  # type: ignore[arg-type]


# Kinds of relation read as a source whose rows have a version (xmin): tables, partitioned tables.
_VERSIONED = {"r": "table", "p": "partitioned table"}
_KIND_NAMES = {"v": "view", "f": "foreign table"}


def _row_version_problem(conn: sa.Connection, schema: str, table: str, where: str) -> str | None:
    """A daily run reads each row's version (xmin) for its late-data fingerprint: a view or a
    foreign table has none."""
    kind = conn.execute(
        sa.text("SELECT c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = :s AND c.relname = :t"),
        {"s": schema, "t": table},
    ).scalar_one_or_none()
    if kind is None or kind in _VERSIONED:
        return None
    return (
        f"{where} is a {_KIND_NAMES.get(kind, f'relation of kind {kind!r}')}: a daily run reads each row's version (xmin) "
        "for the late-data fingerprint, which only a table has; read the table itself"
    )


def _catalog_problems(src: SourceConfig, cols: dict[str, str], where: str) -> list[str]:
    problems = []
    for r in roles(src):
        desc, accepted = KINDS[r.kind]
        name = r.ref.column
        found = cols.get(name)  # type: ignore[arg-type]
        if found is None:
            problems.append(f"{where}.{name} ({r.key}): column does not exist; expected {desc}")
        elif r.ref.path and found not in JSON_TYPES:
            problems.append(f"{where}.{name} ({r.key}): has type {found}, but path {'.'.join(r.ref.path)} needs json or jsonb; expected {desc}")
        elif not r.ref.path and accepted is not None and found not in accepted:
            problems.append(f"{where}.{name} ({r.key}): has type {found}, which cannot be read as {desc}")
    return problems


def _sample_problems(conn: sa.Connection, settings: Settings, where: str, sample_rows: int) -> list[str]:
    src = settings.source_config
    t = source_table(settings)
    checks = [r for r in roles(src) if r.ref.path or r.kind in ("integer", "numeric")]
    checks = [r for r in checks if r.key not in ("columns.id", "columns.time")]
    if not checks:
        return []
    exprs = []
    for r in checks:
        if r.kind == "object":
            exprs.append(sa.func.jsonb_typeof(sa.cast(json_node(t, r.ref), JSONB)))
        else:
            exprs.append(field_text(t, r.ref))
    ts = t.c[src.columns.time]
    # Matches a backward scan of a plain index on the time column: no sort of the whole table.
    sample = (
        sa.select(*[e.label(f"c{i}") for i, e in enumerate(exprs)])
        .where(ts.is_not(None))
        .order_by(ts.desc())
        .limit(sample_rows)
        .subquery()
    )
    aggs: list[sa.ColumnElement] = [sa.func.count()]
    for i, r in enumerate(checks):
        col = sample.c[f"c{i}"]
        if r.kind == "object":
            good = col == "object"
        elif r.kind in ("integer", "numeric"):
            good = col.regexp_match(_INTEGER_RE if r.kind == "integer" else _NUMBER_RE)
        else:
            good = col.is_not(None)
        aggs += [sa.func.count(col), sa.func.count().filter(good), sa.func.min(col)]
    row = conn.execute(sa.select(*aggs)).one()
    n = row[0]
    if n == 0:
        return []  # an empty table says nothing about paths and values
    problems = []
    matched: dict[str, bool] = {}
    for i, r in enumerate(checks):
        present, good, example = row[1 + 3 * i : 4 + 3 * i]
        matched[r.key] = present > 0
        desc = KINDS[r.kind][0]
        label = f"{where}.{r.ref.describe()} ({r.key})"
        if r.ref.path and present == 0 and r.must_match:
            problems.append(f"{label}: the key path matches none of the latest {n} rows; expected {desc}")
        elif present > 0 and good == 0:
            problems.append(f"{label}: none of the {present} sampled values is {desc} (e.g. {example!r})")
    semantics = src.tokens.semantics
    required = REQUIRED_ANY.get(semantics, ())
    if src.tokens.usage is not None and required and not any(matched.get(f"tokens.{f}") for f in required):
        fields = " or ".join(required)
        problems.append(f"{where}.{src.tokens.usage.describe()} (tokens.usage): no {fields} in the latest {n} rows; expected {semantics} usage objects")
    return problems


def check_source(engine: sa.Engine, settings: Settings, sample_rows: int = SAMPLE_ROWS, *, content: bool = True) -> list[str]:
    """Raise MappingError (one message, every problem) unless the mapping fits the source table.

    Reads the catalog and the `sample_rows` most recent rows (by the time column); cheap with the
    recommended index on the time column. With `content=False` only the catalog (tables, columns,
    types) can fail: what the sample shows is returned as warnings instead, since rows whose
    content is bad (a day where no row has a usage object) are quarantined, not a reason to stop.
    Returns those warnings (empty with `content=True`).
    """
    src = settings.source_config
    where = f"{src.schema_name}.{src.table}"
    with engine.connect() as conn:
        cols = _columns(conn, src.schema_name, src.table)
        if not cols:
            raise MappingError(f"source table {where} does not exist (or this database user cannot see it)")
        problems = _catalog_problems(src, cols, where)
        version = _row_version_problem(conn, src.schema_name, src.table, where)
        problems += [version] if version else []
        if not problems:
            problems = _sample_problems(conn, settings, where, sample_rows)
            if not content:
                return problems
    if problems:
        head = f"source mapping does not fit {where} ({len(problems)} problem{'s' if len(problems) > 1 else ''}):"
        raise MappingError("\n  - ".join([head, *problems]))
    return []
