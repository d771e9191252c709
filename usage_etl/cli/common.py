"""Helpers shared by the command modules: settings and engine as click errors, the day range."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING

import click

from usage_etl.settings import ConfigError, Settings

if TYPE_CHECKING:
    import dagster as dg


URL_KEY = "usage_etl.database_url"  # click context meta: the URL the command connects to


def settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def engine(settings: Settings):
    """(engine, URL) of the configured database, once it answers.

    Connects first: a transient error (refused, timed out, server starting) is retried
    `settings.connect_retries` times after 1, 2, 4 ... s, each retry announced on stderr as
    `retrying in N s (attempt k of m)`; SIGINT/SIGTERM end the wait at once. Raises
    click.ClickException with one line naming host, port and database (never the password) when
    the settings are malformed, the error is permanent (authentication, unknown database) or the
    retries are used up.
    """
    import time

    from usage_etl.db import database_url, make_engine

    try:
        url = database_url(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.meta[URL_KEY] = (url, settings.connect_timeout_seconds)
    eng = make_engine(url, settings.connect_timeout_seconds)
    attempts = settings.connect_retries + 1
    for attempt in range(1, attempts + 1):
        try:
            eng.connect().close()
            return eng, url
        except sa_errors() as exc:
            from usage_etl.defs.errors import is_transient

            line = describe_db_error(exc, url, settings.connect_timeout_seconds)
            if not is_transient(exc):
                raise click.ClickException(line) from exc
            if attempt == attempts:
                raise click.ClickException(f"{line}; gave up after {attempts} attempts" if attempts > 1 else line) from exc
            wait = 2 ** (attempt - 1)
            click.echo(f"{line}; retrying in {wait} s (attempt {attempt + 1} of {attempts})", err=True)
            time.sleep(wait)
    raise AssertionError("unreachable")


def sa_errors() -> tuple[type[BaseException], ...]:
    import psycopg
    import sqlalchemy as sa

    return (sa.exc.DBAPIError, psycopg.Error)


# What libpq/psycopg say at connect time -> what the line says instead (the rest keeps the
# server's own words, which name the user or database but never the password).
_HINTS = {
    "connection refused": "connection refused (is the server running and accepting TCP/IP connections?)",
    "timeout expired": "no answer within {timeout} s (USAGE_ETL_CONNECT_TIMEOUT_SECONDS)",
}


def describe_db_error(exc: BaseException, url, timeout: int) -> str:
    """One line for a database error: `cannot connect to PostgreSQL at HOST:PORT, database DB:
    REASON` for connection failures, `database error at ...: FIRST LINE` for any other."""
    import psycopg
    import sqlalchemy as sa

    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    for marker in ("FATAL:  ", "failed: "):  # libpq: '... port 5432 failed: FATAL:  database "x" does not exist'
        if marker in text:
            text = text.rsplit(marker, 1)[1]
            break
    text = text.splitlines()[0].strip() if text else type(orig).__name__
    for needle, hint in _HINTS.items():
        if needle in text.lower():
            text = hint.format(timeout=timeout)
    where = f"PostgreSQL at {url.host or 'localhost'}:{url.port or 5432}, database {url.database}"
    connecting = isinstance(exc, sa.exc.DBAPIError) and exc.statement is None or isinstance(exc, psycopg.OperationalError)
    return f"cannot connect to {where}: {text}" if connecting else f"database error at {where}: {text}"


def granularity_option(help: str):
    """--granularity daily|weekly|monthly|all (default all) of the commands over partition ranges."""
    return click.option("--granularity", type=click.Choice(["daily", "weekly", "monthly", "all"]), default="all", show_default=True, help=help)


def day_range_options(fn):
    """--start/--end options of the commands that work on a range of daily partitions."""
    fn = click.option("--end", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Last day, inclusive [default: yesterday].")(fn)
    return click.option("--start", type=click.DateTime(["%Y-%m-%d"]), default=None, help="First day [default: USAGE_ETL_START_DATE].")(fn)


def day_range(daily: dg.TimeWindowPartitionsDefinition, start: datetime | None, end: datetime | None) -> tuple[date, date]:
    """The days [first, last] (inclusive, business timezone) of --start/--end, clipped to the
    `daily` partitions definition (USAGE_ETL_START_DATE .. yesterday); an omitted bound is the
    first or last daily partition.

    Prints a warning line (stderr) when a bound given was clipped. Raises click.UsageError when
    --end is before --start or no daily partition overlaps the range, naming the partitions.
    """
    keys = daily.get_partition_keys()
    if not keys:
        raise click.UsageError(f"no daily partition yet: they start on {daily.start.date()} (USAGE_ETL_START_DATE), after yesterday")
    lo, hi = date.fromisoformat(keys[0]), date.fromisoformat(keys[-1])
    first, last = (start.date() if start else lo), (end.date() if end else hi)
    if start and end and last < first:
        raise click.UsageError(f"--end {last} is before --start {first}")
    clipped = max(first, lo), min(last, hi)
    if clipped[0] > clipped[1]:
        raise click.UsageError(
            f"{first}..{last} is outside the daily partitions {lo}..{hi} (USAGE_ETL_START_DATE to yesterday): nothing to run"
        )
    if clipped != (first, last):
        click.echo(f"warning: {first}..{last} clipped to {clipped[0]}..{clipped[1]}, the daily partitions overlapping it "
                   f"(they run {lo}..{hi}: USAGE_ETL_START_DATE to yesterday)", err=True)
    return clipped


def counts(keys: dict[str, list[str]]) -> str:
    return ", ".join(f"{len(k)} {g}" for g, k in keys.items())
