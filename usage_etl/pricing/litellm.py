"""Convert LiteLLM's ``model_prices_and_context_window.json`` into a price book file.

LiteLLM stores USD **per token** as floats (``3e-06``); the price book stores USD per million
tokens with at most 6 decimals. Each float is read through ``repr`` into a Decimal and
multiplied by 10^6, so ``3e-06`` becomes exactly ``3`` and ``1.25e-07`` exactly ``0.125``.

Fields used (per model key):
  mode == "chat" (others skipped), litellm_provider,
  input_cost_per_token, output_cost_per_token                     (required)
  cache_creation_input_token_cost                                 (5-minute write; default: input)
  cache_creation_input_token_cost_above_1hr                       (1-hour write; default: 5-minute)
  cache_read_input_token_cost                                     (default: input, i.e. no discount)
  <any of the above>_above_<N>k_tokens                            (long-context tier, threshold N*1000)

A tier cache price LiteLLM does not list (e.g. ``cache_creation_input_token_cost_above_1hr_above_200k_tokens``
for Claude Sonnet 4.5) is derived as base price x tier input / base input, Anthropic's published
rule (cache multipliers apply to the long-context input rate): Sonnet 4.5's 1-hour write above
200k is 6 x 6/3 = 12 USD per million tokens, not the base 6. Each derivation is stated in the
entry's note, and the output states every tier price explicitly.

LiteLLM carries no dates, so every imported model gets one open period from ``effective_from``.
Keys are grouped by the same name normalization the pricer uses (provider prefix and snapshot
suffix stripped); one entry per group, preferring the first-party provider's key. A snapshot or
provider variant with different prices becomes its own entry under its specific name when
that name is free, otherwise it is skipped with a reason.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

from usage_etl.pricing.book import PRICE_KEYS, normalize_model_name

__all__ = ["import_litellm", "LITELLM_SOURCE"]

LITELLM_SOURCE = "https://github.com/BerriAI/litellm/blob/main/model_prices_and_context_window.json"
_FIRST_PARTY = {"anthropic", "openai"}
_SIX_PLACES = Decimal("0.000001")

# LiteLLM field -> price book key.
_FIELDS = {
    "input_cost_per_token": "input",
    "output_cost_per_token": "output",
    "cache_creation_input_token_cost": "cache_write_5m",
    "cache_creation_input_token_cost_above_1hr": "cache_write_1h",
    "cache_read_input_token_cost": "cache_read",
}
_TIER_RE = re.compile(r"^(?P<field>[a-z0-9_]+?)_above_(?P<k>\d+)k_tokens$")


class _Skip(Exception):
    pass


def _per_mtok(fld: str, value: Any, notes: list[str]) -> Decimal:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise _Skip(f"bad price: {fld} = {value!r} is not a number")
    if value < 0:
        raise _Skip(f"bad price: {fld} = {value!r} is negative")
    d = Decimal(repr(value)) * 1_000_000
    q = d.quantize(_SIX_PLACES, rounding=ROUND_HALF_EVEN)
    if q != d:
        # Finer than a pico-USD per token is float noise in practice; keep a trace of it.
        notes.append(f"{fld} {value!r} rounded to {_fmt(q)} USD/MTok")
    return q


def _fmt(d: Decimal) -> str:
    return format(d.normalize(), "f")


def _prices(spec: dict[str, Any]) -> tuple[dict[str, Decimal], dict[str, Any] | None, list[str]]:
    notes: list[str] = []
    for req in ("input_cost_per_token", "output_cost_per_token"):
        if spec.get(req) is None:
            raise _Skip(f"no price: missing {req}")
    if "tiered_pricing" in spec:
        raise _Skip("unsupported: tiered_pricing")
    reasoning = spec.get("output_cost_per_reasoning_token")
    if reasoning is not None and reasoning != spec["output_cost_per_token"]:
        # Reasoning is billed inside output here; a separate price cannot be represented.
        raise _Skip("unsupported: output_cost_per_reasoning_token differs from output_cost_per_token")
    base = {key: _per_mtok(fld, spec[fld], notes) for fld, key in _FIELDS.items() if spec.get(fld) is not None}
    # OpenAI-style: no cache-write surcharge; no cache discount when none is listed.
    if "cache_write_5m" in base and "cache_write_1h" not in base:
        # Priced cache writes but no 1-hour figure: flag it, 1-hour writes may be underpriced.
        notes.append("no 1-hour cache write price listed; the 5-minute price is used")
    base.setdefault("cache_write_5m", base["input"])
    base.setdefault("cache_write_1h", base["cache_write_5m"])
    base.setdefault("cache_read", base["input"])

    tiers: dict[int, dict[str, Decimal]] = {}
    for fld, value in spec.items():
        m = _TIER_RE.match(fld)
        if not m or value is None or m["field"] not in _FIELDS:
            continue
        tiers.setdefault(int(m["k"]) * 1000, {})[_FIELDS[m["field"]]] = _per_mtok(fld, value, notes)
    if len(tiers) > 1:
        raise _Skip(f"unsupported: several long-context thresholds {sorted(tiers)}")
    long_context = None
    if tiers:
        ((threshold, tier),) = tiers.items()
        if "input" not in tier or "output" not in tier:
            raise _Skip(f"unsupported: long-context tier above {threshold} lacks input or output price")
        long_context = {"threshold": threshold, **tier, **_derived_tier_prices(threshold, base, tier, notes)}
    return base, long_context, notes


def _derived_tier_prices(
    threshold: int, base: dict[str, Decimal], tier: dict[str, Decimal], notes: list[str]
) -> dict[str, Decimal]:
    """Tier prices LiteLLM does not list (USD per million tokens): base price x tier input / base
    input, rounded half-even to 6 decimals (noted when rounded). Every derivation is noted."""
    missing = [k for k in PRICE_KEYS if k not in tier]
    if not missing:
        return {}
    if base["input"] == 0:
        raise _Skip(f"unsupported: long-context tier above {threshold} lacks {', '.join(missing)} and base input is 0")
    ratio = f"{_fmt(tier['input'])}/{_fmt(base['input'])}"
    out: dict[str, Decimal] = {}
    for k in missing:
        exact = base[k] * tier["input"] / base["input"]
        out[k] = exact.quantize(_SIX_PLACES, rounding=ROUND_HALF_EVEN)
        rounded = "" if out[k] == exact else " (rounded)"
        notes.append(
            f"above {threshold} tokens {k} not listed; derived as base {_fmt(base[k])} x tier input ratio "
            f"{ratio} = {_fmt(out[k])} USD/MTok{rounded}"
        )
    return out


def _signature(base: dict[str, Decimal], lc: dict[str, Any] | None) -> tuple[Any, ...]:
    return tuple(base[k] for k in PRICE_KEYS), tuple(sorted((lc or {}).items()))


def _preference(item: tuple[int, str, dict[str, Any]]) -> tuple[Any, ...]:
    order, key, spec = item
    specific, base = normalize_model_name(key)
    return (
        spec.get("litellm_provider") not in _FIRST_PARTY,
        "/" in key,
        specific != base,
        order,
    )


def _toml_str(s: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes when non-ASCII is left as is.
    return json.dumps(s, ensure_ascii=False)


def import_litellm(
    path: str | Path,
    *,
    effective_from: dt.date = dt.date(1970, 1, 1),
    source_date: dt.date | None = None,
    source: str = LITELLM_SOURCE,
) -> tuple[str, list[tuple[str, str]]]:
    """Read a LiteLLM price JSON and return ``(toml_text, skipped)``.

    ``toml_text`` is a price book file (see docs/pricing.md) with one entry per imported model,
    each with one open period from ``effective_from`` (LiteLLM has no price history, so the
    default applies today's prices to all history: pass the file's date to leave older usage
    unpriced). ``source_date`` defaults to today. ``skipped`` lists ``(litellm_key, reason)``
    where reason is ``"<category>: <detail>"`` (categories: not chat, no price, bad price,
    unsupported, bad name, duplicate, conflict).

    Raises ValueError when the file is not a JSON object.
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object keyed by model name")
    source_date = source_date or dt.date.today()

    skipped: list[tuple[str, str]] = []
    groups: dict[str, list[tuple[int, str, dict[str, Any]]]] = {}
    for order, (key, spec) in enumerate(data.items()):
        if not isinstance(spec, dict):
            skipped.append((key, "not chat: not a model object"))
            continue
        mode = spec.get("mode")
        if mode != "chat":
            skipped.append((key, f"not chat: mode={mode!r}"))
            continue
        specific, base = normalize_model_name(key)
        if not specific or any(c.isspace() for c in specific):
            skipped.append((key, "bad name: empty or whitespace after normalization"))
            continue
        groups.setdefault(base, []).append((order, key, spec))

    entries: dict[str, dict[str, Any]] = {}
    for base_name, members in groups.items():
        for order, key, spec in sorted(members, key=_preference):
            try:
                prices, lc, notes = _prices(spec)
            except _Skip as exc:
                skipped.append((key, str(exc)))
                continue
            sig = _signature(prices, lc)
            specific, _ = normalize_model_name(key)
            head = entries.get(base_name)
            if head is None:
                name = base_name
            elif head["sig"] == sig:
                skipped.append((key, f"duplicate: same prices as {base_name!r}, which its name resolves to"))
                continue
            else:
                name = specific
                other = entries.get(name)
                if other is not None:
                    if other["sig"] == sig:
                        reason = f"duplicate: same prices as the entry {name!r} (from {other['key']!r})"
                    else:
                        reason = (
                            f"conflict: prices differ from the entry {name!r} (from {other['key']!r}), which was kept"
                        )
                    skipped.append((key, reason))
                    continue
            entries[name] = {
                "key": key,
                "provider": spec.get("litellm_provider"),
                "prices": prices,
                "long_context": lc,
                "notes": notes,
                "sig": sig,
            }

    return _render(entries, skipped, path, effective_from, source_date, source), skipped


