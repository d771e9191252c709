"""Shared set-up for the orchestration tests: assets for given settings, raw rows, runs, reads."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from datetime import datetime, timezone

import dagster as dg
import sqlalchemy as sa
import time_machine

from usage_etl import sample
from usage_etl.defs import assets
from usage_etl.defs import automation
from usage_etl.defs import late_data
from usage_etl.defs import partitions
from usage_etl.settings import Settings
from usage_etl.defs.resources import PostgresResource


def freeze_time(when: datetime):
    """Freeze the clock (Python's, hence Dagster's and the sensors') at `when`."""
    return time_machine.travel(when, tick=False)

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def utc(y: int, m: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, m, d, h, mi, tzinfo=timezone.utc)


class Location:
    """The code location's assets and sensors, built for `settings` (like definitions.py)."""

    def __init__(self, settings: Settings, auto: automation.AutomationSettings | None = None):
        self.settings = settings
        self.auto = auto or automation.AutomationSettings(retry_max=0)
        self.partitions = partitions.build(settings)
        self.assets = assets.build_assets(settings, auto=self.auto)
        self.daily, self.weekly, self.monthly = self.assets[:3]  # then the ingestion asset, if configured
        self.raw = late_data.raw_asset(settings, self.partitions["daily"])
        self.nightly_sensor = automation.build_nightly_sensor(settings, self.auto, self.partitions)
        self.late_sensor = late_data.build_sensor(settings, self.auto, self.partitions)
        self.defs = dg.Definitions(
            assets=[self.raw, *self.assets],
            sensors=[self.nightly_sensor, self.late_sensor, automation.automation_sensor()],
            resources={"db": PostgresResource()},
        )

    def by_name(self, granularity: str) -> dg.AssetsDefinition:
        return {"daily": self.daily, "weekly": self.weekly, "monthly": self.monthly}[granularity]

    def requested(self, result: dg.EvaluateAutomationConditionsResult) -> dict[str, list[str]]:
        return {a.key.path[-1].split("_")[0]: sorted(result.get_requested_partitions(a.key)) for a in self.assets}

    def sense(self, sensor: dg.SensorDefinition, inst: dg.DagsterInstance, when: datetime, cursor: str | None) -> dg.SensorResult:
        """One evaluation of a sensor at `when`, as the daemon runs it (asset events stored)."""
        with freeze_time(when):
            ctx = dg.build_sensor_context(instance=inst, cursor=cursor, resources={"db": PostgresResource()}, definitions=self.defs)
            result = sensor(ctx)
            for event in result.asset_events:
                inst.report_runless_asset_event(event)
        return result

    @staticmethod
    def backfill(result: dg.SensorResult) -> dict[str, list[str]]:
        """The partitions of the sensor's one backfill request ({} when it requested nothing)."""
        if not result.run_requests:
            return {}
        [request] = result.run_requests
        subset = request.asset_graph_subset
        assert subset is not None, "expected a backfill request"
        return {
            g: sorted(subset.get_partitions_subset(k).get_partition_keys()) if k in subset.asset_keys else []
            for g, k in automation.ASSET_KEYS.items()
        }

    def submit(self, inst: dg.DagsterInstance, result: dg.SensorResult) -> str:
        """Store the sensor's backfill request in the instance, as the sensor daemon does."""
        from usage_etl.defs.dagster_internals import PartitionBackfill, make_new_backfill_id

        [request] = result.run_requests
        backfill_id = make_new_backfill_id()
        inst.add_backfill(
            PartitionBackfill.from_asset_graph_subset(
                backfill_id=backfill_id, backfill_timestamp=0.0, tags=request.tags, dynamic_partitions_store=inst,
                asset_graph_subset=request.asset_graph_subset, title=None, description=None, run_config=None,
            )
        )
        return backfill_id

    def materialize(self, inst: dg.DagsterInstance, granularity: str, keys: list[str], **resources) -> dg.ExecuteInProcessResult:
        """One in-process run over the contiguous range keys[0]..keys[-1]."""
        return dg.materialize(
            self.assets,
            selection=[self.by_name(granularity)],
            instance=inst,
            resources=resources or {"db": PostgresResource()},
            tags={RANGE_START: keys[0], RANGE_END: keys[-1]},
            raise_on_error=False,
        )

    def report(self, inst: dg.DagsterInstance, granularity: str, keys: Iterable[str]) -> None:
        """Record materializations without running anything (state for automation tests)."""
        key = self.by_name(granularity).key
        for k in keys:
            inst.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=k))


def message(id_: int, user: int, created_at: datetime, input_tokens: int, output_tokens: int, conversation: int = 1) -> dict:
    """One raw `chat_messages` row with Anthropic-style usage (total = input + output tokens)."""
    return {
        "id": f"00000000-0000-4000-8000-{id_:012d}",
        "user_id": f"00000000-0000-4000-a000-{user:012d}",
        "conversation_id": f"00000000-0000-4000-9000-{conversation:012d}",
        "agent_id": "00000000-0000-4000-b000-000000000001",
        "model": "claude-sonnet-4-20250514",
        "created_at": created_at,
        "metadata": json.dumps({"usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}, "status": "success"}),
    }


def user_id(user: int) -> str:
    return f"00000000-0000-4000-a000-{user:012d}"


def insert(engine: sa.Engine, settings: Settings, rows: list[dict]) -> None:
    sample.ensure_source_table(engine, settings)
    t = sa.table(settings.source_table, *[sa.column(c) for c in rows[0]], schema=settings.source_schema)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                f"INSERT INTO {conn.dialect.identifier_preparer.format_table(t)} (id, user_id, conversation_id, agent_id, model, created_at, metadata) "
                "VALUES (:id, :user_id, :conversation_id, :agent_id, :model, :created_at, CAST(:metadata AS jsonb))"
            ),
            rows,
        )


def totals(engine: sa.Engine, settings: Settings, period_type: str) -> dict[tuple[str, str], tuple[int, int]]:
    """{(period start date, user_id): (total_tokens, message_count)} of one period type."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                f'SELECT period_start, user_id, total_tokens, message_count FROM "{settings.schema}".user_token_usage '
                "WHERE period_type = :pt ORDER BY 1, 2"
            ),
            {"pt": period_type},
        ).all()
    tz = settings.tz
    return {(r[0].astimezone(tz).date().isoformat(), r[1]): (r[2], r[3]) for r in rows}
