"""`usage-etl generate` and `usage-etl demo`: sample data, and the whole pipeline once."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import click

from usage_etl.cli import common
from usage_etl.cli.db import db_upgrade
from usage_etl.cli.runs import backfill
from usage_etl.cli.summary import summary


@click.command()
@click.option("--users", type=click.IntRange(min=1), default=200, show_default=True, help="Distinct users (power-law activity).")
@click.option("--days", type=click.IntRange(min=1), default=30, show_default=True, help="Days of data, ending yesterday.")
@click.option("--messages-per-day", type=click.IntRange(min=1), default=2000, show_default=True, help="Messages per day.")
@click.option("--seed", default=42, show_default=True, help="Random seed; same seed, same rows.")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Exclusive end day [default: today].")
@click.option("--bad-fraction", type=click.FloatRange(0, 1), default=0.005, show_default=True, help="Share of deliberately bad rows.")
@click.option(
    "--unpriced-fraction",
    type=click.FloatRange(0, 1),
    default=0.0005,
    show_default=True,
    help="Share of each day's messages (rounded down) using a model without a price.",
)
def generate(
    users: int, days: int, messages_per_day: int, seed: int, end: datetime | None, bad_fraction: float, unpriced_fraction: float
) -> None:
    """Write realistic sample messages into the source table (created if missing)."""
    from usage_etl import sample

    settings = common.settings()
    engine, _ = common.engine(settings)
    spec = sample.SampleSpec(users, days, messages_per_day, seed, end.date() if end else None, bad_fraction, unpriced_fraction)
    t0 = time.perf_counter()
    frame = sample.generate_frame(spec, settings.timezone)
    n = sample.write(engine, settings, frame)
    click.echo(
        f"wrote {n:,} messages for {users} users over {days} days into "
        f"{settings.source_schema}.{settings.source_table} in {time.perf_counter() - t0:.1f}s"
    )


@click.command()
@click.option("--days", type=click.IntRange(min=1), default=30, show_default=True, help="Days of sample data, ending yesterday.")
@click.option("--users", type=click.IntRange(min=1), default=200, show_default=True, help="Distinct users of the sample data (power-law activity).")
@click.option("--messages-per-day", type=click.IntRange(min=1), default=2000, show_default=True, help="Sample messages per day.")
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
    settings = common.settings()
    engine, url = common.engine(settings)
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
