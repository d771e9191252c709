"""`usage-etl backfill`: a 90-day range runs through Dagster in batches, its runs are recorded in the
instance of DAGSTER_HOME; `--submit` records one Dagster backfill for the daemon instead."""

from __future__ import annotations

import re
from datetime import date, timedelta

import dagster as dg
import pytest
from click.testing import CliRunner
from usage_etl.defs.dagster_internals import BulkActionStatus
from orchestration_helpers import insert, message, totals, user_id, utc

from usage_etl.defs import partitions
from usage_etl.defs import runs
from usage_etl.cli import main

ALICE, BOB = user_id(1), user_id(2)


@pytest.fixture
def dagster_home(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return tmp_path


def test_ninety_day_backfill_runs_in_batches_recorded_in_the_instance(engine, settings, dagster_home):
    assert runs.PARTITIONS["daily"].start.date().isoformat() <= "2026-01-01"
    insert(engine, settings, [
        message(1, 1, utc(2026, 1, 1, 0, 30), 100, 10),
        message(2, 2, utc(2026, 2, 15, 12), 200, 20),
        message(3, 1, utc(2026, 3, 31, 23, 30), 1000, 100),
    ])
    out = CliRunner().invoke(main, ["backfill", "--start", "2026-01-01", "--end", "2026-03-31"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert re.match(r"backfill \w{8}: 2026-01-01\.\.2026-03-31, 107 partitions \(90 daily, 14 weekly, 3 monthly\) in 5 runs of up to 30 partitions", lines[0])
    progress = [line.split()[:3] for line in lines[1:-1]]
    assert progress == [
        ["daily", "2026-01-01…2026-01-30", "30"],
        ["daily", "2026-01-31…2026-03-01", "30"],
        ["daily", "2026-03-02…2026-03-31", "30"],
        ["weekly", "2025-12-29…2026-03-30", "14"],
        ["monthly", "2026-01-01…2026-03-01", "3"],
    ]
    assert "[5/5 runs, 107/107 partitions" in lines[-2]
    backfill_id = re.search(r"backfill (\w{8}) done: 5 runs, 107 partitions", lines[-1]).group(1)

    inst = dg.DagsterInstance.get()
    recorded = inst.get_run_records(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    assert len(recorded) == 5 and {r.dagster_run.status for r in recorded} == {dg.DagsterRunStatus.SUCCESS}
    assert sorted(r.dagster_run.job_name for r in recorded) == ["usage_etl_daily"] * 3 + ["usage_etl_monthly", "usage_etl_weekly"]
    weekly_run = next(r.dagster_run for r in recorded if r.dagster_run.job_name == "usage_etl_weekly")
    assert (weekly_run.tags["dagster/asset_partition_range_start"], weekly_run.tags["dagster/asset_partition_range_end"]) == ("2025-12-29", "2026-03-30")
    # ... and they are one Dagster backfill (the UI's Backfills tab), completed, all 107 partitions
    [backfill] = inst.get_backfills()
    assert (backfill.backfill_id, backfill.status, backfill.title) == (backfill_id, BulkActionStatus.COMPLETED_SUCCESS, "usage-etl backfill 2026-01-01..2026-03-31")
    assert backfill.asset_backfill_data.materialized_subset.num_partitions_and_non_partitioned_assets == 107
    assert backfill.asset_backfill_data.failed_and_downstream_subset.num_partitions_and_non_partitioned_assets == 0
    assert len(inst.get_materialized_partitions(dg.AssetKey("daily_user_usage"))) == 90
    assert len(inst.get_materialized_partitions(dg.AssetKey("weekly_user_usage"))) == 14
    assert totals(engine, settings, "monthly") == {
        ("2026-01-01", ALICE): (110, 1),
        ("2026-02-01", BOB): (220, 1),
        ("2026-03-01", ALICE): (1100, 1),
    }
    assert totals(engine, settings, "weekly")[("2026-03-30", ALICE)] == (1100, 1)


def test_a_range_outside_the_partitions_fails_and_one_partly_outside_is_clipped(engine, settings, dagster_home):
    # Daily partitions run from USAGE_ETL_START_DATE (2026-01-01, the default) to yesterday.
    last = runs.PARTITIONS["daily"].get_last_partition_key()
    after = date.fromisoformat(last) + timedelta(days=2)
    runner = CliRunner()
    for args in (
        ["backfill", "--start", "2025-10-01", "--end", "2025-10-05"],
        ["backfill", "--end", "2025-12-31"],
        ["backfill", "--start", after.isoformat(), "--end", (after + timedelta(days=4)).isoformat()],
        ["check", "--start", "2025-10-01", "--end", "2025-10-05"],
        ["reprice", "--start", "2025-10-01", "--end", "2025-10-05"],
    ):
        out = runner.invoke(main, args)
        assert out.exit_code == 2, (args, out.output)  # a usage error, before any run
        assert f"is outside the daily partitions 2026-01-01..{last}" in out.output, out.output
    out = runner.invoke(main, ["backfill", "--start", "2026-01-05", "--end", "2026-01-04"])
    assert out.exit_code == 2 and "--end 2026-01-04 is before --start 2026-01-05" in out.output

    insert(engine, settings, [message(1, 1, utc(2026, 1, 1, 12), 100, 10)])
    out = runner.invoke(main, ["backfill", "--start", "2025-12-30", "--end", "2026-01-02", "--granularity", "daily"])
    assert out.exit_code == 0, out.output
    assert out.stderr.splitlines()[0] == (
        f"warning: 2025-12-30..2026-01-02 clipped to 2026-01-01..2026-01-02, the daily partitions overlapping it "
        f"(they run 2026-01-01..{last}: USAGE_ETL_START_DATE to yesterday)")
    assert re.search(r"backfill \w{8}: 2026-01-01\.\.2026-01-02, 2 partitions \(2 daily\) in 1 runs", out.stdout)
    assert re.search(r"backfill \w{8} done: 1 runs, 2 partitions", out.stdout)
    assert totals(engine, settings, "daily") == {("2026-01-01", ALICE): (110, 1)}


def test_submit_records_one_backfill_for_the_daemon(db_url, dagster_home):
    out = CliRunner().invoke(main, ["backfill", "--start", "2026-02-01", "--end", "2026-02-28", "--submit"])
    assert out.exit_code == 0, out.output
    assert re.match(r"submitted backfill \w+: 34 partitions \(28 daily, 5 weekly, 1 monthly\) 2026-02-01\.\.2026-02-28", out.output)
    [backfill] = dg.DagsterInstance.get().get_backfills()
    assert backfill.status == BulkActionStatus.REQUESTED
    assert f"/runs/b/{backfill.backfill_id}" in out.output
    target = backfill.asset_backfill_data.target_subset
    assert {k.path[-1]: len(target.get_partitions_subset(k)) for k in target.asset_keys} == {
        "daily_user_usage": 28,
        "weekly_user_usage": 5,  # 2026-01-26 .. 2026-02-23
        "monthly_user_usage": 1,
    }


def test_daemon_accepts_a_backfill_with_the_week_and_month_in_progress(db_url, monkeypatch, tmp_path):
    """The backfill daemon's first iteration over days, their week and month in progress: the
    rollups depend only on the days that exist so far, so the daemon plans instead of failing
    ("depends on non-existent partitions")."""
    import logging

    from dagster import instance_for_test

    from usage_etl.defs.dagster_internals import ModuleTarget, create_test_daemon_workspace_context, execute_backfill_iteration

    daily = runs.PARTITIONS["daily"]
    last = daily.get_last_partition_key()  # yesterday: its week and month are in progress (unless they end with it)
    week = partitions.week_start(date.fromisoformat(last)).isoformat()
    month = date.fromisoformat(last).replace(day=1).isoformat()
    days = [k for k in daily.get_partition_keys() if k >= week]
    queued = {"run_coordinator": {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator"}}
    with instance_for_test(overrides=queued) as inst:
        backfill_id = runs.submit_backfill({"daily": days, "weekly": [week], "monthly": [month]}, inst=inst)
        # The code server loads a .env from its working directory (`make demo` leaves one at the root)
        monkeypatch.chdir(tmp_path)
        target = ModuleTarget(module_name="usage_etl.defs.definitions", attribute=None, working_directory=str(tmp_path), location_name="usage_etl")
        with create_test_daemon_workspace_context(target, inst) as ctx:
            errors = [e for e in execute_backfill_iteration(ctx, logging.getLogger("backfill")) if e is not None]
        assert errors == []
        [run] = inst.get_runs()  # the days first, as one run; the rollups wait for them
        assert run.tags["dagster/backfill"] == backfill_id
        assert (run.tags["dagster/asset_partition_range_start"], run.tags["dagster/asset_partition_range_end"]) == (days[0], last)
        assert run.asset_selection == {dg.AssetKey("daily_user_usage")}


def test_a_failed_day_does_not_stop_the_others_and_rollups_over_it_are_skipped(engine, settings, dagster_home):
    import sqlalchemy as sa

    insert(engine, settings, [
        message(1, 1, utc(2026, 1, 6, 12), 100, 10),
        message(2, 2, utc(2026, 1, 13, 12), 200, 20),
        message(3, 1, utc(2026, 1, 14, 12), 1000, 100),
    ])
    with engine.begin() as conn:  # a real, permanent PostgreSQL error for one day's summary rows only
        conn.execute(sa.text(
            "CREATE FUNCTION refuse_day() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.period_type = 'daily' AND NEW.period_start = timestamptz '2026-01-13 00:00:00+00' "
            "THEN RAISE EXCEPTION 'refused by a trigger'; END IF; RETURN NEW; END $$"))
        conn.execute(sa.text("CREATE TRIGGER refuse_day BEFORE INSERT OR UPDATE ON user_token_usage FOR EACH ROW EXECUTE FUNCTION refuse_day()"))
    out = CliRunner().invoke(main, ["backfill", "--start", "2026-01-05", "--end", "2026-01-14"])
    assert out.exit_code == 1, out.output
    lines = out.stdout.splitlines()
    assert re.match(r"backfill \w{8}: 2026-01-05\.\.2026-01-14, 13 partitions \(10 daily, 2 weekly, 1 monthly\) in 3 runs", lines[0])
    days = [f"2026-01-{d:02}" for d in range(5, 15)]
    progress = [line.split()[:3] + [line.split()[6]] if " run " in line else line for line in lines[1:-1]]
    assert progress == [
        ["daily", "2026-01-05…2026-01-14", "10", "FAILED"],  # the batch fails at 2026-01-13 ...
        *[["daily", f"{d}…{d}", "1", "FAILED" if d == "2026-01-13" else "ok"] for d in days],  # ... then each day runs alone
        "  weekly  skipped 1 partitions over failed days: 2026-01-12",
        ["weekly", "2026-01-05…2026-01-05", "1", "ok"],
        "  monthly skipped 1 partitions over failed days: 2026-01-01",
    ]
    assert lines[1].endswith("; rerunning its 10 partitions one per run")
    assert "daily partition 2026-01-13 failed with a permanent database error [SQLSTATE P0001]: (psycopg.errors.RaiseException) refused by a trigger" in lines[1]
    assert "[10/13 runs, 8/13 partitions" in lines[10] and "refused by a trigger" in lines[10]
    assert "[12/12 runs, 10/13 partitions" in lines[-3]  # the month's run is not planned any more
    assert re.fullmatch(
        r"backfill \w{8} FAILED: 12 runs, 10/13 partitions materialized in [\d.]+s; failed daily 2026-01-13; "
        r"skipped weekly 2026-01-12 \(over failed days\); skipped monthly 2026-01-01 \(over failed days\)\. "
        r"Fix the cause and run the same command again \(safe to repeat\)\.", lines[-1])
    inst = dg.DagsterInstance.get()
    assert inst.get_materialized_partitions(dg.AssetKey("daily_user_usage")) == set(days) - {"2026-01-13"}
    assert inst.get_materialized_partitions(dg.AssetKey("weekly_user_usage")) == {"2026-01-05"}
    assert inst.get_materialized_partitions(dg.AssetKey("monthly_user_usage")) == set()
    assert totals(engine, settings, "daily") == {("2026-01-06", ALICE): (110, 1), ("2026-01-14", ALICE): (1100, 1)}
    assert totals(engine, settings, "weekly") == {("2026-01-05", ALICE): (110, 1)}
    assert totals(engine, settings, "monthly") == {}
