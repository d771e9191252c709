"""Raw source fingerprint per day at materialization, for late-arriving data detection."""

from alembic import op

from usage_etl.migrations import read_sql

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.execute(read_sql("0002_raw_window_fingerprint.sql"))
