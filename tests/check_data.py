"""Hand-made raw messages for the integrity-check tests, with their figures computed by hand.

Two days D1, D2; users U1, U2. Provider shapes: Anthropic (input excludes cache), OpenAI chat
(prompt includes cached, completion includes reasoning), OpenAI responses (input includes cached).
"""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta, timezone

import polars as pl

U1 = "00000000-0000-4000-a000-000000000001"
U2 = "00000000-0000-4000-a000-000000000002"
CLAUDE = "claude-sonnet-4-20250514"
GPT = "gpt-4o"


def _id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def _conv(n: int) -> str:
    return f"00000000-0000-4000-9000-{n:012d}"


def _at(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), timezone.utc)


def messages(d1: date, *, bad: bool = False) -> pl.DataFrame:
    """Raw `chat_messages` rows for D1 = d1 and D2 = d1 + 1 day (metadata as JSON text).

    Canonical figures per message:
    - m1 D1 U1 Anthropic: input 100, cache_creation 10, cache_read 20, output 50
    - m2 D1 U1 chat: prompt 200 (cached 50), completion 80 (reasoning 30) -> input 150, cache_read 50
    - m3 D1 U2 Anthropic: input 10, output 5
    - m5 D2 U1 responses: input 300 (cached 100), output 40 (reasoning 10) -> input 200, cache_read 100
    - m6 D2 U2 Anthropic: input 7, cache_read 1, output 3 (same conversation as m3)
    With `bad`: m4 D1 U2 with a non-integer token count, m7 D2 U1 with a negative one.
    """
    d2 = d1 + timedelta(days=1)
    rows = [
        (1, U1, 1, CLAUDE, _at(d1, 10), {"input_tokens": 100, "output_tokens": 50, "cache_creation_input_tokens": 10, "cache_read_input_tokens": 20}),
        (2, U1, 1, GPT, _at(d1, 10, 5), {"prompt_tokens": 200, "completion_tokens": 80, "prompt_tokens_details": {"cached_tokens": 50},
                                          "completion_tokens_details": {"reasoning_tokens": 30}}),
        (3, U2, 2, CLAUDE, _at(d1, 11), {"input_tokens": 10, "output_tokens": 5}),
        (5, U1, 3, GPT, _at(d2, 9), {"input_tokens": 300, "output_tokens": 40, "input_tokens_details": {"cached_tokens": 100},
                                     "output_tokens_details": {"reasoning_tokens": 10}}),
        (6, U2, 2, CLAUDE, _at(d2, 23, 30), {"input_tokens": 7, "output_tokens": 3, "cache_read_input_tokens": 1}),
    ]
    if bad:
        rows += [
            (4, U2, 2, CLAUDE, _at(d1, 12), {"input_tokens": "n/a", "output_tokens": 5}),
            (7, U1, 3, CLAUDE, _at(d2, 12), {"input_tokens": -5, "output_tokens": 1}),
        ]
    return pl.DataFrame(
        {
            "id": [_id(r[0]) for r in rows],
            "user_id": [r[1] for r in rows],
            "conversation_id": [_conv(r[2]) for r in rows],
            "agent_id": [None] * len(rows),
            "model": [r[3] for r in rows],
            "created_at": [r[4] for r in rows],
            "metadata": [json.dumps({"usage": r[5], "status": "success"}) for r in rows],
        },
        schema={"id": pl.String, "user_id": pl.String, "conversation_id": pl.String, "agent_id": pl.String,
                "model": pl.String, "created_at": pl.Datetime("us", "UTC"), "metadata": pl.String},
    )


_COLS = ["user_id", "message_count", "input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens",
         "output_tokens", "reasoning_tokens", "total_tokens"]
# Per user: message_count, input, cache_creation, cache_read, output, reasoning, total (tokens).
D1_FIGURES = [(U1, 2, 250, 10, 70, 130, 30, 460), (U2, 1, 10, 0, 0, 5, 0, 15)]
D2_FIGURES = [(U1, 1, 200, 0, 100, 40, 10, 340), (U2, 1, 7, 0, 1, 3, 0, 11)]


def figures(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=_COLS, orient="row").cast({c: pl.Int64 for c in _COLS[1:]})
