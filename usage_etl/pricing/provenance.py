"""Which price book produced a cost, in the tables and in Dagster.

- Rows: every grain and summary row carries `price_book_version` (`PriceBook.version`); weekly and
  monthly rows carry the sorted distinct versions of their days, comma-separated
  (`aggregate.summarize`).
- Dagster code version: the daily asset's `code_version` is `code_version(book)`. When the book
  changes, Dagster compares it with the code version recorded by each partition's last
  materialization and marks those partitions stale ("has a new code version").
- Dagster data version: the daily asset reports a digest of the grain rows it wrote (costs and
  price book version included). Weekly and monthly partitions record the data versions of their
  days when they materialize, so a repriced day (or late-arriving data that changed a day) makes
  them stale ("has a new dependency data version"); an identical rerun does not. Dagster takes
  one data version per run, so the days of a single-run range share a digest of their digests:
  a change to one of them marks every week and month over the range stale (never too few).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import polars as pl

from usage_etl.pricing.book import PriceBook

CODE_VERSION_PREFIX = "price-book-"


def code_version(book: PriceBook) -> str:
    """Dagster code version of an asset whose output depends on `book`: 'price-book-<version>'."""
    return CODE_VERSION_PREFIX + book.version


def frame_digest(frame: pl.DataFrame) -> str:
    """SHA-256 (hex) of the frame's CSV text: equal frames (same rows, same order) give equal digests.

    Callers pass frames in a deterministic order (the grain is sorted by its keys).
    """
    return hashlib.sha256(frame.write_csv().encode("utf-8")).hexdigest()


def data_version(digests: Iterable[str]) -> str:
    """One data version for the partitions of a run: the digest itself for one partition, a digest
    of the digests for a range (every partition of a single-run range shares the run's version)."""
    items = list(digests)
    if len(items) == 1:
        return items[0]
    return hashlib.sha256(",".join(items).encode("ascii")).hexdigest()
