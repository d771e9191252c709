"""`usage-etl db …`: the schema of the summary tables and the readers' security."""

from __future__ import annotations

import click

from usage_etl.cli import common


@click.group()
def db() -> None:
    """Database schema management."""


@db.command("upgrade")
@click.option(
    "--create-roles",
    is_flag=True,
    help="Also create the missing writer, reader and admin roles (USAGE_ETL_*_ROLE), give the writer the "
    "ETL schema's objects and SELECT on the source, and migrate as the writer. Needs a superuser; see docs/security.md.",
)
def db_upgrade(create_roles: bool = False) -> None:
    """Create or migrate the summary tables, then apply the readers' security: identity settings
    (USAGE_ETL_RLS_*) and the grants of the reader, admin and anonymous roles that exist
    (idempotent; safe on every start)."""
    from usage_etl import security
    from usage_etl.settings import SecuritySettings

    settings = common.settings()
    engine, url = common.engine(settings)
    try:
        sec = SecuritySettings.from_env()
        report = security.upgrade(engine, settings, sec, create_roles=create_roles)
    except common.ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    where = f"{url.render_as_string(hide_password=True)} schema {settings.schema}"
    if report.created_roles:
        click.echo(f"created roles {', '.join(report.created_roles)}")
    click.echo(f"applied {', '.join(report.applied)} on {where}" if report.applied else f"schema is current on {where}")
    click.echo(sec.describe())
    for note in report.notes:
        click.echo(note)
