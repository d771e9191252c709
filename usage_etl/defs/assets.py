"""Dagster assets: partitioned daily, weekly and monthly per-user usage.

The assets only wire partitions, the database resource and metadata to the plain functions of
`pipeline`; `automation` decides when they run. A run may cover a range of partitions (a batch of a
backfill); each partition of the range is still read, written and committed on its own,
`USAGE_ETL_PARTITION_WORKERS` (default 2) at a time, so memory is bounded by that many windows.
"""


from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import dagster as dg

from usage_etl import pipeline
from usage_etl.defs import asset_checks
from usage_etl.defs import catalog
from usage_etl.defs import automation
from usage_etl.defs import errors as db_errors
from usage_etl.defs import late_data
from usage_etl.defs import partitions
from usage_etl.pricing import provenance
from usage_etl.defs.claude_code import build_claude_code_asset
from usage_etl.settings import AutomationSettings, Settings
from usage_etl.pricing.book import PriceBook, load_price_book
from usage_etl.defs.resources import PostgresResource
from usage_etl.sources.mapping_check import check_source
from usage_etl.sources.postgres import shared_connections

GROUP = "usage"


def _figures(r: pipeline.PartitionResult) -> dict:
    """One partition's own figures, as the UI lists and plots them per partition: users
    (user-partitions; also `dagster/row_count`), messages, each token column's sum (tokens),
    total_tokens (tokens), cost_usd (USD), unpriced_messages, rejected_rows (quarantined raw rows),
    rows_written (summary rows inserted, updated or deleted); for a day also raw_rows and
    grain_digest (what `automation.DaysChangedSinceRollup` compares)."""
    md: dict = {"dagster/row_count": r.users, "users": r.users, "messages": r.messages, **r.token_sums}
    md.update(total_tokens=r.total_tokens, cost_usd=float(r.cost_usd), unpriced_messages=r.unpriced_messages,
              rejected_rows=r.rejected_rows, rows_written=r.rows_written)
    if r.unpriced_models:
        md["unpriced_models"] = dg.MetadataValue.json(r.unpriced_models)
    md["price_book_versions"] = dg.MetadataValue.json(r.price_book_versions)
    if not r.published:  # an ERROR rule failed before commit: readers still see the previous rows
        md["unpublished"] = True
    if r.grain_digest:
        md["raw_rows"] = r.raw_rows
        md["grain_digest"] = r.grain_digest
    return md


def _record(context: dg.AssetExecutionContext, results: Sequence[pipeline.PartitionResult], extra: Callable[[str], dict] | None = None) -> dict:
    """Attach each partition's own `_figures` to that partition's materialization
    (`add_asset_metadata(partition_key=...)`: Dagster writes one materialization event per
    partition of a range run, and partition-scoped metadata overrides the run-wide one), and return
    the run-wide metadata common to all of them (`run_partitions`, `run_partition_range`)."""
    for r in results:
        context.add_asset_metadata({**_figures(r), **(extra(r.partition_key) if extra else {})}, partition_key=r.partition_key)
    keys = [r.partition_key for r in results]
    return {"run_partitions": len(keys), "run_partition_range": f"{keys[0]}..{keys[-1]}" if keys else ""}


def _run_each(
    context: dg.AssetExecutionContext,
    period_type: str,
    step: Callable[[str], pipeline.PartitionResult],
    workers: int,
    on_done: Callable[[str, pipeline.PartitionResult], None],
) -> list[pipeline.PartitionResult]:
    """Run `step` on each partition key of the run, `workers` at a time, and call `on_done(key,
    result)` in key order as each finishes (the integrity checks are reported there).

    Partitions are independent (own window, own transaction and lock), so several can run at once:
    while one waits on PostgreSQL, another's Polars work (which releases the GIL) goes on. Memory is
    bounded by `workers` windows. (On 2 cores a second worker made a 30-day backfill of 167k
    messages a day 28% faster, and two days of 1M 19% faster with 1.7x the peak memory:
    bench/compare.py.) The first failure cancels the partitions not yet started and is
    raised; partitions already committed stay (each is atomic, and a rerun replaces them).
    """
    keys = context.partition_keys

    def one(key: str) -> pipeline.PartitionResult:
        with db_errors.classified(f"{period_type} partition {key}"):
            return step(key)

    results = []
    # one ADBC connection per worker for the whole run, not one per partition (closed after the pool)
    with shared_connections():
        pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(keys))), thread_name_prefix=f"usage_etl_{period_type}")
        try:
            futures = [pool.submit(one, key) for key in keys]
            for i, (key, future) in enumerate(zip(keys, futures), 1):
                r = future.result()
                results.append(r)
                on_done(key, r)
                context.log.info(
                    f"{period_type} {key} ({i}/{len(keys)}): {r.users} users, {r.messages} messages, "
                    f"{r.rejected_rows} rejected, {r.rows_written} rows written"
                )
        finally:
            pool.shutdown(cancel_futures=True)
    return results


