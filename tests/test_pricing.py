"""Price book loading, model resolution and per-message cost.

Expected costs are hand-computed in integer pico-USD per token:
USD per million tokens x 1_000_000 = pico-USD per token (e.g. $3/MTok = 3_000_000).
"""

from __future__ import annotations

import datetime as dt
import json
import random
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from usage_etl.pricing import book as pricing
from usage_etl.aggregate import conversation_day_grain
from usage_etl.cli.prices import prices
from usage_etl.pricing.litellm import import_litellm
from usage_etl.pricing.book import (
    ENV_VAR,
    MAX_TOKENS_PER_FIELD,
    PRICE_KEYS,
    PriceBookError,
    cost_usd_from_pico,
    load_price_book,
    normalize_model_name,
    price_messages,
    resolve_model,
    usd_per_mtok_to_pico,
)

UTC = dt.timezone.utc
TOKENS = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_creation_1h_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
    "reasoning_tokens",
)
SCHEMA = {
    "message_id": pl.String,
    "user_id": pl.String,
    "conversation_id": pl.String,
    "agent_id": pl.String,
    "model": pl.String,
    "created_at": pl.Datetime("us", "UTC"),
    "status": pl.String,
    **{c: pl.Int64 for c in TOKENS},
    "paid_amount": pl.Float64,
}


@pytest.fixture(autouse=True)
def _no_env_book(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


FROZEN_BOOK = Path(__file__).parent / "fixtures" / "price_book_2025-11.toml"


@pytest.fixture(scope="module", autouse=True)
def _frozen_default_book():
    # The costs here are hand-computed against the hand-written 2025-11 book; the shipped default
    # is generated from genai-prices and changes with it (tests/test_genai_prices.py covers it).
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pricing, "_default_book_text", lambda: FROZEN_BOOK.read_text(encoding="utf-8"))
        yield


@pytest.fixture(scope="module")
def book(_frozen_default_book):
    return load_price_book(use_env=False)


def msg(model, when, input=0, cw=0, cw1h=0, cr=0, out=0, reasoning=0, mid=None):
    return {
        "message_id": mid or f"m-{model}-{when}-{input}-{cw}-{cr}-{out}",
        "user_id": "u1",
        "conversation_id": "c1",
        "agent_id": None,
        "model": model,
        "created_at": when,
        "status": "success",
        "input_tokens": input,
        "cache_creation_input_tokens": cw,
        "cache_creation_1h_input_tokens": cw1h,
        "cache_read_input_tokens": cr,
        "output_tokens": out,
        "reasoning_tokens": reasoning,
        "paid_amount": None,
    }


def frame(*rows):
    return pl.LazyFrame(list(rows), schema=SCHEMA)


def priced(book, *rows):
    return price_messages(frame(*rows), book).collect()


def d(y, m, day, h=0, mi=0, s=0, us=0):
    return dt.datetime(y, m, day, h, mi, s, us, tzinfo=UTC)


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


# ---------------------------------------------------------------------------------------------
# Costs
# ---------------------------------------------------------------------------------------------


def test_anthropic_5m_and_1h_cache_writes_and_reads(book):
    out = priced(
        book,
        msg("claude-sonnet-4-20250514", d(2025, 7, 1), input=1000, cw=3000, cw1h=1000, cr=5000, out=400, reasoning=100),
        msg("claude-opus-4-5-20251101", d(2025, 12, 1), input=10, cw=100, cw1h=40, cr=1000, out=50),
    )
    # Sonnet 4: 1000 x 3_000_000          = 3_000_000_000   input
    #         + (3000-1000) x 3_750_000    = 7_500_000_000   5-minute writes
    #         + 1000 x 6_000_000           = 6_000_000_000   1-hour writes
    #         + 5000 x 300_000             = 1_500_000_000   cache reads
    #         + 400 x 15_000_000           = 6_000_000_000   output (100 reasoning inside)
    #                                      = 24_000_000_000  ($0.024)
    # Opus 4.5: 10 x 5_000_000 = 50_000_000; 60 x 6_250_000 = 375_000_000;
    #           40 x 10_000_000 = 400_000_000; 1000 x 500_000 = 500_000_000;
    #           50 x 25_000_000 = 1_250_000_000                  -> 2_575_000_000
    assert out["cost_pico_usd"].to_list() == [24_000_000_000, 2_575_000_000]
    assert out["price_model"].to_list() == ["claude-sonnet-4", "claude-opus-4-5"]
    assert out["priced"].to_list() == [True, True]
    assert out.schema["cost_pico_usd"] == pl.Int64
    assert out.schema["priced"] == pl.Boolean
    assert out.schema["price_model"] == pl.String


def test_openai_cached_prompt_and_reasoning_not_double_charged(book):
    # Normalized OpenAI usage: prompt 1500 of which 1000 cached -> input 500, cache_read 1000;
    # completion 300 of which 200 reasoning -> output 300, reasoning 200.
    with_reasoning = msg("gpt-4o-2024-08-06", d(2025, 3, 1), input=500, cr=1000, out=300, reasoning=200, mid="a")
    no_reasoning = {**with_reasoning, "message_id": "b", "reasoning_tokens": 0}
    # o4-mini: prompt 10_000, 8_000 cached; completion 5_000 with 4_500 reasoning.
    o4 = msg("openai/o4-mini-2025-04-16", d(2025, 5, 1), input=2000, cr=8000, out=5000, reasoning=4500, mid="c")
    out = priced(book, with_reasoning, no_reasoning, o4)
    # gpt-4o: 500 x 2_500_000 = 1_250_000_000; 1000 x 1_250_000 = 1_250_000_000;
    #         300 x 10_000_000 = 3_000_000_000                 -> 5_500_000_000
    #         (charging reasoning again would add 200 x 10_000_000 = 2_000_000_000)
    # o4-mini: 2000 x 1_100_000 = 2_200_000_000; 8000 x 275_000 = 2_200_000_000;
    #          5000 x 4_400_000 = 22_000_000_000               -> 26_400_000_000
    assert out["cost_pico_usd"].to_list() == [5_500_000_000, 5_500_000_000, 26_400_000_000]
    assert out["price_model"].to_list() == ["gpt-4o", "gpt-4o", "o4-mini"]


