"""The canonical message frame: the contract between sources, normalize, pricing and aggregate.

One row per message after normalization (docs/architecture.md, "Canonical frame"). Every token
column is Int64 tokens, >= 0; `paid_amount` is in the source's own currency or credits.
"""

from __future__ import annotations

import polars as pl

TOKEN_COLUMNS = [
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_creation_1h_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
    "reasoning_tokens",
]

CANONICAL_SCHEMA: dict[str, pl.DataType] = {
    "message_id": pl.String(),
    "user_id": pl.String(),
    "conversation_id": pl.String(),
    "agent_id": pl.String(),
    "model": pl.String(),
    "created_at": pl.Datetime("us", "UTC"),
    "status": pl.String(),
    **{c: pl.Int64() for c in TOKEN_COLUMNS},
    "paid_amount": pl.Float64(),
}

# Breakdown dimensions ride along in the frame as String columns named dim_<name>.
DIMENSION_PREFIX = "dim_"

# Sanity bound on every token field of one message (tokens). 10^9 is 100x the largest context
# window on offer (10M tokens). With it, one message costs at most 10^9 x (sum of its prices in
# pico-USD per token); the price-book loader keeps that within Int64 (a price sum up to ~$9,223
# per million tokens; the shipped book's largest is o1-pro at $1,050, 8.8x headroom).
MAX_TOKENS_PER_FIELD = 10**9
