-- Readers' security (docs/security.md): row-level security on the user-facing tables, none of the
-- internal tables readable by anyone but their owner, and SECURITY INVOKER read functions for
-- dashboards, so the policies apply to whoever calls them.
--
-- Unqualified names: the migration sets search_path to the ETL schema, pg_catalog, pg_temp. Every
-- function keeps that path (SET search_path FROM CURRENT): a caller's own search_path or temporary
-- tables cannot redirect what a policy or read function looks at.

-- How a reader is identified, written by `usage-etl db upgrade` from USAGE_ETL_RLS_* (one row).
--   identity 'setting':  the session setting named user_setting (a trusted backend sets it per request)
--   identity 'role':     the PostgreSQL role name (current_user): one role per user
--   identity 'supabase': auth.uid() of the request's JWT
-- An admin is a member of admin_role, or (when admin_table is set) a user whose row in that table
-- has admin_role_column = admin_value. timezone: the business timezone of the day/week/month windows.
CREATE TABLE usage_etl_read_settings (
    singleton          boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    identity           text NOT NULL DEFAULT 'setting' CHECK (identity IN ('setting', 'role', 'supabase')),
    user_setting       text NOT NULL DEFAULT 'usage_etl.user_id',
    admin_role         text DEFAULT 'usage_etl_admin',
    admin_table_schema text,
    admin_table        text,
    admin_user_column  text,
    admin_role_column  text,
    admin_value        text,
    timezone           text NOT NULL DEFAULT 'UTC',
    CHECK (num_nulls(admin_table_schema, admin_table, admin_user_column, admin_role_column, admin_value) IN (0, 5))
);
INSERT INTO usage_etl_read_settings DEFAULT VALUES;
-- The policies read it as the querying role; it holds names, no data.
GRANT SELECT ON usage_etl_read_settings TO PUBLIC;

-- The caller's user id (text, as in user_id), NULL when the caller has none.
CREATE FUNCTION usage_etl_current_user_id() RETURNS text
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path FROM CURRENT AS $$
DECLARE
    s usage_etl_read_settings;
BEGIN
    SELECT * INTO s FROM usage_etl_read_settings;
    IF s.identity = 'role' THEN
        RETURN current_user;
    ELSIF s.identity = 'supabase' THEN
        RETURN auth.uid()::text;  -- resolved only when this branch runs: no auth schema needed otherwise
    END IF;
    RETURN nullif(current_setting(s.user_setting, true), '');
END
$$;

-- Whether the caller may read every user's rows.
CREATE FUNCTION usage_etl_is_admin() RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path FROM CURRENT AS $$
DECLARE
    s usage_etl_read_settings;
    uid text;
    listed boolean;
BEGIN
    SELECT * INTO s FROM usage_etl_read_settings;
    -- pg_has_role(…, NULL, …) is NULL: an admin role that does not exist makes nobody an admin.
    IF coalesce(pg_has_role(current_user, (SELECT oid FROM pg_roles WHERE rolname = s.admin_role), 'USAGE'), false) THEN
        RETURN true;
    END IF;
    IF s.admin_table IS NULL THEN
        RETURN false;
    END IF;
    uid := usage_etl_current_user_id();
    IF uid IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.%I WHERE %I::text = $1 AND %I::text = $2)',
                   s.admin_table_schema, s.admin_table, s.admin_user_column, s.admin_role_column)
        INTO listed USING uid, s.admin_value;
    RETURN listed;
END
$$;

-- User-facing tables: a reader sees its own rows, an admin all of them. Policies are FOR SELECT
-- only, so even a role granted INSERT/UPDATE/DELETE by mistake writes nothing; the owner (the
-- pipeline) is not subject to them. (SELECT f()) runs each function once per query.
ALTER TABLE user_token_usage ENABLE ROW LEVEL SECURITY;
CREATE POLICY usage_etl_users_read_own ON user_token_usage FOR SELECT
    USING (user_id = (SELECT usage_etl_current_user_id()));
CREATE POLICY usage_etl_admins_read_all ON user_token_usage FOR SELECT
    USING ((SELECT usage_etl_is_admin()));

