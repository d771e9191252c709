"""The `usage-etl` command. `usage-etl --help` and `usage-etl COMMAND --help` document each one."""

from __future__ import annotations

import sys
import time
import warnings
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

import click

from usage_etl.config import ConfigError, Settings

if TYPE_CHECKING:
    import dagster as dg

# backfill_policy is a beta Dagster parameter used on purpose; keep the terminal readable.
warnings.filterwarnings("ignore", message=".*is currently in beta.*")
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def _engine(settings: Settings):
    from usage_etl.resources import database_url, make_engine

    try:
        url = database_url(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    return make_engine(url), url


def _day_range(fn):
    """--start/--end options of the commands that work on a range of daily partitions."""
    fn = click.option("--end", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Last day, inclusive [default: yesterday].")(fn)
    return click.option("--start", type=click.DateTime(["%Y-%m-%d"]), default=None, help="First day [default: USAGE_ETL_START_DATE].")(fn)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Per-user LLM token usage and cost for every day, week and month, in PostgreSQL.

    Configuration comes from environment variables (and ./.env): USAGE_ETL_DATABASE_URL,
    USAGE_ETL_SCHEMA, USAGE_ETL_SOURCE_SCHEMA, USAGE_ETL_SOURCE_TABLE, USAGE_ETL_SOURCE_CONFIG,
    USAGE_ETL_TIMEZONE, USAGE_ETL_START_DATE. See README.md.
    """


@main.group()
def db() -> None:
    """Database schema management."""


@db.command("upgrade")
@click.option(
    "--create-roles",
    is_flag=True,
    help="Also create the missing writer, reader and admin roles (USAGE_ETL_*_ROLE), give the writer the "
    "ETL schema's objects and SELECT on the source, and migrate as the writer. Needs a superuser; see docs/security.md.",
)
def db_upgrade(create_roles: bool = False) -> None:
    """Create or migrate the summary tables, then apply the readers' security: identity settings
    (USAGE_ETL_RLS_*) and the grants of the reader, admin and anonymous roles that exist
    (idempotent; safe on every start)."""
    from usage_etl import security
    from usage_etl.security_settings import SecuritySettings

    settings = _settings()
    engine, url = _engine(settings)
    try:
        sec = SecuritySettings.from_env()
        report = security.upgrade(engine, settings, sec, create_roles=create_roles)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    where = f"{url.render_as_string(hide_password=True)} schema {settings.schema}"
    if report.created_roles:
        click.echo(f"created roles {', '.join(report.created_roles)}")
    click.echo(f"applied {', '.join(report.applied)} on {where}" if report.applied else f"schema is current on {where}")
    click.echo(sec.describe())
    for note in report.notes:
        click.echo(note)


@main.command()
@click.option("--users", default=200, show_default=True, help="Distinct users (power-law activity).")
@click.option("--days", default=30, show_default=True, help="Days of data, ending yesterday.")
@click.option("--messages-per-day", default=2000, show_default=True, help="Messages per day.")
@click.option("--seed", default=42, show_default=True, help="Random seed; same seed, same rows.")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Exclusive end day [default: today].")
@click.option("--bad-fraction", default=0.005, show_default=True, help="Share of deliberately bad rows.")
@click.option(
    "--unpriced-fraction",
    default=0.0005,
    show_default=True,
    help="Share of each day's messages (rounded down) using a model without a price.",
)
def generate(
    users: int, days: int, messages_per_day: int, seed: int, end: datetime | None, bad_fraction: float, unpriced_fraction: float
) -> None:
    """Write realistic sample messages into the source table (created if missing)."""
    from usage_etl import sample

    settings = _settings()
    engine, _ = _engine(settings)
    spec = sample.SampleSpec(users, days, messages_per_day, seed, end.date() if end else None, bad_fraction, unpriced_fraction)
    t0 = time.perf_counter()
    frame = sample.generate_frame(spec, settings.timezone)
    n = sample.write(engine, settings, frame)
    click.echo(
        f"wrote {n:,} messages for {users} users over {days} days into "
        f"{settings.source_schema}.{settings.source_table} in {time.perf_counter() - t0:.1f}s"
    )


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


@main.command()
@_day_range
@click.option(
    "--granularity",
    type=click.Choice(["daily", "weekly", "monthly", "all"]),
    default="all",
    show_default=True,
    help="Which assets; 'all' runs days first, then the weeks and months over them.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=0),
    default=None,
    help="Partitions per run; 0 runs each granularity's whole range in one run "
    "[default: USAGE_ETL_BACKFILL_BATCH_SIZE or 30].",
)
@click.option(
    "--submit",
    is_flag=True,
    help="Hand the range to the Dagster daemon as one backfill (queued, pool-limited, retried) and return; "
    "without it the runs execute here, one after the other.",
)
def backfill(start: datetime | None, end: datetime | None, granularity: str, batch_size: int | None, submit: bool = False) -> None:
    """Materialize a range of partitions through Dagster; the runs show in the Dagster UI.

    Days run first, then the weeks and months over them, each in runs of at most --batch-size
    contiguous partitions, with a progress line per run and a summary at the end. Safe to repeat:
    every partition is replaced, never added to.
    """
    import math
    import uuid

    from usage_etl import runs
    from usage_etl.automation import AutomationSettings

    settings = _settings()
    try:
        size = AutomationSettings.from_env().batch_size if batch_size is None else batch_size
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    first, last = day_range(runs.PARTITIONS["daily"], start, end)
    inst = runs.instance()
    grains = runs.GRANULARITIES if granularity == "all" else [granularity]
    keys = {g: runs.partition_keys(g, first, last) for g in grains}
    total = sum(len(k) for k in keys.values())
    backfill_id = uuid.uuid4().hex[:8]
    tags = {"usage_etl/backfill": backfill_id}
    if submit:
        bid = runs.submit_backfill(keys, inst=inst, tags={"usage_etl/trigger": "cli"}, title=f"usage-etl backfill {first}..{last}")
        click.echo(f"submitted backfill {bid}: {total} partitions ({_counts(keys)}) {first}..{last}")
        click.echo(f"the daemon runs it; progress in the UI under /runs/b/{bid} (instance {inst.root_directory})")
        return
    n_runs = sum(math.ceil(len(k) / (size or len(k))) for k in keys.values() if k)
    click.echo(
        f"backfill {backfill_id}: {first}..{last}, {total} partitions ({_counts(keys)}) in {n_runs} runs"
        f"{f' of up to {size} partitions' if size else ''}"
    )
    t0 = time.perf_counter()
    done = {"runs": 0, "partitions": 0}
    failed: list[str] = []

    def progress(g: str, batch: list[str], result) -> None:
        done["runs"] += 1
        done["partitions"] += len(batch) if result.success else 0
        status = "ok" if result.success else "FAILED"
        if not result.success:
            failed.append(f"{g} {batch[0]}…{batch[-1]} (run {result.run_id})")
        click.echo(
            f"  {g:<7} {batch[0]}…{batch[-1]} {len(batch):>3} partitions  run {result.run_id[:8]} {status:<6} "
            f"[{done['runs']}/{n_runs} runs, {done['partitions']}/{total} partitions, {time.perf_counter() - t0:.1f}s]"
        )

    for g in grains:
        runs.materialize_range(g, keys[g], inst=inst, batch_size=size or None, on_batch=progress, tags=tags)
        if failed:
            break
    elapsed = time.perf_counter() - t0
    if failed:
        click.echo(
            f"backfill {backfill_id} FAILED after {done['runs']} runs, {done['partitions']}/{total} partitions, {elapsed:.1f}s: "
            f"{'; '.join(failed)}. Fix the cause and run the same command again (safe to repeat)."
        )
        sys.exit(1)
    click.echo(
        f"backfill {backfill_id} done: {done['runs']} runs, {total} partitions in {elapsed:.1f}s "
        f"({total / elapsed if elapsed else 0:.1f} partitions/s); runs tagged usage_etl/backfill={backfill_id} "
        f"in {inst.root_directory}"
    )


def _counts(keys: dict[str, list[str]]) -> str:
    return ", ".join(f"{len(k)} {g}" for g, k in keys.items())


@main.command()
@_day_range
@click.option(
    "--granularity",
    type=click.Choice(["daily", "weekly", "monthly", "all"]),
    default="all",
    show_default=True,
    help="Which assets' partitions to check; 'all' checks the days, weeks and months overlapping the range.",
)
def check(start: datetime | None, end: datetime | None, granularity: str) -> None:
    """Run the data-integrity checks (the assets' checks) on the partitions overlapping a range.

    Prints one line per partition and the failed checks; exits with status 1 if an ERROR check
    failed. Completeness reads materialized partitions from the Dagster instance (DAGSTER_HOME).
    """
    from usage_etl import check_runner, runs

    settings = _settings()
    engine, _ = _engine(settings)
    first, last = day_range(runs.PARTITIONS["daily"], start, end)
    try:
        thresholds = check_runner.Thresholds.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    materialized = runs.instance().get_materialized_partitions(runs.USAGE_ASSETS[0].key)
    results = {
        g: check_runner.evaluate(engine, settings, g, runs.partition_keys(g, first, last), materialized_daily=materialized, thresholds=thresholds)
        for g in (runs.GRANULARITIES if granularity == "all" else [granularity])
    }
    click.echo(check_runner.render(results))
    errors = check_runner.failed_errors(results)
    click.echo(f"\n{len(errors)} ERROR check(s) failed" if errors else "\nno ERROR check failed")
    if errors:
        sys.exit(1)


@main.command()
@click.option("--period-type", type=click.Choice(["daily", "weekly", "monthly"]), default=None, help="Only this period type.")
@click.option("--limit", default=10, show_default=True, help="Periods to show per type (most recent).")
def summary(period_type: str | None, limit: int) -> None:
    """Print totals per period from the summary table."""
    import sqlalchemy as sa

    from usage_etl import store

    settings = _settings()
    engine, _ = _engine(settings)
    with engine.connect() as conn:
        t = store.reflect(conn, settings.schema, store.SUMMARY_TABLE)
        q = store.reflect(conn, settings.schema, store.QUARANTINE_TABLE)
        types = [period_type] if period_type else ["daily", "weekly", "monthly"]
        click.echo(f"{'period':<8} {'start':<11} {'users':>6} {'messages':>9} {'convs':>7} {'total_tokens':>14} {'cost_usd':>12} {'unpriced':>8}")
        for pt in types:
            rows = conn.execute(
                sa.select(
                    t.c.period_start,
                    sa.func.count(),
                    sa.func.sum(t.c.message_count),
                    sa.func.sum(t.c.conversation_count),
                    sa.func.sum(t.c.total_tokens),
                    sa.func.sum(t.c.cost_usd),
                    sa.func.sum(t.c.unpriced_message_count),
                )
                .where(t.c.period_type == pt)
                .group_by(t.c.period_start)
                .order_by(t.c.period_start.desc())
                .limit(limit)
            ).all()
            for start_, users, msgs, convs, tokens, cost, unpriced in reversed(rows):
                click.echo(f"{pt:<8} {start_.date()!s:<11} {users:>6} {msgs:>9} {convs:>7} {tokens:>14,} {cost:>12,.2f} {unpriced:>8}")
        rejected = conn.execute(sa.select(q.c.reason, sa.func.count()).group_by(q.c.reason).order_by(q.c.reason)).all()
        if rejected:
            click.echo("quarantined rows: " + ", ".join(f"{r} {n}" for r, n in rejected))


@main.command()
@click.option("--days", default=30, show_default=True, help="Days of sample data, ending yesterday.")
@click.option("--users", default=200, show_default=True, help="Distinct users of the sample data (power-law activity).")
@click.option("--messages-per-day", default=2000, show_default=True, help="Sample messages per day.")
@click.pass_context
def demo(ctx: click.Context, days: int, users: int, messages_per_day: int) -> None:
    """Set up and run everything once: schema, sample data, all partitions, a results table.

    Uses USAGE_ETL_DATABASE_URL, or an embedded PostgreSQL in ./.usage_etl when unset. Writes
    USAGE_ETL_START_DATE to ./.env so that `make ui` shows the same partitions. Running it again
    does not add sample data twice and leaves the summary tables unchanged.
    """
    import os

    import sqlalchemy as sa
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(os.environ.get("USAGE_ETL_TIMEZONE", "UTC"))
    start = datetime.now(tz).date() - timedelta(days=days)
    os.environ["USAGE_ETL_START_DATE"] = start.isoformat()
    _write_dotenv({"USAGE_ETL_START_DATE": start.isoformat()})
    settings = _settings()
    engine, url = _engine(settings)
    click.echo(f"database: {url.render_as_string(hide_password=True)}")
    ctx.invoke(db_upgrade)
    from usage_etl import sample

    sample.ensure_source_table(engine, settings)
    src = sa.table(settings.source_table, sa.column(settings.source_columns.created_at), schema=settings.source_schema)
    with engine.connect() as conn:
        present = conn.execute(sa.select(sa.func.count()).select_from(src).where(src.c[settings.source_columns.created_at] >= start)).scalar_one()
    if present:
        click.echo(f"sample data already present ({present:,} rows since {start}); not generating again")
    else:
        ctx.invoke(generate, users=users, days=days, messages_per_day=messages_per_day)
    ctx.invoke(backfill, start=None, end=None, granularity="all", batch_size=None)
    click.echo("")
    ctx.invoke(summary, period_type=None, limit=3)
    click.echo("\nOpen the Dagster UI with:  make ui   (dagster dev -w workspace.yaml, http://127.0.0.1:3000)")


def _write_dotenv(values: dict[str, str]) -> None:
    from pathlib import Path

    path = Path(".env")
    old = path.read_text().splitlines() if path.exists() else []
    lines = [line for line in old if line.split("=", 1)[0] not in values]
    path.write_text("\n".join(lines + [f"{k}={v}" for k, v in values.items()]) + "\n")


def _register() -> None:
    from usage_etl.cli_costs import report, reprice
    from usage_etl.cli_prices import prices
    from usage_etl.cli_source import source

    for command in (prices, reprice, report, source):
        main.add_command(command)


_register()

if __name__ == "__main__":
    main()
