"""One partition's unit of work: read -> normalize -> price -> aggregate -> write.

Plain functions over an engine, used by the Dagster assets, the CLI and the tests alike, so the
data flow does not depend on the orchestrator.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import polars as pl
import sqlalchemy as sa

from usage_etl import aggregate, store
from usage_etl.pricing import provenance
from usage_etl.settings import Settings
from usage_etl.frames import TOKEN_COLUMNS
from usage_etl.normalize import QUARANTINE_SCHEMA, normalize
from usage_etl.pricing.book import PriceBook, price_messages
from usage_etl.sources import fingerprint
from usage_etl.sources.postgres import RAW_DIGEST, WindowSnapshot, open_window, raw_schema, read_arrow, source_name, window_query, with_digest


class AuditFailed(RuntimeError):
    """A partition's written rows failed an ERROR-severity integrity rule inside the write
    transaction; it was rolled back, so readers still see the previous rows."""


@dataclass(frozen=True)
class Audit:
    """Run the partition's integrity rules (`checks.runner.evaluate`) on its rows inside the write
    transaction, before commit. `materialized_daily`, `thresholds` (a `runner.Thresholds`; None:
    from the environment) as `evaluate` takes them. An ERROR rule that fails rolls the write back;
    `raise_on_error` then raises AuditFailed, else the result says `published=False`."""

    materialized_daily: frozenset[str] = frozenset()
    thresholds: Any = None
    raise_on_error: bool = True


class _Unpublished(Exception):
    pass


def _audit(
    engine: sa.Engine,
    conn: sa.Connection,
    settings: Settings,
    window: store.Window,
    audit: Audit,
    result: PartitionResult,
    ids: pl.DataFrame | None = None,
    expected: pl.DataFrame | None = None,
) -> None:
    """Evaluate the rules on `conn` (its uncommitted rows) into `result.audit`; raise _Unpublished
    when an ERROR rule failed. (Imported here: checks.runner loads Dagster's partition definitions,
    which callers running without an audit do not need.)"""
    from usage_etl.checks import runner

    thresholds = audit.thresholds or runner.Thresholds.from_env()
    key = window.partition_key
    # The duplicate-id rule counts the ids of the raw rows this run read (`ids`: their message_id
    # column), rather than scan them again; the reconciliation takes the figures computed in the
    # read's snapshot (`expected`).
    dups = None if ids is None else {key: runner.duplicate_ids(ids, key)}
    found = runner.evaluate(
        engine,
        settings,
        window.period_type,
        [key],
        materialized_daily=audit.materialized_daily,
        thresholds=thresholds,
        connection=conn,
        duplicates=dups,
        expected=None if expected is None else {key: expected},
    )
    result.audit = found[key]
    failed = runner.failed_errors({window.period_type: found})
    if failed:
        raise _Unpublished(f"{window.period_type} {key} not published: " + "; ".join(f"{o.check}: {o.summary}" for _, _, o in failed))


@contextmanager
def _published(result: PartitionResult, audit: Audit | None) -> Iterator[None]:
    """Around the write transaction: a failed audit leaves `result.published` False (or raises)."""
    try:
        yield
    except _Unpublished as exc:
        result.published, result.writes = False, {}  # rolled back
        if audit is None or audit.raise_on_error:
            raise AuditFailed(str(exc)) from None


@dataclass
class PartitionResult:
    """What one partition run did; every figure is for its window."""

    partition_key: str
    raw_rows: int = 0  # rows read from the source
    messages: int = 0  # rows aggregated
    rejected_rows: int = 0  # rows quarantined
    users: int = 0
    total_tokens: int = 0  # tokens
    token_sums: dict[str, int] = field(default_factory=dict)  # tokens per token column of the summary
    cost_usd: Decimal = Decimal("0")  # USD, priced messages only
    unpriced_messages: int = 0
    unpriced_models: list[str] = field(default_factory=list)
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    price_book_versions: list[str] = field(default_factory=list)  # of the rows written
    grain_digest: str = ""  # daily only: provenance.frame_digest of the grain rows written
    writes: dict[str, store.WriteStats] = field(default_factory=dict)
    audit: list = field(default_factory=list)  # checks.rules.CheckOutcome of the rows written (with an Audit)
    published: bool = True  # False: the audit failed and the write was rolled back

    @property
    def rows_written(self) -> int:
        return sum(s.inserted + s.updated + s.deleted for s in self.writes.values())


def _summaries(grain: pl.DataFrame, dim_grain: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    lf = grain.lazy()
    return tuple(  # type: ignore[return-value]
        pl.collect_all(
            [
                aggregate.summarize(lf),
                aggregate.summarize(lf, by_model=True),
                aggregate.summarize(dim_grain.lazy(), by=aggregate.BREAKDOWN_KEYS),
            ]
        )
    )


def _fill_result(result: PartitionResult, user: pl.DataFrame) -> None:
    result.users = user.height
    result.messages = int(user["message_count"].sum())
    result.total_tokens = int(user["total_tokens"].sum())
    result.token_sums = {c: int(user[c].sum()) for c in TOKEN_COLUMNS if c in user.columns}
    pico = int(user["cost_pico_usd"].sum())
    result.cost_usd = (Decimal(pico) / Decimal(10**12)).quantize(Decimal("0.000001"))
    result.unpriced_messages = int(user["unpriced_message_count"].sum())
    versions = user["price_book_version"].str.split(",").explode().drop_nulls().unique().sort()
    result.price_book_versions = versions.to_list()


def _write_summaries(
    conn: sa.Connection, schema: str, window: store.Window, user: pl.DataFrame, by_model: pl.DataFrame, by_dim: pl.DataFrame, result: PartitionResult
) -> None:
    for name, frame, key in (
        (store.SUMMARY_TABLE, user, ["user_id", "period_type", "period_start"]),
        (store.BY_MODEL_TABLE, by_model, ["user_id", "period_type", "period_start", "model"]),
        (store.BY_DIMENSION_TABLE, by_dim, ["user_id", "period_type", "period_start", *aggregate.BREAKDOWN_KEYS]),
    ):
        table = store.reflect(conn, schema, name)
        result.writes[name] = store.upsert_window(conn, table, store.summary_rows(frame, window), window, key)


def _bounded(priced: pl.LazyFrame, timezone: str) -> tuple[pl.LazyFrame, pl.DataFrame]:
    """(messages within the user-day bounds, quarantine rows of the others): see
    `aggregate.user_day_bounds`."""
    checked = aggregate.user_day_bounds(priced, timezone).collect()
    over = checked.filter(pl.col("bound_reason").is_not_null())
    rejected = over.select(
        "message_id", "user_id", "created_at", pl.col("bound_reason").alias("reason"), pl.col("bound_detail").alias("detail"), RAW_DIGEST
    )
    # (nearly every day has no such user-day: then no filtered copy of the whole frame)
    kept = checked.filter(pl.col("bound_reason").is_null()) if over.height else checked
    return kept.drop("bound_reason", "bound_detail").lazy(), rejected.cast(QUARANTINE_SCHEMA)  # type: ignore[arg-type]


def _expected(snapshot: WindowSnapshot, settings: Settings, window: store.Window, quarantine: pl.DataFrame) -> pl.DataFrame:
    from usage_etl.checks import runner  # see _audit

    return runner.expected_in_snapshot(snapshot, settings, window, quarantine)


def run_daily(
    engine: sa.Engine,
    url: sa.URL,
    settings: Settings,
    book: PriceBook,
    window: store.Window,
    *,
    audit: Audit | None = Audit(),
    record_fingerprint: bool = False,
) -> PartitionResult:
    """Materialize one daily window atomically: summaries, by-model and by-dimension rows, both
    grains and quarantine. The source is read and normalized as `settings.source_config` says.

    With `audit` (default: on, raising), the integrity rules run on the written rows before commit,
    and an ERROR rule that fails rolls the write back: the previous rows stay (see `Audit`).
    `record_fingerprint`: also record the late-data fingerprint of the rows read
    (`fingerprint.of_rows`), in the same transaction, so it is committed with them or not at all.
    """
    src = settings.source_config
    with open_window(settings, url, window.start, window.end) as snapshot:
        # normalized a slice at a time (its rules are row by row), so only the slice is a frame;
        # raw_digest holds each row's number in the window until resolved below
        parts = [normalize(raw, src.tokens.semantics, src.status.error_values) for raw in snapshot.frames(rows=100_000)]
        raw_rows, versions = snapshot.height, snapshot.versions()
        ids = versions.select("message_id")
        messages = pl.concat([p.messages for p in parts], rechunk=False)
        rejected = [p.quarantine for p in parts]
        del parts
        priced, over_bounds = _bounded(price_messages(messages.lazy(), book), settings.timezone)
        del messages
        quarantine = pl.concat([*rejected, over_bounds])
        # only the quarantined rows get their digest, computed in the read's snapshot
        quarantine = quarantine.with_columns(snapshot.digests(quarantine[RAW_DIGEST]).alias(RAW_DIGEST))
        # the reconciliation's independent figures, over exactly the rows read
        expected = None if audit is None else _expected(snapshot, settings, window, quarantine)
    grain, dim_grain = pl.collect_all(
        [
            aggregate.conversation_day_grain(priced, settings.timezone, book.version),
            aggregate.breakdown_grain(priced, settings.timezone, src.dimensions, book.version),
        ]
    )
    user, by_model, by_dim = _summaries(grain, dim_grain)
    quarantine = quarantine.with_columns(source=pl.lit(source_name(settings)), partition_key=pl.lit(window.partition_key))
    result = PartitionResult(window.partition_key, raw_rows=raw_rows, rejected_rows=quarantine.height)
    result.grain_digest = provenance.frame_digest(grain)
    _fill_result(result, user)
    result.rejected_by_reason = dict(quarantine.group_by("reason").len().sort("reason").iter_rows())
    result.unpriced_models = sorted(
        priced.filter(~pl.col("priced")).select(pl.col("model").fill_null("(unknown)").unique()).collect().to_series().to_list()
    )
    d0, d1 = window.days
    with _published(result, audit), engine.begin() as conn:
        store.lock_partition(conn, settings.schema, window)
        g = store.reflect(conn, settings.schema, store.GRAIN_TABLE)
        store.replace_rows(conn, g, grain, (g.c.day >= d0) & (g.c.day < d1))
        bg = store.reflect(conn, settings.schema, store.DIMENSION_GRAIN_TABLE)
        store.replace_rows(conn, bg, dim_grain, (bg.c.day >= d0) & (bg.c.day < d1))
        q = store.reflect(conn, settings.schema, store.QUARANTINE_TABLE)
        store.replace_rows(conn, q, quarantine, (q.c.source == source_name(settings)) & (q.c.partition_key == window.partition_key))
        _write_summaries(conn, settings.schema, window, user, by_model, by_dim, result)
        if audit is not None:
            _audit(engine, conn, settings, window, audit, result, ids, expected)
        if record_fingerprint:
            fingerprint.record(conn, settings, d0, fingerprint.of_rows(d0, versions))
    return result


def quarantine_unpartitioned(engine: sa.Engine, url: sa.URL, settings: Settings) -> int:
    """Quarantine source rows whose created_at is NULL (they fall in no window), incrementally.

    Only rows whose `raw_digest` is not in the quarantine yet are read and normalized; quarantine
    rows whose raw row is gone (deleted, or given a created_at since) are deleted. Both are set
    operations on the server, so a nightly run costs one scan of the NULL rows' values, not a read
    and rewrite of all of them. Returns the number of such rows now quarantined.
    """
    src = settings.source_config
    name = source_name(settings)
    lock = sa.func.hashtextextended(f"usage_etl:{settings.schema}:unpartitioned:{name}", 0)
    with engine.connect() as conn:
        # A session lock: the new rows are read over ADBC (another session) between two transactions.
        conn.execute(sa.select(sa.func.pg_advisory_lock(lock)))
        try:
            q = store.reflect(conn, settings.schema, store.QUARANTINE_TABLE)
            mine = (q.c.source == name) & q.c.partition_key.is_(None)
            rows = with_digest(window_query(settings, None, None)).subquery("rows")
            conn.execute(sa.delete(q).where(mine, q.c.raw_digest.is_(None) | q.c.raw_digest.not_in(sa.select(rows.c.raw_digest))))
            conn.commit()
            known = sa.select(q.c.raw_digest).where(mine)  # never null after the delete
            raw = read_arrow(url, sa.select(rows).where(rows.c.raw_digest.not_in(known)), {**raw_schema(src), RAW_DIGEST: pl.Int64()})
            bad = normalize(raw, src.tokens.semantics, src.status.error_values).quarantine
            bad = bad.with_columns(source=pl.lit(name), partition_key=pl.lit(None, pl.String))
            if bad.height:
                store.copy_frame(conn, store.quote_table(q), bad.select([c.name for c in q.columns]))
            total = conn.execute(sa.select(sa.func.count()).select_from(q).where(mine)).scalar_one()
            conn.commit()
            return total
        finally:
            if not conn.invalidated:
                conn.rollback()
                conn.execute(sa.select(sa.func.pg_advisory_unlock(lock)))
                conn.commit()


def read_grain(engine: sa.Engine, url: sa.URL, schema: str, window: store.Window) -> pl.DataFrame:
    """Conversation-day grain rows of the window's days (`aggregate.GRAIN_SCHEMA`)."""
    d0, d1 = window.days
    with engine.connect() as conn:
        g = store.reflect(conn, schema, store.GRAIN_TABLE)
    stmt = sa.select(*[g.c[c] for c in aggregate.GRAIN_SCHEMA]).where(g.c.day >= d0, g.c.day < d1)
    return read_arrow(url, stmt, aggregate.GRAIN_SCHEMA)


