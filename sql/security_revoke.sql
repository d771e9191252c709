-- Placeholders in braces: schema and role names quoted by SQLAlchemy (never put one in a comment: a name may hold a newline).
-- Nothing of the ETL schema for the anonymous role (Supabase's anon): no table privilege
-- and no read function, whatever default privileges gave it.
REVOKE ALL ON {schema}.user_token_usage, {schema}.user_token_usage_by_model, {schema}.user_token_usage_by_dimension,
    {schema}.user_conversation_day_usage, {schema}.user_conversation_day_dimension_usage, {schema}.usage_quarantine,
    {schema}.raw_window_fingerprint, {schema}.claude_code_messages, {schema}.claude_code_files,
    {schema}.claude_code_quarantine, {schema}.user_session_day_usage FROM {role};
REVOKE EXECUTE ON FUNCTION {schema}.usage_etl_user_usage(date, date, text, text, integer, integer),
    {schema}.usage_etl_usage_by_user(date, date, integer, integer), {schema}.usage_etl_dashboard(date, date, integer),
    {schema}.user_session_usage(date, date, text, boolean) FROM {role};
