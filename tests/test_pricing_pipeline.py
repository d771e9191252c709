"""Pricing through the whole pipeline and Dagster: price book provenance on every row, a price
change on the 15th, staleness after a book change, `usage-etl reprice`, paid vs estimated.

Costs are hand-computed in micro-USD from USD per million tokens (tokens x price = micro-USD).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import dagster as dg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from usage_etl.defs.dagster_internals import StaleStatus, get_stale_status_resolver

from tests.rows import anthropic, insert, msg, openai, uid, utc
from usage_etl import pipeline, reports
from usage_etl.checks import runner as check_runner
from usage_etl.defs import partitions
from usage_etl.defs import runs
from usage_etl.defs.assets import build_assets
from usage_etl.cli import main
from usage_etl.pricing.book import ENV_VAR, load_price_book
from usage_etl.defs.reprice import reprice
from usage_etl.defs.resources import PostgresResource

MINI_CUT_ON_THE_15TH = """
[[models."gpt-4.1-mini".periods]]
effective_from = 2025-04-14
effective_to = 2026-03-15
input = 0.40
output = 1.60
cache_write_5m = 0.40
cache_write_1h = 0.40
cache_read = 0.10

[[models."gpt-4.1-mini".periods]]
effective_from = 2026-03-15
input = 0.20
output = 0.80
cache_write_5m = 0.20
cache_write_1h = 0.20
cache_read = 0.05
"""

# gpt-4.1-mini at half price for all time, and a price for a model the packaged book lacks.
MINI_HALF_AND_ACME = """
[[models."gpt-4.1-mini".periods]]
effective_from = 2025-04-14
input = 0.20
output = 0.80
cache_write_5m = 0.20
cache_write_1h = 0.20
cache_read = 0.05

