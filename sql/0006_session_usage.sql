-- Per-conversation (session) usage over any range of days, read from the conversation-day grain
-- (user_conversation_day_usage), never from raw rows. Unqualified names: the migration runner sets
-- search_path to the ETL schema, and SET search_path FROM CURRENT keeps it for the function body.
--
-- One row per (user_id, conversation_id) — and per model when p_by_model — over the grain days
-- p_first..p_last (business-timezone dates, inclusive; NULL = unbounded) of p_user_id (NULL = all
-- users). A conversation crossing midnight has one grain row per day; the sums over them are exact
-- (integers; cost in pico-USD). cost_usd rounds the summed pico-USD once, half-up to 6 places,
-- as the summary tables' cost_usd. Rows of messages without a conversation form one row per user
-- with conversation_id NULL. SECURITY INVOKER over user_session_day_usage: a dashboard role gets
-- its own sessions only (an admin, or the pipeline's role, every session).
-- The grain as a caller may see it, by the identity functions of the summary tables' policies:
-- the caller's own user id, every row for an admin or for the tables' owner (the pipeline). The
-- grain itself stays unreadable to dashboard roles; this view reads it with its owner's rights and
-- filters first (security_barrier), so a reader's session usage is its own.
CREATE VIEW user_session_day_usage WITH (security_barrier) AS
    SELECT g.*
    FROM user_conversation_day_usage AS g
    -- each as a scalar subquery: evaluated once per query, not once per grain row (as in 0005's policies)
    WHERE g.user_id = (SELECT usage_etl_current_user_id())
       OR (SELECT usage_etl_is_admin())
       OR (SELECT pg_has_role(current_user, c.relowner, 'USAGE') FROM pg_class AS c WHERE c.oid = 'user_conversation_day_usage'::regclass);

CREATE FUNCTION user_session_usage(
    p_first    date    DEFAULT NULL,
    p_last     date    DEFAULT NULL,
    p_user_id  text    DEFAULT NULL,
    p_by_model boolean DEFAULT false
)
RETURNS TABLE (
    user_id                        text,
    conversation_id                text,
    model                          text,         -- NULL unless p_by_model; '(unknown)' for no model
    first_activity                 timestamptz,
    last_activity                  timestamptz,
    first_day                      date,         -- business timezone
    last_day                       date,
    days                           integer,      -- grain days with activity
    input_tokens                   bigint,
    cache_creation_input_tokens    bigint,
    cache_creation_1h_input_tokens bigint,
    cache_read_input_tokens        bigint,
    output_tokens                  bigint,
    reasoning_tokens               bigint,
    total_tokens                   bigint,
    message_count                  bigint,
    error_count                    bigint,
    unpriced_message_count         bigint,
    cost_pico_usd                  numeric,      -- exact, 1e-12 USD
    cost_usd                       numeric(18, 6),
    models                         text[],       -- sorted distinct non-null models
    agent_ids                      text[],       -- sorted distinct non-null agents
    price_book_version             text          -- sorted distinct versions, comma-separated
)
LANGUAGE sql
STABLE
SECURITY INVOKER
SET search_path FROM CURRENT
AS $$
    SELECT
        g.user_id,
        g.conversation_id,
        CASE WHEN p_by_model THEN coalesce(g.model, '(unknown)') END,
        min(g.first_activity),
        max(g.last_activity),
        min(g.day),
        max(g.day),
        count(DISTINCT g.day)::integer,
        sum(g.input_tokens)::bigint,
        sum(g.cache_creation_input_tokens)::bigint,
        sum(g.cache_creation_1h_input_tokens)::bigint,
        sum(g.cache_read_input_tokens)::bigint,
        sum(g.output_tokens)::bigint,
        sum(g.reasoning_tokens)::bigint,
        -- as in the summary tables: reasoning tokens are part of output_tokens, not added again
        sum(g.input_tokens + g.cache_creation_input_tokens + g.cache_read_input_tokens + g.output_tokens)::bigint,
        sum(g.message_count)::bigint,
        sum(g.error_count)::bigint,
        sum(g.unpriced_message_count)::bigint,
        sum(g.cost_pico_usd),
        -- round to whole micro-USD, then scale by multiplication (exact in numeric; a division
        -- could round to fewer digits first)
        (round(sum(g.cost_pico_usd), -6) * 0.000000000001)::numeric(18, 6),
        coalesce(array_agg(DISTINCT g.model COLLATE "C" ORDER BY g.model COLLATE "C") FILTER (WHERE g.model IS NOT NULL), '{}'),
        coalesce(array_agg(DISTINCT g.agent_id COLLATE "C" ORDER BY g.agent_id COLLATE "C") FILTER (WHERE g.agent_id IS NOT NULL), '{}'),
        string_agg(DISTINCT g.price_book_version COLLATE "C", ',' ORDER BY g.price_book_version COLLATE "C")
    FROM user_session_day_usage AS g
    WHERE (p_first IS NULL OR g.day >= p_first)
      AND (p_last IS NULL OR g.day <= p_last)
      AND (p_user_id IS NULL OR g.user_id = p_user_id)
    GROUP BY g.user_id, g.conversation_id, CASE WHEN p_by_model THEN coalesce(g.model, '(unknown)') END
$$;

COMMENT ON FUNCTION user_session_usage(date, date, text, boolean) IS
    'per-conversation (session) usage over the grain days p_first..p_last (NULL: unbounded), optionally per model; exact sums of user_conversation_day_usage';
