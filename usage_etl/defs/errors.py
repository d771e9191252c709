"""Transient or permanent: how a failed step of a usage asset is retried.

The assets carry a `RetryPolicy` with exponential backoff. Only transient database errors are
left to it — a lost or refused connection, a server restart, a serialization failure, a deadlock,
too many connections. Every other error (a missing table, a bad column mapping, wrong credentials,
a bug) is raised as `dagster.Failure(allow_retries=False)`: the run fails at once with a message
naming the partition, the SQLSTATE and what to do, instead of retrying the same mistake.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg
import sqlalchemy as sa

# SQLSTATE codes and classes worth a retry (PostgreSQL Appendix A).
TRANSIENT_CLASSES = {"08"}  # connection exception
TRANSIENT_STATES = {
    "40001",  # serialization_failure
    "40P01",  # deadlock_detected
    "53300",  # too_many_connections
    "55P03",  # lock_not_available
    "57P01",  # admin_shutdown
    "57P02",  # crash_shutdown
    "57P03",  # cannot_connect_now
}
# Connection-time failures carry no SQLSTATE; these messages mean retrying cannot help.
PERMANENT_CONNECT_MESSAGES = ("does not exist", "authentication failed", "no pg_hba.conf entry", "permission denied")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [getattr(e, "orig", None), e.__cause__, e.__context__]


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a psycopg, ADBC or SQLAlchemy-wrapped error, if the server sent one."""
    return next((s for e in _chain(exc) if isinstance(s := getattr(e, "sqlstate", None), str) and s), None)


def _is_connection_error(e: BaseException) -> bool:
    import adbc_driver_manager

    return isinstance(e, (psycopg.OperationalError, adbc_driver_manager.OperationalError, sa.exc.DisconnectionError, ConnectionError, TimeoutError)) or (
        isinstance(e, sa.exc.DBAPIError) and e.connection_invalidated
    )


def is_transient(exc: BaseException) -> bool:
    """True for database errors that a retry after a pause can fix."""
    state = sqlstate(exc)
    if state:
        return state in TRANSIENT_STATES or state[:2] in TRANSIENT_CLASSES
    if any(_is_connection_error(e) for e in _chain(exc)):
        return not any(m in str(e) for e in _chain(exc) for m in PERMANENT_CONNECT_MESSAGES)
    return False


def retry_policy(max_retries: int, delay_seconds: float) -> dg.RetryPolicy:
    """Retries with Dagster's exponential backoff and jitter: retry k waits (2^k - 1) x delay,
    plus or minus up to one delay (seconds): 1x, 3x, 7x, ... the delay (30, 90, 210 s by default)."""
    return dg.RetryPolicy(max_retries=max_retries, delay=delay_seconds, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


@contextmanager
def classified(what: str) -> Iterator[None]:
    """Let transient database errors through (the RetryPolicy retries them); turn any other
    error into a `dagster.Failure` that is not retried. `what` names the work, e.g. a partition."""
    try:
        yield
    except (dg.Failure, dg.RetryRequested):
        raise
    except Exception as exc:
        if is_transient(exc):
            raise
        state = sqlstate(exc)
        kind = f"database error [SQLSTATE {state}]" if state else f"{type(exc).__name__}"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise dg.Failure(
            description=f"{what} failed with a permanent {kind}: {first_line}. Not retried: fix the cause "
            "(configuration, schema, credentials or data) and materialize the partition again.",
            metadata={"sqlstate": state or "", "error": type(exc).__name__},
            allow_retries=False,
        ) from exc
