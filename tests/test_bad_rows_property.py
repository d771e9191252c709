"""Property: whatever the raw rows hold, a daily partition succeeds, reconciles with raw, accounts
for every row (raw = aggregated + quarantined), and stores every value exactly; and the same at
scale, with tens of thousands of adversarial rows over ten days."""

import itertools
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from tests.bad_rows import BOOK, DAY, configure, insert, run, source_table
from usage_etl import aggregate, pipeline
from usage_etl.checks import runner
from usage_etl.normalize import normalize
from usage_etl.pricing.book import price_messages
from usage_etl.sources.postgres import read_window

START, END = datetime(2026, 3, 10, tzinfo=timezone.utc), datetime(2026, 3, 11, tzinfo=timezone.utc)
TOKEN_KEYS = ["input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "prompt_tokens", "completion_tokens"]
DETAILS = {"prompt_tokens_details": "cached_tokens", "completion_tokens_details": "reasoning_tokens",
           "input_tokens_details": "cached_tokens", "output_tokens_details": "reasoning_tokens", "cache_creation": "ephemeral_1h_input_tokens"}

# Text PostgreSQL can hold: no NUL, no lone surrogate.
text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
scalars = st.none() | st.booleans() | st.integers(-(10**25), 10**25) | st.floats(allow_nan=False, allow_infinity=False) | text
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3), max_leaves=5)



def mostly(often: st.SearchStrategy, *rarely: st.SearchStrategy, share: int = 80) -> st.SearchStrategy:
    """`often` `share`% of the time, else one of `rarely` (one_of would drop repeated branches)."""
    return st.integers(0, 99).flatmap(lambda i: often if i < share else st.one_of(*rarely))


# Mostly plausible rows (so that a bad value is often the only thing wrong with its row), then anything.
small = st.integers(0, 500)
token = mostly(small, st.integers(-3, 2 * 10**9), st.sampled_from(["12", " 7 ", "12.0", "١٢", "１２", "12.5", "1e3", "", "-0", "+5"]), json_values, share=85)
optional = {**{k: token for k in TOKEN_KEYS}, **{k: st.fixed_dictionaries({}, optional={v: token}) for k, v in DETAILS.items()}}


def _with(*required: str) -> st.SearchStrategy:
    return st.fixed_dictionaries({k: token for k in required}, optional={k: v for k, v in optional.items() if k not in required})


anthropic, openai = _with("input_tokens", "output_tokens"), _with("prompt_tokens", "completion_tokens")
usage = mostly(st.one_of(anthropic, openai), st.fixed_dictionaries({}, optional=optional), json_values, share=85)
valid_key = st.sampled_from(["alice", " bob ", "carol"])
key_text = mostly(valid_key, st.none(), st.sampled_from(["", "  ", "\\N", 'q"\\', "x" * 600]), text)
label = mostly(st.sampled_from(["c1", "\\N", 'q"\\', "NULL", "😀", "a,b", "{x}", " pad "]), key_text, share=70)  # conversation, agent, model
in_window = st.datetimes(datetime(2026, 3, 10), datetime(2026, 3, 10, 23, 59, 59), timezones=st.just(timezone.utc))
when = mostly(in_window, st.none(), st.datetimes(datetime(2026, 3, 9, 20), datetime(2026, 3, 11, 4), timezones=st.just(timezone.utc)))
metadata = st.fixed_dictionaries({"usage": usage}, optional={"status": json_values, "amount_paid": st.one_of(small, json_values), "team": json_values})
raw_row = st.fixed_dictionaries({
    "id": st.none() | st.sampled_from(["d1", "d2", "d3"]) | text,
    "user_id": key_text,
    "conversation_id": label,
    "agent_id": label,
    "model": mostly(st.sampled_from(["claude-sonnet-4-20250514", "gpt-4o", "claude-opus-4-1"]), label, share=50),
    "created_at": when,
    "metadata": mostly(metadata, st.none(), json_values, share=90),
})

GRAIN_COLS = ["user_id", "conversation_id", "agent_id", "model", *aggregate.TOKEN_SUMS, "message_count", "error_count", "unpriced_message_count", "cost_pico_usd", "paid_micro"]


def _stored_grain(engine) -> list[tuple]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT {', '.join(GRAIN_COLS)} FROM user_conversation_day_usage WHERE day = :d"), {"d": START.date()}).all()
    return sorted((tuple(r) for r in rows), key=repr)


def _in_window(engine, cfg) -> int:
    t = source_table(cfg.source_config.schema_name, cfg.source_config.table)
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(t).where(t.c.created_at >= START, t.c.created_at < END)).scalar_one()


