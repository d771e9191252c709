"""Claude Code JSONL (seed 004), end to end through Dagster: landing into claude_code_messages, then
the daily/weekly/monthly assets over it as a flat source (examples/004_claude_code_jsonl.toml).

Fixture tree tests/fixtures/claude_code (users from the first folder), 14 lines:
  alice/proj-a/sess-a1.jsonl     1 user turn; 2-4 msg_A:req_A1 streamed three times (output 1, 20,
                                 50: keep 50); 5 msg_B with a 1-hour cache write (3000 = 1000 5m +
                                 2000 1h); 6 a truncated line; 7 assistant line without usage;
                                 8 summary; 9 msg_D the next day (UTC)
  alice/.../subagents/agent-1.jsonl  1 msg_S, a sidechain (sub-agent) call; 2 a <synthetic> line
  bob/proj-b/sess-b1.jsonl       1-2 msg_N without requestId, written twice (output 2, then 9);
                                 3 msg_E the next day
"""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from usage_helpers import example, materialize, materialize_all, settings_for, snapshot, summary

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "claude_code"
MAR30, MAR31, MAR = date(2026, 3, 30), date(2026, 3, 31), date(2026, 3, 1)
DAYS, WEEKS, MONTHS = ("2026-03-30", "2026-03-31"), ("2026-03-30", "2026-03-30"), ("2026-03-01", "2026-03-01")
INGEST = ("claude_code_messages",)
ALICE_FILE = "alice/proj-a/sess-a1.jsonl"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURES, tmp_path / "projects")
    return tmp_path / "projects"


@pytest.fixture
def settings(db_url, root):
    src = example("004_claude_code_jsonl.toml")
    cc = src.claude_code.model_copy(update={"root": root, "user": None, "user_from_folder": True})
    return settings_for(db_url, src.model_copy(update={"claude_code": cc}))


def tokens(rows: dict) -> dict:
    """Drop cost_usd (the price book's business) and paid_amount (always null here)."""
    return {k: v[:9] for k, v in rows.items()}


def test_daily_totals_from_jsonl(engine, settings) -> None:
    materialize_all(settings, DAYS, WEEKS, MONTHS, also=INGEST)

    # (messages, errors, conversations, input, cache_creation, cache_read, output, reasoning, total)
    assert tokens(summary(engine, "daily")) == {
        # msg_A final (10, 100, 1000, 50) + msg_B (5, 3000, 0, 40) + sidechain msg_S (3, 0, 200, 30)
        ("alice", MAR30): (3, 0, 1, 18, 3100, 1200, 120, 0, 4438),
        ("alice", MAR31): (1, 0, 1, 7, 0, 500, 70, 0, 577),
        # msg_N keeps output 9, not 2 and not 2 + 9.
        ("bob", MAR30): (1, 0, 1, 3, 0, 0, 9, 0, 12),
        ("bob", MAR31): (1, 0, 1, 100, 50, 0, 200, 0, 350),
    }
    # sess-b1 spans two days: one conversation in the week.
    assert tokens(summary(engine, "weekly")) == {
        ("alice", MAR30): (4, 0, 1, 25, 3100, 1700, 190, 0, 5015),
        ("bob", MAR30): (2, 0, 1, 103, 50, 0, 209, 0, 362),
    }
    assert tokens(summary(engine, "monthly")) == {
        ("alice", MAR): (4, 0, 1, 25, 3100, 1700, 190, 0, 5015),
        ("bob", MAR): (2, 0, 1, 103, 50, 0, 209, 0, 362),
    }
    assert tokens(summary(engine, "weekly", table="user_token_usage_by_dimension", keys=("dimension", "value"))) == {
        ("alice", MAR30, "agent", "main"): (3, 0, 1, 22, 3100, 1500, 160, 0, 4782),
        ("alice", MAR30, "agent", "sidechain"): (1, 0, 1, 3, 0, 200, 30, 0, 233),
        ("bob", MAR30, "agent", "main"): (2, 0, 1, 103, 50, 0, 209, 0, 362),
    }
    with engine.connect() as conn:
        one_hour = conn.execute(sa.text(
            "SELECT user_id, day, sum(cache_creation_1h_input_tokens) FROM user_conversation_day_usage GROUP BY 1, 2 ORDER BY 1, 2")).all()
        raw = conn.execute(sa.text("SELECT message_id, source_file, source_line, output_tokens FROM claude_code_messages ORDER BY 1")).all()
        bad = conn.execute(sa.text("SELECT file, line_no, reason FROM claude_code_quarantine")).all()
        agents = conn.execute(sa.text("SELECT agent_ids FROM user_token_usage WHERE user_id = 'alice' AND period_type = 'weekly'")).scalar_one()
    assert one_hour == [("alice", MAR30, 2000), ("alice", MAR31, 0), ("bob", MAR30, 0), ("bob", MAR31, 0)]
    assert raw == [
        ("msg_A:req_A1", ALICE_FILE, 4, 50),
        ("msg_B:req_B", ALICE_FILE, 5, 40),
        ("msg_D:req_D", ALICE_FILE, 9, 70),
        ("msg_E:req_E", "bob/proj-b/sess-b1.jsonl", 3, 200),
        ("msg_N", "bob/proj-b/sess-b1.jsonl", 2, 9),
        ("msg_S:req_S", "alice/proj-a/sess-a1/subagents/agent-1.jsonl", 1, 30),
    ]
    assert bad == [(ALICE_FILE, 6, "invalid_json")]
    assert agents == ["main", "sidechain"]


