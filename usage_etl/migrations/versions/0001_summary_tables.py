"""Summary, conversation-day grain and quarantine tables."""

from alembic import op

from usage_etl.migrations import read_sql

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.execute(read_sql("0001_summary_tables.sql"))
