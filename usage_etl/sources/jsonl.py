"""Claude Code JSONL session files -> canonical message frame.

Claude Code appends one JSON object per line to ``<session>.jsonl`` transcripts. Only
``type == "assistant"`` lines that carry ``message.usage`` describe a billed API response; every
other line (user turns, summaries, tool results, system lines) is counted as skipped.

Two pure-ish pieces:

* :func:`read_new_lines` does the file I/O: it returns only complete lines appended since the last
  call, tracked by a byte offset and the next line number per file.
* :func:`parse_lines` is pure Polars: raw lines -> canonical messages, a quarantine of lines that
  cannot be trusted, skip counts, and the number of streaming duplicates collapsed, so that

      lines_in == messages.height + duplicates + quarantine.height + sum(skipped.values())

See ``docs/claude_code_jsonl.md`` for the rules and their reasons.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from usage_etl.frames import CANONICAL_SCHEMA

logger = logging.getLogger(__name__)

LINES_SCHEMA: dict[str, pl.DataType] = {
    "file": pl.String(),
    "line_no": pl.Int64(),
    "text": pl.String(),
}

# The canonical message frame, plus where each kept message was read.
MESSAGES_SCHEMA: dict[str, pl.DataType] = {
    **CANONICAL_SCHEMA,
    "source_file": pl.String(),
    "source_line": pl.Int64(),
}

QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "file": pl.String(),
    "line_no": pl.Int64(),
    "reason": pl.String(),
    "detail": pl.String(),
}

SKIP_REASONS = ("blank", "not_assistant", "no_usage", "synthetic")

AGENT_MAIN = "main"
AGENT_SIDECHAIN = "sidechain"

# Claude Code writes local, never-billed assistant lines (API errors, interrupted requests) with
# this model name and all-zero usage; counting them would inflate message counts.
SYNTHETIC_MODEL = "<synthetic>"

# Accepts "Z" and "+hh:mm" offsets, with or without fractional seconds; naive times do not parse.
_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S%.f%#z"

# Float-encoded token counts above this cannot be represented exactly.
_MAX_EXACT_FLOAT = 2**53


@dataclass(frozen=True)
class ParsedLines:
    """Result of :func:`parse_lines`.

    Attributes:
        messages: one row per de-duplicated assistant response, columns ``MESSAGES_SCHEMA``:
            message_id, user_id, conversation_id, agent_id, model (String), created_at
            (Datetime us UTC), status (String, always "success"), input_tokens,
            cache_creation_input_tokens, cache_creation_1h_input_tokens, cache_read_input_tokens,
            output_tokens, reasoning_tokens (Int64, tokens), paid_amount (Float64, always null),
            source_file (String), source_line (Int64). Sorted by created_at, message_id.
        quarantine: lines that could not be trusted, columns ``QUARANTINE_SCHEMA``: file, line_no,
            reason, detail. Sorted by file, line_no.
        skipped: line counts per reason in ``SKIP_REASONS`` (every key present).
        duplicates: streaming/copied snapshots dropped by de-duplication.
        lines_in: rows of the input frame.
    """

    messages: pl.DataFrame
    quarantine: pl.DataFrame
    skipped: dict[str, int]
    duplicates: int
    lines_in: int

    @property
    def accounted(self) -> int:
        """messages + duplicates + quarantined + skipped; always equals ``lines_in``."""
        return (
            self.messages.height
            + self.duplicates
            + self.quarantine.height
            + sum(self.skipped.values())
        )


def _token(raw: pl.Expr) -> pl.Expr:
    """JSON number text -> Int64; null when not a whole number (``1000.0`` is accepted)."""
    as_float = raw.cast(pl.Float64, strict=False)
    whole_float = pl.when(
        as_float.is_finite()
        & (as_float == as_float.floor())
        & (as_float.abs() < _MAX_EXACT_FLOAT)
    ).then(as_float.cast(pl.Int64))
    return pl.coalesce(raw.str.to_integer(strict=False), whole_float)


def _blank_to_null(expr: pl.Expr) -> pl.Expr:
    return pl.when(expr.str.strip_chars() == "").then(None).otherwise(expr)


def parse_lines(
    lines: pl.DataFrame,
    *,
    user_id: str | None = None,
    user_from_folder: bool = False,
) -> ParsedLines:
    """Parse raw Claude Code JSONL lines into canonical messages.

    Args:
        lines: columns ``file`` (String, path relative to the data root, "/"-separated),
            ``line_no`` (integer, 1-based) and ``text`` (String, one raw line without its newline),
            as returned by :func:`read_new_lines`. ``(file, line_no)`` should be unique.
        user_id: the user every message belongs to.
        user_from_folder: take the user from the first path component of ``file`` instead
            (layout ``<root>/<user>/.../<session>.jsonl``).

    Returns:
        :class:`ParsedLines`. Per line, in this order:

        * skipped ``blank``: empty or whitespace only;
        * quarantined ``invalid_json``: not a JSON object (e.g. a line truncated mid-write);
        * skipped ``not_assistant``: ``type`` is not "assistant" (user, summary, system, ...);
        * skipped ``no_usage``: assistant line without ``message.usage``;
        * skipped ``synthetic``: ``message.model == "<synthetic>"`` (written locally, not billed);
        * quarantined ``invalid_usage`` (usage not an object, input/output_tokens missing, a count
          negative or not a whole number, 1-hour cache writes above total cache writes),
          ``missing_timestamp``, ``invalid_timestamp``, ``missing_message_id``, ``missing_user``
          (``user_from_folder`` and the file is at the root);
        * otherwise a message; snapshots sharing a dedup key collapse to one (see below) and
          the rest are counted in ``duplicates``.

        De-duplication key (= ``message_id``): ``message.id + ":" + requestId``, or ``message.id``
        when requestId is missing/empty. The kept snapshot has the largest output_tokens, then the
        largest token total, then the earliest created_at (so a copy or re-write of a snapshot
        never moves the response to a later day), then the greatest (file, line_no); the result
        does not depend on row order. Token columns follow Anthropic semantics: input excludes cache, cache creation is
        the 5-minute + 1-hour total, output includes thinking (reasoning_tokens = 0).

    Raises:
        ValueError: missing input columns, or not exactly one of ``user_id`` /
            ``user_from_folder`` given.
    """
    if (user_id is None) == (not user_from_folder):
        raise ValueError("give exactly one of user_id=... or user_from_folder=True")
    missing = set(LINES_SCHEMA) - set(lines.columns)
    if missing:
        raise ValueError(f"lines frame is missing columns: {sorted(missing)}")

    text = pl.col("text")
    base = lines.select(
        pl.col("file").cast(pl.String),
        pl.col("line_no").cast(pl.Int64),
        text.cast(pl.String),
    ).with_columns(
        _blank=text.is_null() | text.str.contains(r"^\s*$"),
        # json_path_match parses the whole line and yields null on any syntax error, so a
        # non-null type also proves the line is valid JSON (str.json_decode would raise instead).
        _type=text.str.json_path_match("$.type"),
    )
    lines_in = base.height

    # Lines without a type: valid JSON objects are just not assistant lines; the rest is garbage.
    # The full-document check is only paid for this (normally tiny) subset.
    untyped = base.filter(~pl.col("_blank") & pl.col("_type").is_null()).with_columns(
        _is_object=text.str.json_path_match("$").is_not_null()
        & text.str.contains(r"^\s*\{")
    )
    invalid_json = untyped.filter(~pl.col("_is_object")).select(
        "file",
        "line_no",
        reason=pl.lit("invalid_json"),
        detail=pl.format(
            "not a complete JSON object ({} chars)", text.str.len_chars()
        ),
    )

    assistant = base.filter(pl.col("_type") == "assistant").with_columns(
        _usage=text.str.json_path_match("$.message.usage"),
        _model=text.str.json_path_match("$.message.model"),
    )
    with_usage = assistant.filter(pl.col("_usage").is_not_null())
    synthetic_mask = pl.col("_model") == SYNTHETIC_MODEL
    candidates = with_usage.filter(~synthetic_mask.fill_null(False))

    skipped = {
        "blank": base.filter(pl.col("_blank")).height,
        "not_assistant": untyped.filter(pl.col("_is_object")).height
        + base.filter(
            pl.col("_type").is_not_null() & (pl.col("_type") != "assistant")
        ).height,
        "no_usage": assistant.height - with_usage.height,
        "synthetic": with_usage.height - candidates.height,
    }

    messages, quarantined_rows = _extract(
        candidates, user_id=user_id, user_from_folder=user_from_folder
    )
    quarantine = (
        pl.concat([invalid_json, quarantined_rows], how="vertical")
        .cast(QUARANTINE_SCHEMA)
        .sort("file", "line_no")
    )

    before = messages.height
    messages = _dedup(messages)
    result = ParsedLines(
        messages=messages,
        quarantine=quarantine,
        skipped=skipped,
        duplicates=before - messages.height,
        lines_in=lines_in,
    )
    if result.accounted != lines_in:  # a bug here would silently lose or invent usage
        raise RuntimeError(f"line accounting broken: {result.accounted} != {lines_in}")
    return result


def _extract(
    candidates: pl.DataFrame, *, user_id: str | None, user_from_folder: bool
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Assistant lines with usage -> (canonical rows before dedup, quarantine rows)."""
    text = pl.col("text")
    usage = pl.col("_usage")

    # Token fields are read from the small usage object, not the whole (possibly huge) line.
    raw = {
        "input_tokens": usage.str.json_path_match("$.input_tokens"),
        "output_tokens": usage.str.json_path_match("$.output_tokens"),
        "cache_creation_input_tokens": usage.str.json_path_match(
            "$.cache_creation_input_tokens"
        ),
        "cache_read_input_tokens": usage.str.json_path_match("$.cache_read_input_tokens"),
        "ephemeral_5m_input_tokens": usage.str.json_path_match(
            "$.cache_creation.ephemeral_5m_input_tokens"
        ),
        "ephemeral_1h_input_tokens": usage.str.json_path_match(
            "$.cache_creation.ephemeral_1h_input_tokens"
        ),
    }
    required = {"input_tokens", "output_tokens"}

    if user_from_folder:
        # "alice/proj/s.jsonl" -> "alice"; a file directly under the root has no user folder.
        user_expr = pl.when(pl.col("file").str.contains("/")).then(
            pl.col("file").str.split("/").list.first()
        )
    else:
        user_expr = pl.lit(user_id, dtype=pl.String)

    df = candidates.with_columns(
        **{f"_raw_{k}": v for k, v in raw.items()},
        _msg_id=_blank_to_null(text.str.json_path_match("$.message.id")),
        _request_id=_blank_to_null(text.str.json_path_match("$.requestId")),
        _session=_blank_to_null(text.str.json_path_match("$.sessionId")),
        _ts_raw=_blank_to_null(text.str.json_path_match("$.timestamp")),
        _sidechain=text.str.json_path_match("$.isSidechain"),
        _user=user_expr,
    ).with_columns(
        **{f"_v_{k}": _token(pl.col(f"_raw_{k}")) for k in raw},
        _created_at=pl.col("_ts_raw").str.to_datetime(
            _TIMESTAMP_FORMAT, time_unit="us", time_zone="UTC", strict=False
        ),
    )

    # One problem description per bad token field, joined into the quarantine detail.
    problems = []
    for k in raw:
        r, v = pl.col(f"_raw_{k}"), pl.col(f"_v_{k}")
        missing = pl.lit(f"{k} missing") if k in required else None
        problems.append(
            pl.when(r.is_null())
            .then(missing)
            .when(v.is_null() | (v < 0))
            .then(pl.format("{}={}", pl.lit(k), r))
        )
    v5m, v1h = pl.col("_v_ephemeral_5m_input_tokens"), pl.col("_v_ephemeral_1h_input_tokens")
    # Anthropic reports cache_creation_input_tokens as the 5m + 1h total; older logs lack the
    # breakdown, some proxies lack the total.
    cache_creation = pl.coalesce(
        pl.col("_v_cache_creation_input_tokens"),
        pl.when(v5m.is_not_null() | v1h.is_not_null()).then(
            v5m.fill_null(0) + v1h.fill_null(0)
        ),
        pl.lit(0, dtype=pl.Int64),
    )
    cache_1h = v1h.fill_null(0)
    problems.append(
        pl.when(cache_1h > cache_creation).then(
            pl.format(
                "ephemeral_1h_input_tokens={} > cache_creation_input_tokens={}",
                cache_1h,
                cache_creation,
            )
        )
    )
    usage_problem = pl.concat_str(problems, separator="; ", ignore_nulls=True)

    df = df.with_columns(
        _usage_problem=pl.when(~usage.str.starts_with("{"))
        .then(pl.lit("message.usage is not an object"))
        .otherwise(pl.when(usage_problem != "").then(usage_problem)),
        _cache_creation=cache_creation,
        _cache_1h=cache_1h,
    ).with_columns(
        _reason=pl.when(pl.col("_usage_problem").is_not_null())
        .then(pl.lit("invalid_usage"))
        .when(pl.col("_ts_raw").is_null())
        .then(pl.lit("missing_timestamp"))
        .when(pl.col("_created_at").is_null())
        .then(pl.lit("invalid_timestamp"))
        .when(pl.col("_msg_id").is_null())
        .then(pl.lit("missing_message_id"))
        .when(pl.col("_user").is_null())
        .then(pl.lit("missing_user")),
        _detail=pl.when(pl.col("_usage_problem").is_not_null())
        .then(pl.col("_usage_problem"))
        .when(pl.col("_ts_raw").is_null())
        .then(pl.lit("no timestamp field"))
        .when(pl.col("_created_at").is_null())
        .then(pl.format("timestamp={} is not ISO 8601 with a UTC offset", pl.col("_ts_raw")))
        .when(pl.col("_msg_id").is_null())
        .then(pl.lit("no message.id: cannot de-duplicate"))
        .when(pl.col("_user").is_null())
        .then(pl.lit("file is not inside a user folder")),
    )

    quarantine = df.filter(pl.col("_reason").is_not_null()).select(
        "file", "line_no", reason="_reason", detail="_detail"
    )

    messages = df.filter(pl.col("_reason").is_null()).select(
        message_id=pl.when(pl.col("_request_id").is_not_null())
        .then(pl.format("{}:{}", pl.col("_msg_id"), pl.col("_request_id")))
        .otherwise(pl.col("_msg_id")),
        user_id=pl.col("_user"),
        conversation_id=pl.col("_session"),
        agent_id=pl.when(pl.col("_sidechain") == "true")
        .then(pl.lit(AGENT_SIDECHAIN))
        .otherwise(pl.lit(AGENT_MAIN)),
        model=pl.col("_model"),
        created_at=pl.col("_created_at"),
        status=pl.lit("success"),
        input_tokens=pl.col("_v_input_tokens"),
        cache_creation_input_tokens=pl.col("_cache_creation"),
        cache_creation_1h_input_tokens=pl.col("_cache_1h"),
        cache_read_input_tokens=pl.col("_v_cache_read_input_tokens").fill_null(0),
        output_tokens=pl.col("_v_output_tokens"),
        # Claude reports thinking inside output_tokens and never separately.
        reasoning_tokens=pl.lit(0, dtype=pl.Int64),
        # costUSD in old transcripts is Claude Code's own estimate, not an amount paid.
        paid_amount=pl.lit(None, dtype=pl.Float64),
        source_file=pl.col("file"),
        source_line=pl.col("line_no"),
    )
    return messages.cast(MESSAGES_SCHEMA), quarantine


