"""Claude Code on the schedule: with the Claude Code source configured, the nightly backfill and
`usage-etl backfill` land new transcript lines before they aggregate the days.

The daemon test evaluates the nightly sensor (clock frozen), stores its backfill as the sensor
daemon does, and runs the real backfill daemon iterations over the code location of
`usage_etl.defs.definitions` (loaded in a code server process from the environment, as
`dagster-daemon` does) until the backfill is done. Fixture: tests/fixtures/claude_code
(see test_claude_code.py), days 2026-03-30 and 2026-03-31 (UTC).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster import instance_for_test

from usage_etl.defs.dagster_internals import (
    BulkActionStatus,
    ModuleTarget,
    PartitionBackfill,
    create_test_daemon_workspace_context,
    execute_backfill_iteration,
    make_new_backfill_id,
)
from orchestration_helpers import Location, utc
from usage_helpers import settings_for, summary

from usage_etl.defs import automation
from usage_etl.source_config import load_source_config

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "claude_code"
MAR30, MAR31, MAR = date(2026, 3, 30), date(2026, 3, 31), date(2026, 3, 1)
INGEST = dg.AssetKey("claude_code_messages")

# (messages, errors, conversations, input, cache_creation, cache_read, output, reasoning, total):
# the figures of test_claude_code.test_daily_totals_from_jsonl.
DAILY = {
    ("alice", MAR30): (3, 0, 1, 18, 3100, 1200, 120, 0, 4438),
    ("alice", MAR31): (1, 0, 1, 7, 0, 500, 70, 0, 577),
    ("bob", MAR30): (1, 0, 1, 3, 0, 0, 9, 0, 12),
    ("bob", MAR31): (1, 0, 1, 100, 50, 0, 200, 0, 350),
}


@pytest.fixture
def source_env(tmp_path: Path, db_url, monkeypatch) -> Path:
    """USAGE_ETL_SOURCE_CONFIG = example 004 over a copy of the fixture tree (users from folders)."""
    root = tmp_path / "projects"
    shutil.copytree(FIXTURES, root)
    text = (ROOT / "examples" / "004_claude_code_jsonl.toml").read_text()
    text = text.replace('root = "~/.claude/projects"', f'root = "{root}"').replace('user = "me@example.com"', "user_from_folder = true")
    config = tmp_path / "claude_code.toml"
    config.write_text(text)
    monkeypatch.setenv("USAGE_ETL_SOURCE_CONFIG", str(config))
    monkeypatch.setenv("USAGE_ETL_START_DATE", "2026-03-30")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    return config


def _tokens(engine, period_type: str) -> dict:
    return {k: v[:9] for k, v in summary(engine, period_type).items()}


def test_nightly_backfill_ingests_before_the_days_and_the_daemon_materializes_them(engine, db_url, source_env, monkeypatch, tmp_path):
    settings = settings_for(db_url, load_source_config(source_env), start=date(2026, 3, 30))
    loc = Location(settings)
    assert automation.ingestion_keys(settings) == {INGEST}
    # Runs launch at once (no run queue daemon here), in their own processes, via the code server.
    immediate = {"run_coordinator": {"module": "dagster.core.run_coordinator", "class": "DefaultRunCoordinator"}}
    with instance_for_test(overrides=immediate) as inst:
        r = loc.sense(loc.nightly_sensor, inst, utc(2026, 4, 1, 0, 30), None)
        r = loc.sense(loc.nightly_sensor, inst, utc(2026, 4, 1, 1, 5), r.cursor)
        [request] = r.run_requests
        subset = request.asset_graph_subset
        assert subset.non_partitioned_asset_keys == {INGEST}
        assert loc.backfill(r) == {"daily": ["2026-03-30", "2026-03-31"], "weekly": ["2026-03-30"], "monthly": ["2026-03-01"]}
        backfill_id = make_new_backfill_id()  # stored as the sensor daemon does, stamped with the tick's time
        inst.add_backfill(PartitionBackfill.from_asset_graph_subset(
            backfill_id=backfill_id, backfill_timestamp=utc(2026, 4, 1, 1, 5).timestamp(), tags=request.tags,
            dynamic_partitions_store=inst, asset_graph_subset=subset, title=None, description=None, run_config=None,
        ))

        # The code server loads a .env from its working directory (`make demo` leaves one at the root)
        monkeypatch.chdir(tmp_path)
        target = ModuleTarget(module_name="usage_etl.defs.definitions", attribute=None, working_directory=str(tmp_path), location_name="usage_etl")
        with create_test_daemon_workspace_context(target, inst) as ctx:
            deadline = time.monotonic() + 300
            while inst.get_backfill(backfill_id).status == BulkActionStatus.REQUESTED:
                assert time.monotonic() < deadline, "backfill did not finish"
                errors = [e for e in execute_backfill_iteration(ctx, logging.getLogger("backfill")) if e is not None]
                assert errors == []
                while not all(run.is_finished for run in inst.get_runs()):
                    assert time.monotonic() < deadline, [(run.status, run.asset_selection) for run in inst.get_runs()]
                    time.sleep(0.5)
        assert inst.get_backfill(backfill_id).status == BulkActionStatus.COMPLETED_SUCCESS
        runs = list(reversed(inst.get_runs()))  # oldest first
        assert [run.status for run in runs] == [dg.DagsterRunStatus.SUCCESS] * 4
        # The ingestion ran first, on its own, then the days (one run), then the week and the month.
        assert [run.asset_selection for run in runs[:2]] == [{INGEST}, {dg.AssetKey("daily_user_usage")}]
        assert sorted(key.path[-1] for run in runs[2:] for key in run.asset_selection) == ["monthly_user_usage", "weekly_user_usage"]
        assert inst.get_latest_materialization_event(INGEST).asset_materialization.metadata["messages_inserted"].value == 6
    assert _tokens(engine, "daily") == DAILY
    assert _tokens(engine, "monthly") == {
        ("alice", MAR): (4, 0, 1, 25, 3100, 1700, 190, 0, 5015),
        ("bob", MAR): (2, 0, 1, 103, 50, 0, 209, 0, 362),
    }


def test_backfill_command_ingests_first(engine, db_url, source_env):
    """`usage-etl backfill` in its own process, configured from the environment only."""
    env = {**os.environ, "USAGE_ETL_DOTENV": "0"}
    cmd = [str(Path(sys.executable).parent / "usage-etl"), "backfill", "--start", "2026-03-30", "--end", "2026-03-31"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=source_env.parent)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[1].split()[:3] == ["daily", "2026-03-30…2026-03-31", "2"]
    assert lines[2] == "  ingested 14 new transcript lines: 6 new messages, 0 updated, 1 quarantined"
    assert _tokens(engine, "daily") == DAILY
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM claude_code_messages")).scalar_one() == 6

    # New lines of a new day: a second backfill lands them and aggregates the day.
    with (source_env.parent / "projects" / "bob" / "proj-b" / "sess-b1.jsonl").open("a") as fh:
        fh.write('{"type": "assistant", "sessionId": "sess-b1", "timestamp": "2026-04-01T08:00:00Z", "requestId": "req_Q", '
                 '"message": {"id": "msg_Q", "model": "claude-sonnet-4-20250514", "usage": {"input_tokens": 11, "output_tokens": 22}}}\n')
    out = subprocess.run([*cmd[:2], "--start", "2026-04-01", "--end", "2026-04-01", "--granularity", "daily"],
                         env=env, capture_output=True, text=True, timeout=300, cwd=source_env.parent)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "  ingested 1 new transcript lines: 1 new messages, 0 updated, 0 quarantined" in out.stdout.splitlines()
    assert _tokens(engine, "daily")[("bob", date(2026, 4, 1))] == (1, 0, 1, 11, 0, 0, 22, 0, 33)
