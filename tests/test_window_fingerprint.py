"""A daily run records the late-data fingerprint of exactly the rows it read, computed from the
read itself (`fingerprint.of_rows`), equal to the server's (`current_fingerprints`)."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from tests.bad_rows import BOOK, DAY, configure, insert, row
from usage_etl import pipeline
from usage_etl.defs import partitions
from usage_etl.sources import fingerprint
from usage_etl.sources.fingerprint import FINGERPRINT
from usage_etl.sources.postgres import open_window

D = date.fromisoformat(DAY)


def _window(cfg):
    return partitions.window(partitions.build(cfg)["daily"], "daily", DAY)


def _server(engine, cfg) -> pl.DataFrame:
    with engine.connect() as conn:
        return fingerprint.current_fingerprints(conn, cfg, D, D + timedelta(days=1)).select("day", *FINGERPRINT)


def _recorded(engine, cfg) -> pl.DataFrame:
    with engine.connect() as conn:
        return fingerprint.recorded_fingerprints(conn, cfg, D, D + timedelta(days=1)).select("day", *FINGERPRINT)


def _xmins(engine) -> list[int]:
    with engine.connect() as conn:
        return [int(x) for x in conn.execute(sa.text("SELECT xmin::text::bigint FROM raw_messages ORDER BY id COLLATE \"C\"")).scalars()]


def test_the_read_brings_each_rows_version_and_the_fingerprint_matches_the_servers(engine, db_url, settings):
    cfg = configure(settings, engine)
    # ids whose byte order ("B" < "a" < "é") is not a linguistic order; two transactions
    insert(engine, cfg, [row(id="a"), row(id="B")])
    insert(engine, cfg, [row("bob", id="é", usage={"input_tokens": "x"})])  # quarantined: still in the fingerprint
    w = _window(cfg)
    with open_window(cfg, db_url, w.start, w.end) as snapshot:
        versions = snapshot.versions().sort("message_id")
    x_ab, _, x_e = _xmins(engine)
    assert versions["message_id"].to_list() == ["B", "a", "é"]
    assert versions["row_version"].to_list() == [x_ab, x_ab, x_e] and x_e > x_ab
    ours = fingerprint.of_rows(D, versions)
    assert ours.rows() == [(D, 3, "é", versions["created_at"].max(), str(2 * x_ab + x_e))]
    assert ours.equals(_server(engine, cfg))


def test_a_daily_run_records_the_rows_it_read_not_one_inserted_meanwhile(engine, db_url, settings, monkeypatch):
    cfg = configure(settings, engine)
    insert(engine, cfg, [row(id="m-1"), row("bob", id="m-2")])
    real = pipeline.normalize

    def insert_meanwhile(raw, *a, **k):  # after the read, before the write
        insert(engine, cfg, [row("carol", id="m-3")])
        return real(raw, *a, **k)

    monkeypatch.setattr(pipeline, "normalize", insert_meanwhile)
    result = pipeline.materialize_day(engine, db_url, cfg, BOOK, _window(cfg))
    assert (result.raw_rows, result.messages) == (2, 2)
    [recorded] = _recorded(engine, cfg).rows(named=True)
    assert (recorded["row_count"], recorded["max_id"]) == (2, "m-2")
    with engine.connect() as conn:
        changed = fingerprint.changed_days(fingerprint.current_fingerprints(conn, cfg, D, D + timedelta(days=1)), fingerprint.recorded_fingerprints(conn, cfg, D, D + timedelta(days=1)))
    assert changed.select("day", "row_count", "row_count_recorded").rows() == [(D, 3, 2)]


def test_an_unpublished_run_records_no_fingerprint_and_an_empty_day_records_zero(engine, db_url, settings, monkeypatch):
    cfg = configure(settings, engine)
    insert(engine, cfg, [row(id="m-1")])
    real = pipeline.normalize

    def off_by_one(raw, *a, **k):  # a pipeline fault the audit catches: the write is rolled back
        n = real(raw, *a, **k)
        return type(n)(n.messages.with_columns(output_tokens=n.messages["output_tokens"] + 1), n.quarantine)

    monkeypatch.setattr(pipeline, "normalize", off_by_one)
    result = pipeline.materialize_day(engine, db_url, cfg, BOOK, _window(cfg), audit=pipeline.Audit(raise_on_error=False))
    assert result.published is False and _recorded(engine, cfg).height == 0
    monkeypatch.setattr(pipeline, "normalize", real)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM raw_messages"))
    assert pipeline.materialize_day(engine, db_url, cfg, BOOK, _window(cfg)).published
    assert _recorded(engine, cfg).rows() == [(D, 0, None, None, "0")]


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=12), min_size=1, max_size=6, unique=True))
def test_any_ids_give_the_servers_fingerprint(engine, db_url, settings, ids):
    """Any text ids: the fingerprint from the read equals the server's (byte order, exact sums)."""
    cfg = configure(settings, engine)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM raw_messages"))
    insert(engine, cfg, [row(id=i) for i in ids])
    w = _window(cfg)
    with open_window(cfg, db_url, w.start, w.end) as snapshot:
        ours = fingerprint.of_rows(D, snapshot.versions())
    assert ours["max_id"].to_list() == [max(ids, key=lambda s: s.encode())]
    assert ours.equals(_server(engine, cfg))


def test_a_query_in_the_snapshot_keeps_it_whatever_it_binds(engine, db_url, settings):
    """`WindowSnapshot.query` binds its values as text: a timestamptz parameter bound as such would
    make ADBC run it in a transaction of its own, ending the snapshot (a second query would then
    see a row committed meanwhile)."""
    cfg = configure(settings, engine)
    insert(engine, cfg, [row(id="m-1"), row(id="m-2")])
    w = _window(cfg)
    t = sa.table("raw_messages", sa.column("created_at"), sa.column("id"))
    count = sa.select(sa.func.count().label("n")).select_from(t).where(t.c.created_at >= sa.bindparam("s", w.start, sa.DateTime(timezone=True)), t.c.id != "zzz")
    with open_window(cfg, db_url, w.start, w.end) as snapshot:
        insert(engine, cfg, [row(id="m-3")])
        assert [snapshot.query(count, {"n": pl.Int64()})["n"].item() for _ in range(2)] == [2, 2]
    with open_window(cfg, db_url, w.start, w.end) as snapshot:
        assert snapshot.query(count, {"n": pl.Int64()})["n"].item() == 3
