"""Figures for the orchestration: cost of the late-data fingerprint, of one automation tick, of
a catch-up request. Prints them; asserts nothing.

    .venv/bin/python bench/orchestration_bench.py [--days 30] [--messages-per-day 20000]

Needs a PostgreSQL server (USAGE_ETL_TEST_DATABASE_URL or 127.0.0.1:5432, user postgres); works in
a scratch database that it drops at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
import warnings
from datetime import datetime, timedelta, timezone

import psycopg
import sqlalchemy as sa

warnings.filterwarnings("ignore")


def _timed(fn, repeat: int = 3) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--messages-per-day", type=int, default=20_000)
    ap.add_argument("--lookback", type=int, default=7)
    args = ap.parse_args()

    server = sa.make_url(os.environ.get("USAGE_ETL_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
    name = f"usage_etl_bench_{uuid.uuid4().hex[:8]}"
    admin = server.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    url = server.set(database=name)
    os.environ["USAGE_ETL_DATABASE_URL"] = url.render_as_string(hide_password=False)
    try:
        _run(args, url)
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run(args, url: sa.URL) -> None:
    import dagster as dg
    import time_machine
    from dagster import instance_for_test

    def freeze_time(t):
        return time_machine.travel(t, tick=False)

    from usage_etl import migrations, sample
    from usage_etl.defs import assets
    from usage_etl.sources import fingerprint
    from usage_etl.defs import automation
    from usage_etl.defs import late_data
    from usage_etl.defs import partitions
    from usage_etl.settings import Settings
    from usage_etl.defs.resources import PostgresResource
    from usage_etl.sources.postgres import read_window

    engine = sa.create_engine(url)
    migrations.upgrade(engine, "public")
    today = datetime.now(timezone.utc).date()
    settings = Settings(database_url=url.render_as_string(hide_password=False), start_date=today - timedelta(days=args.days))
    frame = sample.generate_frame(sample.SampleSpec(users=500, days=args.days, messages_per_day=args.messages_per_day, end=today), "UTC")
    t0 = time.perf_counter()
    sample.write(engine, settings, frame)
    with engine.begin() as conn:
        conn.execute(sa.text("ANALYZE chat_messages"))
    print(f"raw rows: {frame.height:,} over {args.days} days (written in {time.perf_counter() - t0:.1f}s)")

    first = today - timedelta(days=args.lookback)
    with engine.connect() as conn:
        secs, fp = _timed(lambda: fingerprint.current_fingerprints(conn, settings, first, today))
    rows = int(fp["row_count"].sum())
    print(f"late-data fingerprint, {args.lookback}-day lookback: {secs * 1000:.0f} ms for {rows:,} rows ({rows / secs / 1e6:.1f} M rows/s)")
    with engine.begin() as conn:
        for day in fp["day"].to_list():
            fingerprint.record(conn, settings, day, fp.filter(fp["day"] == day))
    secs, changed = _timed(lambda: fingerprint.detect(engine, settings, today, args.lookback))
    print(f"late-data detect (fingerprint + compare with recorded): {secs * 1000:.0f} ms, {changed.height} changed days")
    day = datetime.combine(today - timedelta(days=1), datetime.min.time(), timezone.utc)
    secs, raw = _timed(lambda: read_window(settings, url, day, day + timedelta(days=1)))
    print(f"for comparison, reading one day of raw rows (ADBC): {secs * 1000:.0f} ms for {raw.height:,} rows")

    # One nightly evaluation over a year of partitions, all missing: the catch-up request.
    year = Settings(database_url=settings.database_url, start_date=today - timedelta(days=365))
    parts = partitions.build(year)
    built = assets.build_assets(year, auto=automation.AutomationSettings())
    nightly = automation.build_nightly_sensor(year, automation.AutomationSettings(), parts)
    defs = dg.Definitions(assets=[late_data.raw_asset(year, parts["daily"]), *built], sensors=[nightly], resources={"db": PostgresResource()})
    with instance_for_test() as inst:
        now = datetime.combine(today, datetime.min.time(), timezone.utc)
        with freeze_time(now + timedelta(minutes=30)):
            first = nightly(dg.build_sensor_context(instance=inst, definitions=defs))
        with freeze_time(now + timedelta(hours=1, minutes=5)):
            t0 = time.perf_counter()
            result = nightly(dg.build_sensor_context(instance=inst, cursor=first.cursor, definitions=defs))
            secs = time.perf_counter() - t0
        subset = result.run_requests[0].asset_graph_subset
        n = {k.path[-1]: len(subset.get_partitions_subset(k)) for k in subset.asset_keys}
        print(f"nightly evaluation, 365 missing days: {secs:.2f}s, one backfill of {n}")
    engine.dispose()


if __name__ == "__main__":
    main()