def test_long_context_threshold_is_strict_and_applies_to_whole_request(book):
    at = msg("claude-sonnet-4", d(2025, 9, 1), input=150_000, cw=30_000, cw1h=10_000, cr=20_000, out=1000, mid="at")
    above = {**at, "message_id": "above", "input_tokens": 150_001}
    out = priced(book, at, above)
    # Exactly 200_000 prompt tokens (150_000 + 30_000 + 20_000): base prices.
    #   150_000 x 3_000_000 = 450_000_000_000; 20_000 x 3_750_000 = 75_000_000_000;
    #   10_000 x 6_000_000 = 60_000_000_000; 20_000 x 300_000 = 6_000_000_000;
    #   1000 x 15_000_000 = 15_000_000_000                    -> 606_000_000_000 ($0.606)
    # 200_001 prompt tokens: every token at the >200k tier.
    #   150_001 x 6_000_000 = 900_006_000_000; 20_000 x 7_500_000 = 150_000_000_000;
    #   10_000 x 12_000_000 = 120_000_000_000; 20_000 x 600_000 = 12_000_000_000;
    #   1000 x 22_500_000 = 22_500_000_000                    -> 1_204_506_000_000 ($1.204506)
    assert out["cost_pico_usd"].to_list() == [606_000_000_000, 1_204_506_000_000]
    usd = out.select(cost_usd_from_pico(pl.col("cost_pico_usd")))["cost_pico_usd"].to_list()
    assert usd == [Decimal("0.606000"), Decimal("1.204506")]


LC_WITHOUT_CACHE_PRICES = """
[[models.lc-model.periods]]
effective_from = 2025-01-01
input = 3
output = 15
cache_write_5m = 3.75
cache_write_1h = 6
cache_read = 0.30
long_context = { threshold = 200000, input = 6, output = 22.5 }
"""


def test_long_context_tier_without_cache_prices_scales_them_by_the_input_ratio(tmp_path):
    book = load_price_book([write(tmp_path, "lc.toml", LC_WITHOUT_CACHE_PRICES)], include_default=False, use_env=False)
    tier = book.periods.select(pl.col(f"long_context_{k}") for k in PRICE_KEYS).row(0)
    # ratio 6 / 3 = 2: 5m 3.75 -> 7.50, 1h 6 -> 12, read 0.30 -> 0.60 (USD/MTok), in pico per token
    assert tier == (6_000_000, 22_500_000, 7_500_000, 12_000_000, 600_000)
    above = msg("lc-model", d(2025, 9, 1), input=150_001, cw=30_000, cw1h=10_000, cr=20_000, out=1000)
    # 150_001 x 6_000_000 + 20_000 x 7_500_000 + 10_000 x 12_000_000 + 20_000 x 600_000
    #   + 1000 x 22_500_000 = 1_204_506_000_000 (the base cache prices would give 1_063_506_000_000)
    assert priced(book, above)["cost_pico_usd"].to_list() == [1_204_506_000_000]


def test_shipped_long_context_tiers_follow_the_input_ratio(book):
    tiers = book.periods.filter(pl.col("long_context_threshold").is_not_null())
    assert tiers.height >= 2
    for row in tiers.iter_rows(named=True):
        for k in ("cache_write_5m", "cache_write_1h", "cache_read"):
            # tier price x base input == base price x tier input (exact integers)
            assert row[f"long_context_{k}"] * row["input"] == row[k] * row["long_context_input"], (row["price_model"], k)
        assert row["long_context_cache_write_1h"] > row["long_context_cache_write_5m"], row["price_model"]


def test_claude_3_5_haiku_launch_price_then_the_cut(book):
    tokens = dict(input=1000, cw=1000, cr=1000, out=1000)
    out = priced(
        book,
        msg("claude-3-5-haiku-20241022", d(2024, 11, 3, 23, 59), mid="before", **tokens),
        msg("claude-3-5-haiku-20241022", d(2024, 11, 4), mid="launch", **tokens),
        msg("claude-3-5-haiku-20241022", d(2024, 12, 2, 23, 59), mid="last", **tokens),
        msg("claude-3-5-haiku-latest", d(2024, 12, 3), mid="cut", **tokens),
    )
    # launch: 1000 x (1_000_000 + 1_250_000 + 100_000 + 5_000_000) = 7_350_000_000
    # cut:    1000 x (  800_000 + 1_000_000 +  80_000 + 4_000_000) = 5_880_000_000
    assert out["cost_pico_usd"].to_list() == [None, 7_350_000_000, 7_350_000_000, 5_880_000_000]
    haiku = book.periods.filter(pl.col("price_model") == "claude-3-5-haiku")
    assert haiku["source_date"].to_list() == [dt.date(2024, 11, 4), dt.date(2025, 11, 24)]


# ---------------------------------------------------------------------------------------------
# Overflow: never a wrong cost
# ---------------------------------------------------------------------------------------------


