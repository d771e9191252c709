"""Reads stream as binary COPY: their bind parameters travel through transaction-local settings
(`sources.postgres.unbound`), so any value a configuration or a window can hold must arrive
exactly as it would as a bind parameter, and never as SQL text."""

from datetime import datetime, timedelta, timezone

import polars as pl
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from tests.bad_rows import DAY, configure, insert, row, source_table
from usage_etl.defs import partitions
from usage_etl.source_config import FieldRef
from usage_etl.sources.postgres import compile_bound, open_window, read_arrow, shared_connections, unbound, window_query

# Text PostgreSQL can hold: no NUL, no lone surrogate.
text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
instants = st.datetimes(datetime(1900, 1, 1), datetime(2200, 1, 1), timezones=offsets)
FIXTURE_OK = hsettings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FIXTURE_OK
@given(value=text, at=instants, n=st.integers(-(2**63), 2**63 - 1))
def test_values_round_trip_through_settings(db_url, value, at, n):
    stmt = sa.select(
        sa.bindparam("v", value, sa.Text).label("v"),
        sa.bindparam("at", at, sa.DateTime(timezone=True)).label("at"),
        sa.bindparam("n", n, sa.BigInteger).label("n"),
    )
    setter, query = unbound(stmt)
    assert setter is not None and compile_bound(query)[1] == []  # the query itself has no parameter
    got = read_arrow(db_url, stmt, {"v": pl.String(), "at": pl.Datetime("us", "UTC"), "n": pl.Int64()}).row(0)
    assert got == (value, at.astimezone(timezone.utc), n)


@FIXTURE_OK
@given(key=text.filter(lambda k: k not in ("", "usage")), value=text)
def test_any_configured_key_name_reads_its_value(engine, db_url, settings, key, value):
    """A breakdown read from metadata by an arbitrary key name (quotes, %, :, $1, unicode)."""
    cfg = configure(settings, engine, team=False)
    cfg = cfg.replace(source=cfg.source_config.model_copy(update={"breakdowns": {"k": FieldRef(column="metadata", path=(key,))}}))
    with engine.begin() as conn:
        conn.execute(sa.delete(source_table()))
    message = row(id="m")
    message["metadata"][key] = value
    insert(engine, cfg, [message])
    window = partitions.window(partitions.build(cfg)["daily"], "daily", DAY)
    with open_window(cfg, db_url, window.start, window.end) as snapshot:
        got = pl.concat(list(snapshot.frames()))["dim_k"].to_list()
    assert got == [value]


def test_values_that_would_not_round_trip_keep_their_parameters():
    """Only exact round trips are unbound: an int beyond int4 is cast back as bigint; a float, a
    tz-aware value for a column without a time zone, a naive one for a column with it keep the
    statement's parameters (it then reads as before, without COPY)."""
    big = sa.select(sa.bindparam("n", 2**40, sa.Integer).label("n"))
    setter, query = unbound(big)
    assert setter is not None and "BIGINT" in compile_bound(query)[0]
    aware, naive = datetime(2026, 3, 10, 12, tzinfo=timezone(timedelta(hours=5))), datetime(2026, 3, 10, 12)
    for stmt in (
        sa.select(sa.bindparam("f", 0.1, sa.Float).label("f")),
        sa.select(sa.bindparam("t", aware, sa.DateTime()).label("t")),
        sa.select(sa.bindparam("t", naive, sa.DateTime(timezone=True)).label("t")),
        sa.select(sa.bindparam("s", "2026-03-10", sa.Date).label("s")),
    ):
        assert unbound(stmt) == (None, stmt)


def test_a_big_int_reads_back(db_url):
    got = read_arrow(db_url, sa.select(sa.bindparam("n", 2**40, sa.Integer).label("n")), {"n": pl.Int64()})
    assert got["n"].to_list() == [2**40]


def test_a_read_inside_a_snapshot_does_not_end_it(engine, db_url, settings):
    """Inside `shared_connections()` another read of the same thread during `open_window` gets a
    connection of its own: the snapshot still holds afterwards (a row changed meanwhile keeps the
    digest of the values read)."""
    cfg = configure(settings, engine)
    insert(engine, cfg, [row(usage={"input_tokens": -5, "output_tokens": 1}, id="bad")])
    window = partitions.window(partitions.build(cfg)["daily"], "daily", DAY)
    with shared_connections():
        with open_window(cfg, db_url, window.start, window.end) as snapshot:
            before = snapshot.digests(pl.Series([0])).to_list()
            with engine.begin() as conn:
                conn.execute(sa.text("UPDATE raw_messages SET model = 'changed' WHERE id = 'bad'"))
            assert read_arrow(db_url, sa.select(sa.bindparam("x", "y", sa.Text).label("x")), {"x": pl.String()})["x"].to_list() == ["y"]
            assert snapshot.digests(pl.Series([0])).to_list() == before != [None]


def test_a_window_read_has_no_bind_parameter_but_an_in_list_keeps_them(settings):
    start = datetime(2026, 3, 10, tzinfo=timezone.utc)
    setter, query = unbound(window_query(settings, start, start + timedelta(days=1)))
    sql, params = compile_bound(query)
    assert params == [] and "current_setting" in sql and "2026-03-10" not in sql
    assert len(compile_bound(setter)[1]) == sql.count("current_setting(")  # one setting per parameter
    t = sa.table("t", sa.column("a"))
    listed = sa.select(t.c.a).where(t.c.a.in_(["x", "y"]))
    assert unbound(listed) == (None, listed)


def test_text_bound_refuses_what_it_cannot_carry_exactly() -> None:
    """An IN list, or a naive datetime for a column with a time zone, is refused by name rather
    than bound as something else."""
    import pytest
    from sqlalchemy.dialects import postgresql

    from usage_etl.sources.postgres import text_bound

    t = sa.table("t", sa.column("a", sa.Text), sa.column("at", sa.DateTime(timezone=True)))
    with pytest.raises(ValueError, match=r"cannot carry 'names' \(VARCHAR\) as text exactly"):
        text_bound(sa.select(t.c.a).where(t.c.a.in_(sa.bindparam("names", ["x", "y"], expanding=True))))
    with pytest.raises(ValueError, match=r"cannot carry 'since' \(DATETIME\)"):
        text_bound(sa.select(t.c.a).where(t.c.at >= sa.bindparam("since", datetime(2026, 3, 10), sa.DateTime(timezone=True))))
    sql = str(text_bound(sa.select(t.c.a).where(t.c.at >= datetime(2026, 3, 10, tzinfo=timezone.utc), t.c.a.is_(None))).compile(dialect=postgresql.dialect()))
    assert "CAST(%(param_1)s::VARCHAR AS TIMESTAMP WITH TIME ZONE)" in sql and "2026" not in sql
