"""The service tier a provider served a request at, as one canonical name per row.

Providers report it in the response: OpenAI `service_tier` in chat completions and responses
payloads (`default`, `flex`, `priority`, `scale`; `auto` when the request asked for automatic
choice and an old API version echoed it), Anthropic `usage.service_tier` (`standard`,
`priority`, `batch`). Both spellings of the ordinary tier become `standard`:

| reported (trimmed, any case) | canonical |
|---|---|
| null, "", `default`, `standard`, `auto`, `standard_only` | `standard` |
| anything else, e.g. `flex`, `priority`, `batch`, `scale` | lower-cased as reported |

A tier is priced only with prices of its own (a price book period's `service_tiers`); the
standard prices are never applied to another tier (see docs/pricing.md).
"""

from __future__ import annotations

import re

import polars as pl

STANDARD_TIER = "standard"
SERVICE_TIER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_STANDARD_SPELLINGS = ["", "default", "standard", "auto", "standard_only"]


def canonical_service_tier(reported: pl.Expr) -> pl.Expr:
    """Reported service tier (String, nullable) -> canonical tier name (String, never null)."""
    v = reported.str.strip_chars().str.to_lowercase().fill_null("")
    return v.replace(_STANDARD_SPELLINGS, STANDARD_TIER)  # keeps the input's name