ALTER TABLE user_token_usage_by_model ENABLE ROW LEVEL SECURITY;
CREATE POLICY usage_etl_users_read_own ON user_token_usage_by_model FOR SELECT
    USING (user_id = (SELECT usage_etl_current_user_id()));
CREATE POLICY usage_etl_admins_read_all ON user_token_usage_by_model FOR SELECT
    USING ((SELECT usage_etl_is_admin()));

ALTER TABLE user_token_usage_by_dimension ENABLE ROW LEVEL SECURITY;
CREATE POLICY usage_etl_users_read_own ON user_token_usage_by_dimension FOR SELECT
    USING (user_id = (SELECT usage_etl_current_user_id()));
CREATE POLICY usage_etl_admins_read_all ON user_token_usage_by_dimension FOR SELECT
    USING ((SELECT usage_etl_is_admin()));

-- Internal tables: row-level security without any policy, so only the owner sees a row, even if
-- someone grants SELECT later.
ALTER TABLE user_conversation_day_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE user_conversation_day_dimension_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_quarantine ENABLE ROW LEVEL SECURITY;
ALTER TABLE raw_window_fingerprint ENABLE ROW LEVEL SECURITY;
ALTER TABLE claude_code_messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE claude_code_files ENABLE ROW LEVEL SECURITY;
ALTER TABLE claude_code_quarantine ENABLE ROW LEVEL SECURITY;

-- Argument checks of the read functions; they raise invalid_parameter_value (22023).
-- [lo, hi): the instants of the local days p_start..p_end (inclusive) in the business timezone.
CREATE FUNCTION usage_etl_bounds(p_start date, p_end date, OUT lo timestamptz, OUT hi timestamptz, OUT tz text)
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path FROM CURRENT AS $$
BEGIN
    IF p_start IS NULL OR p_end IS NULL THEN
        RAISE EXCEPTION 'p_start and p_end are required' USING ERRCODE = 'invalid_parameter_value';
    ELSIF p_end < p_start THEN
        RAISE EXCEPTION 'p_end % is before p_start %', p_end, p_start USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT s.timezone INTO tz FROM usage_etl_read_settings s;
    lo := p_start::timestamp AT TIME ZONE tz;
    hi := (p_end + 1)::timestamp AT TIME ZONE tz;
END
$$;

CREATE FUNCTION usage_etl_check_page(p_page integer, p_page_size integer) RETURNS void
LANGUAGE plpgsql IMMUTABLE SECURITY INVOKER SET search_path FROM CURRENT AS $$
BEGIN
    IF p_page IS NULL OR p_page < 1 THEN
        RAISE EXCEPTION 'p_page must be 1 or more, got %', p_page USING ERRCODE = 'invalid_parameter_value';
    ELSIF p_page_size IS NULL OR p_page_size NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'p_page_size must be between 1 and 1000, got %', p_page_size USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- One user's rows of one period type whose period_start falls on a local day p_start..p_end, a page
-- of them, their totals and per-model totals. p_user_id NULL: the caller's own id. Row-level
-- security applies: a reader asking for another user gets no rows.
CREATE FUNCTION usage_etl_user_usage(
    p_start date,
    p_end date,
    p_period_type text DEFAULT 'daily',
    p_user_id text DEFAULT NULL,
    p_page integer DEFAULT 1,
    p_page_size integer DEFAULT 100
) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path FROM CURRENT AS $$
DECLARE
    b record;
    who text := coalesce(p_user_id, usage_etl_current_user_id());
    result jsonb;
