"""One test per class of bad raw row: row content never fails a partition, every row ends as
aggregated or quarantined with its reason, and every value written reads back exactly."""

import threading
import time
from datetime import datetime, timezone
from decimal import Decimal

import polars as pl
import pytest
import sqlalchemy as sa

from tests.bad_rows import AT, BOOK as BOOK_, DAY, configure, insert, quarantine, row, rows_of, run
from usage_etl import pipeline, store
from usage_etl.checks import runner
from usage_etl.defs import partitions
from usage_etl.frames import MAX_COST_PICO_PER_USER_DAY
from usage_etl.normalize import normalize
from usage_etl.sources.postgres import open_window, read_window

ERROR_RULES = {"reconciles_with_raw", "keys_and_values"}


def verdicts(engine, cfg, period_type="daily", key=DAY):
    [outcomes] = runner.evaluate(engine, cfg, period_type, [key]).values()
    return {o.check: o for o in outcomes}


def assert_reconciles(engine, cfg, result):
    assert result.raw_rows == result.messages + result.rejected_rows
    found = verdicts(engine, cfg)
    assert all(found[r].passed for r in ERROR_RULES), {r: found[r].summary for r in ERROR_RULES}


def test_blank_user_ids_are_missing_and_keys_are_trimmed(engine, db_url, settings):
    cfg = configure(settings, engine)
    insert(engine, cfg, [
        row("", id="blank"), row("   ", id="spaces"), row("\t\n", id="tabs"), row(None, id="null"),
        row("  alice\t", model=None, agent="  ", conv=" c1 ", id="ok"),
    ])
    r = run(engine, db_url, cfg)
    assert (r.raw_rows, r.messages, r.rejected_by_reason) == (5, 1, {"missing_user_id": 4})
    [grain] = rows_of(engine, "user_conversation_day_usage")
    assert (grain["user_id"], grain["conversation_id"], grain["agent_id"], grain["model"]) == ("alice", "c1", None, None)
    [by_model] = rows_of(engine, "user_token_usage_by_model")
    assert (by_model["user_id"], by_model["model"], by_model["input_tokens"]) == ("alice", "(unknown)", 10)
    assert_reconciles(engine, cfg, r)


def test_keys_above_the_btree_bound_are_quarantined(engine, db_url, settings):
    cfg = configure(settings, engine)
    at_bound = "é" * 256  # 512 bytes: kept
    insert(engine, cfg, [
        row("u" * 3000, id="user"), row(model="m" * 2701, id="model"), row(agent="a" * 513, id="agent"),
        row(team="t" * 600, id="team"), row(at_bound, model=at_bound, agent=at_bound, team=at_bound, id="ok"),
    ])
    r = run(engine, db_url, cfg)
    assert (r.messages, r.rejected_rows) == (1, 4)
    q = quarantine(engine)
    assert q == {
        "user": ("key_too_long", "user_id is 3000 bytes (max 512)"),
        "model": ("key_too_long", "model is 2701 bytes (max 512)"),
        "agent": ("key_too_long", "agent_id is 513 bytes (max 512)"),
        "team": ("key_too_long", "dim_team is 600 bytes (max 512)"),
    }
    assert [x["user_id"] for x in rows_of(engine, "usage_quarantine", order="message_id")][3] == "u" * 512  # cut, not copied in full
    [by_dim] = rows_of(engine, "user_token_usage_by_dimension")
    assert (by_dim["user_id"], by_dim["value"]) == (at_bound, at_bound)
    assert_reconciles(engine, cfg, r)


