"""`usage-etl db …`: the schema of the summary tables."""

from __future__ import annotations



import click

from usage_etl.cli import common


@click.group()
def db() -> None:
    """Database schema management."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the summary tables (idempotent; safe on every start)."""
    from usage_etl import migrations

    settings = common.settings()
    engine, url = common.engine(settings)
    applied = migrations.upgrade(engine, settings.schema)
    where = f"{url.render_as_string(hide_password=True)} schema {settings.schema}"
    click.echo(f"applied {', '.join(applied)} on {where}" if applied else f"schema is current on {where}")
