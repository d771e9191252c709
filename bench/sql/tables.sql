-- Summary tables of the two SQL baselines (the measures compared with usage_etl's) and the tuned
-- grain. {seed}, {tuned}, {grain}: quoted tables.
DROP TABLE IF EXISTS {seed}, {tuned}, {grain};
CREATE TABLE {seed} (
    user_id text, period_type text, period_start timestamptz, period_end timestamptz,
    message_count bigint, error_count bigint, conversation_count bigint,
    input_tokens bigint, cache_creation_input_tokens bigint, cache_read_input_tokens bigint,
    output_tokens bigint, reasoning_tokens bigint, total_tokens bigint,
    first_activity timestamptz, last_activity timestamptz,
    PRIMARY KEY (user_id, period_type, period_start)
);
CREATE TABLE {tuned} (LIKE {seed} INCLUDING ALL);
CREATE UNLOGGED TABLE {grain} (
    user_id text, day date, conversation_id text, message_count bigint, error_count bigint,
    input_tokens bigint, cache_creation_input_tokens bigint, cache_read_input_tokens bigint,
    output_tokens bigint, reasoning_tokens bigint, first_activity timestamptz, last_activity timestamptz
);
