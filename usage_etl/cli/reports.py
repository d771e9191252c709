"""`usage-etl report usage`: ccusage-style usage reports from the summary tables (`usage_report`)."""

from __future__ import annotations

from datetime import datetime

import click

_DATE = click.DateTime(["%Y-%m-%d", "%Y%m%d"])


@click.command("usage")
@click.option("--period", type=click.Choice(["daily", "weekly", "monthly", "session"]), default="daily", show_default=True,
              help="Rows per day, week or month (stored periods), or per conversation (session).")
@click.option("--user", "user_id", default=None, help="Only this user_id [default: every user].")
@click.option("--since", type=_DATE, default=None, help="First day, YYYY-MM-DD or YYYYMMDD (business timezone) [default: unbounded].")
@click.option("--until", type=_DATE, default=None, help="Last day, inclusive [default: unbounded].")
@click.option("--breakdown", type=click.Choice(["model"]), default=None, help="Per-model figures under each row.")
@click.option("--json", "as_json", is_flag=True, help="JSON: tokens as integers, cost_usd as decimal strings.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header (one line per model with --breakdown).")
def usage(period: str, user_id: str | None, since: datetime | None, until: datetime | None, breakdown: str | None,
          as_json: bool, as_csv: bool) -> None:
    """Token usage and cost per day, week, month or session, with totals (like ccusage).

    Daily, weekly and monthly rows are the stored rows of user_token_usage (with --breakdown
    model, user_token_usage_by_model) of every period overlapping --since..--until: whole
    periods, exactly as stored. Session rows are conversation totals over the days in the range,
    from the conversation-day grain (function user_session_usage). Days, weeks and months are
    those of USAGE_ETL_TIMEZONE. Cost in USD from the price book; the table rounds to the cent,
    --json and --csv carry all six decimals.
    """
    from usage_etl import usage_report
    from usage_etl.cli import common

    if as_json and as_csv:
        raise click.UsageError("give --json or --csv, not both")
    settings = common.settings()
    engine, _ = common.engine(settings)
    try:
        report = usage_report.build(engine, settings, period, since=since.date() if since else None,
                                    until=until.date() if until else None, user_id=user_id, breakdown=breakdown)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if as_json:
        click.echo(usage_report.to_json(report))
    elif as_csv:
        click.echo(usage_report.to_csv(report), nl=False)
    elif not report.rows:
        click.echo(f"no {period} usage {since.date() if since else '…'}..{until.date() if until else '…'}"
                   f"{f' for {user_id}' if user_id else ''} in the summary tables (run `usage-etl backfill` first?)")
    else:
        click.echo(usage_report.to_table(report))
