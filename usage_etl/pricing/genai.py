"""Convert the genai-prices package's data into a price book file (the shipped default book).

genai-prices (PyPI, maintained by the Pydantic team, pinned in uv.lock) ships USD per million
tokens as Decimals, dated price changes (`ConditionalPrice` + `StartDateConstraint`, UTC days),
long-context tiers (`TieredPrices`: every token of a request whose whole input exceeds a tier's
start is charged at the tier's price) and request variants (`price_variants`: OpenAI
`service_tier` flex / priority / fast, `processing: batch` for the batch APIs).

Mapping (genai-prices price key -> book price, USD per million tokens, exact):
  input_mtok -> input, output_mtok -> output                      (both required, else skipped)
  cache_read_mtok -> cache_read                                   (default: input)
  cache_write_mtok -> cache_write_5m                              (default: input)
  cache_write_1h_mtok -> cache_write_1h                           (default: see `_one_hour`)
  TieredPrices -> long_context tiers (one per distinct start; a key without a tier at a start
                  keeps its price from the level below, as genai-prices does)
  ConditionalPrice dates -> periods; variant start dates split periods too
  variant {service_tier: X} -> service_tiers.X; {processing: batch} -> service_tiers.batch
Ignored: per-request prices (web searches, storage), audio/image/video/document units (the
canonical frame has text tokens only), `speed: fast` variants (not reported in usage).
Skipped models (with a reason): no input or output price, time-of-day prices,
a name already taken by an earlier model. AND match clauses (no Rust-regex equivalent) are
dropped: such a model then matches by name and its other clauses only (noted).

Names: the canonical name is genai-prices' model id, lower-cased, provider prefix and a
trailing `-latest` removed. `equals` clauses become aliases; `starts_with`, `ends_with`,
`contains` and `regex` clauses become patterns, tried in genai-prices' model order (so the
first model that matches wins, as in genai-prices).

genai-prices gives no start date for a model's first price (it applies to all earlier usage).
`usage_etl/prices/verified.toml` (hand-verified, see docs/pricing.md) adds launch dates and
replaces prices where genai-prices is wrong: its periods win up to the end of the last one;
genai-prices' periods continue from there (or from `launch`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from importlib.metadata import version as package_version
from importlib.resources import files
from typing import Any

import polars as pl

from usage_etl.pricing.book import PRICE_KEYS, normalize_model_name

__all__ = ["DEFAULT_PROVIDERS", "EPOCH", "GenaiImport", "build_default_book", "convert_genai_prices", "genai_data_digest"]

# First-party providers whose model names do not collide (their own models only). Names are
# resolved without the provider, so resellers of the same models (aws, azure, openrouter,
# together, ...) are left out: add them with an override file if their prices differ.
DEFAULT_PROVIDERS = ("anthropic", "openai", "google", "x-ai", "mistral", "deepseek", "cohere", "moonshotai")
EPOCH = dt.date(1970, 1, 1)  # start of a first price that has no start date
VERIFIED_NAME = "usage_etl/prices/verified.toml"
_STANDARD_CONTEXT: dict[str, str] = {}
_BATCH = ("processing", "batch")
_SIX = Decimal("0.000001")
# Rust regex and Python re read these escapes identically.
_META = set(".^$*+?()[]{}|\\")


@dataclass
class GenaiImport:
    """Result of a conversion: the TOML text, skipped models ((provider/model, reason)) and
    the genai-prices version and data digest it was built from."""

    text: str
    skipped: list[tuple[str, str]] = field(default_factory=list)
    version: str = ""
    digest: str = ""
    models: int = 0


class _Skip(Exception):
    pass


def genai_data_digest() -> str:
    """First 12 hex digits of sha256 over the installed genai_prices/data.py (the price data)."""
    data = files("genai_prices").joinpath("data.py").read_bytes()
    return hashlib.sha256(data).hexdigest()[:12]


def _escape(text: str) -> str:
    return "".join("\\" + c if c in _META else c for c in text)


def _match_parts(clause: Any, dropped: list[str]) -> tuple[list[str], list[str]]:
    """A genai-prices match clause -> (aliases, patterns). An AND clause (genai-prices uses it
    with a negative look-ahead, which Rust regex lacks) is dropped and recorded in `dropped`:
    the model then matches by its name, its other clauses and the snapshot-suffix rule only."""
    name = type(clause).__name__
    if name == "ClauseOr":
        aliases: list[str] = []
        patterns: list[str] = []
        for sub in clause.or_:
            a, p = _match_parts(sub, dropped)
            aliases += a
            patterns += p
        return aliases, patterns
    if name == "ClauseEquals":
        return [clause.equals.lower()], []
    if name == "ClauseStartsWith":
        return [], ["^" + _escape(clause.starts_with.lower())]
    if name == "ClauseEndsWith":
        return [], [_escape(clause.ends_with.lower()) + "$"]
    if name == "ClauseContains":
        return [], [_escape(clause.contains.lower())]
    if name == "ClauseRegex" and _rust_regex(clause.regex):
        return [], [clause.regex]
    dropped.append(repr(clause))
    return [], []


def _rust_regex(pattern: str) -> bool:
    try:
        pl.Series([""], dtype=pl.String).str.contains(pattern)
    except Exception:  # noqa: BLE001 - polars raises ComputeError subclasses for a bad regex
        return False
    return True


def _price(mp: Any, key: str) -> Any:
    return getattr(mp, key, None)


def _at(value: Any, threshold: int | None) -> Decimal | None:
    """The price of one key for prompts just above `threshold` (None: the base level)."""
    if value is None or isinstance(value, Decimal):
        return value
    price = value.base
    if threshold is not None:
        for tier in value.tiers:  # sorted ascending by start
            if tier.start <= threshold:
                price = tier.price
    return price


def _one_hour(provider: str, input_: Decimal, write_5m: Decimal | None, write_1h: Decimal | None) -> tuple[Decimal, str | None]:
    """1-hour cache write price when genai-prices lists none.

    genai-prices then charges 1-hour writes at the 5-minute price. Anthropic publishes 1-hour
    writes at 2x base input, so an Anthropic model with priced cache writes gets 2x input (noted);
    other providers keep genai-prices' behaviour (no separate 1-hour price published)."""
    if write_1h is not None:
        return write_1h, None
    if provider == "anthropic" and write_5m is not None:
        return 2 * input_, "1-hour cache write not listed by genai-prices; 2 x input (Anthropic's published rule)"
    return (write_5m if write_5m is not None else input_), None


