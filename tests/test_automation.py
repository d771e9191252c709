"""Nightly run, catch-up of missed days, retry of failed partitions and rollup gating, evaluated
against a real DagsterInstance (partition state recorded as events, the clock frozen)."""

from __future__ import annotations

from datetime import date

import dagster as dg
import polars as pl
import pytest
from dagster import instance_for_test
from orchestration_helpers import Location, freeze_time, insert, message, utc

from usage_etl import store
from usage_etl.defs import automation
from usage_etl.settings import ConfigError, Settings
from usage_etl.defs.resources import PostgresResource


@pytest.fixture
def inst():
    with instance_for_test() as instance:
        yield instance


def test_nightly_tick_in_business_timezone_requests_yesterday_its_week_and_month(inst):
    # 2026-11-01 is a Sunday and the last day of daylight saving time in New York: 01:00 local on
    # 2026-11-02 is 06:00 UTC.
    loc = Location(Settings(start_date=date(2026, 10, 1), timezone="America/New_York"))
    with freeze_time(utc(2026, 11, 2, 5)):
        loc.report(inst, "daily", [f"2026-10-{d:02d}" for d in range(1, 32)])
        loc.report(inst, "weekly", ["2026-09-28", "2026-10-05", "2026-10-12", "2026-10-19", "2026-10-26"])
        loc.report(inst, "monthly", ["2026-10-01"])
    r = loc.sense(loc.nightly_sensor, inst, utc(2026, 11, 2, 5, 0), None)  # first evaluation starts the clock
    assert loc.backfill(r) == {} and "first evaluation" in r.skip_reason.skip_message
    r = loc.sense(loc.nightly_sensor, inst, utc(2026, 11, 2, 5, 55), r.cursor)  # 00:55 local
    assert loc.backfill(r) == {}
    r = loc.sense(loc.nightly_sensor, inst, utc(2026, 11, 2, 6, 1), r.cursor)
    # one backfill; the new week 2026-11-02 has no day yet and is not materialized empty
    assert loc.backfill(r) == {"daily": ["2026-11-01"], "weekly": ["2026-10-26"], "monthly": ["2026-11-01"]}
    with freeze_time(utc(2026, 11, 2, 6, 10)):
        loc.report(inst, "daily", ["2026-11-01"])
        loc.report(inst, "weekly", ["2026-10-26"])
        loc.report(inst, "monthly", ["2026-11-01"])
    r = loc.sense(loc.nightly_sensor, inst, utc(2026, 11, 2, 6, 20), r.cursor)
    assert loc.backfill(r) == {}  # once per night
    r = loc.sense(loc.nightly_sensor, inst, utc(2026, 11, 3, 6, 1), r.cursor)
    assert loc.backfill(r) == {"daily": ["2026-11-02"], "weekly": ["2026-11-02"], "monthly": ["2026-11-01"]}


