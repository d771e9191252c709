"""window_query against a real table with awkward identifiers, a json (not jsonb) column and constants."""

from __future__ import annotations

from datetime import datetime, timezone

import polars as pl
import sqlalchemy as sa
from usage_helpers import settings_for

from tests.bad_rows import DAY, configure, insert, row
from usage_etl.defs import partitions
from usage_etl.settings import Settings
from usage_etl.source_config import parse_source_config
from usage_etl.sources.mapping_check import check_source
from usage_etl.sources.postgres import open_window, read_window


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


def test_a_snapshot_gives_every_row_once_in_numbered_slices(engine, db_url) -> None:
    """`open_window` reads once; `frames` slices the rows, numbering them 0.. across slices, and
    `rows` and `versions` give the same rows back by number."""
    cfg = configure(Settings(database_url=db_url.render_as_string(hide_password=False)), engine)
    insert(engine, cfg, [row(f"u{i}", id=f"m{i}") for i in range(5)])
    window = partitions.window(partitions.build(cfg)["daily"], "daily", DAY)
    with open_window(cfg, db_url, window.start, window.end) as snapshot:
        frames = list(snapshot.frames(rows=2))
        assert [f.height for f in frames] == [2, 2, 1] and snapshot.height == 5
        numbered = {(r["raw_digest"], r["message_id"], r["user_id"]) for f in frames for r in f.iter_rows(named=True)}
        by_number = {n: (m, u) for n, m, u in numbered}
        assert sorted(by_number) == [0, 1, 2, 3, 4] and {m for m, _ in by_number.values()} == {f"m{i}" for i in range(5)}
        assert all(m == f"m{u[1:]}" for m, u in by_number.values())
        picked = snapshot.rows(pl.Series([4, 0]))
        assert picked.select("message_id", "user_id").rows() == [by_number[4], by_number[0]]
        assert snapshot.versions()["message_id"].to_list() == [by_number[i][0] for i in range(5)]
    empty = partitions.window(partitions.build(cfg)["daily"], "daily", "2026-03-11")
    with open_window(cfg, db_url, empty.start, empty.end) as snapshot:
        [only] = list(snapshot.frames())
        assert (snapshot.height, only.height, only.columns[-1]) == (0, 0, "raw_digest")
