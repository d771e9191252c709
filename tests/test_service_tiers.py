"""Service tiers: read from the payloads, priced at their own rates (never the standard rate),
a breakdown dimension; several long-context thresholds.

Costs are hand-computed in micro-USD (tokens x USD per million tokens) or pico-USD per token.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import polars as pl
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from tests.rows import anthropic, insert, msg, openai, utc
from tests.usage_helpers import settings_for
from usage_etl import pipeline
from usage_etl.defs import partitions
from usage_etl.pricing.book import load_price_book, price_messages
from usage_etl.service_tier import STANDARD_TIER, canonical_service_tier
from usage_etl.source_config import FieldRef, SourceConfig

DAY = dt.date(2026, 11, 2)


def _rows():
    def oa(tier):
        return {**openai(1000, 500, cached=200), "service_tier": tier}

    def an(tier):
        m = anthropic(1000, 200)
        m["usage"]["service_tier"] = tier
        return m

    at = utc(2026, 11, 2, 10)
    return [
        msg(1, at, oa("flex"), model="gpt-5.4"),
        msg(1, at, oa("priority"), model="gpt-5.4-2026-03-05"),
        msg(1, at, oa("default"), model="gpt-5.4"),
        msg(1, at, an("batch"), model="claude-sonnet-4-6"),
        msg(1, at, an("priority"), model="claude-sonnet-4-6"),  # Anthropic publishes no priority token price
    ]


def _run(engine, db_url, source):
    settings = settings_for(db_url, source, start=dt.date(2026, 11, 1))
    insert(engine, settings, _rows())
    p = partitions.build(settings)
    return pipeline.run_daily(engine, db_url, settings, load_price_book(use_env=False), partitions.window(p["daily"], "daily", DAY.isoformat()))


def test_served_tiers_priced_at_their_rates_and_a_breakdown_dimension(engine, db_url):
    source = SourceConfig.default().model_copy(
        update={"breakdowns": {"service_tier": FieldRef(column="metadata", path=("service_tier",))}}
    )
    result = _run(engine, db_url, source)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT value, message_count, cost_usd, unpriced_message_count FROM user_token_usage_by_dimension "
            "WHERE dimension = 'service_tier' AND period_type = 'daily' ORDER BY value"
        )).all()
        total = conn.execute(sa.text("SELECT cost_usd, unpriced_message_count FROM user_token_usage WHERE period_type = 'daily'")).one()
    # gpt-5.4, prompt 1000 of which 200 cached -> input 800, cache read 200, output 500:
    #   flex     800 x 1.25 + 200 x 0.13 + 500 x 7.5 = 1000 + 26 + 3750 = 4776 micro-USD
    #   priority 800 x 5    + 200 x 0.5  + 500 x 30  = 4000 + 100 + 15000 = 19100
    #   default  800 x 2.5  + 200 x 0.25 + 500 x 15  = 2000 + 50 + 7500 = 9550 (standard)
    # claude-sonnet-4-6, input 1000, output 200:
    #   batch    1000 x 1.5 + 200 x 7.5 = 1500 + 1500 = 3000; priority: no price -> unpriced
    assert rows == [
        ("batch", 1, Decimal("0.003000"), 0),
        ("flex", 1, Decimal("0.004776"), 0),
        ("priority", 2, Decimal("0.019100"), 1),
        ("standard", 1, Decimal("0.009550"), 0),
    ]
    assert total == (Decimal("0.036426"), 1)
    assert result.unpriced_models == ["claude-sonnet-4-6"]


def test_tiers_are_priced_without_the_breakdown(engine, db_url):
    _run(engine, db_url, None)  # the default mapping: no breakdowns
    with engine.connect() as conn:
        total = conn.execute(sa.text("SELECT cost_usd, unpriced_message_count FROM user_token_usage WHERE period_type = 'daily'")).one()
        dims = conn.execute(sa.text("SELECT count(*) FROM user_token_usage_by_dimension")).scalar_one()
    assert total == (Decimal("0.036426"), 1)
    assert dims == 0


SPELLINGS = [(None, "standard"), ("", "standard"), (" Default ", "standard"), ("auto", "standard"), ("standard_only", "standard"),
             ("STANDARD", "standard"), ("flex", "flex"), (" Priority", "priority"), ("batch", "batch"), ("scale", "scale")]


def test_canonical_service_tier():
    got = pl.DataFrame({"t": [s for s, _ in SPELLINGS]}, schema={"t": pl.String}).select(canonical_service_tier(pl.col("t")))
    assert got["t"].to_list() == [w for _, w in SPELLINGS]


# Reported values are ASCII words in practice; Python's and Polars' whitespace sets differ beyond.
@given(st.lists(st.one_of(st.none(), st.sampled_from(["default", "flex", "Priority ", " auto"]),
                          st.text(st.characters(min_codepoint=32, max_codepoint=126) | st.sampled_from("\t\n"), max_size=12)),
                max_size=30))
def test_property_canonical_tier_is_never_null_and_idempotent(values):
    s = pl.DataFrame({"t": values}, schema={"t": pl.String})
    once = s.select(canonical_service_tier(pl.col("t")))["t"]
    twice = once.to_frame().select(canonical_service_tier(pl.col("t")))["t"]
    assert once.null_count() == 0 and once.to_list() == twice.to_list()
    for raw, c in zip(values, once.to_list(), strict=True):
        assert c == STANDARD_TIER or c == raw.strip().lower()


TIERED = """
[[models.m.periods]]
effective_from = 2026-01-01
input = 2
output = 10
cache_write_5m = 2
cache_write_1h = 2
cache_read = 0.2
long_context = [{ threshold = 272000, input = 4, output = 15 }, { threshold = 128000, input = 3, output = 12 }]
service_tiers.flex = { input = 1, output = 5, long_context = { threshold = 272000, input = 2, output = 7.5 } }
service_tiers.priority = { input = 4, output = 20 }
"""


def test_several_thresholds_and_tier_specific_levels(tmp_path):
    path = tmp_path / "tiered.toml"
    path.write_text(TIERED, encoding="utf-8")
    book = load_price_book([path], include_default=False, use_env=False)

    def row(prompt, tier):
        return {"model": "m", "created_at": utc(2026, 3, 1), "service_tier": tier, "input_tokens": prompt - 1000,
                "cache_creation_input_tokens": 0, "cache_creation_1h_input_tokens": 0, "cache_read_input_tokens": 1000,
                "output_tokens": 100}

    cases = [(128_000, "standard"), (128_001, "standard"), (272_000, "standard"), (272_001, "standard"),
             (272_001, "flex"), (300_000, "priority"), (1000, "scale")]
    out = price_messages(pl.LazyFrame([row(p, t) for p, t in cases]), book).collect()["cost_pico_usd"].to_list()
    # pico-USD per token; cache read scales with the level's input (0.2 x level input / 2):
    # 128_000 base:   127_000 x 2e6 + 1000 x 200_000 + 100 x 10e6 = 254e9 + 0.2e9 + 1e9
    # 128_001 >128k:  127_001 x 3e6 + 1000 x 300_000 + 100 x 12e6 = 381.003e9 + 0.3e9 + 1.2e9
    # 272_000 >128k:  271_000 x 3e6 + 0.3e9 + 1.2e9
    # 272_001 >272k:  271_001 x 4e6 + 1000 x 400_000 + 100 x 15e6 = 1_084.004e9 + 0.4e9 + 1.5e9
    # flex >272k:     271_001 x 2e6 + 1000 x 200_000 + 100 x 7.5e6 = 542.002e9 + 0.2e9 + 0.75e9
    # priority flat:  299_000 x 4e6 + 1000 x 400_000 + 100 x 20e6 = 1_196e9 + 0.4e9 + 2e9
    # scale: no price in the book -> unpriced, not the standard rate
    assert out == [255_200_000_000, 382_503_000_000, 814_500_000_000, 1_085_904_000_000, 542_952_000_000,
                   1_198_400_000_000, None]
