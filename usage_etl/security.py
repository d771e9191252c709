"""Readers' security in the database: roles, ownership, identity settings and grants.

`upgrade` is what `usage-etl db upgrade` runs (docs/security.md):
- with `create_roles` (run once by a superuser, or a role with CREATEROLE that is a member of the
  writer role): creates the missing writer, reader and admin roles (NOLOGIN, no superuser, no
  BYPASSRLS), gives the writer the ETL schema (or USAGE and CREATE on an existing one) and
  ownership of our existing tables and functions, SELECT on the raw source (plus a read-all policy
  for the writer when the source has row-level security), then runs the migrations AS the writer,
  so that every table is the writer's;
- always: the migrations, then `configure` (identity settings read by the policies) and `grant`
  (exact privileges of the reader, admin and anonymous roles that exist).

The row-level security itself is migration 0005 (sql/0005_row_level_security.sql). Identifiers are
quoted by SQLAlchemy and such statements run with exec_driver_sql (sa.text
would read a ":name" inside a quoted name as a parameter); psycopg.sql quotes the SET ROLE of a raw
connection; values are bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
import sqlalchemy as sa

from usage_etl import migrations, store
from usage_etl.settings import ConfigError, Settings
from usage_etl.settings import SecuritySettings

SETTINGS_TABLE = "usage_etl_read_settings"
USER_FACING_TABLES = (store.SUMMARY_TABLE, store.BY_MODEL_TABLE, store.BY_DIMENSION_TABLE)
INTERNAL_TABLES = (
    store.GRAIN_TABLE, store.DIMENSION_GRAIN_TABLE, store.QUARANTINE_TABLE, "raw_window_fingerprint",
    "claude_code_messages", "claude_code_files", "claude_code_quarantine",
)
# Everything the migrations create in the ETL schema, handed to the writer by `provision_writer`.
OWNED_TABLES = (*USER_FACING_TABLES, *INTERNAL_TABLES, SETTINGS_TABLE, migrations.VERSION_TABLE)
FUNCTIONS = (
    "usage_etl_current_user_id", "usage_etl_is_admin", "usage_etl_bounds", "usage_etl_check_page",
    "usage_etl_user_usage", "usage_etl_usage_by_user", "usage_etl_dashboard", "user_session_usage",
)
# Views over internal tables that filter by the caller's identity (sql/0006_session_usage.sql).
VIEWS = ("user_session_day_usage",)
SOURCE_POLICY = "usage_etl_writer_reads_all"
# The relation :s.:t (names as values, quoted by the server), NULL when it does not exist.
_REL = "to_regclass(quote_ident(:s) || '.' || quote_ident(:t))"
_LOCK = sa.text("SELECT pg_advisory_xact_lock(hashtextextended('usage_etl:migrate', 0))")


class SecurityError(ConfigError):
    """The database cannot be set up as configured; the message says what to change or run."""


@dataclass
class UpgradeReport:
    """What `upgrade` did: migrations applied, roles created, and one line per other action."""

    applied: list[str] = field(default_factory=list)
    created_roles: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _q(conn: sa.Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def _table(conn: sa.Connection, schema: str, name: str) -> str:
    return conn.dialect.identifier_preparer.format_table(sa.table(name, schema=schema))


def _scalar(conn: sa.Connection, sql: str, **params):
    return conn.execute(sa.text(sql), params).scalar_one()


def role_exists(conn: sa.Connection, role: str) -> bool:
    return _scalar(conn, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :r)", r=role)


def ensure_roles(conn: sa.Connection, sec: SecuritySettings) -> list[str]:
    """Create the writer, reader and admin roles that do not exist; return their names.

    NOLOGIN: a login role is made a member (`GRANT usage_etl_writer TO etl_login`) or the role
    given LOGIN and a password by the operator. Needs CREATEROLE or superuser.
    """
    created = []
    for role in (sec.writer_role, *sec.dashboard_roles):
        if not role_exists(conn, role):
            conn.exec_driver_sql(f"CREATE ROLE {_q(conn, role)} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS")
            created.append(role)
    return created


def provision_writer(conn: sa.Connection, settings: Settings, sec: SecuritySettings) -> list[str]:
    """Make the writer role own the ETL schema's objects and read the raw source (see module doc)."""
    w, notes = sec.writer_role, []
    if not _scalar(conn, "SELECT pg_has_role(current_user, :w, 'MEMBER')", w=w):
        raise SecurityError(
            f"the connected role cannot act as {w}: run --create-roles as a superuser, or GRANT {w} TO the connected role first"
        )
    schema, qw = settings.schema, _q(conn, w)
    qs = conn.dialect.identifier_preparer.quote_schema(schema)
    owner = conn.execute(sa.text("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = :s"), {"s": schema}).scalar()
    if owner is None:
        conn.exec_driver_sql(f"CREATE SCHEMA {qs} AUTHORIZATION {qw}")
        notes.append(f"created schema {schema} owned by {w}")
    elif not _scalar(conn, "SELECT pg_has_role(:w, (SELECT nspowner FROM pg_namespace WHERE nspname = :s), 'USAGE')", w=w, s=schema):
        conn.exec_driver_sql(f"GRANT USAGE, CREATE ON SCHEMA {qs} TO {qw}")
    moved = []
    for name in OWNED_TABLES:
        if _scalar(conn, f"SELECT coalesce((SELECT NOT pg_has_role(:w, relowner, 'USAGE') FROM pg_class WHERE oid = {_REL}), false)",
                   w=w, s=schema, t=name):
            conn.exec_driver_sql(f"ALTER TABLE {_table(conn, schema, name)} OWNER TO {qw}")
            moved.append(name)
    for name in VIEWS:
        if _scalar(conn, f"SELECT coalesce((SELECT NOT pg_has_role(:w, relowner, 'USAGE') FROM pg_class WHERE oid = {_REL}), false)",
                   w=w, s=schema, t=name):
            conn.exec_driver_sql(f"ALTER VIEW {_table(conn, schema, name)} OWNER TO {qw}")
            moved.append(name)
    for name in FUNCTIONS:
        if _scalar(conn, "SELECT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                         "WHERE n.nspname = :s AND p.proname = :f AND NOT pg_has_role(:w, p.proowner, 'USAGE'))", s=schema, f=name, w=w):
            conn.exec_driver_sql(f"ALTER FUNCTION {qs}.{_q(conn, name)} OWNER TO {qw}")
            moved.append(f"{name}()")
    if moved:
        notes.append(f"{w} now owns {', '.join(moved)}")
    notes += _grant_source(conn, settings, w)
    return notes