@hsettings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(rows=st.lists(raw_row, max_size=12))
def test_any_raw_rows_reconcile_and_round_trip(engine, db_url, settings, rows):
    cfg = configure(settings, engine)
    with engine.begin() as conn:
        conn.execute(sa.delete(source_table()))
    insert(engine, cfg, rows) if rows else None
    r = run(engine, db_url, cfg)  # audit on: raises unless reconciles_with_raw and keys_and_values pass
    assert r.published
    assert r.raw_rows == _in_window(engine, cfg) == r.messages + r.rejected_rows
    with engine.connect() as conn:
        stored_rejected = conn.execute(sa.text("SELECT count(*) FROM usage_quarantine WHERE partition_key = :k"), {"k": DAY}).scalar_one()
    assert stored_rejected == r.rejected_rows
    # Exact round trip: the grain read back equals the grain computed in memory from the same read.
    norm = normalize(read_window(cfg, db_url, START, END))
    priced = aggregate.user_day_bounds(price_messages(norm.messages.lazy(), BOOK), "UTC").filter(aggregate.pl.col("bound_reason").is_null())
    grain = aggregate.conversation_day_grain(priced, "UTC", BOOK.version).collect()
    assert _stored_grain(engine) == sorted(grain.select(GRAIN_COLS).rows(), key=repr)
    assert sum(row[GRAIN_COLS.index("message_count")] for row in _stored_grain(engine)) == r.messages
    trimmed = {(x["user_id"] or "").strip(" \t\n\r\x0b\x0c") for x in rows}
    assert {row[0] for row in _stored_grain(engine)} <= trimmed


def _adversarial(day: datetime, n: int, ids: itertools.count) -> list[dict]:
    """`n` rows of `day`: every third ordinary, the others cycling through the bad-row classes."""
    odd = ["\\N", '"', "\\", 'a"b\\c', "😀", "x" * 3000, "", "  ", "NULL", "{a,b}", "line\nbreak"]
    tokens = [12.5, "١٢٣", "１２", True, [1], {"n": 1}, -4, 10**12, "1e3", None, "abc"]
    paid = [1e20, 1e306, "1e400", -1, "abc", 0.5]
    out = []
    for i in range(n):
        at = day + timedelta(seconds=(i * 37) % 86_400)
        k = i % 11
        base = {"id": f"r{next(ids)}", "user_id": f"user{i % 50}", "conversation_id": f"c{i % 7}", "agent_id": f"a{i % 3}",
                "model": "claude-sonnet-4-20250514", "created_at": at, "metadata": {"usage": {"input_tokens": i % 100, "output_tokens": i % 13}}}
        if i % 3 == 0:
            out.append(base)
            continue
        m = base["metadata"]
        match i % 6:
            case 1:
                base.update(user_id=odd[k], conversation_id=odd[(k + 1) % 11], agent_id=odd[(k + 2) % 11], model=odd[(k + 3) % 11] or None)
                m["team"] = odd[(k + 4) % 11]
            case 2:
                m["usage"] = {"input_tokens": tokens[k], "output_tokens": 1}
            case 4:
                m["amount_paid"] = paid[i % len(paid)]
            case 5:
                if k < 3:
                    base["metadata"] = None if k == 0 else {"status": "error"}
                elif k < 6:
                    base["id"] = f"dup{i // 12}"  # duplicate ids, some of them bad
                    m["usage"] = {"input_tokens": -1 if k == 4 else 5, "output_tokens": 1}
                else:
                    m["usage"] = {"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 20 if k == 7 else 2}}
        out.append(base)
    return out


def test_tens_of_thousands_of_adversarial_rows(engine, db_url, settings):
    cfg = configure(settings, engine)
    ids = itertools.count()
    days = [datetime(2026, 3, 2 + d, tzinfo=timezone.utc) for d in range(10)]
    rows = [r for d in days for r in _adversarial(d, 2_400, ids)] + [{**_adversarial(days[0], 1, ids)[0], "created_at": None}]
    for chunk in range(0, len(rows), 5_000):
        insert(engine, cfg, rows[chunk:chunk + 5_000])
    results = [run(engine, db_url, cfg, key=d.date().isoformat()) for d in days]  # each raises if its audit fails
    assert all(r.published for r in results)
    assert sum(r.raw_rows for r in results) == 24_000 == sum(r.messages + r.rejected_rows for r in results)
    assert all(r.rejected_rows > 0 and r.messages > 0 for r in results)
    for period_type, key in (("weekly", "2026-03-02"), ("weekly", "2026-03-09"), ("monthly", "2026-03-01")):
        assert run(engine, db_url, cfg, period_type, key).published
    assert pipeline.quarantine_unpartitioned(engine, db_url, cfg) == 1
    for period_type, keys in (("daily", [d.date().isoformat() for d in days]), ("weekly", ["2026-03-02", "2026-03-09"]), ("monthly", ["2026-03-01"])):
        failed = runner.failed_errors({period_type: runner.evaluate(engine, cfg, period_type, keys)})
        assert failed == []
