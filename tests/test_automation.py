"""Nightly run, catch-up of missed days, retry of failed partitions and rollup gating, evaluated by
Dagster's declarative automation against a real DagsterInstance (state recorded as events)."""

from __future__ import annotations

import logging
from datetime import date

import dagster as dg
import pytest
from dagster._core.definitions.asset_daemon_cursor import AssetDaemonCursor
from dagster._core.definitions.automation_tick_evaluation_context import AutomationTickEvaluationContext
from dagster._core.test_utils import freeze_time, instance_for_test
from orchestration_helpers import Location, utc

from usage_etl import automation
from usage_etl.config import ConfigError, Settings
from usage_etl.resources import PostgresResource

NOTHING = {"daily": [], "weekly": [], "monthly": []}


@pytest.fixture
def inst():
    with instance_for_test() as instance:
        yield instance


def evaluate(loc: Location, inst: dg.DagsterInstance, when, cursor=None):
    with freeze_time(when):
        return dg.evaluate_automation_conditions(loc.defs, inst, cursor=cursor)


def test_nightly_tick_in_business_timezone_requests_yesterday_its_week_and_month(inst):
    # 2026-11-01 is a Sunday and the last day of daylight saving time in New York: 01:00 local on
    # 2026-11-02 is 06:00 UTC.
    loc = Location(Settings(start_date=date(2026, 10, 1), timezone="America/New_York"))
    with freeze_time(utc(2026, 11, 2, 5)):
        loc.report(inst, "daily", [f"2026-10-{d:02d}" for d in range(1, 32)])
        loc.report(inst, "weekly", ["2026-09-28", "2026-10-05", "2026-10-12", "2026-10-19", "2026-10-26"])
        loc.report(inst, "monthly", ["2026-10-01"])
    r = evaluate(loc, inst, utc(2026, 11, 2, 5, 0))  # first evaluation: nothing, sets the cursor
    assert loc.requested(r) == NOTHING
    r = evaluate(loc, inst, utc(2026, 11, 2, 5, 55), r.cursor)  # 00:55 local: before the tick
    assert loc.requested(r) == NOTHING
    r = evaluate(loc, inst, utc(2026, 11, 2, 6, 1), r.cursor)
    # the new week 2026-11-02 has no day yet: not materialized empty (dagster #34094)
    assert loc.requested(r) == {"daily": ["2026-11-01"], "weekly": ["2026-10-26"], "monthly": ["2026-11-01"]}
    with freeze_time(utc(2026, 11, 2, 6, 10)):
        loc.report(inst, "daily", ["2026-11-01"])
        loc.report(inst, "weekly", ["2026-10-26"])
        loc.report(inst, "monthly", ["2026-11-01"])
    r = evaluate(loc, inst, utc(2026, 11, 2, 6, 20), r.cursor)
    assert loc.requested(r) == NOTHING  # done for the night: no second run of the rollups
    r = evaluate(loc, inst, utc(2026, 11, 3, 6, 1), r.cursor)
    assert loc.requested(r) == {"daily": ["2026-11-02"], "weekly": ["2026-11-02"], "monthly": ["2026-11-01"]}


def _tick(loc: Location, inst: dg.DagsterInstance, when, cursor: AssetDaemonCursor):
    """One tick of the automation sensor as the daemon runs it (emit_backfills=True)."""
    with freeze_time(when):
        ctx = AutomationTickEvaluationContext(
            evaluation_id=cursor.evaluation_id + 1,
            instance=inst,
            asset_graph=loc.defs.resolve_asset_graph(),
            cursor=cursor,
            materialize_run_tags={},
            observe_run_tags={},
            auto_observe_asset_keys=set(),
            asset_selection=dg.AssetSelection.groups("usage"),
            logger=logging.getLogger("test"),
            emit_backfills=True,
        )
        run_requests, new_cursor, _ = ctx.evaluate()
    return run_requests, new_cursor


def _backfill_partitions(loc: Location, request: dg.RunRequest) -> dict[str, list[str]]:
    subset = request.asset_graph_subset
    assert subset is not None, "expected a backfill request"
    return {
        a.key.path[-1].split("_")[0]: sorted(subset.get_partitions_subset(a.key).get_partition_keys()) if a.key in subset.asset_keys else []
        for a in loc.assets
    }


