"""Realistic sample raw messages for the default `chat_messages` source.

Shape of the data, all vectorized (NumPy draws, Polars expressions; no loop over rows):
- user activity follows a power law (Zipf, s=1.1): a few heavy users, a long tail;
- messages come in multi-turn conversations (geometric, mean 6 turns, 20–90 s apart), some of
  them crossing midnight; each conversation has one agent and one model (but for the unpriced
  first turns below);
- a daily rhythm (quiet at night, busy in the afternoon, business timezone);
- about 55% Anthropic-shaped usage (input/output/cache creation/cache read, `service_tier`
  "standard" inside usage) and 45% OpenAI chat usage (prompt/completion with cached and reasoning
  details, `service_tier` "default" next to usage); ~1% are errors;
- current model names (`MODELS`), all priced by the default book;
- floor(`unpriced_fraction` x messages_per_day) messages a day (default 0.05%: 1 of 2,000) use
  `UNPRICED_MODEL`, a model without a price: the first turns of the day with the fewest tokens, so
  each day's unpriced share of messages and tokens stays below the pricing-coverage threshold
  (0.1%) while the unpriced counts still show;
- about `bad_fraction` (default 0.5%) bad rows: usage missing, a negative, fractional or non-numeric
  token count, a NULL user_id, or (rarely) a NULL created_at.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import sqlalchemy as sa

from usage_etl.db import execute_ddl, quote, quote_table
from usage_etl.settings import Settings
from usage_etl.migrations import read_sql

# (model, provider, share). Current model names as logged (bare API aliases and dated
# snapshots); shares are rough public-usage proportions, not measurements. All of them are
# priced by the default book (generated from genai-prices).
MODELS = [
    ("claude-sonnet-4-6", "anthropic", 0.22),
    ("claude-opus-4-6", "anthropic", 0.08),
    ("claude-sonnet-5", "anthropic", 0.10),
    ("claude-haiku-4-5-20251001", "anthropic", 0.10),
    ("claude-opus-5", "anthropic", 0.05),
    ("gpt-5.4", "openai", 0.12),
    ("gpt-5.5", "openai", 0.08),
    ("gpt-5.4-mini", "openai", 0.10),
    ("gpt-5.2-2025-12-11", "openai", 0.07),
    ("o4-mini-2025-04-16", "openai", 0.08),
]
UNPRICED_MODEL = "llama-3.1-70b-instruct"  # no price: shows up as unpriced, never $0
REASONING_MODELS = ["gpt-5.4", "gpt-5.5", "gpt-5.4-mini", "gpt-5.2-2025-12-11", "o4-mini-2025-04-16"]
AGENTS = 6
# Relative message volume per local hour 0..23.
HOURLY = np.array([2, 1, 1, 1, 1, 2, 4, 7, 10, 12, 13, 13, 12, 13, 14, 14, 13, 11, 9, 8, 7, 6, 4, 3], float)


@dataclass(frozen=True)
class SampleSpec:
    users: int = 200
    days: int = 30
    messages_per_day: int = 2000
    seed: int = 42
    end: date | None = None  # exclusive; default: today in the business timezone
    bad_fraction: float = 0.005
    unpriced_fraction: float = 0.0005  # per day, floor(unpriced_fraction * messages_per_day) messages


def _fmt(template: str, *values: pl.Expr) -> pl.Expr:
    """`template` with each `{}` replaced by a value; other braces are literal (JSON)."""
    pieces = template.split("{}")
    parts: list[pl.Expr] = [pl.lit(pieces[0])]
    for value, piece in zip(values, pieces[1:], strict=True):
        parts += [value.cast(pl.String), pl.lit(piece)]
    return pl.concat_str(parts)


def _uuid(prefix: str, n: pl.Expr) -> pl.Expr:
    # Deterministic, valid UUID text: decimal digits are hex digits too.
    return pl.lit(prefix + "-") + n.cast(pl.String).str.zfill(12)


def generate_frame(spec: SampleSpec, timezone: str = "UTC") -> pl.DataFrame:
    """Raw `chat_messages` rows: id, user_id, conversation_id, agent_id (String uuids), model
    (String), created_at (Datetime us UTC, nullable), metadata (String, JSON text)."""
    rng = np.random.default_rng(spec.seed)
    tz = ZoneInfo(timezone)
    end = spec.end or datetime.now(tz).date()
    first = end - timedelta(days=spec.days)
    total = spec.days * spec.messages_per_day
    n_conv = int(total / 5 * 1.3) + spec.days  # enough conversations; trimmed below

    user_w = 1.0 / np.arange(1, spec.users + 1) ** 1.1
    model_w = np.array([m[2] for m in MODELS])
    conv = pl.DataFrame(
        {
            "conv": np.arange(n_conv),
            "day": rng.integers(0, spec.days, n_conv),
            "user": rng.choice(spec.users, n_conv, p=user_w / user_w.sum()),
            "agent": rng.integers(0, AGENTS, n_conv),
            "model_idx": rng.choice(len(MODELS), n_conv, p=model_w / model_w.sum()),
            "turns": rng.geometric(1 / 6, n_conv),
            "start_s": rng.choice(24, n_conv, p=HOURLY / HOURLY.sum()) * 3600 + rng.integers(0, 3600, n_conv),
        }
    )
    msgs = conv.with_columns(turn=pl.int_ranges(0, "turns")).explode("turn")
    # Keep exactly messages_per_day per day (by conversation start day), whole turns in order.
    msgs = msgs.sort("day", "conv", "turn").filter(pl.int_range(pl.len()).over("day") < spec.messages_per_day)
    n = msgs.height
    gaps = rng.integers(20, 90, n)
    day0 = datetime.combine(first, time(0), tz)
    models = pl.DataFrame({"model_idx": np.arange(len(MODELS)), "model": [m[0] for m in MODELS], "provider": [m[1] for m in MODELS]})
    msgs = (
        msgs.with_columns(gap=pl.Series(gaps))
        .with_columns(offset_s=pl.col("start_s") + pl.col("gap").cum_sum().over("conv") - pl.col("gap").first().over("conv"))
        .join(models, on="model_idx", how="left")
        .with_columns(
            # Local calendar day + local seconds; convert_time_zone handles DST.
            created_at=(
                pl.lit(day0.replace(tzinfo=None)).dt.replace_time_zone(timezone)
                + pl.duration(days=pl.col("day"))
            ).dt.replace_time_zone(None)
            + pl.duration(seconds=pl.col("offset_s")),
            input=pl.Series(np.round(rng.lognormal(6.5, 1.0, n)).astype(np.int64)),
            output=pl.Series(np.round(rng.lognormal(5.5, 0.9, n)).astype(np.int64)),
            cache_frac=pl.Series(rng.uniform(0.3, 0.95, n)),
            reasoning_frac=pl.Series(rng.uniform(0.2, 0.8, n)),
            one_hour=pl.Series(rng.random(n) < 0.2),
            is_error=pl.Series(rng.random(n) < 0.01),
            bad=pl.Series(rng.random(n)),
        )
        .with_columns(pl.col("created_at").dt.replace_time_zone(timezone, ambiguous="earliest", non_existent="null").dt.convert_time_zone("UTC"))
    )
    # A first turn is always on its conversation's start day, so every day gets exactly its count;
    # the smallest ones keep the unpriced token share below the message share.
    per_day = int(spec.unpriced_fraction * spec.messages_per_day + 1e-9)  # 0.29 * 100 is 28.99…
    smallest = pl.when(pl.col("turn") == 0).then(pl.col("input") + pl.col("output")).rank("ordinal").over("day")
    unpriced = (smallest <= per_day).fill_null(False)
    msgs = msgs.with_columns(
        model=pl.when(unpriced).then(pl.lit(UNPRICED_MODEL)).otherwise("model"),
        provider=pl.when(unpriced).then(pl.lit("openai")).otherwise("provider"),
    )
    context = pl.col("input") + pl.col("turn") * 400  # later turns carry the conversation
    cached = (context * pl.col("cache_frac")).cast(pl.Int64)
    first_turn = pl.col("turn") == 0
    creation = pl.when(first_turn).then(context).otherwise((pl.col("input") * 0.3).cast(pl.Int64))
    one_h = pl.when(pl.col("one_hour")).then(creation).otherwise(0)
    anthropic = _fmt(
        '"input_tokens":{},"output_tokens":{},"cache_creation_input_tokens":{},"cache_read_input_tokens":{},'
        '"cache_creation":{"ephemeral_5m_input_tokens":{},"ephemeral_1h_input_tokens":{}},"service_tier":"standard"',
        pl.col("input"), pl.col("output"), creation, pl.when(first_turn).then(0).otherwise(cached), creation - one_h, one_h,
    )
    reasoning = pl.when(pl.col("model").is_in(REASONING_MODELS)).then((pl.col("output") * pl.col("reasoning_frac")).cast(pl.Int64)).otherwise(0)
    openai = _fmt(
        '"prompt_tokens":{},"completion_tokens":{},"total_tokens":{},'
        '"prompt_tokens_details":{"cached_tokens":{}},"completion_tokens_details":{"reasoning_tokens":{}}',
        context, pl.col("output"), context + pl.col("output"), pl.when(first_turn).then(0).otherwise(cached), reasoning,
    )
    usage = pl.when(pl.col("provider") == "anthropic").then(anthropic).otherwise(openai)
    status = pl.when(pl.col("is_error")).then(pl.lit("error")).otherwise(pl.lit("success"))
    # OpenAI reports the served tier next to usage, Anthropic inside it (both: the standard tier).
    tier = pl.when(pl.col("provider") == "anthropic").then(pl.lit("")).otherwise(pl.lit(',"service_tier":"default"'))
    good_meta = _fmt('{"usage":{{}},"status":"{}"{}}', usage, status, tier)
    # Bad rows, split evenly by kind within bad_fraction.
    b = pl.col("bad") / spec.bad_fraction
    is_bad = pl.col("bad") < spec.bad_fraction
    meta = (
        pl.when(is_bad & (b < 0.25)).then(pl.lit('{"status":"success"}'))
        .when(is_bad & (b < 0.40)).then(_fmt('{"usage":{"input_tokens":-{},"output_tokens":{}}}', pl.col("input"), pl.col("output")))
        .when(is_bad & (b < 0.55)).then(_fmt('{"usage":{"prompt_tokens":"{}.5","completion_tokens":{}}}', pl.col("input"), pl.col("output")))
        .when(is_bad & (b < 0.70)).then(pl.lit('{"usage":{"input_tokens":"n/a","output_tokens":"n/a"}}'))
        .otherwise(good_meta)
    )
    prefix = f"{spec.seed % 10**8:08d}-{spec.days % 10**4:04d}-4{spec.messages_per_day % 1000:03d}-8000"
    return msgs.select(
        _uuid(prefix, pl.int_range(pl.len()) + 1).alias("id"),
        pl.when(is_bad & (b >= 0.70) & (b < 0.95)).then(None).otherwise(_uuid("00000000-0000-4000-a000", pl.col("user"))).alias("user_id"),
        _uuid(prefix.replace("-8000", "-9000"), pl.col("conv")).alias("conversation_id"),
        _uuid("00000000-0000-4000-b000", pl.col("agent")).alias("agent_id"),
        "model",
        pl.when(is_bad & (b >= 0.95)).then(None).otherwise(pl.col("created_at")).alias("created_at"),
        meta.alias("metadata"),
    )


def ensure_source_table(engine: sa.Engine, settings: Settings) -> None:
    """Create the default source table and its recommended indexes if missing."""
    with engine.begin() as conn:
        conn.execute(sa.schema.CreateSchema(settings.source_schema, if_not_exists=True))
        execute_ddl(conn, f"SET LOCAL search_path TO {quote(settings.source_schema)}")
        conn.execute(sa.text(read_sql("source_chat_messages.sql")))
        conn.execute(sa.text(read_sql("recommended_source_indexes.sql")))


def write(engine: sa.Engine, settings: Settings, frame: pl.DataFrame, chunk_rows: int = 500_000) -> int:
    """COPY generated rows into the source table (created if missing). Returns rows written."""
    ensure_source_table(engine, settings)
    table = sa.table(settings.source_table, schema=settings.source_schema)
    with engine.begin() as conn:
        target = quote_table(table)
        cols = ", ".join(quote(c) for c in frame.columns)
        with conn.connection.driver_connection.cursor() as cur:
            with cur.copy(f"COPY {target} ({cols}) FROM STDIN (FORMAT csv, HEADER false)") as cp:
                for chunk in frame.iter_slices(chunk_rows):
                    buf = io.BytesIO()
                    chunk.write_csv(buf, include_header=False)
                    cp.write(buf.getbuffer())
    return frame.height
