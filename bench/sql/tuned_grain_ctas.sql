-- Tuned SQL in its best form, level 1: the conversation-day grain of [:start, :end) as one
-- CREATE UNLOGGED TABLE … AS SELECT. Unlike INSERT … SELECT, CTAS gets parallel workers: the scan
-- and the whole per-row work run under a Gather (canonical_parallel.sql: no OFFSET fences, which
-- would keep the subquery out of a parallel plan). {grain}: quoted table.
CREATE UNLOGGED TABLE {grain} AS
SELECT user_id, (created_at AT TIME ZONE :tz)::date AS day, conversation_id, count(*) AS message_count,
       sum(is_error) AS error_count, sum(input_tokens) AS input_tokens,
       sum(cache_creation_input_tokens) AS cache_creation_input_tokens, sum(cache_read_input_tokens) AS cache_read_input_tokens,
       sum(output_tokens) AS output_tokens, sum(reasoning_tokens) AS reasoning_tokens,
       min(created_at) AS first_activity, max(created_at) AS last_activity
FROM ({canonical_parallel}) AS m
GROUP BY 1, 2, 3
