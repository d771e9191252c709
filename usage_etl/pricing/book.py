"""Price book and per-message cost, as pure Polars expressions.

Units
-----
* Token counts: integer tokens (Int64), as in the canonical message frame.
* Price book files: USD per million tokens (``input = 3`` means $3 / 1M tokens).
* In memory: integer **pico-USD per token** (1 pico-USD = 1e-12 USD). USD per million tokens
  x 1_000_000 = pico-USD per token, so every published price (at most 6 decimal places) is an
  exact Int64 and so is every cost: ``cost_pico_usd = sum(tokens x pico_per_token)``.
* Reports: ``cost_usd_from_pico`` turns a pico sum into Decimal(18, 6) USD, half away from zero.

Cost of one message (``c1h`` = cache_creation_1h_input_tokens, ``cc`` = cache_creation_input_tokens)::

    input_tokens x input + (cc - c1h) x cache_write_5m + c1h x cache_write_1h
      + cache_read_input_tokens x cache_read + output_tokens x output

``reasoning_tokens`` are inside ``output_tokens`` and never charged again. When a period has
``long_context`` tiers and the prompt (input + cc + cache_read) is strictly above a threshold,
the whole request is charged at the highest such tier's prices. A tier that omits a cache price
gets the base cache price scaled by the tier's input ratio (tier input / base input), the rule
Anthropic publishes for its >200k tier (cache multipliers apply to the long-context input rate).
A message's ``service_tier`` (``usage_etl.service_tier``) selects the period's prices for that
tier (``service_tiers``); a tier without prices leaves the message unpriced.

Overflow: every token field of a priced message is at most ``MAX_TOKENS_PER_FIELD`` (10^9)
tokens (normalization quarantines larger values as ``tokens_out_of_range``), and the loader
rejects a period whose prices could then exceed Int64 pico-USD for one message
(``MAX_TOKENS_PER_FIELD x (input + max(cache writes) + cache_read + output) <= 2^63 - 1``).
``price_messages`` also computes in Int128 and casts back strictly, so a frame that bypassed
normalization raises instead of wrapping to a wrong (negative) cost.

The shipped book is generated from genai-prices (``usage_etl.pricing.genai``); sources and
the exceptions where it is corrected: docs/pricing.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import re
import tomllib
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from importlib.resources import files
from pathlib import Path
from typing import Any

import polars as pl

from usage_etl.frames import MAX_TOKENS_PER_FIELD
from usage_etl.pricing.validation import PriceBookWarning, implausible_prices
from usage_etl.service_tier import SERVICE_TIER_NAME, STANDARD_TIER, canonical_service_tier

__all__ = [
    "ENV_VAR",
    "INT64_MAX",
    "MAX_TOKENS_PER_FIELD",
    "PICO_PER_USD",
    "PRICE_KEYS",
    "PriceBook",
    "PriceBookError",
    "cost_usd_from_pico",
    "load_price_book",
    "normalize_model_name",
    "pico_to_usd_per_mtok",
    "price_messages",
    "resolve_model",
    "resolve_model_name",
    "usd_per_mtok_to_pico",
]

ENV_VAR = "USAGE_ETL_PRICE_BOOK"
PICO_PER_USD = 10**12
# USD per million tokens -> pico-USD per token.
_PICO_PER_TOKEN_PER_USD_PER_MTOK = 10**6
PRICE_KEYS = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")
INT64_MAX = 2**63 - 1
DEFAULT_BOOK_NAME = "usage_etl/prices/default.toml"

_TOP_KEYS = {"models"}
_ENTRY_KEYS = {"aliases", "patterns", "periods", "provider", "note"}
_PERIOD_KEYS = {
    "effective_from",
    "effective_to",
    *PRICE_KEYS,
    "long_context",
    "service_tiers",
    "batch_discount",
    "source",
    "source_date",
    "note",
}
_LONG_CONTEXT_KEYS = {"threshold", *PRICE_KEYS}
_SERVICE_TIER_KEYS = {*PRICE_KEYS, "long_context"}

# Model-name normalization. The same rules run as Python `re` (loader, importer, CLI) and as
# Polars/Rust regex (per row); they are kept to the syntax both engines read identically.
# Specific form: lower-case, provider prefix removed (everything up to the last '/', and Bedrock
# ids such as 'us.anthropic.'), snapshot suffix kept.
_PREFIX_RULES = (
    r"^.*/",
    r"^(?:[a-z]{2,6}(?:-[a-z]+)?\.)?(?:anthropic|openai|amazon|meta|mistral|cohere|ai21|deepseek|qwen)\.",
)
# Base form: additionally drop '@…' (Vertex), '-v1:0' (Bedrock), '-latest' and dated snapshots.
_SUFFIX_RULES = (
    r"@.*$",
    r"-v\d+(?::\d+)?$",
    r"-latest$",
    r"-(?:\d{8}|\d{4}-\d{2}-\d{2})$",
)
_PREFIX_RES = tuple(re.compile(p) for p in _PREFIX_RULES)
_SUFFIX_RES = tuple(re.compile(p) for p in _SUFFIX_RULES)

# Internal column names of price_messages; prefixed so they cannot clash with caller columns.
_ROW = "__pricing_row"
_FROM = "__pricing_from"
_TO = "__pricing_to"
_TIER = "__pricing_tier"
_ABOVE = "__pricing_prompt_above"
_UP_TO = "__pricing_prompt_up_to"


def _p(key: str) -> str:
    return f"__pricing_{key}"


class PriceBookError(ValueError):
    """A price book file is unreadable or invalid. The message names the file and the key."""


# ----------------------------------------------------------------------------------------------
# Units
# ----------------------------------------------------------------------------------------------


def usd_per_mtok_to_pico(value: Any) -> int:
    """USD per million tokens (int, float, str or Decimal) -> exact integer pico-USD per token.

    Floats go through ``repr`` so ``0.075`` is 0.075, not its binary approximation.
    Raises ValueError for negative, non-finite or sub-pico (more than 6 decimals) values.
    """
    if isinstance(value, bool):
        raise ValueError("a price must be a number, not a boolean")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"price {value!r} is not finite")
        value = repr(value)
    try:
        d = Decimal(value) if not isinstance(value, Decimal) else value
    except (InvalidOperation, TypeError) as exc:
        raise ValueError(f"price {value!r} is not a number") from exc
    if not d.is_finite():
        raise ValueError(f"price {value!r} is not finite")
    if d < 0:
        raise ValueError(f"price {value} is negative")
    pico = d * _PICO_PER_TOKEN_PER_USD_PER_MTOK
    if pico != pico.to_integral_value():
        raise ValueError(f"price {value} has more than 6 decimal places (finer than 1 pico-USD per token)")
    return int(pico)


def pico_to_usd_per_mtok(pico: int) -> Decimal:
    """Integer pico-USD per token -> exact Decimal USD per million tokens (for display)."""
    d = Decimal(pico) / _PICO_PER_TOKEN_PER_USD_PER_MTOK
    return d.quantize(Decimal(1)) if d == d.to_integral_value() else d.normalize()


def cost_usd_from_pico(expr: pl.Expr) -> pl.Expr:
    """Integer pico-USD (e.g. ``pl.col("cost_pico_usd").sum()``) -> Decimal(18, 6) USD.

    Rounds to the micro-dollar half away from zero (half-up for the non-negative costs this
    package produces): the pico value is made an exact Decimal(38, 12) and rounded there, so
    sums beyond Int64 (pass an Int128 sum) are fine; the result must fit Decimal(18, 6), i.e.
    stay below $10^12. Nulls stay null.
    """
    usd = expr.cast(pl.Decimal(38, 0)) * pl.lit(Decimal("0.000000000001"))
    return usd.round(6, mode="half_away_from_zero").cast(pl.Decimal(18, 6))


# ----------------------------------------------------------------------------------------------
# Name normalization
# ----------------------------------------------------------------------------------------------


def normalize_model_name(name: str) -> tuple[str, str]:
    """Python twin of the per-row normalization: returns ``(specific, base)``.

    ``"anthropic/claude-sonnet-4-20250514"`` -> ``("claude-sonnet-4-20250514", "claude-sonnet-4")``.
    """
    s = name.strip().lower()
    for rx in _PREFIX_RES:
        s = rx.sub("", s, count=1)
    b = s
    for rx in _SUFFIX_RES:
        b = rx.sub("", b, count=1)
    return s, b


def _normalize_exprs(models: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    s = models.str.strip_chars().str.to_lowercase()
    for rule in _PREFIX_RULES:
        s = s.str.replace(rule, "")
    b = s
    for rule in _SUFFIX_RULES:
        b = b.str.replace(rule, "")
    return s, b


# ----------------------------------------------------------------------------------------------
# The book
# ----------------------------------------------------------------------------------------------

_PERIOD_SCHEMA: dict[str, pl.DataType] = {
    "price_model": pl.String(),
    "effective_from": pl.Datetime("us", "UTC"),
    "effective_to": pl.Datetime("us", "UTC"),
    **{k: pl.Int64() for k in PRICE_KEYS},
    "long_context_threshold": pl.Int64(),
    **{f"long_context_{k}": pl.Int64() for k in PRICE_KEYS},
    "batch_discount": pl.Float64(),
    "source": pl.String(),
    "source_date": pl.Date(),
    "origin": pl.String(),
}


RATES_SCHEMA: dict[str, pl.DataType] = {
    "price_model": pl.String(),
    "effective_from": pl.Datetime("us", "UTC"),
    "effective_to": pl.Datetime("us", "UTC"),
    "service_tier": pl.String(),
    "prompt_above": pl.Int64(),
    "prompt_up_to": pl.Int64(),
    **{k: pl.Int64() for k in PRICE_KEYS},
}


@dataclass(frozen=True, eq=False)
class PriceBook:
    """A loaded, validated price book.

    periods:  one row per model x period, sorted by (price_model, effective_from). Columns:
              price_model, effective_from / effective_to (Datetime us UTC, [from, to), to null =
              open), input, output, cache_write_5m, cache_write_1h, cache_read (Int64 pico-USD
              per token), long_context_threshold (Int64 prompt tokens, null = no tier),
              long_context_<price> (Int64 pico-USD per token), batch_discount (Float64,
              informational), source, source_date, origin (file the period came from).
    aliases:  key -> price_model (String, String) for every canonical name and alias, lower-case.
    patterns: (regex, price_model) in the order they are tried.
    version:  first 12 hex digits of sha256 over the canonical content of the loaded files
              and the resolved prices.
    files:    the files loaded, in order.
    rates:    what `price_messages` charges (`RATES_SCHEMA`): one row per model x period x
              service tier (`standard` = the period's own prices) x prompt-length level; a
              level applies when prompt_above < prompt tokens <= prompt_up_to (null = no upper
              bound); the base level has prompt_above = -1. Prices in pico-USD per token.
    """

    periods: pl.DataFrame
    aliases: pl.DataFrame
    patterns: tuple[tuple[str, str], ...]
    version: str
    files: tuple[str, ...]
    info: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    rates: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=RATES_SCHEMA))

    @property
    def models(self) -> list[str]:
        return self.aliases.filter(pl.col("key") == pl.col("price_model"))["price_model"].to_list()

    def lookup(self) -> dict[str, str]:
        return dict(zip(self.aliases["key"].to_list(), self.aliases["price_model"].to_list(), strict=True))


@dataclass
class _Entry:
    name: str
    origin: str
    aliases: list[str] = field(default_factory=list)
    patterns: list[str] = field(default_factory=list)
    periods: list[dict[str, Any]] = field(default_factory=list)
    provider: str | None = None
    note: str | None = None


def _fail(origin: str, key: str, msg: str) -> PriceBookError:
    return PriceBookError(f"{origin}: {key}: {msg}")


def _key(name: str, *rest: str) -> str:
    return "models." + json.dumps(name) + "".join(rest)


def _check_date(origin: str, key: str, value: Any) -> dt.date:
    # TOML datetimes are also dt.date instances; boundaries are whole UTC days.
    if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
        raise _fail(origin, key, f"must be a TOML date (YYYY-MM-DD), got {value!r}")
    return value


def _check_price(origin: str, key: str, value: Any) -> int:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise _fail(origin, key, f"price must be a number (USD per million tokens), got {value!r}")
    try:
        return usd_per_mtok_to_pico(value)
    except ValueError as exc:
        raise _fail(origin, key, str(exc)) from None


def _check_str_list(origin: str, key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _fail(origin, key, "must be a list of non-empty strings")
    return value


def _check_name(origin: str, key: str, name: str) -> str:
    n = name.strip().lower()
    # Lookups happen after the provider prefix is stripped, so such a name could never match.
    if not n or "/" in n or any(c.isspace() for c in n):
        raise _fail(origin, key, f"{name!r} is not usable as a model name (empty, '/' or whitespace)")
    return n


def _parse_period(origin: str, key: str, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _fail(origin, key, "each period must be a table")
    unknown = set(raw) - _PERIOD_KEYS
    if unknown:
        allowed = ", ".join(sorted(_PERIOD_KEYS))
        raise _fail(origin, f"{key}.{sorted(unknown)[0]}", f"unknown key (allowed: {allowed})")
    if "effective_from" not in raw:
        raise _fail(origin, f"{key}.effective_from", "missing")
    p: dict[str, Any] = {"effective_from": _check_date(origin, f"{key}.effective_from", raw["effective_from"])}
    p["effective_to"] = None
    if "effective_to" in raw:
        p["effective_to"] = _check_date(origin, f"{key}.effective_to", raw["effective_to"])
        if p["effective_to"] <= p["effective_from"]:
            raise _fail(origin, f"{key}.effective_to", "must be after effective_from")
    for k in PRICE_KEYS:
        if k not in raw:
            raise _fail(origin, f"{key}.{k}", "missing price (USD per million tokens)")
        p[k] = _check_price(origin, f"{key}.{k}", raw[k])
    p["tiers"] = _parse_long_context(origin, f"{key}.long_context", raw.get("long_context"), p)
    # The first (lowest) tier, as the flat columns of PriceBook.periods show it.
    first = p["tiers"][0] if p["tiers"] else {}
    p["long_context_threshold"] = first.get("threshold")
    for k in PRICE_KEYS:
        p[f"long_context_{k}"] = first.get(k)
    p["service_tiers"] = _parse_service_tiers(origin, f"{key}.service_tiers", raw.get("service_tiers"), p)
    bd = raw.get("batch_discount")
    if bd is not None and (not isinstance(bd, (int, float)) or isinstance(bd, bool) or not 0 <= bd < 1):
        raise _fail(origin, f"{key}.batch_discount", "must be a fraction in [0, 1)")
    p["batch_discount"] = float(bd) if bd is not None else None
    src = raw.get("source")
    if src is not None and not isinstance(src, str):
        raise _fail(origin, f"{key}.source", "must be a string")
    p["source"] = src
    p["source_date"] = (
        _check_date(origin, f"{key}.source_date", raw["source_date"]) if "source_date" in raw else None
    )
    _check_cost_range(origin, key, p)
    p["origin"] = origin
    p["key"] = key
    return p


def _parse_long_context(origin: str, key: str, raw: Any, base: dict[str, Any]) -> list[dict[str, Any]]:
    """`long_context`: one tier table or an array of them -> tiers sorted by threshold (distinct)."""
    if raw is None:
        return []
    items = [(key, raw)] if isinstance(raw, dict) else [(f"{key}[{i}]", t) for i, t in enumerate(raw)] if isinstance(raw, list) else None
    if not items:
        raise _fail(origin, key, "must be a table or a non-empty array of tables")
    tiers = []
    for lkey, lc in items:
        if not isinstance(lc, dict):
            raise _fail(origin, lkey, "must be a table")
        unknown = set(lc) - _LONG_CONTEXT_KEYS
        if unknown:
            raise _fail(origin, f"{lkey}.{sorted(unknown)[0]}", "unknown key")
        for req in ("threshold", "input", "output"):
            if req not in lc:
                raise _fail(origin, f"{lkey}.{req}", "missing")
        thr = lc["threshold"]
        if not isinstance(thr, int) or isinstance(thr, bool) or thr <= 0:
            raise _fail(origin, f"{lkey}.threshold", "must be a positive integer number of prompt tokens")
        t: dict[str, Any] = {"threshold": thr, "key": lkey}
        for k in PRICE_KEYS:
            if k in lc:
                t[k] = _check_price(origin, f"{lkey}.{k}", lc[k])
        for k in PRICE_KEYS:
            if k not in lc:
                t[k] = _tier_price(origin, f"{lkey}.{k}", base[k], base["input"], t["input"])
        tiers.append(t)
    tiers.sort(key=lambda t: t["threshold"])
    for a, b in zip(tiers, tiers[1:]):
        if a["threshold"] == b["threshold"]:
            raise _fail(origin, key, f"two tiers with threshold {a['threshold']}")
    return tiers


def _parse_service_tiers(origin: str, key: str, raw: Any, base: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`service_tiers`: {name: {input, output, [cache_*], [long_context]}} -> validated prices.

    An omitted cache price is the base price x (tier input / base input), as for long context.
    A service tier without `long_context` has no long-context tiers (its prices are flat).
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _fail(origin, key, "must be a table of service tiers ({ flex = { input = ..., output = ... } })")
    out: dict[str, dict[str, Any]] = {}
    for name, st in raw.items():
        skey = f"{key}.{name}"
        if not SERVICE_TIER_NAME.match(name) or name == STANDARD_TIER:
            raise _fail(origin, skey, f"service tier name must match {SERVICE_TIER_NAME.pattern} and not be {STANDARD_TIER!r} (the period's own prices)")
        if not isinstance(st, dict):
            raise _fail(origin, skey, "must be a table")
        unknown = set(st) - _SERVICE_TIER_KEYS
        if unknown:
            raise _fail(origin, f"{skey}.{sorted(unknown)[0]}", f"unknown key (allowed: {', '.join(sorted(_SERVICE_TIER_KEYS))})")
        for req in ("input", "output"):
            if req not in st:
                raise _fail(origin, f"{skey}.{req}", "missing price (USD per million tokens)")
        t: dict[str, Any] = {k: _check_price(origin, f"{skey}.{k}", st[k]) for k in PRICE_KEYS if k in st}
        for k in PRICE_KEYS:
            if k not in t:
                t[k] = _tier_price(origin, f"{skey}.{k}", base[k], base["input"], t["input"])
        t["tiers"] = _parse_long_context(origin, f"{skey}.long_context", st.get("long_context"), t)
        out[name] = t
    return out


def _tier_price(origin: str, key: str, base_price: int, base_input: int, tier_input: int) -> int:
    """An unstated long-context cache price (pico-USD per token): the base price scaled by
    tier input / base input, e.g. Sonnet 4.5's 1-hour write 6 x 6/3 = 12 USD per million tokens.

    Raises PriceBookError when the ratio is undefined (base input 0) or the result is not a whole
    pico-USD per token: then the price must be stated.
    """
    if base_input == 0:
        raise _fail(origin, key, "missing, and cannot be derived from a base input price of 0; state it")
    scaled, rest = divmod(base_price * tier_input, base_input)
    if rest:
        exact = Decimal(base_price * tier_input) / base_input / _PICO_PER_TOKEN_PER_USD_PER_MTOK
        raise _fail(
            origin, key,
            f"missing, and the derived price {exact:f} (base price x tier input / base input) has more "
            "than 6 decimals; state it (USD per million tokens)",
        )
    return scaled


def _check_cost_range(origin: str, key: str, p: dict[str, Any]) -> None:
    """Reject prices with which a message of MAX_TOKENS_PER_FIELD tokens per field could cost
    more than Int64 pico-USD (it would overflow instead of being priced)."""
    levels = [(p, key)] + [(t, t["key"]) for t in p["tiers"]]
    for name, st in p["service_tiers"].items():
        levels += [(st, f"{key}.service_tiers.{name}")] + [(t, t["key"]) for t in st["tiers"]]
    for prices, tkey in levels:
        writes = max(prices["cache_write_5m"], prices["cache_write_1h"])
        per_token = prices["input"] + writes + prices["cache_read"] + prices["output"]
        if per_token * MAX_TOKENS_PER_FIELD > INT64_MAX:
            raise _fail(
                origin, tkey,
                f"prices too high to cost exactly: input + largest cache write + cache_read + output = "
                f"{pico_to_usd_per_mtok(per_token)} USD per million tokens; with up to "
                f"{MAX_TOKENS_PER_FIELD:,} tokens per field a message could exceed 2^63-1 pico-USD "
                f"(limit {pico_to_usd_per_mtok(INT64_MAX // MAX_TOKENS_PER_FIELD)} USD per million tokens)",
            )


def _parse_file(origin: str, doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Validate one parsed TOML document -> {name: {aliases?, patterns?, periods?, provider?, note?}}."""
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        raise _fail(origin, sorted(unknown)[0], "unknown top-level key (expected [models.<name>] tables)")
    models = doc.get("models", {})
    if not isinstance(models, dict):
        raise _fail(origin, "models", "must be a table")
    out: dict[str, dict[str, Any]] = {}
    claimed: dict[str, str] = {}
    for raw_name, raw in models.items():
        ekey = _key(raw_name)
        name = _check_name(origin, ekey, raw_name)
        if name in out:
            raise _fail(origin, ekey, "defined twice (names are case-insensitive)")
        if not isinstance(raw, dict):
            raise _fail(origin, ekey, "must be a table")
        unknown = set(raw) - _ENTRY_KEYS
        if unknown:
            allowed = ", ".join(sorted(_ENTRY_KEYS))
            raise _fail(origin, _key(raw_name, "." + sorted(unknown)[0]), f"unknown key (allowed: {allowed})")
        e: dict[str, Any] = {}
        for k in ("provider", "note"):
            if k in raw:
                if not isinstance(raw[k], str):
                    raise _fail(origin, _key(raw_name, f".{k}"), "must be a string")
                e[k] = raw[k]
        if "aliases" in raw:
            akey = _key(raw_name, ".aliases")
            e["aliases"] = [_check_name(origin, akey, a) for a in _check_str_list(origin, akey, raw["aliases"])]
        if "patterns" in raw:
            pkey = _key(raw_name, ".patterns")
            e["patterns"] = _check_str_list(origin, pkey, raw["patterns"])
            for pat in e["patterns"]:
                _check_pattern(origin, pkey, pat)
        if "periods" in raw:
            pkey = _key(raw_name, ".periods")
            if not isinstance(raw["periods"], list) or not raw["periods"]:
                raise _fail(origin, pkey, "must be a non-empty array of tables ([[models.<name>.periods]])")
            periods = [_parse_period(origin, f"{pkey}[{i}]", p) for i, p in enumerate(raw["periods"])]
            _check_overlap(origin, pkey, periods)
            e["periods"] = periods
        for k in [name, *e.get("aliases", [])]:
            if claimed.get(k, name) != name:
                msg = f"{k!r} is already used by model {claimed[k]!r} in this file"
                raise _fail(origin, _key(raw_name, ".aliases"), msg)
            claimed[k] = name
        out[name] = e
    return out


def _check_pattern(origin: str, key: str, pattern: str) -> None:
    # Validate with the engine that will run it (Rust regex: no look-around, no backreferences).
    try:
        pl.Series([""], dtype=pl.String).str.contains(pattern)
    except Exception as exc:  # noqa: BLE001 - polars raises ComputeError subclasses here
        lines = str(exc).strip().splitlines()
        raise _fail(origin, key, f"invalid regex {pattern!r}: {' '.join(lines[:4])}") from None


def _check_overlap(origin: str, key: str, periods: list[dict[str, Any]]) -> None:
    ordered = sorted(periods, key=lambda p: p["effective_from"])
    for a, b in zip(ordered, ordered[1:]):
        if a["effective_to"] is None or a["effective_to"] > b["effective_from"]:
            raise _fail(
                origin,
                key,
                f"periods overlap: the one from {a['effective_from']} "
                f"(to {a['effective_to'] or 'open end'}) and the one from {b['effective_from']}",
            )


def _utc_midnight(day: dt.date | None) -> dt.datetime | None:
    return None if day is None else dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)