def _ingest(settings) -> dict:
    result = materialize(settings, INGEST[0])
    assert result.success
    md = result.asset_materializations_for_node(INGEST[0])[0].metadata
    return {k: v.value for k, v in md.items() if k not in ("root",)}


def test_ingestion_counts_every_line(engine, settings) -> None:
    assert _ingest(settings) == {
        "dagster/row_count": 6, "files_read": 3, "lines_read": 14, "messages_inserted": 6, "messages_updated": 0,
        "messages_unchanged": 0, "streaming_duplicates": 3, "lines_quarantined": 1,
        "lines_skipped": {"blank": 0, "not_assistant": 2, "no_usage": 1, "synthetic": 1}, "reset_files": [],
    }  # 6 messages + 3 duplicates + 1 quarantined + 4 skipped = 14 lines
    # Nothing new: nothing read, nothing written.
    second = _ingest(settings)
    assert (second["lines_read"], second["files_read"], second["dagster/row_count"]) == (0, 0, 0)


def test_running_twice_changes_nothing(engine, settings) -> None:
    materialize_all(settings, DAYS, WEEKS, MONTHS, also=INGEST)
    before = snapshot(engine)
    materialize_all(settings, DAYS, WEEKS, MONTHS, also=INGEST)
    assert snapshot(engine) == before  # every table, computed_at and ingested_at included

    # Read positions lost: every file is read again from byte 0; the stored messages are already
    # the most complete snapshots, so the messages, quarantine and summaries stay as they are.
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM claude_code_files"))
    assert _ingest(settings)["messages_unchanged"] == 6
    materialize_all(settings, DAYS, WEEKS, MONTHS)
    after = snapshot(engine)
    strip = lambda rows: sorted(r[:4] for r in rows)  # noqa: E731  (root, file, offset, next_line)
    assert strip(after.pop("claude_code_files")) == strip(before.pop("claude_code_files"))
    assert after == before


def _line(msg_id: str, req: str, ts: str, inp: int, out: int, cr: int = 0) -> str:
    usage = {"input_tokens": inp, "cache_creation_input_tokens": 0, "cache_read_input_tokens": cr, "output_tokens": out}
    return json.dumps({"type": "assistant", "sessionId": "sess-a1", "timestamp": ts, "requestId": req,
                       "message": {"id": msg_id, "model": "claude-sonnet-4-20250514", "usage": usage}})