def read_breakdown_grain(engine: sa.Engine, url: sa.URL, schema: str, window: store.Window, dimensions: list[str]) -> pl.DataFrame:
    """Breakdown grain rows (`aggregate.BREAKDOWN_GRAIN_SCHEMA`) of the window's days, configured
    dimensions only (rows of a dimension removed from the configuration are not rolled up)."""
    if not dimensions:
        return pl.DataFrame(schema=aggregate.BREAKDOWN_GRAIN_SCHEMA)
    d0, d1 = window.days
    with engine.connect() as conn:
        g = store.reflect(conn, schema, store.DIMENSION_GRAIN_TABLE)
    cols = [g.c[c] for c in aggregate.BREAKDOWN_GRAIN_SCHEMA]
    stmt = sa.select(*cols).where(g.c.day >= d0, g.c.day < d1, g.c.dimension.in_(dimensions))
    return read_arrow(url, stmt, aggregate.BREAKDOWN_GRAIN_SCHEMA)


def run_rollup(engine: sa.Engine, url: sa.URL, settings: Settings, window: store.Window, *, audit: Audit | None = Audit()) -> PartitionResult:
    """Materialize a weekly or monthly window from the conversation-day grains (no raw rescan).

    The grain is read while this transaction holds the partition lock and shared locks on the
    window's days (`store.lock_days_shared`), so no daily run can change those days between the
    read and the commit. With `audit`, as in `run_daily`.
    """
    result = PartitionResult(window.partition_key)
    with _published(result, audit), engine.begin() as conn:
        store.lock_partition(conn, settings.schema, window)
        store.lock_days_shared(conn, settings.schema, window)
        grain = read_grain(engine, url, settings.schema, window)
        dim_grain = read_breakdown_grain(engine, url, settings.schema, window, settings.source_config.dimensions)
        user, by_model, by_dim = _summaries(grain, dim_grain)
        _fill_result(result, user)
        unpriced = by_model.filter(pl.col("unpriced_message_count") > 0)["model"].unique().sort()
        result.unpriced_models = unpriced.to_list()
        _write_summaries(conn, settings.schema, window, user, by_model, by_dim, result)
        if audit is not None:
            _audit(engine, conn, settings, window, audit, result)
    return result


def materialize_day(
    engine: sa.Engine, url: sa.URL, settings: Settings, book: PriceBook, window: store.Window, *, audit: Audit | None = Audit()
) -> PartitionResult:
    """`run_daily`, recording the late-data fingerprint of the rows it read with the rows it wrote
    (an unpublished run records nothing: the fingerprint of the last published run stays).

    Two runs of one day serialize on a session advisory lock around the whole run, so the second
    reads what the first committed instead of computing the same day alongside it.
    """
    day = window.start.date()
    with engine.connect() as conn:
        conn.execute(sa.select(sa.func.pg_advisory_lock(fingerprint.lock_key(settings, day))))
        conn.commit()  # the session lock outlives the transaction; no snapshot is held meanwhile
        try:
            result = run_daily(engine, url, settings, book, window, audit=audit, record_fingerprint=True)
        finally:
            if not conn.invalidated:  # a lost connection has released its session lock already
                conn.rollback()
                conn.execute(sa.select(sa.func.pg_advisory_unlock(fingerprint.lock_key(settings, day))))
                conn.commit()
    return result