def _canonical(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _canonical(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_canonical(v) for v in doc]
    if isinstance(doc, (dt.date, dt.time)):
        return {"$t": type(doc).__name__, "v": doc.isoformat()}
    return doc


def _book_paths(extra_paths: Iterable[str | os.PathLike[str]], use_env: bool) -> list[Path]:
    paths: list[Path] = []
    env = os.environ.get(ENV_VAR, "") if use_env else ""
    paths += [Path(p) for p in env.split(os.pathsep) if p.strip()]
    if isinstance(extra_paths, (str, os.PathLike)):
        extra_paths = [extra_paths]
    paths += [Path(p) for p in extra_paths]
    return paths


def _default_book_text() -> str:
    """The packaged default book (generated from genai-prices, see pricing/genai.py)."""
    return files("usage_etl").joinpath("prices/default.toml").read_text(encoding="utf-8")


def load_price_book(
    extra_paths: Iterable[str | os.PathLike[str]] = (),
    *,
    include_default: bool = True,
    use_env: bool = True,
) -> PriceBook:
    """Load the packaged price book, then override files, and validate everything.

    Order (later wins): packaged ``usage_etl/prices/default.toml``; the files named in the
    ``USAGE_ETL_PRICE_BOOK`` environment variable (``os.pathsep``-separated, i.e. colon on
    Unix); then ``extra_paths``. A later file's ``[models.<name>]`` replaces that model's
    periods, and its aliases/patterns where given (otherwise they are kept); new names add
    models. A later file's name or alias takes that key away from earlier entries.

    Raises PriceBookError naming the file and key for: unreadable file or TOML syntax, unknown
    keys, missing prices, negative or sub-pico prices, overlapping periods, bad dates, invalid
    regexes, a name or alias used twice in one file, a new model without periods.
    """
    sources: list[tuple[str, str]] = []
    if include_default:
        sources.append((DEFAULT_BOOK_NAME, _default_book_text()))
    for path in _book_paths(extra_paths, use_env):
        try:
            sources.append((str(path), path.read_text(encoding="utf-8")))
        except OSError as exc:
            raise PriceBookError(f"{path}: cannot read price book: {exc.strerror or exc}") from None
    if not sources:
        raise PriceBookError("no price book files to load")

    docs: list[Any] = []
    entries: dict[str, _Entry] = {}
    owner: dict[str, str] = {}  # lookup key (name or alias) -> model name
    for origin, text in sources:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PriceBookError(f"{origin}: invalid TOML: {exc}") from None
        docs.append(_canonical(doc))
        parsed = _parse_file(origin, doc)
        for name, raw in parsed.items():
            e = entries.get(name)
            if e is None:
                if "periods" not in raw:
                    raise _fail(origin, _key(name), "new model without [[periods]] (nothing to override)")
                e = entries[name] = _Entry(name=name, origin=origin)
            e.origin = origin
            if "periods" in raw:
                e.periods = raw["periods"]
            if "patterns" in raw:
                e.patterns = raw["patterns"]
            for k in ("provider", "note"):
                if k in raw:
                    setattr(e, k, raw[k])
            if "aliases" in raw:
                for old in e.aliases:
                    if owner.get(old) == name:
                        del owner[old]
                e.aliases = list(dict.fromkeys(raw["aliases"]))
            for k in [name, *(raw.get("aliases") or [])]:
                prev = owner.get(k)
                if prev is not None and prev != name:
                    if k == prev:
                        raise _fail(
                            origin, _key(name, ".aliases"),
                            f"{k!r} is the name of an existing model; override [models.{json.dumps(k)}] instead",
                        )
                    entries[prev].aliases.remove(k)
                owner[k] = name
        # Entries touched by this file move to the front so their patterns are tried first.
        entries = {**{n: entries[n] for n in parsed}, **{n: e for n, e in entries.items() if n not in parsed}}

    rows = [
        {**{k: v for k, v in p.items() if k in _PERIOD_SCHEMA}, "price_model": e.name,
         "effective_from": _utc_midnight(p["effective_from"]), "effective_to": _utc_midnight(p["effective_to"])}
        for e in entries.values()
        for p in e.periods
    ]
    periods = pl.DataFrame(rows or None, schema=_PERIOD_SCHEMA).sort("price_model", "effective_from")
    rates = _rates(entries.values())
    for e in entries.values():
        for p in e.periods:
            for finding in implausible_prices(e.name, e.provider, p["origin"], p["key"], p):
                warnings.warn(PriceBookWarning(finding), stacklevel=2)
    keys = sorted(owner.items())
    aliases = pl.DataFrame(
        {"key": [k for k, _ in keys], "price_model": [v for _, v in keys]},
        schema={"key": pl.String, "price_model": pl.String},
    )
    patterns = tuple((pat, e.name) for e in entries.values() for pat in e.patterns)
    # The resolved prices are hashed too, so a change in how a price is derived (a long-context
    # cache price left unstated) changes the version even when no file changed.
    resolved = [periods.drop("origin").rows(), rates.rows()]
    blob = json.dumps([docs, resolved], sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    version = hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]
    info = {
        e.name: {"aliases": tuple(e.aliases), "patterns": tuple(e.patterns), "provider": e.provider,
                 "note": e.note, "origin": e.origin}
        for e in entries.values()
    }
    return PriceBook(
        periods=periods,
        aliases=aliases,
        patterns=patterns,
        version=version,
        files=tuple(o for o, _ in sources),
        info=info,
        rates=rates,
    )


def _rates(entries: Iterable[_Entry]) -> pl.DataFrame:
    """One row per model x period x service tier x prompt-length level (`RATES_SCHEMA`)."""
    rows = []
    for e in entries:
        for p in e.periods:
            span = {"price_model": e.name, "effective_from": _utc_midnight(p["effective_from"]),
                    "effective_to": _utc_midnight(p["effective_to"])}
            for tier, prices in [(STANDARD_TIER, p), *p["service_tiers"].items()]:
                levels = [{**prices, "threshold": -1}, *prices["tiers"]]
                for lo, hi in zip(levels, [*levels[1:], None]):
                    rows.append({**span, "service_tier": tier, "prompt_above": lo["threshold"],
                                 "prompt_up_to": hi["threshold"] if hi else None, **{k: lo[k] for k in PRICE_KEYS}})
    return pl.DataFrame(rows or None, schema=RATES_SCHEMA).sort("price_model", "effective_from", "service_tier", "prompt_above")


# ----------------------------------------------------------------------------------------------
# Resolution and pricing
# ----------------------------------------------------------------------------------------------


def resolve_model(models: pl.Expr, book: PriceBook) -> pl.Expr:
    """Model names as logged -> canonical price-book name (String) or null.

    Per row, vectorized: lower-case and strip the provider prefix (specific form), then also
    strip '@…', '-v1:0', '-latest' and dated snapshot suffixes (base form). First match wins:
    specific form as name/alias, base form as name/alias, then the book's regex patterns
    (in order) against the specific form.
    """
    specific, base = _normalize_exprs(models)
    lookup = book.lookup()
    by_pattern: pl.Expr = pl.lit(None, dtype=pl.String)
    if book.patterns:
        chain: Any = pl
        for pattern, name in book.patterns:
            chain = chain.when(specific.str.contains(pattern)).then(pl.lit(name, dtype=pl.String))
        by_pattern = chain.otherwise(pl.lit(None, dtype=pl.String))
    return pl.coalesce(
        specific.replace_strict(lookup, default=None, return_dtype=pl.String),
        base.replace_strict(lookup, default=None, return_dtype=pl.String),
        by_pattern,
    )


def resolve_model_name(name: str | None, book: PriceBook) -> str | None:
    """Resolve one name with exactly the per-row rules (for the CLI and tests)."""
    out = pl.DataFrame({"m": [name]}, schema={"m": pl.String}).select(resolve_model(pl.col("m"), book))
    return out.item()


_OUTPUT_COLUMNS = ("price_model", "cost_pico_usd", "priced")
_COST_INPUTS = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_creation_1h_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
)


