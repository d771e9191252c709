-- The scan floor: every token field extracted from jsonb for every raw row of [:start, :end), and
-- discarded (counted on the server, so nothing crosses the wire). A plain SELECT: PostgreSQL may
-- use parallel workers. No aggregation pipeline can read the same rows faster. {source}: quoted table.
SELECT count(metadata->'usage'->>'input_tokens'), count(metadata->'usage'->>'output_tokens'),
       count(metadata->'usage'->>'cache_creation_input_tokens'),
       count(metadata->'usage'->'cache_creation'->>'ephemeral_1h_input_tokens'),
       count(metadata->'usage'->>'cache_read_input_tokens'), count(metadata->'usage'->>'prompt_tokens'),
       count(metadata->'usage'->>'completion_tokens'),
       count(metadata->'usage'->'prompt_tokens_details'->>'cached_tokens'),
       count(metadata->'usage'->'completion_tokens_details'->>'reasoning_tokens'),
       count(metadata->'usage'->'input_tokens_details'->>'cached_tokens'),
       count(metadata->'usage'->'output_tokens_details'->>'reasoning_tokens'),
       count(user_id), count(conversation_id), count(metadata->>'status')
FROM {source}
WHERE created_at >= :start AND created_at < :end
