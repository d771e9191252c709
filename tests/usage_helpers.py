"""Shared helpers of the source tests: example configurations, seed DDL, Dagster runs, result rows."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from usage_etl.defs.assets import build_assets
from usage_etl.settings import Settings
from usage_etl.defs.resources import PostgresResource
from usage_etl.source_config import SourceConfig, load_source_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SEED_SQL = Path(__file__).resolve().parent / "seed_sql"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"

# Measures compared by the tests, in this order.
MEASURES = ["message_count", "error_count", "conversation_count", "input_tokens", "cache_creation_input_tokens",
            "cache_read_input_tokens", "output_tokens", "reasoning_tokens", "total_tokens", "cost_usd", "paid_amount"]


def example(name: str) -> SourceConfig:
    return load_source_config(EXAMPLES / name)


def settings_for(db_url: sa.URL, source: SourceConfig | None, start: date = date(2026, 3, 1)) -> Settings:
    return Settings(database_url=db_url.render_as_string(hide_password=False), source=source, start_date=start)


def run_sql_file(engine: sa.Engine, path: Path) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(path.read_text())


def materialize(settings: Settings, asset: str, first: str | None = None, last: str | None = None, *, also: tuple[str, ...] = ()) -> dg.ExecuteInProcessResult:
    """Materialize `asset` (and `also`) of `build_assets(settings)` in one run over [first, last]."""
    assets = build_assets(settings)
    by_name = {a.key.to_user_string(): a for a in assets}
    tags = {RANGE_START: first, RANGE_END: last or first} if first else {}
    return dg.materialize(
        assets,
        selection=[by_name[n] for n in (asset, *also)],
        resources={"db": PostgresResource(database_url=settings.database_url or "")},
        instance=dg.DagsterInstance.ephemeral(),
        tags=tags,
        raise_on_error=False,
    )


def materialize_all(settings: Settings, days: tuple[str, str], weeks: tuple[str, str], months: tuple[str, str], also: tuple[str, ...] = ()) -> None:
    """Days (with `also`, e.g. the JSONL ingestion), then weeks, then months; each must succeed."""
    for asset, (first, last), extra in (("daily_user_usage", days, also), ("weekly_user_usage", weeks, ()), ("monthly_user_usage", months, ())):
        result = materialize(settings, asset, first, last, also=extra)
        assert result.success, [e.message for e in result.all_events if e.is_failure]


def summary(engine: sa.Engine, period_type: str, *, table: str = "user_token_usage", keys: tuple[str, ...] = ()) -> dict[tuple, tuple]:
    """{(user_id, period_start date, *keys): MEASURES} of one period type."""
    cols = ", ".join(MEASURES)
    extra = "".join(f", {k}" for k in keys)
    sql = f"SELECT user_id, (period_start AT TIME ZONE 'UTC')::date{extra}, {cols} FROM {table} WHERE period_type = :p"
    with engine.connect() as conn:
        rows = conn.execute(sa.text(sql), {"p": period_type}).all()
    n = 2 + len(keys)
    return {tuple(r[:n]): tuple(r[n:]) for r in rows}


def snapshot(engine: sa.Engine, schema: str = "public") -> dict[str, list[tuple]]:
    """Every row of every table of `schema`, sorted: compares whole databases before and after."""
    with engine.connect() as conn:
        tables = conn.execute(
            sa.text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s AND table_type = 'BASE TABLE' ORDER BY 1"),
            {"s": schema},
        ).scalars().all()
        return {t: sorted(conn.exec_driver_sql(f'SELECT * FROM "{schema}"."{t}"').all(), key=repr) for t in tables}
