"""Helpers shared by the command modules: settings and engine as click errors, the day range."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING

import click

from usage_etl.settings import ConfigError, Settings

if TYPE_CHECKING:
    import dagster as dg


def settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def engine(settings: Settings):
    from usage_etl.db import database_url, make_engine

    try:
        url = database_url(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    return make_engine(url), url


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
