"""How much the integrity checks add to a daily partition's run time. Prints figures; asserts nothing.

Needs the schema and sample data in USAGE_ETL_DATABASE_URL, with the start date at the first
generated day, e.g. (demo size: 30 days x 2000 messages):

    usage-etl db upgrade && usage-etl generate --days 30 --messages-per-day 2000
    USAGE_ETL_START_DATE=$(date -u -d '30 days ago' +%F) .venv/bin/python bench/checks_overhead.py

Figures (paired runs back to back, so that load from other processes hits both alike):
1. work: `pipeline.run_daily` (read, normalize, price, aggregate, write) vs `check_runner.evaluate`
   of the same partition, outside Dagster;
2. Dagster, one partition per run: wall time of materializing daily_user_usage built without its
   check vs with it (`dg.materialize`, in process), on a fresh local SQLite instance like
   `make demo`'s, or PostgreSQL storage with `--dagster-postgres-url`;
3. Dagster, all daily partitions in one run (what `usage-etl backfill` and `make demo` do).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from unittest import mock

warnings.filterwarnings("ignore")


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _line(label: str, plain: list[float], checked: list[float], unit: str = "s") -> str:
    """Medians, and the median of the pairwise ratios: each pair ran back to back, so load from
    other processes on a shared machine affects both of its runs alike."""
    scale, digits = (1000, 0) if unit == "ms" else (1, 2)
    ratios = sorted(c / p - 1 for p, c in zip(plain, checked, strict=True))
    return (
        f"{label}: {statistics.median(plain) * scale:.{digits}f} {unit} without checks, "
        f"{statistics.median(checked) * scale:.{digits}f} {unit} with -> +{statistics.median(ratios):.1%} "
        f"(median of {len(ratios)} paired runs; quartiles {statistics.quantiles(ratios, n=4)[0]:+.1%} … {statistics.quantiles(ratios, n=4)[2]:+.1%})"
        if len(ratios) > 1 else f"{label}: +{ratios[0]:.1%}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--partitions", type=int, default=10, help="last N daily partitions, one run each")
    ap.add_argument("--repeat", type=int, default=2, help="rounds over the one-partition runs")
    ap.add_argument("--range-runs", type=int, default=4, help="pairs of runs over all partitions")
    ap.add_argument("--dagster-postgres-url", help="Dagster storage in this (empty) PostgreSQL database, e.g. postgresql+psycopg2://…")
    args = ap.parse_args()

    home = tempfile.mkdtemp(prefix="usage_etl_bench_")
    os.environ["DAGSTER_HOME"] = home
    storage = f"storage:\n  postgres:\n    postgres_url: {args.dagster_postgres_url}\n" if args.dagster_postgres_url else ""
    Path(home, "dagster.yaml").write_text("telemetry:\n  enabled: false\n" + storage)

    import dagster as dg

    from usage_etl import pipeline
    from usage_etl.defs import asset_checks
    from usage_etl.defs import assets
    from usage_etl.checks import runner as check_runner
    from usage_etl.defs import partitions
    from usage_etl.defs import runs
    from usage_etl.pricing.book import load_price_book
    from usage_etl.db import database_url, make_engine
    from usage_etl.defs.resources import PostgresResource

    settings, pdef = assets.SETTINGS, assets.PARTITIONS["daily"]
    url = database_url(settings)
    engine = make_engine(url)
    book = load_price_book()
    all_keys = pdef.get_partition_keys()
    keys = all_keys[-args.partitions :]
    print(f"{len(all_keys)} daily partitions, measured {keys[0]}…{keys[-1]} x {args.repeat}; "
          f"Dagster storage {'PostgreSQL' if args.dagster_postgres_url else 'SQLite'}")

    work, check = [], []
    for _ in range(args.repeat):
        for key in keys:
            w = partitions.window(pdef, "daily", key)
            work.append(_timed(lambda: pipeline.run_daily(engine, url, settings, book, w, audit=None)))
            check.append(_timed(lambda: check_runner.evaluate(engine, settings, "daily", [key])))
    print(_line("work, one partition", work, [a + b for a, b in zip(work, check, strict=True)], "ms"))

    with_checks = assets.build_assets(settings)[0]
    with mock.patch.object(asset_checks, "check_specs", lambda *_: []):
        without = assets.build_assets(settings)[0]
    inst = runs.instance()
    resources = {"db": PostgresResource()}
    quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}

    def run(asset: dg.AssetsDefinition, first: str, last: str) -> float:
        def go() -> None:
            r = dg.materialize([asset], instance=inst, resources=resources, tags={runs.RANGE_START: first, runs.RANGE_END: last},
                               raise_on_error=False, run_config=quiet)
            assert r.success, f"run {r.run_id} failed"

        return _timed(go)

    run(without, keys[0], keys[0])  # warm-up: imports, pools, instance tables
    run(with_checks, keys[0], keys[0])

    def pair(first: str, last: str, checked_first: bool) -> tuple[float, float]:
        if checked_first:
            c = run(with_checks, first, last)
            return run(without, first, last), c
        p = run(without, first, last)
        return p, run(with_checks, first, last)

    def split(pairs: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
        return [p for p, _ in pairs], [c for _, c in pairs]

    print(_line("Dagster, one partition per run", *split([pair(k, k, j % 2 == 1) for j, k in enumerate(keys * args.repeat)])))
    whole = [pair(all_keys[0], all_keys[-1], j % 2 == 1) for j in range(args.range_runs)]
    print(_line(f"Dagster, {len(all_keys)} partitions in one run", *split(whole)))


if __name__ == "__main__":
    main()
