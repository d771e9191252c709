"""Claude Code JSONL parsing: dedup, accounting, quarantine, incremental reads."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from usage_etl.sources.jsonl import (
    LINES_SCHEMA,
    MESSAGES_SCHEMA,
    QUARANTINE_SCHEMA,
    parse_lines,
    read_new_lines,
)

ALICE = "alice/-home-alice-proj/0a1-session.jsonl"
BOB = "bob/-home-bob-proj/0b1-session.jsonl"


def assistant(
    msg_id: str,
    *,
    ts: str,
    session: str,
    request_id: str | None = None,
    model: str = "claude-sonnet-4-20250514",
    sidechain: bool = False,
    **usage: object,
) -> str:
    """One assistant transcript line as Claude Code writes it."""
    line: dict[str, object] = {
        "parentUuid": None,
        "isSidechain": sidechain,
        "userType": "external",
        "cwd": "/home/x/proj",
        "sessionId": session,
        "version": "1.0.70",
        "type": "assistant",
        "uuid": f"uuid-{msg_id}-{usage.get('output_tokens')}",
        "timestamp": ts,
        "message": {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": "ok"}],
            "stop_reason": None,
            "usage": usage,
        },
    }
    if request_id is not None:
        line["requestId"] = request_id
    return json.dumps(line)


def other(kind: str, session: str = "s") -> str:
    if kind == "summary":
        return json.dumps({"type": "summary", "summary": "Refactor", "leafUuid": "u1"})
    return json.dumps(
        {
            "type": kind,
            "sessionId": session,
            "timestamp": "2025-06-01T09:59:00.000Z",
            "message": {"role": "user", "content": "hello"},
        }
    )


TRUNCATED = '{"type":"assistant","message":{"usage":{"input_'

ALICE_LINES = [
    other("user", "sa1"),  # 1 skipped not_assistant
    other("summary"),  # 2 skipped not_assistant
    # 3-5: one streamed response written three times, output growing 1 -> 5 -> 50.
    assistant("msg_A", request_id="req_A1", ts="2025-06-01T10:00:00.100Z", session="sa1",
              input_tokens=10, cache_creation_input_tokens=100, cache_read_input_tokens=1000,
              output_tokens=1),
    assistant("msg_A", request_id="req_A1", ts="2025-06-01T10:00:00.200Z", session="sa1",
              input_tokens=10, cache_creation_input_tokens=100, cache_read_input_tokens=1000,
              output_tokens=5),
    assistant("msg_A", request_id="req_A1", ts="2025-06-01T10:00:01.000Z", session="sa1",
              input_tokens=10, cache_creation_input_tokens=100, cache_read_input_tokens=1000,
              output_tokens=50),
    # 6: same message.id, another requestId -> a separate message.
    assistant("msg_A", request_id="req_A2", ts="2025-06-01T10:01:00Z", session="sa1",
              input_tokens=20, cache_creation_input_tokens=0, cache_read_input_tokens=2000,
              output_tokens=30),
    # 7: sub-agent call.
    assistant("msg_S", request_id="req_S", ts="2025-06-01T10:02:00Z", session="sa1",
              sidechain=True, input_tokens=5, cache_read_input_tokens=500, output_tokens=7),
    TRUNCATED,  # 8 quarantined invalid_json
    # 9: assistant line without usage -> skipped no_usage.
    json.dumps({"type": "assistant", "sessionId": "sa1", "timestamp": "2025-06-01T10:03:00Z",
                "message": {"id": "msg_X", "role": "assistant", "content": []}}),
    # 10: 1-hour cache writes, next UTC day.
    assistant("msg_H", request_id="req_H", ts="2025-06-02T09:00:00Z", session="sa1",
              input_tokens=2, cache_creation_input_tokens=300, cache_read_input_tokens=0,
              output_tokens=40,
              cache_creation={"ephemeral_5m_input_tokens": 100,
                              "ephemeral_1h_input_tokens": 200}),
    # 11: local API-error placeholder -> skipped synthetic.
    assistant("0b9e-uuid", ts="2025-06-02T09:05:00Z", session="sa1", model="<synthetic>",
              input_tokens=0, output_tokens=0, cache_creation_input_tokens=0,
              cache_read_input_tokens=0),
    "",  # 12 skipped blank
]

BOB_LINES = [
    other("user", "sb1"),  # 1 skipped not_assistant
    # 2-3: no requestId (e.g. a proxy), written twice in one session.
    assistant("msg_N", ts="2025-06-01T23:59:58Z", session="sb1",
              input_tokens=3, cache_creation_input_tokens=0, cache_read_input_tokens=0,
              output_tokens=2),
    assistant("msg_N", ts="2025-06-01T23:59:59Z", session="sb1",
              input_tokens=3, cache_creation_input_tokens=0, cache_read_input_tokens=0,
              output_tokens=9),
    assistant("msg_B", request_id="req_B", ts="2025-06-01T12:00:00Z", session="sb1",
              input_tokens=100, cache_creation_input_tokens=50, output_tokens=200),
]


def write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def append(path: Path, data: str) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(data)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write(tmp_path / ALICE, ALICE_LINES)
    write(tmp_path / BOB, BOB_LINES)
    return tmp_path


def daily(messages: pl.DataFrame) -> dict[tuple[str, date], dict[str, int]]:
    out = (
        messages.group_by("user_id", day=pl.col("created_at").dt.date())
        .agg(
            pl.len().alias("messages"),
            *(pl.col(c).sum() for c in [
                "input_tokens", "cache_creation_input_tokens",
                "cache_creation_1h_input_tokens", "cache_read_input_tokens",
                "output_tokens", "reasoning_tokens",
            ]),
        )
        .sort("user_id", "day")
    )
    return {
        (r.pop("user_id"), r.pop("day")): r for r in out.iter_rows(named=True)
    }


def test_daily_totals_dedup_and_accounting(root: Path) -> None:
    lines, _, _ = read_new_lines(root, {})
    parsed = parse_lines(lines, user_from_folder=True)

    assert daily(parsed.messages) == {
        # msg_A:req_A1 keeps the last snapshot (10, 100, 1000, 50); + msg_A:req_A2
        # (20, 0, 2000, 30); + sidechain msg_S (5, 0, 500, 7):
        # input 10+20+5=35, cache_creation 100+0+0=100, cache_read 1000+2000+500=3500,
        # output 50+30+7=87.
        ("alice", date(2025, 6, 1)): {
            "messages": 3, "input_tokens": 35, "cache_creation_input_tokens": 100,
            "cache_creation_1h_input_tokens": 0, "cache_read_input_tokens": 3500,
            "output_tokens": 87, "reasoning_tokens": 0,
        },
        # msg_H: cache_creation 300 = 100 (5m) + 200 (1h).
        ("alice", date(2025, 6, 2)): {
            "messages": 1, "input_tokens": 2, "cache_creation_input_tokens": 300,
            "cache_creation_1h_input_tokens": 200, "cache_read_input_tokens": 0,
            "output_tokens": 40, "reasoning_tokens": 0,
        },
        # msg_N keeps output 9 (not 2, not 2+9); + msg_B (100, 50, 0, 200):
        # input 3+100=103, cache_creation 0+50=50, output 9+200=209.
        ("bob", date(2025, 6, 1)): {
            "messages": 2, "input_tokens": 103, "cache_creation_input_tokens": 50,
            "cache_creation_1h_input_tokens": 0, "cache_read_input_tokens": 0,
            "output_tokens": 209, "reasoning_tokens": 0,
        },
    }

    # 12 + 4 lines = 6 messages + 3 duplicates (2 of msg_A:req_A1, 1 of msg_N)
    #   + 1 quarantined + 6 skipped (blank 1, not_assistant 2+1, no_usage 1, synthetic 1).
    assert parsed.lines_in == 16
    assert parsed.skipped == {"blank": 1, "not_assistant": 3, "no_usage": 1, "synthetic": 1}
    assert parsed.duplicates == 3
    assert parsed.messages.height == 6
    assert parsed.accounted == parsed.lines_in

    assert parsed.quarantine.rows() == [
        (ALICE, 8, "invalid_json", f"not a complete JSON object ({len(TRUNCATED)} chars)")
    ]
    assert parsed.quarantine.schema == pl.Schema(QUARANTINE_SCHEMA)
    assert parsed.messages.schema == pl.Schema(MESSAGES_SCHEMA)


def test_message_columns(root: Path) -> None:
    lines, _, _ = read_new_lines(root, {})
    m = parse_lines(lines, user_from_folder=True).messages
    by_id = {r["message_id"]: r for r in m.iter_rows(named=True)}

    assert sorted(by_id) == ["msg_A:req_A1", "msg_A:req_A2", "msg_B:req_B", "msg_H:req_H",
                             "msg_N", "msg_S:req_S"]
    a1 = by_id["msg_A:req_A1"]
    assert (a1["source_file"], a1["source_line"]) == (ALICE, 5)
    assert a1["created_at"].isoformat() == "2025-06-01T10:00:01+00:00"
    assert (a1["conversation_id"], a1["agent_id"], a1["status"]) == ("sa1", "main", "success")
    assert a1["model"] == "claude-sonnet-4-20250514"
    assert a1["paid_amount"] is None
    assert by_id["msg_S:req_S"]["agent_id"] == "sidechain"
    assert (by_id["msg_N"]["source_line"], by_id["msg_N"]["output_tokens"]) == (3, 9)
    # Sorted by event time.
    assert m["created_at"].is_sorted()


def test_result_does_not_depend_on_line_order(root: Path) -> None:
    lines, _, _ = read_new_lines(root, {})
    expected = parse_lines(lines, user_from_folder=True)
    for seed in range(5):
        shuffled = parse_lines(lines.sample(fraction=1.0, shuffle=True, seed=seed),
                               user_from_folder=True)
        assert_frame_equal(shuffled.messages, expected.messages)
        assert_frame_equal(shuffled.quarantine, expected.quarantine)


def test_equal_snapshots_keep_last_line() -> None:
    line = assistant("m", request_id="r", ts="2025-06-01T10:00:00Z", session="s",
                     input_tokens=1, output_tokens=4)
    lines = pl.DataFrame({"file": ["f.jsonl"] * 3, "line_no": [1, 2, 3],
                          "text": [line] * 3})
    parsed = parse_lines(lines, user_id="u")
    assert parsed.messages["source_line"].to_list() == [3]
    assert parsed.duplicates == 2


def test_larger_total_wins_on_equal_output() -> None:
    # Same output, the later snapshot carries the cache counts: the fuller one is kept.
    big = assistant("m", request_id="r", ts="2025-06-01T10:00:00Z", session="s",
                    input_tokens=1, cache_read_input_tokens=900, output_tokens=4)
    small = assistant("m", request_id="r", ts="2025-06-01T10:00:01Z", session="s",
                      input_tokens=1, output_tokens=4)
    lines = pl.DataFrame({"file": ["f.jsonl"] * 2, "line_no": [1, 2], "text": [big, small]})
    kept = parse_lines(lines, user_id="u").messages
    assert kept["cache_read_input_tokens"].to_list() == [900]


def test_missing_request_id_dedups_on_message_id_across_files() -> None:
    # A resumed session copies earlier responses into a new file; message.id is unique per
    # API response, so the copy must not count twice. message_id stays the table key.
    a = assistant("m", ts="2025-06-01T10:00:00Z", session="s1", input_tokens=1, output_tokens=4)
    b = assistant("m", ts="2025-06-01T10:00:00Z", session="s2", input_tokens=1, output_tokens=4)
    lines = pl.DataFrame({"file": ["u/s1.jsonl", "u/s2.jsonl"], "line_no": [1, 1],
                          "text": [a, b]})
    parsed = parse_lines(lines, user_from_folder=True)
    assert parsed.messages.select("message_id", "conversation_id", "source_file").rows() == [
        ("m", "s2", "u/s2.jsonl")  # tie -> greatest (file, line_no)
    ]
    assert parsed.duplicates == 1


def test_user_id_argument_and_argument_errors() -> None:
    line = assistant("m", request_id="r", ts="2025-06-01T10:00:00Z", session="s",
                     input_tokens=1, output_tokens=4)
    lines = pl.DataFrame({"file": ["f.jsonl"], "line_no": [1], "text": [line]})
    assert parse_lines(lines, user_id="u-1").messages["user_id"].to_list() == ["u-1"]
    with pytest.raises(ValueError):
        parse_lines(lines)
    with pytest.raises(ValueError):
        parse_lines(lines, user_id="u", user_from_folder=True)
    with pytest.raises(ValueError, match="missing columns"):
        parse_lines(lines.drop("text"), user_id="u")


def test_quarantine_reasons() -> None:
    ts = "2025-06-01T10:00:00Z"

    def a(**kw: object) -> str:
        return assistant("m", request_id="r", ts=ts, session="s", **kw)

    no_ts = json.loads(a(input_tokens=1, output_tokens=1))
    del no_ts["timestamp"]
    bad_ts = json.loads(a(input_tokens=1, output_tokens=1))
    bad_ts["timestamp"] = "yesterday"
    no_id = json.loads(a(input_tokens=1, output_tokens=1))
    del no_id["message"]["id"]
    usage_str = json.loads(a())
    usage_str["message"]["usage"] = "many"

    cases = [
        ("u/f.jsonl", a(input_tokens=1, output_tokens=-5), "invalid_usage", "output_tokens=-5"),
        ("u/f.jsonl", a(input_tokens=1.5, output_tokens=2), "invalid_usage", "input_tokens=1.5"),
        ("u/f.jsonl", a(input_tokens="x", output_tokens=True), "invalid_usage",
         "input_tokens=x; output_tokens=true"),
        ("u/f.jsonl", a(output_tokens=2), "invalid_usage", "input_tokens missing"),
        ("u/f.jsonl", a(input_tokens=1, output_tokens=2, cache_creation_input_tokens=10,
                        cache_creation={"ephemeral_1h_input_tokens": 11}),
         "invalid_usage", "ephemeral_1h_input_tokens=11 > cache_creation_input_tokens=10"),
        ("u/f.jsonl", json.dumps(usage_str), "invalid_usage", "message.usage is not an object"),
        ("u/f.jsonl", json.dumps(no_ts), "missing_timestamp", "no timestamp field"),
        ("u/f.jsonl", json.dumps(bad_ts), "invalid_timestamp",
         "timestamp=yesterday is not ISO 8601 with a UTC offset"),
        ("u/f.jsonl", json.dumps(no_id), "missing_message_id",
         "no message.id: cannot de-duplicate"),
        ("f.jsonl", a(input_tokens=1, output_tokens=1), "missing_user",
         "file is not inside a user folder"),
        ("u/f.jsonl", "[1, 2]", "invalid_json", "not a complete JSON object (6 chars)"),
        ("u/f.jsonl", "{} trailing", "invalid_json", "not a complete JSON object (11 chars)"),
    ]
    lines = pl.DataFrame({
        "file": [c[0] for c in cases],
        "line_no": list(range(1, len(cases) + 1)),
        "text": [c[1] for c in cases],
    })
    parsed = parse_lines(lines, user_from_folder=True)
    assert parsed.messages.height == 0
    assert parsed.quarantine.sort("line_no").select("reason", "detail").rows() == [
        (c[2], c[3]) for c in cases
    ]
    assert parsed.accounted == parsed.lines_in == len(cases)


def test_lenient_number_forms() -> None:
    # Whole numbers written as floats/exponents are still exact token counts; absent cache
    # fields are 0; a cache_creation breakdown without the total is summed.
    line = assistant("m", request_id="r", ts="2025-06-01T12:00:00.5+02:00", session="s",
                     input_tokens=1.0, output_tokens=1e3,
                     cache_creation={"ephemeral_5m_input_tokens": 4,
                                     "ephemeral_1h_input_tokens": 6})
    lines = pl.DataFrame({"file": ["f.jsonl"], "line_no": [1], "text": [line]})
    row = parse_lines(lines, user_id="u").messages.row(0, named=True)
    assert (row["input_tokens"], row["output_tokens"], row["cache_read_input_tokens"]) == (
        1, 1000, 0)
    assert (row["cache_creation_input_tokens"], row["cache_creation_1h_input_tokens"]) == (10, 6)
    assert row["created_at"].isoformat() == "2025-06-01T10:00:00.500000+00:00"


def test_empty_input() -> None:
    parsed = parse_lines(pl.DataFrame(schema=LINES_SCHEMA), user_id="u")
    assert parsed.messages.schema == pl.Schema(MESSAGES_SCHEMA)
    assert parsed.messages.height == parsed.quarantine.height == parsed.lines_in == 0


def test_incremental_reading(root: Path) -> None:
    first = read_new_lines(root, {})
    assert first.lines.schema == pl.Schema(LINES_SCHEMA)
    assert first.lines.group_by("file").len().sort("file").rows() == [(ALICE, 12), (BOB, 4)]
    assert first.line_start == {ALICE: 13, BOB: 5}
    assert first.offsets == {ALICE: (root / ALICE).stat().st_size,
                             BOB: (root / BOB).stat().st_size}
    assert first.reset_files == []

    # Two complete lines and one still being written.
    new1 = assistant("msg_C", request_id="req_C", ts="2025-06-03T08:00:00Z", session="sb1",
                     input_tokens=7, output_tokens=70)
    new2 = other("user", "sb1")
    new3 = assistant("msg_D", request_id="req_D", ts="2025-06-03T08:05:00Z", session="sb1",
                     input_tokens=8, output_tokens=80)
    append(root / BOB, new1 + "\n" + new2 + "\n" + new3[:25])

    second = read_new_lines(root, first.offsets, first.line_start)
    assert second.lines.rows() == [(BOB, 5, new1), (BOB, 6, new2)]
    assert second.offsets[ALICE] == first.offsets[ALICE]
    assert second.offsets[BOB] == (root / BOB).stat().st_size - 25  # partial line left
    assert second.line_start == {ALICE: 13, BOB: 7}

    append(root / BOB, new3[25:] + "\n")
    third = read_new_lines(root, second.offsets, second.line_start)
    assert third.lines.rows() == [(BOB, 7, new3)]

    final = read_new_lines(root, third.offsets, third.line_start)
    assert final.lines.height == 0
    assert (final.offsets, final.line_start) == (third.offsets, third.line_start)

    # The batches together parse exactly like one full read.
    batches = pl.concat([first.lines, second.lines, third.lines])
    full, _, _ = read_new_lines(root, {})
    assert_frame_equal(batches, full)
    assert_frame_equal(parse_lines(batches, user_from_folder=True).messages,
                       parse_lines(full, user_from_folder=True).messages)


def test_shrunk_or_replaced_file_is_reread(root: Path) -> None:
    lines, offsets, starts = read_new_lines(root, {})

    write(root / ALICE, ALICE_LINES[:2])  # truncated: smaller than the stored offset
    shrunk = read_new_lines(root, offsets, starts)
    assert shrunk.reset_files == [ALICE]
    assert shrunk.lines.select("file", "line_no").rows() == [(ALICE, 1), (ALICE, 2)]
    assert shrunk.line_start[ALICE] == 3

    # Replaced by a different, longer file: the byte before the offset is no longer "\n".
    old_size = (root / BOB).stat().st_size
    write(root / BOB, ["x" * (old_size + 10)])
    replaced = read_new_lines(root, shrunk.offsets, shrunk.line_start)
    assert replaced.reset_files == [BOB]
    assert replaced.lines.select("file", "line_no").rows() == [(BOB, 1)]


def test_line_start_required_with_offsets(root: Path) -> None:
    _, offsets, _ = read_new_lines(root, {})
    with pytest.raises(ValueError, match="line_start"):
        read_new_lines(root, offsets)


def test_crlf_and_new_files(root: Path) -> None:
    _, offsets, starts = read_new_lines(root, {})
    (root / "carol").mkdir()
    (root / "carol" / "s.jsonl").write_bytes(b'{"type":"user"}\r\n{"type":"summary"}\r\n')
    new = read_new_lines(root, offsets, starts)
    assert new.lines.rows() == [
        ("carol/s.jsonl", 1, '{"type":"user"}'),
        ("carol/s.jsonl", 2, '{"type":"summary"}'),
    ]


def test_identical_snapshots_across_midnight_are_dated_by_the_earliest() -> None:
    # The same response written at 23:59:59.9 and, identical, at 00:00:00.2 the next day (a
    # re-write or a resumed-session copy): it belongs to the first day, in any line order.
    early = assistant("m", request_id="r", ts="2025-06-01T23:59:59.900Z", session="s",
                      input_tokens=3, output_tokens=40)
    late = assistant("m", request_id="r", ts="2025-06-02T00:00:00.200Z", session="s",
                     input_tokens=3, output_tokens=40)
    for texts, files in (([early, late], ["a.jsonl", "b.jsonl"]), ([late, early], ["a.jsonl", "b.jsonl"])):
        lines = pl.DataFrame({"file": files, "line_no": [1, 1], "text": texts})
        kept = parse_lines(lines, user_id="u").messages
        assert kept.select("created_at", "output_tokens").rows() == [
            (datetime(2025, 6, 1, 23, 59, 59, 900000, tzinfo=timezone.utc), 40)
        ]
        assert daily(kept) == {("u", date(2025, 6, 1)): {
            "messages": 1, "input_tokens": 3, "cache_creation_input_tokens": 0,
            "cache_creation_1h_input_tokens": 0, "cache_read_input_tokens": 0,
            "output_tokens": 40, "reasoning_tokens": 0,
        }}
    # A more complete snapshot still wins, and dates the response.
    fuller = assistant("m", request_id="r", ts="2025-06-02T00:00:01Z", session="s",
                       input_tokens=3, output_tokens=41)
    lines = pl.DataFrame({"file": ["a.jsonl"] * 3, "line_no": [1, 2, 3], "text": [early, late, fuller]})
    kept = parse_lines(lines, user_id="u").messages
    assert kept.select("created_at", "output_tokens").rows() == [(datetime(2025, 6, 2, 0, 0, 1, tzinfo=timezone.utc), 41)]


_snapshot = st.tuples(
    st.integers(0, 3),  # output_tokens
    st.integers(0, 2),  # cache_read_input_tokens
    st.integers(0, 5),  # seconds after 2025-06-01T23:59:58Z
    st.sampled_from(["a.jsonl", "b.jsonl"]),
)


@settings(max_examples=200, deadline=None)
@given(snaps=st.lists(_snapshot, min_size=1, max_size=8), seed=st.integers(0, 2**16))
def test_kept_snapshot_is_the_documented_maximum_whatever_the_order(snaps, seed) -> None:
    """Invariant of de-duplication: the kept snapshot has the largest output, then total, then the
    EARLIEST timestamp, then the greatest (file, line_no), for any snapshots in any order."""
    base = datetime(2025, 6, 1, 23, 59, 58, tzinfo=timezone.utc)
    rows, line_no = [], {"a.jsonl": 0, "b.jsonl": 0}
    for out, cr, sec, file in snaps:
        line_no[file] += 1
        ts = (base + timedelta(seconds=sec)).isoformat().replace("+00:00", "Z")
        rows.append((file, line_no[file], assistant("m", request_id="r", ts=ts, session="s", input_tokens=1,
                                                    cache_read_input_tokens=cr, output_tokens=out), out, cr, sec))
    best = max(rows, key=lambda r: (r[3], 1 + r[3] + r[4], -r[5], r[0], r[1]))
    lines = pl.DataFrame({"file": [r[0] for r in rows], "line_no": [r[1] for r in rows], "text": [r[2] for r in rows]})
    kept = parse_lines(lines.sample(fraction=1.0, shuffle=True, seed=seed), user_id="u").messages
    assert kept.select("source_file", "source_line", "output_tokens", "cache_read_input_tokens", "created_at").rows() == [
        (best[0], best[1], best[3], best[4], base + timedelta(seconds=best[5]))
    ]
