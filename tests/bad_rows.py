"""A raw source with text columns (any user id, model or agent string), for the bad-row tests."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timezone

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from usage_etl import pipeline
from usage_etl.defs import partitions
from usage_etl.pricing.book import load_price_book
from usage_etl.settings import Settings
from usage_etl.source_config import FieldRef, SourceConfig

BOOK = load_price_book()
DAY = "2026-03-10"
AT = datetime(2026, 3, 10, 12, tzinfo=timezone.utc)
_ids = itertools.count(1)


def source_table(schema: str = "public", name: str = "raw_messages") -> sa.Table:
    return sa.Table(
        name,
        sa.MetaData(schema=schema),
        sa.Column("id", sa.Text),
        sa.Column("user_id", sa.Text),
        sa.Column("conversation_id", sa.Text),
        sa.Column("agent_id", sa.Text),
        sa.Column("model", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True)),
        sa.Column("metadata", JSONB(none_as_null=True)),
    )


def configure(settings: Settings, engine: sa.Engine, *, schema: str = "public", name: str = "raw_messages", team: bool = True, **source) -> Settings:
    """Settings reading `schema.name` (created here) with the chat_messages mapping, plus a
    breakdown `team` from metadata.team."""
    with engine.begin() as conn:
        conn.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
        source_table(schema, name).create(conn, checkfirst=True)
    src = SourceConfig.default(schema, name)
    if team:
        src = src.model_copy(update={"breakdowns": {"team": FieldRef(column="metadata", path=("team",))}})
    if source:
        src = src.model_copy(update=source)
    return settings.replace(source=src, start_date=date(2026, 3, 1))


def row(user: str | None = "alice", usage: object = None, *, at: datetime | None = AT, id: str | None = "", conv: str | None = "c1",
        agent: str | None = "a1", model: str | None = "claude-sonnet-4-20250514", **meta: object) -> dict:
    """One raw row; `usage` None means {"input_tokens": 10, "output_tokens": 5}, "absent" no usage key;
    `id` "" a fresh id; meta: other metadata keys."""
    usage = {"input_tokens": 10, "output_tokens": 5} if usage is None else usage
    return {"id": f"m{next(_ids)}" if id == "" else id, "user_id": user, "conversation_id": conv, "agent_id": agent, "model": model,
            "created_at": at, "metadata": {"usage": usage, **meta} if usage != "absent" else (meta or None)}


def insert(engine: sa.Engine, settings: Settings, rows: list[dict]) -> None:
    src = settings.source_config
    with engine.begin() as conn:
        conn.execute(sa.insert(source_table(src.schema_name, src.table)), rows)


def run(engine: sa.Engine, url: sa.URL, settings: Settings, period_type: str = "daily", key: str = DAY, **kw) -> pipeline.PartitionResult:
    pdef = partitions.build(settings)[period_type]
    window = partitions.window(pdef, period_type, key)
    if period_type == "daily":
        return pipeline.run_daily(engine, url, settings, BOOK, window, **kw)
    return pipeline.run_rollup(engine, url, settings, window, **kw)


def rows_of(engine: sa.Engine, table: str, schema: str = "public", order: str = "1") -> list[dict]:
    t = sa.table(table, schema=schema)
    with engine.connect() as conn:
        prep = conn.dialect.identifier_preparer
        return [dict(r._mapping) for r in conn.exec_driver_sql(f"SELECT * FROM {prep.format_table(t)} ORDER BY {order}")]


def quarantine(engine: sa.Engine, schema: str = "public") -> dict[str, tuple[str, str]]:
    """{message_id: (reason, detail)}"""
    return {r["message_id"]: (r["reason"], r["detail"]) for r in rows_of(engine, "usage_quarantine", schema)}
