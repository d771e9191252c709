"""Every tick of the nightly sensor says why it skipped or what it requested (the UI shows it)."""

from __future__ import annotations

from datetime import date

from dagster import instance_for_test
from orchestration_helpers import Location, utc

from usage_etl.settings import Settings


def test_each_nightly_tick_names_why_it_skipped_or_what_it_requested():
    loc = Location(Settings(start_date=date(2026, 11, 1)))
    with instance_for_test() as inst:
        r = loc.sense(loc.nightly_sensor, inst, utc(2026, 11, 2, 0, 30), None)
        assert r.skip_reason.skip_message == "first evaluation: catch-up starts at the next nightly tick"
        r = loc.sense(loc.nightly_sensor, inst, utc(2026, 11, 2, 0, 50), r.cursor)
        assert r.skip_reason.skip_message == "waiting for the nightly tick after 2026-11-01T01:00:00+00:00"
        r = loc.sense(loc.nightly_sensor, inst, utc(2026, 11, 2, 1, 5), r.cursor)
        assert r.skip_reason is None and loc.backfill(r) == {"daily": ["2026-11-01"], "weekly": ["2026-10-26"], "monthly": ["2026-11-01"]}
        [request] = r.run_requests
        assert request.tags == {"usage_etl/trigger": "nightly"}
        loc.report(inst, "daily", ["2026-11-01", "2026-11-02"])
        loc.report(inst, "weekly", ["2026-10-26", "2026-11-02"])
        loc.report(inst, "monthly", ["2026-11-01"])
        r = loc.sense(loc.nightly_sensor, inst, utc(2026, 11, 3, 1, 5), r.cursor)
        assert r.skip_reason.skip_message == "nightly tick 2026-11-03T01:00:00+00:00: nothing to run (every partition is materialized or running)"
