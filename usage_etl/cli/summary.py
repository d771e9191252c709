"""`usage-etl summary`: totals per period from the summary table."""

from __future__ import annotations



import click

from usage_etl.cli import common


@click.command()
@click.option("--period-type", type=click.Choice(["daily", "weekly", "monthly"]), default=None, help="Only this period type.")
@click.option("--limit", type=click.IntRange(min=1), default=10, show_default=True, help="Periods to show per type (most recent).")
def summary(period_type: str | None, limit: int) -> None:
    """Print totals per period from the summary table."""
    import sqlalchemy as sa

    from usage_etl import store

    settings = common.settings()
    engine, _ = common.engine(settings)
    with engine.connect() as conn:
        t = store.reflect(conn, settings.schema, store.SUMMARY_TABLE)
        q = store.reflect(conn, settings.schema, store.QUARANTINE_TABLE)
        types = [period_type] if period_type else ["daily", "weekly", "monthly"]
        click.echo(f"{'period':<8} {'start':<11} {'users':>6} {'messages':>9} {'convs':>7} {'total_tokens':>14} {'cost_usd':>12} {'unpriced':>8}")
        for pt in types:
            rows = conn.execute(
                sa.select(
                    t.c.period_start,
                    sa.func.count(),
                    sa.func.sum(t.c.message_count),
                    sa.func.sum(t.c.conversation_count),
                    sa.func.sum(t.c.total_tokens),
                    sa.func.sum(t.c.cost_usd),
                    sa.func.sum(t.c.unpriced_message_count),
                )
                .where(t.c.period_type == pt)
                .group_by(t.c.period_start)
                .order_by(t.c.period_start.desc())
                .limit(limit)
            ).all()
            for start_, users, msgs, convs, tokens, cost, unpriced in reversed(rows):
                click.echo(f"{pt:<8} {start_.date()!s:<11} {users:>6} {msgs:>9} {convs:>7} {tokens:>14,} {cost:>12,.2f} {unpriced:>8}")
        rejected = conn.execute(sa.select(q.c.reason, sa.func.count()).group_by(q.c.reason).order_by(q.c.reason)).all()
        if rejected:
            click.echo("quarantined rows: " + ", ".join(f"{r} {n}" for r, n in rejected))
