"""Two runs of one day never interleave; transient database errors are retried with backoff,
permanent ones fail the run at once with a clear message. Real PostgreSQL errors throughout."""

from __future__ import annotations

import threading
import time
from datetime import date

import dagster as dg
import psycopg
import pytest
import sqlalchemy as sa
from orchestration_helpers import Location, insert, message, totals, user_id, utc

from usage_etl.defs import automation
from usage_etl.defs import errors as db_errors
from usage_etl.sources import fingerprint

ALICE, BOB = user_id(1), user_id(2)


def _libpq(url: sa.URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _wait_for(url: sa.URL, sql: str, expected: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(_libpq(url), autocommit=True) as c:
        while c.execute(sql).fetchone()[0] != expected:
            assert time.monotonic() < deadline, f"timed out waiting for {sql!r} == {expected}"
            time.sleep(0.05)


def _run_in_thread(loc: Location, day: str, results: list) -> threading.Thread:
    """A run of one day in its own thread, with an instance of its own (created and disposed there)."""

    def run() -> None:
        with dg.DagsterInstance.ephemeral() as inst:
            results.append(loc.materialize(inst, "daily", [day]))

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _step_events(result: dg.ExecuteInProcessResult, event_type: dg.DagsterEventType) -> list:
    return [e for e in result.all_events if e.event_type == event_type]


def test_two_concurrent_runs_of_one_day_leave_exact_totals(engine, settings, db_url):
    s = settings.replace(start_date=date(2026, 5, 1))
    loc = Location(s)
    insert(engine, s, [
        message(1, 1, utc(2026, 5, 4, 9), 100, 10),
        message(2, 1, utc(2026, 5, 4, 10), 300, 30, conversation=2),
        message(3, 2, utc(2026, 5, 4, 11), 50, 5, conversation=3),
    ])
    results: list[dg.ExecuteInProcessResult] = []
    key = fingerprint.lock_key(s, date(2026, 5, 4))
    with engine.connect() as holder:  # hold the day's lock so that both runs are surely in flight
        holder.execute(sa.select(sa.func.pg_advisory_lock(key)))
        holder.commit()
        threads = [_run_in_thread(loc, "2026-05-04", results) for _ in range(2)]
        _wait_for(db_url, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted", 2)
        holder.execute(sa.select(sa.func.pg_advisory_unlock(key)))
        holder.commit()
        for t in threads:
            t.join(120)
    assert [r.success for r in results] == [True, True]
    assert totals(engine, s, "daily") == {("2026-05-04", ALICE): (440, 2), ("2026-05-04", BOB): (55, 1)}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*), sum(message_count) FROM user_conversation_day_usage")).one() == (3, 3)
    with dg.instance_for_test() as inst:
        assert loc.materialize(inst, "weekly", ["2026-05-04"]).success
    assert totals(engine, s, "weekly") == {("2026-05-04", ALICE): (440, 2), ("2026-05-04", BOB): (55, 1)}


def test_transient_error_is_retried_with_backoff(engine, settings, db_url):
    s = settings.replace(start_date=date(2026, 5, 1))
    loc = Location(s, automation.AutomationSettings(retry_max=2, retry_delay_seconds=0.2))
    insert(engine, s, [message(1, 1, utc(2026, 5, 4, 9), 100, 10)])
    results: list[dg.ExecuteInProcessResult] = []
    with psycopg.connect(_libpq(db_url)) as blocker:
        blocker.execute("LOCK TABLE chat_messages IN ACCESS EXCLUSIVE MODE")  # e.g. a migration
        run = _run_in_thread(loc, "2026-05-04", results)
        waiting = f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{db_url.database}' AND wait_event_type = 'Lock'"
        _wait_for(db_url, waiting, 1)
        with psycopg.connect(_libpq(db_url), autocommit=True) as admin:  # the server drops the connection
            admin.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db_url.database}' AND wait_event_type = 'Lock'")
        blocker.rollback()
        run.join(120)
    [result] = results
    assert result.success
    assert len(_step_events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY)) == 1
    assert totals(engine, s, "daily") == {("2026-05-04", ALICE): (110, 1)}


def test_permanent_error_fails_at_once_with_a_clear_message(engine, settings):
    s = settings.replace(start_date=date(2026, 5, 1), source_table="no_such_table")
    loc = Location(s, automation.AutomationSettings(retry_max=2, retry_delay_seconds=0.2))
    with dg.instance_for_test() as inst:
        result = loc.materialize(inst, "daily", ["2026-05-04"])
    assert not result.success
    assert _step_events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY) == []
    [failure] = _step_events(result, dg.DagsterEventType.STEP_FAILURE)
    message_ = failure.step_failure_data.error.message
    # The source mapping check runs first and names the missing table; it is not retried either.
    assert "source mapping check of public.no_such_table failed with a permanent MappingError" in message_
    assert "public.no_such_table" in message_ and "Not retried" in message_


def test_real_serialization_failure_and_deadlock_are_transient(db_url):
    with psycopg.connect(_libpq(db_url), autocommit=True) as c:
        c.execute("CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 0), (2, 0)")
    a, b = psycopg.connect(_libpq(db_url)), psycopg.connect(_libpq(db_url))
    try:
        for c in (a, b):
            c.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
            c.execute("SELECT * FROM t").fetchall()
        a.execute("UPDATE t SET v = 1 WHERE id = 1")
        a.commit()
        with pytest.raises(psycopg.Error) as serialization:
            b.execute("UPDATE t SET v = 2 WHERE id = 1")
        b.rollback()
        assert db_errors.sqlstate(serialization.value) == "40001" and db_errors.is_transient(serialization.value)

        b.execute("SET deadlock_timeout = '100ms'")
        a.execute("UPDATE t SET v = 3 WHERE id = 1")
        b.execute("UPDATE t SET v = 4 WHERE id = 2")
        errors: list[BaseException] = []

        def cross(conn, row):
            try:
                conn.execute(f"UPDATE t SET v = 5 WHERE id = {row}")
            except psycopg.Error as exc:
                errors.append(exc)

        threads = [threading.Thread(target=cross, args=(a, 2)), threading.Thread(target=cross, args=(b, 1))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        [deadlock] = errors
        assert db_errors.sqlstate(deadlock) == "40P01" and db_errors.is_transient(deadlock)
    finally:
        a.close()
        b.close()
    wrapped = sa.exc.OperationalError("SELECT 1", {}, psycopg.OperationalError("connection failed: Connection refused"))
    assert db_errors.is_transient(wrapped)
    gone = psycopg.OperationalError('connection failed: FATAL:  database "x" does not exist')
    assert not db_errors.is_transient(gone)