def test_paid_amounts_and_cost_sums_out_of_range(engine, db_url, settings):
    cfg = configure(settings, engine)
    opus = {"input_tokens": 0, "output_tokens": 1_000_000_000}  # 10^9 x 75,000,000 pico-USD = 7.5e16 pico-USD each
    insert(engine, cfg, [
        row(amount_paid=1e20, id="p20"), row(amount_paid=1e306, id="p306"), row(amount_paid="1e400", id="pinf"),
        row(amount_paid=1_000_000_000, id="pmax"),  # at the bound: kept
        *[row("whale", opus, model="claude-opus-4-1", id=f"w{i}") for i in range(4)],  # 3.0e17 > 2.975e17
        *[row("big", opus, model="claude-opus-4-1", id=f"b{i}") for i in range(3)],  # 2.25e17: kept
    ])
    r = run(engine, db_url, cfg)
    assert r.rejected_by_reason == {"cost_out_of_range": 4, "paid_amount_out_of_range": 3}
    q = quarantine(engine)
    assert q["p20"] == ("paid_amount_out_of_range", "paid_amount=100000000000000000000")
    assert q["p306"] == ("paid_amount_out_of_range", "paid_amount=1" + "0" * 79 + "…")
    assert q["pinf"] == ("paid_amount_out_of_range", "paid_amount=1e400")
    assert q["w0"] == ("cost_out_of_range", f"user-day cost_pico_usd=300000000000000000 (max {MAX_COST_PICO_PER_USER_DAY})")
    costs = {x["user_id"]: (x["cost_usd"], x["paid_amount"]) for x in rows_of(engine, "user_token_usage")}
    # alice: Sonnet 4, 10 input x $3 + 5 output x $15 per million = $0.000105
    assert costs == {"alice": (Decimal("0.000105"), Decimal("1000000000.000000")), "big": (Decimal("225000.000000"), None)}
    assert_reconciles(engine, cfg, r)
    run(engine, db_url, cfg, "monthly", "2026-03-01")  # sums of the month stay within Int64


ODD = ["\\N", "NULL", "", '"', '\\', 'a"b\\c', "a,b", "{x,y}", "line\nbreak", "tab\tin", "\x01\x1f", "😀 emoji", "'; --", "%s :x"]


def test_text_values_round_trip_exactly(engine, db_url, settings):
    cfg = configure(settings, engine)
    odd = [v for v in ODD if v]  # "" is blank: missing
    insert(engine, cfg, [row(f"u{v}", conv=v, agent=v, model=v, team=v, id=f"id{i}") for i, v in enumerate(odd)] + [row("solo", agent="\\N", model="\\N")])
    r = run(engine, db_url, cfg)
    assert (r.messages, r.rejected_rows) == (len(odd) + 1, 0)
    grain = {x["user_id"]: (x["conversation_id"], x["agent_id"], x["model"]) for x in rows_of(engine, "user_conversation_day_usage")}
    expected = {f"u{v}".strip(" \t\n\r\x0b\x0c"): (v, v, v) for v in odd}
    assert grain == {**expected, "solo": ("c1", "\\N", "\\N")}
    summary = {x["user_id"]: (x["agent_ids"], x["models"]) for x in rows_of(engine, "user_token_usage")}
    assert summary["solo"] == (["\\N"], ["\\N"])
    assert summary['ua"b\\c'] == (['a"b\\c'], ['a"b\\c'])
    assert summary["u{x,y}"] == (["{x,y}"], ["{x,y}"])
    by_model = {x["user_id"]: x["model"] for x in rows_of(engine, "user_token_usage_by_model")}
    assert by_model["solo"] == "\\N" and by_model["u😀 emoji"] == "😀 emoji"
    values = sorted(x["value"] for x in rows_of(engine, "user_token_usage_by_dimension"))
    assert values == sorted([*odd, "(none)"])
    assert_reconciles(engine, cfg, r)


def test_token_values_that_are_not_whole_numbers_are_quarantined(engine, db_url, settings):
    cfg = configure(settings, engine)
    bad = {"half": 12.5, "text_half": "12.5", "tiny": 1.0000001, "exp": "1e3", "bool": True, "list": [1], "object": {"n": 1}, "plus": "+5", "hex": "0x10"}
    insert(engine, cfg, [row(usage={"input_tokens": v, "output_tokens": 1}, id=k) for k, v in bad.items()]
           + [row(usage={"input_tokens": "12.000", "output_tokens": 12.0}, id="whole")])
    r = run(engine, db_url, cfg)
    assert (r.messages, r.rejected_by_reason) == (1, {"non_integer_tokens": len(bad)})
    assert quarantine(engine)["object"] == ("non_integer_tokens", 'input_tokens={"n": 1}')
    assert rows_of(engine, "user_token_usage")[0]["input_tokens"] == 12
    assert_reconciles(engine, cfg, r)


