"""A bad price book is refused naming the file, model and field; implausible prices warn."""

from __future__ import annotations

import warnings

import pytest
from click.testing import CliRunner

from usage_etl.cli.prices import prices
from usage_etl.pricing.validation import PriceBookWarning
from usage_etl.pricing.book import PriceBookError, load_price_book

PERIOD = "effective_from = 2025-01-01\ninput = 1\noutput = 2\ncache_write_5m = 1\ncache_write_1h = 1\ncache_read = 0.1\n"
HAIKU = """
[models."claude-3-haiku"]
provider = "anthropic"
[[models."claude-3-haiku".periods]]
effective_from = 2024-03-13
input = 0.25
output = 1.25
cache_write_5m = 0.30
cache_write_1h = {h}
cache_read = 0.03
"""


def _load(tmp_path, text, name="book.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path, lambda: load_price_book([path], include_default=False, use_env=False)


@pytest.mark.parametrize("text, needle", [
    ("[[models.x.periods]]\n" + PERIOD + "service_tiers.flex = { input = 0.5 }\n",
     'models."x".periods[0].service_tiers.flex.output: missing price'),
    ("[[models.x.periods]]\n" + PERIOD + "service_tiers.flex = { input = -0.5, output = 1 }\n",
     'models."x".periods[0].service_tiers.flex.input: price -0.5 is negative'),
    ("[[models.x.periods]]\n" + PERIOD + "service_tiers.standard = { input = 1, output = 2 }\n",
     'models."x".periods[0].service_tiers.standard: service tier name must match'),
    ("[[models.x.periods]]\n" + PERIOD + "service_tiers.flex = { input = 1, output = 2, speed = 3 }\n",
     'models."x".periods[0].service_tiers.flex.speed: unknown key'),
    ("[[models.x.periods]]\n" + PERIOD + "long_context = [{ threshold = 200000, input = 2, output = 4 }, { threshold = 200000, input = 3, output = 5 }]\n",
     'models."x".periods[0].long_context: two tiers with threshold 200000'),
    ("[[models.x.periods]]\n" + PERIOD + "long_context = [{ threshold = 200000, input = 2, output = 4 }, { threshold = 272000, input = 3 }]\n",
     'models."x".periods[0].long_context[1].output: missing'),
    ("[[models.x.periods]]\n" + PERIOD.replace("output = 2\n", ""), 'models."x".periods[0].output: missing price'),
    ("[[models.x.periods]]\n" + PERIOD.replace("cache_read = 0.1", "cache_read = -0.1"), 'models."x".periods[0].cache_read: price -0.1 is negative'),
])
def test_bad_book_is_refused_naming_model_and_field(tmp_path, text, needle):
    path, load = _load(tmp_path, text)
    with pytest.raises(PriceBookError) as exc:
        load()
    assert str(exc.value).startswith(f"{path}: ") and needle in str(exc.value)
    res = CliRunner().invoke(prices, ["check", "--no-default", str(path)])
    assert res.exit_code == 1 and needle in res.output


def test_litellm_style_one_hour_price_error_warns(tmp_path):
    # LiteLLM once listed Claude 3 Haiku's 1-hour cache write at 24x input (6 instead of 0.50).
    path, load = _load(tmp_path, HAIKU.format(h=6))
    with pytest.warns(PriceBookWarning) as caught:
        load()
    assert [str(w.message) for w in caught] == [
        f'{path}: models."claude-3-haiku".periods[0].cache_write_1h: 6 USD/MTok is 24x input (0.25); Anthropic publishes 2x'
    ]
    res = CliRunner().invoke(prices, ["check", "--no-default", str(path)])
    assert res.exit_code == 0
    assert res.output.splitlines()[0] == f"warning: {caught[0].message}"
    assert res.output.splitlines()[-1].endswith(": 1 models, 1 warnings")


def test_published_rounding_does_not_warn(tmp_path):
    # Anthropic's page rounds Claude 3 Haiku to the cent: write 0.30 (1.2x), read 0.03 (0.12x).
    _, load = _load(tmp_path, HAIKU.format(h=0.5))
    with warnings.catch_warnings():
        warnings.simplefilter("error", PriceBookWarning)
        load()


def test_implausible_generic_prices_warn(tmp_path):
    text = (
        "[[models.x.periods]]\n" + PERIOD.replace("cache_read = 0.1", "cache_read = 1.5").replace("cache_write_1h = 1", "cache_write_1h = 0.5")
        + "long_context = { threshold = 1000, input = 0.5, output = 4 }\n"
        + "service_tiers.flex = { input = 3, output = 2 }\nservice_tiers.priority = { input = 0.5, output = 4 }\n"
    )
    path, load = _load(tmp_path, text)
    with pytest.warns(PriceBookWarning) as caught:
        load()
    k = f'{path}: models."x".periods[0]'
    assert sorted(str(w.message) for w in caught) == sorted([
        f"{k}.cache_read: 1.5 USD/MTok is dearer than uncached input (1)",
        f"{k}.cache_write_1h: 0.5 USD/MTok is cheaper than the 5-minute write (1)",
        f"{k}.long_context.cache_read: 0.75 USD/MTok is dearer than uncached input (0.5)",
        f"{k}.long_context.cache_write_1h: 0.25 USD/MTok is cheaper than the 5-minute write (0.5)",
        f"{k}.long_context.input: long-context price 0.5 USD/MTok is below the level under it (1)",
        f"{k}.service_tiers.flex.cache_read: 4.5 USD/MTok is dearer than uncached input (3)",
        f"{k}.service_tiers.flex.cache_write_1h: 1.5 USD/MTok is cheaper than the 5-minute write (3)",
        f"{k}.service_tiers.flex.input: flex price 3 USD/MTok is dearer than standard (1)",
        f"{k}.service_tiers.priority.cache_read: 0.75 USD/MTok is dearer than uncached input (0.5)",
        f"{k}.service_tiers.priority.cache_write_1h: 0.25 USD/MTok is cheaper than the 5-minute write (0.5)",
        f"{k}.service_tiers.priority.input: priority price 0.5 USD/MTok is cheaper than standard (1)",
    ])


def test_shipped_book_loads_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error", PriceBookWarning)
        book = load_price_book(use_env=False)
    assert len(book.models) > 200
