"""`usage-etl backfill` and `usage-etl check`: materialize and check ranges of partitions."""

from __future__ import annotations

import sys
import time
from datetime import date, datetime

import click

from usage_etl.cli import common


@click.command()
@common.day_range_options
@common.granularity_option("Which assets; 'all' runs days first, then the weeks and months over them.")
@click.option(
    "--batch-size",
    type=click.IntRange(min=0),
    default=None,
    help="Partitions per run; 0 runs each granularity's whole range in one run "
    "[default: USAGE_ETL_BACKFILL_BATCH_SIZE or 30].",
)
@click.option(
    "--submit",
    is_flag=True,
    help="Hand the range to the Dagster daemon as one backfill (queued, pool-limited, retried) and return; "
    "without it the runs execute here, one after the other.",
)
def backfill(start: datetime | None, end: datetime | None, granularity: str, batch_size: int | None, submit: bool = False) -> None:
    """Materialize a range of partitions through Dagster; the runs show in the Dagster UI.

    Days run first, then the weeks and months over them, each in runs of at most --batch-size
    contiguous partitions, with a progress line per run and a summary at the end. A range up to
    the last complete day also materializes a week or month that started today (no complete day
    yet: empty, recorded as in progress), so no existing partition is left missing. The raw days
    are observed first (row counts, fingerprints; the UI's raw_messages asset). With a Claude
    Code source, the first run of days lands new transcript lines first. Safe to repeat:
    every partition is replaced, never added to.

    A failed run does not stop the backfill: its partitions run again one per run, so only the
    partitions that fail on their own fail; weeks and months over a failed day are skipped, the
    others run. The summary names the failed and skipped partition keys; exit status 1 then.
    """

    from usage_etl.defs import runs
    from usage_etl.settings import AutomationSettings

    settings = common.settings()
    try:
        size = AutomationSettings.from_env().batch_size if batch_size is None else batch_size
    except common.ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    first, last = common.day_range(runs.PARTITIONS["daily"], start, end)
    inst = runs.instance()
    grains = runs.GRANULARITIES if granularity == "all" else [granularity]
    keys = {g: runs.partition_keys(g, first, last) for g in grains}
    if last == date.fromisoformat(runs.PARTITIONS["daily"].get_last_partition_key()):
        # up to yesterday: the week or month that started today exists too; materialized (empty,
        # `complete_days` 0) it shows as in progress instead of missing
        keys = {g: ks + runs.periods_in_progress(g, last) for g, ks in keys.items()}
    total = sum(len(k) for k in keys.values())
    title = f"usage-etl backfill {first}..{last}"
    engine, _ = common.engine(settings)  # the database answers (or one line and exit 1) before any run
    observed = runs.observe_raw(keys.get("daily", []), inst=inst, engine=engine, settings=settings)
    seen = f"; {observed} raw days observed first (row counts, fingerprints)" if observed else ""
    if submit:
        bid = runs.submit_backfill(keys, inst=inst, tags={"usage_etl/trigger": "cli"}, title=title)
        click.echo(f"submitted backfill {bid}: {total} partitions ({common.counts(keys)}) {first}..{last}{seen}")
        click.echo(f"the daemon runs it; progress in the UI under /runs/b/{bid} (instance {inst.root_directory})")
        return
    backfill_id = runs.record_backfill(keys, inst=inst, tags={"usage_etl/trigger": "cli"}, title=title)
    tags = {"dagster/backfill": backfill_id, "usage_etl/trigger": "cli"}
    n_runs = sum(len(runs.contiguous_batches(g, k, size or None)) for g, k in keys.items() if k)
    click.echo(
        f"backfill {backfill_id}: {first}..{last}, {total} partitions ({common.counts(keys)}) in {n_runs} runs"
        f"{f' of up to {size} partitions' if size else ''}{seen}"
    )
    t0 = time.perf_counter()
    done = {"runs": 0, "partitions": 0, "planned": n_runs}
    failed: dict[str, list[str]] = {}
    ok: dict[str, list[str]] = {g: [] for g in grains}

    def progress(g: str, batch: list[str], result) -> None:
        done["runs"] += 1
        done["partitions"] += len(batch) if result.success else 0
        status, note = "ok", ""
        if result.success:
            ok[g] += batch
        else:
            status, reason = "FAILED", runs.failure_reason(result)
            if len(batch) > 1:  # materialize_range reruns its partitions one per run
                done["planned"] += len(batch)
                note = f"; rerunning its {len(batch)} partitions one per run"
            else:
                failed.setdefault(g, []).append(batch[0])
            note = (f": {reason[:300]}" if reason else "") + note
        click.echo(
            f"  {g:<7} {batch[0]}…{batch[-1]} {len(batch):>3} partitions  run {result.run_id[:8]} {status:<6} "
            f"[{done['runs']}/{done['planned']} runs, {done['partitions']}/{total} partitions, {time.perf_counter() - t0:.1f}s]{note}"
        )
        for event in result.get_asset_materialization_events():
            if event.asset_key.path[-1] == runs.INGEST_ASSET:
                md = {k: v.value for k, v in event.materialization.metadata.items()}
                click.echo(f"  ingested {md['lines_read']} new transcript lines: {md['messages_inserted']} new messages, "
                           f"{md['messages_updated']} updated, {md['lines_quarantined']} quarantined")

    skipped: dict[str, list[str]] = {}
    try:
        for g in grains:
            if g != "daily" and failed.get("daily") and not skipped:
                # The rollups refuse a window with a failed day anyway: skip them and say so instead.
                bad_days = [date.fromisoformat(d) for d in failed["daily"]]
                for r in grains[grains.index(g):]:
                    skipped[r] = [k for k in keys[r] if _overlaps(runs.PARTITIONS[r], k, bad_days)]
                    kept = [k for k in keys[r] if k not in skipped[r]]
                    done["planned"] -= len(runs.contiguous_batches(r, keys[r], size or None)) - len(runs.contiguous_batches(r, kept, size or None))
            todo = [k for k in keys[g] if k not in skipped.get(g, [])]
            if skipped.get(g):
                click.echo(f"  {g:<7} skipped {len(skipped[g])} partitions over failed days: {', '.join(skipped[g])}")
            runs.materialize_range(g, todo, inst=inst, batch_size=size or None, on_batch=progress, tags=tags, ingest=True, keep_going=True)
    finally:  # also on Ctrl-C: the Backfills tab must not show it running forever
        runs.finish_backfill(backfill_id, ok, {g: [k for k in keys[g] if k not in ok[g]] for g in grains}, inst=inst)
    elapsed = time.perf_counter() - t0
    if failed or any(skipped.values()):
        listed = "; ".join(f"failed {g} {', '.join(k)}" for g, k in failed.items())
        listed += "".join(f"; skipped {g} {', '.join(k)} (over failed days)" for g, k in skipped.items() if k)
        click.echo(
            f"backfill {backfill_id} FAILED: {done['runs']} runs, {done['partitions']}/{total} partitions materialized "
            f"in {elapsed:.1f}s; {listed.lstrip('; ')}. Fix the cause and run the same command again (safe to repeat)."
        )
        sys.exit(1)
    click.echo(
        f"backfill {backfill_id} done: {done['runs']} runs, {total} partitions in {elapsed:.1f}s "
        f"({total / elapsed if elapsed else 0:.1f} partitions/s); one Dagster backfill (UI: /runs/b/{backfill_id}) "
        f"in {inst.root_directory}"
    )


