"""``usage-etl reprice`` and ``usage-etl report …``: cost history and cost reports.

The main CLI attaches these with ``main.add_command(...)``.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from decimal import Decimal

import click

__all__ = ["report", "reprice"]

_DATE = click.DateTime(["%Y-%m-%d"])


def _setup():
    from usage_etl.cli import common

    settings = common.settings()
    engine, _ = common.engine(settings)
    return settings, engine


def _usd(value: Decimal | None) -> str:
    return "-" if value is None else f"{value:,.6f}"


@click.command()
@click.option("--start", type=_DATE, required=True, help="First day to reprice (business timezone).")
@click.option("--end", type=_DATE, required=True, help="Last day to reprice, inclusive.")
def reprice(start: datetime, end: datetime) -> None:
    """Re-materialize days START..END with the current price book, then the weeks and months over
    them, through Dagster (runs show in the UI), and print the cost change per month.

    The price book is the packaged one plus the files in USAGE_ETL_PRICE_BOOK. Old and new costs
    are the monthly rows of user_token_usage before and after; a month only partly in the range
    keeps the old prices for its other days (its price book column then lists both versions).
    """
    from usage_etl.defs import partitions
    from usage_etl.cli.common import day_range
    from usage_etl.pricing.book import PriceBookError, load_price_book

    try:
        book = load_price_book()
    except PriceBookError as exc:
        raise click.ClickException(str(exc)) from None
    from usage_etl.cli import common

    settings = common.settings()
    first, last = day_range(partitions.build(settings)["daily"], start, end)  # a usage error before connecting
    engine, _ = common.engine(settings)
    # Imported after the check: importing the assets module loads the price book too.
    from usage_etl.defs import runs
    from usage_etl.defs.reprice import reprice as run_reprice

    click.echo(f"price book {book.version} from {', '.join(book.files)}")
    t0 = time.perf_counter()

    def progress(g: str, batch: list[str], result) -> None:
        status = "ok" if result.success else "FAILED"
        click.echo(f"  {g} {batch[0]}…{batch[-1]} ({len(batch)} partitions) run {result.run_id[:8]} {status} [{time.perf_counter() - t0:.1f}s]")

    result = run_reprice(engine, settings, first, last, inst=runs.instance(), book=book, on_batch=progress)
    if not result.success:
        click.echo("reprice FAILED; see the run in the Dagster UI", err=True)
        sys.exit(1)
    click.echo("cost change per month (monthly rows of user_token_usage, USD):")
    click.echo(f"{'month':<8} {'old_cost_usd':>14} {'new_cost_usd':>14} {'change_usd':>14} {'unpriced':>12}  price book")
    for m in result.months:
        old_u = str(m.old.unpriced_messages) if m.old else "-"
        new_u = str(m.new.unpriced_messages) if m.new else "-"
        old_v = ",".join(m.old.price_book_versions) if m.old else "-"
        new_v = ",".join(m.new.price_book_versions) if m.new else "-"
        click.echo(
            f"{m.month:%Y-%m}  {_usd(m.old.cost_usd if m.old else None):>14} {_usd(m.new.cost_usd if m.new else None):>14} "
            f"{m.change_usd:>+14,.6f} {old_u + '->' + new_u:>12}  {old_v or '-'} -> {new_v or '-'}"
        )
    total = sum((m.change_usd for m in result.months), Decimal(0))
    click.echo(f"{'total':<8} {'':>14} {'':>14} {total:>+14,.6f}")


@click.group()
def report() -> None:
    """Reports over the summary tables."""


@report.command("paid-vs-estimated")
@click.option("--start", type=_DATE, required=True, help="First day (business timezone).")
@click.option("--end", type=_DATE, required=True, help="Last day, inclusive.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Users to list.")
def paid_vs_estimated(start: datetime, end: datetime, limit: int) -> None:
    """Users whose paid amount and estimated cost (price book) diverge most over START..END.

    From the daily rows of user_token_usage; only users whose source reported a paid amount.
    difference = paid - estimated; ratio = paid / estimated. Unpriced messages have no estimate,
    so they make paid look high: their count is shown.
    """
    from usage_etl.reports import paid_vs_estimated as query

    if end < start:
        raise click.UsageError(f"--end {end.date()} is before --start {start.date()}")
    settings, engine = _setup()
    rows = query(engine, settings, start.date(), end.date(), limit)
    if not rows:
        click.echo("no paid amounts in this range")
        return
    click.echo(f"{'user_id':<36} {'messages':>9} {'unpriced':>8} {'estimated_usd':>14} {'paid_amount':>14} {'difference':>14} {'ratio':>8}")
    for r in rows:
        ratio = "-" if r.ratio is None else f"{r.ratio:.4f}"
        click.echo(
            f"{r.user_id:<36} {r.messages:>9} {r.unpriced_messages:>8} {_usd(r.estimated_usd):>14} "
            f"{_usd(r.paid_amount):>14} {r.difference:>+14,.6f} {ratio:>8}"
        )
