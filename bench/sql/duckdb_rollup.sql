-- DuckDB peer, level 2: one granularity from the DuckDB grain, written into the attached
-- PostgreSQL table {target} (binary COPY). $unit: day | week | month; $step: its interval.
INSERT INTO {target} (user_id, period_type, period_start, period_end, message_count, error_count,
    conversation_count, input_tokens, cache_creation_input_tokens, cache_read_input_tokens,
    output_tokens, reasoning_tokens, total_tokens, first_activity, last_activity)
SELECT user_id, $period_type, local_start AT TIME ZONE 'UTC', (local_start + CAST($step AS interval)) AT TIME ZONE 'UTC',
       sum(message_count), sum(error_count), count(DISTINCT conversation_id),
       sum(input_tokens), sum(cache_creation_input_tokens), sum(cache_read_input_tokens),
       sum(output_tokens), sum(reasoning_tokens),
       sum(input_tokens + cache_creation_input_tokens + cache_read_input_tokens + output_tokens),
       min(first_activity), max(last_activity)
FROM (SELECT g.*, date_trunc($unit, g.day)::timestamp AS local_start FROM grain AS g)
GROUP BY user_id, local_start