def test_cost_beyond_int64_raises_instead_of_wrapping(book):
    # Opus 4.1 output: 200_000_000_000 x 75_000_000 = 1.5e19 pico-USD > 2^63 - 1 (it used to wrap
    # to -3_446_744_073_709_551_616). Normalization quarantines such rows; a frame that skipped it
    # fails loudly.
    huge = msg("claude-opus-4-1", d(2025, 9, 1), out=200_000_000_000)
    with pytest.raises(pl.exceptions.InvalidOperationError, match="cost_pico_usd"):
        priced(book, huge)
    # At the bound in every field the cost is exact:
    # 10^9 x (15_000_000 + 30_000_000 + 1_500_000 + 75_000_000) = 121_500_000_000_000_000 ($121,500)
    b = MAX_TOKENS_PER_FIELD
    at_bound = msg("claude-opus-4-1", d(2025, 9, 1), input=b, cw=b, cw1h=b, cr=b, out=b)
    assert priced(book, at_bound)["cost_pico_usd"].to_list() == [121_500_000_000_000_000]


def test_grain_cost_sum_beyond_int64_raises_instead_of_wrapping():
    rows = [msg("m", d(2025, 9, 1), mid=str(i)) for i in range(2)]
    frame_ = pl.DataFrame(rows, schema=SCHEMA).with_columns(
        cost_pico_usd=pl.lit(5_000_000_000_000_000_000, pl.Int64), priced=pl.lit(True)
    )
    # 2 x 5e18 = 1e19 pico-USD > 2^63 - 1 in one grain row
    with pytest.raises(pl.exceptions.InvalidOperationError):
        conversation_day_grain(frame_.lazy(), "UTC").collect()
    ok = frame_.with_columns(cost_pico_usd=pl.lit(4_000_000_000_000_000_000, pl.Int64))
    assert conversation_day_grain(ok.lazy(), "UTC").collect()["cost_pico_usd"].to_list() == [8_000_000_000_000_000_000]


def test_price_change_on_the_15th_from_override_file(tmp_path):
    override = write(
        tmp_path,
        "cut.toml",
        """
[models."gpt-4.1-mini"]
[[models."gpt-4.1-mini".periods]]
effective_from = 2025-04-14
effective_to = 2025-09-15
input = 0.40
output = 1.60
cache_write_5m = 0.40
cache_write_1h = 0.40
cache_read = 0.10

[[models."gpt-4.1-mini".periods]]
effective_from = 2025-09-15
input = 0.20
output = 0.80
cache_write_5m = 0.20
cache_write_1h = 0.20
cache_read = 0.05
""",
    )
    book = load_price_book([override], use_env=False)
    tokens = dict(input=1000, cr=1000, out=1000)
    out = priced(
        book,
        msg("gpt-4.1-mini", d(2025, 9, 14, 23, 59, 59, 999_999), mid="14th", **tokens),
        msg("gpt-4.1-mini", d(2025, 9, 15), mid="15th", **tokens),
        msg("gpt-4.1-mini", d(2025, 4, 13), mid="before", **tokens),
    )
    # 14th: 1000 x 400_000 + 1000 x 100_000 + 1000 x 1_600_000 = 2_100_000_000
    # 15th: 1000 x 200_000 + 1000 x  50_000 + 1000 x   800_000 = 1_050_000_000
    # 13 April: before the first period -> unpriced (null), not 0
    assert out["cost_pico_usd"].to_list() == [2_100_000_000, 1_050_000_000, None]
    assert out["priced"].to_list() == [True, True, False]
    assert out["price_model"].to_list() == ["gpt-4.1-mini"] * 3


def test_gap_between_periods_is_unpriced(tmp_path):
    body = "effective_from = {f}\n{to}input = 1\noutput = 2\ncache_write_5m = 1\ncache_write_1h = 1\ncache_read = 0.1\n"
    text = (
        "[[models.gappy.periods]]\n" + body.format(f="2025-03-01", to="effective_to = 2025-03-10\n")
        + "[[models.gappy.periods]]\n" + body.format(f="2025-03-20", to="")
    )
    book = load_price_book([write(tmp_path, "gap.toml", text)], include_default=False, use_env=False)
    out = priced(
        book,
        *[msg("gappy", when, input=1000, mid=str(i)) for i, when in enumerate(
            [d(2025, 3, 9, 23, 59, 59, 999_999), d(2025, 3, 10), d(2025, 3, 15), d(2025, 3, 20)]
        )],
    )
    # 1000 x 1_000_000 = 1_000_000_000 inside a period; nothing in effect from 10 to 20 March.
    assert out["cost_pico_usd"].to_list() == [1_000_000_000, None, None, 1_000_000_000]


def test_two_period_entry_in_shipped_book(book):
    out = priced(
        book,
        msg("o3-2025-04-16", d(2025, 6, 9, 23, 59), input=1000, cr=1000, out=1000),
        msg("o3", d(2025, 6, 10), input=1000, cr=1000, out=1000),
    )
    # before 2025-06-10: 1000 x 10_000_000 + 1000 x 2_500_000 + 1000 x 40_000_000 = 52_500_000_000
    # from 2025-06-10:   1000 x  2_000_000 + 1000 x   500_000 + 1000 x  8_000_000 = 10_500_000_000
    assert out["cost_pico_usd"].to_list() == [52_500_000_000, 10_500_000_000]


# ---------------------------------------------------------------------------------------------
# Resolution
# ---------------------------------------------------------------------------------------------

