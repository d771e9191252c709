# Alembic environment: runs on the caller's connection (see migrations.upgrade), inside its
# transaction, with search_path set so the sql/ files can use unqualified names.
import sqlalchemy as sa
from alembic import context

connection = context.config.attributes["connection"]
schema = context.config.attributes["schema"]
quoted = connection.dialect.identifier_preparer.quote_schema(schema)
connection.execute(sa.text(f"SET LOCAL search_path TO {quoted}, public".replace(":", "\\:")))  # a ":" in the name is no bind parameter
context.configure(
    connection=connection,
    version_table="usage_etl_alembic_version",
    version_table_schema=schema,
    transactional_ddl=True,
)
context.run_migrations()
