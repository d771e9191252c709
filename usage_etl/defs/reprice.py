"""Reprice history: re-materialize a date range through Dagster with the current price book and
report the cost change per month.

The days of [first, last] are re-materialized (read, priced, written), then every week and month
overlapping them is rolled up again from the grain. A month only partly inside the range keeps the
old prices for its other days; its `price_book_version` then lists both books.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import dagster as dg
import sqlalchemy as sa

from usage_etl import reports
from usage_etl.defs import runs
from usage_etl.defs.assets import build_assets
from usage_etl.settings import Settings
from usage_etl.pricing.book import PriceBook, load_price_book


@dataclass(frozen=True)
class MonthChange:
    month: date  # first day of the monthly partition
    old: reports.PeriodCost | None  # None: the month had no rows before
    new: reports.PeriodCost | None  # None: the month has no rows after

    @property
    def change_usd(self) -> Decimal:
        """new cost_usd - old cost_usd (USD); a missing side counts as 0."""
        return (self.new.cost_usd if self.new else Decimal(0)) - (self.old.cost_usd if self.old else Decimal(0))


@dataclass
class RepriceResult:
    book: PriceBook
    partitions: dict[str, list[str]] = field(default_factory=dict)  # granularity -> keys run
    runs: list[dg.ExecuteInProcessResult] = field(default_factory=list)
    months: list[MonthChange] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return all(r.success for r in self.runs)


def reprice(
    engine: sa.Engine,
    settings: Settings,
    first: date,
    last: date,
    *,
    inst: dg.DagsterInstance,
    resources: dict | None = None,
    book: PriceBook | None = None,
    on_batch: Callable[[str, list[str], dg.ExecuteInProcessResult], None] | None = None,
) -> RepriceResult:
    """Re-materialize days [first, last] (local dates), then the weeks and months over them.

    `book` defaults to `load_price_book()` (packaged book + USAGE_ETL_PRICE_BOOK). Runs are
    recorded in `inst`. Stops at the first failed run (`RepriceResult.success` is then False and
    `months` is empty). Raises PriceBookError for an invalid book.
    """
    book = load_price_book() if book is None else book
    assets = build_assets(settings, book)
    result = RepriceResult(book)
    month_keys = runs.partition_keys("monthly", first, last, settings)
    span = (date.fromisoformat(month_keys[0]), date.fromisoformat(month_keys[-1])) if month_keys else None
    before = reports.period_costs(engine, settings, "monthly", *span) if span else {}
    for g in runs.GRANULARITIES:
        keys = runs.partition_keys(g, first, last, settings)
        result.partitions[g] = keys
        if not keys:
            continue
        done = runs.materialize_range(g, keys, inst=inst, resources=resources, assets=assets, on_batch=on_batch)
        result.runs += done
        if not result.success:
            return result
    after = reports.period_costs(engine, settings, "monthly", *span) if span else {}
    result.months = [
        MonthChange(m, before.get(m), after.get(m)) for m in map(date.fromisoformat, month_keys)
    ]
    return result