RESOLUTION = [
    ("claude-sonnet-4-20250514", "claude-sonnet-4"),
    ("anthropic/claude-sonnet-4-20250514", "claude-sonnet-4"),
    ("claude-sonnet-4-0", "claude-sonnet-4"),
    ("Claude-Sonnet-4-0", "claude-sonnet-4"),
    ("  claude-sonnet-4-5-20250929 ", "claude-sonnet-4-5"),
    ("bedrock/us.anthropic.claude-sonnet-4-20250514-v1:0", "claude-sonnet-4"),
    ("anthropic.claude-3-5-haiku-20241022-v1:0", "claude-3-5-haiku"),
    ("vertex_ai/claude-opus-4-1@20250805", "claude-opus-4-1"),
    ("claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
    ("openrouter/anthropic/claude-3.7-sonnet:thinking", "claude-3-7-sonnet"),  # pattern
    ("gpt-4o-2024-08-06", "gpt-4o"),
    ("openai/gpt-4o", "gpt-4o"),
    ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),  # snapshot with its own price wins
    ("gpt-4.1-nano-2025-04-14", "gpt-4.1-nano"),
    ("gpt-5-chat-latest", "gpt-5"),
    ("o3-mini-2025-01-31", "o3-mini"),
    ("o3-pro", None),
    ("claude-sonnet-4-5-foo", None),
    ("mystery-model", None),
    (None, None),
]


def test_resolution_alias_snapshot_and_prefix(book):
    names = [n for n, _ in RESOLUTION]
    got = pl.DataFrame({"model": names}, schema={"model": pl.String}).select(
        resolve_model(pl.col("model"), book)
    )["model"].to_list()
    assert got == [want for _, want in RESOLUTION]


def test_normalize_model_name_matches_expression():
    assert normalize_model_name("Anthropic/Claude-Sonnet-4-20250514") == ("claude-sonnet-4-20250514", "claude-sonnet-4")
    assert normalize_model_name("gpt-4o-2024-08-06") == ("gpt-4o-2024-08-06", "gpt-4o")
    assert normalize_model_name("us.anthropic.claude-opus-4-20250514-v1:0") == (
        "claude-opus-4-20250514-v1:0",
        "claude-opus-4",
    )


# ---------------------------------------------------------------------------------------------
# Unknown models, row order
# ---------------------------------------------------------------------------------------------


def test_unknown_model_is_null_not_zero(book):
    out = priced(
        book,
        msg("totally-new-model", d(2025, 7, 1), input=100, out=100),
        msg(None, d(2025, 7, 1), input=100, out=100),
        msg("claude-opus-4-5", d(2025, 11, 23), input=100, out=100),  # day before its first period
        msg("gpt-4o-mini", d(2025, 7, 1)),  # zero tokens on a known model: a real 0
    )
    assert out["cost_pico_usd"].to_list() == [None, None, None, 0]
    assert out["priced"].to_list() == [False, False, False, True]
    assert out["price_model"].to_list() == [None, None, "claude-opus-4-5", "gpt-4o-mini"]


def _reference_cost(book, model_name, when, r):
    """Row-by-row reference implementation, test-only."""
    if model_name is None:
        return None
    for p in book.periods.filter(pl.col("price_model") == model_name).iter_rows(named=True):
        if p["effective_from"] <= when and (p["effective_to"] is None or when < p["effective_to"]):
            prompt = r["input_tokens"] + r["cache_creation_input_tokens"] + r["cache_read_input_tokens"]
            tier = p["long_context_threshold"] is not None and prompt > p["long_context_threshold"]
            pr = {k: p[("long_context_" if tier else "") + k] for k in PRICE_KEYS}
            cc, c1h = r["cache_creation_input_tokens"], r["cache_creation_1h_input_tokens"]
            return (
                r["input_tokens"] * pr["input"]
                + (cc - c1h) * pr["cache_write_5m"]
                + c1h * pr["cache_write_1h"]
                + r["cache_read_input_tokens"] * pr["cache_read"]
                + r["output_tokens"] * pr["output"]
            )
    return None


