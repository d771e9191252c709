"""Property-based tests of what comes from outside: role and setting names from the environment,
and the dates and pages dashboards pass to the read functions."""

from __future__ import annotations

import math
import uuid
from datetime import date, timedelta

import psycopg
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, assume, event, given, settings as hsettings, strategies as st

from tests.security_helpers import A, B, C, EXPECTED, call, load_usage, roles, session
from usage_etl import security
from usage_etl.settings import ConfigError
from usage_etl.settings import SecuritySettings, check_role_name, check_setting_name

__all__ = ["roles"]  # the fixture

FIXTURE_OK = hsettings(deadline=None, max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _accepted(check, value: str) -> bool:
    try:
        check("X", value)
        return True
    except ConfigError:
        return False


# No letters that could spell a reserved prefix such as plpgsql: PostgreSQL refuses those for
# reasons of its own, not of the name's shape.
SETTING_CHARS = "abZ_9$-é "
setting_names = st.one_of(
    st.text(alphabet=SETTING_CHARS + ".", max_size=12),
    st.lists(st.text(alphabet="abZ_9$é", min_size=1, max_size=4), min_size=1, max_size=3).map(".".join),  # mostly well-shaped
)


@given(setting_names)
@hsettings(deadline=None, max_examples=150)
def test_setting_names_are_accepted_exactly_when_postgresql_accepts_them(server_url, name):
    with psycopg.connect(server_url.set(drivername="postgresql").render_as_string(hide_password=False), autocommit=True) as conn:
        try:
            conn.execute("SELECT set_config(%s, 'u1', false), current_setting(%s)", [name, name])
            server = True
        except (psycopg.errors.InvalidParameterValue, psycopg.errors.UndefinedObject, psycopg.errors.InvalidName):
            server = False
    event(f"server accepts: {server}")
    assert _accepted(check_setting_name, name) == server


# Any character but NUL, with the ones that trip up SQL text made frequent: quotes, % (psycopg's
# placeholder), ":name" (SQLAlchemy's), spaces, backslashes.
role_names = st.text(
    st.one_of(st.sampled_from(list(':%"\' .$\\-')), st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))),
    min_size=1, max_size=24,
)


@given(role_names)
@FIXTURE_OK
def test_any_accepted_role_name_is_created_and_granted_exactly(engine, name):
    role = f"{name}_{uuid.uuid4().hex[:6]}"
    assume(_accepted(check_role_name, role))
    sec = SecuritySettings(writer_role=f"w_{uuid.uuid4().hex}", reader_role=role, admin_role=None)
    with engine.connect() as conn:  # rolled back: roles are transactional, nothing is left behind
        assert security.ensure_roles(conn, sec) == [sec.writer_role, role]
        security.grant(conn, "public", sec)
        got = conn.execute(sa.text(
            "SELECT rolname, has_table_privilege(oid, 'public.user_token_usage', 'SELECT'), "
            "has_table_privilege(oid, 'public.user_token_usage', 'INSERT'), "
            "has_table_privilege(oid, 'public.user_conversation_day_usage', 'SELECT') FROM pg_roles WHERE rolname = :r"
        ), {"r": role}).all()
        conn.rollback()
    assert got == [(role, True, False, False)]


@pytest.mark.parametrize("name", ["", "public", "None", "pg_reader", "x" * 64, "é" * 32, "a\x00b"])
def test_role_names_postgresql_would_refuse_or_truncate_are_refused(name):
    with pytest.raises(ConfigError, match="USAGE_ETL_READER_ROLE"):
        SecuritySettings(reader_role=name)


MARCH_DAYS = [date(2026, 3, 1) + timedelta(days=i) for i in range(31)]


@pytest.fixture
def admin(engine, db_url, settings, roles):
    load_usage(engine, db_url, settings.replace(start_date=date(2026, 3, 1)))
    sec = SecuritySettings(writer_role=roles.name("writer"), reader_role=roles.create("reader"), admin_role=roles.create("admin"))
    security.upgrade(engine, settings, sec)
    return sec.admin_role