def test_unicode_digits_are_not_token_counts(engine, db_url, settings):
    cfg = configure(settings, engine)
    insert(engine, cfg, [
        row(usage={"input_tokens": "١٢٣", "output_tokens": 1}, id="arabic"),
        row(usage={"input_tokens": "１２", "output_tokens": 1}, id="fullwidth"),
        row(usage={"input_tokens": "12\u00a0", "output_tokens": 1}, id="nbsp"),
        row(usage={"input_tokens": " 7 ", "output_tokens": 1}, id="ok"),
    ])
    r = run(engine, db_url, cfg)
    assert r.rejected_by_reason == {"non_integer_tokens": 3}
    assert quarantine(engine)["arabic"] == ("non_integer_tokens", "input_tokens=١٢٣")
    assert rows_of(engine, "user_token_usage")[0]["input_tokens"] == 7
    assert_reconciles(engine, cfg, r)


def test_a_day_whose_rows_all_lack_usage_is_quarantined_and_warned(engine, db_url, settings):
    from tests.usage_helpers import materialize

    cfg = configure(settings, engine)
    insert(engine, cfg, [row(usage="absent", id="none"), row(usage="absent", status="ok", id="meta"), row(usage=[1, 2], id="list")])
    result = materialize(cfg, "daily_user_usage", DAY)  # the mapping check sees no usage object: a warning only
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    assert quarantine(engine) == {
        "none": ("missing_usage", "metadata.usage is absent"),
        "meta": ("missing_usage", "metadata.usage is absent"),
        "list": ("missing_usage", "metadata.usage is array"),
    }
    rate = verdicts(engine, cfg)["quarantine_rate"]
    assert not rate.passed and rate.summary == "3/3 raw rows (100.00%) quarantined: missing_usage 3"
    assert rows_of(engine, "user_token_usage") == []


def test_duplicate_id_with_one_bad_copy_reconciles(engine, db_url, settings):
    cfg = configure(settings, engine)
    insert(engine, cfg, [
        row(usage={"input_tokens": 10, "output_tokens": 5}, id="dup"),
        row(usage={"input_tokens": -1, "output_tokens": 5}, id="dup"),
        row(usage={"input_tokens": 3, "output_tokens": 1}, id="dup2"), row(usage={"input_tokens": 3, "output_tokens": 1}, id="dup2"),
        row(None, id=None), row(usage={"input_tokens": 1, "output_tokens": 1}, id=None),  # null ids: one bad, one good
    ])
    r = run(engine, db_url, cfg)
    assert (r.messages, r.rejected_by_reason) == (4, {"missing_user_id": 1, "negative_tokens": 1})
    assert rows_of(engine, "user_token_usage")[0]["input_tokens"] == 10 + 3 + 3 + 1
    assert_reconciles(engine, cfg, r)
    assert not verdicts(engine, cfg)["no_duplicate_raw_rows"].passed  # still reported (WARN)
    week = run(engine, db_url, cfg, "weekly", "2026-03-09")
    assert week.messages == 4
    # The audit's figures, computed in the read's snapshot minus the run's quarantine, equal those
    # of `usage-etl check` (minus the quarantine table), with or without the NULL-id row's digest.
    window = partitions.window(partitions.build(cfg)["daily"], "daily", DAY)
    q = pl.DataFrame([(r["message_id"], r["raw_digest"]) for r in rows_of(engine, "usage_quarantine")], schema=["message_id", "raw_digest"], orient="row")
    cols = ["day", "user_id", "message_count", "input_tokens", "output_tokens", "total_tokens"]
    with engine.connect() as conn:
        stmt = runner.expected_query(cfg, window.start, window.end, DAY, "2026-03-11")
        from_table = pl.DataFrame([tuple(x) for x in conn.execute(stmt)], schema=list(stmt.selected_columns.keys()), orient="row")
    assert from_table.select(cols).rows() == [(DAY, "alice", 4, 17, 8, 25)]
    with open_window(cfg, db_url, window.start, window.end) as snapshot:
        assert runner.expected_in_snapshot(snapshot, cfg, window, q).select(cols).rows() == [(DAY, "alice", 4, 17, 8, 25)]
        assert q["raw_digest"].null_count() == 0  # rows quarantined before digests existed match by id:
        legacy = q.with_columns(raw_digest=pl.when(pl.col("message_id") == "dup").then(None).otherwise(pl.col("raw_digest")))
        assert runner.expected_in_snapshot(snapshot, cfg, window, legacy).select(cols).rows() == [(DAY, "alice", 3, 7, 3, 10)]