def test_row_count_and_order_preserved_and_match_reference(book):
    rng = random.Random(7)
    models = ["claude-sonnet-4-20250514", "o3", "gpt-4o", "nope", None, "claude-opus-4-5", "claude-sonnet-4-5"]
    rows = []
    for i in range(500):
        when = d(2025, 1, 1) + dt.timedelta(seconds=rng.randrange(0, 365 * 86400))
        cw = rng.choice([0, 1000, 150_000])
        rows.append(
            msg(
                rng.choice(models),
                when,
                input=rng.choice([0, 10, 60_000, 120_000]),
                cw=cw,
                cw1h=rng.choice([0, cw // 3]),
                cr=rng.choice([0, 5000, 100_000]),
                out=rng.randrange(0, 5000),
                mid=f"id-{i:04d}",
            )
        )
    rows.append({**rows[10], "message_id": "dup-time"})  # same timestamp and model as row 10
    out = priced(book, *rows)
    assert out.height == len(rows)
    assert out["message_id"].to_list() == [r["message_id"] for r in rows]
    assert out.columns[: len(SCHEMA)] == list(SCHEMA)
    expected = [
        _reference_cost(book, pm, r["created_at"], r)
        for pm, r in zip(out["price_model"].to_list(), rows, strict=True)
    ]
    assert out["cost_pico_usd"].to_list() == expected
    assert out["priced"].sum() > 0 and (~out["priced"]).sum() > 0


def test_existing_output_columns_are_replaced(book):
    lf = frame(msg("gpt-4o", d(2025, 3, 1), input=1)).with_columns(
        price_model=pl.lit("stale"), cost_pico_usd=pl.lit(1, dtype=pl.Int64), extra=pl.lit("kept")
    )
    out = price_messages(lf, book).collect()
    assert out["price_model"].to_list() == ["gpt-4o"]
    assert out["cost_pico_usd"].to_list() == [2_500_000]  # 1 x 2_500_000
    assert out["extra"].to_list() == ["kept"]


# ---------------------------------------------------------------------------------------------
# Units and the shipped book
# ---------------------------------------------------------------------------------------------


def test_units_and_rounding():
    assert usd_per_mtok_to_pico(3) == 3_000_000
    assert usd_per_mtok_to_pico(0.075) == 75_000
    assert usd_per_mtok_to_pico(0.005) == 5_000
    assert usd_per_mtok_to_pico(22.5) == 22_500_000
    s = pl.DataFrame(
        {"p": [0, 499_999, 500_000, 1_500_000, 2_500_000, 24_000_000_000, None]}, schema={"p": pl.Int64}
    )
    got = s.select(cost_usd_from_pico(pl.col("p")))["p"].to_list()
    # half-up at the micro-dollar: 0.4999995 -> 0, 0.5 -> 1, 1.5 -> 2, 2.5 -> 3 (not half-even)
    assert got == [Decimal(0), Decimal(0), Decimal("0.000001"), Decimal("0.000002"), Decimal("0.000003"),
                   Decimal("0.024"), None]
    assert s.select(cost_usd_from_pico(pl.col("p"))).schema["p"] == pl.Decimal(18, 6)
    # Sums past Int64 (~$9.2M in pico) go through Int128.
    big = pl.DataFrame({"p": [9_000_000_000_000_000_000] * 3}, schema={"p": pl.Int64})
    total = big.select(cost_usd_from_pico(pl.col("p").cast(pl.Int128).sum())).item()
    assert total == Decimal("27000000.000000")


def test_shipped_book_covers_models_and_sources(book):
    required = {
        "claude-opus-4": (15, 75, 18.75, 30, 1.5),
        "claude-opus-4-1": (15, 75, 18.75, 30, 1.5),
        "claude-opus-4-5": (5, 25, 6.25, 10, 0.5),
        "claude-sonnet-4": (3, 15, 3.75, 6, 0.3),
        "claude-sonnet-4-5": (3, 15, 3.75, 6, 0.3),
        "claude-3-7-sonnet": (3, 15, 3.75, 6, 0.3),
        "claude-haiku-4-5": (1, 5, 1.25, 2, 0.1),
        "claude-3-5-haiku": (0.8, 4, 1, 1.6, 0.08),
        "claude-3-haiku": (0.25, 1.25, 0.3, 0.5, 0.03),
        "claude-3-opus": (15, 75, 18.75, 30, 1.5),
        "gpt-4o": (2.5, 10, 2.5, 2.5, 1.25),
        "gpt-4o-mini": (0.15, 0.6, 0.15, 0.15, 0.075),
        "gpt-4.1": (2, 8, 2, 2, 0.5),
        "gpt-4.1-mini": (0.4, 1.6, 0.4, 0.4, 0.1),
        "gpt-4.1-nano": (0.1, 0.4, 0.1, 0.1, 0.025),
        "gpt-5": (1.25, 10, 1.25, 1.25, 0.125),
        "gpt-5-mini": (0.25, 2, 0.25, 0.25, 0.025),
        "gpt-5-nano": (0.05, 0.4, 0.05, 0.05, 0.005),
        "gpt-5.1": (1.25, 10, 1.25, 1.25, 0.125),
        "o1": (15, 60, 15, 15, 7.5),
        "o1-mini": (1.1, 4.4, 1.1, 1.1, 0.55),
        "o3-mini": (1.1, 4.4, 1.1, 1.1, 0.55),
        "o3": (2, 8, 2, 2, 0.5),  # latest period
        "o4-mini": (1.1, 4.4, 1.1, 1.1, 0.275),
    }
    latest = book.periods.group_by("price_model").agg(pl.all().sort_by("effective_from").last())
    for name, want in required.items():
        row = latest.filter(pl.col("price_model") == name).row(0, named=True)
        assert tuple(row[k] for k in PRICE_KEYS) == tuple(usd_per_mtok_to_pico(v) for v in want), name
    o3 = book.periods.filter(pl.col("price_model") == "o3").sort("effective_from")
    assert o3["input"].to_list() == [10_000_000, 2_000_000]
    assert o3["effective_to"].to_list()[0] == d(2025, 6, 10)
    sonnet = latest.filter(pl.col("price_model").is_in(["claude-sonnet-4", "claude-sonnet-4-5"]))
    assert sonnet["long_context_threshold"].to_list() == [200_000, 200_000]
    assert set(sonnet["long_context_output"].to_list()) == {22_500_000}
    assert book.periods["source"].null_count() == 0
    assert book.periods["source_date"].null_count() == 0
    assert len(book.version) == 12


# ---------------------------------------------------------------------------------------------
# Override files
# ---------------------------------------------------------------------------------------------


def test_env_override_changes_a_price_and_adds_a_model(tmp_path, monkeypatch):
    a = write(
        tmp_path,
        "a.toml",
        """
[[models.gpt-4o.periods]]
effective_from = 2024-08-06
input = 2.50
output = 12
cache_write_5m = 2.50
cache_write_1h = 2.50
cache_read = 1.25
source = "contract"
source_date = 2025-01-01
""",
    )
    b = write(
        tmp_path,
        "b.toml",
        """
[models.acme-1]
aliases = ["acme"]
[[models.acme-1.periods]]
effective_from = 2025-01-01
input = 0.5
output = 1.5
cache_write_5m = 0.5
cache_write_1h = 0.5
cache_read = 0.05
""",
    )
    monkeypatch.setenv(ENV_VAR, f"{a}:{b}")
    book = load_price_book()
    assert book.files[1:] == (str(a), str(b))
    assert book.version != load_price_book(use_env=False).version
    out = priced(
        book,
        msg("gpt-4o", d(2025, 3, 1), input=1000, out=1000),
        msg("ACME", d(2025, 3, 1), input=1000, cr=2000, out=1000),
        msg("claude-sonnet-4", d(2025, 7, 1), input=1000),
    )
    # gpt-4o: 1000 x 2_500_000 + 1000 x 12_000_000 = 14_500_000_000 (output price overridden)
    # acme:   1000 x 500_000 + 2000 x 50_000 + 1000 x 1_500_000 = 2_100_000_000
    # sonnet untouched: 1000 x 3_000_000 = 3_000_000_000
    assert out["cost_pico_usd"].to_list() == [14_500_000_000, 2_100_000_000, 3_000_000_000]
    assert out["price_model"].to_list() == ["gpt-4o", "acme-1", "claude-sonnet-4"]
    # An override that restates no aliases keeps the shipped ones.
    assert book.info["gpt-5"]["aliases"] == ("gpt-5-chat",)


def test_version_ignores_comments_but_tracks_content(tmp_path):
    body = '[models.x]\n[[models.x.periods]]\neffective_from = 2025-01-01\ninput = 1\noutput = 2\ncache_write_5m = 1\ncache_write_1h = 1\ncache_read = 0.1\n'
    v1 = load_price_book([write(tmp_path, "1.toml", body)], use_env=False).version
    v2 = load_price_book([write(tmp_path, "2.toml", "# comment\n" + body)], use_env=False).version
    v3 = load_price_book([write(tmp_path, "3.toml", body.replace("output = 2", "output = 3"))], use_env=False).version
    assert v1 == v2 != v3


PERIOD = 'effective_from = 2025-01-01\ninput = 1\noutput = 2\ncache_write_5m = 1\ncache_write_1h = 1\ncache_read = 0.1\n'
BAD_BOOKS = [
    ("missing price", '[[models.x.periods]]\neffective_from = 2025-01-01\ninput = 1\ncache_write_5m = 1\ncache_write_1h = 1\ncache_read = 0.1\n',
     'models."x".periods[0].output: missing price'),
    ("negative", "[[models.x.periods]]\n" + PERIOD.replace("input = 1", "input = -1"), 'models."x".periods[0].input: price -1 is negative'),
    ("sub-pico", "[[models.x.periods]]\n" + PERIOD.replace("input = 1", "input = 0.0000001"), "periods[0].input: price 1e-07 has more than 6 decimal"),
    ("unknown period key", "[[models.x.periods]]\n" + PERIOD + "inptu = 3\n", 'models."x".periods[0].inptu: unknown key'),
    ("unknown entry key", "[models.x]\nalias = ['y']\n[[models.x.periods]]\n" + PERIOD, 'models."x".alias: unknown key'),
    ("unknown top key", "model = 1\n", "model: unknown top-level key"),
    ("overlap", "[[models.x.periods]]\n" + PERIOD + "[[models.x.periods]]\n" + PERIOD.replace("2025-01-01", "2025-03-01"),
     'models."x".periods: periods overlap'),
    ("overlap with end", "[[models.x.periods]]\n" + PERIOD + "effective_to = 2025-03-02\n[[models.x.periods]]\n"
     + PERIOD.replace("2025-01-01", "2025-03-01"), "periods overlap"),
    ("bad date", "[[models.x.periods]]\n" + PERIOD.replace("2025-01-01", '"2025-01-01"'), "periods[0].effective_from: must be a TOML date"),
    ("bad regex", "[models.x]\npatterns = ['(?=x)']\n[[models.x.periods]]\n" + PERIOD, 'models."x".patterns: invalid regex'),
    ("bad long context", "[[models.x.periods]]\n" + PERIOD + "long_context = { threshold = 100, input = 2 }\n",
     "periods[0].long_context.output: missing"),
    ("alias clash", "[models.x]\naliases = ['y']\n[[models.x.periods]]\n" + PERIOD + "[[models.y.periods]]\n" + PERIOD,
     "'y' is already used by model 'x'"),
    ("no periods", "[models.x]\naliases = ['y']\n", 'models."x": new model without [[periods]]'),
    ("takes a model name", "[models.x]\naliases = ['gpt-4o']\n[[models.x.periods]]\n" + PERIOD, "is the name of an existing model"),
    ("syntax", "[models.x\n", "invalid TOML"),
    # 5m write 1 x tier input 7 / base input 3 = 2.333... is not a whole pico-USD per token: state it
    ("underived tier price", "[[models.x.periods]]\n" + PERIOD.replace("input = 1\n", "input = 3\n", 1)
     + "long_context = { threshold = 100, input = 7, output = 9 }\n",
     "periods[0].long_context.cache_write_5m: missing, and the derived price 2.333333"),
    ("tier over free input", "[[models.x.periods]]\n" + PERIOD.replace("input = 1\n", "input = 0\n", 1)
     + "long_context = { threshold = 100, input = 2, output = 9 }\n", "long_context.cache_write_5m: missing, and cannot be derived"),
    # 4000 + 1 + 0.1 + 5300 = 9301.1 USD/MTok x 10^9 tokens > 2^63 - 1 pico-USD
    ("prices too high", "[[models.x.periods]]\n" + PERIOD.replace("input = 1\n", "input = 4000\n", 1).replace("output = 2", "output = 5300"),
     'models."x".periods[0]: prices too high to cost exactly'),
    ("tier prices too high", "[[models.x.periods]]\n" + PERIOD + "long_context = { threshold = 100, input = 1, output = 9300 }\n",
     "periods[0].long_context: prices too high"),
]


@pytest.mark.parametrize(("label", "text", "needle"), BAD_BOOKS, ids=[b[0] for b in BAD_BOOKS])
def test_bad_price_book_names_file_and_key(tmp_path, label, text, needle):
    path = write(tmp_path, "bad.toml", text)
    with pytest.raises(PriceBookError) as err:
        load_price_book([path], use_env=False)
    assert str(path) in str(err.value)
    assert needle in str(err.value)


def test_missing_override_file_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nope.toml"))
    with pytest.raises(PriceBookError, match="nope.toml"):
        load_price_book()


def test_later_file_takes_alias(tmp_path):
    path = write(tmp_path, "x.toml", "[models.house-model]\naliases = ['gpt-5-chat']\n[[models.house-model.periods]]\n" + PERIOD)
    book = load_price_book([path], use_env=False)
    assert book.lookup()["gpt-5-chat"] == "house-model"
    assert "gpt-5-chat" not in book.info["gpt-5"]["aliases"]


# ---------------------------------------------------------------------------------------------
# LiteLLM import
# ---------------------------------------------------------------------------------------------

LITELLM = {
    "sample_spec": {"mode": "one of: chat, embedding, completion", "input_cost_per_token": 0.0},
    "claude-sonnet-4-20250514": {
        "litellm_provider": "anthropic",
        "mode": "chat",
        "input_cost_per_token": 3e-06,
        "output_cost_per_token": 1.5e-05,
        "cache_creation_input_token_cost": 3.75e-06,
        "cache_creation_input_token_cost_above_1hr": 6e-06,
        "cache_read_input_token_cost": 3e-07,
        "input_cost_per_token_above_200k_tokens": 6e-06,
        "output_cost_per_token_above_200k_tokens": 2.25e-05,
        "cache_creation_input_token_cost_above_200k_tokens": 7.5e-06,
        "cache_creation_input_token_cost_above_1hr_above_200k_tokens": 1.2e-05,
        "cache_read_input_token_cost_above_200k_tokens": 6e-07,
    },
    "anthropic/claude-sonnet-4-20250514": {
        "litellm_provider": "anthropic",
        "mode": "chat",
        "input_cost_per_token": 3e-06,
        "output_cost_per_token": 1.5e-05,
        "cache_creation_input_token_cost": 3.75e-06,
        "cache_creation_input_token_cost_above_1hr": 6e-06,
        "cache_read_input_token_cost": 3e-07,
        "input_cost_per_token_above_200k_tokens": 6e-06,
        "output_cost_per_token_above_200k_tokens": 2.25e-05,
        "cache_creation_input_token_cost_above_200k_tokens": 7.5e-06,
        "cache_creation_input_token_cost_above_1hr_above_200k_tokens": 1.2e-05,
        "cache_read_input_token_cost_above_200k_tokens": 6e-07,
    },
    "azure/gpt-4o": {"litellm_provider": "azure", "mode": "chat", "input_cost_per_token": 2.75e-06,
                     "output_cost_per_token": 1.1e-05},
    "gpt-4o": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 2.5e-06,
               "output_cost_per_token": 1e-05, "cache_read_input_token_cost": 1.25e-06},
    "gpt-4o-2024-08-06": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 2.5e-06,
                          "output_cost_per_token": 1e-05, "cache_read_input_token_cost": 1.25e-06},
    "gpt-4o-2024-05-13": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 5e-06,
                          "output_cost_per_token": 1.5e-05},
    "gpt-4o-mini": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1.5e-07,
                    "output_cost_per_token": 6e-07, "cache_read_input_token_cost": 7.5e-08},
    "o4-mini": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1.1e-06,
                "output_cost_per_token": 4.4e-06, "cache_read_input_token_cost": 2.75e-07},
    "text-embedding-3-small": {"litellm_provider": "openai", "mode": "embedding", "input_cost_per_token": 2e-08},
    "half-priced": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1e-06},
}


