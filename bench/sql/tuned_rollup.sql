-- Tuned SQL, level 2: one granularity from the grain (a few rows per user and day), upserted; the
-- distinct count runs over the small grain, not over raw rows. {target}, {grain}: quoted tables.
INSERT INTO {target} AS t (user_id, period_type, period_start, period_end, message_count, error_count,
    conversation_count, input_tokens, cache_creation_input_tokens, cache_read_input_tokens,
    output_tokens, reasoning_tokens, total_tokens, first_activity, last_activity)
SELECT user_id, :period_type, local_start AT TIME ZONE :tz,
       (local_start + CAST(:step AS interval)) AT TIME ZONE :tz,
       sum(message_count), sum(error_count), count(DISTINCT conversation_id),
       sum(input_tokens), sum(cache_creation_input_tokens), sum(cache_read_input_tokens),
       sum(output_tokens), sum(reasoning_tokens),
       sum(input_tokens + cache_creation_input_tokens + cache_read_input_tokens + output_tokens),
       min(first_activity), max(last_activity)
FROM (SELECT g.*, date_trunc(:unit, g.day::timestamp) AS local_start FROM {grain} AS g) AS x
GROUP BY user_id, local_start
ON CONFLICT (user_id, period_type, period_start) DO UPDATE SET
    period_end = excluded.period_end, message_count = excluded.message_count,
    error_count = excluded.error_count, conversation_count = excluded.conversation_count,
    input_tokens = excluded.input_tokens,
    cache_creation_input_tokens = excluded.cache_creation_input_tokens,
    cache_read_input_tokens = excluded.cache_read_input_tokens,
    output_tokens = excluded.output_tokens, reasoning_tokens = excluded.reasoning_tokens,
    total_tokens = excluded.total_tokens, first_activity = excluded.first_activity,
    last_activity = excluded.last_activity
