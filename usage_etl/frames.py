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

# Who, when and how of a message: the same columns in the raw frame and the canonical frame.
KEY_SCHEMA: dict[str, pl.DataType] = {
    "message_id": pl.String(),
    "user_id": pl.String(),
    "conversation_id": pl.String(),
    "agent_id": pl.String(),
    "model": pl.String(),
    "created_at": pl.Datetime("us", "UTC"),
    "status": pl.String(),
}

CANONICAL_SCHEMA: dict[str, pl.DataType] = {
    **KEY_SCHEMA,
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

# Text keys (user, conversation, agent, model, breakdown values) are trimmed of these characters
# (the same set in SQL: checks/runner.py), and a blank key is missing.
WHITESPACE = " \t\n\r\x0b\x0c"

# Longest text key kept, in UTF-8 bytes. A summary primary key holds up to two of them (user and
# model, or user and a breakdown value) plus a dimension name (63 bytes) and the period: 2 x 512 +
# ~100 bytes stays well under PostgreSQL's btree entry limit (about 2,700 bytes).
MAX_KEY_BYTES = 512

# Largest paid amount of one message (the source's unit). Sums stay exact in Int64 millionths and
# within numeric(18, 6).
MAX_PAID_AMOUNT = 10**9

# Per user and day, the largest total cost (pico-USD) and paid amount (millionths) kept: a month of
# 31 such days still fits Int64 (cost: about $297,000 a day) and numeric(18, 6) (paid).
MAX_COST_PICO_PER_USER_DAY = (2**63 - 1) // 31
MAX_PAID_MICRO_PER_USER_DAY = (10**18 - 1) // 31

# Quarantine details quote at most this many characters of a raw value.
DETAIL_CHARS = 80
