# Alembic environment: runs on the caller's connection (see migrations.upgrade), inside its
# transaction, with search_path set so the sql/ files can use unqualified names.
from alembic import context

connection = context.config.attributes["connection"]
schema = context.config.attributes["schema"]
quoted = connection.dialect.identifier_preparer.quote_schema(schema)
# exec_driver_sql: the dialect doubles % in quoted names for the driver, which text() would not undo.
connection.exec_driver_sql(f"SET LOCAL search_path TO {quoted}, public")
context.configure(
    connection=connection,
    version_table="usage_etl_alembic_version",
    version_table_schema=schema,
    transactional_ddl=True,
)
context.run_migrations()
