"""Row-level security in plain PostgreSQL mode: real roles on the real server, each seeing exactly
its rows through the tables and through the read functions (docs/security.md)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import psycopg
import sqlalchemy as sa
import pytest

from tests.security_helpers import (
    A, B, C, EXPECTED, INTERNAL, MINI, MYSTERY, SONNET, USER_FACING, call, load_usage, roles, rows_of, session, visible,
)
from usage_etl import security
from usage_etl.settings import SecuritySettings

__all__ = ["roles"]  # the fixture

MARCH = (date(2026, 3, 1), date(2026, 3, 31))
ALL_ROWS = set(EXPECTED)


@pytest.fixture
def secured(engine, db_url, settings, roles):
    """Usage data, and `db upgrade`'s security step with a reader, an admin and an anonymous role
    (no privileges at all) named for this test; returns the SecuritySettings."""
    load_usage(engine, db_url, settings.replace(start_date=date(2026, 3, 1)))
    sec = SecuritySettings(
        writer_role=roles.name("writer"), reader_role=roles.create("reader"), admin_role=roles.create("admin"),
        anon_role=roles.create("anon"),
    )
    report = security.upgrade(engine, settings, sec)
    assert report.applied == []  # the template is migrated already
    assert report.notes == ["identity settings written",
                            f"read access (own rows; all rows for admins) granted to {sec.reader_role}, {sec.admin_role}",
                            f"{sec.anon_role} holds no privilege on our tables and read functions"]
    return sec


def test_reader_sees_only_the_rows_of_its_user_id_in_every_user_facing_table(db_url, secured):
    for user in (A, B, C):
        with session(db_url, secured.reader_role, **{"usage_etl.user_id": user}) as conn:
            for table in USER_FACING:
                assert visible(conn, table) == rows_of(user), (user, table)
    # no user id, or an empty one: nothing
    for settings in ({}, {"usage_etl.user_id": ""}, {"usage_etl.user_id": "nobody"}):
        with session(db_url, secured.reader_role, **settings) as conn:
            assert [visible(conn, t) for t in USER_FACING] == [set(), set(), set()]


def test_admin_role_and_its_members_see_every_row(db_url, secured, roles):
    member = roles.create("dash")
    with session(db_url, None) as conn:
        conn.execute(psycopg.sql.SQL("GRANT {} TO {}").format(*map(psycopg.sql.Identifier, (secured.admin_role, member))))
        conn.commit()
    for role in (secured.admin_role, member):
        with session(db_url, role) as conn:
            assert [visible(conn, t) for t in USER_FACING] == [ALL_ROWS] * 3


def test_other_roles_see_nothing_and_no_reader_reads_internal_tables(db_url, secured, roles):
    stranger = roles.create("stranger")
    for role in (secured.anon_role, stranger):
        for table in USER_FACING + INTERNAL:
            with session(db_url, role, **{"usage_etl.user_id": A}) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
                visible(conn, table) if table in USER_FACING else conn.execute(f"SELECT * FROM {table}")
        for fn in ("usage_etl_user_usage", "usage_etl_usage_by_user"):
            with session(db_url, role) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
                call(conn, fn, *MARCH)
    for role in (secured.reader_role, secured.admin_role):
        for table in INTERNAL:
            with session(db_url, role, **{"usage_etl.user_id": A}) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT count(*) FROM {table}")


def test_readers_cannot_write_and_a_mistaken_write_grant_still_writes_nothing(db_url, secured, roles):
    writes = [
        "INSERT INTO user_token_usage SELECT * FROM user_token_usage",
        "UPDATE user_token_usage SET message_count = 0",
        "DELETE FROM user_token_usage",
        "TRUNCATE user_token_usage",
    ]
    for role in (secured.reader_role, secured.admin_role):
        for sql in writes:
            with session(db_url, role, **{"usage_etl.user_id": A}) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)
    # A role given INSERT/UPDATE/DELETE by mistake: the policies are FOR SELECT only, so
    # row-level security lets no row be added, changed or removed.
    careless = roles.create("careless")
    with session(db_url, None) as conn:
        conn.execute(psycopg.sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON user_token_usage TO {}").format(psycopg.sql.Identifier(careless)))
        conn.commit()
    with session(db_url, careless, **{"usage_etl.user_id": A}) as conn:
        assert conn.execute("UPDATE user_token_usage SET message_count = 0").rowcount == 0
        assert conn.execute("DELETE FROM user_token_usage").rowcount == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            conn.execute("INSERT INTO user_token_usage SELECT * FROM user_token_usage")
    with session(db_url, None) as conn:
        assert conn.execute("SELECT sum(message_count) FROM user_token_usage WHERE period_type = 'daily'").fetchone() == (6,)


def _day(day: str, messages: int, conversations: int, inp: int, out: int, cost: str, unpriced: int = 0, *, end: str, models: list[str]) -> dict:
    return {
        "period_start": day, "period_end": end, "message_count": messages, "error_count": 0, "conversation_count": conversations,
        "input_tokens": inp, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": out,
        "reasoning_tokens": 0, "total_tokens": inp + out, "cost_usd": Decimal(cost), "unpriced_message_count": unpriced,
        "paid_amount": None, "models": models,
    }


def _totals(periods: int, messages: int, conversations: int, inp: int, out: int, cost: str, unpriced: int = 0) -> dict:
    return {
        "periods": periods, "message_count": messages, "error_count": 0, "conversation_count": conversations,
        "input_tokens": inp, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": out,
        "reasoning_tokens": 0, "total_tokens": inp + out, "cost_usd": Decimal(cost), "unpriced_message_count": unpriced,
        "paid_amount": None,
    }


def test_user_usage_function_gives_the_callers_rows_totals_models_and_pages(db_url, secured):
    with session(db_url, secured.reader_role, **{"usage_etl.user_id": A}) as conn:
        got = call(conn, "usage_etl_user_usage", *MARCH)
        assert got == {
            "user_id": A, "period_type": "daily", "start": "2026-03-01", "end": "2026-03-31",
            "usage": [
                _day("2026-03-02", 2, 2, 3000, 300, "0.0135", end="2026-03-03", models=[SONNET]),
                _day("2026-03-03", 1, 1, 500, 50, "0.00225", end="2026-03-04", models=[SONNET]),
            ],
            "summary": _totals(2, 3, 3, 3500, 350, "0.01575"),
            "by_model": [{"model": SONNET, "message_count": 3, "total_tokens": 3850, "cost_usd": Decimal("0.01575"), "unpriced_message_count": 0}],
            "pagination": {"page": 1, "page_size": 100, "total_rows": 2, "total_pages": 1},
        }
        # weeks: exact distinct conversations of the week; second page of one row per page
        week = call(conn, "usage_etl_user_usage", *MARCH, p_period_type="weekly")
        assert week["summary"] == _totals(1, 3, 2, 3500, 350, "0.01575")
        page2 = call(conn, "usage_etl_user_usage", *MARCH, p_page=2, p_page_size=1)
        assert [r["period_start"] for r in page2["usage"]] == ["2026-03-03"]
        assert page2["summary"] == got["summary"] and page2["pagination"] == {"page": 2, "page_size": 1, "total_rows": 2, "total_pages": 2}
        # a range of one day
        assert call(conn, "usage_etl_user_usage", date(2026, 3, 3), date(2026, 3, 3))["summary"] == _totals(1, 1, 1, 500, 50, "0.00225")
        # another user's rows: row-level security hides them
        other = call(conn, "usage_etl_user_usage", *MARCH, p_user_id=B)
        assert (other["user_id"], other["usage"], other["summary"], other["by_model"]) == (B, [], _totals(0, 0, 0, 0, 0, "0"), [])
    with session(db_url, secured.admin_role) as conn:
        b = call(conn, "usage_etl_user_usage", *MARCH, p_user_id=B)
        assert b["usage"] == [
            _day("2026-03-02", 1, 1, 10000, 1000, "0.045", end="2026-03-03", models=[SONNET]),
            _day("2026-03-09", 1, 1, 100, 10, "0", 1, end="2026-03-10", models=[MYSTERY]),
        ]
        assert b["summary"] == _totals(2, 2, 2, 10100, 1010, "0.045", 1)
        assert b["by_model"] == [
            {"model": SONNET, "message_count": 1, "total_tokens": 11000, "cost_usd": Decimal("0.045"), "unpriced_message_count": 0},
            {"model": MYSTERY, "message_count": 1, "total_tokens": 110, "cost_usd": Decimal("0"), "unpriced_message_count": 1},
        ]
        # the admin's own id (none) has no rows
        assert call(conn, "usage_etl_user_usage", *MARCH)["usage"] == []


def _user(user: str, days: int, messages: int, conversations: int, inp: int, out: int, cost: str, unpriced: int, last: str) -> dict:
    return {
        "user_id": user, "days": days, "message_count": messages, "error_count": 0, "conversation_count": conversations,
        "input_tokens": inp, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": out,
        "reasoning_tokens": 0, "total_tokens": inp + out, "cost_usd": Decimal(cost), "unpriced_message_count": unpriced,
        "last_activity": last,
    }


USER_C = _user(C, 1, 1, 1, 1_000_000, 100_000, "0.21", 0, "2026-03-03T15:00:00+00:00")
USER_B = _user(B, 2, 2, 2, 10100, 1010, "0.045", 1, "2026-03-09T08:00:00+00:00")
USER_A = _user(A, 2, 3, 3, 3500, 350, "0.01575", 0, "2026-03-03T09:00:00+00:00")


def test_usage_by_user_pages_every_user_most_expensive_first(db_url, secured):
    with session(db_url, secured.admin_role) as conn:
        one = call(conn, "usage_etl_usage_by_user", *MARCH, p_page_size=2)
        two = call(conn, "usage_etl_usage_by_user", *MARCH, p_page=2, p_page_size=2)
        three = call(conn, "usage_etl_usage_by_user", *MARCH, p_page=3, p_page_size=2)
    assert one == {"start": "2026-03-01", "end": "2026-03-31", "users": [USER_C, USER_B],
                   "pagination": {"page": 1, "page_size": 2, "total_rows": 3, "total_pages": 2}}
    assert (two["users"], three["users"]) == ([USER_A], [])
    with session(db_url, secured.reader_role, **{"usage_etl.user_id": B}) as conn:
        assert call(conn, "usage_etl_usage_by_user", *MARCH)["users"] == [USER_B]


def test_dashboard_overview_for_admin_and_the_readers_own_share(db_url, secured):
    with session(db_url, secured.admin_role) as conn:
        got = call(conn, "usage_etl_dashboard", *MARCH, p_top_users=2)
    assert got == {
        "start": "2026-03-01", "end": "2026-03-31",
        "summary": {"users": 3, "user_days": 5, "message_count": 6, "error_count": 0, "conversation_count": 6,
                    "input_tokens": 1_013_600, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                    "output_tokens": 101_360, "reasoning_tokens": 0, "total_tokens": 1_114_960,
                    "cost_usd": Decimal("0.27075"), "unpriced_message_count": 1},
        "top_users": [USER_C, USER_B],
        "by_model": [
            {"model": MINI, "users": 1, "message_count": 1, "total_tokens": 1_100_000, "cost_usd": Decimal("0.21"), "unpriced_message_count": 0},
            {"model": SONNET, "users": 2, "message_count": 4, "total_tokens": 14850, "cost_usd": Decimal("0.06075"), "unpriced_message_count": 0},
            {"model": MYSTERY, "users": 1, "message_count": 1, "total_tokens": 110, "cost_usd": Decimal("0"), "unpriced_message_count": 1},
        ],
        "daily_trend": [
            {"day": "2026-03-02", "users": 2, "message_count": 3, "total_tokens": 14300, "cost_usd": Decimal("0.0585"), "unpriced_message_count": 0},
            {"day": "2026-03-03", "users": 2, "message_count": 2, "total_tokens": 1_100_550, "cost_usd": Decimal("0.21225"), "unpriced_message_count": 0},
            {"day": "2026-03-09", "users": 1, "message_count": 1, "total_tokens": 110, "cost_usd": Decimal("0"), "unpriced_message_count": 1},
        ],
    }
    with session(db_url, secured.reader_role, **{"usage_etl.user_id": A}) as conn:
        mine = call(conn, "usage_etl_dashboard", *MARCH)
    assert (mine["summary"]["users"], mine["summary"]["cost_usd"], mine["top_users"]) == (1, Decimal("0.01575"), [USER_A])
    assert [d["day"] for d in mine["daily_trend"]] == ["2026-03-02", "2026-03-03"]


@pytest.mark.parametrize(
    ("fn", "args", "kwargs", "message"),
    [
        ("usage_etl_user_usage", (date(2026, 3, 9), date(2026, 3, 1)), {}, "p_end 2026-03-01 is before p_start 2026-03-09"),
        ("usage_etl_user_usage", (None, date(2026, 3, 1)), {}, "p_start and p_end are required"),
        ("usage_etl_user_usage", MARCH, {"p_period_type": "hourly"}, "p_period_type must be daily, weekly or monthly, got hourly"),
        ("usage_etl_user_usage", MARCH, {"p_page": 0}, "p_page must be 1 or more, got 0"),
        ("usage_etl_usage_by_user", MARCH, {"p_page_size": 1001}, "p_page_size must be between 1 and 1000, got 1001"),
        ("usage_etl_dashboard", MARCH, {"p_top_users": 0}, "p_top_users must be between 1 and 1000, got 0"),
    ],
)
def test_read_functions_refuse_bad_arguments_with_a_clear_error(db_url, secured, fn, args, kwargs, message):
    with session(db_url, secured.admin_role) as conn, pytest.raises(psycopg.errors.InvalidParameterValue) as err:
        call(conn, fn, *args, **kwargs)
    assert err.value.diag.message_primary == message


def test_dates_are_days_of_the_business_timezone(engine, db_url, settings, roles):
    # In Tokyo the day 2026-03-02 is [03-01 15:00, 03-02 15:00) UTC: a period_start read as a UTC
    # date would show the day before, and a UTC range would pick the next day's row.
    tokyo = settings.replace(timezone="Asia/Tokyo", start_date=date(2026, 3, 1))
    load_usage(engine, db_url, tokyo)
    sec = SecuritySettings(writer_role=roles.name("writer"), reader_role=roles.create("reader"), admin_role=None)
    security.upgrade(engine, tokyo, sec)
    with session(db_url, sec.reader_role, **{"usage_etl.user_id": A}) as conn:
        got = call(conn, "usage_etl_user_usage", date(2026, 3, 2), date(2026, 3, 2))
    assert [(r["period_start"], r["period_end"], r["total_tokens"]) for r in got["usage"]] == [("2026-03-02", "2026-03-03", 3300)]


def test_session_usage_is_each_readers_own(engine, db_url, settings, roles):
    # The session function reads the grain through a filtering view: a reader sees its own
    # sessions only, an admin all of them, and the grain itself stays unreadable.
    load_usage(engine, db_url, settings.replace(start_date=date(2026, 3, 1)))
    sec = SecuritySettings(writer_role=roles.name("writer"), reader_role=roles.create("reader"), admin_role=roles.create("admin"))
    security.upgrade(engine, settings, sec)
    with engine.connect() as conn:
        everyone = conn.execute(sa.text("SELECT user_id, conversation_id, message_count FROM user_session_usage() ORDER BY 1, 2")).all()
    users = sorted({u for u, _, _ in everyone})
    assert len(users) >= 2
    for user in users:
        with engine.connect() as conn:
            conn.execute(sa.text(f"SET ROLE {conn.dialect.identifier_preparer.quote(sec.reader_role)}"))
            conn.execute(sa.text("SELECT set_config(:k, :v, false)"), {"k": sec.user_setting, "v": user})
            mine = conn.execute(sa.text("SELECT user_id, conversation_id, message_count FROM user_session_usage() ORDER BY 1, 2")).all()
            assert mine == [r for r in everyone if r[0] == user]
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                conn.execute(sa.text("SELECT 1 FROM user_conversation_day_usage LIMIT 1"))
    with engine.connect() as conn:
        conn.execute(sa.text(f"SET ROLE {conn.dialect.identifier_preparer.quote(sec.admin_role)}"))
        assert conn.execute(sa.text("SELECT user_id, conversation_id, message_count FROM user_session_usage() ORDER BY 1, 2")).all() == everyone
