"""Shared pieces of the readers' security tests: uniquely named roles, sessions as a role, and a
small hand-computed data set written by the pipeline itself.

Roles are cluster-wide, so every test names its own (a random suffix) and drops them afterwards:
parallel test processes never see each other's roles.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal

import psycopg
import pytest
import sqlalchemy as sa

from tests.rows import anthropic, insert, msg, openai, uid, utc
from usage_etl import pipeline
from usage_etl.defs import partitions
from usage_etl.pricing.book import load_price_book

A, B, C = uid(1), uid(2), uid(3)  # users
SONNET, MINI, MYSTERY = "claude-sonnet-4-20250514", "gpt-4o-mini", "mystery-model"
DAYS = ["2026-03-02", "2026-03-03", "2026-03-09"]
WEEKS = ["2026-03-02", "2026-03-09"]
MONTHS = ["2026-03-01"]

# Raw messages; cost by hand from the price book (USD per million tokens): Sonnet 4 $3 in / $15 out,
# GPT-4o mini $0.15 in / $0.60 out, mystery-model unpriced.
MESSAGES = [
    msg(1, utc(2026, 3, 2, 10), anthropic(1000, 100), conv=1, model=SONNET),  # 0.003 + 0.0015 = 0.0045
    msg(1, utc(2026, 3, 2, 11), anthropic(2000, 200), conv=2, model=SONNET),  # 0.006 + 0.003 = 0.009
    msg(1, utc(2026, 3, 3, 9), anthropic(500, 50), conv=1, model=SONNET),  # 0.0015 + 0.00075 = 0.00225
    msg(2, utc(2026, 3, 2, 12), anthropic(10000, 1000), conv=3, model=SONNET),  # 0.03 + 0.015 = 0.045
    msg(2, utc(2026, 3, 9, 8), anthropic(100, 10), conv=3, model=MYSTERY),  # unpriced
    msg(3, utc(2026, 3, 3, 15), openai(1_000_000, 100_000), conv=4, model=MINI),  # 0.15 + 0.06 = 0.21
    msg(1, utc(2026, 3, 2, 13), anthropic(-5, 1), conv=1, model=SONNET),  # quarantined: negative tokens
]

# (user, period_type, period_start) -> (messages, conversations, total_tokens, cost_usd, unpriced)
EXPECTED = {
    (A, "daily", "2026-03-02"): (2, 2, 3300, Decimal("0.0135"), 0),
    (A, "daily", "2026-03-03"): (1, 1, 550, Decimal("0.00225"), 0),
    (B, "daily", "2026-03-02"): (1, 1, 11000, Decimal("0.045"), 0),
    (B, "daily", "2026-03-09"): (1, 1, 110, Decimal("0"), 1),
    (C, "daily", "2026-03-03"): (1, 1, 1_100_000, Decimal("0.21"), 0),
    (A, "weekly", "2026-03-02"): (3, 2, 3850, Decimal("0.01575"), 0),
    (B, "weekly", "2026-03-02"): (1, 1, 11000, Decimal("0.045"), 0),
    (B, "weekly", "2026-03-09"): (1, 1, 110, Decimal("0"), 1),
    (C, "weekly", "2026-03-02"): (1, 1, 1_100_000, Decimal("0.21"), 0),
    (A, "monthly", "2026-03-01"): (3, 2, 3850, Decimal("0.01575"), 0),
    (B, "monthly", "2026-03-01"): (2, 1, 11110, Decimal("0.045"), 1),
    (C, "monthly", "2026-03-01"): (1, 1, 1_100_000, Decimal("0.21"), 0),
}
USER_FACING = ["user_token_usage", "user_token_usage_by_model", "user_token_usage_by_dimension"]
INTERNAL = ["user_conversation_day_usage", "user_conversation_day_dimension_usage", "usage_quarantine", "raw_window_fingerprint",
            "claude_code_messages", "claude_code_files", "claude_code_quarantine"]


def rows_of(*users: str) -> set[tuple[str, str, str]]:
    return {k for k in EXPECTED if k[0] in users}


def load_usage(engine: sa.Engine, url: sa.URL, settings) -> None:
    """Write MESSAGES to the source and run every day, week and month through the pipeline. The
    breakdown table gets one row per summary row (dimension 'team'), so all three user-facing
    tables hold the same keys."""
    insert(engine, settings, MESSAGES)
    book = load_price_book()
    for period_type, keys in (("daily", DAYS), ("weekly", WEEKS), ("monthly", MONTHS)):
        pdef = partitions.build(settings)[period_type]
        for key in keys:
            window = partitions.window(pdef, period_type, key)
            if period_type == "daily":
                pipeline.run_daily(engine, url, settings, book, window)
            else:
                pipeline.run_rollup(engine, url, settings, window)
    with engine.begin() as conn:
        prep = conn.dialect.identifier_preparer
        usage = prep.format_table(sa.table("user_token_usage", schema=settings.schema))
        dim = prep.format_table(sa.table("user_token_usage_by_dimension", schema=settings.schema))
        cols = conn.execute(sa.text(f"SELECT * FROM {usage} LIMIT 0")).keys()
        rest = ", ".join(c for c in cols if c not in ("user_id", "period_type", "period_start", "period_end"))
        conn.execute(sa.text(
            f"INSERT INTO {dim} (user_id, period_type, period_start, dimension, value, period_end, {rest}) "
            f"SELECT user_id, period_type, period_start, 'team', 'blue', period_end, {rest} FROM {usage}"
        ))


class Roles:
    """Role names unique to one test; every role named here is dropped at the end of the test."""

    def __init__(self, admin_url: sa.URL) -> None:
        self.suffix = uuid.uuid4().hex[:8]
        self.names: list[str] = []
        self._url = admin_url

    def name(self, base: str) -> str:
        """A fresh role name `base_<suffix>`, not created (the code under test may create it)."""
        role = f"{base}_{self.suffix}"
        self.names.append(role)
        return role

    def create(self, base: str, options: str = "NOLOGIN") -> str:
        role = self.name(base)
        with psycopg.connect(_libpq(self._url), autocommit=True) as c:
            c.execute(psycopg.sql.SQL("CREATE ROLE {} " + options).format(psycopg.sql.Identifier(role)))
        return role

    def drop(self) -> None:
        with psycopg.connect(_libpq(self._url), autocommit=True) as c:
            existing = [r for (r,) in c.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", [self.names])]
            if existing:
                ids = psycopg.sql.SQL(", ").join(map(psycopg.sql.Identifier, existing))
                c.execute(psycopg.sql.SQL("DROP OWNED BY {} CASCADE").format(ids))
                for role in existing:
                    c.execute(psycopg.sql.SQL("DROP ROLE {}").format(psycopg.sql.Identifier(role)))


def _libpq(url: sa.URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def roles(db_url: sa.URL) -> Iterator[Roles]:
    r = Roles(db_url)
    yield r
    r.drop()  # while the test database (where they own things) still exists


@contextlib.contextmanager
def session(db_url: sa.URL, role: str | None, **settings: str) -> Iterator[psycopg.Connection]:
    """A connection of the test database acting as `role` (SET ROLE; None: stay superuser), with
    the given session settings (name -> value, e.g. {"usage_etl.user_id": A}); rolled back after.
    jsonb arrives with exact Decimal numbers."""
    with psycopg.connect(_libpq(db_url)) as conn:
        psycopg.types.json.set_json_loads(lambda s: json.loads(s, parse_float=Decimal), conn)
        if role is not None:
            conn.execute(psycopg.sql.SQL("SET ROLE {}").format(psycopg.sql.Identifier(role)))
        for name, value in settings.items():
            conn.execute("SELECT set_config(%s, %s, false)", [name, value])
        try:
            yield conn
        finally:
            conn.rollback()


def visible(conn: psycopg.Connection, table: str) -> set[tuple[str, str, str]]:
    """(user_id, period_type, period_start as a UTC date string) of the rows `conn` sees in `table`."""
    rows = conn.execute(
        psycopg.sql.SQL("SELECT user_id, period_type, (period_start AT TIME ZONE 'UTC')::date::text FROM {}").format(psycopg.sql.Identifier(table))
    ).fetchall()
    return set(rows)


def call(conn: psycopg.Connection, function: str, *args, **kwargs):
    """SELECT function(args, name => value, …) with bound values; returns the jsonb as Python."""
    parts = [psycopg.sql.Placeholder()] * len(args) + [
        psycopg.sql.SQL("{} => {}").format(psycopg.sql.Identifier(k), psycopg.sql.Placeholder()) for k in kwargs
    ]
    q = psycopg.sql.SQL("SELECT {}({})").format(psycopg.sql.Identifier(function), psycopg.sql.SQL(", ").join(parts))
    return conn.execute(q, [*args, *kwargs.values()]).fetchone()[0]
