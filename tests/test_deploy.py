"""The production instance config loads against a real PostgreSQL with the limits it promises,
and the code location loads."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg

ROOT = Path(__file__).resolve().parent.parent


def test_production_instance_config_uses_postgres_queue_and_pools(db_url, tmp_path, monkeypatch):
    shutil.copy(ROOT / "deploy" / "dagster.yaml", tmp_path / "dagster.yaml")
    for var, value in {
        "DAGSTER_PG_HOST": db_url.host,
        "DAGSTER_PG_PORT": str(db_url.port or 5432),
        "DAGSTER_PG_USER": db_url.username,
        "DAGSTER_PG_PASSWORD": db_url.password or "",
        "DAGSTER_PG_DB": db_url.database,
    }.items():
        monkeypatch.setenv(var, value)
    inst = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        assert type(inst.run_storage).__name__ == "PostgresRunStorage"
        assert type(inst.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert isinstance(inst.run_coordinator, dg.QueuedRunCoordinator)
        queue = inst.get_concurrency_config().run_queue_config
        assert queue.max_concurrent_runs == 4
        assert queue.tag_concurrency_limits == [{"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}]
        assert inst.get_concurrency_config().pool_config.default_pool_limit == 2
        assert {"SCHEDULER", "QUEUED_RUN_COORDINATOR", "BACKFILL", "ASSET", "MONITORING", "FRESHNESS_DAEMON"} <= set(inst.get_required_daemon_types())
        assert inst.auto_materialize_use_sensors and inst.run_retries_enabled
        inst.event_log_storage.set_concurrency_slots("usage_etl_db", 2)  # the pool works on this storage
        assert inst.event_log_storage.get_concurrency_info("usage_etl_db").slot_count == 2
    finally:
        inst.dispose()


def test_local_instance_config_loads(tmp_path):
    shutil.copy(ROOT / "deploy" / "dagster.local.yaml", tmp_path / "dagster.yaml")
    inst = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        assert inst.get_concurrency_config().pool_config.default_pool_limit == 1
        assert inst.freshness_enabled
    finally:
        inst.dispose()


def test_code_location_loads_with_its_sensors():
    # what `dagster definitions validate -w workspace.yaml` checks, in-process
    from usage_etl.defs.definitions import defs

    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    assert {s.name for s in repo.sensor_defs} == {"usage_etl_nightly", "usage_etl_late_data", "usage_etl_automation"}
    assert {k.path[-1] for k in repo.asset_graph.get_all_asset_keys()} == {"raw_messages", "daily_user_usage", "weekly_user_usage", "monthly_user_usage"}
