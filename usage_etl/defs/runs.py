"""Launch materializations through Dagster from Python (CLI, demo, tests).

Runs execute in this process but are recorded in the Dagster instance (`DAGSTER_HOME`, default
`./.dagster`), so they show in the UI next to scheduled runs. A range of partitions runs in batches
of contiguous partitions, one run per batch. `submit_backfill` instead hands the range to the
daemon as one Dagster backfill.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from datetime import date
from pathlib import Path

import dagster as dg

from usage_etl.defs import partitions
from usage_etl.defs.assets import PARTITIONS, USAGE_ASSETS
from usage_etl.settings import Settings
from usage_etl.defs.resources import PostgresResource

GRANULARITIES = ["daily", "weekly", "monthly"]
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def local_instance_config() -> Path:
    """`deploy/dagster.local.yaml`: at the repository root, or inside the package when installed as
    a wheel (pyproject force-include). Raises FileNotFoundError if neither exists."""
    here = Path(__file__).resolve().parents[1]  # the usage_etl package
    for candidate in (here.parent / "deploy" / "dagster.local.yaml", here / "deploy" / "dagster.local.yaml"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("deploy/dagster.local.yaml not found next to the usage_etl package")


INSTANCE_LOCK = ".usage_etl.lock"


def instance() -> dg.DagsterInstance:
    """The persistent instance of DAGSTER_HOME (set to ./.dagster when unset).

    A DAGSTER_HOME without dagster.yaml first gets a copy of `local_instance_config()`, as
    `make demo` and `make ui` do: without one Dagster prints a "No dagster.yaml" warning, collects
    telemetry and has no run queue or pool limits. An existing dagster.yaml is never touched.

    Creating the instance creates (and migrates) its storages, e.g. the sqlite databases of a
    local instance; two processes doing that at once can stamp two alembic heads and leave the
    instance unusable. So creation runs under the file lock DAGSTER_HOME/.usage_etl.lock, and
    every storage is touched inside it: concurrent `usage-etl` commands on one DAGSTER_HOME wait
    for each other only during this set-up.
    """
    from filelock import FileLock

    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    with FileLock(home / INSTANCE_LOCK):
        config = home / "dagster.yaml"
        if not config.exists():
            # Copy, then rename: a reader that takes no lock (dagster dev) never sees half a file.
            partial = home / f".dagster.yaml.{os.getpid()}"
            shutil.copyfile(local_instance_config(), partial)
            os.replace(partial, config)
        inst = dg.DagsterInstance.get()
        # Storages may initialise lazily: make each create its tables now, under the lock.
        inst.get_runs(limit=1)
        inst.get_backfills(limit=1)
        inst.all_instigator_state()
        inst.get_latest_materialization_event(USAGE_ASSETS[0].key)
    return inst


def partition_keys(granularity: str, start: date, end: date, settings: Settings | None = None) -> list[str]:
    """Keys of `granularity` whose window overlaps [start, end] (dates inclusive).

    Partitions come from `settings` (default: the environment's, `assets.PARTITIONS`).
    """
    pdef = (partitions.build(settings) if settings else PARTITIONS)[granularity]
    keys = pdef.get_partition_keys()
    return [k for k in keys if (w := pdef.time_window_for_partition_key(k)).start.date() <= end and w.end.date() > start]


def contiguous_batches(granularity: str, keys: list[str], size: int | None, pdefs: dict | None = None) -> list[list[str]]:
    """`keys` in runs of at most `size` (None: unbounded) partitions that are adjacent in the
    partitions definition: a run covers a range, so a key left out (e.g. skipped) starts a new one."""
    order = {k: i for i, k in enumerate((pdefs or PARTITIONS)[granularity].get_partition_keys())}
    batches: list[list[str]] = []
    for key in keys:
        last = batches[-1] if batches else None
        if last and order.get(key) == order.get(last[-1], -2) + 1 and (size is None or len(last) < size):
            last.append(key)
        else:
            batches.append([key])
    return batches


def materialize_range(
    granularity: str,
    keys: list[str],
    *,
    inst: dg.DagsterInstance,
    resources: dict | None = None,
    batch_size: int | None = None,
    on_batch: Callable[[str, list[str], dg.ExecuteInProcessResult], None] | None = None,
    log_level: str = "WARNING",
    assets: list[dg.AssetsDefinition] | None = None,
    tags: dict[str, str] | None = None,
    keep_going: bool = False,
) -> list[dg.ExecuteInProcessResult]:
    """Materialize `keys` of one asset, one run per batch of at most `batch_size` contiguous
    partitions (default: each contiguous stretch in one run). `tags` are added to every run.

    Without `keep_going` it stops after a failed run. With it, a failed run of several partitions
    is followed by one run per partition of that batch (each partition is replaced on its own, so
    rerunning those that had succeeded changes nothing), and the batches after it run too: a bad
    partition fails only itself, and the failed runs of one partition name exactly the failed keys.

    `assets` defaults to the assets of the environment's settings (`assets.USAGE_ASSETS`).
    """
    assets = assets or USAGE_ASSETS
    asset = {a.key.path[-1]: a for a in assets}[f"{granularity}_user_usage"]
    pdefs = {granularity: asset.partitions_def}
    results = []

    def run(batch: list[str]) -> dg.ExecuteInProcessResult:
        result = dg.materialize(
            assets,
            selection=[asset],
            instance=inst,
            resources=resources or {"db": PostgresResource()},
            tags={**(tags or {}), RANGE_START: batch[0], RANGE_END: batch[-1]},
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        )
        results.append(result)
        if on_batch:
            on_batch(granularity, batch, result)
        return result

    for batch in contiguous_batches(granularity, keys, batch_size or None, pdefs):
        if run(batch).success:
            continue
        if not keep_going:
            break
        if len(batch) > 1:
            for key in batch:
                run([key])
    return results


def failure_reason(result: dg.ExecuteInProcessResult) -> str:
    """First line of the first step failure of a failed run ('' when there is none)."""
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        message = (data.error.message if data and data.error else "").strip()
        if message:
            # 'dagster._core.definitions.events.Failure: daily partition ... failed ...': drop the class
            return re.sub(r"^[\w.]+(Error|Failure|Exception): ", "", message.splitlines()[0])
    return ""


def submit_backfill(keys: dict[str, list[str]], *, inst: dg.DagsterInstance, tags: dict[str, str] | None = None, title: str | None = None) -> str:
    """Record a Dagster backfill of `keys` ({granularity: partition keys}) for the daemon to run.

    The backfill daemon launches its runs through the instance's run coordinator (queue, pools,
    tag limits), days before the weeks and months above them, `BackfillPolicy` batches per run.
    Returns the backfill id (UI: /runs/b/<id>).
    """
    import time

    from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
    from dagster._core.execution.backfill import PartitionBackfill
    from dagster._core.utils import make_new_backfill_id

    by_name = {a.key.path[-1]: a.key for a in USAGE_ASSETS}
    subset = AssetGraphSubset(
        partitions_subsets_by_asset_key={
            by_name[f"{g}_user_usage"]: PARTITIONS[g].subset_with_partition_keys(ks) for g, ks in keys.items() if ks
        },
    )
    backfill_id = make_new_backfill_id()
    inst.add_backfill(
        PartitionBackfill.from_asset_graph_subset(
            backfill_id=backfill_id,
            backfill_timestamp=time.time(),
            tags=tags or {},
            dynamic_partitions_store=inst,
            asset_graph_subset=subset,
            title=title,
            description=None,
            run_config=None,
        )
    )
    return backfill_id
