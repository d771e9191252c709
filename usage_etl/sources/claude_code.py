"""Land Claude Code JSONL transcripts in PostgreSQL, incrementally and idempotently.

`ingest(engine, schema, cfg)` reads only what was appended to `cfg.root/**/*.jsonl` since the last
call (`jsonl.read_new_lines`, positions kept in `claude_code_files`), parses it
(`jsonl.parse_lines`: streaming snapshots de-duplicated, non-assistant/no-usage lines skipped and
counted, malformed lines quarantined) and, in ONE transaction under an advisory lock per root:
- upserts the messages into `claude_code_messages` keyed by message_id, replacing a stored row only
  when the new snapshot ranks higher — the same order `parse_lines` uses within a batch
  (larger output_tokens, then larger token total, then EARLIER created_at, then greater
  (file, line_no)) — so the table holds the final usage of each response, dated by its first
  identical snapshot, whatever the order or number of reads;
- records malformed lines in `claude_code_quarantine` (root, file, line_no, reason, detail);
- advances the read positions.
A failure rolls all three back, so no line is lost or counted twice. Re-ingesting the same files
changes nothing: no new lines, or (after positions are lost) snapshots that are not more complete.

The messages table is then an ordinary flat source (examples/004_claude_code_jsonl.toml).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from usage_etl import db
from usage_etl.source_config import ClaudeCode
from usage_etl.sources import jsonl

MESSAGES_TABLE = "claude_code_messages"
FILES_TABLE = "claude_code_files"
QUARANTINE_TABLE = "claude_code_quarantine"

_TOKENS = ["input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens"]


@dataclass
class IngestResult:
    """What one ingestion did (counts of lines or messages)."""

    root: str
    files_read: int = 0  # files with new complete lines
    reset_files: list[str] = field(default_factory=list)  # shrunk/replaced, re-read from byte 0
    lines: int = 0  # complete lines read
    inserted: int = 0  # new messages
    updated: int = 0  # stored messages replaced by a more complete snapshot
    unchanged: int = 0  # parsed messages already stored as complete or more
    duplicates: int = 0  # streaming snapshots collapsed within this read
    skipped: dict[str, int] = field(default_factory=dict)  # per jsonl.SKIP_REASONS
    quarantined: int = 0  # malformed lines recorded


def root_key(cfg: ClaudeCode) -> str:
    """The root as stored in the tables: absolute, user folder expanded."""
    return str(Path(cfg.root).expanduser().resolve())


def _positions(conn: sa.Connection, files: sa.Table, root: str) -> tuple[dict[str, int], dict[str, int]]:
    rows = conn.execute(sa.select(files.c.file, files.c.byte_offset, files.c.next_line).where(files.c.root == root)).all()
    return {f: o for f, o, _ in rows}, {f: n for f, _, n in rows}


def _upsert_messages(conn: sa.Connection, table: sa.Table, messages: pl.DataFrame) -> tuple[int, int]:
    cols = [c.name for c in table.columns if c.name != "ingested_at"]
    stage, quoted = db.temp_like(conn, table, "stage_claude_code_messages")
    db.copy_frame(conn, quoted, messages.select(cols))
    stmt = insert(table).from_select(cols, sa.select(*[stage.c[c] for c in cols]))
    new, old = stmt.excluded, table.c

    def rank(t, other) -> sa.Tuple:
        # Same order as jsonl._dedup; "C" collation = byte order, as Polars sorts strings.
        # created_at ranks descending (earlier wins): the other side's value takes its place.
        total = sum((t[c] for c in _TOKENS[1:]), t[_TOKENS[0]])
        return sa.tuple_(t.output_tokens, total, other.created_at, sa.collate(t.source_file, "C"), t.source_line)

    stmt = stmt.on_conflict_do_update(
        index_elements=["message_id"],
        set_={**{c: new[c] for c in cols if c != "message_id"}, "ingested_at": sa.func.now()},
        where=rank(new, old) > rank(old, new),
    ).returning(sa.literal_column("xmax = 0").label("inserted"))
    outcome = conn.execute(stmt).scalars().all()
    inserted = sum(1 for x in outcome if x)
    return inserted, len(outcome) - inserted


def _record_quarantine(conn: sa.Connection, table: sa.Table, root: str, bad: pl.DataFrame, reset: list[str]) -> int:
    if reset:  # line numbers of a replaced file restart: its old entries no longer apply
        conn.execute(sa.delete(table).where(table.c.root == root, table.c.file.in_(reset)))
    if bad.height == 0:
        return 0
    rows = bad.with_columns(root=pl.lit(root)).select("root", "file", "line_no", "reason", "detail").to_dicts()
    stmt = insert(table).values(rows)
    stmt = stmt.on_conflict_do_update(
        index_elements=["root", "file", "line_no"],
        set_={"reason": stmt.excluded.reason, "detail": stmt.excluded.detail},
        where=sa.tuple_(table.c.reason, table.c.detail).is_distinct_from(sa.tuple_(stmt.excluded.reason, stmt.excluded.detail)),
    )
    conn.execute(stmt)
    return bad.height


def _advance(conn: sa.Connection, table: sa.Table, root: str, before: tuple[dict, dict], after: jsonl.NewLines) -> None:
    rows = [
        {"root": root, "file": f, "byte_offset": o, "next_line": after.line_start[f]}
        for f, o in after.offsets.items()
        if (before[0].get(f), before[1].get(f)) != (o, after.line_start[f])
    ]
    if not rows:
        return
    stmt = insert(table).values(rows)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["root", "file"],
            set_={"byte_offset": stmt.excluded.byte_offset, "next_line": stmt.excluded.next_line, "updated_at": sa.func.now()},
        )
    )


def ingest(engine: sa.Engine, schema: str, cfg: ClaudeCode) -> IngestResult:
    """Land the lines appended under `cfg.root` since the last call into `schema` (module doc).

    Raises FileNotFoundError when the root is not a directory; OSError from reading files.
    """
    root = root_key(cfg)
    if not Path(root).is_dir():
        raise FileNotFoundError(f"claude_code.root {root} is not a directory")
    result = IngestResult(root)
    with engine.begin() as conn:
        key = f"usage_etl:claude_code:{schema}:{root}"
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(key, 0))))
        files = db.reflect(conn, schema, FILES_TABLE)
        before = _positions(conn, files, root)
        new = jsonl.read_new_lines(Path(root), *before)
        parsed = jsonl.parse_lines(new.lines, user_id=cfg.user, user_from_folder=cfg.user_from_folder)
        messages = parsed.messages.with_columns(source_root=pl.lit(root))
        if messages.height:
            result.inserted, result.updated = _upsert_messages(conn, db.reflect(conn, schema, MESSAGES_TABLE), messages)
        result.quarantined = _record_quarantine(conn, db.reflect(conn, schema, QUARANTINE_TABLE), root, parsed.quarantine, new.reset_files)
        _advance(conn, files, root, before, new)
    result.files_read = new.lines["file"].n_unique() if new.lines.height else 0
    result.reset_files = new.reset_files
    result.lines = parsed.lines_in
    result.unchanged = messages.height - result.inserted - result.updated
    result.duplicates = parsed.duplicates
    result.skipped = parsed.skipped
    return result
