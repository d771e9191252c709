# Alembic environment: runs on the caller's connection (see migrations.upgrade), inside its
# transaction, with search_path set so the sql/ files can use unqualified names.
from alembic import context

from usage_etl.db import execute_ddl, quote

connection = context.config.attributes["connection"]
schema = context.config.attributes["schema"]
execute_ddl(connection, f"SET LOCAL search_path TO {quote(schema)}, public")  # "%" or ":" in the name: sent as it is
context.configure(
    connection=connection,
    version_table="usage_etl_alembic_version",
    version_table_schema=schema,
    transactional_ddl=True,
)
context.run_migrations()
