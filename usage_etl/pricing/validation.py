"""Plausibility checks of a loaded price book: warnings, not errors.

Hard errors (negative, missing or sub-pico prices, bad dates, unknown keys) are raised by the
loader (`pricing.PriceBookError`). These checks catch prices that load but are very likely wrong,
like LiteLLM's Claude 3 Haiku 1-hour cache write once listed at 24x input. Each finding is a
`PriceBookWarning` whose message starts with the file and the key, e.g.
`x.toml: models."claude-3-haiku".periods[0].cache_write_1h: 6 USD/MTok is 24x input (0.25); ...`.

Rules, at every level of a period (its own prices, each long-context tier, each service tier):
- Anthropic models (provider "anthropic" or a name starting "claude") with cache prices, from
  Anthropic's published prompt-caching multipliers: 5-minute write 1.25 x input, 1-hour write
  2 x input, read at most 0.1 x input (Anthropic publishes lower read multipliers for some
  models, never higher). Within 0.8x..1.25x of the stated multiplier is plausible, because the
  published prices are rounded to the cent. A model whose cache prices all equal input (no
  prompt caching offered) is not checked.
- Every model: a cache read dearer than uncached input; a 1-hour write cheaper than a 5-minute
  one; a long-context tier cheaper than the level below it; a `flex` or `batch` tier dearer than
  standard, or a `priority` tier cheaper.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from typing import Any

__all__ = ["PriceBookWarning", "implausible_prices"]

_ANTHROPIC = {"cache_write_5m": Fraction(5, 4), "cache_write_1h": Fraction(2)}
_ANTHROPIC_READ_MAX = Fraction(1, 10)
# Anthropic's page rounds to the cent (Claude 3 Haiku: 0.25 input, 0.30 write = 1.2x, 0.03 read
# = 0.12x), so a ratio within 0.8x..1.25x of the stated one is plausible.
_LOW, _HIGH = Fraction(4, 5), Fraction(5, 4)
_CHEAPER_TIERS = ("flex", "batch")
_DEARER_TIERS = ("priority",)


class PriceBookWarning(UserWarning):
    """A price that loads but is implausible; the message names the file, model and field."""


def _usd(pico: int) -> str:
    d = Decimal(pico) / 1_000_000
    return format(d.normalize(), "f")


def _levels(key: str, p: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any] | None]]:
    """(key, prices, prices of the level below or None) for the period, its tiers and service tiers."""
    yield key, p, None
    below = p
    for t in p["tiers"]:
        yield t["key"], t, below
        below = t
    for name, st in p["service_tiers"].items():
        skey = f"{key}.service_tiers.{name}"
        yield skey, st, None
        below = st
        for t in st["tiers"]:
            yield t["key"], t, below
            below = t


def implausible_prices(name: str, provider: str | None, origin: str, key: str, p: dict[str, Any]) -> list[str]:
    """Findings for one parsed period (pricing._parse_period's dict, prices in pico-USD per token)."""
    out: list[str] = []
    anthropic = provider == "anthropic" or name.startswith("claude")

    def warn(k: str, field: str, msg: str) -> None:
        out.append(f"{origin}: {k}.{field}: {msg}")

    for k, lv, below in _levels(key, p):
        inp = lv["input"]
        no_caching = lv["cache_write_5m"] == lv["cache_write_1h"] == lv["cache_read"] == inp
        if anthropic and inp and not no_caching:
            for field, ratio in _ANTHROPIC.items():
                if not ratio * _LOW <= Fraction(lv[field], inp) <= ratio * _HIGH:
                    warn(k, field, f"{_usd(lv[field])} USD/MTok is {float(Fraction(lv[field], inp)):g}x input ({_usd(inp)}); "
                         f"Anthropic publishes {float(ratio):g}x")
            if Fraction(lv["cache_read"], inp) > _ANTHROPIC_READ_MAX * _HIGH:
                warn(k, "cache_read", f"{_usd(lv['cache_read'])} USD/MTok is {float(Fraction(lv['cache_read'], inp)):g}x input "
                     f"({_usd(inp)}); Anthropic publishes 0.1x (or less)")
        if lv["cache_read"] > inp:
            warn(k, "cache_read", f"{_usd(lv['cache_read'])} USD/MTok is dearer than uncached input ({_usd(inp)})")
        if lv["cache_write_1h"] < lv["cache_write_5m"]:
            warn(k, "cache_write_1h", f"{_usd(lv['cache_write_1h'])} USD/MTok is cheaper than the 5-minute write ({_usd(lv['cache_write_5m'])})")
        if below is not None:
            for field in ("input", "output"):
                if lv[field] < below[field]:
                    warn(k, field, f"long-context price {_usd(lv[field])} USD/MTok is below the level under it ({_usd(below[field])})")
    for tier, st in p["service_tiers"].items():
        skey = f"{key}.service_tiers.{tier}"
        for field in ("input", "output"):
            if tier in _CHEAPER_TIERS and st[field] > p[field]:
                warn(skey, field, f"{tier} price {_usd(st[field])} USD/MTok is dearer than standard ({_usd(p[field])})")
            if tier in _DEARER_TIERS and st[field] < p[field]:
                warn(skey, field, f"{tier} price {_usd(st[field])} USD/MTok is cheaper than standard ({_usd(p[field])})")
    return out