def _dedup(messages: pl.DataFrame) -> pl.DataFrame:
    """Keep one snapshot per message_id: the most complete one, independent of row order.

    Streaming writes the same response several times with growing output_tokens (input and
    cache counts are fixed from the first chunk), and resumed sessions copy earlier responses
    into a new file. Keeping the first snapshot undercounts output; summing them overcounts.
    Among snapshots with identical tokens the earliest timestamp dates the response: a later
    identical copy (possibly after midnight) then cannot move a message out of a day already
    materialized. `claude_code._upsert_messages` applies the same order in PostgreSQL.
    """
    total = (
        pl.col("input_tokens")
        + pl.col("cache_creation_input_tokens")
        + pl.col("cache_read_input_tokens")
        + pl.col("output_tokens")
    )
    return (
        messages.with_columns(_total=total)
        # (source_file, source_line) is unique, so this order is total and the pick stable.
        .sort(
            "message_id", "output_tokens", "_total", "created_at", "source_file", "source_line",
            descending=[False, False, False, True, False, False],
        )
        .unique(subset="message_id", keep="last", maintain_order=True)
        .drop("_total")
        .sort("created_at", "message_id")
    )


@dataclass(frozen=True)
class NewLines:
    """Result of :func:`read_new_lines`; unpacks as ``lines, offsets, line_start``.

    Attributes:
        lines: columns ``LINES_SCHEMA``: file (String, "/"-separated path relative to root),
            line_no (Int64, 1-based, continuing across calls), text (String, line without
            its newline; invalid UTF-8 replaced by U+FFFD). Sorted by file, line_no.
        offsets: bytes consumed per file (always ends right after a newline); persist it.
        line_start: per file, the line number the next read starts at; persist it too.
        reset_files: files re-read from byte 0 because they shrank or were replaced.
    """

    lines: pl.DataFrame
    offsets: dict[str, int]
    line_start: dict[str, int]
    reset_files: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[object]:
        return iter((self.lines, self.offsets, self.line_start))