def test_ten_missed_days_are_caught_up_in_one_backfill_and_a_failed_day_is_retried_next_tick(inst, db_url):
    loc = Location(Settings(start_date=date(2026, 10, 1)))
    with freeze_time(utc(2026, 10, 23, 0, 10)):
        loc.report(inst, "daily", [f"2026-10-{d:02d}" for d in range(1, 23)])
        loc.report(inst, "weekly", ["2026-09-28", "2026-10-05", "2026-10-12", "2026-10-19"])
        loc.report(inst, "monthly", ["2026-10-01"])
    requests, cursor = _tick(loc, inst, utc(2026, 10, 23, 0, 30), AssetDaemonCursor.empty())
    assert requests == []
    # The daemon is down from 2026-10-23 00:30 to 2026-11-02 01:05 (ten nightly ticks missed).
    requests, cursor = _tick(loc, inst, utc(2026, 11, 2, 1, 5), cursor)
    assert len(requests) == 1  # one backfill: the days, then the weeks and months over them
    assert _backfill_partitions(loc, requests[0]) == {
        "daily": [f"2026-10-{d}" for d in range(23, 32)] + ["2026-11-01"],
        "weekly": ["2026-10-19", "2026-10-26"],  # not 2026-11-02: no day of it exists yet
        "monthly": ["2026-10-01", "2026-11-01"],
    }
    # The backfill runs; 2026-10-30 fails, so its week and October are not rolled up.
    with freeze_time(utc(2026, 11, 2, 1, 20)):
        loc.report(inst, "daily", [f"2026-10-{d}" for d in range(23, 32) if d != 30] + ["2026-11-01"])
        loc.report(inst, "weekly", ["2026-10-19"])
        loc.report(inst, "monthly", ["2026-11-01"])
        missing_db = db_url.set(database="usage_etl_no_such_db").render_as_string(hide_password=False)
        failed = loc.materialize(inst, "daily", ["2026-10-30"], db=PostgresResource(database_url=missing_db))
    assert not failed.success
    requests, cursor = _tick(loc, inst, utc(2026, 11, 2, 12, 0), cursor)
    assert requests == []  # the failed day waits for the next nightly tick; its week waits for it
    requests, cursor = _tick(loc, inst, utc(2026, 11, 3, 1, 5), cursor)
    assert len(requests) == 1
    assert _backfill_partitions(loc, requests[0]) == {
        "daily": ["2026-10-30", "2026-11-02"],
        "weekly": ["2026-10-26", "2026-11-02"],
        "monthly": ["2026-10-01", "2026-11-01"],
    }


def test_sixty_missed_days_since_the_start_date_are_requested_at_once(inst):
    loc = Location(Settings(start_date=date(2026, 9, 1)))
    r = evaluate(loc, inst, utc(2026, 10, 31, 0, 30))
    r = evaluate(loc, inst, utc(2026, 10, 31, 1, 5), r.cursor)
    req = loc.requested(r)
    assert len(req["daily"]) == 60 and (req["daily"][0], req["daily"][-1]) == ("2026-09-01", "2026-10-30")
    assert req["weekly"] == ["2026-08-31", "2026-09-07", "2026-09-14", "2026-09-21", "2026-09-28", "2026-10-05", "2026-10-12", "2026-10-19", "2026-10-26"]
    assert req["monthly"] == ["2026-09-01", "2026-10-01"]


def test_a_manually_rerun_day_is_followed_by_its_week_and_month_only(inst):
    loc = Location(Settings(start_date=date(2026, 10, 1)))
    with freeze_time(utc(2026, 10, 20, 9)):
        loc.report(inst, "daily", [f"2026-10-{d:02d}" for d in range(1, 20)])
        loc.report(inst, "weekly", ["2026-09-28", "2026-10-05", "2026-10-12", "2026-10-19"])
        loc.report(inst, "monthly", ["2026-10-01"])
    r = evaluate(loc, inst, utc(2026, 10, 20, 9, 30))
    with freeze_time(utc(2026, 10, 20, 10)):
        loc.report(inst, "daily", ["2026-10-07"])  # e.g. from the UI's Materialize dialog
    r = evaluate(loc, inst, utc(2026, 10, 20, 10, 1), r.cursor)
    assert loc.requested(r) == {"daily": [], "weekly": ["2026-10-05"], "monthly": ["2026-10-01"]}
    with freeze_time(utc(2026, 10, 20, 10, 5)):
        loc.report(inst, "weekly", ["2026-10-05"])
        loc.report(inst, "monthly", ["2026-10-01"])
    r = evaluate(loc, inst, utc(2026, 10, 20, 10, 6), r.cursor)
    assert loc.requested(r) == NOTHING


def test_daily_asset_declares_its_freshness_deadline_and_batching():
    settings = Settings(timezone="Europe/Berlin")
    loc = Location(settings, automation.AutomationSettings(nightly_cron="30 0 * * *", fresh_by_cron="0 3 * * *", batch_size=7))
    policy = loc.daily.specs_by_key[loc.daily.key].freshness_policy
    assert isinstance(policy, dg.FreshnessPolicy)
    assert (policy.deadline_cron, policy.timezone, policy.lower_bound_delta.total_seconds()) == ("0 3 * * *", "Europe/Berlin", 2.5 * 3600)
    assert loc.daily.backfill_policy == dg.BackfillPolicy.multi_run(7)
    assert loc.daily.op.retry_policy.backoff == dg.Backoff.EXPONENTIAL


def test_automation_settings_from_env():
    auto = automation.AutomationSettings.from_env({"USAGE_ETL_NIGHTLY_CRON": "15 2 * * *", "USAGE_ETL_LATE_DATA_LOOKBACK_DAYS": "3"})
    assert (auto.nightly_cron, auto.late_data_lookback_days, auto.batch_size) == ("15 2 * * *", 3, 30)
    with pytest.raises(ConfigError, match="USAGE_ETL_NIGHTLY_CRON"):
        automation.AutomationSettings.from_env({"USAGE_ETL_NIGHTLY_CRON": "at one"})
    with pytest.raises(ConfigError, match="USAGE_ETL_BACKFILL_BATCH_SIZE"):
        automation.AutomationSettings.from_env({"USAGE_ETL_BACKFILL_BATCH_SIZE": "-1"})
