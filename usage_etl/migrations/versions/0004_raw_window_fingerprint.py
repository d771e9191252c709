"""Raw source fingerprint per day at materialization, for late-arriving data detection."""

from alembic import op

from usage_etl.migrations import read_sql

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.execute(read_sql("0004_raw_window_fingerprint.sql"))