BEGIN
    IF p_period_type IS NULL OR p_period_type NOT IN ('daily', 'weekly', 'monthly') THEN
        RAISE EXCEPTION 'p_period_type must be daily, weekly or monthly, got %', p_period_type
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM usage_etl_check_page(p_page, p_page_size);
    SELECT * INTO b FROM usage_etl_bounds(p_start, p_end);
    WITH r AS (
        SELECT * FROM user_token_usage
        WHERE user_id = who AND period_type = p_period_type AND period_start >= b.lo AND period_start < b.hi
    ), page AS (
        SELECT (period_start AT TIME ZONE b.tz)::date AS period_start, (period_end AT TIME ZONE b.tz)::date AS period_end,
               message_count, error_count, conversation_count, input_tokens, cache_creation_input_tokens,
               cache_read_input_tokens, output_tokens, reasoning_tokens, total_tokens, cost_usd,
               unpriced_message_count, paid_amount, models
        FROM r ORDER BY r.period_start LIMIT p_page_size OFFSET (p_page - 1)::bigint * p_page_size
    ), by_model AS (
        SELECT model, sum(message_count) AS message_count, sum(total_tokens) AS total_tokens,
               sum(cost_usd) AS cost_usd, sum(unpriced_message_count) AS unpriced_message_count
        FROM user_token_usage_by_model
        WHERE user_id = who AND period_type = p_period_type AND period_start >= b.lo AND period_start < b.hi
        GROUP BY model
    ), totals AS (
        SELECT count(*) AS periods,
               coalesce(sum(message_count), 0) AS message_count, coalesce(sum(error_count), 0) AS error_count,
               coalesce(sum(conversation_count), 0) AS conversation_count,
               coalesce(sum(input_tokens), 0) AS input_tokens,
               coalesce(sum(cache_creation_input_tokens), 0) AS cache_creation_input_tokens,
               coalesce(sum(cache_read_input_tokens), 0) AS cache_read_input_tokens,
               coalesce(sum(output_tokens), 0) AS output_tokens, coalesce(sum(reasoning_tokens), 0) AS reasoning_tokens,
               coalesce(sum(total_tokens), 0) AS total_tokens, coalesce(sum(cost_usd), 0) AS cost_usd,
               coalesce(sum(unpriced_message_count), 0) AS unpriced_message_count, sum(paid_amount) AS paid_amount
        FROM r
    )
    SELECT jsonb_build_object(
        'user_id', who,
        'period_type', p_period_type,
        'start', p_start,
        'end', p_end,
        'summary', (SELECT to_jsonb(t) FROM totals t),
        'usage', (SELECT coalesce(jsonb_agg(to_jsonb(p) ORDER BY p.period_start), '[]') FROM page p),
        'by_model', (SELECT coalesce(jsonb_agg(to_jsonb(m) ORDER BY m.cost_usd DESC, m.total_tokens DESC, m.model), '[]') FROM by_model m),
        'pagination', (SELECT jsonb_build_object('page', p_page, 'page_size', p_page_size, 'total_rows', t.periods,
                                                 'total_pages', (t.periods + p_page_size - 1) / p_page_size) FROM totals t)
    ) INTO result;
    RETURN result;
END
$$;

-- Per-user totals of the daily rows on local days p_start..p_end, one page, most expensive first
-- (then most tokens, then user_id: a total order, so pages never overlap).
CREATE FUNCTION usage_etl_usage_by_user(
    p_start date,
    p_end date,
    p_page integer DEFAULT 1,
    p_page_size integer DEFAULT 100
) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path FROM CURRENT AS $$
DECLARE
    b record;
    result jsonb;
BEGIN
    PERFORM usage_etl_check_page(p_page, p_page_size);
    SELECT * INTO b FROM usage_etl_bounds(p_start, p_end);
    WITH u AS (
        SELECT user_id, count(*) AS days, sum(message_count) AS message_count, sum(error_count) AS error_count,
               sum(conversation_count) AS conversation_count, sum(input_tokens) AS input_tokens,
               sum(cache_creation_input_tokens) AS cache_creation_input_tokens,
               sum(cache_read_input_tokens) AS cache_read_input_tokens, sum(output_tokens) AS output_tokens,
               sum(reasoning_tokens) AS reasoning_tokens, sum(total_tokens) AS total_tokens,
               sum(cost_usd) AS cost_usd, sum(unpriced_message_count) AS unpriced_message_count,
               max(last_activity) AS last_activity
        FROM user_token_usage
        WHERE period_type = 'daily' AND period_start >= b.lo AND period_start < b.hi
        GROUP BY user_id
    ), page AS (
        SELECT * FROM u ORDER BY cost_usd DESC, total_tokens DESC, user_id
        LIMIT p_page_size OFFSET (p_page - 1)::bigint * p_page_size
    ), n AS (SELECT count(*) AS users FROM u)
    SELECT jsonb_build_object(
        'start', p_start,
        'end', p_end,
        'users', (SELECT coalesce(jsonb_agg(to_jsonb(p) ORDER BY p.cost_usd DESC, p.total_tokens DESC, p.user_id), '[]') FROM page p),
        'pagination', (SELECT jsonb_build_object('page', p_page, 'page_size', p_page_size, 'total_rows', n.users,
                                                 'total_pages', (n.users + p_page_size - 1) / p_page_size) FROM n)
    ) INTO result;
    RETURN result;
