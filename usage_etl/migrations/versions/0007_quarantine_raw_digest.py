"""The raw row digest of each quarantine row, for an exact reconciliation with duplicate ids."""

from alembic import op

from usage_etl.migrations import read_sql

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.execute(read_sql("0007_quarantine_raw_digest.sql"))
