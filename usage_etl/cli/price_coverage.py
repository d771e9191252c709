"""``usage-etl prices coverage``: which models are priced, and how much of the traffic that is.

`usage_etl.cli.prices` attaches this command to the ``prices`` group.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from pathlib import Path

import click
import polars as pl

from usage_etl.price_coverage import coverage_from_grain, coverage_from_messages
from usage_etl.pricing.book import PriceBookError, load_price_book

__all__ = ["coverage"]

_HEAD = ("model", "messages", "tokens", "priced", "price_model", "match", "unpriced reasons")


def _pct(share: float) -> str:
    return f"{100 * share:.2f}%"


def _table(cov: pl.DataFrame) -> list[tuple[str, ...]]:
    return [
        (r["model"], f"{r['messages']:,}", f"{r['tokens']:,}", _pct(r["priced_share"]), r["price_model"] or "-",
         r["match"], r["reasons"] or "-")
        for r in cov.iter_rows(named=True)
    ]


def _echo(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(_HEAD)]
    for r in [_HEAD, *rows]:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


@click.command("coverage")
@click.option("--days", default=30, show_default=True, type=click.IntRange(min=1), help="The last N days (business timezone), today included.")
@click.option("--from", "origin", type=click.Choice(["source", "grain"]), default="source", show_default=True,
              help="source: read and price the raw rows now; grain: the stored conversation-day grain (as priced then).")
@click.option("--price-book", "extra", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Extra price book file, loaded after the packaged one and $USAGE_ETL_PRICE_BOOK (repeatable).")
def coverage(days: int, origin: str, extra: tuple[Path, ...]) -> None:
    """Each model seen in the last N days: messages, tokens, the priced share of its messages,
    the price book entry it resolves to and how (name, alias, suffix stripped, pattern), and why
    messages are unpriced. Ends with the priced share of all messages and tokens."""
    from usage_etl import store
    from usage_etl.cli import common
    from usage_etl.normalize import normalize
    from usage_etl.sources.postgres import read_window

    settings = common.settings()
    try:
        book = load_price_book(extra)
    except PriceBookError as exc:
        raise click.ClickException(str(exc)) from None
    engine, url = common.engine(settings)
    today = datetime.now(settings.tz).date()
    first = today - timedelta(days=days - 1)
    start = datetime.combine(first, time(0), settings.tz)
    end = datetime.combine(today + timedelta(days=1), time(0), settings.tz)
    if origin == "source":
        src = settings.source_config
        raw = read_window(settings, url, start, end)
        messages = normalize(raw, src.tokens.semantics, src.status.error_values).messages
        cov = coverage_from_messages(messages.lazy(), book)
    else:
        import sqlalchemy as sa

        with engine.connect() as conn:
            g = store.reflect(conn, settings.schema, store.GRAIN_TABLE)
            rows = conn.execute(sa.select(g).where(g.c.day >= first, g.c.day <= today)).mappings().all()
        cov = coverage_from_grain(pl.DataFrame([dict(r) for r in rows]) if rows else pl.DataFrame(schema=_GRAIN_COLUMNS), book)
    click.echo(f"price book {book.version}; {origin} {first} .. {today} ({settings.timezone})")
    _echo(_table(cov))
    messages = int(cov["messages"].sum())
    if messages == 0:
        click.echo("no messages")
        return
    priced = messages - int(cov["unpriced_messages"].sum())
    click.echo(f"priced share: {_pct(priced / messages)} of {messages:,} messages in {cov.height} models")


_GRAIN_COLUMNS = {
    "model": pl.String, "message_count": pl.Int64, "unpriced_message_count": pl.Int64, "price_book_version": pl.String,
    **{c: pl.Int64 for c in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")},
}
