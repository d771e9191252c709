"""`usage-etl source …`: check the source mapping, land Claude Code transcripts."""

from __future__ import annotations

import json

import click


@click.group()
def source() -> None:
    """The raw source: its mapping (USAGE_ETL_SOURCE_CONFIG) and the Claude Code landing."""


@source.command("show")
def show() -> None:
    """Print the effective source mapping as JSON (the default chat_messages one without a file)."""
    from usage_etl.cli import common

    click.echo(json.dumps(common.settings().source_config.model_dump(mode="json", by_alias=True, exclude_none=True), indent=2))


@source.command("check")
def check() -> None:
    """Check the mapping against the source table (columns, types, key paths); exit 1 on a problem."""
    from usage_etl.cli import common
    from usage_etl.sources.mapping_check import MappingError, check_source

    settings = common.settings()
    engine, _ = common.engine(settings)
    src = settings.source_config
    try:
        check_source(engine, settings)
    except MappingError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"mapping fits {src.schema_name}.{src.table}")


@source.command("ingest")
def ingest() -> None:
    """Land new Claude Code transcript lines (the claude_code_messages asset, run through Dagster)."""
    import dagster as dg

    from usage_etl.defs import runs
    from usage_etl.defs.assets import USAGE_ASSETS
    from usage_etl.defs.claude_code import ASSET_NAME
    from usage_etl.defs.resources import PostgresResource

    asset = {a.key.to_user_string(): a for a in USAGE_ASSETS}.get(ASSET_NAME)
    if asset is None:
        raise click.ClickException("the source configuration has no [claude_code] section")
    from usage_etl.cli import common

    common.engine(common.settings())  # the database answers (or one line and exit 1) before the run
    result = dg.materialize(USAGE_ASSETS, selection=[asset], instance=runs.instance(), resources={"db": PostgresResource()}, raise_on_error=False)
    if not result.success:
        raise click.ClickException(f"ingestion run {result.run_id[:8]} failed; see the Dagster UI")
    md = {k: v.value for k, v in result.asset_materializations_for_node(ASSET_NAME)[0].metadata.items()}
    click.echo(
        f"{md['lines_read']} new lines in {md['files_read']} files: {md['messages_inserted']} new messages, "
        f"{md['messages_updated']} updated, {md['streaming_duplicates']} streaming duplicates, "
        f"{md['lines_quarantined']} quarantined, skipped {md['lines_skipped']}"
    )
