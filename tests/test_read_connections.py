"""Shared ADBC connections for a run (`shared_connections`) and cached table reflection."""

from __future__ import annotations

import time

import polars as pl
import sqlalchemy as sa

from usage_etl import db
from usage_etl.sources.postgres import read_arrow, shared_connections

PID = sa.select(sa.func.pg_backend_pid().label("pid"))
SCHEMA = {"pid": pl.Int64()}


def _pid(db_url) -> int:
    return read_arrow(db_url, PID, SCHEMA)["pid"][0]


def _open(engine, pid: int, expect: int) -> int:
    """Sessions with backend `pid` (0 or 1), polled up to ~2 s for `expect`: a backend exits just
    after its client closes the connection, not at the same instant."""
    for _ in range(40):
        with engine.connect() as conn:
            found = conn.execute(sa.select(sa.func.count()).select_from(sa.text("pg_stat_activity")).where(sa.column("pid") == pid)).scalar_one()
        if found == expect:
            break
        time.sleep(0.05)
    return found


def test_one_connection_per_thread_within_the_context_and_closed_after(engine, db_url) -> None:
    assert _pid(db_url) != _pid(db_url)  # outside the context: a new connection per read
    with shared_connections():
        first = _pid(db_url)
        assert _pid(db_url) == first
        with shared_connections():  # nested: still the same one
            assert _pid(db_url) == first
        assert _pid(db_url) == first and _open(engine, first, 1) == 1
        # a failed read drops its connection; the next read opens a fresh one
        try:
            read_arrow(db_url, sa.select(sa.literal_column("1/0").label("pid")), SCHEMA)
        except Exception:
            pass
        else:
            raise AssertionError("division by zero did not fail")
        second = _pid(db_url)
        assert second != first
    assert _open(engine, second, 0) == 0


def test_reflection_follows_a_changed_table(engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE reflected (a int)"))
        assert [c.name for c in db.reflect(conn, "public", "reflected").columns] == ["a"]
        assert db.reflect(conn, "public", "reflected") is db.reflect(conn, "public", "reflected")
        conn.execute(sa.text("ALTER TABLE reflected ADD COLUMN b text"))
        assert [c.name for c in db.reflect(conn, "public", "reflected").columns] == ["a", "b"]
        conn.execute(sa.text("ALTER TABLE reflected ALTER COLUMN b TYPE int USING NULL"))
        assert isinstance(db.reflect(conn, "public", "reflected").c.b.type, sa.Integer)
