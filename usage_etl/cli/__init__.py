"""The `usage-etl` command. `usage-etl --help` and `usage-etl COMMAND --help` document each one."""

from __future__ import annotations

import warnings

import click


# backfill_policy is a beta Dagster parameter used on purpose; keep the terminal readable.
warnings.filterwarnings("ignore", message=".*is currently in beta.*")
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")


class _Main(click.Group):
    """The root group: known errors become one line (`Error: ...`, exit status 1) unless
    --debug; SIGTERM stops the command like Ctrl-C."""

    def invoke(self, ctx: click.Context):
        import signal
        import threading
        import traceback

        debug = bool(ctx.params.get("debug"))
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # -> KeyboardInterrupt
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            if debug and exc.__cause__ is not None:
                traceback.print_exception(exc.__cause__)
            raise
        except Exception as exc:
            line = _one_line(exc, ctx)
            if line is None or debug:
                raise
            raise click.ClickException(line) from exc
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


def _one_line(exc: Exception, ctx: click.Context) -> str | None:
    """The one-line message of a known error (configuration, price book, source mapping,
    database); None for anything else (a bug: its traceback is shown)."""
    import sqlalchemy as sa

    from usage_etl.cli import common
    from usage_etl.pricing.book import PriceBookError
    from usage_etl.settings import ConfigError
    from usage_etl.source_config import SourceConfigError

    if isinstance(exc, (ConfigError, PriceBookError, SourceConfigError)):
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, sa.exc.NoSuchTableError):
        return f"table {exc} does not exist: run `usage-etl db upgrade`"
    if isinstance(exc, common.sa_errors()):
        url, timeout = ctx.meta.get(common.URL_KEY) or (None, 10)
        if url is None:
            return None
        return common.describe_db_error(exc, url, timeout)
    return None


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show the full traceback of an error instead of its one-line message.")
def main(debug: bool) -> None:
    """Per-user LLM token usage and cost for every day, week and month, in PostgreSQL.

    Configuration comes from environment variables (and ./.env): USAGE_ETL_DATABASE_URL,
    USAGE_ETL_SCHEMA, USAGE_ETL_SOURCE_SCHEMA, USAGE_ETL_SOURCE_TABLE, USAGE_ETL_SOURCE_CONFIG,
    USAGE_ETL_TIMEZONE, USAGE_ETL_START_DATE, USAGE_ETL_CONNECT_TIMEOUT_SECONDS,
    USAGE_ETL_CONNECT_RETRIES. See README.md.

    A known error (configuration, price book, source mapping, database) prints one line and exits
    with status 1; a usage error exits with status 2.
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