@given(
    st.sampled_from(MARCH_DAYS), st.sampled_from(MARCH_DAYS), st.sampled_from(["daily", "weekly", "monthly"]),
    st.integers(min_value=1, max_value=3),
)
@FIXTURE_OK
def test_pages_of_a_users_usage_add_up_to_exactly_the_periods_in_range(db_url, admin, a, b, period_type, size):
    start, end = min(a, b), max(a, b)
    with session(db_url, admin) as conn:
        for user in (A, B, C):
            want = sorted((k[2], *v) for k, v in EXPECTED.items()
                          if k[0] == user and k[1] == period_type and start.isoformat() <= k[2] <= end.isoformat())
            pages, page = [], 1
            while True:
                got = call(conn, "usage_etl_user_usage", start, end, p_period_type=period_type, p_user_id=user, p_page=page, p_page_size=size)
                assert got["pagination"] == {"page": page, "page_size": size, "total_rows": len(want), "total_pages": math.ceil(len(want) / size)}
                if not got["usage"]:
                    break
                pages += got["usage"]
                page += 1
            assert page - 1 == math.ceil(len(want) / size)
            rows = [(r["period_start"], r["message_count"], r["conversation_count"], r["total_tokens"], r["cost_usd"], r["unpriced_message_count"])
                    for r in pages]
            assert rows == want
            s = got["summary"]
            sums = [sum(w[i] for w in want) for i in range(1, 6)]
            assert [s["message_count"], s["conversation_count"], s["total_tokens"], s["cost_usd"], s["unpriced_message_count"]] == sums


@given(st.sampled_from(MARCH_DAYS), st.sampled_from(MARCH_DAYS), st.integers(min_value=1, max_value=4))
@FIXTURE_OK
def test_pages_of_usage_by_user_never_overlap_and_miss_no_user(db_url, admin, a, b, size):
    start, end = min(a, b), max(a, b)
    daily = {k: v for k, v in EXPECTED.items() if k[1] == "daily" and start.isoformat() <= k[2] <= end.isoformat()}
    users = {u for u, _, _ in daily}
    cost = {u: sum(v[3] for k, v in daily.items() if k[0] == u) for u in users}
    tokens = {u: sum(v[2] for k, v in daily.items() if k[0] == u) for u in users}
    want = sorted(users, key=lambda u: (-cost[u], -tokens[u], u))
    with session(db_url, admin) as conn:
        pages = [call(conn, "usage_etl_usage_by_user", start, end, p_page=p, p_page_size=size)["users"]
                 for p in range(1, math.ceil(len(want) / size) + 2)]
    assert pages[-1] == []
    assert [(u["user_id"], u["cost_usd"], u["total_tokens"]) for page in pages for u in page] == [(u, cost[u], tokens[u]) for u in want]


@pytest.mark.parametrize(("schema", "base"), [("Usage: 100% \"real\"", "Etl :writer %s"), ("usage", "o'brien\\")])
def test_create_roles_and_migrations_with_names_that_need_quoting(engine, settings, roles, schema, base):
    sec = SecuritySettings(writer_role=roles.name(base), reader_role=roles.name(base + " reader"), admin_role=roles.name(base + " admin"))
    s = settings.replace(schema=f"{schema} {roles.suffix}")
    report = security.upgrade(engine, s, sec, create_roles=True)
    assert (report.created_roles, report.applied) == ([sec.writer_role, sec.reader_role, sec.admin_role], ["0001", "0002", "0003", "0004", "0005", "0006", "0007"])
    with engine.connect() as conn:
        owners = conn.execute(sa.text("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = :s"), {"s": s.schema}).scalars().all()
        readable = conn.execute(sa.text(
            "SELECT has_table_privilege(:r, quote_ident(:s) || '.user_token_usage', 'SELECT')"), {"r": sec.reader_role, "s": s.schema}).scalar_one()
    assert (owners, readable) == ([sec.writer_role], True)
    assert security.upgrade(engine, s, sec, create_roles=True).notes == [f"source public.chat_messages not found: once it exists, "
                                                                          f"GRANT SELECT ON it TO {sec.writer_role} (docs/security.md)",
                                                                          f"read access (own rows; all rows for admins) granted to {sec.reader_role}, {sec.admin_role}"]
