"""Screenshots of the Dagster UI after `make demo`, for maintainers (not run by CI).

Starts `dagster dev` on a spare port (unless --url points at a running UI), drives a headless
Chromium (Debian package `chromium`) over the asset, partitions, events, checks and backfill
pages, and writes one PNG per page into --out. Usage:

    make demo
    .venv/bin/python bench/ui_screenshots.py --out .usage_etl/screenshots [--port 3117]

Uses DAGSTER_HOME (default ./.dagster) and USAGE_ETL_DATABASE_URL like `make ui`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import dagster as dg

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--hide-scrollbars", "--window-size=1400,1000", "--virtual-time-budget=20000"]


def pages(backfill_id: str | None) -> dict[str, str]:
    """{file stem: UI path} of the pages a new user looks at."""
    out = {
        "overview_assets": "/assets?view=lineage",
        "daily_overview": "/assets/daily_user_usage",
        "daily_partitions": "/assets/daily_user_usage?view=partitions",
        "daily_events": "/assets/daily_user_usage?view=events",
        "daily_plots": "/assets/daily_user_usage?view=plots",
        "daily_checks": "/assets/daily_user_usage?view=checks",
        "monthly_partitions": "/assets/monthly_user_usage?view=partitions",
        "raw_messages": "/assets/raw_messages",
        "backfills": "/runs?tab=backfills",
        "sensors": "/automation",
    }
    if backfill_id:
        out["backfill"] = f"/runs/b/{backfill_id}?tab=partitions"
    return out


def wait_for(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(1)
    raise SystemExit(f"the UI did not answer at {url} within {seconds:.0f}s")


def shoot(base: str, path: str, png: Path, chromium: str) -> bool:
    """One screenshot; False when Chromium did not finish within a minute (some pages keep polling)."""
    with tempfile.TemporaryDirectory() as profile:
        try:
            subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}", base + path],
                           check=True, capture_output=True, timeout=60)
        except subprocess.TimeoutExpired:
            return False
    return png.exists()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(".usage_etl/screenshots"))
    ap.add_argument("--port", type=int, default=3117)
    ap.add_argument("--url", help="a running UI (default: start dagster dev on --port)")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster").resolve()))
    server = None
    base = args.url or f"http://127.0.0.1:{args.port}"
    if not args.url:
        dev = [str(Path(sys.executable).with_name("dagster")), "dev", "-w", "workspace.yaml", "-p", str(args.port), "-h", "127.0.0.1"]
        server = subprocess.Popen(dev, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(base + "/server_info", 180)
        backfills = dg.DagsterInstance.get().get_backfills(limit=1)
        for stem, path in pages(backfills[0].backfill_id if backfills else None).items():
            ok = shoot(base, path, args.out / f"{stem}.png", args.chromium)
            print(f"{args.out / f'{stem}.png'}  <- {path}{'' if ok else '  (timed out, no screenshot)'}")
    finally:
        if server:
            server.terminate()
            server.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
