"""`usage-etl prices coverage` over a real source table and grain."""

from __future__ import annotations

import datetime as dt
import re

from click.testing import CliRunner

from tests.rows import anthropic, insert, msg, openai
from tests.usage_helpers import settings_for
from usage_etl import pipeline, sample
from usage_etl.defs import partitions
from usage_etl.cli import main
from usage_etl.settings import Settings
from usage_etl.pricing.book import load_price_book


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(minutes=5)


def test_coverage_lists_each_model_with_how_it_is_priced(engine, db_url):
    at = _now()
    flex = {**openai(1000, 100, cached=0), "service_tier": "flex"}
    pri = anthropic(10, 5)
    pri["usage"]["service_tier"] = "priority"
    insert(engine, Settings(), [
        msg(1, at, anthropic(100, 50, cache_write=30, cache_read=20), model="claude-sonnet-4-6"),
        msg(1, at, anthropic(100, 50), model="claude-sonnet-4-6-20260217"),
        msg(2, at, pri, model="claude-sonnet-4-6"),
        msg(2, at, flex, model="openai/gpt-5.4"),
        msg(2, at, anthropic(7, 3), model="mystery-model"),
    ])
    res = CliRunner().invoke(main, ["prices", "coverage", "--days", "2"])
    assert res.exit_code == 0, res.output
    lines = [re.sub(r"\s{2,}", " | ", line) for line in res.output.splitlines()]
    book = load_price_book(use_env=False)
    today = dt.datetime.now(dt.timezone.utc).date()
    assert lines[0] == f"price book {book.version}; source {today - dt.timedelta(days=1)} .. {today} (UTC)"
    # tokens: 100+30+20+50 = 200, 150, 15 (claude-sonnet-4-6 rows: 200 + 15 = 215); gpt 1100; mystery 10
    assert lines[1:] == [
        "model | messages | tokens | priced | price_model | match | unpriced reasons",
        "claude-sonnet-4-6 | 2 | 215 | 50.00% | claude-sonnet-4-6 | name | no priority price: 1",
        "claude-sonnet-4-6-20260217 | 1 | 150 | 100.00% | claude-sonnet-4-6 | name, suffix stripped | -",
        "mystery-model | 1 | 10 | 0.00% | - | none | unknown model: 1",
        "openai/gpt-5.4 | 1 | 1,100 | 100.00% | gpt-5.4 | name | -",
        "priced share: 60.00% of 5 messages in 4 models",
    ]


def test_sample_data_priced_share_at_least_99_9_percent_with_no_hand_written_price(engine, db_url):
    # The default book only (generated from genai-prices): no override file.
    today = dt.datetime.now(dt.timezone.utc).date()
    frame = sample.generate_frame(sample.SampleSpec(users=40, days=3, messages_per_day=2000, seed=3, end=today + dt.timedelta(days=1)))
    settings = settings_for(db_url, None, start=today - dt.timedelta(days=10))
    sample.write(engine, settings, frame)
    res = CliRunner().invoke(main, ["prices", "coverage", "--days", "3"])
    assert res.exit_code == 0, res.output
    rows = {line.split()[0]: line for line in res.output.splitlines()[2:-1]}
    # floor(0.0005 x 2000) = 1 message a day on the one model without a price
    assert "unknown model: 3" in rows[sample.UNPRICED_MODEL]
    assert set(rows) == {m for m, _, _ in sample.MODELS} | {sample.UNPRICED_MODEL}
    assert all(" 100.00% " in line for m, line in rows.items() if m != sample.UNPRICED_MODEL)
    m = re.match(r"priced share: (\d+\.\d+)% of ([\d,]+) messages in 11 models$", res.output.splitlines()[-1])
    assert m, res.output
    messages = int(m[2].replace(",", ""))
    assert m[1] == f"{100 * (messages - 3) / messages:.2f}" and float(m[1]) >= 99.9
    # The grain agrees once the days are materialized.
    p = partitions.build(settings)
    for day in (today - dt.timedelta(days=2), today - dt.timedelta(days=1)):
        pipeline.run_daily(engine, db_url, settings, load_price_book(use_env=False), partitions.window(p["daily"], "daily", day.isoformat()))
    grain = CliRunner().invoke(main, ["prices", "coverage", "--days", "3", "--from", "grain"])
    assert grain.exit_code == 0, grain.output
    assert "unknown model: " not in grain.output and f"priced by book {load_price_book(use_env=False).version}" in grain.output
    assert re.search(r"^llama-3\.1-70b-instruct\s+2\s", grain.output, re.M)