def _level(mp: Any, provider: str, threshold: int | None, notes: set[str]) -> dict[str, Decimal]:
    inp = _at(_price(mp, "input_mtok"), threshold)
    out = _at(_price(mp, "output_mtok"), threshold)
    if inp is None or out is None:
        raise _Skip("no price: missing " + ("input_mtok" if inp is None else "output_mtok"))
    w5 = _at(_price(mp, "cache_write_mtok"), threshold)
    w1, note = _one_hour(provider, inp, w5, _at(_price(mp, "cache_write_1h_mtok"), threshold))
    if note:
        notes.add(note)
    read = _at(_price(mp, "cache_read_mtok"), threshold)
    prices = {"input": inp, "output": out, "cache_write_5m": w5 if w5 is not None else inp,
              "cache_write_1h": w1, "cache_read": read if read is not None else inp}
    for k, v in prices.items():
        if v != v.quantize(_SIX):
            raise _Skip(f"bad price: {k} {v} has more than 6 decimals")
    return prices


def _prices(mp: Any, provider: str, notes: set[str]) -> dict[str, Any]:
    """A genai-prices ModelPrice -> {5 prices, tiers: [{threshold, 5 prices}]}."""
    starts = sorted({t.start for k in ("input_mtok", "output_mtok", "cache_write_mtok", "cache_write_1h_mtok", "cache_read_mtok")
                     if (v := _price(mp, k)) is not None and not isinstance(v, Decimal) for t in v.tiers})
    base = _level(mp, provider, None, notes)
    return {**base, "tiers": [{"threshold": s, **_level(mp, provider, s, notes)} for s in starts]}


def _active(constraint: Any, day: dt.date) -> bool:
    if constraint is None:
        return True
    if type(constraint).__name__ != "StartDateConstraint":
        raise _Skip(f"unsupported: {type(constraint).__name__} (time-of-day prices)")
    return day >= constraint.start_date


def _standard_at(model: Any, day: dt.date) -> Any:
    # genai-prices' rule: the last conditional price whose constraint holds, else the first.
    if not isinstance(model.prices, list):
        return model.prices
    for cp in reversed(model.prices):
        if _active(cp.constraint, day):
            return cp.prices
    return model.prices[0].prices


def _tier_name(when: dict[str, str]) -> str | None:
    if len(when) != 1:
        return None
    ((key, value),) = when.items()
    if (key, value) == _BATCH:
        return "batch"
    if key == "service_tier" and value != "default":
        return value.lower()
    return None


def _tiers_at(model: Any, standard: Any, day: dt.date) -> dict[str, Any]:
    """Service tier -> merged ModelPrice in effect on `day` (first matching variant wins per key)."""
    out: dict[str, dict[str, Any]] = {}
    for v in model.price_variants or ():
        name = _tier_name(v.when)
        if name is None or not _active(v.constraint, day):
            continue
        merged = out.setdefault(name, {})
        for key, price in v.prices.__dict__.items():
            if price is not None:
                merged.setdefault(key, price)
    result = {}
    for name, overrides in out.items():
        mp = type(standard)(**{**{k: v for k, v in standard.__dict__.items() if v is not None}, **overrides})
        result[name] = mp
    return result