[[models."acme-llm".periods]]
effective_from = 2026-01-01
input = 1
output = 2
cache_write_5m = 1
cache_write_1h = 1
cache_read = 0.5
"""


@pytest.fixture(autouse=True)
def _no_env_book(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


def override(tmp_path, monkeypatch, text: str):
    """Write an override price book, point USAGE_ETL_PRICE_BOOK at it, return the loaded book."""
    path = tmp_path / "override.toml"
    path.write_text(text)
    monkeypatch.setenv(ENV_VAR, str(path))
    book = load_price_book()
    assert book.files[-1] == str(path)
    return book


def rows(engine, sql: str) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text(sql))]


def resources(db_url):
    return {"db": PostgresResource(database_url=db_url.render_as_string(hide_password=False))}


def materialize(assets, granularity, first, last, settings, inst, db_url):
    keys = runs.partition_keys(granularity, first, last, settings)
    [result] = runs.materialize_range(granularity, keys, inst=inst, resources=resources(db_url), assets=assets)
    assert result.success
    return keys


def sonnet_with_1h_cache(paid: float | str | None = None) -> dict:
    usage = {
        "input_tokens": 100,
        "output_tokens": 10,
        "cache_creation_input_tokens": 1000,
        "cache_read_input_tokens": 2000,
        "cache_creation": {"ephemeral_1h_input_tokens": 400},
    }
    return {"usage": usage, **({"amount_paid": paid} if paid is not None else {})}


# Local (business timezone) day of each message of the 15th scenario, and the daily cost of user 1.
# UTC: the price changes at local midnight. Tokyo (UTC+9): local 15 March runs from 14 March
# 15:00 UTC, so one daily partition holds messages at both prices and must split them per message.
SCENARIO_15TH = {
    "UTC": {"2026-03-14": "0.001540", "2026-03-15": "0.000200", "2026-03-16": "0.001050"},
    "Asia/Tokyo": {"2026-03-14": "0.001140", "2026-03-15": "0.000600", "2026-03-16": "0.001050"},
}


@pytest.mark.parametrize("tz", list(SCENARIO_15TH))
def test_price_change_on_the_15th_through_dagster(tz, engine, db_url, settings, tmp_path, monkeypatch):
    book = override(tmp_path, monkeypatch, MINI_CUT_ON_THE_15TH)
    assert book.version != load_price_book(use_env=False).version
    s = settings.replace(timezone=tz, start_date=date(2026, 3, 13))
    mini = "gpt-4.1-mini-2025-04-14"  # dated snapshot: resolves to gpt-4.1-mini
    insert(
        engine,
        s,
        [
            # old price, 0.40 / 1.60 / cached 0.10: 800 x 0.40 + 200 x 0.10 + 500 x 1.60 = 320 + 20 + 800 = 1140
            msg(1, utc(2026, 3, 14, 12), openai(1000, 500, cached=200), model=mini),
            # last microsecond-ish of the old price: 1000 x 0.40 = 400
            msg(1, utc(2026, 3, 14, 23, 59, 59), openai(1000, 0), model=mini),
            # first instant of the new price: 1000 x 0.20 = 200
            msg(1, utc(2026, 3, 15, 0, 0, 0), openai(1000, 0), model=mini),
            # new price: 1000 x 0.20 + 1000 x 0.05 + 1000 x 0.80 = 200 + 50 + 800 = 1050
            msg(1, utc(2026, 3, 16, 9), openai(2000, 1000, cached=1000), model=mini),
            # no price anywhere: counted, listed, never $0 silently
            msg(1, utc(2026, 3, 15, 10), anthropic(10, 10), model="acme-llm"),
            # Sonnet 4 with 5-minute and 1-hour cache writes: 100 x 3 + 600 x 3.75 + 400 x 6
            #   + 2000 x 0.30 + 10 x 15 = 300 + 2250 + 2400 + 600 + 150 = 5700
            msg(2, utc(2026, 3, 15, 12), sonnet_with_1h_cache(paid=0.006), model="claude-sonnet-4-20250514"),
        ],
    )
    assets = build_assets(s)
    inst = dg.DagsterInstance.ephemeral()
    materialize(assets, "daily", date(2026, 3, 13), date(2026, 3, 17), s, inst, db_url)
    materialize(assets, "monthly", date(2026, 3, 13), date(2026, 3, 17), s, inst, db_url)

    summary = rows(
        engine,
        "SELECT user_id, period_type, period_start, cost_usd, unpriced_message_count, paid_amount, price_book_version "
        "FROM user_token_usage ORDER BY user_id, period_type, period_start",
    )
    got = {
        (r["user_id"], r["period_type"], r["period_start"].astimezone(s.tz).date().isoformat()): (
            str(r["cost_usd"]), r["unpriced_message_count"], r["paid_amount"]
        )
        for r in summary
    }
    daily = SCENARIO_15TH[tz]
    assert got == {
        (uid(1), "daily", "2026-03-14"): (daily["2026-03-14"], 0, None),
        (uid(1), "daily", "2026-03-15"): (daily["2026-03-15"], 1, None),
        (uid(1), "daily", "2026-03-16"): (daily["2026-03-16"], 0, None),
        (uid(1), "monthly", "2026-03-01"): ("0.002790", 1, None),  # 1140 + 400 + 200 + 1050
        (uid(2), "daily", "2026-03-15"): ("0.005700", 0, Decimal("0.006000")),
        (uid(2), "monthly", "2026-03-01"): ("0.005700", 0, Decimal("0.006000")),
    }
    assert {r["price_book_version"] for r in summary} == {book.version}
    by_model = rows(
        engine,
        "SELECT model, cost_usd, unpriced_message_count, price_book_version FROM user_token_usage_by_model "
        "WHERE period_type = 'monthly' ORDER BY model",
    )
    assert [tuple(r.values()) for r in by_model] == [
        ("acme-llm", Decimal("0.000000"), 1, book.version),
        ("claude-sonnet-4-20250514", Decimal("0.005700"), 0, book.version),
        (mini, Decimal("0.002790"), 0, book.version),
    ]
    assert rows(engine, "SELECT DISTINCT price_book_version FROM user_conversation_day_usage") == [
        {"price_book_version": book.version}
    ]

    # The materializations name the unpriced model and the book that priced the range.
    # A range run: each day's materialization has that day's own figures.
    days = {r.asset_materialization.partition: r.asset_materialization.metadata
            for r in inst.fetch_materializations(dg.AssetKey("daily_user_usage"), limit=100).records}
    assert sorted(days) == ["2026-03-13", "2026-03-14", "2026-03-15", "2026-03-16", "2026-03-17"]
    assert days["2026-03-15"]["unpriced_models"].value == ["acme-llm"]
    assert "unpriced_models" not in days["2026-03-14"]
    assert {k: md["unpriced_messages"].value for k, md in days.items()} == {"2026-03-13": 0, "2026-03-14": 0, "2026-03-15": 1, "2026-03-16": 0, "2026-03-17": 0}
    assert {md["price_book_version"].value for md in days.values()} == {book.version}
    assert sum(md["cost_usd"].value for md in days.values()) == pytest.approx(0.00849)  # 2790 + 5700 micro-USD
    assert days["2026-03-15"]["cost_usd"].value == pytest.approx(float(Decimal(daily["2026-03-15"]) + Decimal("0.0057")))
    monthly = inst.get_latest_materialization_event(dg.AssetKey("monthly_user_usage")).asset_materialization.metadata
    assert monthly["price_book_versions"].value == [book.version]
    assert monthly["unpriced_models"].value == ["acme-llm"]


def test_book_change_makes_partitions_stale_and_rollups_list_both_versions(engine, db_url, settings, tmp_path, monkeypatch):
    s = settings.replace(start_date=date(2026, 3, 1))
    mini = "gpt-4.1-mini"
    # Old: 1000 x 0.40 + 1000 x 1.60 = 2000 micro-USD each; new (half): 1000 micro-USD each.
    insert(engine, s, [msg(1, utc(2026, 3, 2, 10), openai(1000, 1000), model=mini), msg(1, utc(2026, 3, 3, 10), openai(1000, 1000), model=mini)])
    old_book = load_price_book(use_env=False)
    new_book = override(tmp_path, monkeypatch, MINI_HALF_AND_ACME)
    old_assets, new_assets = build_assets(s, old_book), build_assets(s, new_book)
    inst = dg.DagsterInstance.ephemeral()
    first, last = date(2026, 3, 1), date(2026, 3, 3)
    daily, weekly, monthly = (dg.AssetKey(f"{g}_user_usage") for g in ("daily", "weekly", "monthly"))

    def status(assets, key, partition):
        """(status, [(reason, upstream partition or None)]) as the Dagster UI computes them."""
        resolver = get_stale_status_resolver(inst, assets)
        causes = resolver.get_stale_causes(key, partition)
        return resolver.get_status(key, partition), [(c.reason, c.dependency and c.dependency.partition_key) for c in causes]

    for g in runs.GRANULARITIES:
        materialize(old_assets, g, first, last, s, inst, db_url)
    assert status(old_assets, daily, "2026-03-02") == (StaleStatus.FRESH, [])
    assert status(old_assets, monthly, "2026-03-01") == (StaleStatus.FRESH, [])

    # An identical rerun writes the same grain: same data version, the rollups stay fresh.
    materialize(old_assets, "daily", first, last, s, inst, db_url)
    assert status(old_assets, monthly, "2026-03-01") == (StaleStatus.FRESH, [])
    assert status(old_assets, weekly, "2026-03-02") == (StaleStatus.FRESH, [])
    # Late-arriving data changes the grain of 3 March: same book, new data version, stale month.
    # One run covered the three days, so they share its data version and all three are named.
    insert(engine, s, [msg(2, utc(2026, 3, 3, 11), openai(1000, 1000), model=mini)])
    materialize(old_assets, "daily", first, last, s, inst, db_url)
    new_data = "has a new dependency data version"
    assert status(old_assets, monthly, "2026-03-01") == (
        StaleStatus.STALE, [(new_data, "2026-03-01"), (new_data, "2026-03-02"), (new_data, "2026-03-03")]
    )
    for g in ("weekly", "monthly"):
        materialize(old_assets, g, first, last, s, inst, db_url)
    assert status(old_assets, monthly, "2026-03-01") == (StaleStatus.FRESH, [])
    assert status(old_assets, weekly, "2026-03-02") == (StaleStatus.FRESH, [])

    # The code location now loads the new book: every materialized day is stale.
    for day in ("2026-03-01", "2026-03-02", "2026-03-03"):
        assert status(new_assets, daily, day) == (StaleStatus.STALE, [("has a new code version", None)])
    assert status(new_assets, monthly, "2026-03-01") == (StaleStatus.FRESH, [])

    # Reprice one day: it is fresh again, and the week and month over it are stale.
    materialize(new_assets, "daily", date(2026, 3, 2), date(2026, 3, 2), s, inst, db_url)
    assert status(new_assets, daily, "2026-03-02") == (StaleStatus.FRESH, [])
    assert status(new_assets, daily, "2026-03-03")[0] == StaleStatus.STALE
    for key, partition in ((monthly, "2026-03-01"), (weekly, "2026-03-02")):
        assert status(new_assets, key, partition) == (StaleStatus.STALE, [(new_data, "2026-03-02")])

    # Roll the month up: both books are recorded, sorted, and the cost is split per day.
    materialize(new_assets, "monthly", first, last, s, inst, db_url)
    assert status(new_assets, monthly, "2026-03-01") == (StaleStatus.FRESH, [])
    got = rows(engine, f"SELECT period_type, cost_usd, price_book_version FROM user_token_usage WHERE user_id = '{uid(1)}' ORDER BY period_type, period_start")
    both = ",".join(sorted([old_book.version, new_book.version]))
    assert [tuple(r.values()) for r in got] == [
        ("daily", Decimal("0.001000"), new_book.version),  # 2 March, repriced
        ("daily", Decimal("0.002000"), old_book.version),  # 3 March, not yet
        ("monthly", Decimal("0.003000"), both),
        ("weekly", Decimal("0.004000"), old_book.version),  # not rolled up again since
    ]
    md = inst.get_latest_materialization_event(monthly).asset_materialization.metadata
    assert md["price_book_versions"].value == sorted([old_book.version, new_book.version])


def test_reprice_command_prints_exact_cost_change_per_month(engine, db_url, settings, tmp_path, monkeypatch):
    monkeypatch.setenv("USAGE_ETL_START_DATE", "2026-03-01")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    (tmp_path / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    s = settings.replace(start_date=date(2026, 3, 1))
    insert(
        engine,
        s,
        [
            # 1000 x 3 + 500 x 15 = 10500 micro-USD under both books
            msg(1, utc(2026, 3, 31, 12), anthropic(1000, 500), model="claude-sonnet-4"),
            # packaged: 1000 x 0.40 + 1000 x 0.10 + 1000 x 1.60 = 2100; half: 200 + 50 + 800 = 1050
            msg(2, utc(2026, 3, 31, 8), openai(2000, 1000, cached=1000), model="gpt-4.1-mini"),
            # packaged: unpriced; override: 100 x 1 + 100 x 2 = 300
            msg(3, utc(2026, 3, 30, 8), anthropic(100, 100), model="acme-llm"),
            # April, Sonnet only: 2000 x 3 + 100 x 15 = 7500 under both books
            msg(1, utc(2026, 4, 1, 8), anthropic(2000, 100), model="claude-sonnet-4"),
        ],
    )
    old_book = load_price_book(use_env=False)
    inst = dg.DagsterInstance.ephemeral()
    first = reprice(engine, s, date(2026, 3, 30), date(2026, 4, 1), inst=inst, resources=resources(db_url), book=old_book)
    assert first.success
    assert {g: (k[0], k[-1], len(k)) for g, k in first.partitions.items()} == {
        "daily": ("2026-03-30", "2026-04-01", 3),
        "weekly": ("2026-03-30", "2026-03-30", 1),
        "monthly": ("2026-03-01", "2026-04-01", 2),
    }
    assert [(m.month, m.old, m.new.cost_usd, m.new.unpriced_messages) for m in first.months] == [
        (date(2026, 3, 1), None, Decimal("0.012600"), 1),
        (date(2026, 4, 1), None, Decimal("0.007500"), 0),
    ]

    new_book = override(tmp_path, monkeypatch, MINI_HALF_AND_ACME)
    out = CliRunner().invoke(main, ["reprice", "--start", "2026-03-30", "--end", "2026-04-01"])
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"price book {new_book.version} from usage_etl/prices/default.toml, ")
    table = lines[lines.index("cost change per month (monthly rows of user_token_usage, USD):") + 2 :]
    assert [line.split() for line in table] == [
        ["2026-03", "0.012600", "0.011850", "-0.000750", "1->0", old_book.version, "->", new_book.version],
        ["2026-04", "0.007500", "0.007500", "+0.000000", "0->0", old_book.version, "->", new_book.version],
        ["total", "-0.000750"],
    ]
    # the runs went through Dagster and are recorded in DAGSTER_HOME: daily, weekly, monthly
    assert len(runs.instance().get_runs()) == 3


def test_paid_amount_beside_cost_and_paid_vs_estimated_report(engine, db_url, settings):
    s = settings.replace(start_date=date(2026, 3, 1))

    def paid(meta: dict, amount) -> dict:
        return {**meta, "amount_paid": amount}

    sonnet = "claude-sonnet-4"
    insert(
        engine,
        s,
        [
            # user 1 paid 0.004 + 0.005 for two messages estimated at 1000 x 3 = 3000 micro-USD each
            msg(1, utc(2026, 3, 10, 1), paid(anthropic(1000, 0), 0.004), model=sonnet),
            msg(1, utc(2026, 3, 10, 2), paid(anthropic(1000, 0), 0.005), model=sonnet),
            # user 2 paid exactly the estimate, 1000 x 0.40 = 400 micro-USD (amount as a JSON string)
            msg(2, utc(2026, 3, 11, 1), paid(openai(1000, 0), "0.0004"), model="gpt-4.1-mini"),
            # user 3: a day without paid amounts (3000) and a day paying 0.001 for 2000 x 3 = 6000
            msg(3, utc(2026, 3, 10, 3), anthropic(1000, 0), model=sonnet),
            msg(3, utc(2026, 3, 11, 3), paid(anthropic(2000, 0), 0.001), model=sonnet),
            # user 4: no paid amount at all
            msg(4, utc(2026, 3, 11, 4), anthropic(1000, 0), model=sonnet),
            # unusable paid amounts are quarantined, not dropped from the paid sum silently
            msg(5, utc(2026, 3, 11, 5), paid(anthropic(1, 1), "abc"), model=sonnet, id=501),
            msg(5, utc(2026, 3, 11, 6), paid(anthropic(1, 1), -1), model=sonnet, id=502),
            msg(5, utc(2026, 3, 11, 7), paid(anthropic(1, 1), True), model=sonnet, id=503),
        ],
    )
    pdefs = partitions.build(s)
    book = load_price_book(use_env=False)
    for key in ("2026-03-10", "2026-03-11"):
        pipeline.run_daily(engine, db_url, s, book, partitions.window(pdefs["daily"], "daily", key))
    pipeline.run_rollup(engine, db_url, s, partitions.window(pdefs["monthly"], "monthly", "2026-03-01"))

    got = rows(engine, "SELECT user_id, period_type, period_start, cost_usd, paid_amount FROM user_token_usage ORDER BY 1, 2, 3")
    assert [(r["user_id"], r["period_type"], r["period_start"].day, r["cost_usd"], r["paid_amount"]) for r in got] == [
        (uid(1), "daily", 10, Decimal("0.006000"), Decimal("0.009000")),
        (uid(1), "monthly", 1, Decimal("0.006000"), Decimal("0.009000")),
        (uid(2), "daily", 11, Decimal("0.000400"), Decimal("0.000400")),
        (uid(2), "monthly", 1, Decimal("0.000400"), Decimal("0.000400")),
        (uid(3), "daily", 10, Decimal("0.003000"), None),  # nothing reported: NULL, not 0
        (uid(3), "daily", 11, Decimal("0.006000"), Decimal("0.001000")),
        (uid(3), "monthly", 1, Decimal("0.009000"), Decimal("0.001000")),
        (uid(4), "daily", 11, Decimal("0.003000"), None),
        (uid(4), "monthly", 1, Decimal("0.003000"), None),
    ]
    quarantined = rows(engine, "SELECT message_id, reason, detail FROM usage_quarantine ORDER BY message_id")
    assert [tuple(r.values()) for r in quarantined] == [
        (uid(501), "invalid_paid_amount", "paid_amount=abc"),
        (uid(502), "invalid_paid_amount", "paid_amount=-1"),
        (uid(503), "invalid_paid_amount", "paid_amount=true"),
    ]

    report = reports.paid_vs_estimated(engine, s, date(2026, 3, 1), date(2026, 3, 31), limit=2)
    assert [(r.user_id, r.estimated_usd, r.paid_amount, r.difference, r.ratio, r.days_with_paid) for r in report] == [
        (uid(3), Decimal("0.009000"), Decimal("0.001000"), Decimal("-0.008000"), Decimal("0.1111"), 1),
        (uid(1), Decimal("0.006000"), Decimal("0.009000"), Decimal("0.003000"), Decimal("1.5000"), 1),
    ]
    # The window is inclusive of --end and only reads daily rows: 10 March alone leaves user 2 and
    # user 3's paying day out.
    [only] = reports.paid_vs_estimated(engine, s, date(2026, 3, 10), date(2026, 3, 10))
    assert (only.user_id, only.difference) == (uid(1), Decimal("0.003000"))

    out = CliRunner().invoke(main, ["report", "paid-vs-estimated", "--start", "2026-03-01", "--end", "2026-03-31", "--limit", "3"])
    assert out.exit_code == 0, out.output
    assert [line.split() for line in out.stdout.splitlines()[1:]] == [
        [uid(3), "2", "0", "0.009000", "0.001000", "-0.008000", "0.1111"],
        [uid(1), "2", "0", "0.006000", "0.009000", "+0.003000", "1.5000"],
        [uid(2), "1", "0", "0.000400", "0.000400", "+0.000000", "1.0000"],
    ]


def test_absurd_token_count_is_quarantined_not_priced_negative(engine, db_url, settings):
    # 2e11 output tokens on Opus 4.1: 2e11 x 75_000_000 pico = 1.5e19 > 2^63 - 1, which used to wrap
    # to a negative cost. Now the row is quarantined (tokens_out_of_range) and nothing is lost.
    s = settings.replace(start_date=date(2026, 3, 1))
    opus = "claude-opus-4-1-20250805"
    insert(engine, s, [
        msg(1, utc(2026, 3, 2, 9), anthropic(1000, 2000), model=opus, id=601),
        msg(1, utc(2026, 3, 2, 10), anthropic(10, 200_000_000_000), model=opus, id=602),
    ])
    pdefs = partitions.build(s)
    result = pipeline.run_daily(engine, db_url, s, load_price_book(use_env=False), partitions.window(pdefs["daily"], "daily", "2026-03-02"))
    assert result is not None
    # 1000 x $15 + 2000 x $75 per million tokens = 15_000 + 150_000 micro-USD
    got = rows(engine, "SELECT message_count, output_tokens, cost_usd FROM user_token_usage WHERE period_type = 'daily'")
    assert got == [{"message_count": 1, "output_tokens": 2000, "cost_usd": Decimal("0.165000")}]
    quarantined = rows(engine, "SELECT message_id, reason, detail, partition_key FROM usage_quarantine")
    assert [tuple(r.values()) for r in quarantined] == [(uid(602), "tokens_out_of_range", "output_tokens=200000000000", "2026-03-02")]
    # raw (2) = aggregated (1) + rejected (1), and the SQL reconciliation agrees
    outcomes = check_runner.evaluate(engine, s, "daily", ["2026-03-02"], materialized_daily={"2026-03-02"}, now=utc(2026, 3, 3, 8))
    recon = next(o for o in outcomes["2026-03-02"] if o.check == "reconciles_with_raw")
    assert recon.passed, recon.summary
    assert recon.metadata["expected_totals"]["output_tokens"] == 2000


def test_versions_of_a_rollup_are_sorted_distinct():
    import polars as pl

    from usage_etl import aggregate

    grain = pl.DataFrame(
        {c: [None] * 3 for c in aggregate.GRAIN_SCHEMA}, schema=aggregate.GRAIN_SCHEMA
    ).with_columns(
        user_id=pl.Series(["u", "u", "v"]),
        day=pl.Series([date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 1)]),
        price_book_version=pl.Series(["bbb", "aaa", None]),
        **{c: pl.lit(0, pl.Int64) for c in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")},
    )
    out = aggregate.summarize(grain.lazy()).collect()
    assert out.select("user_id", "price_book_version").rows() == [("u", "aaa,bbb"), ("v", None)]
