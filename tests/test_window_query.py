"""window_query against a real table with awkward identifiers, a json (not jsonb) column and constants."""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from usage_helpers import settings_for

from usage_etl.source_config import parse_source_config
from usage_etl.sources.mapping_check import check_source
from usage_etl.sources.postgres import read_window


def test_quoted_identifiers_json_paths_and_constants(engine, db_url) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text('CREATE SCHEMA "Raw Logs"'))
        conn.execute(sa.text(
            'CREATE TABLE "Raw Logs"."Requests" ("Id" bigint, "user" text, "When" timestamptz, "order" text, payload json, "Cost" numeric(12, 4))'))
        conn.execute(sa.text(
            """INSERT INTO "Raw Logs"."Requests" VALUES
               (1, 'ann', '2026-03-30T10:00Z', 'o-1', '{"u": {"in": 12, "out": 3}, "st": "ok", "kind": "chat"}', 1.2500),
               (2, 'ann', '2026-03-31T10:00Z', 'o-2', '{"u": {"in": 1, "out": 1}}', NULL)"""))
    source = parse_source_config({
        "source": {"schema": "Raw Logs", "table": "Requests"},
        "columns": {"id": "Id", "time": "When", "user": "user", "conversation": "order", "status": {"column": "payload", "path": "st"},
                    "model": {"value": "claude-sonnet-4-20250514"}, "paid_amount": "Cost"},
        "tokens": {"semantics": "anthropic", "usage": {"column": "payload", "path": "u"},
                   "input_tokens": {"column": "payload", "path": ["u", "in"]}, "output_tokens": {"column": "payload", "path": "u.out"}},
        "breakdowns": {"kind": {"column": "payload", "path": "kind"}},
    })
    settings = settings_for(db_url, source)
    check_source(engine, settings)
    frame = read_window(settings, db_url, datetime(2026, 3, 30, tzinfo=timezone.utc), datetime(2026, 3, 31, tzinfo=timezone.utc))
    assert frame.select("message_id", "user_id", "conversation_id", "model", "status", "usage_type", "u_input_tokens",
                        "u_output_tokens", "paid_amount", "dim_kind").rows() == [
        ("1", "ann", "o-1", "claude-sonnet-4-20250514", "ok", "object", "12", "3", "1.2500", "chat")]
