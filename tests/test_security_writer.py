"""The pipeline's own role: `usage-etl db upgrade --create-roles` once as a superuser, then
`db upgrade` and a full backfill through Dagster as a login that is neither superuser nor BYPASSRLS,
acting as the writer role that owns every table."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from click.testing import CliRunner
from psycopg.sql import SQL, Identifier

from tests.rows import insert
from tests.security_helpers import A, EXPECTED, MESSAGES, USER_FACING, roles, rows_of, session, visible
from tests.usage_helpers import materialize_all
from usage_etl import security
from usage_etl.cli import main
from usage_etl.settings import Settings

__all__ = ["roles"]  # the fixture


def _upgrade(*args: str) -> list[str]:
    result = CliRunner().invoke(main, ["db", "upgrade", *args])
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def _owners(engine: sa.Engine, schema: str) -> tuple[dict[str, str], dict[str, str]]:
    with engine.connect() as conn:
        tables = dict(conn.execute(sa.text("SELECT tablename, tableowner FROM pg_tables WHERE schemaname = :s"), {"s": schema}).all())
        functions = dict(conn.execute(sa.text(
            "SELECT proname, proowner::regrole::text FROM pg_proc WHERE pronamespace = to_regnamespace(:s)"), {"s": schema}).all())
    return tables, functions


def test_writer_role_migrates_and_backfills_without_superuser(engine, db_url, settings, roles, monkeypatch):
    w, r, a = roles.name("writer"), roles.name("reader"), roles.name("admin")
    schema, fresh = f"usage_{roles.suffix}", f"usage_fresh_{roles.suffix}"
    # The application's source table, with row-level security of its own that shows the pipeline nothing.
    insert(engine, settings, MESSAGES)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE chat_messages ENABLE ROW LEVEL SECURITY"))
        conn.execute(sa.text("CREATE POLICY own_messages ON chat_messages FOR SELECT USING (user_id::text = current_setting('app.user', true))"))
    monkeypatch.setenv("USAGE_ETL_RETRY_MAX", "0")  # a failure fails now, not after retries
    for name, value in {"USAGE_ETL_SCHEMA": schema, "USAGE_ETL_WRITER_ROLE": w, "USAGE_ETL_READER_ROLE": r, "USAGE_ETL_ADMIN_ROLE": a}.items():
        monkeypatch.setenv(name, value)

    # once, as the superuser of the test server
    where = f"{db_url.render_as_string(hide_password=True)} schema {schema}"
    assert _upgrade("--create-roles") == [
        f"created roles {w}, {r}, {a}",
        f"applied 0001, 0002, 0003, 0004, 0005, 0006, 0007 on {where}",
        f"readers: user id from session setting usage_etl.user_id; admins: members of {a}",
        f"created schema {schema} owned by {w}",
        f"{w} may read the source public.chat_messages",
        f"the source has row-level security: policy usage_etl_writer_reads_all lets {w} read all of its rows",
        "identity settings written",
        f"read access (own rows; all rows for admins) granted to {r}, {a}",
    ]
    with engine.connect() as conn:
        attributes = conn.execute(sa.text(
            "SELECT rolname, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolcanlogin FROM pg_roles WHERE rolname IN (:w, :r, :a)"
        ), {"w": w, "r": r, "a": a}).all()
    assert sorted(attributes) == sorted((n, False, False, False, False, False) for n in (w, r, a))
    # every table and function of the schema is the writer's, and `security` knows them all
    assert _owners(engine, schema) == ({t: w for t in security.OWNED_TABLES}, {f: w for f in security.FUNCTIONS})

    # The pipeline's login: a member of the writer role, acting as it for every connection.
    login = roles.create("etl", "LOGIN")
    with engine.begin() as conn:
        conn.execute(sa.text(SQL("GRANT {} TO {}").format(Identifier(w), Identifier(login)).as_string(None)))
        conn.execute(sa.text(SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(Identifier(fresh), Identifier(w)).as_string(None)))
    # `-crole=…` without a space: the URL is also handed to libpq as a URI, where + is no space
    writer_url = db_url.set(username=login, query={"options": f"-crole={w}"})
    monkeypatch.setenv("USAGE_ETL_DATABASE_URL", writer_url.render_as_string(hide_password=False))
    with sa.create_engine(writer_url, poolclass=sa.NullPool).connect() as conn:
        who = conn.execute(sa.text(
            "SELECT current_user, session_user, (SELECT bool_or(rolsuper OR rolbypassrls) FROM pg_roles WHERE rolname IN (current_user, session_user))"
        )).one()
    assert tuple(who) == (w, login, False)

    # db upgrade as the writer: current where the superuser migrated, every migration on a new schema
    assert _upgrade()[0] == f"schema is current on {writer_url.render_as_string(hide_password=True)} schema {schema}"
    monkeypatch.setenv("USAGE_ETL_SCHEMA", fresh)
    assert _upgrade()[0] == f"applied 0001, 0002, 0003, 0004, 0005, 0006, 0007 on {writer_url.render_as_string(hide_password=True)} schema {fresh}"
    assert _owners(engine, fresh) == ({t: w for t in security.OWNED_TABLES}, {f: w for f in security.FUNCTIONS})

    # a full backfill through Dagster as the writer: days, then weeks, then months
    as_writer = Settings(database_url=writer_url.render_as_string(hide_password=False), schema=schema, start_date=date(2026, 3, 1))
    materialize_all(as_writer, ("2026-03-02", "2026-03-09"), ("2026-03-02", "2026-03-09"), ("2026-03-01", "2026-03-01"))
    t = SQL("{}.{}").format(Identifier(schema), Identifier("user_token_usage")).as_string(None)
    q = SQL("{}.{}").format(Identifier(schema), Identifier("usage_quarantine")).as_string(None)
    with engine.connect() as conn:
        got = conn.execute(sa.text(
            f"SELECT user_id, period_type, (period_start AT TIME ZONE 'UTC')::date::text, message_count, conversation_count, "
            f"total_tokens, cost_usd, unpriced_message_count FROM {t}"
        )).all()
        quarantined = conn.execute(sa.text(f"SELECT reason FROM {q}")).scalars().all()
    assert {(u, p, d): tuple(rest) for u, p, d, *rest in got} == EXPECTED
    assert quarantined == ["negative_tokens"]
    # what the writer wrote, a reader of the schema sees only for its own user id
    with session(db_url, r, search_path=schema, **{"usage_etl.user_id": A}) as conn:
        assert [visible(conn, table) for table in USER_FACING] == [rows_of(A), rows_of(A), set()]


def test_create_roles_hands_an_existing_installation_to_the_writer(engine, db_url, settings, roles, monkeypatch):
    # The template's tables in public belong to the superuser that migrated them.
    w = roles.name("writer")
    for name, value in {"USAGE_ETL_WRITER_ROLE": w, "USAGE_ETL_READER_ROLE": roles.name("reader"), "USAGE_ETL_ADMIN_ROLE": ""}.items():
        monkeypatch.setenv(name, value)
    out = _upgrade("--create-roles")
    assert out[:3] == [f"created roles {w}, {roles.names[1]}", f"schema is current on {db_url.render_as_string(hide_password=True)} schema public",
                       "readers: user id from session setting usage_etl.user_id; admins: nobody"]
    assert out[3] == f"{w} now owns {', '.join((*security.OWNED_TABLES, *security.VIEWS))}, {'(), '.join(security.FUNCTIONS)}()"
    assert out[4].startswith("source public.chat_messages not found")
    tables, functions = _owners(engine, "public")
    assert (tables, functions) == ({t: w for t in security.OWNED_TABLES}, {f: w for f in security.FUNCTIONS})
    # the writer may create tables in public (CREATE on the schema), so later migrations run as it
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT has_schema_privilege(:w, 'public', 'CREATE')"), {"w": w}).scalar_one()
    # run again: nothing left to hand over
    assert [line for line in _upgrade("--create-roles") if "now owns" in line or "created" in line] == []


def test_db_upgrade_by_a_role_without_the_privileges_says_what_to_run(engine, db_url, roles, monkeypatch):
    w, r = roles.name("writer"), roles.create("reader")
    login = roles.create("dash", "LOGIN")
    with engine.begin() as conn:
        conn.execute(sa.text(SQL("GRANT {} TO {}").format(Identifier(r), Identifier(login)).as_string(None)))
    for name, value in {"USAGE_ETL_WRITER_ROLE": w, "USAGE_ETL_READER_ROLE": r, "USAGE_ETL_ADMIN_ROLE": "",
                        "USAGE_ETL_DATABASE_URL": db_url.set(username=login).render_as_string(hide_password=False)}.items():
        monkeypatch.setenv(name, value)
    for args, message in (
        ([], f"Error: permission denied for table usage_etl_alembic_version: run db upgrade as the owner of the tables, "
             f"or a member of {w} (docs/security.md)"),
        (["--create-roles"], "Error: permission denied to create role: run db upgrade --create-roles as a superuser "
                             "(or CREATEROLE and membership of the writer role) (docs/security.md)"),
    ):
        result = CliRunner().invoke(main, ["db", "upgrade", *args])
        assert (result.exit_code, result.output.strip()) == (1, message)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM pg_roles WHERE rolname = :w"), {"w": w}).scalar_one() == 0
