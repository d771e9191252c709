"""The `usage-etl` command. `usage-etl --help` and `usage-etl COMMAND --help` document each one."""

from __future__ import annotations

import warnings

import click


# backfill_policy is a beta Dagster parameter used on purpose; keep the terminal readable.
warnings.filterwarnings("ignore", message=".*is currently in beta.*")
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Per-user LLM token usage and cost for every day, week and month, in PostgreSQL.

    Configuration comes from environment variables (and ./.env): USAGE_ETL_DATABASE_URL,
    USAGE_ETL_SCHEMA, USAGE_ETL_SOURCE_SCHEMA, USAGE_ETL_SOURCE_TABLE, USAGE_ETL_SOURCE_CONFIG,
    USAGE_ETL_TIMEZONE, USAGE_ETL_START_DATE. See README.md.
    """


def _register() -> None:
    # One module per command family; imported here only, so no command module imports another's group.
    from usage_etl.cli.costs import report, reprice
    from usage_etl.cli.data import demo, generate
    from usage_etl.cli.db import db
    from usage_etl.cli.prices import prices
    from usage_etl.cli.reports import usage
    from usage_etl.cli.runs import backfill, check
    from usage_etl.cli.source import source
    from usage_etl.cli.summary import summary

    for command in (db, generate, backfill, check, summary, demo, prices, reprice, report, source):
        main.add_command(command)
    report.add_command(usage)


_register()

if __name__ == "__main__":
    main()