def _grant_source(conn: sa.Connection, settings: Settings, w: str) -> list[str]:
    src = settings.source_config
    name = _table(conn, src.schema_name, src.table)
    row = conn.execute(
        sa.text(f"SELECT pg_has_role(:w, relowner, 'USAGE'), relrowsecurity FROM pg_class WHERE oid = {_REL}"),
        {"w": w, "s": src.schema_name, "t": src.table},
    ).first()
    if row is None:
        return [f"source {src.schema_name}.{src.table} not found: once it exists, GRANT SELECT ON it TO {w} (docs/security.md)"]
    owns, rls = row
    if owns:
        return []
    qw = _q(conn, w)
    if not _scalar(conn, "SELECT has_schema_privilege(:w, :s, 'USAGE')", w=w, s=src.schema_name):
        conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA {conn.dialect.identifier_preparer.quote_schema(src.schema_name)} TO {qw}")
    conn.exec_driver_sql(f"GRANT SELECT ON {name} TO {qw}")
    notes = [f"{w} may read the source {src.schema_name}.{src.table}"]
    if rls:
        # Without a policy of its own the writer would read only what the application's policies
        # let it see (often nothing), and aggregate too little without any error.
        policy = _q(conn, SOURCE_POLICY)
        conn.exec_driver_sql(f"DROP POLICY IF EXISTS {policy} ON {name}")
        conn.exec_driver_sql(f"CREATE POLICY {policy} ON {name} FOR SELECT TO {qw} USING (true)")
        notes.append(f"the source has row-level security: policy {SOURCE_POLICY} lets {w} read all of its rows")
    return notes


