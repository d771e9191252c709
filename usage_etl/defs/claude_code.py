"""Dagster asset landing Claude Code JSONL transcripts (`sources.claude_code.ingest`).

Present only when the source configuration has a `[claude_code]` section; the daily usage asset
then depends on it, so one run can land new transcript lines and aggregate the days they touch.
Unpartitioned: every materialization reads what was appended since the previous one.
"""

import dagster as dg

from usage_etl.settings import Settings
from usage_etl.defs.resources import PostgresResource
from usage_etl.sources import claude_code

ASSET_NAME = claude_code.MESSAGES_TABLE


def build_claude_code_asset(settings: Settings, group: str = "usage") -> dg.AssetsDefinition | None:
    """The ingestion asset for `settings.source_config.claude_code`, or None when not configured."""
    cfg = settings.source_config.claude_code
    if cfg is None:
        return None

    @dg.asset(
        name=ASSET_NAME,
        group_name=group,
        kinds={"polars", "postgres"},
        pool="usage_etl_db",
        description=f"Claude Code transcripts under {cfg.root} landed into {settings.schema}.{claude_code.MESSAGES_TABLE} "
        "(de-duplicated streaming snapshots; read positions in claude_code_files, malformed lines in claude_code_quarantine).",
    )
    def claude_code_messages(context: dg.AssetExecutionContext, db: PostgresResource) -> dg.MaterializeResult:
        r = claude_code.ingest(db.engine, settings.schema, cfg)
        context.log.info(
            f"{r.lines} new lines in {r.files_read} files: {r.inserted} new messages, {r.updated} updated, "
            f"{r.duplicates} streaming duplicates, {r.quarantined} quarantined, skipped {r.skipped}"
        )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": r.inserted + r.updated,
                "root": r.root,
                "files_read": r.files_read,
                "lines_read": r.lines,
                "messages_inserted": r.inserted,
                "messages_updated": r.updated,
                "messages_unchanged": r.unchanged,
                "streaming_duplicates": r.duplicates,
                "lines_quarantined": r.quarantined,
                "lines_skipped": dg.MetadataValue.json(r.skipped),
                "reset_files": dg.MetadataValue.json(r.reset_files),
            }
        )

    return claude_code_messages