END
$$;

-- Overview of local days p_start..p_end from the daily rows: totals, the p_top_users most expensive
-- users (the first page of usage_etl_usage_by_user), totals per model and one entry per day.
-- Meant for admins; called by a reader it covers that reader's own rows only.
CREATE FUNCTION usage_etl_dashboard(p_start date, p_end date, p_top_users integer DEFAULT 10) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path FROM CURRENT AS $$
DECLARE
    b record;
    result jsonb;
BEGIN
    IF p_top_users IS NULL OR p_top_users NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'p_top_users must be between 1 and 1000, got %', p_top_users USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO b FROM usage_etl_bounds(p_start, p_end);
    WITH d AS (
        SELECT * FROM user_token_usage
        WHERE period_type = 'daily' AND period_start >= b.lo AND period_start < b.hi
    ), totals AS (
        SELECT count(DISTINCT user_id) AS users, count(*) AS user_days,
               coalesce(sum(message_count), 0) AS message_count, coalesce(sum(error_count), 0) AS error_count,
               coalesce(sum(conversation_count), 0) AS conversation_count,
               coalesce(sum(input_tokens), 0) AS input_tokens,
               coalesce(sum(cache_creation_input_tokens), 0) AS cache_creation_input_tokens,
               coalesce(sum(cache_read_input_tokens), 0) AS cache_read_input_tokens,
               coalesce(sum(output_tokens), 0) AS output_tokens, coalesce(sum(reasoning_tokens), 0) AS reasoning_tokens,
               coalesce(sum(total_tokens), 0) AS total_tokens, coalesce(sum(cost_usd), 0) AS cost_usd,
               coalesce(sum(unpriced_message_count), 0) AS unpriced_message_count
        FROM d
    ), by_model AS (
        SELECT model, count(DISTINCT user_id) AS users, sum(message_count) AS message_count,
               sum(total_tokens) AS total_tokens, sum(cost_usd) AS cost_usd,
               sum(unpriced_message_count) AS unpriced_message_count
        FROM user_token_usage_by_model
        WHERE period_type = 'daily' AND period_start >= b.lo AND period_start < b.hi
        GROUP BY model
    ), days AS (
        SELECT (period_start AT TIME ZONE b.tz)::date AS day, count(*) AS users, sum(message_count) AS message_count,
               sum(total_tokens) AS total_tokens, sum(cost_usd) AS cost_usd,
               sum(unpriced_message_count) AS unpriced_message_count
        FROM d GROUP BY 1
    )
    SELECT jsonb_build_object(
        'start', p_start,
        'end', p_end,
        'summary', (SELECT to_jsonb(t) FROM totals t),
        'top_users', usage_etl_usage_by_user(p_start, p_end, 1, p_top_users) -> 'users',
        'by_model', (SELECT coalesce(jsonb_agg(to_jsonb(m) ORDER BY m.cost_usd DESC, m.total_tokens DESC, m.model), '[]') FROM by_model m),
        'daily_trend', (SELECT coalesce(jsonb_agg(to_jsonb(x) ORDER BY x.day), '[]') FROM days x)
    ) INTO result;
    RETURN result;
END
$$;

-- Nothing is readable or callable by default; `usage-etl db upgrade` grants the reader and admin
-- roles (sql/security_read_grants.sql). The identity functions stay callable by PUBLIC: the policies
-- call them as whoever queries, and they only tell the caller about itself.
REVOKE ALL ON user_token_usage, user_token_usage_by_model, user_token_usage_by_dimension,
    user_conversation_day_usage, user_conversation_day_dimension_usage, usage_quarantine,
    raw_window_fingerprint, claude_code_messages, claude_code_files, claude_code_quarantine FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION usage_etl_user_usage(date, date, text, text, integer, integer),
    usage_etl_usage_by_user(date, date, integer, integer), usage_etl_dashboard(date, date, integer) FROM PUBLIC;
