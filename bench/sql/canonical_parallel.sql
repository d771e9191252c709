-- canonical_messages.sql rewritten for parallel workers: OFFSET 0 fences keep a subquery out of a
-- parallel plan, so here each per-row step is a LATERAL function scan instead (evaluated once per
-- row, never inlined): jsonb_to_record parses the usage object once, one-element unnests hold the
-- integer test and the casts. Same columns, same rules. {source}: quoted table; :start, :end, :tz.
SELECT user_id, conversation_id, created_at, is_error, input_tokens, cache_creation_input_tokens,
       cache_read_input_tokens, output_tokens, reasoning_tokens
FROM (
    SELECT m.user_id::text AS user_id, m.conversation_id::text AS conversation_id, m.created_at,
           CASE WHEN lower(trim(m.metadata->>'status')) IN ('error', 'failed', 'failure', 'cancelled', 'canceled', 'timeout', 'rejected') THEN 1 ELSE 0 END AS is_error,
           CASE WHEN k.chat THEN p.pt - p.pc WHEN k.resp THEN p.it - p.ic ELSE p.it END AS input_tokens,
           CASE WHEN k.chat OR k.resp THEN 0 ELSE p.cc END AS cache_creation_input_tokens,
           CASE WHEN k.chat OR k.resp THEN 0 ELSE p.c1 END AS cache_creation_1h_input_tokens,
           CASE WHEN k.chat THEN p.pc WHEN k.resp THEN p.ic ELSE p.cr END AS cache_read_input_tokens,
           CASE WHEN k.chat THEN p.ct ELSE p.ot END AS output_tokens,
           CASE WHEN k.chat THEN p.cx WHEN k.resp THEN p.orr ELSE 0 END AS reasoning_tokens,
           m.metadata->>'amount_paid' AS paid, k.ok, k.usage_ok,
           (p.it < 0 OR p.ot < 0 OR p.cc < 0 OR p.c1 < 0 OR p.cr < 0 OR p.pt < 0 OR p.ct < 0 OR p.pc < 0 OR p.cx < 0 OR p.ic < 0 OR p.orr < 0) AS negative,
           greatest(p.it, p.ot, p.cc, p.c1, p.cr, p.pt, p.ct, p.pc, p.cx, p.ic, p.orr) > 1000000000 AS too_large
    FROM {source} AS m
    LEFT JOIN LATERAL jsonb_to_record(CASE WHEN jsonb_typeof(m.metadata->'usage') = 'object' THEN m.metadata->'usage' END)
        AS u(input_tokens text, output_tokens text, cache_creation_input_tokens text, cache_creation jsonb,
             cache_read_input_tokens text, prompt_tokens text, completion_tokens text, prompt_tokens_details jsonb,
             completion_tokens_details jsonb, input_tokens_details jsonb, output_tokens_details jsonb) ON true
    CROSS JOIN LATERAL unnest(
        ARRAY[u.input_tokens], ARRAY[u.output_tokens], ARRAY[u.cache_creation_input_tokens],
        ARRAY[u.cache_creation->>'ephemeral_1h_input_tokens'], ARRAY[u.cache_read_input_tokens],
        ARRAY[u.prompt_tokens], ARRAY[u.completion_tokens], ARRAY[u.prompt_tokens_details->>'cached_tokens'],
        ARRAY[u.completion_tokens_details->>'reasoning_tokens'], ARRAY[u.input_tokens_details->>'cached_tokens'],
        ARRAY[u.output_tokens_details->>'reasoning_tokens']) AS f(it, ot, cc, c1, cr, pt, ct, pc, cx, ic, orr)
    CROSS JOIN LATERAL unnest(
        ARRAY[concat_ws(',', f.it, f.ot, f.cc, f.c1, f.cr, f.pt, f.ct, f.pc, f.cx, f.ic, f.orr)
              ~ '^(\s*-?[0-9]{1,18}(\.0*)?\s*(,\s*-?[0-9]{1,18}(\.0*)?\s*)*)?$'],
        ARRAY[f.pt IS NOT NULL OR f.ct IS NOT NULL],
        ARRAY[f.pt IS NULL AND f.ct IS NULL AND (f.ic IS NOT NULL OR f.orr IS NOT NULL)],
        ARRAY[jsonb_typeof(m.metadata->'usage') = 'object' AND (f.pt IS NOT NULL OR f.ct IS NOT NULL OR f.ic IS NOT NULL
              OR f.orr IS NOT NULL OR f.it IS NOT NULL OR f.ot IS NOT NULL)]) AS k(ok, chat, resp, usage_ok)
    CROSS JOIN LATERAL unnest(  -- CASE keeps each cast behind the test
        ARRAY[CASE WHEN k.ok THEN coalesce(f.it::numeric, 0)::bigint END], ARRAY[CASE WHEN k.ok THEN coalesce(f.ot::numeric, 0)::bigint END],
        ARRAY[CASE WHEN k.ok THEN coalesce(f.cc::numeric, 0)::bigint END], ARRAY[CASE WHEN k.ok THEN coalesce(f.c1::numeric, 0)::bigint END],
        ARRAY[CASE WHEN k.ok THEN coalesce(f.cr::numeric, 0)::bigint END], ARRAY[CASE WHEN k.ok THEN coalesce(f.pt::numeric, 0)::bigint END],
        ARRAY[CASE WHEN k.ok THEN coalesce(f.ct::numeric, 0)::bigint END], ARRAY[CASE WHEN k.ok THEN coalesce(f.pc::numeric, 0)::bigint END],
        ARRAY[CASE WHEN k.ok THEN coalesce(f.cx::numeric, 0)::bigint END], ARRAY[CASE WHEN k.ok THEN coalesce(f.ic::numeric, 0)::bigint END],
        ARRAY[CASE WHEN k.ok THEN coalesce(f.orr::numeric, 0)::bigint END]) AS p(it, ot, cc, c1, cr, pt, ct, pc, cx, ic, orr)
    WHERE m.created_at >= :start AND m.created_at < :end AND m.user_id IS NOT NULL
) AS c
WHERE ok AND usage_ok
  AND NOT negative
  AND NOT too_large
  AND input_tokens >= 0
  AND reasoning_tokens <= output_tokens
  AND cache_creation_1h_input_tokens <= cache_creation_input_tokens
  AND (paid IS NULL OR trim(paid) ~ '^\+?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$')