def test_ten_missed_days_are_caught_up_in_one_backfill_and_a_failed_day_is_retried_next_tick(inst, db_url):
    loc = Location(Settings(start_date=date(2026, 10, 1)))
    with freeze_time(utc(2026, 10, 23, 0, 10)):
        loc.report(inst, "daily", [f"2026-10-{d:02d}" for d in range(1, 23)])
        loc.report(inst, "weekly", ["2026-09-28", "2026-10-05", "2026-10-12", "2026-10-19"])
        loc.report(inst, "monthly", ["2026-10-01"])
    r = loc.sense(loc.nightly_sensor, inst, utc(2026, 10, 23, 0, 30), None)
    # The daemon is down from 2026-10-23 00:30 to 2026-11-02 01:05: ten nightly ticks missed.
    r = loc.sense(loc.nightly_sensor, inst, utc(2026, 11, 2, 1, 5), r.cursor)
    assert len(r.run_requests) == 1
    assert loc.backfill(r) == {
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
        assert not loc.materialize(inst, "daily", ["2026-10-30"], db=PostgresResource(database_url=missing_db)).success
    r = loc.sense(loc.nightly_sensor, inst, utc(2026, 11, 2, 12, 0), r.cursor)
    assert loc.backfill(r) == {}  # the failed day waits for the next nightly tick
    r = loc.sense(loc.nightly_sensor, inst, utc(2026, 11, 3, 1, 5), r.cursor)
    assert loc.backfill(r) == {
        "daily": ["2026-10-30", "2026-11-02"],
        "weekly": ["2026-10-26", "2026-11-02"],
        "monthly": ["2026-10-01", "2026-11-01"],
    }


def test_sixty_missed_days_since_the_start_date_and_an_unfinished_backfill(inst):
    loc = Location(Settings(start_date=date(2026, 9, 1)))
    r = loc.sense(loc.nightly_sensor, inst, utc(2026, 10, 31, 0, 30), None)
    r = loc.sense(loc.nightly_sensor, inst, utc(2026, 10, 31, 1, 5), r.cursor)
    req = loc.backfill(r)
    assert len(req["daily"]) == 60 and (req["daily"][0], req["daily"][-1]) == ("2026-09-01", "2026-10-30")
    assert req["weekly"] == ["2026-08-31", "2026-09-07", "2026-09-14", "2026-09-21", "2026-09-28", "2026-10-05", "2026-10-12", "2026-10-19", "2026-10-26"]
    assert req["monthly"] == ["2026-09-01", "2026-10-01"]
    loc.submit(inst, r)  # still running at the next tick: only the new day is requested
    r = loc.sense(loc.nightly_sensor, inst, utc(2026, 11, 1, 1, 5), r.cursor)
    assert loc.backfill(r) == {"daily": ["2026-10-31"], "weekly": [], "monthly": []}


def test_plan_gates_weeks_and_months_on_their_days():
    keys = [f"2026-06-{d:02d}" for d in range(1, 15)]  # Mon 1 .. Sun 14: weeks 06-01 and 06-08
    status = {"2026-06-03": "failed", "2026-06-09": "running", "2026-06-10": None}
    daily = pl.DataFrame({"key": keys, "status": [status.get(k, "materialized") for k in keys]}, schema=automation.STATUS_SCHEMA)
    weekly = pl.DataFrame({"key": ["2026-06-01", "2026-06-08", "2026-06-15"], "status": ["materialized", "materialized", None]}, schema=automation.STATUS_SCHEMA)
    monthly = pl.DataFrame({"key": ["2026-06-01"], "status": ["materialized"]}, schema=automation.STATUS_SCHEMA)
    # late data on the 2nd: its week still has a failed day, so only the day runs
    assert automation.plan(daily, weekly, monthly, missing=False, days=["2026-06-02"]) == {"daily": ["2026-06-02"], "weekly": [], "monthly": []}
    # nightly: the failed and the missing day run; week 06-08 waits for the running 9th
    assert automation.plan(daily, weekly, monthly, missing=True) == {"daily": ["2026-06-03", "2026-06-10"], "weekly": ["2026-06-01"], "monthly": []}


def test_plan_reruns_a_day_whose_check_failed_and_holds_back_its_week_and_month():
    keys = [f"2026-06-{d:02d}" for d in range(1, 15)]  # Mon 1 .. Sun 14: weeks 06-01 and 06-08
    daily = pl.DataFrame({"key": keys, "status": ["check_failed" if k == "2026-06-09" else "materialized" for k in keys]},
                         schema=automation.STATUS_SCHEMA)
    weekly = pl.DataFrame({"key": ["2026-06-01", "2026-06-08"], "status": ["materialized", "failed"]}, schema=automation.STATUS_SCHEMA)
    monthly = pl.DataFrame({"key": ["2026-06-01"], "status": [None]}, schema=automation.STATUS_SCHEMA)
    # the week of the 9th failed (its rollup refused the day) and stays back with June until the 9th passes
    assert automation.plan(daily, weekly, monthly, missing=True) == {"daily": ["2026-06-09"], "weekly": [], "monthly": []}
    # late data on the 10th: the day runs, its week still waits for the 9th
    assert automation.plan(daily, weekly, monthly, missing=False, days=["2026-06-10"]) == {"daily": ["2026-06-10"], "weekly": [], "monthly": []}
    passed = daily.with_columns(status=pl.lit("materialized"))
    assert automation.plan(passed, weekly, monthly, missing=True) == {"daily": [], "weekly": ["2026-06-08"], "monthly": ["2026-06-01"]}


def test_a_day_whose_blocking_check_failed_is_rerun_and_its_rollups_wait_until_it_passes(inst, engine, monkeypatch):
    """A daily run writes its days, then the integrity check of 2026-10-02 fails with ERROR: Dagster
    shows the day materialized, but the nightly tick reruns it and neither the nightly sensor nor
    declarative automation requests its week or month until a rerun passes. 2026-10-03 fails its
    check with WARN only (an unpriced model), which holds nothing back."""
    loc = Location(Settings(start_date=date(2026, 10, 1)))  # Thu; week 2026-09-28, month 2026-10-01
    unpriced = {**message(4, 2, utc(2026, 10, 3, 9), 10, 5), "model": "no-such-model"}
    insert(engine, loc.settings, [message(i, 1, utc(2026, 10, i, 10), 100, 10) for i in (1, 2, 3)] + [unpriced])
    real = store.summary_rows

    def corrupt(frame, window):  # a pipeline fault on 2026-10-02: output_tokens 1 too high
        rows = real(frame, window)
        bad = window.period_type == "daily" and window.start.date() == date(2026, 10, 2)
        return rows.with_columns(output_tokens=pl.col("output_tokens") + int(bad))

    monkeypatch.setattr(store, "summary_rows", corrupt)
    r = loc.sense(loc.nightly_sensor, inst, utc(2026, 10, 4, 0, 30), None)
    with freeze_time(utc(2026, 10, 4, 0, 35)):
        a = dg.evaluate_automation_conditions(loc.defs, inst)
    with freeze_time(utc(2026, 10, 4, 0, 40)):
        run = loc.materialize(inst, "daily", ["2026-10-01", "2026-10-03"])
    assert not run.success  # the blocking check failed the step after the days were written
    evs = {e.partition: e for e in run.get_asset_check_evaluations()}
    assert (evs["2026-10-02"].passed, evs["2026-10-02"].severity) == (False, dg.AssetCheckSeverity.ERROR)
    assert (evs["2026-10-03"].passed, evs["2026-10-03"].severity) == (False, dg.AssetCheckSeverity.WARN)
    assert evs["2026-10-03"].metadata["pricing_coverage/unpriced_messages"] == dg.MetadataValue.int(1)
    status = automation.statuses(inst, loc.partitions, utc(2026, 10, 4, 0, 45))
    assert dict(status["daily"].iter_rows()) == {"2026-10-01": "materialized", "2026-10-02": "check_failed", "2026-10-03": "materialized"}
    with freeze_time(utc(2026, 10, 4, 0, 45)):
        a = dg.evaluate_automation_conditions(loc.defs, inst, cursor=a.cursor)
    assert loc.requested(a) == {"daily": [], "weekly": [], "monthly": []}
    r = loc.sense(loc.nightly_sensor, inst, utc(2026, 10, 4, 1, 5), r.cursor)
    assert loc.backfill(r) == {"daily": ["2026-10-02"], "weekly": [], "monthly": []}

    monkeypatch.setattr(store, "summary_rows", real)  # fixed: the rerun of the day passes its check
    with freeze_time(utc(2026, 10, 4, 1, 10)):
        assert loc.materialize(inst, "daily", ["2026-10-02", "2026-10-02"]).success
    with freeze_time(utc(2026, 10, 4, 1, 15)):
        a = dg.evaluate_automation_conditions(loc.defs, inst, cursor=a.cursor)
    assert loc.requested(a) == {"daily": [], "weekly": ["2026-09-28"], "monthly": ["2026-10-01"]}
    status = automation.statuses(inst, loc.partitions, utc(2026, 10, 4, 1, 15))
    assert set(status["daily"]["status"]) == {"materialized"}


def test_a_manually_rerun_day_is_followed_by_its_week_and_month_only(inst):
    loc = Location(Settings(start_date=date(2026, 10, 1)))
    with freeze_time(utc(2026, 10, 20, 9)):
        loc.report(inst, "daily", [f"2026-10-{d:02d}" for d in range(1, 20)])
        loc.report(inst, "weekly", ["2026-09-28", "2026-10-05", "2026-10-12", "2026-10-19"])
        loc.report(inst, "monthly", ["2026-10-01"])
    with freeze_time(utc(2026, 10, 20, 9, 30)):
        r = dg.evaluate_automation_conditions(loc.defs, inst)
    with freeze_time(utc(2026, 10, 20, 10)):
        loc.report(inst, "daily", ["2026-10-07"])  # e.g. from the UI's Materialize dialog
    with freeze_time(utc(2026, 10, 20, 10, 1)):
        r = dg.evaluate_automation_conditions(loc.defs, inst, cursor=r.cursor)
    assert loc.requested(r) == {"daily": [], "weekly": ["2026-10-05"], "monthly": ["2026-10-01"]}
    with freeze_time(utc(2026, 10, 20, 10, 5)):
        loc.report(inst, "weekly", ["2026-10-05"])
        loc.report(inst, "monthly", ["2026-10-01"])
    with freeze_time(utc(2026, 10, 20, 10, 6)):
        r = dg.evaluate_automation_conditions(loc.defs, inst, cursor=r.cursor)
    assert loc.requested(r) == {"daily": [], "weekly": [], "monthly": []}


def test_an_identical_rerun_of_a_day_leaves_its_week_and_month_alone_a_changed_one_rolls_them_up(inst, engine):
    """Rollups follow the days' grain digests, not the mere fact of a new materialization."""
    loc = Location(Settings(start_date=date(2026, 10, 1)))  # week 2026-09-28, month 2026-10-01
    insert(engine, loc.settings, [message(i, 1, utc(2026, 10, i, 10), 100, 10) for i in (1, 2, 3)])
    with freeze_time(utc(2026, 10, 4, 9)):
        assert loc.materialize(inst, "daily", ["2026-10-01", "2026-10-03"]).success
        assert loc.materialize(inst, "weekly", ["2026-09-28", "2026-09-28"]).success
        assert loc.materialize(inst, "monthly", ["2026-10-01", "2026-10-01"]).success
    with freeze_time(utc(2026, 10, 4, 9, 5)):
        r = dg.evaluate_automation_conditions(loc.defs, inst)
    assert loc.requested(r) == {"daily": [], "weekly": [], "monthly": []}
    with freeze_time(utc(2026, 10, 4, 9, 10)):
        assert loc.materialize(inst, "daily", ["2026-10-02", "2026-10-02"]).success  # same rows, same grain
    with freeze_time(utc(2026, 10, 4, 9, 15)):
        r = dg.evaluate_automation_conditions(loc.defs, inst, cursor=r.cursor)
    assert loc.requested(r) == {"daily": [], "weekly": [], "monthly": []}
    insert(engine, loc.settings, [message(9, 2, utc(2026, 10, 2, 11), 7, 3)])  # late-arriving row
    with freeze_time(utc(2026, 10, 4, 9, 20)):
        assert loc.materialize(inst, "daily", ["2026-10-02", "2026-10-02"]).success
    with freeze_time(utc(2026, 10, 4, 9, 25)):
        r = dg.evaluate_automation_conditions(loc.defs, inst, cursor=r.cursor)
    assert loc.requested(r) == {"daily": [], "weekly": ["2026-09-28"], "monthly": ["2026-10-01"]}


def test_daily_asset_declares_its_freshness_deadline_and_batching():
    loc = Location(Settings(timezone="Europe/Berlin"), automation.AutomationSettings(nightly_cron="30 0 * * *", fresh_by_cron="0 3 * * *", batch_size=7))
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
