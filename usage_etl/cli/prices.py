"""``usage-etl prices …``: inspect the price book and import LiteLLM prices.

The main CLI attaches this group with ``cli.add_command(prices)``.
"""

from __future__ import annotations

import collections
import datetime as dt
import tempfile
from pathlib import Path

import click
import polars as pl

from usage_etl.pricing.litellm import import_litellm
from usage_etl.pricing.book import (
    PRICE_KEYS,
    PriceBook,
    PriceBookError,
    load_price_book,
    normalize_model_name,
    pico_to_usd_per_mtok,
    resolve_model_name,
)

__all__ = ["prices"]

prices = click.Group("prices", help="Price book: show resolved prices and coverage, build the default from genai-prices, import LiteLLM prices.")

_DATE = click.DateTime(formats=["%Y-%m-%d"])


def _load(extra: tuple[Path, ...]) -> PriceBook:
    try:
        return load_price_book(extra)
    except PriceBookError as exc:
        raise click.ClickException(str(exc)) from None


def _usd(pico: int | None) -> str:
    return "-" if pico is None else str(pico_to_usd_per_mtok(pico))


_LIST_COLUMNS = ("model", "periods", "from", "to", *PRICE_KEYS, "long_context", "aliases")


def _list_periods(book: PriceBook) -> None:
    """Every period of every entry (USD per million tokens), so earlier prices and long-context
    tiers are visible without naming a model."""
    rows: list[tuple[str, ...]] = []
    counts = dict(book.periods.group_by("price_model").len().iter_rows())
    previous = None
    for p in book.periods.iter_rows(named=True):
        name = p["price_model"]
        first = name != previous
        previous = name
        tier = "-"
        if p["long_context_threshold"] is not None:
            tier = f">{p['long_context_threshold']}: " + "/".join(_usd(p["long_context_" + k]) for k in PRICE_KEYS)
        rows.append((
            name if first else "",
            str(counts[name]) if first else "",
            f"{p['effective_from']:%Y-%m-%d}",
            f"{p['effective_to']:%Y-%m-%d}" if p["effective_to"] else "open",
            *[_usd(p[k]) for k in PRICE_KEYS],
            tier,
            ", ".join(book.info[name]["aliases"]) if first else "",
        ))
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(_LIST_COLUMNS)]
    click.echo("USD per million tokens; one line per price period")
    for r in [_LIST_COLUMNS, *rows]:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


@prices.command("show")
@click.argument("model", required=False)
@click.option(
    "--price-book", "extra", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Extra price book file, loaded after the packaged one and $USAGE_ETL_PRICE_BOOK (repeatable).",
)
def show(model: str | None, extra: tuple[Path, ...]) -> None:
    """List every model with all its price periods, or show how MODEL resolves and its periods.

    Prices in USD per million tokens. Without MODEL: one line per period; `periods` is the
    entry's number of periods (on its first line), `long_context` the tier of that period as
    `>THRESHOLD: input/output/5m/1h/read`, or `-`.
    """
    book = _load(extra)
    click.echo(f"price book {book.version} from {', '.join(book.files)}")
    if model is None:
        _list_periods(book)
        return

    specific, base = normalize_model_name(model)
    name = resolve_model_name(model, book)
    if name is None:
        raise click.ClickException(f"no price entry for {model!r} (normalized: {specific!r}, {base!r})")
    lookup = book.lookup()
    if specific in lookup:
        how = "name" if specific == name else "alias"
    elif base in lookup:
        how = "name, suffix stripped" if base == name else "alias, suffix stripped"
    else:
        how = "pattern"
    info = book.info[name]
    click.echo(f"{model!r} -> {name!r} (matched by {how}; normalized {specific!r}, base {base!r})")
    click.echo(f"  aliases:  {', '.join(info['aliases']) or '-'}")
    click.echo(f"  patterns: {', '.join(info['patterns']) or '-'}")
    click.echo(f"  defined in: {info['origin']}")
    for p in book.periods.filter(pl.col("price_model") == name).iter_rows(named=True):
        to = f"{p['effective_to']:%Y-%m-%d}" if p["effective_to"] else "open"
        click.echo(f"  period {p['effective_from']:%Y-%m-%d} .. {to} (USD per million tokens)")
        click.echo("    " + "  ".join(f"{k}={_usd(p[k])}" for k in PRICE_KEYS))
        levels = book.rates.filter(pl.col("price_model") == name, pl.col("effective_from") == p["effective_from"])
        for r in levels.iter_rows(named=True):
            if r["service_tier"] == "standard" and r["prompt_above"] < 0:
                continue  # the period's own prices, printed above
            where = f"prompt > {r['prompt_above']} tokens" if r["prompt_above"] >= 0 else "all prompts"
            prices_ = "  ".join(f"{k}={_usd(r[k])}" for k in PRICE_KEYS)
            click.echo(f"    {r['service_tier']}, {where}: {prices_}")
        if p["batch_discount"] is not None:
            click.echo(f"    batch discount {p['batch_discount']:g} (informational, not applied)")
        click.echo(f"    source {p['source'] or '-'} ({p['source_date'] or 'no date'})")


@prices.command("import-litellm")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write TOML here (default: stdout)."
)
@click.option(
    "--effective-from", type=_DATE, default="1970-01-01", show_default=True,
    help="Start of the single period given to every model (LiteLLM has no price history).",
)
@click.option("--source-date", type=_DATE, default=None, help="Date the file was published (default: today).")
@click.option("-v", "--verbose", is_flag=True, help="List every skipped key with its reason.")
def import_litellm_cmd(
    file: Path, output: Path | None, effective_from: dt.datetime, source_date: dt.datetime | None, verbose: bool
) -> None:
    """Convert LiteLLM's model_prices_and_context_window.json (chat models) to a price book file."""
    try:
        text, skipped = import_litellm(
            file, effective_from=effective_from.date(), source_date=source_date.date() if source_date else None
        )
    except (ValueError, OSError) as exc:
        raise click.ClickException(f"{file}: {exc}") from None
    # The output must load as a price book on its own; check before writing anything.
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "imported.toml"
        probe.write_text(text, encoding="utf-8")
        try:
            book = load_price_book([probe], include_default=False, use_env=False)
        except PriceBookError as exc:
            raise click.ClickException(f"generated price book does not load: {exc}") from None

    to_stderr = output is None
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
    click.echo(f"imported {len(book.models)} models, skipped {len(skipped)} keys", err=to_stderr)
    by_category = collections.Counter(reason.split(":", 1)[0] for _, reason in skipped)
    details = collections.Counter(reason for _, reason in skipped)
    for category, count in by_category.most_common():
        click.echo(f"  {category}: {count}", err=to_stderr)
        top = [(r, n) for r, n in details.most_common() if r.split(":", 1)[0] == category][:3]
        for reason, n in top:
            click.echo(f"      {n:>5} x {reason.split(':', 1)[1].strip()}", err=to_stderr)
    if verbose:
        for key, reason in skipped:
            click.echo(f"  skipped {key}: {reason}", err=to_stderr)


def _register() -> None:
    from usage_etl.cli.price_coverage import coverage
    from usage_etl.cli.price_sources import build_default, check, import_genai

    for command in (build_default, import_genai, check, coverage):
        prices.add_command(command)


_register()
