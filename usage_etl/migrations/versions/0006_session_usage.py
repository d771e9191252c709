"""Per-conversation (session) usage read function over the conversation-day grain."""

from alembic import op

from usage_etl.migrations import read_sql

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.execute(read_sql("0006_session_usage.sql"))
