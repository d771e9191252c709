"""Screenshots of the Dagster UI after `make demo`, for maintainers (not run by CI).

Starts `dagster dev` on a spare port (unless --url points at a running UI), then drives a headless
Chromium (Debian package `chromium`) through playwright-core (bench/ui_screenshots.cjs) over the
overview, asset, partitions, events, plots, checks, raw source, sensor and backfill pages, and
writes one PNG per page into --out. The "Join the Dagster community" dialog is dismissed
(the UI's own localStorage flag), so it covers no page. One-time setup and use:

    apt-get install chromium                              # or pass --chromium PATH
    npm install --prefix .usage_etl/node playwright-core  # the driver only, no browser download
    make demo
    .venv/bin/python bench/ui_screenshots.py --out .usage_etl/screenshots [--port 3117]

Uses DAGSTER_HOME (default ./.dagster) and USAGE_ETL_DATABASE_URL like `make ui`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg

HERE = Path(__file__).resolve().parent
LOCATION = "usage_etl.defs.definitions"  # the code location's name in workspace.yaml's default


def pages(backfill_id: str | None) -> dict[str, str | dict[str, str]]:
    """{file stem: UI path, or {"path", "click": button to press first}} of the pages a new user
    looks at."""
    out = {
        "overview": "/overview/activity/assets",
        "catalog": "/assets",
        "lineage": "/asset-groups/usage/lineage",
        "daily_overview": "/assets/daily_user_usage",
        "daily_partitions": "/assets/daily_user_usage?view=partitions",
        "daily_events": "/assets/daily_user_usage?view=events",
        "daily_plots": {"path": "/assets/daily_user_usage", "click": "Plots", "canvas": True},
        "daily_checks": "/assets/daily_user_usage?view=checks",
        "monthly_partitions": "/assets/monthly_user_usage?view=partitions",
        "raw_messages": "/assets/raw_messages",
        "raw_messages_partitions": "/assets/raw_messages?view=partitions",
        "raw_messages_events": "/assets/raw_messages?view=events",
        "monthly_events": "/assets/monthly_user_usage?view=events",
        "raw_messages_plots": {"path": "/assets/raw_messages", "click": "Plots", "canvas": True},
        "backfills": "/runs?tab=backfills",
        "automation": "/automation",
    }
    if backfill_id:
        out["backfill"] = f"/runs/b/{backfill_id}"
        out["backfill_runs"] = f"/runs/b/{backfill_id}?tab=runs"
    # last, once the daemon has ticked each sensor (they start with the UI): the ticks name why
    # they skipped or what they requested
    sensors = f"/locations/{LOCATION}/sensors"
    out["sensor_nightly"] = {"path": f"{sensors}/usage_etl_nightly", "wait": 45000}
    out["sensor_nightly_tick"] = {"path": f"{sensors}/usage_etl_nightly", "click": "0 runs requested", "last": True}
    out["sensor_late_data_tick"] = {"path": f"{sensors}/usage_etl_late_data", "click": "0 runs requested", "last": True}
    out["sensor_automation"] = f"{sensors}/usage_etl_automation"
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(".usage_etl/screenshots"))
    ap.add_argument("--port", type=int, default=3117)
    ap.add_argument("--url", help="a running UI (default: start dagster dev on --port)")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--node-modules", type=Path, default=Path(".usage_etl/node/node_modules"),
                    help="where `npm install --prefix .usage_etl/node playwright-core` put playwright-core")
    ap.add_argument("--log", type=Path, help="write the UI's output here (default: discarded)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster").resolve()))
    server = None
    base = args.url or f"http://127.0.0.1:{args.port}"
    if not args.url:
        dev = [str(Path(sys.executable).with_name("dagster")), "dev", "-w", "workspace.yaml", "-p", str(args.port), "-h", "127.0.0.1"]
        log = open(args.log, "wb") if args.log else subprocess.DEVNULL
        server = subprocess.Popen(dev, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                  env={**os.environ, "PYTHONWARNINGS": "ignore:Function `dev_command` is superseded"})
    try:
        wait_for(base + "/server_info", 180)
        backfills = dg.DagsterInstance.get().get_backfills(limit=1)
        env = {**os.environ, "NODE_PATH": str(args.node_modules.resolve())}
        driver = ["node", str(HERE / "ui_screenshots.cjs"), base, str(args.out.resolve()), args.chromium,
                  json.dumps(pages(backfills[0].backfill_id if backfills else None))]
        return subprocess.run(driver, env=env, check=False).returncode
    finally:
        if server:  # dagster dev stops its webserver, daemon and code server on SIGTERM ...
            server.terminate()
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:  # ... or its whole session is killed
                os.killpg(server.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
