-- Tuned SQL, level 1: the conversation-day grain of [:start, :end) into an unlogged table. The bench
-- runs one such INSERT per half of the range on two connections at once (an INSERT … SELECT never
-- gets parallel workers, two sessions do). {grain}: quoted table; {canonical}: canonical_messages.sql.
INSERT INTO {grain} (user_id, day, conversation_id, message_count, error_count, input_tokens,
    cache_creation_input_tokens, cache_read_input_tokens, output_tokens, reasoning_tokens,
    first_activity, last_activity)
SELECT user_id, (created_at AT TIME ZONE :tz)::date, conversation_id, count(*), sum(is_error),
       sum(input_tokens), sum(cache_creation_input_tokens), sum(cache_read_input_tokens),
       sum(output_tokens), sum(reasoning_tokens), min(created_at), max(created_at)
FROM ({canonical}) AS m
GROUP BY 1, 2, 3
