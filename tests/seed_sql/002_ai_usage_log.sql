-- Seed 002 (supabase/migrations/20260102000000_add_ai_usage_tracking.sql): the table, its indexes
-- and its logging function, verbatim. Left out: the dashboard functions, RLS policies and grants,
-- which need Supabase's auth schema and roles.
CREATE TABLE IF NOT EXISTS ai_usage_log (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  
  -- WHO made the request (the actual logged-in user)
  user_id UUID NOT NULL,  -- auth.uid() of requester
  user_email TEXT,        -- Cached for easy reporting
  
  -- WHAT customer context was being viewed (for audit)
  customer_id INTEGER,    -- Customer they were viewing/helping
  customer_name TEXT,     -- Cached for reporting
  
  -- Request details
  request_type TEXT NOT NULL DEFAULT 'report',  -- 'report', 'insight', 'scheduled', 'widget'
  session_id TEXT,        -- Groups conversation turns
  
  -- Token usage (from Anthropic response)
  input_tokens INTEGER NOT NULL DEFAULT 0,
  output_tokens INTEGER NOT NULL DEFAULT 0,
  total_tokens INTEGER GENERATED ALWAYS AS (input_tokens + output_tokens) STORED,
  
  -- Cost calculation (Claude Sonnet 4 pricing)
  -- Input: $3 per million tokens = $0.000003 per token
  -- Output: $15 per million tokens = $0.000015 per token
  input_cost_usd NUMERIC(10, 6) GENERATED ALWAYS AS (input_tokens * 0.000003) STORED,
  output_cost_usd NUMERIC(10, 6) GENERATED ALWAYS AS (output_tokens * 0.000015) STORED,
  total_cost_usd NUMERIC(10, 6) GENERATED ALWAYS AS ((input_tokens * 0.000003) + (output_tokens * 0.000015)) STORED,
  
  -- Model info
  model_used TEXT DEFAULT 'claude-sonnet-4-20250514',
  
  -- Performance
  latency_ms INTEGER,
  tool_turns INTEGER DEFAULT 0,
  
  -- Status
  status TEXT NOT NULL DEFAULT 'success',  -- 'success', 'error'
  error_message TEXT,
  
  -- Timestamps
  created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

-- Indexes for common query patterns
CREATE INDEX idx_ai_usage_log_user ON ai_usage_log(user_id, created_at DESC);
CREATE INDEX idx_ai_usage_log_customer ON ai_usage_log(customer_id, created_at DESC);
CREATE INDEX idx_ai_usage_log_created ON ai_usage_log(created_at DESC);
CREATE INDEX idx_ai_usage_log_type ON ai_usage_log(request_type, created_at DESC);

-- ============================================
-- FUNCTION: log_ai_usage
-- Call this after each AI request to record usage
-- ============================================
CREATE OR REPLACE FUNCTION log_ai_usage(
  p_user_id UUID,
  p_user_email TEXT DEFAULT NULL,
  p_customer_id INTEGER DEFAULT NULL,
  p_customer_name TEXT DEFAULT NULL,
  p_request_type TEXT DEFAULT 'report',
  p_session_id TEXT DEFAULT NULL,
  p_input_tokens INTEGER DEFAULT 0,
  p_output_tokens INTEGER DEFAULT 0,
  p_model_used TEXT DEFAULT 'claude-sonnet-4-20250514',
  p_latency_ms INTEGER DEFAULT NULL,
  p_tool_turns INTEGER DEFAULT 0,
  p_status TEXT DEFAULT 'success',
  p_error_message TEXT DEFAULT NULL
)
RETURNS UUID
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public
AS $$
DECLARE
  v_log_id UUID;
BEGIN
  INSERT INTO ai_usage_log (
    user_id,
    user_email,
    customer_id,
    customer_name,
    request_type,
    session_id,
    input_tokens,
    output_tokens,
    model_used,
    latency_ms,
    tool_turns,
    status,
    error_message
  ) VALUES (
    p_user_id,
    p_user_email,
    p_customer_id,
    p_customer_name,
    p_request_type,
    p_session_id,
    COALESCE(p_input_tokens, 0),
    COALESCE(p_output_tokens, 0),
    p_model_used,
    p_latency_ms,
    p_tool_turns,
    p_status,
    p_error_message
  )
  RETURNING id INTO v_log_id;
  
  RETURN v_log_id;
END;
$$;