def test_new_lines_only_and_larger_usage_wins(engine, settings, root) -> None:
    _ingest(settings)
    path = root / ALICE_FILE
    size = path.stat().st_size
    partial = _line("msg_G", "req_G", "2026-03-31T10:00:00Z", 1, 1)
    with path.open("a") as fh:
        fh.write(_line("msg_D", "req_D", "2026-03-31T00:30:01Z", 7, 90, 500) + "\n")  # a later, larger snapshot
        fh.write(_line("msg_A", "req_A1", "2026-03-30T10:00:00Z", 10, 20, 1000) + "\n")  # a stale, smaller one
        fh.write(_line("msg_F", "req_F", "2026-03-31T09:00:00Z", 4, 8) + "\n")
        fh.write(partial[:30])  # still being written
    md = _ingest(settings)
    assert (md["files_read"], md["lines_read"], md["messages_inserted"], md["messages_updated"], md["messages_unchanged"]) == (1, 3, 1, 1, 1)
    with engine.connect() as conn:
        offset, next_line = conn.execute(sa.text("SELECT byte_offset, next_line FROM claude_code_files WHERE file = :f"), {"f": ALICE_FILE}).one()
        outputs = dict(conn.execute(sa.text("SELECT message_id, output_tokens FROM claude_code_messages")).all())
    assert (offset, next_line) == (path.stat().st_size - 30, 13)
    assert offset > size
    assert (outputs["msg_A:req_A1"], outputs["msg_D:req_D"], outputs["msg_F:req_F"]) == (50, 90, 8)

    result = materialize(settings, "daily_user_usage", *DAYS)
    assert result.success
    # alice Mar 31: msg_D now (7, 0, 500, 90) + msg_F (4, 0, 0, 8).
    assert tokens(summary(engine, "daily"))[("alice", MAR31)] == (2, 0, 1, 11, 0, 500, 98, 0, 609)
    assert tokens(summary(engine, "daily"))[("alice", MAR30)] == (3, 0, 1, 18, 3100, 1200, 120, 0, 4438)


def test_identical_snapshot_after_midnight_does_not_move_a_materialized_message(engine, settings, root) -> None:
    # msg_M answered at 23:59:59 on Mar 30; an identical copy is written at 00:00:01 on Mar 31
    # (a resumed session). The message stays on Mar 30, already materialized; and a copy read
    # before the original moves to the original's earlier time once the original arrives.
    first = _line("msg_M", "req_M", "2026-03-30T23:59:59Z", 5, 6)
    copy = _line("msg_M", "req_M", "2026-03-31T00:00:01Z", 5, 6)
    late_first = _line("msg_L", "req_L", "2026-03-31T00:00:02Z", 1, 2)
    early_copy = _line("msg_L", "req_L", "2026-03-30T23:59:58Z", 1, 2)
    with (root / ALICE_FILE).open("a") as fh:
        fh.write(first + "\n" + late_first + "\n")
    materialize_all(settings, DAYS, WEEKS, MONTHS, also=INGEST)
    daily = tokens(summary(engine, "daily"))
    assert daily[("alice", MAR30)] == (4, 0, 1, 23, 3100, 1200, 126, 0, 4449)  # + msg_M (5, 6)
    assert daily[("alice", MAR31)] == (2, 0, 1, 8, 0, 500, 72, 0, 580)  # + msg_L (1, 2)

    resumed = root / "alice" / "proj-a" / "sess-a2.jsonl"
    resumed.write_text(copy + "\n" + early_copy + "\n")
    md = _ingest(settings)
    assert (md["lines_read"], md["messages_inserted"], md["messages_updated"], md["messages_unchanged"]) == (2, 0, 1, 1)
    with engine.connect() as conn:
        stored = conn.execute(sa.text(
            "SELECT message_id, created_at AT TIME ZONE 'UTC', source_file FROM claude_code_messages "
            "WHERE message_id IN ('msg_M:req_M', 'msg_L:req_L') ORDER BY 1")).all()
    assert [(m, t.isoformat(), f) for m, t, f in stored] == [
        ("msg_L:req_L", "2026-03-30T23:59:58", "alice/proj-a/sess-a2.jsonl"),
        ("msg_M:req_M", "2026-03-30T23:59:59", ALICE_FILE),
    ]
    result = materialize(settings, "daily_user_usage", *DAYS)
    assert result.success
    daily = tokens(summary(engine, "daily"))
    assert daily[("alice", MAR30)] == (5, 0, 1, 24, 3100, 1200, 128, 0, 4452)  # msg_M stays, msg_L joins
    assert daily[("alice", MAR31)] == (1, 0, 1, 7, 0, 500, 70, 0, 577)

    # One read of everything from scratch stores the same rows (same order as the upserts).
    with engine.begin() as conn:
        before = conn.execute(sa.text("SELECT message_id, created_at, source_file, source_line FROM claude_code_messages ORDER BY 1")).all()
        conn.execute(sa.text("DELETE FROM claude_code_files"))
        conn.execute(sa.text("DELETE FROM claude_code_messages"))
    _ingest(settings)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT message_id, created_at, source_file, source_line FROM claude_code_messages ORDER BY 1")).all() == before