def test_litellm_import_matches_hand_written_prices(tmp_path, book):
    src = write(tmp_path, "model_prices_and_context_window.json", json.dumps(LITELLM))
    text, skipped = import_litellm(src, source_date=dt.date(2025, 11, 24))
    imported = load_price_book([write(tmp_path, "imported.toml", text)], include_default=False, use_env=False)
    assert sorted(imported.models) == ["claude-sonnet-4", "gpt-4o", "gpt-4o-2024-05-13", "gpt-4o-mini", "o4-mini"]
    reasons = dict(skipped)
    assert reasons["text-embedding-3-small"].startswith("not chat")
    assert reasons["sample_spec"].startswith("not chat")
    assert reasons["half-priced"] == "no price: missing output_cost_per_token"
    assert reasons["anthropic/claude-sonnet-4-20250514"].startswith("duplicate")
    assert reasons["gpt-4o-2024-08-06"].startswith("duplicate")
    assert reasons["azure/gpt-4o"].startswith("conflict")
    assert len(skipped) == 6

    rows = [
        msg("claude-sonnet-4-20250514", d(2025, 7, 1), input=1000, cw=3000, cw1h=1000, cr=5000, out=400, mid="a"),
        msg("claude-sonnet-4", d(2025, 9, 1), input=150_001, cw=30_000, cw1h=10_000, cr=20_000, out=1000, mid="b"),
        msg("gpt-4o-2024-08-06", d(2025, 3, 1), input=500, cr=1000, out=300, reasoning=200, mid="c"),
        msg("gpt-4o-2024-05-13", d(2024, 6, 1), input=100, cr=100, out=100, mid="d"),
        msg("gpt-4o-mini", d(2025, 3, 1), input=1000, cr=1000, out=1000, mid="e"),
        msg("o4-mini", d(2025, 5, 1), input=2000, cr=8000, out=5000, reasoning=4500, mid="f"),
    ]
    via_litellm = priced(imported, *rows)["cost_pico_usd"].to_list()
    via_book = priced(book, *rows)["cost_pico_usd"].to_list()
    # a, b, c, f: hand-computed above; d: 100 x 5_000_000 x 2 + 100 x 15_000_000 = 2_500_000_000;
    # e: 1000 x 150_000 + 1000 x 75_000 + 1000 x 600_000 = 825_000_000
    expected = [24_000_000_000, 1_204_506_000_000, 5_500_000_000, 2_500_000_000, 825_000_000, 26_400_000_000]
    assert via_litellm == via_book == expected