def _digests_by_reason(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text("SELECT message_id, reason, raw_digest FROM usage_quarantine ORDER BY 1, 2"))]


def test_quarantined_rows_carry_the_digest_of_their_own_raw_row(engine, db_url, settings):
    """A daily run hashes only the rows it quarantines (`WindowSnapshot.digests`); each must be the
    digest of that very raw row, as `read_window` computes it for every row, including one of two
    copies of an id and rows without an id. Good rows' digests are never stored."""
    cfg = configure(settings, engine)
    insert(engine, cfg, [
        row(usage={"input_tokens": 10, "output_tokens": 5}, id="dup"), row(usage={"input_tokens": -1, "output_tokens": 5}, id="dup"),
        row(None, id=None), row(usage={"input_tokens": 1, "output_tokens": 1}, id=None), row(usage="absent", id="gone"),
        row(usage={"input_tokens": 2, "output_tokens": 2}, id="fine"),
    ])
    window = partitions.window(partitions.build(cfg)["daily"], "daily", DAY)
    raw = read_window(cfg, db_url, window.start, window.end)
    digest = {(r["message_id"], r["user_id"], r["u_input_tokens"]): r["raw_digest"] for r in raw.iter_rows(named=True)}
    assert len(set(digest.values())) == 6 and None not in digest.values()
    run(engine, db_url, cfg)
    assert _digests_by_reason(engine) == [
        ("dup", "negative_tokens", digest[("dup", "alice", "-1")]),
        ("gone", "missing_usage", digest[("gone", "alice", None)]),
        (None, "missing_user_id", digest[(None, None, "10")]),
    ]


def test_a_row_changed_during_the_run_keeps_the_digest_of_the_row_read(engine, db_url, settings):
    """The digests are computed in the read's own REPEATABLE READ snapshot: a row updated by another
    session after the read still gets the digest of the values the run quarantined."""
    cfg = configure(settings, engine)
    insert(engine, cfg, [row(usage={"input_tokens": -5, "output_tokens": 1}, id="bad")])
    window = partitions.window(partitions.build(cfg)["daily"], "daily", DAY)
    before = read_window(cfg, db_url, window.start, window.end)["raw_digest"].to_list()
    with open_window(cfg, db_url, window.start, window.end) as snapshot:
        with engine.begin() as conn:  # another session, committed
            conn.execute(sa.text("UPDATE raw_messages SET model = 'changed' WHERE id = 'bad'"))
        assert snapshot.rows(pl.Series([0]))["model"].to_list() == ["claude-sonnet-4-20250514"]
        assert snapshot.digests(pl.Series([0])).to_list() == before
    after = read_window(cfg, db_url, window.start, window.end)["raw_digest"].to_list()
    assert after != before


def test_rows_without_created_at_are_quarantined_once(engine, db_url, settings, monkeypatch):
    cfg = configure(settings, engine)
    insert(engine, cfg, [row(at=None, id="n1"), row(None, at=None, id="n2")])
    seen: list[int] = []
    real = pipeline.normalize

    def spy(raw, *a, **k):
        seen.append(raw.height)
        return real(raw, *a, **k)

    monkeypatch.setattr(pipeline, "normalize", spy)
    assert pipeline.quarantine_unpartitioned(engine, db_url, cfg) == 2
    assert pipeline.quarantine_unpartitioned(engine, db_url, cfg) == 2
    insert(engine, cfg, [row(at=None, id="n3")])
    assert pipeline.quarantine_unpartitioned(engine, db_url, cfg) == 3
    assert seen == [2, 0, 1]  # only rows not quarantined yet are read
    src = cfg.source_config
    with engine.begin() as conn:
        conn.execute(sa.text(f'UPDATE "{src.table}" SET created_at = :at WHERE id = :id'), {"at": AT, "id": "n1"})
    assert pipeline.quarantine_unpartitioned(engine, db_url, cfg) == 2  # n1 now belongs to a day
    q = {k: v[0] for k, v in quarantine(engine).items()}
    assert q == {"n2": "missing_user_id", "n3": "missing_created_at"}


