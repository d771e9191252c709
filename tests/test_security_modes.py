"""The other identity modes: the role name as user id, and Supabase (auth.uid() of the JWT claims,
the authenticated and anon roles, admins listed in a user_roles table)."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import psycopg
import pytest
from psycopg.sql import SQL, Identifier

from tests.rows import uid
from tests.security_helpers import A, B, C, EXPECTED, INTERNAL, USER_FACING, call, load_usage, roles, rows_of, session, visible
from usage_etl import security
from usage_etl.settings import SecuritySettings

__all__ = ["roles"]  # the fixture

MARCH = (date(2026, 3, 1), date(2026, 3, 31))
ALL_ROWS = set(EXPECTED)
ADMIN = uid(9)  # a Supabase user listed as admin in user_roles; has no usage rows


def _run(db_url, *statements) -> None:
    with session(db_url, None) as conn:
        for s in statements:
            conn.execute(s)
        conn.commit()


def test_role_identity_reads_the_role_name_and_ignores_the_session_setting(engine, db_url, settings, roles):
    load_usage(engine, db_url, settings.replace(start_date=date(2026, 3, 1)))
    reader = roles.create("reader")
    alice, bob = roles.create("alice"), roles.create("bob")
    # one role per user: the user ids of the rows are the role names
    _run(db_url, *[SQL("GRANT {} TO {}").format(Identifier(reader), Identifier(u)) for u in (alice, bob)])
    with session(db_url, None) as conn:
        for t in USER_FACING:
            conn.execute(SQL("UPDATE {} SET user_id = CASE user_id WHEN %s THEN %s WHEN %s THEN %s ELSE user_id END").format(Identifier(t)),
                         [A, alice, B, bob])
        conn.commit()
    sec = SecuritySettings(identity="role", writer_role=roles.name("writer"), reader_role=reader, admin_role=roles.create("admin"))
    security.upgrade(engine, settings, sec)
    renamed = {alice: rows_of(A), bob: rows_of(B)}
    for user, keys in renamed.items():
        expected = {(user, pt, day) for _, pt, day in keys}
        # the session setting names the other user: ignored in this mode
        with session(db_url, user, **{"usage_etl.user_id": bob if user == alice else alice}) as conn:
            assert [visible(conn, t) for t in USER_FACING] == [expected] * 3
            assert call(conn, "usage_etl_user_usage", *MARCH)["user_id"] == user
    with session(db_url, reader) as conn:
        assert [visible(conn, t) for t in USER_FACING] == [set()] * 3
    with session(db_url, sec.admin_role) as conn:
        assert len(visible(conn, "user_token_usage")) == len(EXPECTED)


def _claims(sub: str | None) -> dict[str, str]:
    return {"request.jwt.claims": json.dumps({"sub": sub, "role": "authenticated"})} if sub else {}


@pytest.fixture
def supabase(engine, db_url, settings, roles):
    """A database shaped like Supabase: auth.uid() from the request's JWT claims (as PostgREST sets
    them), authenticated and anon roles (named for this test) holding the default grants Supabase
    gives on every new table and function, and a user_roles table readable by each user for its
    own row. Returns the SecuritySettings of supabase mode, from the environment."""
    load_usage(engine, db_url, settings.replace(start_date=date(2026, 3, 1)))
    authenticated, anon = roles.create("authenticated"), roles.create("anon")
    env = {"USAGE_ETL_RLS_MODE": "supabase", "USAGE_ETL_READER_ROLE": authenticated, "USAGE_ETL_ANON_ROLE": anon,
           "USAGE_ETL_WRITER_ROLE": roles.name("writer"), "USAGE_ETL_ADMIN_ROLE": ""}
    sec = SecuritySettings.from_env(env)
    with pytest.raises(security.SecurityError, match=r"no auth\.uid\(\) function"):
        security.upgrade(engine, settings, sec)
    both = SQL(", ").join([Identifier(authenticated), Identifier(anon)])
    _run(
        db_url,
        "CREATE SCHEMA auth",
        "CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $$ SELECT coalesce("
        "nullif(current_setting('request.jwt.claim.sub', true), ''),"
        "(nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'))::uuid $$",
        SQL("GRANT USAGE ON SCHEMA auth TO {}").format(both),
        SQL("GRANT ALL ON ALL TABLES IN SCHEMA public TO {}").format(both),
        SQL("GRANT ALL ON ALL FUNCTIONS IN SCHEMA public TO {}").format(both),
    )
    with pytest.raises(security.SecurityError, match=r"table public\.user_roles does not exist"):
        security.upgrade(engine, settings, sec)
    _run(
        db_url,
        "CREATE TABLE public.user_roles (user_id uuid PRIMARY KEY, user_role text NOT NULL)",
        "ALTER TABLE public.user_roles ENABLE ROW LEVEL SECURITY",
        "CREATE POLICY own_role ON public.user_roles FOR SELECT USING (user_id = auth.uid())",
        SQL("GRANT SELECT ON public.user_roles TO {}").format(Identifier(authenticated)),
        f"INSERT INTO public.user_roles VALUES ('{ADMIN}', 'admin'), ('{A}', 'member')",
    )
    report = security.upgrade(engine, settings, sec)
    assert report.notes == ["identity settings written", f"read access (own rows; all rows for admins) granted to {authenticated}",
                            f"{anon} holds no privilege on our tables and read functions"]
    return sec


def test_supabase_user_sees_its_rows_and_an_admin_listed_in_user_roles_all(db_url, supabase):
    authenticated = supabase.reader_role
    for user in (A, B, C):
        with session(db_url, authenticated, **_claims(user)) as conn:
            assert [visible(conn, t) for t in USER_FACING] == [rows_of(user)] * 3
            mine = call(conn, "usage_etl_user_usage", *MARCH)
            assert (mine["user_id"], len(mine["usage"])) == (user, len({k for k in rows_of(user) if k[1] == "daily"}))
    with session(db_url, authenticated, **_claims(ADMIN)) as conn:
        assert [visible(conn, t) for t in USER_FACING] == [ALL_ROWS] * 3
        overview = call(conn, "usage_etl_dashboard", *MARCH)
        assert (overview["summary"]["users"], overview["summary"]["cost_usd"]) == (3, Decimal("0.27075"))
    # no JWT (or one without sub): nothing
    for claims in ({}, {"request.jwt.claims": json.dumps({"role": "authenticated"})}):
        with session(db_url, authenticated, **claims) as conn:
            assert [visible(conn, t) for t in USER_FACING] == [set()] * 3


def test_supabase_default_grants_are_taken_back_from_anon_and_authenticated(db_url, supabase):
    # anon had ALL on every table and function (Supabase's default privileges): none left, even
    # with a valid user's claims
    for table in USER_FACING + INTERNAL:
        with session(db_url, supabase.anon_role, **_claims(A)) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(SQL("SELECT 1 FROM {}").format(Identifier(table)))
    with session(db_url, supabase.anon_role, **_claims(A)) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        call(conn, "usage_etl_user_usage", *MARCH)
    # authenticated keeps SELECT on the user-facing tables only
    for table in INTERNAL:
        with session(db_url, supabase.reader_role, **_claims(ADMIN)) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(SQL("SELECT 1 FROM {}").format(Identifier(table)))
    for sql in ("DELETE FROM user_token_usage", "TRUNCATE user_token_usage_by_model", "UPDATE user_token_usage_by_dimension SET value = 'x'"):
        with session(db_url, supabase.reader_role, **_claims(ADMIN)) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql)