# As LiteLLM lists Claude Sonnet 4.5: a >200k tier with a 5-minute write and a read, but no
# cache_creation_input_token_cost_above_1hr_above_200k_tokens.
LITELLM_SONNET_45 = {
    "claude-sonnet-4-5": {
        k: v for k, v in LITELLM["claude-sonnet-4-20250514"].items() if k != "cache_creation_input_token_cost_above_1hr_above_200k_tokens"
    },
    # A tier with input and output only: every cache price is derived (ratio 2.2 / 1.1 = 2).
    "tiered-mini": {
        "litellm_provider": "openai",
        "mode": "chat",
        "input_cost_per_token": 1.1e-06,
        "output_cost_per_token": 4.4e-06,
        "cache_read_input_token_cost": 2.75e-07,
        "input_cost_per_token_above_128k_tokens": 2.2e-06,
        "output_cost_per_token_above_128k_tokens": 8.8e-06,
    },
}


def test_litellm_tier_without_1h_price_derives_it_from_the_tier_input_ratio(tmp_path, book):
    src = write(tmp_path, "prices.json", json.dumps(LITELLM_SONNET_45))
    text, skipped = import_litellm(src, source_date=dt.date(2025, 11, 24))
    assert skipped == []
    imported = load_price_book([write(tmp_path, "imported.toml", text)], include_default=False, use_env=False)
    sonnet = imported.periods.filter(pl.col("price_model") == "claude-sonnet-4-5").row(0, named=True)
    # 1h write above 200k: 6 x 6/3 = 12 USD/MTok (not the base 6, below the tier's own 5m 7.50)
    assert [sonnet[f"long_context_{k}"] for k in PRICE_KEYS] == [6_000_000, 22_500_000, 7_500_000, 12_000_000, 600_000]
    assert "cache_write_1h not listed; derived as base 6 x tier input ratio 6/3 = 12 USD/MTok" in imported.info["claude-sonnet-4-5"]["note"]
    mini = imported.periods.filter(pl.col("price_model") == "tiered-mini").row(0, named=True)
    assert mini["long_context_threshold"] == 128_000
    # base cache writes default to input 1.10 -> 2.20; read 0.275 -> 0.55
    assert [mini[f"long_context_{k}"] for k in PRICE_KEYS] == [2_200_000, 8_800_000, 2_200_000, 2_200_000, 550_000]
    above = msg("claude-sonnet-4-5-20250929", d(2025, 10, 1), input=150_001, cw=30_000, cw1h=10_000, cr=20_000, out=1000)
    # 150_001 x 6_000_000 + 20_000 x 7_500_000 + 10_000 x 12_000_000 + 20_000 x 600_000
    #   + 1000 x 22_500_000 = 1_204_506_000_000 (with the base 1h price: 1_144_506_000_000)
    assert priced(imported, above)["cost_pico_usd"].to_list() == priced(book, above)["cost_pico_usd"].to_list() == [1_204_506_000_000]


