"""How much the integrity checks add to a daily partition's run time. Prints figures; asserts nothing.

Needs sample data and the schema in USAGE_ETL_DATABASE_URL, e.g.:

    usage-etl db upgrade && usage-etl generate --days 30 --messages-per-day 2000
    USAGE_ETL_START_DATE=<first generated day> .venv/bin/python bench/checks_overhead.py

Two figures, each the median over the last `--partitions` daily partitions, runs interleaved:
1. work: `pipeline.run_daily` (read, normalize, price, aggregate, write) vs `check_runner.evaluate`
   of the same partition;
2. Dagster: wall time of a one-partition run of daily_user_usage without its checks vs with
   them (separate check step), on a local SQLite instance like `make demo`'s (DAGSTER_HOME is set
   to a temporary folder; `--dagster-postgres-url` for PostgreSQL storage), and the same for one
   run over all daily partitions.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--partitions", type=int, default=10, help="last N daily partitions measured")
    ap.add_argument("--repeat", type=int, default=3, help="rounds over those partitions")
    ap.add_argument("--dagster-postgres-url", help="store Dagster's runs and events in this (empty) PostgreSQL database instead of SQLite")
    args = ap.parse_args()

    home = tempfile.mkdtemp(prefix="usage_etl_bench_")
    os.environ["DAGSTER_HOME"] = home
    storage = f"storage:\n  postgres:\n    postgres_url: {args.dagster_postgres_url}\n" if args.dagster_postgres_url else ""
    Path(home, "dagster.yaml").write_text("telemetry:\n  enabled: false\n" + storage)

    import dagster as dg

    from usage_etl import check_runner, partitions, pipeline, runs
    from usage_etl.assets import PARTITIONS, SETTINGS, USAGE_ASSETS, USAGE_CHECKS
    from usage_etl.pricing import load_price_book
    from usage_etl.resources import PostgresResource, database_url, make_engine

    url = database_url(SETTINGS)
    engine = make_engine(url)
    book = load_price_book()
    keys = PARTITIONS["daily"].get_partition_keys()[-args.partitions :]
    print(f"partitions {keys[0]}…{keys[-1]} ({len(keys)}), {args.repeat} rounds; database {url.render_as_string(hide_password=True)}; "
          f"Dagster storage {'PostgreSQL' if args.dagster_postgres_url else 'SQLite'}")

    work, check = [], []
    for _ in range(args.repeat):
        for key in keys:
            w = partitions.window(PARTITIONS["daily"], "daily", key)
            work.append(_timed(lambda: pipeline.run_daily(engine, url, SETTINGS, book, w)))
            check.append(_timed(lambda: check_runner.evaluate(engine, SETTINGS, "daily", [key])))
    pw, pc = statistics.median(work), statistics.median(check)
    print(f"work:    run_daily {pw * 1000:.0f} ms, checks {pc * 1000:.0f} ms per partition (median) -> +{pc / pw:.1%}")

    inst = runs.instance()
    daily = USAGE_ASSETS[0]
    resources = {"db": PostgresResource()}
    quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}

    def run(selection, first: str, last: str) -> float:
        def go():
            r = dg.materialize([*USAGE_ASSETS, *USAGE_CHECKS], selection=selection, instance=inst, resources=resources,
                               tags={runs.RANGE_START: first, runs.RANGE_END: last}, raise_on_error=False, run_config=quiet)
            assert r.success, r.run_id

        return _timed(go)

    without = dg.AssetSelection.assets(daily).without_checks()
    with_checks = dg.AssetSelection.assets(daily)
    run(without, keys[0], keys[-1])  # warm-up: imports, engine pool, instance tables
    plain, checked = [], []
    for _ in range(args.repeat):
        for key in keys:
            plain.append(run(without, key, key))
            checked.append(run(with_checks, key, key))
    dp, dc = statistics.median(plain), statistics.median(checked)
    print(f"dagster: one-partition run {dp:.2f} s without checks, {dc:.2f} s with checks (median) -> +{(dc - dp) / dp:.1%}")
    all_keys = PARTITIONS["daily"].get_partition_keys()
    rp = statistics.median(run(without, all_keys[0], all_keys[-1]) for _ in range(args.repeat))
    rc = statistics.median(run(with_checks, all_keys[0], all_keys[-1]) for _ in range(args.repeat))
    print(f"dagster: one run over {len(all_keys)} partitions {rp:.2f} s without checks, {rc:.2f} s with checks (median) -> +{(rc - rp) / rp:.1%}")


if __name__ == "__main__":
    main()