def build_assets(
    settings: Settings, book: PriceBook | None = None, *, auto: AutomationSettings | None = None
) -> list[dg.AssetsDefinition]:
    """The daily, weekly and monthly assets for `settings` (timezone, start date, schemas, source
    mapping) and `auto` (automation, retries, batch size; default: from the environment), then the
    Claude Code ingestion asset when the source configures one.

    The `db` resource supplies only the connection; everything else comes from `settings`.
    `book` (default: `load_price_book()`, read now) prices every daily run of these definitions
    and sets the daily asset's code version, so a changed book marks its partitions stale.
    Raises PriceBookError for an invalid book.
    """
    auto = auto or AutomationSettings.from_env()
    PARTITIONS = partitions.build(settings)
    book = load_price_book() if book is None else book
    ingest = build_claude_code_asset(settings, GROUP)

    @dg.asset(
        partitions_def=PARTITIONS["daily"],
        code_version=provenance.code_version(book),
        deps=[ingest] if ingest else [late_data.RAW_KEY],
        backfill_policy=automation.backfill_policy(auto),
        retry_policy=db_errors.retry_policy(auto.retry_max, auto.retry_delay_seconds),
        freshness_policy=automation.freshness_policy(settings, auto),
        group_name=GROUP,
        kinds={"polars", "postgres"},
        owners=auto.owners,
        metadata=catalog.summary_metadata(settings),
        pool="usage_etl_db",
        check_specs=asset_checks.check_specs("daily_user_usage", "daily", PARTITIONS["daily"]),
    )
    def daily_user_usage(context: dg.AssetExecutionContext, db: PostgresResource):
        """Per-user usage for each day: `user_token_usage`, `user_token_usage_by_model` and
        `user_token_usage_by_dimension` rows with period_type='daily', the conversation-day grains,
        and quarantined raw rows of the day. Checks the source mapping first; the integrity checks
        of each partition run in the same step, after the write."""
        engine, url = db.engine, db.url()
        # A structural mapping error stops the run before any partition is written, and is not
        # retried; what the latest rows' content suggests is only a warning (bad rows are quarantined).
        with db_errors.classified(f"source mapping check of {pipeline.source_name(settings)}"):
            for warning in check_source(engine, settings, content=False):
                context.log.warning(f"source mapping: {warning}")
        pending = asset_checks.start(context, engine, settings, "daily", context.asset_key)
        results = _run_each(
            context,
            "daily",
            lambda key: pipeline.materialize_day(engine, url, settings, book, partitions.window(PARTITIONS["daily"], "daily", key), audit=pending.audit()),
            auto.partition_workers,
            pending.submit,
        )
        unpartitioned = pipeline.quarantine_unpartitioned(engine, url, settings)
        run_wide = _record(context, results)
        yield dg.MaterializeResult(
            metadata={**run_wide, "price_book_version": book.version, "rows_without_created_at": unpartitioned},
            data_version=dg.DataVersion(provenance.data_version(r.grain_digest for r in results)),
        )
        yield from pending.evaluations()

    def progress(period_type: str, key: str) -> dict:
        """`days_in_period`, `complete_days` (the period's days that are daily partitions now) and
        `in_progress` (the period has not ended with the last complete day)."""
        tw = PARTITIONS[period_type].time_window_for_partition_key(key)
        total = (tw.end.date() - tw.start.date()).days
        last = PARTITIONS["daily"].get_last_partition_key()
        done = 0 if last is None else max(0, min(total, (date.fromisoformat(last) - tw.start.date()).days + 1))
        return {"days_in_period": total, "complete_days": done, "in_progress": done < total}

    def _rollup_asset(period_type: str) -> dg.AssetsDefinition:
        @dg.asset(
            name=f"{period_type}_user_usage",
            partitions_def=PARTITIONS[period_type],
            # a week or month in progress depends on its days that exist so far
            deps=[dg.AssetDep(daily_user_usage, partition_mapping=dg.TimeWindowPartitionMapping(allow_nonexistent_upstream_partitions=True))],
            backfill_policy=automation.backfill_policy(auto),
            retry_policy=db_errors.retry_policy(auto.retry_max, auto.retry_delay_seconds),
            automation_condition=automation.rollup_condition(),
            group_name=GROUP,
            kinds={"polars", "postgres"},
            owners=auto.owners,
            metadata=catalog.summary_metadata(settings),
            pool="usage_etl_db",
            check_specs=asset_checks.check_specs(f"{period_type}_user_usage", period_type, PARTITIONS[period_type]),
            description=f"Per-user usage for each {period_type.removesuffix('ly')} (period_type='{period_type}') in "
            f"{settings.schema}.{catalog.SUMMARY_TABLE} and its by-model and by-dimension tables, rolled up from the "
            "conversation-day grain: exact distinct conversation counts, no raw rescan. The period in progress "
            "covers its complete days so far (`complete_days` of `days_in_period`, `in_progress`).",
        )
        def rollup(context: dg.AssetExecutionContext, db: PostgresResource):
            asset_checks.require_daily_checks_passed(context, daily_user_usage.key)
            engine, url = db.engine, db.url()
            pending = asset_checks.start(context, engine, settings, period_type, daily_user_usage.key)
            # the days' grains as read, taken before the read: a day rewritten meanwhile differs later
            seen = {k: automation.days_digest(context.instance, daily_user_usage.key, PARTITIONS[period_type], k) for k in context.partition_keys}
            results = _run_each(
                context,
                period_type,
                lambda key: pipeline.run_rollup(engine, url, settings, partitions.window(PARTITIONS[period_type], period_type, key), audit=pending.audit()),
                auto.partition_workers,
                pending.submit,
            )
            yield dg.MaterializeResult(metadata=_record(context, results, lambda k: {"daily_grain_digest": seen[k] or "", **progress(period_type, k)}))
            yield from pending.evaluations()

        return rollup

    return [daily_user_usage, _rollup_asset("weekly"), _rollup_asset("monthly"), *([ingest] if ingest else [])]


SETTINGS = Settings.from_env()
PARTITIONS = partitions.build(SETTINGS)
USAGE_ASSETS = build_assets(SETTINGS)
daily_user_usage, weekly_user_usage, monthly_user_usage = USAGE_ASSETS[:3]