def test_cli_show_lists_every_period_and_long_context_tier():
    res = CliRunner().invoke(prices, ["show"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    header = lines[2].split()
    assert header[:4] == ["model", "periods", "from", "to"] and "long_context" in header
    cols = {name: [line.split() for line in lines if line.split()[:1] == [name]] for name in ("o3", "claude-sonnet-4-5")}
    # o3: its launch period (10/40 until 2025-06-10) and the current one on the next line
    assert cols["o3"] == [["o3", "2", "2025-04-16", "2025-06-10", "10", "40", "10", "10", "2.5", "-"]]
    following = lines[lines.index(next(x for x in lines if x.startswith("o3 "))) + 1].split()
    assert following == ["2025-06-10", "open", "2", "8", "2", "2", "0.5", "-"]
    assert cols["claude-sonnet-4-5"][0][1:10] == ["1", "2025-09-29", "open", "3", "15", "3.75", "6", "0.3", ">200000:"]
    assert cols["claude-sonnet-4-5"][0][10] == "6/22.5/7.5/12/0.6"


def test_cli_show_and_import(tmp_path):
    runner = CliRunner()
    res = runner.invoke(prices, ["show", "anthropic/claude-sonnet-4-20250514"])
    assert res.exit_code == 0, res.output
    assert "-> 'claude-sonnet-4'" in res.output
    assert "prompt > 200000 tokens: input=6  output=22.5" in res.output
    res = runner.invoke(prices, ["show", "no-such-model"])
    assert res.exit_code == 1
    src = write(tmp_path, "prices.json", json.dumps(LITELLM))
    out = tmp_path / "out.toml"
    res = runner.invoke(prices, ["import-litellm", str(src), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "imported 5 models, skipped 6 keys" in res.output
    assert "not chat: 2" in res.output
    assert load_price_book([out], include_default=False, use_env=False).models


def test_override_without_periods_adds_aliases_only(tmp_path):
    path = write(tmp_path, "alias.toml", '[models.gpt-5]\naliases = ["house-gpt", "gpt-5-chat"]\n')
    book = load_price_book([path], use_env=False)
    out = priced(book, msg("House-GPT", d(2025, 9, 1), input=1000))
    # shipped gpt-5 period kept: 1000 x 1_250_000 = 1_250_000_000
    assert out["price_model"].to_list() == ["gpt-5"]
    assert out["cost_pico_usd"].to_list() == [1_250_000_000]