def _boundaries(model: Any) -> list[dt.date]:
    days = set()
    for cp in model.prices if isinstance(model.prices, list) else ():
        if cp.constraint is not None:
            _active(cp.constraint, EPOCH)  # raises for unsupported constraints
            days.add(cp.constraint.start_date)
    for v in model.price_variants or ():
        if v.constraint is not None and _tier_name(v.when) is not None:
            _active(v.constraint, EPOCH)
            days.add(v.constraint.start_date)
    return sorted(days)


def _periods(model: Any, provider: str, notes: set[str]) -> list[dict[str, Any]]:
    """Dated periods [from, to) of one model, from EPOCH; consecutive equal periods merged."""
    starts = [EPOCH, *[d for d in _boundaries(model) if d > EPOCH]]
    periods: list[dict[str, Any]] = []
    for i, day in enumerate(starts):
        standard = _standard_at(model, day)
        p = _prices(standard, provider, notes)
        p["service_tiers"] = {n: _prices(mp, provider, notes) for n, mp in sorted(_tiers_at(model, standard, day).items())}
        p["effective_from"] = day
        p["effective_to"] = starts[i + 1] if i + 1 < len(starts) else None
        if periods and _same(periods[-1], p):
            periods[-1]["effective_to"] = p["effective_to"]
        else:
            periods.append(p)
    return periods


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = [*PRICE_KEYS, "tiers", "service_tiers"]
    return all(a[k] == b[k] for k in keys)


def _canonical(model_id: str) -> str:
    specific, _ = normalize_model_name(model_id)
    return specific.removesuffix("-latest")


def _usable(name: str) -> bool:
    return bool(name) and "/" not in name and not any(c.isspace() for c in name)


def _apply_verified(name: str, periods: list[dict[str, Any]], fix: dict[str, Any]) -> list[dict[str, Any]]:
    """Hand-verified periods win up to the end of their last one (all of history when it is
    open); genai-prices' periods continue from there, or from `launch`."""
    own = [dict(p) for p in fix.get("periods", [])]
    for p in own:
        p.setdefault("tiers", None)
    if own and own[-1].get("effective_to") is None:
        return own
    start = own[-1]["effective_to"] if own else fix.get("launch", EPOCH)
    kept = []
    for p in periods:
        if p["effective_to"] is not None and p["effective_to"] <= start:
            continue
        kept.append({**p, "effective_from": max(p["effective_from"], start)})
    if not kept:
        raise ValueError(f"{VERIFIED_NAME}: {name}: no genai-prices period is left after {start}")
    return own + kept


def load_verified(text: str | None = None) -> dict[str, dict[str, Any]]:
    """Parse verified.toml: {model: {launch?, periods?, note?, source?}} (periods in book format)."""
    if text is None:
        text = files("usage_etl").joinpath("prices/verified.toml").read_text(encoding="utf-8")
    doc = tomllib.loads(text)
    models = doc.get("models", {})
    for name, fix in models.items():
        unknown = set(fix) - {"launch", "periods", "note", "source"}
        if unknown:
            raise ValueError(f"{VERIFIED_NAME}: models.{name}.{sorted(unknown)[0]}: unknown key")
        for i, p in enumerate(fix.get("periods", [])[:-1]):
            if p.get("effective_to") is None:
                raise ValueError(f"{VERIFIED_NAME}: models.{name}.periods[{i}]: only the last period may be open")
    return models