def configure(conn: sa.Connection, schema: str, sec: SecuritySettings, timezone: str) -> bool:
    """Write the identity settings the policies read (usage_etl_read_settings). Returns whether
    they changed. Raises SecurityError when Supabase's auth.uid() or the admin table is missing."""
    if sec.identity == "supabase" and _scalar(conn, "SELECT to_regprocedure('auth.uid()') IS NULL"):
        raise SecurityError("USAGE_ETL_RLS_MODE=supabase, but this database has no auth.uid() function (is it a Supabase database?)")
    values: dict = {"identity": sec.identity, "user_setting": sec.user_setting, "admin_role": sec.admin_role, "timezone": timezone,
                    "admin_table_schema": None, "admin_table": None, "admin_user_column": None, "admin_role_column": None, "admin_value": None}
    if sec.admin_table:
        s, t = sec.admin_table
        cols = set(conn.execute(
            sa.text("SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = :s AND c.relname = :t AND a.attnum > 0 AND NOT a.attisdropped"), {"s": s, "t": t}).scalars())
        missing = {sec.admin_user_column, sec.admin_role_column} - cols
        if missing:
            where = f"table {s}.{t} has no column {', '.join(sorted(missing))}" if cols else f"table {s}.{t} does not exist"
            raise SecurityError(f"USAGE_ETL_RLS_ADMIN_TABLE: {where} (set USAGE_ETL_RLS_ADMIN_TABLE='' to have no admin table)")
        values.update(admin_table_schema=s, admin_table=t, admin_user_column=sec.admin_user_column,
                      admin_role_column=sec.admin_role_column, admin_value=sec.admin_value)
    table = store.reflect(conn, schema, SETTINGS_TABLE)
    now = sa.tuple_(*[table.c[k] for k in values])
    new = sa.tuple_(*[sa.literal(v, table.c[k].type) for k, v in values.items()])
    return conn.execute(sa.update(table).values(**values).where(now.is_distinct_from(new))).rowcount > 0


def grant(conn: sa.Connection, schema: str, sec: SecuritySettings) -> list[str]:
    """Give the reader and admin roles exactly their read access and strip the anonymous role of
    everything (sql/security_*.sql); roles that do not exist are skipped and named in the notes."""
    qs = conn.dialect.identifier_preparer.quote_schema(schema)
    granted, missing = [], []
    for role in sec.dashboard_roles:
        if not role_exists(conn, role):
            missing.append(role)
            continue
        if not _scalar(conn, "SELECT has_schema_privilege(:r, :s, 'USAGE')", r=role, s=schema):
            conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA {qs} TO {_q(conn, role)}")
        conn.exec_driver_sql(migrations.read_sql("security_read_grants.sql").format(schema=qs, role=_q(conn, role)))
        granted.append(role)
    notes = [f"read access (own rows; all rows for admins) granted to {', '.join(granted)}"] if granted else []
    if missing:
        notes.append(f"no role {', '.join(missing)} yet: not granted (create with --create-roles, or see docs/security.md)")
    if sec.anon_role and role_exists(conn, sec.anon_role):
        conn.exec_driver_sql(migrations.read_sql("security_revoke.sql").format(schema=qs, role=_q(conn, sec.anon_role)))
        notes.append(f"{sec.anon_role} holds no privilege on our tables and read functions")
    return notes


def as_role(engine: sa.Engine, role: str) -> sa.Engine:
    """A new engine on the same URL whose connections `SET ROLE role` first (dispose it after use)."""
    eng = sa.create_engine(engine.url, poolclass=sa.NullPool)

    @sa.event.listens_for(eng, "connect")
    def _set_role(dbapi_connection, _record) -> None:
        with dbapi_connection.cursor() as cur:
            cur.execute(psycopg.sql.SQL("SET ROLE {}").format(psycopg.sql.Identifier(role)))
        dbapi_connection.commit()

    return eng


def upgrade(engine: sa.Engine, settings: Settings, sec: SecuritySettings, *, create_roles: bool = False) -> UpgradeReport:
    """`usage-etl db upgrade`: see the module doc. Raises SecurityError (a ConfigError) with what
    to do, also when the connected role lacks a privilege."""
    report = UpgradeReport()
    target = engine
    try:
        if create_roles:
            with engine.begin() as conn:
                conn.execute(_LOCK)
                report.created_roles = ensure_roles(conn, sec)
                report.notes += provision_writer(conn, settings, sec)
            target = as_role(engine, sec.writer_role)
        report.applied = migrations.upgrade(target, settings.schema)
        with target.begin() as conn:
            conn.execute(_LOCK)
            if configure(conn, settings.schema, sec, settings.timezone):
                report.notes.append("identity settings written")
            report.notes += grant(conn, settings.schema, sec)
    except sa.exc.ProgrammingError as exc:
        if not isinstance(exc.orig, psycopg.errors.InsufficientPrivilege):
            raise
        need = "a superuser (or CREATEROLE and membership of the writer role)" if create_roles else \
            f"the owner of the tables, or a member of {sec.writer_role}"
        raise SecurityError(f"{exc.orig.diag.message_primary}: run db upgrade{' --create-roles' * create_roles} as {need} (docs/security.md)") from exc
    finally:
        if target is not engine:
            target.dispose()
    return report
