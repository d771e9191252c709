"""Launch materializations through Dagster from Python (CLI, demo, tests).

Runs execute in this process but are recorded in the Dagster instance (`DAGSTER_HOME`, default
`./.dagster`), so they show in the UI next to scheduled runs, each under the named job of its asset
(`JOBS`: usage_etl_daily, usage_etl_weekly, usage_etl_monthly) with its partition range tags. A
range of partitions runs in batches of contiguous partitions, one run per batch; `record_backfill`
and `finish_backfill` make such in-process runs one entry of the UI's Backfills tab.
`submit_backfill` instead hands the range to the daemon as one Dagster backfill.
With a Claude Code source both land new transcript lines first (the unpartitioned
`claude_code_messages` asset, upstream of the days).
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
from usage_etl.defs.assets import PARTITIONS, SETTINGS, USAGE_ASSETS
from usage_etl.defs.claude_code import ASSET_NAME as INGEST_ASSET
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


def job_name(granularity: str) -> str:
    return f"usage_etl_{granularity}"


INGEST_JOB = "usage_etl_daily_with_ingestion"


def jobs(assets: list[dg.AssetsDefinition] | None = None) -> list[dg.UnresolvedAssetJobDefinition]:
    """One named job per usage asset (what in-process runs and the UI's job pages show), and with a
    Claude Code source `INGEST_JOB`: land new transcript lines, then the days."""
    by_name = {a.key.path[-1]: a for a in assets or USAGE_ASSETS}
    out = [
        dg.define_asset_job(job_name(g), selection=[by_name[f"{g}_user_usage"]], description=f"Materialize partitions of {g}_user_usage.")
        for g in GRANULARITIES
    ]
    if INGEST_ASSET in by_name:
        out.append(dg.define_asset_job(INGEST_JOB, selection=[by_name[INGEST_ASSET], by_name["daily_user_usage"]],
                                       description=f"Land new Claude Code transcript lines ({INGEST_ASSET}), then materialize partitions of daily_user_usage."))
    return out


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


def periods_in_progress(granularity: str, last: date, settings: Settings | None = None) -> list[str]:
    """Weekly or monthly keys that exist now (the period in progress, `end_offset=1`) but start
    after `last`, so no complete day of theirs exists yet (e.g. the month on its first day)."""
    if granularity == "daily":
        return []
    pdef = (partitions.build(settings) if settings else PARTITIONS)[granularity]
    return [k for k in pdef.get_partition_keys() if pdef.time_window_for_partition_key(k).start.date() > last]


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
    ingest: bool = False,
    keep_going: bool = False,
) -> list[dg.ExecuteInProcessResult]:
    """Materialize `keys` of one asset, one run per batch of at most `batch_size` contiguous
    partitions (default: each contiguous stretch in one run). `tags` are added to every run; runs
    are of the named job `job_name(granularity)`.

    With `ingest`, a daily range and an ingestion asset among `assets` (Claude Code source), runs
    are of `INGEST_JOB` until the ingestion has succeeded once: new transcript lines are landed
    before their days are aggregated, and a failed ingestion fails its days rather than letting
    them be read from stale transcripts.

    Without `keep_going` it stops after a failed run. With it, a failed run of several partitions
    is followed by one run per partition of that batch (each partition is replaced on its own, so
    rerunning those that had succeeded changes nothing), and the batches after it run too: a bad
    partition fails only itself, and the failed runs of one partition name exactly the failed keys.

    `assets` defaults to the assets of the environment's settings (`assets.USAGE_ASSETS`).
    """
    assets = assets or USAGE_ASSETS
    defs = dg.Definitions(assets=assets, jobs=jobs(assets), resources=resources or {"db": PostgresResource()})
    by_name = {a.key.path[-1]: a for a in assets}
    pdefs = {granularity: by_name[f"{granularity}_user_usage"].partitions_def}
    ingest_first = [ingest and granularity == "daily" and INGEST_ASSET in by_name]
    results = []

    def run(batch: list[str]) -> dg.ExecuteInProcessResult:
        name = INGEST_JOB if ingest_first[0] else job_name(granularity)
        result = defs.resolve_job_def(name).execute_in_process(
            instance=inst,
            tags={**(tags or {}), RANGE_START: batch[0], RANGE_END: batch[-1]},
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        )
        if ingest_first[0] and any(e.asset_key.path[-1] == INGEST_ASSET for e in result.get_asset_materialization_events()):
            ingest_first[0] = False  # landed; until then every run ingests first, so no day is read stale
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


def observe_raw(days: list[str], *, inst: dg.DagsterInstance, engine, settings: Settings | None = None) -> int:
    """Record one observation of the raw asset per day of `days` (raw row count, fingerprint as
    data version: `late_data.observe`) before a run reads them, so the UI shows each day's raw
    state and the days' materializations take it as their input version (fresh, not stale).
    Skipped (returns 0) with a Claude Code source, whose days read the ingestion asset instead,
    or when the source table does not exist yet. Returns the number of observations."""
    import sqlalchemy as sa

    from usage_etl.defs import late_data

    settings = settings or SETTINGS
    src = settings.source_config
    if src.claude_code or not days or not sa.inspect(engine).has_table(src.table, schema=src.schema_name):
        return 0
    events = late_data.observe(engine, settings, days)
    for event in events:
        inst.report_runless_asset_event(event)
    return len(events)


def submit_backfill(keys: dict[str, list[str]], *, inst: dg.DagsterInstance, tags: dict[str, str] | None = None, title: str | None = None) -> str:
    """Record a Dagster backfill of `keys` ({granularity: partition keys}) for the daemon to run.

    The backfill daemon launches its runs through the instance's run coordinator (queue, pools,
    tag limits), days before the weeks and months above them, `BackfillPolicy` batches per run;
    with a Claude Code source the backfill includes its ingestion asset, run before the days.
    Returns the backfill id (UI: /runs/b/<id>).
    """
    backfill = _new_backfill(keys, inst, tags, title)
    inst.add_backfill(backfill)
    return backfill.backfill_id


# Dagster has no public API to record a backfill whose runs execute elsewhere: the three functions
# below use the names of defs/dagster_internals.py.
def _subset(keys: dict[str, list[str]]):
    from usage_etl.defs.dagster_internals import AssetGraphSubset

    from usage_etl.defs.automation import ingestion_keys

    by_name = {a.key.path[-1]: a.key for a in USAGE_ASSETS}
    return AssetGraphSubset(
        partitions_subsets_by_asset_key={
            by_name[f"{g}_user_usage"]: PARTITIONS[g].subset_with_partition_keys(ks) for g, ks in keys.items() if ks
        },
        non_partitioned_asset_keys=ingestion_keys(SETTINGS) if keys.get("daily") else set(),
    )


def _new_backfill(keys: dict[str, list[str]], inst: dg.DagsterInstance, tags: dict[str, str] | None, title: str | None):
    import time

    from usage_etl.defs.dagster_internals import PartitionBackfill
    from usage_etl.defs.dagster_internals import make_new_backfill_id

    return PartitionBackfill.from_asset_graph_subset(
        backfill_id=make_new_backfill_id(),
        backfill_timestamp=time.time(),
        tags=tags or {},
        dynamic_partitions_store=inst,
        asset_graph_subset=_subset(keys),
        title=title,
        description=None,
        run_config=None,
    )


def record_backfill(keys: dict[str, list[str]], *, inst: dg.DagsterInstance, tags: dict[str, str] | None = None, title: str | None = None) -> str:
    """Record a Dagster backfill of `keys` ({granularity: partition keys}) whose runs this process
    executes (tag them `dagster/backfill=<id>`); `finish_backfill` closes it. It is recorded as
    requested with every partition already requested, so a running daemon launches nothing for
    it, and the nightly and late-data sensors treat its partitions as running meanwhile.
    Returns the backfill id (UI: /runs/b/<id>)."""
    backfill = _new_backfill(keys, inst, tags, title)
    data = backfill.asset_backfill_data._replace(requested_subset=backfill.asset_backfill_data.target_subset, requested_runs_for_target_roots=True)
    inst.add_backfill(backfill._replace(asset_backfill_data=data))
    return backfill.backfill_id


def finish_backfill(backfill_id: str, done: dict[str, list[str]], failed: dict[str, list[str]], *, inst: dg.DagsterInstance) -> None:
    """Mark `backfill_id` completed: `done` partitions materialized, `failed` ones (and those
    not run after a failure) failed; status COMPLETED_SUCCESS, or COMPLETED_FAILED if any failed."""
    import time

    from usage_etl.defs.dagster_internals import BulkActionStatus

    backfill = inst.get_backfill(backfill_id)
    data = backfill.asset_backfill_data._replace(materialized_subset=_subset(done), failed_and_downstream_subset=_subset(failed))
    status = BulkActionStatus.COMPLETED_FAILED if any(failed.values()) else BulkActionStatus.COMPLETED_SUCCESS
    inst.update_backfill(backfill._replace(asset_backfill_data=data).with_status(status).with_end_timestamp(time.time()))
