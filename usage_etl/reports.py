"""Cost reports read from the summary tables (no raw rescan).

`monthly_costs` is what `usage-etl reprice` compares before and after; `paid_vs_estimated` is
`usage-etl report paid-vs-estimated`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

import sqlalchemy as sa

from usage_etl import store
from usage_etl.settings import Settings


@dataclass(frozen=True)
class PeriodCost:
    """Totals of one period over all users (monthly rows of `user_token_usage`)."""

    period_start: date  # first day, business timezone
    cost_usd: Decimal  # USD, sum of the rows' cost_usd
    unpriced_messages: int
    users: int
    price_book_versions: tuple[str, ...]  # sorted distinct versions over the rows


def _local_midnight(d: date, settings: Settings) -> datetime:
    return datetime.combine(d, time(), tzinfo=settings.tz)


def period_costs(engine: sa.Engine, settings: Settings, period_type: str, first: date, last: date) -> dict[date, PeriodCost]:
    """Totals per `period_type` period whose period_start falls in [first, last] (local dates)."""
    lo, hi = _local_midnight(first, settings), _local_midnight(last + timedelta(days=1), settings)
    with engine.connect() as conn:
        t = store.reflect(conn, settings.schema, store.SUMMARY_TABLE)
        where = (t.c.period_type == period_type, t.c.period_start >= lo, t.c.period_start < hi)
        totals = conn.execute(
            sa.select(t.c.period_start, sa.func.sum(t.c.cost_usd), sa.func.sum(t.c.unpriced_message_count), sa.func.count())
            .where(*where)
            .group_by(t.c.period_start)
        ).all()
        # Rollup rows hold 'v1,v2' when their days were priced by different books.
        v = sa.func.unnest(sa.func.string_to_array(t.c.price_book_version, ",")).label("v")
        each = sa.select(t.c.period_start, v).where(*where).subquery()
        versions = dict(
            conn.execute(
                sa.select(each.c.period_start, sa.func.array_agg(sa.distinct(each.c.v)))
                .group_by(each.c.period_start)
            ).all()
        )
    out = {}
    for start, cost, unpriced, users in totals:
        local = start.astimezone(settings.tz).date()
        out[local] = PeriodCost(local, cost, int(unpriced), users, tuple(sorted(versions.get(start) or ())))
    return out


@dataclass(frozen=True)
class PaidVsEstimated:
    """One user's paid and estimated cost over the report's days."""

    user_id: str
    messages: int
    unpriced_messages: int  # not in estimated_usd: they make paid look too high
    estimated_usd: Decimal  # sum of cost_usd
    paid_amount: Decimal  # sum of paid_amount (messages that reported one)
    days_with_paid: int

    @property
    def difference(self) -> Decimal:
        """paid_amount - estimated_usd (positive: paid more than the price book says)."""
        return self.paid_amount - self.estimated_usd

    @property
    def ratio(self) -> Decimal | None:
        """paid_amount / estimated_usd, None when nothing was estimated."""
        return (self.paid_amount / self.estimated_usd).quantize(Decimal("0.0001")) if self.estimated_usd else None


def paid_vs_estimated(engine: sa.Engine, settings: Settings, first: date, last: date, limit: int = 20) -> list[PaidVsEstimated]:
    """Users whose paid and estimated cost diverge most over the days [first, last] (local dates).

    Reads the daily rows of `user_token_usage`; only users with a paid amount on at least one day.
    Ordered by |paid - estimated| descending, then user_id. Both sides are compared as they are
    stored: paid_amount in the source's unit (USD unless the source pays in credits).
    """
    lo, hi = _local_midnight(first, settings), _local_midnight(last + timedelta(days=1), settings)
    with engine.connect() as conn:
        t = store.reflect(conn, settings.schema, store.SUMMARY_TABLE)
        est, paid = sa.func.sum(t.c.cost_usd), sa.func.sum(t.c.paid_amount)
        rows = conn.execute(
            sa.select(
                t.c.user_id,
                sa.func.sum(t.c.message_count),
                sa.func.sum(t.c.unpriced_message_count),
                est,
                paid,
                sa.func.count(t.c.paid_amount),
            )
            .where(t.c.period_type == "daily", t.c.period_start >= lo, t.c.period_start < hi)
            .group_by(t.c.user_id)
            .having(sa.func.count(t.c.paid_amount) > 0)
            .order_by(sa.func.abs(paid - est).desc(), t.c.user_id)
            .limit(limit)
        ).all()
    return [PaidVsEstimated(u, int(m), int(un), e, p, int(d)) for u, m, un, e, p, d in rows]
