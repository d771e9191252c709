-- Placeholders in braces: schema and role names quoted by SQLAlchemy (never put one in a comment: a name may hold a newline).
-- Read access of one dashboard role (the reader or the admin role), applied by `usage-etl db
-- upgrade` in the ETL schema: exactly SELECT on the user-facing tables (row-level security decides
-- which rows) and EXECUTE on the read functions; nothing on the internal tables. Revoking first
-- removes whatever else the role held there (Supabase, for one, grants ALL on new tables to
-- authenticated and anon by default).
REVOKE ALL ON {schema}.user_token_usage, {schema}.user_token_usage_by_model, {schema}.user_token_usage_by_dimension,
    {schema}.user_conversation_day_usage, {schema}.user_conversation_day_dimension_usage, {schema}.usage_quarantine,
    {schema}.raw_window_fingerprint, {schema}.claude_code_messages, {schema}.claude_code_files,
    {schema}.claude_code_quarantine, {schema}.user_session_day_usage FROM {role};
GRANT SELECT ON {schema}.user_token_usage, {schema}.user_token_usage_by_model, {schema}.user_token_usage_by_dimension,
    {schema}.user_session_day_usage TO {role};
GRANT EXECUTE ON FUNCTION {schema}.usage_etl_user_usage(date, date, text, text, integer, integer),
    {schema}.usage_etl_usage_by_user(date, date, integer, integer), {schema}.usage_etl_dashboard(date, date, integer),
    {schema}.user_session_usage(date, date, text, boolean) TO {role};
