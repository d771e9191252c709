"""``usage-etl prices build-default | import-genai | check``: the price book from genai-prices.

`usage_etl.cli.prices` attaches these commands to the ``prices`` group.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import click

from usage_etl.pricing.genai import DEFAULT_PROVIDERS, GenaiImport, build_default_book, convert_genai_prices
from usage_etl.pricing.validation import PriceBookWarning
from usage_etl.pricing.book import PriceBookError, load_price_book

__all__ = ["build_default", "check", "import_genai"]

_PACKAGED = Path(__file__).parents[1] / "prices" / "default.toml"  # usage_etl/prices/


def _loads(result: GenaiImport) -> None:
    """The generated text must load as a price book on its own; raise ClickException if not."""
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "genai.toml"
        probe.write_text(result.text, encoding="utf-8")
        try:
            load_price_book([probe], include_default=False, use_env=False)
        except PriceBookError as exc:
            raise click.ClickException(f"generated price book does not load: {exc}") from None


def _summary(result: GenaiImport, err: bool) -> None:
    click.echo(
        f"genai-prices {result.version} (data {result.digest}): {result.models} models, {len(result.skipped)} skipped",
        err=err,
    )


@click.command("build-default")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=_PACKAGED, show_default=True,
              help="Where to write the book.")
@click.option("--check", "check_only", is_flag=True, help="Write nothing; exit 1 if the file differs from a rebuild.")
def build_default(output: Path, check_only: bool) -> None:
    """Rebuild the shipped default book from the installed genai-prices and prices/verified.toml.

    Run it after `uv lock --upgrade-package genai-prices`; commit the diff. A price change
    changes the book version, so the days it affects are marked stale and `usage-etl reprice`
    applies it.
    """
    try:
        result = build_default_book()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    _loads(result)
    current = output.read_text(encoding="utf-8") if output.exists() else ""
    if check_only:
        if current != result.text:
            raise click.ClickException(f"{output} differs from a rebuild from genai-prices {result.version}; run `usage-etl prices build-default`")
        click.echo(f"{output} is current")
        return
    output.write_text(result.text, encoding="utf-8")
    _summary(result, err=False)
    click.echo(f"wrote {output} ({'unchanged' if current == result.text else 'changed'})")


@click.command("import-genai")
@click.option("-p", "--provider", "providers", multiple=True, help=f"genai-prices provider id (repeatable) [default: {', '.join(DEFAULT_PROVIDERS)}].")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write TOML here (default: stdout).")
@click.option("-v", "--verbose", is_flag=True, help="List every skipped model with its reason.")
def import_genai(providers: tuple[str, ...], output: Path | None, verbose: bool) -> None:
    """Convert genai-prices data of some providers (e.g. groq, together) into a price book file,
    without the shipped corrections. Load it with --price-book or USAGE_ETL_PRICE_BOOK."""
    try:
        result = convert_genai_prices(providers or DEFAULT_PROVIDERS)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    _loads(result)
    if output is None:
        click.echo(result.text, nl=False)
    else:
        output.write_text(result.text, encoding="utf-8")
    _summary(result, err=output is None)
    if verbose:
        for ref, reason in result.skipped:
            click.echo(f"  skipped {ref}: {reason}", err=output is None)


@click.command("check")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--no-default", is_flag=True, help="Check FILES alone, without the packaged book.")
def check(files: tuple[Path, ...], no_default: bool) -> None:
    """Validate a price book: errors (exit 1) name the file, model and field; implausible prices
    (against the provider's published ratios) are listed as warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PriceBookWarning)
        try:
            book = load_price_book(files, include_default=not no_default)
        except PriceBookError as exc:
            raise click.ClickException(str(exc)) from None
    found = [w for w in caught if issubclass(w.category, PriceBookWarning)]
    for w in found:
        click.echo(f"warning: {w.message}")
    click.echo(f"price book {book.version}: {len(book.models)} models, {len(found)} warnings")
