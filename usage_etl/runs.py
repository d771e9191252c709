"""Launch materializations through Dagster from Python (CLI, demo, tests).

Runs execute in this process but are recorded in the Dagster instance (`DAGSTER_HOME`, default
`./.dagster`), so they show in the UI next to scheduled runs. A range of partitions runs as one
single-run backfill per asset (the assets' BackfillPolicy.single_run).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import date
from pathlib import Path

import dagster as dg

from usage_etl.assets import PARTITIONS, USAGE_ASSETS
from usage_etl.resources import PostgresResource

GRANULARITIES = ["daily", "weekly", "monthly"]
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def instance() -> dg.DagsterInstance:
    """The persistent instance of DAGSTER_HOME (set to ./.dagster when unset)."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    return dg.DagsterInstance.get()


def partition_keys(granularity: str, start: date, end: date) -> list[str]:
    """Keys of `granularity` whose window overlaps [start, end] (dates inclusive)."""
    pdef = PARTITIONS[granularity]
    keys = pdef.get_partition_keys()
    return [k for k in keys if (w := pdef.time_window_for_partition_key(k)).start.date() <= end and w.end.date() > start]


def materialize_range(
    granularity: str,
    keys: list[str],
    *,
    inst: dg.DagsterInstance,
    resources: dict | None = None,
    batch_size: int | None = None,
    on_batch: Callable[[str, list[str], dg.ExecuteInProcessResult], None] | None = None,
    log_level: str = "WARNING",
) -> list[dg.ExecuteInProcessResult]:
    """Materialize `keys` of one asset, one run per batch of `batch_size` (default: all in one run)."""
    asset = {a.key.path[-1]: a for a in USAGE_ASSETS}[f"{granularity}_user_usage"]
    size = batch_size or len(keys) or 1
    results = []
    for i in range(0, len(keys), size):
        batch = keys[i : i + size]
        result = dg.materialize(
            USAGE_ASSETS,
            selection=[asset],
            instance=inst,
            resources=resources or {"db": PostgresResource()},
            tags={RANGE_START: batch[0], RANGE_END: batch[-1]},
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        )
        results.append(result)
        if on_batch:
            on_batch(granularity, batch, result)
        if not result.success:
            break
    return results