def test_quarantine_details_quote_a_short_prefix(engine, db_url, settings):
    cfg = configure(settings, engine)
    insert(engine, cfg, [row(usage={"input_tokens": "x" * 100_000, "output_tokens": 1}, id="long")])
    run(engine, db_url, cfg)
    assert quarantine(engine)["long"] == ("non_integer_tokens", "input_tokens=" + "x" * 80 + "…")


def test_rollup_waits_for_a_daily_run_in_progress(engine, db_url, settings):
    cfg = configure(settings, engine)
    insert(engine, cfg, [row(id="mon", at=datetime(2026, 3, 9, 12, tzinfo=timezone.utc)), row(id="tue", at=datetime(2026, 3, 10, 12, tzinfo=timezone.utc))])
    run(engine, db_url, cfg, key="2026-03-09")
    run(engine, db_url, cfg, key="2026-03-10")
    pdef = partitions.build(cfg)["daily"]
    tuesday = partitions.window(pdef, "daily", "2026-03-10")
    done: dict = {}
    with engine.connect() as other:
        # A daily run of Tuesday in progress: it holds Tuesday's lock and has rewritten its rows.
        store.lock_partition(other, "public", tuesday)
        other.execute(sa.text("UPDATE user_conversation_day_usage SET input_tokens = input_tokens + 1000 WHERE day = '2026-03-10'"))
        other.execute(sa.text("UPDATE user_token_usage SET input_tokens = input_tokens + 1000, total_tokens = total_tokens + 1000 "
                              "WHERE period_type = 'daily' AND period_start = '2026-03-10 00:00+00'"))
        other.execute(sa.text("UPDATE user_token_usage_by_model SET input_tokens = input_tokens + 1000, total_tokens = total_tokens + 1000 "
                              "WHERE period_type = 'daily' AND period_start = '2026-03-10 00:00+00'"))
        week = threading.Thread(target=lambda: done.update(r=run(engine, db_url, cfg, "weekly", "2026-03-09")))
        week.start()
        time.sleep(1.5)
        assert week.is_alive()  # waiting for Tuesday's lock, not reading Tuesday's old rows
        other.commit()
    week.join(60)
    assert done["r"].published
    [weekly] = [x for x in rows_of(engine, "user_token_usage") if x["period_type"] == "weekly"]
    assert weekly["input_tokens"] == 10 + 1010  # Monday's 10, Tuesday's 10 + 1000 as rewritten


def test_audit_failure_leaves_the_previous_rows(engine, db_url, settings, monkeypatch):
    cfg = configure(settings, engine)
    insert(engine, cfg, [row(id="a")])
    run(engine, db_url, cfg)
    before = {t: rows_of(engine, t) for t in ("user_token_usage", "user_token_usage_by_model", "user_conversation_day_usage", "usage_quarantine")}
    insert(engine, cfg, [row("bob", id="b")])
    real = pipeline.normalize

    def off_by_one(raw, *a, **k):  # a pipeline fault: one token too many per message
        n = real(raw, *a, **k)
        return type(n)(n.messages.with_columns(output_tokens=n.messages["output_tokens"] + 1), n.quarantine)

    monkeypatch.setattr(pipeline, "normalize", off_by_one)
    with pytest.raises(pipeline.AuditFailed, match=r"daily 2026-03-10 not published: reconciles_with_raw: 2 user\(s\) differ from raw"):
        run(engine, db_url, cfg)
    assert {t: rows_of(engine, t) for t in before} == before
    r = run(engine, db_url, cfg, audit=pipeline.Audit(raise_on_error=False))
    assert (r.published, r.writes) == (False, {})
    assert {o.check: o.passed for o in r.audit}["reconciles_with_raw"] is False
    assert {t: rows_of(engine, t) for t in before} == before


