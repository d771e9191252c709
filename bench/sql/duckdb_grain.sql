-- DuckDB peer, level 1: the conversation-day grain of [$start, $end) into a DuckDB table, reading
-- the raw rows from the attached PostgreSQL (postgres_scanner, binary COPY, parallel by page range).
-- The same rules as canonical_messages.sql: every JSON field pulled with one json_extract_string
-- call per row (one parse of the document), rejected rows left out. {source}: pg."schema".table.
CREATE OR REPLACE TABLE grain AS
WITH f AS (
    SELECT user_id::varchar AS user_id, conversation_id::varchar AS conversation_id, created_at,
           json_type(metadata, '$.usage') AS ut,
           json_extract_string(metadata, ['$.status', '$.amount_paid',
               '$.usage.input_tokens', '$.usage.output_tokens', '$.usage.cache_creation_input_tokens',
               '$.usage.cache_creation.ephemeral_1h_input_tokens', '$.usage.cache_read_input_tokens',
               '$.usage.prompt_tokens', '$.usage.completion_tokens', '$.usage.prompt_tokens_details.cached_tokens',
               '$.usage.completion_tokens_details.reasoning_tokens', '$.usage.input_tokens_details.cached_tokens',
               '$.usage.output_tokens_details.reasoning_tokens']) AS x
    FROM {source}
    WHERE created_at >= $start AND created_at < $end
), v AS (
    SELECT user_id, conversation_id, created_at, ut, x[1] AS status, x[2] AS paid,
           x[3] AS it, x[4] AS ot, x[5] AS cc, x[6] AS c1, x[7] AS cr, x[8] AS pt, x[9] AS ct,
           x[10] AS pc, x[11] AS cx, x[12] AS ic, x[13] AS orr,
           regexp_full_match(concat_ws(',', x[3], x[4], x[5], x[6], x[7], x[8], x[9], x[10], x[11], x[12], x[13]),
               '(\s*-?[0-9]{1,18}(\.0*)?\s*(,\s*-?[0-9]{1,18}(\.0*)?\s*)*)?') AS ok
    FROM f
), p AS (  -- whole numbers below 2^53 are exact in a double; anything above 10^9 is rejected below
    SELECT user_id, conversation_id, created_at, status, paid, ut, ok,
           (pt IS NOT NULL OR ct IS NOT NULL) AS chat,
           (pt IS NULL AND ct IS NULL AND (ic IS NOT NULL OR orr IS NOT NULL)) AS resp,
           coalesce(it, ot) IS NOT NULL AS anth,
           CASE WHEN ok THEN coalesce(trim(it)::double, 0)::bigint END AS it, CASE WHEN ok THEN coalesce(trim(ot)::double, 0)::bigint END AS ot,
           CASE WHEN ok THEN coalesce(trim(cc)::double, 0)::bigint END AS cc, CASE WHEN ok THEN coalesce(trim(c1)::double, 0)::bigint END AS c1,
           CASE WHEN ok THEN coalesce(trim(cr)::double, 0)::bigint END AS cr, CASE WHEN ok THEN coalesce(trim(pt)::double, 0)::bigint END AS pt,
           CASE WHEN ok THEN coalesce(trim(ct)::double, 0)::bigint END AS ct, CASE WHEN ok THEN coalesce(trim(pc)::double, 0)::bigint END AS pc,
           CASE WHEN ok THEN coalesce(trim(cx)::double, 0)::bigint END AS cx, CASE WHEN ok THEN coalesce(trim(ic)::double, 0)::bigint END AS ic,
           CASE WHEN ok THEN coalesce(trim(orr)::double, 0)::bigint END AS orr
    FROM v
), c AS (
    SELECT user_id, conversation_id, created_at,
           CASE WHEN lower(trim(status)) IN ('error', 'failed', 'failure', 'cancelled', 'canceled', 'timeout', 'rejected') THEN 1 ELSE 0 END AS is_error,
           CASE WHEN chat THEN pt - pc WHEN resp THEN it - ic ELSE it END AS input_tokens,
           CASE WHEN chat OR resp THEN 0 ELSE cc END AS cache_creation_input_tokens,
           CASE WHEN chat OR resp THEN 0 ELSE c1 END AS cache_creation_1h_input_tokens,
           CASE WHEN chat THEN pc WHEN resp THEN ic ELSE cr END AS cache_read_input_tokens,
           CASE WHEN chat THEN ct ELSE ot END AS output_tokens,
           CASE WHEN chat THEN cx WHEN resp THEN orr ELSE 0 END AS reasoning_tokens,
           paid, (it < 0 OR ot < 0 OR cc < 0 OR c1 < 0 OR cr < 0 OR pt < 0 OR ct < 0 OR pc < 0 OR cx < 0 OR ic < 0 OR orr < 0) AS negative,
           greatest(it, ot, cc, c1, cr, pt, ct, pc, cx, ic, orr) > 1000000000 AS too_large
    FROM p
    WHERE ok AND user_id IS NOT NULL AND ut = 'OBJECT' AND (chat OR resp OR anth)
)
SELECT user_id, (created_at AT TIME ZONE 'UTC')::date AS day, conversation_id, count(*) AS message_count,
       sum(is_error) AS error_count, sum(input_tokens) AS input_tokens,
       sum(cache_creation_input_tokens) AS cache_creation_input_tokens, sum(cache_read_input_tokens) AS cache_read_input_tokens,
       sum(output_tokens) AS output_tokens, sum(reasoning_tokens) AS reasoning_tokens,
       min(created_at) AS first_activity, max(created_at) AS last_activity
FROM c
WHERE NOT negative
  AND NOT too_large
  AND input_tokens >= 0
  AND reasoning_tokens <= output_tokens
  AND cache_creation_1h_input_tokens <= cache_creation_input_tokens
  AND (paid IS NULL OR regexp_full_match(trim(paid), '\+?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?'))
GROUP BY ALL
