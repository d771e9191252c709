"""Concurrent `usage-etl` processes on one fresh DAGSTER_HOME: the instance is created and its
storages migrated once, under a lock, and every command succeeds."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import dagster as dg
from orchestration_helpers import insert, message, totals, user_id, utc

USAGE_ETL = str(Path(sys.executable).with_name("usage-etl"))


def test_four_commands_at_once_on_a_fresh_instance_all_succeed(engine, settings, tmp_path):
    home = tmp_path / "home"  # does not exist yet: the first command creates it
    insert(engine, settings, [message(1, 1, utc(2026, 1, 2, 12), 100, 10), message(2, 2, utc(2026, 1, 3, 12), 200, 20)])
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    commands = [
        ["backfill", "--start", "2026-01-02", "--end", "2026-01-02", "--granularity", "daily"],
        ["backfill", "--start", "2026-01-03", "--end", "2026-01-03", "--granularity", "daily"],
        # days without raw rows: their checks pass whether or not the backfills ran first
        ["check", "--start", "2026-01-05", "--end", "2026-01-05", "--granularity", "daily"],
        ["check", "--start", "2026-01-06", "--end", "2026-01-06", "--granularity", "daily"],
    ]
    procs = [subprocess.Popen([USAGE_ETL, *c], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
    outcomes = [(p.wait(300), *p.communicate()) for p in procs]
    assert [o[0] for o in outcomes] == [0, 0, 0, 0], outcomes
    assert all("Traceback" not in o[2] for o in outcomes), outcomes
    assert [o[1].splitlines()[-1] for o in outcomes[2:]] == ["no ERROR check failed"] * 2

    dbs = sorted(home.rglob("*.db"))
    assert dbs, list(home.rglob("*"))
    heads = {str(p.relative_to(home)): sqlite3.connect(p).execute("SELECT count(*) FROM alembic_version").fetchone()[0] for p in dbs
             if sqlite3.connect(p).execute("SELECT count(*) FROM sqlite_master WHERE name = 'alembic_version'").fetchone()[0]}
    assert heads and set(heads.values()) == {1}, heads
    assert (home / "dagster.yaml").is_file()
    with dg.DagsterInstance.from_config(str(home)) as inst:
        assert inst.get_materialized_partitions(dg.AssetKey("daily_user_usage")) == {"2026-01-02", "2026-01-03"}
    assert totals(engine, settings, "daily") == {("2026-01-02", user_id(1)): (110, 1), ("2026-01-03", user_id(2)): (220, 1)}
