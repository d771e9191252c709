"""Breakdown-dimension summary and grain tables; Claude Code JSONL landing tables."""

from alembic import op

from usage_etl.migrations import read_sql

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.execute(read_sql("0003_breakdowns_claude_code.sql"))