def _render(
    entries: dict[str, dict[str, Any]],
    skipped: list[tuple[str, str]],
    path: str | Path,
    effective_from: dt.date,
    source_date: dt.date,
    source: str,
) -> str:
    out = [
        f"# Generated by `usage-etl prices import-litellm` from {Path(path).name}.",
        f"# {len(entries)} models imported, {len(skipped)} keys skipped.",
        "# LiteLLM publishes USD per token; figures here are USD per million tokens (exact decimal",
        "# conversion). Defaults where LiteLLM lists no value: cache_write_5m = input,",
        "# cache_write_1h = cache_write_5m, cache_read = input; a long-context tier price not",
        "# listed = base price x tier input / base input (noted per entry). LiteLLM has no price",
        f"# history: every period starts on {effective_from.isoformat()}.",
        "",
    ]
    for name, e in sorted(entries.items()):
        key = _toml_str(name)
        out.append(f"[models.{key}]")
        if e["provider"]:
            out.append(f"provider = {_toml_str(str(e['provider']))}")
        out.append(f"note = {_toml_str('LiteLLM key ' + e['key'] + ''.join('; ' + n for n in e['notes']))}")
        out.append("")
        out.append(f"[[models.{key}.periods]]")
        out.append(f"effective_from = {effective_from.isoformat()}")
        for k in PRICE_KEYS:
            out.append(f"{k} = {_fmt(e['prices'][k])}")
        lc = e["long_context"]
        if lc:
            parts = [f"threshold = {lc['threshold']}"] + [f"{k} = {_fmt(lc[k])}" for k in PRICE_KEYS]
            out.append("long_context = { " + ", ".join(parts) + " }")
        out.append(f"source = {_toml_str(source)}")
        out.append(f"source_date = {source_date.isoformat()}")
        out.append("")
    return "\n".join(out)
