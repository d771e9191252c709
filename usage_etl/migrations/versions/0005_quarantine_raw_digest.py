"""The raw row digest of each quarantine row, for an exact reconciliation with duplicate ids."""

from alembic import op

from usage_etl.migrations import read_sql

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.execute(read_sql("0005_quarantine_raw_digest.sql"))
