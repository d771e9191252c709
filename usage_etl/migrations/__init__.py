"""Versioned schema migrations (Alembic). Each revision runs one file of `sql/`.

`upgrade(engine, schema)` is what `usage-etl db upgrade` calls: it creates the schema if needed,
takes an advisory lock so concurrent starts do not race, and applies pending revisions.
Running it again is a no-op.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

_HERE = Path(__file__).resolve().parent
VERSION_TABLE = "usage_etl_alembic_version"


def sql_dir() -> Path:
    """The `sql/` folder: at the repository root, or inside the package when installed as a wheel."""
    for candidate in (_HERE.parent.parent / "sql", _HERE.parent / "sql"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("sql/ directory not found next to the usage_etl package")


def read_sql(name: str) -> str:
    return (sql_dir() / name).read_text()


def _config(connection: sa.Connection, schema: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    cfg.attributes["connection"] = connection
    cfg.attributes["schema"] = schema
    return cfg


def upgrade(engine: sa.Engine, schema: str, revision: str = "head") -> list[str]:
    """Apply pending migrations in `schema`; return the revisions applied (empty when current)."""
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtextextended('usage_etl:migrate', 0))"))
        # Only when missing: CREATE SCHEMA, even IF NOT EXISTS, needs CREATE on the database, which
        # a non-superuser owner of an existing schema does not have.
        if not conn.dialect.has_schema(conn, schema):
            conn.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
        before = current(conn, schema)
        command.upgrade(_config(conn, schema), revision)
        after = current(conn, schema)
    script = ScriptDirectory(str(_HERE))
    if before == after:
        return []
    return [r.revision for r in script.iterate_revisions(after, before)][::-1]


def current(conn: sa.Connection, schema: str) -> str | None:
    ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE, "version_table_schema": schema})
    return ctx.get_current_revision()
