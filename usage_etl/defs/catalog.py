"""What the Dagster catalog shows of each table: column schemas with units, table names, owners.

`SUMMARY_COLUMNS` describes `user_token_usage` (one row per user and period), the main table the
daily, weekly and monthly assets write (`user_token_usage_by_model` and `_by_dimension` have the
same figures per model or per dimension value). Units are in the descriptions: tokens, USD,
counts, or timestamps. tests/test_catalog.py compares the columns with the migrated database.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from usage_etl.settings import Settings
from usage_etl.sources.postgres import source_name

SUMMARY_TABLE = "user_token_usage"
ALSO_WRITTEN = ("user_token_usage_by_model", "user_token_usage_by_dimension", "user_conversation_day_usage", "usage_quarantine")

_TOKENS = "tokens, summed over the user's messages of the period"
SUMMARY_COLUMNS: list[tuple[str, str, str]] = [  # (name, PostgreSQL type, description with unit)
    ("user_id", "text", "user, as in the raw source"),
    ("period_type", "text", "grain: daily, weekly or monthly (the asset)"),
    ("period_start", "timestamptz", "start of the partition's time window, business timezone"),
    ("period_end", "timestamptz", "end of the window (exclusive)"),
    ("input_tokens", "bigint", f"uncached input {_TOKENS}"),
    ("cache_creation_input_tokens", "bigint", f"input written to the prompt cache, {_TOKENS}"),
    ("cache_read_input_tokens", "bigint", f"input read from the prompt cache, {_TOKENS}"),
    ("output_tokens", "bigint", f"output {_TOKENS} (reasoning included)"),
    ("reasoning_tokens", "bigint", f"reasoning {_TOKENS}, a part of output_tokens"),
    ("total_tokens", "bigint", "input + cache creation + cache read + output, tokens"),
    ("message_count", "integer", "messages aggregated (count; quarantined rows excluded)"),
    ("error_count", "integer", "messages with an error status (count)"),
    ("conversation_count", "integer", "distinct conversations (count, exact across days)"),
    ("agent_ids", "text[]", "distinct agents of the period"),
    ("models", "text[]", "distinct models of the period"),
    ("cost_usd", "numeric(18,6)", "estimated cost from the price book, USD (exact from integer pico-USD)"),
    ("unpriced_message_count", "integer", "messages whose model has no price (count; cost 0)"),
    ("paid_amount", "numeric(18,6)", "amount the source reported as paid, in the source's unit; null if none"),
    ("first_activity", "timestamptz", "first message of the period"),
    ("last_activity", "timestamptz", "last message of the period"),
    ("computed_at", "timestamptz", "when the row was written"),
    ("price_book_version", "text", "price book version(s) the cost comes from"),
]


def summary_schema() -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name, type_, description=d) for name, type_, d in SUMMARY_COLUMNS],
        constraints=dg.TableConstraints(other=["primary key (user_id, period_type, period_start)"]),
    )


def summary_metadata(settings: Settings) -> dict:
    """Definition metadata of a usage asset: table name (schema.table), column schema, the
    other tables it writes."""
    return {
        "dagster/table_name": f"{settings.schema}.{SUMMARY_TABLE}",
        "dagster/column_schema": summary_schema(),
        "also_writes": ", ".join(f"{settings.schema}.{t}" for t in ALSO_WRITTEN),
    }


def raw_schema(settings: Settings) -> dg.TableSchema:
    """The raw source's columns as the source mapping reads them (a field taken from a JSON path
    or a constant has no column and is left out)."""
    c = settings.source_columns
    described: Sequence[tuple[str | None, str]] = [
        (c.id, "message id (count: one row per message)"),
        (c.user_id, "user"),
        (c.conversation_id, "conversation"),
        (c.agent_id, "agent"),
        (c.model, "model name as the provider reports it"),
        (c.created_at, "when the message was created: its business-timezone day is its partition"),
        (c.metadata, "jsonb; usage.* token counts (tokens) and status"),
    ]
    return dg.TableSchema(columns=[dg.TableColumn(name, description=d) for name, d in described if name])


def raw_metadata(settings: Settings) -> dict:
    return {"dagster/table_name": source_name(settings), "dagster/column_schema": raw_schema(settings)}

