"""Usage reports in the manner of ccusage (daily, weekly, monthly, session), read from the summary
tables, never from raw rows: `usage-etl report usage`.

- daily / weekly / monthly: the stored rows of `user_token_usage` (with a model breakdown, of
  `user_token_usage_by_model`) of every period overlapping [since, until] — whole periods, as
  stored, so the figures are exactly the table's;
- session: `user_session_usage(...)` (sql/0006_session_usage.sql), the conversation totals over the
  grain days in [since, until].

Periods and days are those of the business timezone (USAGE_ETL_TIMEZONE): rows are aggregated per
local day when written, so a report cannot re-bucket them into another timezone.

Shapes: `UsageReport.rows` are dicts with tokens and counts as int, `cost_usd` as Decimal (USD,
6 places), dates as `date`, activity times as timezone-aware `datetime`, models/agent_ids as
lists of str, and with a breakdown a `breakdown` list of per-model dicts of the same measures.
`to_json` writes tokens as integers and cost as decimal strings, so `from_json(to_json(r))`
returns the same figures; `to_csv` writes one line per row (per model with a breakdown).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal

import sqlalchemy as sa

from usage_etl import db, store
from usage_etl.settings import Settings

PERIODS = ("daily", "weekly", "monthly", "session")
TOKENS = ["input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens", "reasoning_tokens", "total_tokens"]
PERIOD_MEASURES = [*TOKENS, "message_count", "conversation_count", "unpriced_message_count", "cost_usd"]
SESSION_MEASURES = [*TOKENS, "message_count", "unpriced_message_count", "cost_usd"]
SUMMED = {"message_count", "unpriced_message_count", *TOKENS, "cost_usd"}  # what the totals add up
SESSION_FUNCTION = "user_session_usage"


@dataclass
class UsageReport:
    """One report: `rows` in order (period or session, then user), `totals` of `SUMMED`."""

    period: str  # one of PERIODS
    timezone: str  # IANA name of the business timezone the periods are in
    since: date | None
    until: date | None
    user_id: str | None
    breakdown: str | None  # "model" or None
    rows: list[dict] = field(default_factory=list)

    @property
    def totals(self) -> dict:
        return {k: sum((r[k] for r in self.rows), Decimal(0) if k == "cost_usd" else 0) for k in self.measures if k in SUMMED}

    @property
    def measures(self) -> list[str]:
        return SESSION_MEASURES if self.period == "session" else PERIOD_MEASURES


def _midnight(d: date, settings: Settings) -> datetime:
    return datetime.combine(d, time(), tzinfo=settings.tz)


def _label(period: str, start: date) -> str:
    return start.strftime("%Y-%m") if period == "monthly" else start.isoformat()


def _period_rows(conn: sa.Connection, settings: Settings, report: UsageReport, table: str, with_model: bool) -> list[dict]:
    t = db.reflect(conn, settings.schema, table)
    cols = [t.c.user_id, t.c.period_start, *([t.c.model] if with_model else []), *[t.c[m] for m in PERIOD_MEASURES], t.c.models]
    q = sa.select(*cols).where(t.c.period_type == report.period)
    if report.since:
        q = q.where(t.c.period_end > _midnight(report.since, settings))
    if report.until:
        q = q.where(t.c.period_start < _midnight(report.until + timedelta(days=1), settings))
    if report.user_id is not None:
        q = q.where(t.c.user_id == report.user_id)
    q = q.order_by(t.c.period_start, sa.collate(t.c.user_id, "C"), *([sa.collate(t.c.model, "C")] if with_model else []))
    out = []
    for r in conn.execute(q).mappings():
        start = r["period_start"].astimezone(settings.tz).date()
        row = {"period": _label(report.period, start), "period_start": start, "user_id": r["user_id"]}
        if with_model:
            row["model"] = r["model"]
        row.update({m: int(r[m]) if m != "cost_usd" else r[m] for m in PERIOD_MEASURES})
        row["models"] = list(r["models"])
        out.append(row)
    return out


def _session_rows(conn: sa.Connection, settings: Settings, report: UsageReport, by_model: bool) -> list[dict]:
    names = ["user_id", "conversation_id", "model", "first_activity", "last_activity", "first_day", "last_day", "days",
             *SESSION_MEASURES, "models", "agent_ids"]
    fn = sa.sql.functions.Function(
        SESSION_FUNCTION,
        sa.cast(sa.bindparam("since", report.since), sa.Date),
        sa.cast(sa.bindparam("until", report.until), sa.Date),
        sa.cast(sa.bindparam("user", report.user_id), sa.Text),
        sa.bindparam("by_model", by_model, type_=sa.Boolean),
        packagenames=(settings.schema,),
    ).table_valued(*names)
    key = [sa.collate(fn.c.user_id, "C"), sa.collate(fn.c.conversation_id, "C")]
    order = [*key, sa.collate(fn.c.model, "C")] if by_model else [fn.c.first_activity, *key]
    q = sa.select(*[fn.c[n] for n in names]).order_by(*order)
    out = []
    for r in conn.execute(q).mappings():
        row = {"session": r["conversation_id"], "user_id": r["user_id"]}
        if by_model:
            row["model"] = r["model"]
        row.update(
            first_activity=r["first_activity"].astimezone(settings.tz), last_activity=r["last_activity"].astimezone(settings.tz),
            first_day=r["first_day"], last_day=r["last_day"], days=r["days"],
        )
        row.update({m: int(r[m]) if m != "cost_usd" else r[m] for m in SESSION_MEASURES})
        row.update(models=list(r["models"]), agent_ids=list(r["agent_ids"]))
        out.append(row)
    return out


def _key(report: UsageReport, row: dict) -> tuple:
    return (row["session"], row["user_id"]) if report.period == "session" else (row["period"], row["user_id"])


def build(engine: sa.Engine, settings: Settings, period: str, *, since: date | None = None, until: date | None = None,
          user_id: str | None = None, breakdown: str | None = None) -> UsageReport:
    """The report (module doc). Raises ValueError for an unknown period or breakdown, or until < since."""
    if period not in PERIODS:
        raise ValueError(f"period {period!r} is not one of {', '.join(PERIODS)}")
    if breakdown not in (None, "model"):
        raise ValueError(f"breakdown {breakdown!r}: only 'model' is supported")
    if since and until and until < since:
        raise ValueError(f"until {until} is before since {since}")
    report = UsageReport(period, settings.timezone, since, until, user_id, breakdown)
    with engine.connect() as conn:
        if period == "session":
            report.rows = _session_rows(conn, settings, report, False)
            parts = _session_rows(conn, settings, report, True) if breakdown else []
        else:
            report.rows = _period_rows(conn, settings, report, store.SUMMARY_TABLE, False)
            parts = _period_rows(conn, settings, report, store.BY_MODEL_TABLE, True) if breakdown else []
    if breakdown:
        by_key: dict[tuple, list[dict]] = {}
        for p in parts:
            by_key.setdefault(_key(report, p), []).append({"model": p["model"], **{m: p[m] for m in report.measures}})
        for row in report.rows:
            row["breakdown"] = by_key.get(_key(report, row), [])
    return report


# --- machine output ---------------------------------------------------------------------------------


def _plain(value):
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


def to_json(report: UsageReport) -> str:
    """JSON object: period, timezone, since, until, user_id, breakdown, rows, totals. Tokens and
    counts are JSON integers, cost_usd a decimal string with 6 places, dates ISO 8601."""

    def obj(d: dict) -> dict:
        return {k: [obj(x) for x in v] if k == "breakdown" else _plain(v) for k, v in d.items()}

    doc = {
        "period": report.period, "timezone": report.timezone, "since": _plain(report.since), "until": _plain(report.until),
        "user_id": report.user_id, "breakdown": report.breakdown, "rows": [obj(r) for r in report.rows], "totals": obj(report.totals),
    }
    return json.dumps(doc, indent=2)


def from_json(text: str) -> UsageReport:
    """Inverse of `to_json` (cost back to Decimal, dates and times back to date/datetime)."""
    doc = json.loads(text)

    def back(d: dict) -> dict:
        out = {}
        for k, v in d.items():
            if k == "breakdown":
                v = [back(x) for x in v]
            elif k == "cost_usd":
                v = Decimal(v)
            elif k in ("period_start", "first_day", "last_day"):
                v = date.fromisoformat(v)
            elif k in ("first_activity", "last_activity"):
                v = datetime.fromisoformat(v)
            out[k] = v
        return out

    day = lambda v: date.fromisoformat(v) if v else None  # noqa: E731
    return UsageReport(doc["period"], doc["timezone"], day(doc["since"]), day(doc["until"]), doc["user_id"], doc["breakdown"],
                       [back(r) for r in doc["rows"]])


def csv_columns(report: UsageReport) -> list[str]:
    head = ["session", "user_id"] if report.period == "session" else ["period", "period_start", "user_id"]
    times = ["first_activity", "last_activity", "first_day", "last_day", "days"] if report.period == "session" else []
    lists = ["models", "agent_ids"] if report.period == "session" else ["models"]
    return [*head, *(["model"] if report.breakdown else []), *times, *report.measures, *lists]


def to_csv(report: UsageReport) -> str:
    """CSV with a header (`csv_columns`): one line per row, or with a breakdown one per row and
    model (the model's measures; the row's models list stays). Lists are ';'-separated; cost_usd
    is the decimal text; an empty session id is a conversation-less row."""
    buf = io.StringIO()
    cols = csv_columns(report)
    w = csv.writer(buf)  # RFC 4180 line ends: a field holding \r or \n is quoted
    w.writerow(cols)
    for row in report.rows:
        lines = [{**row, **part} for part in row["breakdown"]] if report.breakdown else [row]
        for line in lines:
            w.writerow(["" if line[c] is None else ";".join(line[c]) if isinstance(line[c], list) else _plain(line[c]) for c in cols])
    return buf.getvalue()


# --- table for people ------------------------------------------------------------------------------

_HEADERS = {"input_tokens": "Input", "output_tokens": "Output", "cache_creation_input_tokens": "Cache Create",
            "cache_read_input_tokens": "Cache Read", "total_tokens": "Total Tokens", "message_count": "Messages",
            "cost_usd": "Cost (USD)"}
_FIRST = {"daily": "Date", "weekly": "Week", "monthly": "Month"}


def to_table(report: UsageReport) -> str:
    """A readable table with a Total line, like ccusage's: one line per row, model lines under it
    with a breakdown; costs to the cent (the machine formats carry every digit)."""
    first = ["Session", "User", "Last Activity"] if report.period == "session" else [_FIRST[report.period], "User"]
    measures = list(_HEADERS)

    def cells(d: dict) -> list[str]:
        return [f"{d[m]:,.2f}" if m == "cost_usd" else f"{d[m]:,}" for m in measures]

    lines = []
    for row in report.rows:
        if report.period == "session":
            lead = [row["session"] or "(none)", row["user_id"], row["last_activity"].strftime("%Y-%m-%d %H:%M")]
        else:
            lead = [row["period"], row["user_id"]]
        lines.append([*lead, ", ".join(row["models"]), *cells(row)])
        for part in row.get("breakdown") or []:
            lines.append([*[""] * len(lead), f"└ {part['model']}", *cells(part)])
    totals = report.totals
    total_line = ["Total", *[""] * (len(first) - 1), "", *cells({**{m: 0 for m in measures}, **totals})]
    header = [*first, "Models", *[_HEADERS[m] for m in measures]]
    table = [header, *lines, total_line]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    left = len(first) + 1  # text columns are left-aligned, figures right-aligned

    def fmt(r: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    days = f"{report.since or '…'}..{report.until or '…'}" if report.since or report.until else "all days"
    scope = f"{days}, {report.user_id or 'all users'}, timezone {report.timezone}"
    return "\n".join([f"usage report, {report.period} ({scope})", "", fmt(header), rule, *map(fmt, lines), rule, fmt(total_line)])