def test_normalize_keeps_every_row_of_a_frame_without_digests():
    import polars as pl

    from usage_etl.sources.postgres import RAW_SCHEMA

    raw = pl.DataFrame([{"message_id": "x", "user_id": " ", "created_at": AT, "usage_type": "object", "u_input_tokens": "1"}], schema=RAW_SCHEMA)
    n = normalize(raw)
    assert (n.messages.height, n.quarantine["reason"].to_list(), n.quarantine["raw_digest"].to_list()) == (0, ["missing_user_id"], [None])


def test_names_with_percent_colon_quotes_spaces_and_63_bytes(engine, db_url, settings):

    from usage_etl import migrations

    etl = 'Us%ge:"ETL" x'
    table = "R" * 58 + ' "%:x'  # 63 bytes
    assert len(table.encode()) == 63
    migrations.upgrade(engine, etl)
    cfg = configure(settings.replace(schema=etl), engine, schema="Src %:1", name=table)
    insert(engine, cfg, [row(id="a"), row("bob", id="b"), row(None, id="bad"), row(at=None, id="nodate")])
    pdef = partitions.build(cfg)["daily"]
    r = pipeline.materialize_day(engine, db_url, cfg, BOOK_, partitions.window(pdef, "daily", DAY))
    assert (r.messages, r.rejected_rows, r.published) == (2, 1, True)
    assert run(engine, db_url, cfg, "weekly", "2026-03-09").messages == 2
    assert pipeline.quarantine_unpartitioned(engine, db_url, cfg) == 1
    assert [x["user_id"] for x in rows_of(engine, "user_token_usage", etl, "user_id, period_type")] == ["alice", "alice", "bob", "bob"]
    assert {x["message_id"]: x["source"] for x in rows_of(engine, "usage_quarantine", etl)} == {"bad": f"Src %:1.{table}", "nodate": f"Src %:1.{table}"}
    assert_reconciles(engine, cfg, r)
    with engine.connect() as conn:  # nothing was written to the default schema
        assert conn.execute(sa.text("SELECT count(*) FROM public.user_token_usage")).scalar_one() == 0


def test_names_longer_than_63_bytes_are_refused_naming_the_setting():
    from usage_etl.settings import ConfigError, Settings
    from usage_etl.source_config import SourceConfigError, parse_source_config

    with pytest.raises(ConfigError, match=r"^USAGE_ETL_SOURCE_TABLE: the name 'x{64}' is 64 bytes; PostgreSQL names are at most 63 bytes$"):
        Settings.from_env({"USAGE_ETL_SOURCE_TABLE": "x" * 64})
    with pytest.raises(ConfigError, match=r"^USAGE_ETL_SCHEMA: the name 'é{32}' is 64 bytes"):
        Settings.from_env({"USAGE_ETL_SCHEMA": "é" * 32})
    doc = {"source": {"schema": "ok %:", "table": "t" * 64}, "columns": {"id": "id", "time": "at", "user": "u"},
           "tokens": {"usage": {"column": "meta", "path": "usage"}}}
    with pytest.raises(SourceConfigError, match=r"^source config: source\.table: name 't{64}' is 64 bytes"):
        parse_source_config(doc)
    assert parse_source_config({**doc, "source": {"schema": "ok %:", "table": 'T "x"'}}).table == 'T "x"'


def test_a_constant_with_backslash_quote_is_bound_not_rendered(engine, db_url, settings):
    from usage_etl.source_config import FieldRef, SourceConfig

    with engine.connect() as conn:  # new sessions: the pipeline's ADBC reads and the checks
        conn.exec_driver_sql(f'ALTER DATABASE "{db_url.database}" SET standard_conforming_strings = off')
        conn.commit()
    evil = "x\\' UNION SELECT 'injected' --"
    columns = SourceConfig.default("public", "raw_messages").columns.model_copy(update={"model": FieldRef(value=evil)})
    cfg = configure(settings, engine, team=False, columns=columns)
    insert(engine, cfg, [row(id="a")])
    r = run(engine, db_url, cfg)
    assert (r.raw_rows, r.messages) == (1, 1)
    assert [x["model"] for x in rows_of(engine, "user_token_usage_by_model")] == [evil]
    assert [x["model"] for x in rows_of(engine, "user_conversation_day_usage")] == [evil]
