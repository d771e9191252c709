"""Price book version on summary and grain rows (cost provenance)."""

from alembic import op

from usage_etl.migrations import read_sql

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.execute(read_sql("0002_price_book_version.sql"))
