"""Readers' security: row-level security, identity functions and read functions (docs/security.md)."""

import sqlalchemy as sa
from alembic import op

from usage_etl.migrations import read_sql

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    conn = op.get_bind()
    # The functions keep the search_path they are created with (SET search_path FROM CURRENT): the
    # ETL schema, then pg_catalog, then pg_temp last so a temporary table cannot shadow ours. The
    # path of the rest of the migration run is restored afterwards.
    before = conn.execute(sa.text("SELECT current_setting('search_path')")).scalar_one()
    schema = conn.execute(sa.text("SELECT current_schema()")).scalar_one()
    quoted = conn.dialect.identifier_preparer.quote_schema(schema)
    conn.exec_driver_sql(f"SET LOCAL search_path TO {quoted}, pg_catalog, pg_temp")
    op.execute(read_sql("0005_row_level_security.sql"))
    conn.execute(sa.select(sa.func.set_config("search_path", before, True)))