def read_new_lines(
    root: Path,
    offsets: dict[str, int],
    line_start: dict[str, int] | None = None,
) -> NewLines:
    """Read the complete lines appended to ``root/**/*.jsonl`` since the previous call.

    Each file is read from its stored byte offset only; the consumed prefix is never read again.
    A trailing line without ``\\n`` (still being written) is left for the next call. A file
    smaller than its offset, or whose byte before the offset is not a newline (replaced by a
    different file), is re-read from byte 0 with line numbers restarting at 1, listed in
    ``reset_files`` and logged as a warning. Re-reading is safe downstream because messages are
    keyed by message_id. Offsets of files that disappeared are carried over unchanged.

    Args:
        root: directory searched recursively; files are visited in sorted relative-path order.
        offsets: the ``offsets`` of the previous call (``{}`` the first time).
        line_start: the ``line_start`` of the previous call. Required for every file with a
            non-zero offset, since line numbers cannot be recovered without re-reading.

    Returns:
        :class:`NewLines` (``lines, offsets, line_start = read_new_lines(...)`` works).

    Raises:
        ValueError: a negative offset, or a non-zero offset without its line_start.
        OSError: from the file system.
    """
    line_start = dict(line_start or {})
    new_offsets = dict(offsets)
    new_line_start = dict(line_start)
    reset: list[str] = []
    files: list[str] = []
    numbers: list[int] = []
    texts: list[str] = []

    paths = sorted(
        (p.relative_to(root).as_posix(), p) for p in root.rglob("*.jsonl") if p.is_file()
    )
    for rel, path in paths:
        offset = offsets.get(rel, 0)
        if offset < 0:
            raise ValueError(f"negative offset {offset} for {rel}")
        if offset > 0 and rel not in line_start:
            raise ValueError(f"offset for {rel} given without its line_start")
        next_line = line_start.get(rel, 1) if offset > 0 else 1

        with path.open("rb") as fh:
            size = path.stat().st_size
            if offset > 0:
                replaced = offset > size
                if not replaced:
                    fh.seek(offset - 1)
                    replaced = fh.read(1) != b"\n"
                if replaced:
                    logger.warning(
                        "%s shrank or was replaced (offset %d, size %d): re-reading from 0",
                        rel,
                        offset,
                        size,
                    )
                    reset.append(rel)
                    offset, next_line = 0, 1
            fh.seek(offset)
            chunk = fh.read()

        # Only complete lines: whatever follows the last newline is still being written.
        end = chunk.rfind(b"\n") + 1
        raw_lines = chunk[:end].split(b"\n")[:-1] if end else []
        files.extend([rel] * len(raw_lines))
        numbers.extend(range(next_line, next_line + len(raw_lines)))
        texts.extend(
            b.removesuffix(b"\r").decode("utf-8", errors="replace") for b in raw_lines
        )
        new_offsets[rel] = offset + end
        new_line_start[rel] = next_line + len(raw_lines)

    lines = pl.DataFrame(
        {"file": files, "line_no": numbers, "text": texts}, schema=LINES_SCHEMA
    )
    return NewLines(lines, new_offsets, new_line_start, reset)
