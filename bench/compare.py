"""usage_etl against the SQL a user would otherwise write, on the same PostgreSQL, in one run.

    make bench                                   # 5M messages over 30 days, plus the nightly case
    .venv/bin/python bench/compare.py --help     # sizes, scaling series, output file

For a data set of N raw messages over D days (the project's generator, `usage_etl.sample`), it measures:
- ours: daily + weekly + monthly backfill of the D days through Dagster, one run per granularity
  (`runs.materialize_range`, what `usage-etl backfill --batch-size 0` does), in a child process
  (its wall time and peak RSS), with the integrity checks (the product's default) and with the
  assets declared without them;
- seed-style SQL: per granularity one `INSERT … SELECT … GROUP BY … ON CONFLICT DO UPDATE` over the raw
  rows with `count(DISTINCT conversation_id)` (seed 003's aggregate function);
- tuned SQL: a conversation-day grain built by two sessions at once (one per half of the range), then
  each granularity from the grain;
- scan floor: one SELECT extracting every token field of every raw row, discarded on the server;
  read floor: ours' own read of each day (one snapshot, binary COPY over ADBC into Polars), discarded.
- tuned SQL in its best form: the grain as one parallel CREATE TABLE … AS SELECT (the bench records
  EXPLAIN's Gather), then each granularity from it;
- DuckDB attached to the same PostgreSQL (bench dependency group: duckdb, duckdb-ext-postgres),
  the same grain and summaries with the same rules, written back into PostgreSQL;
It checks that all of them produce identical summaries (message, error and distinct conversation
counts, every token sum, first/last activity, for every user and period), prints a table, writes
JSON, and exits 1 if they differ. `--nightly-messages` adds the nightly case: one day of that many
messages, its daily partition plus its week and month. `--sizes` adds a scaling series (ours only).

The database: USAGE_ETL_BENCH_DATABASE_URL, else database `usage_etl_bench` on the server of
USAGE_ETL_DATABASE_URL, else on 127.0.0.1:5432 if it answers, else in an embedded PostgreSQL. Each
data set lives in its own schema and is generated once; later runs reuse it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

warnings.filterwarnings("ignore")

import psycopg  # noqa: E402
import sqlalchemy as sa  # noqa: E402

HERE = Path(__file__).resolve().parent
SQL = HERE / "sql"
END = date(2026, 11, 1)  # fixed, so a data set is the same on every run and machine
GRANULARITIES = {"daily": ("day", "1 day"), "weekly": ("week", "7 days"), "monthly": ("month", "1 month")}
COMPARED = (
    "user_id, period_type, period_start, period_end, message_count, error_count, conversation_count, "
    "input_tokens, cache_creation_input_tokens, cache_read_input_tokens, output_tokens, reasoning_tokens, "
    "total_tokens, first_activity, last_activity"
)
OUR_TABLES = [
    "user_token_usage", "user_token_usage_by_model", "user_token_usage_by_dimension",
    "user_conversation_day_usage", "user_conversation_day_dimension_usage", "usage_quarantine", "raw_window_fingerprint",
]


def log(msg: str) -> None:
    print(msg, flush=True)


def server_url() -> sa.URL:
    """The benchmark database (see module doc), created if missing."""
    explicit = os.environ.get("USAGE_ETL_BENCH_DATABASE_URL")
    if explicit:
        return sa.make_url(explicit).set(drivername="postgresql+psycopg")
    if os.environ.get("USAGE_ETL_DATABASE_URL"):
        base = sa.make_url(os.environ["USAGE_ETL_DATABASE_URL"]).set(drivername="postgresql+psycopg")
    else:
        base = sa.make_url("postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
        try:
            psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", connect_timeout=2).close()
        except psycopg.OperationalError:
            from usage_etl.db import embedded_url

            base = sa.make_url(embedded_url(".usage_etl"))
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as c:
        if not c.execute("SELECT 1 FROM pg_database WHERE datname = 'usage_etl_bench'").fetchone():
            c.execute('CREATE DATABASE "usage_etl_bench"')
    return base.set(database="usage_etl_bench")


@dataclass(frozen=True)
class DataSet:
    messages: int
    days: int
    seed: int = 7

    @property
    def schema(self) -> str:
        return f"bench_{self.messages}_{self.days}d"

    @property
    def users(self) -> int:
        return max(200, self.messages // 1000)

    @property
    def first(self) -> date:
        return END - timedelta(days=self.days)

    @property
    def last(self) -> date:
        return END - timedelta(days=1)

    @property
    def spec(self) -> str:
        return f"{self.messages} messages, {self.users} users, {self.days} days to {END}, seed {self.seed}"


def ensure_data(engine: sa.Engine, ds: DataSet) -> int:
    """Generate the data set into its schema unless it is there already. Returns the raw row count.

    Generated in chunks of days (the generator holds a chunk in memory), each with its own seed."""
    from usage_etl import sample
    from usage_etl.settings import Settings

    prep = engine.dialect.identifier_preparer
    marker = sa.table("bench_dataset", sa.column("spec"), schema=ds.schema)
    with engine.begin() as conn:
        conn.execute(sa.schema.CreateSchema(ds.schema, if_not_exists=True))
        conn.execute(sa.text(f"CREATE TABLE IF NOT EXISTS {prep.format_table(marker)} (spec text)"))
        if conn.execute(sa.select(marker.c.spec)).scalar() == ds.spec:
            return conn.execute(sa.text(f"SELECT count(*) FROM {prep.quote_schema(ds.schema)}.chat_messages")).scalar_one()
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {prep.quote_schema(ds.schema)}.chat_messages"))
        conn.execute(sa.delete(marker))
    settings = Settings(source_schema=ds.schema)
    per_day = ds.messages // ds.days
    chunk = max(1, min(ds.days, 2_000_000 // max(per_day, 1)))
    t0, written = time.perf_counter(), 0
    for i, offset in enumerate(range(0, ds.days, chunk)):
        days = min(chunk, ds.days - offset)
        spec = sample.SampleSpec(ds.users, days, per_day, ds.seed + i, END - timedelta(days=ds.days - offset - days))
        written += sample.write(engine, settings, sample.generate_frame(spec))
        log(f"  generated {written:,}/{per_day * ds.days:,} raw messages into {ds.schema}.chat_messages [{time.perf_counter() - t0:.0f}s]")
    with engine.begin() as conn:
        conn.execute(sa.insert(marker).values(spec=ds.spec))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f"VACUUM ANALYZE {prep.quote_schema(ds.schema)}.chat_messages"))
    return written


def _sql(name: str, **tables: str) -> str:
    text = (SQL / name).read_text()
    for name in ("canonical", "canonical_parallel"):
        text = text.replace("({" + name + "})", "(" + (SQL / f"{name.replace('canonical', 'canonical_messages', 1) if name == 'canonical' else name}.sql").read_text() + "\n)")
    for k, v in tables.items():
        text = text.replace("{" + k + "}", v)
    return text


def _window(first: date, end: date) -> dict:
    return {"start": datetime.combine(first, datetime.min.time(), timezone.utc), "end": datetime.combine(end, datetime.min.time(), timezone.utc), "tz": "UTC"}


def _periods(first: date, last: date) -> dict[str, tuple[date, date]]:
    """[start, end) of the periods of each granularity that overlap [first, last] (UTC, ISO weeks)."""
    week0 = first - timedelta(days=first.weekday())
    week1 = last - timedelta(days=last.weekday()) + timedelta(days=7)
    month1 = (last.replace(day=1) + timedelta(days=32)).replace(day=1)
    return {"daily": (first, last + timedelta(days=1)), "weekly": (week0, week1), "monthly": (first.replace(day=1), month1)}


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


class Baselines:
    """The SQL a user would write, against one data set's schema."""

    def __init__(self, engine: sa.Engine, ds: DataSet, first: date, last: date) -> None:
        self.engine, self.ds, self.first, self.last = engine, ds, first, last
        q = engine.dialect.identifier_preparer.quote_schema(ds.schema)
        self.t = {
            "source": f"{q}.chat_messages", "seed": f"{q}.seed_usage", "tuned": f"{q}.tuned_usage", "grain": f"{q}.tuned_grain",
            "ctas": f"{q}.ctas_usage", "ctas_grain": f"{q}.ctas_grain", "duck": f"{q}.duckdb_usage",
        }
        self.periods = _periods(first, last)
        with engine.begin() as conn:
            conn.execute(sa.text(_sql("tables.sql", **self.t)))

    def _params(self, g: str) -> dict:
        # The raw rows of the backfilled days, as ours reads them: a week or month that the days
        # cover in part holds those days only (rows past the last day, e.g. conversations running
        # over midnight, are not in the range).
        unit, step = GRANULARITIES[g]
        return {**_window(self.first, self.last + timedelta(days=1)), "period_type": g, "unit": unit, "step": step}

    def seed_style(self) -> dict[str, float]:
        out = {}
        for g in GRANULARITIES:
            with self.engine.begin() as conn:
                out[g] = timed(lambda: conn.execute(sa.text(_sql("seed_style.sql", source=self.t["source"], target=self.t["seed"])), self._params(g)))
        return out

    def tuned(self) -> dict[str, float]:
        with self.engine.begin() as conn:
            conn.execute(sa.text(f"TRUNCATE {self.t['grain']}"))
        days = (self.last - self.first).days + 1
        mid = self.first + timedelta(days=(days + 1) // 2)
        halves = [(self.first, mid), (mid, self.last + timedelta(days=1))] if days > 1 else [(self.first, self.last + timedelta(days=1))]
        errors: list[BaseException] = []

        def half(a: date, b: date) -> None:
            try:
                with self.engine.begin() as conn:
                    conn.execute(sa.text(_sql("tuned_grain.sql", source=self.t["source"], grain=self.t["grain"])), _window(a, b))
            except BaseException as exc:  # re-raised below
                errors.append(exc)

        def grain() -> None:
            threads = [threading.Thread(target=half, args=h) for h in halves]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            if errors:
                raise errors[0]

        out = {"grain": timed(grain)}
        for g in GRANULARITIES:
            with self.engine.begin() as conn:
                out[g] = timed(lambda: conn.execute(sa.text(_sql("tuned_rollup.sql", target=self.t["tuned"], grain=self.t["grain"])), self._params(g)))
        return out

    def tuned_ctas(self) -> dict:
        """Tuned SQL in its best form: the grain as one parallel CREATE TABLE … AS SELECT, then
        each granularity from it. Also returns whether EXPLAIN shows a Gather (parallel workers)."""
        ctas = _sql("tuned_grain_ctas.sql", source=self.t["source"], grain=self.t["ctas_grain"])
        params = _window(self.first, self.last + timedelta(days=1))
        with self.engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {self.t['ctas_grain']}"))
            plan = "\n".join(conn.execute(sa.text("EXPLAIN " + ctas), params).scalars())
        out: dict = {"gather_in_plan": "Gather" in plan, "plan": plan}
        with self.engine.begin() as conn:
            out["grain"] = timed(lambda: conn.execute(sa.text(ctas), params))
        for g in GRANULARITIES:
            with self.engine.begin() as conn:
                sql = _sql("tuned_rollup.sql", target=self.t["ctas"], grain=self.t["ctas_grain"])
                out[g] = timed(lambda: conn.execute(sa.text(sql), self._params(g)))
        return out

    def duckdb(self, url: sa.URL) -> dict[str, float]:
        """DuckDB attached to the same PostgreSQL (postgres_scanner from the duckdb-ext-postgres
        wheel, no download at run time): the same grain and summaries with the same rules, written
        back into PostgreSQL. Seconds per step; `attach` includes loading the extension."""
        import duckdb

        ext = next(Path(duckdb_ext_dir()).rglob("postgres_scanner.duckdb_extension"))
        u = url.set(drivername="postgresql")
        # libpq reads the connection from PG* variables, so no value is rendered into ATTACH's text.
        pg_env = {"PGHOST": u.host, "PGPORT": u.port, "PGUSER": u.username, "PGPASSWORD": u.password, "PGDATABASE": u.database}
        os.environ.update({k: str(v) for k, v in pg_env.items() if v})
        target = "pg." + self.t["duck"]
        out = {}
        t0 = time.perf_counter()
        con = duckdb.connect(config={"threads": os.cpu_count() or 1, "autoinstall_known_extensions": False, "autoload_known_extensions": False})
        try:
            con.execute(f"LOAD '{ext}'")
            con.execute("ATTACH '' AS pg (TYPE postgres)")
            out["attach"] = time.perf_counter() - t0
            w = _window(self.first, self.last + timedelta(days=1))
            out["grain"] = timed(lambda: con.execute(_sql("duckdb_grain.sql", source="pg." + self.t["source"]), {"start": w["start"], "end": w["end"]}))
            for g in GRANULARITIES:
                unit, step = GRANULARITIES[g]
                out[g] = timed(lambda: con.execute(_sql("duckdb_rollup.sql", target=target), {"period_type": g, "unit": unit, "step": step}))
        finally:
            con.close()
        return out

    def scan_floor(self) -> float:
        with self.engine.connect() as conn:
            return timed(lambda: conn.execute(sa.text(_sql("scan_floor.sql", source=self.t["source"])), _window(self.first, self.last + timedelta(days=1))).all())

    def read_floor(self, url: sa.URL) -> float:
        """Ours' read of every day, as a daily partition does it (`sources.postgres.open_window`:
        one snapshot, binary COPY over ADBC into Polars), the frames discarded."""
        from usage_etl.settings import Settings
        from usage_etl.sources.postgres import open_window, shared_connections

        settings = Settings(source_schema=self.ds.schema)

        def run() -> None:
            with shared_connections():
                day = self.first
                while day <= self.last:
                    w = _window(day, day + timedelta(days=1))
                    with open_window(settings, url, w["start"], w["end"]) as snapshot:
                        for _ in snapshot.frames():  # into Polars, as a daily run does
                            pass
                    day += timedelta(days=1)

        return timed(run)

    def index_effect(self) -> dict[str, float]:
        """One day's window SELECT (ours) with the recommended created_at index and with index scans
        turned off for the session (as if the index were missing): server execution seconds each
        (EXPLAIN ANALYZE runs the whole query, projection included, and ships no rows)."""
        from usage_etl.settings import Settings
        from sqlalchemy.dialects import postgresql

        from usage_etl.sources.postgres import window_query

        day = self.first + timedelta(days=(self.last - self.first).days // 2)
        w = _window(day, day + timedelta(days=1))
        compiled = window_query(Settings(source_schema=self.ds.schema), w["start"], w["end"]).compile(dialect=postgresql.dialect())
        explain = "EXPLAIN (ANALYZE, FORMAT JSON) " + str(compiled)  # values stay bound parameters
        out = {}
        for label, off in (("with_index_s", False), ("without_index_s", True)):
            with self.engine.connect() as conn:
                if off:
                    conn.execute(sa.text("SET enable_indexscan = off; SET enable_bitmapscan = off"))
                out[label] = conn.exec_driver_sql(explain, compiled.params).scalar_one()[0]["Execution Time"] / 1000
        return out

    def differences(self, other: str) -> dict[str, int]:
        """Rows of ours (user_token_usage) missing from `other` and the reverse, per granularity."""
        ours = f"{self.engine.dialect.identifier_preparer.quote_schema(self.ds.schema)}.user_token_usage"
        out = {}
        with self.engine.connect() as conn:
            for g, (p0, p1) in self.periods.items():
                params = {**_window(p0, p1), "g": g}
                sel = f"SELECT {COMPARED} FROM {{t}} WHERE period_type = :g AND period_start >= :start AND period_start < :end"
                a = conn.execute(sa.text(f"SELECT count(*) FROM ({sel.format(t=ours)} EXCEPT ALL {sel.format(t=self.t[other])}) d"), params).scalar_one()
                b = conn.execute(sa.text(f"SELECT count(*) FROM ({sel.format(t=self.t[other])} EXCEPT ALL {sel.format(t=ours)}) d"), params).scalar_one()
                n = conn.execute(sa.text(f"SELECT count(*) FROM ({sel.format(t=ours)}) d"), params).scalar_one()
                out[g] = {"rows": n, "only_ours": a, f"only_{other}": b}
        return out


def duckdb_ext_dir() -> str:
    """Where the duckdb-ext-postgres wheel put its extension (site-packages/duckdb_ext/extensions)."""
    import importlib.util

    spec = importlib.util.find_spec("duckdb_ext")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the bench dependency group is not installed: make bench (uv sync --group bench)")
    return str(Path(list(spec.submodule_search_locations)[0]) / "extensions")


def run_ours(url: sa.URL, ds: DataSet, first: date, last: date, *, checks: bool) -> dict:
    """Ours in a child process (fresh interpreter, as a Dagster run would be): wall time, peak RSS."""
    from usage_etl import migrations

    engine = sa.create_engine(url, poolclass=sa.NullPool)
    migrations.upgrade(engine, ds.schema)
    prep = engine.dialect.identifier_preparer
    with engine.begin() as conn:  # a first load, as a backfill of new days would be
        conn.execute(sa.text("TRUNCATE " + ", ".join(f"{prep.quote_schema(ds.schema)}.{prep.quote(t)}" for t in OUR_TABLES)))
    engine.dispose()
    home = tempfile.mkdtemp(prefix="usage_etl_bench_dagster_")
    Path(home, "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        "USAGE_ETL_DATABASE_URL": url.render_as_string(hide_password=False),
        "USAGE_ETL_SCHEMA": ds.schema,
        "USAGE_ETL_SOURCE_SCHEMA": ds.schema,
        "USAGE_ETL_START_DATE": ds.first.isoformat(),
        "USAGE_ETL_DOTENV": "0",
        "DAGSTER_HOME": home,
    }
    env.pop("USAGE_ETL_SOURCE_CONFIG", None)
    args = [sys.executable, __file__, "_ours", first.isoformat(), last.isoformat(), "1" if checks else "0"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()  # type: ignore[union-attr]
    status = proc.wait()
    wall = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"ours failed (status {status}):\n{out}")
    return {"wall_s": wall, **json.loads(out.strip().splitlines()[-1])}


def _ours_child(first: str, last: str, checks: str) -> None:
    """Child process: one Dagster run per granularity over [first, last]."""
    from unittest import mock

    from usage_etl.defs import asset_checks
    from usage_etl.defs import assets
    from usage_etl.defs import runs
    from usage_etl.settings import Settings

    built = assets.USAGE_ASSETS
    if checks == "0":  # the same assets, declared without their integrity check
        with mock.patch.object(asset_checks, "check_specs", lambda *_: []):
            built = assets.build_assets(Settings.from_env())
    inst = runs.instance()
    f, l = date.fromisoformat(first), date.fromisoformat(last)
    out = {}
    for g in runs.GRANULARITIES:
        keys = runs.partition_keys(g, f, l)
        t0 = time.perf_counter()
        results = runs.materialize_range(g, keys, inst=inst, batch_size=None, assets=built)
        if not all(r.success for r in results):
            raise SystemExit(f"{g} run failed")
        out[g] = time.perf_counter() - t0
    # The peak of this process's own memory. Not ru_maxrss: Linux carries the parent's RSS at
    # fork over into the child's ru_maxrss, and the parent holds the generated data.
    hwm = re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())
    out["peak_rss_mib"] = int(hwm.group(1)) / 1024 if hwm else float("nan")
    print(json.dumps(out))


def identical(found: dict) -> bool:
    """True when no granularity of any baseline has a row that ours lacks or the reverse."""
    return all(n == 0 for by_g in found.values() for d in by_g.values() for k, n in d.items() if k.startswith("only_"))


def fmt_row(cells: list, widths: list[int]) -> str:
    return "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))


PEERS = {  # label, key of Baselines.t for the row-by-row comparison
    "seed_style": ("seed-style SQL (3 granularities)", "seed"),
    "tuned": ("tuned SQL (grain on 2 sessions + rollups)", "tuned"),
    "tuned_ctas": ("tuned SQL, parallel CTAS grain + rollups", "ctas"),
    "duckdb": ("DuckDB attached to PostgreSQL", "duck"),
}


def peer_seconds(m: dict, name: str) -> float:
    return sum(v for k, v in m[name].items() if isinstance(v, float))


def run_peers(base: Baselines, url: sa.URL, m: dict) -> None:
    log("  seed-style SQL …")
    m["seed_style"] = base.seed_style()
    log("  tuned SQL (two sessions) …")
    m["tuned"] = base.tuned()
    log("  tuned SQL (parallel CTAS) …")
    m["tuned_ctas"] = base.tuned_ctas()
    log("  DuckDB …")
    m["duckdb"] = base.duckdb(url)
    m["identical"] = {name: base.differences(key) for name, (_, key) in PEERS.items()}


def bench_main(engine: sa.Engine, url: sa.URL, ds: DataSet, report: dict) -> bool:
    rows = ensure_data(engine, ds)
    log(f"data set {ds.schema}: {rows:,} raw rows ({ds.spec})")
    base = Baselines(engine, ds, ds.first, ds.last)
    m: dict = {"raw_rows": rows}
    log("  ours (Dagster, daily+weekly+monthly, with integrity checks) …")
    m["ours"] = run_ours(url, ds, ds.first, ds.last, checks=True)
    log("  ours without integrity checks …")
    m["ours_no_checks"] = run_ours(url, ds, ds.first, ds.last, checks=False)
    run_peers(base, url, m)
    log("  scan floor, read floor …")
    m["scan_floor_s"] = base.scan_floor()
    m["read_floor_s"] = base.read_floor(url)
    m["index_effect"] = base.index_effect()
    ok = m["summaries_identical"] = identical(m["identical"])
    report["main"] = m

    peers = {name: peer_seconds(m, name) for name in PEERS}
    fastest = min((n for n in peers if n != "seed_style"), key=peers.__getitem__)
    ours, plain = m["ours"]["wall_s"], m["ours_no_checks"]["wall_s"]
    widths = [46, 10, 12, 12, 12]
    log("")
    log(f"{rows:,} raw messages over {ds.days} days, {ds.users:,} users; PostgreSQL {report['postgres']}; {os.cpu_count()} cores")
    log(fmt_row(["", "wall s", "raw rows/s", "this/ours", "peak RSS MiB"], widths))
    table = [
        ("ours: Dagster backfill, with checks", ours, m["ours"]["peak_rss_mib"]),
        ("ours: Dagster backfill, without checks", plain, m["ours_no_checks"]["peak_rss_mib"]),
        *[(label, peers[name], None) for name, (label, _) in PEERS.items()],
        ("scan floor (server-side SELECT, discarded)", m["scan_floor_s"], None),
        ("read floor (ours' window read over ADBC)", m["read_floor_s"], None),
    ]
    for label, wall, rss in table:
        log(fmt_row([label, f"{wall:.1f}", f"{rows / wall:,.0f}", f"{wall / ours:.2f}", "" if rss is None else f"{rss:,.0f}"], widths))
    for g in GRANULARITIES:
        log(f"  {g:<8} ours {m['ours'][g]:6.1f}s (no checks {m['ours_no_checks'][g]:6.1f}s)  "
            + "  ".join(f"{name} {m[name][g]:6.1f}s" for name in PEERS))
    log(f"  grain: tuned {m['tuned']['grain']:.1f}s, parallel CTAS {m['tuned_ctas']['grain']:.1f}s "
        f"(Gather in EXPLAIN: {'yes' if m['tuned_ctas']['gather_in_plan'] else 'NO'}), DuckDB {m['duckdb']['grain']:.1f}s")
    log(f"  one day's read: {m['index_effect']['with_index_s']:.2f}s with the created_at index "
        f"(sql/recommended_source_indexes.sql), {m['index_effect']['without_index_s']:.2f}s without")
    r = m["ratios"] = {
        "fastest_peer": fastest,
        "seed_style_over_ours": peers["seed_style"] / ours,
        "fastest_peer_over_ours": peers[fastest] / ours,
        "fastest_peer_over_ours_no_checks": peers[fastest] / plain,
        "ours_over_read_floor": ours / m["read_floor_s"],
        "ours_no_checks_over_read_floor": plain / m["read_floor_s"],
        "ours_over_scan_floor": ours / m["scan_floor_s"],
    }
    log(f"targets: with checks vs seed-style {r['seed_style_over_ours']:.2f}x (>= 5), vs fastest peer ({fastest}) "
        f"{r['fastest_peer_over_ours']:.2f}x (>= 1.5); without checks vs {fastest} {r['fastest_peer_over_ours_no_checks']:.2f}x (>= 2); "
        f"ours / read floor {r['ours_over_read_floor']:.2f} (<= 1.5; without checks {r['ours_no_checks_over_read_floor']:.2f})")
    log("summaries identical (ours = every peer, every user and period): " + ("yes" if ok else f"NO {m['identical']}"))
    return ok


def bench_nightly(engine: sa.Engine, url: sa.URL, n: int, report: dict) -> bool:
    ds = DataSet(n, 1, seed=11)
    rows = ensure_data(engine, ds)
    log(f"nightly: {rows:,} raw messages in one day ({ds.schema}), its daily partition, week and month")
    base = Baselines(engine, ds, ds.first, ds.last)
    m: dict = {"raw_rows": rows, "ours": run_ours(url, ds, ds.first, ds.last, checks=True)}
    run_peers(base, url, m)
    ok = m["summaries_identical"] = identical(m["identical"])
    report["nightly"] = m
    peers = {name: peer_seconds(m, name) for name in PEERS}
    ours = m["ours"]["wall_s"]
    m["faster_than_every_peer"] = all(ours < v for v in peers.values())
    log(f"  ours {ours:.1f}s, peak RSS {m['ours']['peak_rss_mib']:,.0f} MiB (target <= 1024); "
        + "; ".join(f"{name} {v:.1f}s" for name, v in peers.items())
        + f"; faster than every peer: {'yes' if m['faster_than_every_peer'] else 'NO'}; identical: {'yes' if ok else 'NO'}")
    return ok


def bench_scaling(engine: sa.Engine, url: sa.URL, sizes: list[int], days: int, report: dict) -> None:
    series = []
    for n in sizes:
        ds = DataSet(n, days)
        rows = ensure_data(engine, ds)
        r = run_ours(url, ds, ds.first, ds.last, checks=True)
        series.append({"raw_rows": rows, "wall_s": r["wall_s"], "rows_per_s": rows / r["wall_s"], "peak_rss_mib": r["peak_rss_mib"]})
        log(f"  scaling: {rows:>11,} rows  {r['wall_s']:7.1f}s  {rows / r['wall_s']:>9,.0f} rows/s  peak RSS {r['peak_rss_mib']:,.0f} MiB")
    report["scaling"] = series


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_ours":
        _ours_child(*sys.argv[2:5])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=5_000_000, help="raw messages of the main data set; 0 skips it (default 5,000,000)")
    ap.add_argument("--days", type=int, default=30, help="days they span (default 30)")
    ap.add_argument("--nightly-messages", type=int, default=1_000_000, help="messages of the nightly case's day; 0 skips it (default 1,000,000)")
    ap.add_argument("--sizes", default="", help="comma-separated message counts for a scaling series of ours, e.g. 1000000,5000000,10000000")
    ap.add_argument("--out", default="bench_results/bench.json", help="JSON report (default bench_results/bench.json)")
    a = ap.parse_args()
    os.environ.setdefault("USAGE_ETL_DOTENV", "0")
    url = server_url()
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.connect() as conn:
        version = conn.execute(sa.text("SHOW server_version")).scalar_one()
    report: dict = {"postgres": version, "cpus": os.cpu_count(), "python": platform.python_version(), "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    ok = bench_main(engine, url, DataSet(a.messages, a.days), report) if a.messages else True
    if a.nightly_messages:
        ok = bench_nightly(engine, url, a.nightly_messages, report) and ok
    if a.sizes:
        bench_scaling(engine, url, [int(x) for x in re.split(r"[,\s]+", a.sizes.strip()) if x], a.days, report)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=2, default=str))
    log(f"report written to {a.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