def price_messages(frame: pl.LazyFrame, book: PriceBook) -> pl.LazyFrame:
    """Add ``price_model`` (String), ``cost_pico_usd`` (Int64) and ``priced`` (Boolean).

    Input: the canonical message frame (docs/architecture.md, "Canonical frame") with ``cache_creation_1h_input_tokens``;
    token fields in tokens, at most ``MAX_TOKENS_PER_FIELD`` each (as normalization guarantees).
    An optional ``service_tier`` column (String, as reported; see ``service_tier``) picks the
    tier's own prices; without it every message is ``standard``.
    A cost beyond Int64 pico-USD raises ``polars.exceptions.InvalidOperationError`` at collect
    time; it is never wrapped to a wrong value.
    The period used is the one with ``effective_from <= created_at < effective_to``; within it,
    the service tier's level whose prompt range holds input + cache writes + cache reads.
    ``cost_pico_usd`` is null and ``priced`` False when the model is unknown, has no period in
    effect at ``created_at``, or the period has no prices for the served tier; an unknown model
    is never priced at 0 and a tier is never priced at the standard rate. Row count and order
    are preserved; other columns pass through (existing output columns are replaced).
    """
    base = frame.drop(list(_OUTPUT_COLUMNS), strict=False).with_row_index(_ROW)
    has_tier = "service_tier" in base.collect_schema().names()
    tier = canonical_service_tier(pl.col("service_tier")) if has_tier else pl.lit(STANDARD_TIER)
    # Resolve each distinct name once; the regex work then scales with models, not messages.
    names = base.select("model").unique().with_columns(price_model=resolve_model(pl.col("model"), book))
    rates = book.rates.lazy().select(
        "price_model",
        pl.col("service_tier").alias(_TIER),
        pl.col("effective_from").alias(_FROM),
        pl.col("effective_to").alias(_TO),
        pl.col("prompt_above").alias(_ABOVE),
        pl.col("prompt_up_to").alias(_UP_TO),
        *[pl.col(k).alias(_p(k)) for k in PRICE_KEYS],
    )

    cc = pl.col("cache_creation_input_tokens")
    c1h = pl.col("cache_creation_1h_input_tokens")
    prompt = pl.col("input_tokens") + cc + pl.col("cache_read_input_tokens")
    # Strictly above a threshold: the whole request moves to that level (exactly at it: the one below).
    in_level = (prompt > pl.col(_ABOVE)) & (pl.col(_UP_TO).is_null() | (prompt <= pl.col(_UP_TO)))

    def tokens(expr: pl.Expr) -> pl.Expr:
        # Int128 products and sum (tokens x pico-USD per token): exact far beyond Int64.
        return expr.cast(pl.Int128)

    cost = (
        tokens(pl.col("input_tokens")) * pl.col(_p("input"))
        + tokens(cc - c1h) * pl.col(_p("cache_write_5m"))
        + tokens(c1h) * pl.col(_p("cache_write_1h"))
        + tokens(pl.col("cache_read_input_tokens")) * pl.col(_p("cache_read"))
        + tokens(pl.col("output_tokens")) * pl.col(_p("output"))
    )
    in_effect = (pl.col(_FROM) <= pl.col("created_at")) & (
        pl.col(_TO).is_null() | (pl.col("created_at") < pl.col(_TO))
    )

    with_model = base.join(names, on="model", how="left", nulls_equal=True, validate="m:1", maintain_order="left")
    # Expand each message to its model's rates for its tier (a handful) and keep the one in
    # effect. Periods never overlap and levels partition the prompt range (checked at load), so
    # at most one survives; validate="1:1" below enforces it. Unlike join_asof, this needs no
    # sort of the message frame and no re-sort to restore order.
    costs = (
        with_model.select(_ROW, "price_model", "created_at", *_COST_INPUTS, tier.alias(_TIER))
        .join(rates, on=["price_model", _TIER], how="inner")
        .filter(in_effect & in_level)
        # Strict cast: a cost beyond Int64 raises (InvalidOperationError naming cost_pico_usd)
        # instead of wrapping. Normalized frames never get here (MAX_TOKENS_PER_FIELD and the
        # loader's price check keep every cost within Int64).
        .select(_ROW, cost_pico_usd=cost)
        .with_columns(pl.col("cost_pico_usd").cast(pl.Int64, strict=True))
    )
    return (
        with_model.join(costs, on=_ROW, how="left", validate="1:1", maintain_order="left")
        .with_columns(priced=pl.col("cost_pico_usd").is_not_null())
        .drop(_ROW)
    )
