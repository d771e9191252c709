"""Late-arriving data: a row inserted into an already materialized day is found by its raw
fingerprint and leads to exactly that day, its week and its month being re-materialized."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import sqlalchemy as sa
from dagster import instance_for_test
from orchestration_helpers import Location, freeze_time, insert, message, totals, user_id, utc

from usage_etl import pipeline
from usage_etl.defs import late_data
from usage_etl.sources import fingerprint
from usage_etl.defs.resources import PostgresResource

ALICE, BOB = user_id(1), user_id(2)


def test_late_row_rematerializes_exactly_its_day_week_and_month(engine, settings, db_url, recwarn):
    s = settings.replace(start_date=date(2026, 11, 1))
    loc = Location(s)
    insert(engine, s, [
        message(1, 1, utc(2026, 11, 9, 8), 100, 10),
        message(2, 1, utc(2026, 11, 9, 9), 100, 10),
        message(3, 2, utc(2026, 11, 9, 10), 200, 20, conversation=2),
        message(4, 1, utc(2026, 11, 10, 8), 100, 10),
    ])
    with instance_for_test() as inst:
        with freeze_time(utc(2026, 11, 12, 0, 20)):
            assert loc.materialize(inst, "daily", [f"2026-11-{d:02d}" for d in range(1, 12)]).success
            assert loc.materialize(inst, "weekly", ["2026-10-26", "2026-11-09"]).success
            assert loc.materialize(inst, "monthly", ["2026-11-01"]).success
        assert totals(engine, s, "weekly")[("2026-11-09", ALICE)] == (330, 3)
        first = loc.sense(loc.late_sensor, inst, utc(2026, 11, 12, 0, 31), None)
        assert first.run_requests == [] and first.asset_events == [] and first.skip_reason.skip_message.endswith(": none")

        # A phone syncs two days late into 2026-11-09; another row lands 10 days back, outside
        # the 7-day lookback, and is deliberately not looked at.
        insert(engine, s, [message(5, 1, utc(2026, 11, 9, 23, 59), 1000, 100), message(6, 2, utc(2026, 11, 2, 12), 7, 7)])
        found = loc.sense(loc.late_sensor, inst, utc(2026, 11, 12, 0, 40), None)
        requested = loc.backfill(found)
        assert requested == {"daily": ["2026-11-09"], "weekly": ["2026-11-09"], "monthly": ["2026-11-01"]}
        [update] = found.asset_events  # the raw day, reported as changed for the UI
        assert (update.asset_key, update.partition) == (late_data.RAW_KEY, "2026-11-09")
        assert (update.metadata["rows"].value, update.metadata["rows_at_materialization"].value) == (4, 3)
        loc.submit(inst, found)  # the sensor daemon records the backfill
        again = loc.sense(loc.late_sensor, inst, utc(2026, 11, 12, 0, 45), None)
        assert again.run_requests == [] and "1 changed, running or failed" in again.skip_reason.skip_message

        with freeze_time(utc(2026, 11, 12, 0, 50)):  # what the backfill runs, days first
            for granularity in ("daily", "weekly", "monthly"):
                assert loc.materialize(inst, granularity, requested[granularity]).success
        assert totals(engine, s, "daily")[("2026-11-09", ALICE)] == (1320, 3)  # 2 x 110 + 1100
        assert totals(engine, s, "daily")[("2026-11-09", BOB)] == (220, 1)
        assert totals(engine, s, "weekly")[("2026-11-09", ALICE)] == (1430, 4)  # + 110 on the 10th
        assert totals(engine, s, "monthly")[("2026-11-01", ALICE)] == (1430, 4)
        assert totals(engine, s, "monthly")[("2026-11-01", BOB)] == (220, 1)  # the 2nd was not re-read
        done = loc.sense(loc.late_sensor, inst, utc(2026, 11, 12, 0, 56), None)
        assert done.run_requests == [] and done.skip_reason.skip_message.endswith(": none")

        # a day whose latest run failed is the nightly run's (retried once a night, not hourly)
        insert(engine, s, [message(7, 2, utc(2026, 11, 10, 9), 1, 1)])
        with freeze_time(utc(2026, 11, 12, 0, 58)):
            broken = db_url.set(database="usage_etl_no_such_db").render_as_string(hide_password=False)
            assert not loc.materialize(inst, "daily", ["2026-11-10"], db=PostgresResource(database_url=broken)).success
        left = loc.sense(loc.late_sensor, inst, utc(2026, 11, 12, 0, 59), None)
        assert left.run_requests == [] and "1 changed, running or failed" in left.skip_reason.skip_message
    # e.g. Polars' `is_in(<Series>)`, deprecated: it warns from Rust, so an "error" filter cannot catch it
    package = str(Path(pipeline.__file__).parent)
    assert [str(w.message) for w in recwarn if issubclass(w.category, DeprecationWarning) and w.filename.startswith(package)] == []


def test_fingerprint_sees_updates_and_deletes_and_ignores_other_days(engine, settings):
    insert(engine, settings, [message(1, 1, utc(2026, 3, 1, 12), 5, 5), message(2, 1, utc(2026, 3, 2, 12), 5, 5)])
    first, end = date(2026, 3, 1), date(2026, 3, 3)
    with engine.begin() as conn:
        before = fingerprint.current_fingerprints(conn, settings, first, end)
        for d in (first, first + timedelta(days=1)):
            fingerprint.record(conn, settings, d, before.filter(pl.col("day") == d))
    assert before["row_count"].to_list() == [1, 1]
    with engine.begin() as conn:
        assert fingerprint.changed_days(fingerprint.current_fingerprints(conn, settings, first, end), fingerprint.recorded_fingerprints(conn, settings, first, end)).height == 0
        conn.execute(sa.text("UPDATE chat_messages SET metadata = jsonb_set(metadata, '{usage,input_tokens}', '6') WHERE created_at < '2026-03-02'"))
    with engine.begin() as conn:
        changed = fingerprint.changed_days(fingerprint.current_fingerprints(conn, settings, first, end), fingerprint.recorded_fingerprints(conn, settings, first, end))
        assert changed["day"].to_list() == [first]  # same count and ids, new row version
        conn.execute(sa.text("DELETE FROM chat_messages WHERE created_at >= '2026-03-02'"))
    with engine.connect() as conn:
        changed = fingerprint.changed_days(fingerprint.current_fingerprints(conn, settings, first, end), fingerprint.recorded_fingerprints(conn, settings, first, end))
    assert changed.select("day", "row_count", "row_count_recorded").rows() == [(first, 1, 1), (date(2026, 3, 2), 0, 1)]


def test_missing_source_table_skips_with_a_clear_reason(engine, settings):
    s = settings.replace(start_date=date(2026, 11, 1), source_table="no_such_messages")
    loc = Location(s)
    with instance_for_test() as inst:
        result = loc.sense(loc.late_sensor, inst, utc(2026, 11, 12, 0, 31), None)
    assert not result.run_requests
    assert result.skip_reason.skip_message.startswith("source table public.no_such_messages does not exist")
