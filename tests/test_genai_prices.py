"""The default book against genai-prices: same file as a rebuild, same cost as calc_price for
every model both know, and the documented, tested exceptions where genai-prices is wrong.

Costs compare exactly: our integer pico-USD vs genai-prices' Decimal USD x 10^12.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from pathlib import Path

import genai_prices
import polars as pl
import pytest
from click.testing import CliRunner
from genai_prices import types as gt
from genai_prices.data import providers as GENAI_PROVIDERS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from usage_etl.pricing import genai as gpi
from usage_etl.cli.prices import prices
from usage_etl.pricing.book import load_price_book, price_messages, resolve_model

UTC = dt.timezone.utc
PACKAGED = Path(gpi.__file__).parents[1] / "prices" / "default.toml"
VERIFIED = gpi.load_verified()


@pytest.fixture(scope="module")
def book():
    return load_price_book(use_env=False)


def _genai_ids(book) -> dict[str, tuple[str, str]]:
    """Book entry -> (genai provider, genai model id), from the note the converter writes."""
    out = {}
    for name, info in book.info.items():
        m = re.match(r"genai-prices ([^/;]+)/([^;]+)", info["note"] or "")
        if m:
            out[name] = (m[1], m[2])
    return out


IDS = _genai_ids(load_price_book(use_env=False))
GENAI = {(p.id, m.id): (p, m) for p in GENAI_PROVIDERS for m in p.models}


def _context(tier: str) -> dict[str, str] | None:
    if tier == "standard":
        return None
    return {"processing": "batch"} if tier == "batch" else {"service_tier": tier}


def _genai_cost(pid: str, model_id: str, when: dt.datetime, tier: str, r: dict[str, int]) -> Decimal:
    usage = genai_prices.Usage(
        input_tokens=r["input_tokens"] + r["cache_creation_input_tokens"] + r["cache_read_input_tokens"],
        cache_write_tokens=r["cache_creation_input_tokens"],
        cache_write_1h_tokens=r["cache_creation_1h_input_tokens"],
        cache_read_tokens=r["cache_read_input_tokens"],
        output_tokens=r["output_tokens"],
    )
    provider, model = GENAI[(pid, model_id)]
    if model.is_match(model_id):
        return genai_prices.calc_price(usage, model_id, provider_id=pid, genai_request_timestamp=when,
                                       price_context=_context(tier)).total_price
    # A few ids are not matched by their own clauses (e.g. mistral 'codestral'): price the model itself.
    return model.calc_price(usage, provider, genai_request_timestamp=when, price_context=_context(tier)).total_price


def _row(model: str, when: dt.datetime, tier: str, prompt: int) -> dict:
    # prompt = input + cache writes + cache reads; 1-hour writes are part of the writes.
    return {
        "message_id": f"{model}-{when:%Y%m%d}-{tier}-{prompt}", "user_id": "u", "conversation_id": None, "agent_id": None,
        "model": model, "created_at": when, "status": "success", "service_tier": tier,
        "input_tokens": prompt - prompt // 2 - prompt // 4, "cache_creation_input_tokens": prompt // 4,
        "cache_creation_1h_input_tokens": prompt // 10, "cache_read_input_tokens": prompt // 2,
        "output_tokens": 1234, "reasoning_tokens": 0, "paid_amount": None,
    }


def _compared_from(name: str) -> dt.datetime | None:
    """From when our book must agree with genai-prices for `name` (None: never, see verified.toml)."""
    fix = VERIFIED.get(name)
    if fix is None:
        return dt.datetime(1970, 1, 1, tzinfo=UTC)
    own = fix.get("periods", [])
    if own and own[-1].get("effective_to") is None:
        return None
    day = own[-1]["effective_to"] if own else fix["launch"]
    return dt.datetime(day.year, day.month, day.day, tzinfo=UTC)


def _cases(book, name: str) -> list[dict]:
    """One message per (period, service tier, prompt level): at 12:00 on the period's first
    compared day, with a prompt just above each tier threshold and a small one."""
    start = _compared_from(name)
    rates = book.rates.filter(pl.col("price_model") == name)
    rows = []
    for r in rates.iter_rows(named=True):
        frm = max(r["effective_from"], start)
        if r["effective_to"] is not None and frm >= r["effective_to"]:
            continue
        when = frm + dt.timedelta(hours=12) if frm.year > 1970 else dt.datetime(2024, 6, 1, 12, tzinfo=UTC)
        if r["effective_to"] is not None and when >= r["effective_to"]:
            when = r["effective_to"] - dt.timedelta(hours=12)
        prompt = 5000 if r["prompt_above"] < 0 else r["prompt_above"] + 1
        rows.append(_row(name, when, r["service_tier"], prompt))
    return rows


COMPARED = sorted(n for n in IDS if _compared_from(n) is not None)


def test_packaged_default_book_is_a_rebuild_of_the_installed_genai_prices():
    # Fails when genai-prices (uv.lock) or verified.toml changed and the book was not rebuilt:
    # run `usage-etl prices build-default` and commit the diff.
    result = gpi.build_default_book()
    assert PACKAGED.read_text(encoding="utf-8") == result.text
    assert f"genai-prices {genai_prices.__version__} (data digest {gpi.genai_data_digest()})" in result.text
    res = CliRunner().invoke(prices, ["build-default", "--check"])
    assert res.exit_code == 0, res.output


def test_every_shared_model_is_compared(book):
    # Every genai-prices model of the default providers is in the book or skipped with a reason.
    result = gpi.build_default_book()
    imported = {IDS[n] for n in IDS}
    skipped = {tuple(ref.split("/", 1)) for ref, _ in result.skipped}
    expected = {(p.id, m.id) for p in GENAI_PROVIDERS if p.id in gpi.DEFAULT_PROVIDERS for m in p.models}
    assert imported | skipped == expected and not imported & skipped
    assert len(COMPARED) >= 240
    reasons = {reason.split(":")[0] for _, reason in result.skipped}
    assert reasons <= {"no price", "duplicate", "unsupported"}


@pytest.mark.parametrize("name", COMPARED)
def test_cost_equals_genai_calc_price(book, name):
    pid, model_id = IDS[name]
    rows = _cases(book, name)
    assert rows, name
    out = price_messages(pl.LazyFrame(rows), book).collect()
    for r, ours in zip(rows, out["cost_pico_usd"].to_list(), strict=True):
        theirs = _genai_cost(pid, model_id, r["created_at"], r["service_tier"], r)
        assert ours is not None, (name, r["created_at"], r["service_tier"])
        assert Decimal(ours) / 10**12 == theirs, (name, r["created_at"], r["service_tier"], r["input_tokens"])


def test_names_resolve_to_the_model_genai_prices_finds(book):
    # Every model id and `equals` name genai-prices knows for an imported model resolves to it.
    def equals(c):
        if type(c).__name__ == "ClauseOr":
            for s in c.or_:
                yield from equals(s)
        elif type(c).__name__ == "ClauseEquals":
            yield c.equals

    back = {v: k for k, v in IDS.items()}
    names, want = [], []
    for p in GENAI_PROVIDERS:
        if p.id not in gpi.DEFAULT_PROVIDERS:
            continue
        for m in p.models:
            for n in [m.id, *equals(m.match)]:
                found = p.find_model(n.lower())
                if found is not None and (p.id, found.id) in back and "/" not in n:
                    names.append(n)
                    want.append(back[(p.id, found.id)])
    got = pl.DataFrame({"m": names}).select(resolve_model(pl.col("m"), book))["m"].to_list()
    assert len(names) > 600
    assert [(n, g) for n, g, w in zip(names, got, want, strict=True) if g != w] == []


# ---------------------------------------------------------------------------------------------
# Documented exceptions (docs/pricing.md, "Where genai-prices and this book differ")
# ---------------------------------------------------------------------------------------------


def _cost(book, row) -> int | None:
    return price_messages(pl.LazyFrame([row]), book).collect()["cost_pico_usd"].item()


def test_service_tier_before_genai_prices_has_its_price_is_unpriced_not_standard(book):
    # genai-prices' gpt-5 flex variant starts 2026-10-12 ("tier history before this verification
    # is not modeled"); before it calc_price falls back to the standard rate. OpenAI bills flex at
    # its own (lower) rate, so the standard rate would be wrong: we leave it unpriced.
    before = dt.datetime(2026, 10, 11, 12, tzinfo=UTC)
    row = _row("gpt-5", before, "flex", 1000)
    assert _cost(book, row) is None
    r = {k: row[k] for k in row}
    assert _genai_cost("openai", "gpt-5", before, "flex", r) == _genai_cost("openai", "gpt-5", before, "standard", r)
    # From 2026-10-12 both price flex at half the standard rate:
    # input 250 x 625_000 + cache read 500 x 62_500 + (cache writes: OpenAI has none, 250 at input
    # 625_000) + output 1234 x 5_000_000 = 156_250_000 + 31_250_000 + 156_250_000 + 6_170_000_000
    after = _row("gpt-5", dt.datetime(2026, 10, 12, 12, tzinfo=UTC), "flex", 1000)
    assert _cost(book, after) == 6_513_750_000
    assert _genai_cost("openai", "gpt-5", after["created_at"], "flex", after) == Decimal("0.00651375")


def test_launch_dates_leave_earlier_usage_unpriced(book):
    # genai-prices applies a model's first price to all earlier usage; bare gpt-4o meant the
    # $5 / $15 snapshot before 2024-08-06, so pricing it at $2.50 / $10 would read low.
    row = _row("gpt-4o", dt.datetime(2024, 7, 1, tzinfo=UTC), "standard", 1000)
    assert _cost(book, row) is None
    assert _genai_cost("openai", "gpt-4o", row["created_at"], "standard", row) > 0
    row = _row("gpt-4o", dt.datetime(2024, 8, 6, tzinfo=UTC), "standard", 1000)
    assert _cost(book, row) == _genai_cost("openai", "gpt-4o", row["created_at"], "standard", row) * 10**12


def test_o3_launch_cached_input_and_sonnet_4_long_context_from_verified_corrections(book):
    # o3 before the 2025-06-10 cut: cached input 2.50 (OpenAI's launch price), genai-prices 0.50.
    # input 250 x 10_000_000 + writes 250 x 10_000_000 + reads 500 x 2_500_000 + output 1234 x
    # 40_000_000 = 2_500_000_000 + 2_500_000_000 + 1_250_000_000 + 49_360_000_000
    o3 = _row("o3", dt.datetime(2025, 5, 1, tzinfo=UTC), "standard", 1000)
    assert _cost(book, o3) == 55_610_000_000
    assert _genai_cost("openai", "o3", o3["created_at"], "standard", o3) * 10**12 == 55_610_000_000 - 500 * 2_000_000
    # Sonnet 4 above 200k prompt tokens: Anthropic's long-context rates (6 / 22.50, cache 7.50 /
    # 12 / 0.60); genai-prices has none for Sonnet 4. Prompt 200_001: input 50_001, writes 50_000
    # (20_000 of them 1-hour), reads 100_000, output 1234:
    # 50_001 x 6_000_000 + 30_000 x 7_500_000 + 20_000 x 12_000_000 + 100_000 x 600_000
    # + 1234 x 22_500_000 = 300_006_000_000 + 225_000_000_000 + 240_000_000_000 + 60_000_000_000
    # + 27_765_000_000 = 852_771_000_000
    s4 = {**_row("claude-sonnet-4-20250514", dt.datetime(2025, 9, 1, tzinfo=UTC), "standard", 200_001),
          "cache_creation_1h_input_tokens": 20_000}
    assert (s4["input_tokens"], s4["cache_creation_input_tokens"], s4["cache_read_input_tokens"]) == (50_001, 50_000, 100_000)
    assert _cost(book, s4) == 852_771_000_000
    base = _genai_cost("anthropic", "claude-sonnet-4-0", s4["created_at"], "standard", s4)
    assert base * 10**12 == 50_001 * 3_000_000 + 30_000 * 3_750_000 + 20_000 * 6_000_000 + 100_000 * 300_000 + 1234 * 15_000_000


def test_whole_request_long_context_tier_agrees_with_genai_prices(book):
    # Both charge every token of a request whose prompt is strictly above the threshold at the
    # tier's prices (Anthropic: "all tokens incur premium rates"; OpenAI GPT-5.4: above 272k).
    when = dt.datetime(2026, 11, 2, tzinfo=UTC)
    for model, pid, thr in (("claude-sonnet-4-5", "anthropic", 200_000), ("gpt-5.4", "openai", 272_000)):
        at, above = _row(model, when, "standard", thr), _row(model, when, "standard", thr + 1)
        c_at, c_above = _cost(book, at), _cost(book, above)
        assert Decimal(c_at) / 10**12 == _genai_cost(pid, model, when, "standard", at)
        assert Decimal(c_above) / 10**12 == _genai_cost(pid, model, when, "standard", above)
        # one more prompt token at least doubles the input part of the bill
        assert c_above > c_at * 3 // 2


def _one_model_provider(pid: str, **prices) -> list:
    model = gt.ModelInfo(id="test-model", match=gt.ClauseEquals(equals="test-model"),
                         prices=gt.ModelPrice(**{k: Decimal(v) for k, v in prices.items()}))
    return [gt.Provider(id=pid, name=pid, api_pattern="x", models=[model])]


def test_one_hour_write_of_an_anthropic_model_without_a_listed_price_is_twice_input(tmp_path):
    # genai-prices charges 1-hour writes at the 5-minute price when it lists no 1-hour price;
    # Anthropic publishes 1-hour writes at 2 x input, so the converter states 2 x input (noted).
    data = _one_model_provider("anthropic", input_mtok="3", output_mtok="15", cache_write_mtok="3.75", cache_read_mtok="0.3")
    anthropic = gpi.convert_genai_prices(["anthropic"], data=data)
    assert "cache_write_1h = 6\n" in anthropic.text and "2 x input (Anthropic's published rule)" in anthropic.text
    other = gpi.convert_genai_prices(["acme"], data=_one_model_provider("acme", input_mtok="3", output_mtok="15", cache_write_mtok="3.75"))
    assert "cache_write_1h = 3.75\n" in other.text and "cache_read = 3\n" in other.text


def test_stale_correction_fails_the_build():
    data = _one_model_provider("openai", input_mtok="1", output_mtok="2")
    with pytest.raises(ValueError, match="'gone-model' is not a model imported from genai-prices"):
        gpi.convert_genai_prices(["openai"], verified={"gone-model": {"launch": dt.date(2025, 1, 1)}}, data=data)
    with pytest.raises(ValueError, match="unknown genai-prices provider 'nope'"):
        gpi.convert_genai_prices(["nope"], data=data)


# ---------------------------------------------------------------------------------------------
# Property: any usage, any shared model and tier in effect -> the same cost as genai-prices
# ---------------------------------------------------------------------------------------------

PROPERTY_MODELS = ["claude-sonnet-4-6", "claude-opus-4-6", "claude-sonnet-4-5", "claude-haiku-4-5", "gpt-5.4", "gpt-5.5",
                   "gpt-5.4-mini", "o4-mini", "gpt-5.6-sol"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    model=st.sampled_from(PROPERTY_MODELS),
    day=st.dates(dt.date(2025, 10, 16), dt.date(2026, 11, 30)),
    tier=st.sampled_from(["standard", "flex", "priority", "batch"]),
    tokens=st.tuples(*[st.integers(0, 400_000)] * 3, st.integers(0, 100), st.integers(0, 200_000)),
)
def test_property_cost_equals_genai_prices_whenever_the_tier_is_priced(book, model, day, tier, tokens):
    inp, cw, cr, pct_1h, out = tokens
    when = dt.datetime(day.year, day.month, day.day, 15, tzinfo=UTC)
    row = {**_row(model, when, tier, 0), "input_tokens": inp, "cache_creation_input_tokens": cw,
           "cache_creation_1h_input_tokens": cw * pct_1h // 100, "cache_read_input_tokens": cr, "output_tokens": out}
    ours = _cost(book, row)
    pid, model_id = IDS[model]
    _, info = GENAI[(pid, model_id)]
    offered = tier == "standard" or any(
        gpi._tier_name(v.when) == tier and (v.constraint is None or v.constraint.active(when)) for v in info.price_variants or ()
    )
    if not offered:
        assert ours is None  # never the standard rate for a tier without its own price
        return
    assert Decimal(ours) / 10**12 == _genai_cost(pid, model_id, when, tier, row)
