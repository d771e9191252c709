-- Valid raw messages of [:start, :end) in canonical token semantics (docs/architecture.md, "Canonical frame"), written in SQL
-- the way a user of seed 003 would: jsonb fields extracted in the SELECT, provider detected per row,
-- the same rejection rules as usage_etl.normalize (rejected rows are left out).
-- Placeholders: {source} (quoted table), :start, :end (timestamptz), :tz (IANA timezone).
WITH f AS (
    SELECT user_id::text AS user_id,
           conversation_id::text AS conversation_id,
           created_at,
           metadata->>'status' AS status,
           metadata->>'amount_paid' AS paid,
           jsonb_typeof(metadata->'usage') AS ut,
           metadata->'usage'->>'input_tokens' AS it,
           metadata->'usage'->>'output_tokens' AS ot,
           metadata->'usage'->>'cache_creation_input_tokens' AS cc,
           metadata->'usage'->'cache_creation'->>'ephemeral_1h_input_tokens' AS c1,
           metadata->'usage'->>'cache_read_input_tokens' AS cr,
           metadata->'usage'->>'prompt_tokens' AS pt,
           metadata->'usage'->>'completion_tokens' AS ct,
           metadata->'usage'->'prompt_tokens_details'->>'cached_tokens' AS pc,
           metadata->'usage'->'completion_tokens_details'->>'reasoning_tokens' AS cx,
           metadata->'usage'->'input_tokens_details'->>'cached_tokens' AS ic,
           metadata->'usage'->'output_tokens_details'->>'reasoning_tokens' AS orr
    FROM {source}
    WHERE created_at >= :start AND created_at < :end
    OFFSET 0  -- fence: extract each jsonb field once per row, not once per use below
), v AS (  -- ok: every reported token field is a whole number
    SELECT f.*, concat_ws(',', it, ot, cc, c1, cr, pt, ct, pc, cx, ic, orr)
                ~ '^(\s*-?[0-9]{1,18}(\.0*)?\s*(,\s*-?[0-9]{1,18}(\.0*)?\s*)*)?$' AS ok
    FROM f
    OFFSET 0  -- fence: test once per row, not once per CASE below
), p AS (  -- CASE keeps the casts behind the test: PostgreSQL may evaluate quals in any order
    SELECT user_id, conversation_id, created_at, status, paid, ut, ok,
           (pt IS NOT NULL OR ct IS NOT NULL) AS chat,
           (pt IS NULL AND ct IS NULL AND (ic IS NOT NULL OR orr IS NOT NULL)) AS resp,
           coalesce(it, ot) IS NOT NULL AS anth,
           CASE WHEN ok THEN coalesce(it::numeric, 0)::bigint END AS it, CASE WHEN ok THEN coalesce(ot::numeric, 0)::bigint END AS ot,
           CASE WHEN ok THEN coalesce(cc::numeric, 0)::bigint END AS cc, CASE WHEN ok THEN coalesce(c1::numeric, 0)::bigint END AS c1,
           CASE WHEN ok THEN coalesce(cr::numeric, 0)::bigint END AS cr, CASE WHEN ok THEN coalesce(pt::numeric, 0)::bigint END AS pt,
           CASE WHEN ok THEN coalesce(ct::numeric, 0)::bigint END AS ct, CASE WHEN ok THEN coalesce(pc::numeric, 0)::bigint END AS pc,
           CASE WHEN ok THEN coalesce(cx::numeric, 0)::bigint END AS cx, CASE WHEN ok THEN coalesce(ic::numeric, 0)::bigint END AS ic,
           CASE WHEN ok THEN coalesce(orr::numeric, 0)::bigint END AS orr
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
           greatest(it, ot, cc, c1, cr, pt, ct, pc, cx, ic, orr) > 1000000000 AS too_large  -- pricing.MAX_TOKENS_PER_FIELD
    FROM p
    WHERE ok AND user_id IS NOT NULL AND ut = 'object' AND (chat OR resp OR anth)
)
SELECT user_id, conversation_id, created_at, is_error, input_tokens, cache_creation_input_tokens,
       cache_read_input_tokens, output_tokens, reasoning_tokens
FROM c
WHERE NOT negative
  AND NOT too_large
  AND input_tokens >= 0
  AND reasoning_tokens <= output_tokens
  AND cache_creation_1h_input_tokens <= cache_creation_input_tokens
  AND (paid IS NULL OR trim(paid) ~ '^\+?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$')
