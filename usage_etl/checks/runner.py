"""Read what the integrity rules need for a range of partitions and evaluate them (`checks.py`).

Used by the Dagster asset checks (one partition per call, as each is written) and by
`usage-etl check` (a whole range per call). A range is read with one query per input, never one
per partition, then split by partition in Polars. The inputs are small (one row
per user and partition), so they come over the engine's pooled psycopg connection (an ADBC
connection costs ~0.1 s to open, more than all these queries together), except a daily run's
expected figures, read in the run's own ADBC snapshot (below).

The expected figures of the reconciliation come from an independent path: SQL over the raw
source (the same window SELECT as the pipeline, `sources.postgres.window_query`) that applies the
provider token semantics itself, server side, and drops the partition's quarantined rows (matched
by `raw_digest`, so another copy of a quarantined id still counts). It shares no Polars code with
the summaries it checks. `evaluate(..., connection=)` also runs inside a write transaction: the
pipeline audits a partition's rows there before it commits them, against expected figures it
computed in the snapshot it read the rows in (`expected_in_snapshot`), so rows arriving during
the run cannot fail the audit.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

import polars as pl
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from usage_etl import store
from usage_etl.checks import rules as checks
from usage_etl.checks.rules import CheckOutcome
from usage_etl.settings import Settings, Thresholds
from usage_etl.sources.postgres import source_name
from usage_etl.frames import MAX_TOKENS_PER_FIELD, WHITESPACE
from usage_etl.sources.postgres import TOKEN_SLOTS, WindowSnapshot, raw_digest, source_table, window_query

# Rows whose token fields are not all integer literals were quarantined by the pipeline; testing
# them again here (one pattern over all fields of the row) keeps this query from failing on a day
# the pipeline has not processed, and leaves such rows out of the expected figures.
# A whole number may read as "120.00" (a numeric column as text); no field at all is an empty list.
_INT = r"[ \t\n\r]*-?[0-9]{1,18}(\.0*)?[ \t\n\r]*"  # ASCII only, as normalize
_ALL_INTEGERS = rf"^({_INT}(,{_INT})*)?$"
# Nearly every row holds plain digits only: this simpler pattern (with each field at most 18
# characters) decides them about four times faster than the full one, and such a field casts
# straight to bigint. It accepts a subset of what _ALL_INTEGERS accepts; other rows get the full test.
_DIGITS = r"^([0-9]+(,[0-9]+)*)?$"
_MAX_DIGITS = 18
_DAY_FORMAT = "YYYY-MM-DD"  # = the daily partition key format


def _local_date(settings: Settings, ts: sa.ColumnElement) -> sa.ColumnElement:
    """The calendar date of an instant in the business timezone (= its daily partition)."""
    return sa.cast(sa.func.timezone(settings.timezone, ts), sa.Date)


Bound = datetime | sa.BindParameter  # a value, or a bind parameter of a statement built once


Quarantined = tuple[list[str], list[int], list[str]]  # (message ids, raw digests, ids of rows without a digest)


def _json_array(values: list, kind: sa.types.TypeEngine = sa.Text()) -> sa.Select:
    """The rows of one bound JSON array, cast to `kind` (an IN list bound as one parameter). The
    function is in FROM: in the select list it would keep the query from parallel workers."""
    rows = sa.func.jsonb_array_elements_text(sa.cast(sa.bindparam(None, json.dumps(values), sa.Text), JSONB)).table_valued("value")
    return sa.select(sa.cast(rows.c.value, kind))


def expected_query(
    settings: Settings,
    start: Bound,
    end: Bound,
    first_day: str | sa.BindParameter,
    end_day: str | sa.BindParameter,
    *,
    quarantined: Quarantined | None = None,
) -> sa.Select:
    """Per (day, user) over raw rows with start <= created_at < end, minus the rows quarantined
    for days in [first_day, end_day) (ISO dates, the same window; matched by raw digest): day (text
    partition key), user_id (trimmed like normalize does), message_count and the token sums of
    `checks.RECONCILED`. `quarantined`: the quarantined rows given as (message ids, raw digests,
    ids of rows without a digest) instead of read from the quarantine table (a run audits its rows
    against the snapshot it read, before its quarantine is written).

    Token semantics (docs/architecture.md, "Canonical frame"), written in SQL: OpenAI chat (prompt/completion present) ->
    input = prompt - cached, cache_read = cached, output = completion, reasoning from its details;
    OpenAI responses (input/output details present) -> input = input - cached, cache_read = cached;
    otherwise Anthropic fields as they are, reasoning 0.
    """
    fields = [f for f in TOKEN_SLOTS if f != "u_cache_creation_1h_input_tokens"]  # the 1h part is inside cache_creation
    semantics = settings.source_config.tokens.semantics
    w = window_query(settings, start, end).subquery("w")
    q = sa.table(
        store.QUARANTINE_TABLE, sa.column("source"), sa.column("partition_key"), sa.column("message_id"), sa.column("raw_digest"), schema=settings.schema
    )
    in_window = sa.and_(q.c.source == source_name(settings), q.c.partition_key >= first_day, q.c.partition_key < end_day)
    # A quarantined row is found by its raw_digest, so of two copies of one message id only the bad
    # one is left out. The digest is computed only for rows whose id is quarantined (or null): the
    # NOT IN lookups run hashed over the small quarantine; NULL ids are left out of them, or NOT IN
    # would match nothing. Rows quarantined before raw_digest existed are matched by id.
    if quarantined is None:
        quarantined_ids: sa.Select = sa.select(q.c.message_id).where(in_window, q.c.message_id.is_not(None))
        digests: sa.Select = sa.select(q.c.raw_digest).where(in_window, q.c.raw_digest.is_not(None))
        legacy_ids = quarantined_ids.where(q.c.raw_digest.is_(None))
    else:
        ids, hashes, legacy = quarantined
        quarantined_ids, legacy_ids = _json_array(ids), _json_array(legacy)
        digests = _json_array(hashes, sa.BigInteger())
    excluded = sa.or_(
        sa.func.coalesce(w.c.message_id.in_(legacy_ids), False),  # a NULL id is in no list (not NULL)
        sa.case((sa.or_(w.c.message_id.is_(None), w.c.message_id.in_(quarantined_ids)), raw_digest(w).in_(digests)), else_=False),
    )
    user = sa.func.btrim(w.c.user_id, WHITESPACE)  # as normalize trims it
    # OFFSET 0 fences: without them PostgreSQL inlines the subqueries and extracts each JSON field,
    # tests the pattern and casts again in every expression that uses it (about 3x the CPU per row:
    # 5M rows took 38 s, with its sort of wide rows spilling to disk, against ~10 s fenced).
    raw = (
        sa.select(_local_date(settings, w.c.created_at).label("day"), user.label("user_id"), *[w.c[f] for f in fields])
        .where(~excluded)
        .offset(0)
        .subquery("raw")
    )
    joined = sa.func.concat_ws(",", *[raw.c[f] for f in fields])
    longest = sa.func.coalesce(sa.func.greatest(*[sa.func.octet_length(raw.c[f]) for f in fields]), 0)
    digits = sa.and_(joined.regexp_match(_DIGITS), longest <= _MAX_DIGITS)
    fenced = sa.select(raw, digits.label("digits")).offset(0).subquery("digits")
    integers = sa.or_(fenced.c.digits, sa.func.concat_ws(",", *[fenced.c[f] for f in fields]).regexp_match(_ALL_INTEGERS))
    t = sa.select(fenced, integers.label("ok")).offset(0).subquery("tested")  # each pattern once per row
    # `auto` detects the provider per row; a configured semantics applies to every row.
    chat: sa.ColumnElement = sa.or_(t.c.u_prompt_tokens.is_not(None), t.c.u_completion_tokens.is_not(None))
    responses: sa.ColumnElement = sa.and_(~chat, sa.or_(t.c.u_input_cached_tokens.is_not(None), t.c.u_output_reasoning_tokens.is_not(None)))
    if semantics != "auto":
        chat, responses = sa.literal(semantics == "openai_chat"), sa.literal(semantics == "openai_responses")
    # CASE keeps each cast behind the test (PostgreSQL may evaluate WHERE conditions in any order);
    # the fence casts once per row.
    n = (
        sa.select(
            t.c.day,
            t.c.user_id,
            chat.label("chat"),
            responses.label("responses"),
            *[
                sa.case(
                    (t.c.digits, sa.func.coalesce(sa.cast(t.c[f], sa.BigInteger), 0)),
                    (t.c.ok, sa.func.coalesce(sa.cast(sa.cast(t.c[f], sa.Numeric), sa.BigInteger), 0)),
                ).label(f)
                for f in fields
            ],
        )
        .where(t.c.ok)
        .offset(0)
        .subquery("parsed")
    )
    openai = sa.or_(n.c.chat, n.c.responses)
    cached = sa.case((n.c.chat, n.c.u_prompt_cached_tokens), else_=n.c.u_input_cached_tokens)
    tokens = {
        "input_tokens": sa.case((n.c.chat, n.c.u_prompt_tokens - cached), (n.c.responses, n.c.u_input_tokens - cached), else_=n.c.u_input_tokens),
        "cache_creation_input_tokens": sa.case((openai, 0), else_=n.c.u_cache_creation_input_tokens),
        "cache_read_input_tokens": sa.case((openai, cached), else_=n.c.u_cache_read_input_tokens),
        "output_tokens": sa.case((n.c.chat, n.c.u_completion_tokens), else_=n.c.u_output_tokens),
        "reasoning_tokens": sa.case(
            (n.c.chat, n.c.u_completion_reasoning_tokens),
            (n.c.responses, n.c.u_output_reasoning_tokens),
            else_=n.c.u_reasoning_tokens if semantics == "flat" else 0,
        ),
    }
    # Counts above MAX_TOKENS_PER_FIELD are quarantined too (tokens_out_of_range).
    # One condition, not one per field: the planner then expects a fair share of the rows (not a
    # single one) and hashes the groups instead of sorting every row.
    in_range = sa.func.greatest(*[n.c[f] for f in fields]) <= MAX_TOKENS_PER_FIELD
    canon = sa.select(n.c.day, n.c.user_id, *[e.label(k) for k, e in tokens.items()]).where(in_range).subquery("canon")
    total = canon.c.input_tokens + canon.c.cache_creation_input_tokens + canon.c.cache_read_input_tokens + canon.c.output_tokens
    sums = {**{k: canon.c[k] for k in tokens}, "total_tokens": total}
    return sa.select(
        sa.func.to_char(canon.c.day, _DAY_FORMAT).label("day"),
        canon.c.user_id,
        sa.func.count().label("message_count"),
        *[sa.cast(sa.func.sum(e), sa.BigInteger).label(k) for k, e in sums.items()],
    ).group_by(canon.c.day, canon.c.user_id)


def expected_in_snapshot(snapshot: WindowSnapshot, settings: Settings, window: store.Window, quarantine: pl.DataFrame) -> pl.DataFrame:
    """`expected_query` of one daily window run in the snapshot its rows were read in, minus
    `quarantine` (the run's quarantine rows: message_id, raw_digest), so the reconciliation
    compares the run's summaries with exactly the raw rows it read, even if rows arrive or change
    meanwhile. Day (String) and `checks.EXPECTED_SCHEMA` columns."""
    with_digest = quarantine.filter(pl.col("raw_digest").is_not_null())
    without = quarantine.filter(pl.col("raw_digest").is_null())["message_id"].drop_nulls()
    excluded: Quarantined = (
        with_digest["message_id"].drop_nulls().unique().sort().to_list(),
        with_digest["raw_digest"].unique().sort().to_list(),
        without.unique().sort().to_list(),
    )
    d0, d1 = (d.isoformat() for d in window.days)
    stmt = expected_query(settings, window.start, window.end, d0, d1, quarantined=excluded)
    return snapshot.query(stmt, {**_DAY_SCHEMA, **checks.EXPECTED_SCHEMA})


def _summary_table(settings: Settings, by_model: bool) -> sa.TableClause:
    cols = [c for c in checks.SUMMARY_SCHEMA if c != checks.COST] + ["cost_usd"] + (["model"] if by_model else [])
    name = store.BY_MODEL_TABLE if by_model else store.SUMMARY_TABLE
    return sa.table(name, *[sa.column(c) for c in cols], schema=settings.schema)


def summary_query(settings: Settings, period_type: str, start: Bound, end: Bound, *, by_model: bool = False) -> sa.Select:
    """Rows of one period type whose period_start is in [start, end), shaped as `checks.SUMMARY_SCHEMA`
    (or `BY_MODEL_SCHEMA`); cost_usd numeric(18,6) is read as exact Int64 micro-USD."""
    t = _summary_table(settings, by_model)
    cols = [t.c[c] for c in checks.SUMMARY_SCHEMA if c != checks.COST]
    cost = sa.cast(t.c.cost_usd * 1_000_000, sa.BigInteger).label(checks.COST)
    return sa.select(*([t.c.model] if by_model else []), *cols, cost).where(
        t.c.period_type == period_type, t.c.period_start >= start, t.c.period_start < end
    )


def quarantine_query(settings: Settings, first_day: str | sa.BindParameter, end_day: str | sa.BindParameter) -> sa.Select:
    """Quarantined rows per (daily partition key, reason) for days in [first_day, end_day) (ISO dates)."""
    q = sa.table(store.QUARANTINE_TABLE, sa.column("source"), sa.column("partition_key"), sa.column("reason"), schema=settings.schema)
    return (
        sa.select(q.c.partition_key.label("day"), q.c.reason, sa.func.count().label("rows"))
        .where(q.c.source == source_name(settings), q.c.partition_key >= first_day, q.c.partition_key < end_day)
        .group_by(q.c.partition_key, q.c.reason)
    )


def duplicates_query(settings: Settings, start: Bound, end: Bound) -> sa.Select:
    """Message ids found more than once among one day's raw rows: day, message_id, copies."""
    t = source_table(settings)
    c = settings.source_columns
    ts, ident = t.c[c.created_at], t.c[c.id]
    day = _local_date(settings, ts)
    return (
        sa.select(sa.func.to_char(day, _DAY_FORMAT).label("day"), sa.cast(ident, sa.Text).label("message_id"), sa.func.count().label("copies"))
        .where(ts >= start, ts < end)
        .group_by(day, ident)
        .having(sa.func.count() > 1)
    )


def duplicate_ids(raw: pl.DataFrame, partition_key: str) -> pl.DataFrame:
    """What `duplicates_query` finds, from one daily window's raw frame already read (`message_id`
    = the id as text): day (= `partition_key`), message_id, copies (Int64, > 1)."""
    return (
        raw.group_by("message_id")
        .agg(pl.len().cast(pl.Int64).alias("copies"))
        .filter(pl.col("copies") > 1)
        .select(pl.lit(partition_key).alias("day"), "message_id", "copies")
    )


_DAY_SCHEMA: dict[str, pl.DataType] = {"day": pl.String()}
_QUARANTINE_SCHEMA: dict[str, pl.DataType] = {**_DAY_SCHEMA, "reason": pl.String(), "rows": pl.Int64()}
_DUPLICATES_SCHEMA: dict[str, pl.DataType] = {**_DAY_SCHEMA, "message_id": pl.String(), "copies": pl.Int64()}


def _windows(settings: Settings, period_type: str, keys: Sequence[str]) -> tuple[list[store.Window], pl.DataFrame]:
    wins = [store.Window.of(period_type, k, settings.tz) for k in keys]
    frame = pl.DataFrame(
        {
            "partition_key": [w.partition_key for w in wins],
            "w_start": [w.start for w in wins],
            "w_end": [w.end for w in wins],
            "d0": [w.days[0].isoformat() for w in wins],
            "d1": [w.days[1].isoformat() for w in wins],
        }
    ).with_columns(pl.col("w_start", "w_end").dt.convert_time_zone("UTC").dt.cast_time_unit("us"))
    return wins, frame


def _assign(frame: pl.DataFrame, windows: pl.DataFrame, *, by_day: bool = False) -> dict[str, pl.DataFrame]:
    """Split rows by the partition whose window holds them (period_start, or the ISO `day`)."""
    if windows.height == 1:  # the query already kept only the window's rows
        return {windows["partition_key"][0]: frame}
    if by_day:
        cond = [pl.col("day") >= pl.col("d0"), pl.col("day") < pl.col("d1")]
    else:
        cond = [pl.col("period_start") >= pl.col("w_start"), pl.col("period_start") < pl.col("w_end")]
    joined = frame.join_where(windows, *cond).select("partition_key", *frame.columns)
    empty = frame.clear()
    parts = {k[0]: v for k, v in joined.partition_by("partition_key", as_dict=True, include_key=False).items()}
    return {k: parts.get(k, empty) for k in windows["partition_key"]}


@functools.cache
def _statements(settings: Settings, period_type: str) -> dict[str, tuple[sa.Select, dict[str, pl.DataType]]]:
    """The input SELECTs of `evaluate`, built once per settings and period type with bind
    parameters start, end (instants) and first_day, end_day (ISO dates): building and compiling
    them costs more than running them on one day."""
    start, end = (sa.bindparam(n, type_=sa.DateTime(timezone=True)) for n in ("start", "end"))
    first_day, end_day = (sa.bindparam(n, type_=sa.Text) for n in ("first_day", "end_day"))
    out = {
        "rows": (summary_query(settings, period_type, start, end), checks.SUMMARY_SCHEMA),
        "by_model": (summary_query(settings, period_type, start, end, by_model=True), checks.BY_MODEL_SCHEMA),
        "rejected": (quarantine_query(settings, first_day, end_day), _QUARANTINE_SCHEMA),
    }
    if period_type == "daily":
        out["expected"] = (expected_query(settings, start, end, first_day, end_day), {**_DAY_SCHEMA, **checks.EXPECTED_SCHEMA})
        out["dups"] = (duplicates_query(settings, start, end), _DUPLICATES_SCHEMA)
    else:
        out["days"] = (summary_query(settings, "daily", start, end), checks.SUMMARY_SCHEMA)
    return out


def _read(conn: sa.Connection, stmt: sa.Select, schema: dict[str, pl.DataType], params: dict) -> pl.DataFrame:
    frame = pl.read_database(stmt, connection=conn, schema_overrides=schema, execute_options={"parameters": params})
    return frame.cast(schema).select(list(schema))  # type: ignore[arg-type]


def expected_daily_keys(settings: Settings, now: datetime | None = None) -> list[str]:
    """Daily partition keys from the configured start date to the latest complete day (business
    timezone), as the daily partitions definition lists them."""
    today = (now or datetime.now(settings.tz)).astimezone(settings.tz).date()
    return [(settings.start_date + timedelta(days=i)).isoformat() for i in range((today - settings.start_date).days)]


def evaluate(
    engine: sa.Engine,
    settings: Settings,
    period_type: str,
    keys: Sequence[str],
    *,
    materialized_daily: Iterable[str] = (),
    thresholds: Thresholds = Thresholds(),
    now: datetime | None = None,
    connection: sa.Connection | None = None,
    duplicates: Mapping[str, pl.DataFrame] | None = None,
    expected: Mapping[str, pl.DataFrame] | None = None,
) -> dict[str, list[CheckOutcome]]:
    """Evaluate `checks.rules_for(period_type)` on each partition key; outcomes in RULES order.

    `materialized_daily`: daily partition keys known to be materialized (completeness); `now`:
    the time that decides the latest complete day (default: now). `connection`: read over it (e.g.
    inside the write transaction, to check rows before they are committed) instead of the engine's pool.
    `duplicates` (daily only): per partition key, its repeated message ids (`duplicate_ids` of the
    raw rows already read) instead of the duplicate-id query over the raw source; `expected` (daily
    only): per partition key, the reconciliation's expected figures (`expected_in_snapshot`)
    instead of `expected_query` over the raw source now.
    """
    if not keys:
        return {}
    wins, wf = _windows(settings, period_type, keys)
    params = {
        "start": min(w.start for w in wins), "end": max(w.end for w in wins),
        "first_day": wf["d0"].min(), "end_day": wf["d1"].max(),
    }
    with contextlib.nullcontext(connection) if connection is not None else engine.connect() as conn:
        found = {
            name: _assign(_read(conn, stmt, schema, params), wf, by_day="day" in schema)
            for name, (stmt, schema) in _statements(settings, period_type).items()
            if not (name == "dups" and duplicates is not None) and not (name == "expected" and expected is not None)
        }
    if duplicates is not None:
        found["dups"] = {k: duplicates[k] for k in keys}
    if expected is not None:
        found["expected"] = {k: expected[k] for k in keys}
    rows, by_model, rejected = found["rows"], found["by_model"], found["rejected"]
    daily = period_type == "daily"
    if daily:
        expected, dups = found["expected"], found["dups"]
        complete = checks.completeness(expected_daily_keys(settings, now), materialized_daily)
    else:
        days = found["days"]

    out: dict[str, list[CheckOutcome]] = {}
    for w in wins:
        k = w.partition_key
        r, m = rows[k], by_model[k]
        reasons = dict(rejected[k].select("reason", "rows").iter_rows())
        found = [
            checks.keys_and_values(r, m, period_type=period_type, window_start=w.start, window_end=w.end),
            checks.pricing_coverage(m, max_share=thresholds.max_unpriced_share),
            checks.quarantine_rate(int(r["message_count"].sum()), reasons, max_share=thresholds.max_quarantine_share),
        ]
        if daily:
            found += [checks.reconcile(expected[k].drop("day"), r), complete, checks.duplicate_raw_rows(dups[k].drop("day"))]
        else:
            found.append(checks.rollup_consistency(r, days[k]))
        by_name = {o.check: o for o in found}
        out[k] = [by_name[rule.name] for rule in checks.rules_for(period_type)]
    return out


def failed_errors(results: Mapping[str, Mapping[str, Sequence[CheckOutcome]]]) -> list[tuple[str, str, CheckOutcome]]:
    """(period_type, partition_key, outcome) of every failed ERROR-severity check."""
    return [
        (pt, key, o)
        for pt, by_key in results.items()
        for key, outcomes in by_key.items()
        for o in outcomes
        if not o.passed and o.severity is checks.Severity.ERROR
    ]


_SHORT = {
    "reconciles_with_raw": "raw",
    "rollup_matches_daily": "rollup",
    "keys_and_values": "keys",
    "completeness": "complete",
    "pricing_coverage": "pricing",
    "quarantine_rate": "quarantine",
    "no_duplicate_raw_rows": "dups",
}


def render(results: Mapping[str, Mapping[str, Sequence[CheckOutcome]]]) -> str:
    """A text table: one line per partition, one column per rule (ok / WARN / ERROR), then one line
    per failed check with its summary. `results`: period_type -> partition key -> outcomes."""
    lines: list[str] = []
    failures: list[str] = []
    for pt, by_key in results.items():
        names = [r.name for r in checks.rules_for(pt)]
        lines.append(f"{pt:<8} {'partition':<11} " + " ".join(f"{_SHORT[n]:>10}" for n in names))
        for key, outcomes in by_key.items():
            cells = {o.check: ("ok" if o.passed else o.severity.value) for o in outcomes}
            lines.append(f"{pt:<8} {key:<11} " + " ".join(f"{cells.get(n, '-'):>10}" for n in names))
            failures += [f"  {o.severity.value:<5} {pt} {key} {o.check}: {o.summary}" for o in outcomes if not o.passed]
    if failures:
        lines += ["", "failed checks:", *failures]
    return "\n".join(lines)