def _overlaps(pdef, key: str, days: list[date]) -> bool:
    window = pdef.time_window_for_partition_key(key)
    return any(window.start.date() <= d < window.end.date() for d in days)


@click.command()
@common.day_range_options
@common.granularity_option("Which assets' partitions to check; 'all' checks the days, weeks and months overlapping the range.")
def check(start: datetime | None, end: datetime | None, granularity: str) -> None:
    """Run the data-integrity checks (the assets' checks) on the partitions overlapping a range.

    Prints one line per partition and the failed checks; exits with status 1 if an ERROR check
    failed. Completeness reads materialized partitions from the Dagster instance (DAGSTER_HOME).
    """
    from usage_etl.checks import runner as check_runner
    from usage_etl.settings import Thresholds
    from usage_etl.defs import runs

    settings = common.settings()
    first, last = common.day_range(runs.PARTITIONS["daily"], start, end)
    engine, _ = common.engine(settings)
    try:
        thresholds = Thresholds.from_env()
    except common.ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    materialized = runs.instance().get_materialized_partitions(runs.USAGE_ASSETS[0].key)
    results = {
        g: check_runner.evaluate(engine, settings, g, runs.partition_keys(g, first, last), materialized_daily=materialized, thresholds=thresholds)
        for g in (runs.GRANULARITIES if granularity == "all" else [granularity])
    }
    click.echo(check_runner.render(results))
    errors = check_runner.failed_errors(results)
    click.echo(f"\n{len(errors)} ERROR check(s) failed" if errors else "\nno ERROR check failed")
    if errors:
        sys.exit(1)
