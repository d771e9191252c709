-- Summary tables of the SQL and DuckDB baselines (the measures compared with usage_etl's) and the tuned
-- grains. {seed}, {tuned}, {grain}, {ctas}, {ctas_grain}, {duck}: quoted tables.
DROP TABLE IF EXISTS {seed}, {tuned}, {grain}, {ctas}, {ctas_grain}, {duck};
CREATE TABLE {seed} (
    user_id text, period_type text, period_start timestamptz, period_end timestamptz,
    message_count bigint, error_count bigint, conversation_count bigint,
    input_tokens bigint, cache_creation_input_tokens bigint, cache_read_input_tokens bigint,
    output_tokens bigint, reasoning_tokens bigint, total_tokens bigint,
    first_activity timestamptz, last_activity timestamptz,
    PRIMARY KEY (user_id, period_type, period_start)
);
CREATE TABLE {tuned} (LIKE {seed} INCLUDING ALL);
CREATE TABLE {ctas} (LIKE {seed} INCLUDING ALL);
CREATE TABLE {duck} (LIKE {seed} INCLUDING ALL);
CREATE UNLOGGED TABLE {grain} (
    user_id text, day date, conversation_id text, message_count bigint, error_count bigint,
    input_tokens bigint, cache_creation_input_tokens bigint, cache_read_input_tokens bigint,
    output_tokens bigint, reasoning_tokens bigint, first_activity timestamptz, last_activity timestamptz
);
