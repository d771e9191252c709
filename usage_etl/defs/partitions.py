"""Time partitions of the usage assets, in the configured business timezone.

Daily partitions end with the last complete day. Weekly (ISO, Monday start) and monthly partitions
include the period in progress (end_offset=1), so the current week and month show usage up to
yesterday; they are rematerialized once more after they close.
"""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg

from usage_etl.settings import Settings
from usage_etl.store import Window


def week_start(d: date) -> date:
    return d - timedelta(days=d.weekday())


def build(settings: Settings) -> dict[str, dg.TimeWindowPartitionsDefinition]:
    start, tz = settings.start_date, settings.timezone
    return {
        "daily": dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone=tz),
        "weekly": dg.WeeklyPartitionsDefinition(
            start_date=week_start(start).isoformat(), timezone=tz, day_offset=1, end_offset=1
        ),
        "monthly": dg.MonthlyPartitionsDefinition(
            start_date=start.replace(day=1).isoformat(), timezone=tz, end_offset=1
        ),
    }


def window(partitions_def: dg.TimeWindowPartitionsDefinition, period_type: str, key: str) -> Window:
    """The [start, end) window of one partition key, tz-aware in the business timezone."""
    tw = partitions_def.time_window_for_partition_key(key)
    return Window(period_type, tw.start, tw.end, key)
