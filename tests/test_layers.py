"""The package's import layers (pyproject's [tool.importlinter]) and the calendar they share."""

import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from usage_etl.defs import partitions
from usage_etl.settings import Settings
from usage_etl.store import Window

ROOT = Path(__file__).resolve().parent.parent


def test_layers_and_no_dagster_in_the_data_flow():
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 kept, 0 broken" in out.stdout


@pytest.mark.parametrize("tz", ["UTC", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"])
def test_window_of_a_key_is_the_dagster_partition_window(tz):
    # the checks compute windows without Dagster; they must be the partitions' own windows,
    # DST days (23 and 25 hours; Lord Howe's 30-minute shift) included
    s = Settings(timezone=tz, start_date=date(2025, 12, 29))
    defs = partitions.build(s)
    for period_type, pdef in defs.items():
        keys = pdef.get_partition_keys()[:400]
        assert keys, period_type
        for key in keys:
            assert Window.of(period_type, key, s.tz) == partitions.window(pdef, period_type, key), (period_type, key)


def test_expected_daily_keys_match_the_daily_partitions():
    from usage_etl.checks.runner import expected_daily_keys

    s = Settings(timezone="Pacific/Kiritimati", start_date=date.today() - timedelta(days=40))
    assert expected_daily_keys(s) == partitions.build(s)["daily"].get_partition_keys()