def convert_genai_prices(
    providers: Sequence[str] = DEFAULT_PROVIDERS,
    *,
    verified: dict[str, dict[str, Any]] | None = None,
    data: Iterable[Any] | None = None,
) -> GenaiImport:
    """genai-prices data (installed package, or `data` = a list of its Provider objects) -> a
    price book file covering `providers`, in that order, with `verified` corrections applied.

    Raises ValueError for an unknown provider id or a correction naming a model that was not
    imported (so a stale correction cannot linger silently).
    """
    if data is None:
        from genai_prices.data import providers as data
    by_id = {p.id: p for p in data}
    unknown = [p for p in providers if p not in by_id]
    if unknown:
        raise ValueError(f"unknown genai-prices provider {unknown[0]!r} (known: {', '.join(sorted(by_id))})")
    verified = verified or {}
    ver = package_version("genai-prices")
    result = GenaiImport(text="", version=ver, digest=genai_data_digest())
    taken: set[str] = set()
    seen: list[Any] = []  # models imported so far, in order (genai-prices: first match wins)
    entries: list[dict[str, Any]] = []
    for pid in providers:
        provider = by_id[pid]
        for model in provider.models:
            ref = f"{pid}/{model.id}"
            name = _canonical(model.id)
            notes: set[str] = set()
            try:
                if not _usable(name):
                    raise _Skip(f"bad name: {model.id!r}")
                if name in taken:
                    raise _Skip(f"duplicate: the name {name!r} is taken by an earlier model")
                if earlier := next((m for m in seen if m.is_match(name)), None):
                    raise _Skip(f"duplicate: genai-prices matches {name!r} to the earlier model {earlier.id!r}")
                dropped: list[str] = []
                raw_aliases, patterns = _match_parts(model.match, dropped)
                if dropped:
                    notes.add("match narrowed: AND clause not representable, dropped")
                periods = _periods(model, pid, notes)
            except _Skip as exc:
                result.skipped.append((ref, str(exc)))
                continue
            aliases = []
            for a in raw_aliases:
                a = normalize_model_name(a)[0]
                # An earlier model that matches the alias would win in genai-prices: leave it there.
                if _usable(a) and a != name and a not in taken and a not in aliases and not any(m.is_match(a) for m in seen):
                    aliases.append(a)
            taken.update([name, *aliases])
            seen.append(model)
            fix = verified.get(name)
            if fix is not None:
                periods = _apply_verified(name, periods, fix)
            entries.append({
                "name": name, "provider": pid, "aliases": aliases, "patterns": patterns, "periods": periods,
                "note": "; ".join(filter(None, [f"genai-prices {pid}/{model.id}", *sorted(notes),
                                                (fix or {}).get("note"), model.price_comments])),
                "source": (fix or {}).get("source"), "url": (provider.pricing_urls or [None])[0],
            })
    missing = sorted(set(verified) - {e["name"] for e in entries})
    if missing:
        raise ValueError(f"{VERIFIED_NAME}: {missing[0]!r} is not a model imported from genai-prices {ver}")
    result.models = len(entries)
    result.text = _render(entries, result, providers)
    return result


def build_default_book() -> GenaiImport:
    """The shipped default book: DEFAULT_PROVIDERS with verified.toml applied."""
    return convert_genai_prices(DEFAULT_PROVIDERS, verified=load_verified())


# ----------------------------------------------------------------------------------------------
# TOML rendering (every value this module writes: str, int, Decimal, date, list, inline table)
# ----------------------------------------------------------------------------------------------


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, Decimal):
        return format(v.normalize(), "f")
    if isinstance(v, (int, float)):
        return repr(v) if isinstance(v, float) else str(v)
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot render {v!r}")


def _level_table(p: dict[str, Any]) -> dict[str, Any]:
    t = {k: p[k] for k in PRICE_KEYS}
    if p.get("tiers"):
        t["long_context"] = [{"threshold": x["threshold"], **{k: x[k] for k in PRICE_KEYS}} for x in p["tiers"]]
    return t


def _render(entries: list[dict[str, Any]], result: GenaiImport, providers: Sequence[str]) -> str:
    out = [
        "# GENERATED FILE: do not edit. Rebuild with `usage-etl prices build-default` (docs/pricing.md).",
        f"# Source: genai-prices {result.version} (data digest {result.digest}), providers: {', '.join(providers)};",
        f"# corrections and launch dates from {VERIFIED_NAME}.",
        f"# {len(entries)} models, {len(result.skipped)} skipped. Prices in USD per million tokens.",
        "",
    ]
    for e in entries:
        key = json.dumps(e["name"])
        out.append(f"[models.{key}]")
        out.append(f"provider = {_value(e['provider'])}")
        if e["aliases"]:
            out.append(f"aliases = {_value(e['aliases'])}")
        if e["patterns"]:
            out.append("patterns = [" + ", ".join("'" + p + "'" if "'" not in p else _value(p) for p in e["patterns"]) + "]")
        out.append(f"note = {_value(e['note'])}")
        for p in e["periods"]:
            out.append("")
            out.append(f"[[models.{key}.periods]]")
            if p.get("tiers") is None:
                # A hand-verified period (verified.toml): written as given, in book format.
                for k, v in p.items():
                    if k != "tiers":
                        out.append(f"{k} = {_value(v)}")
                continue
            out.append(f"effective_from = {_value(p['effective_from'])}")
            if p["effective_to"] is not None:
                out.append(f"effective_to = {_value(p['effective_to'])}")
            for k, v in _level_table(p).items():
                out.append(f"{k} = {_value(v)}")
            for name, st in p["service_tiers"].items():
                out.append(f"service_tiers.{name} = {_value(_level_table(st))}")
            src = e["source"] or f"genai-prices {result.version}" + (f" ({e['url']})" if e["url"] else "")
            out.append(f"source = {_value(src)}")
        out.append("")
    return "\n".join(out)
