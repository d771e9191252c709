-- Seed 001 (usage_logs, "Key columns with descriptions") as DDL, with the seed's recommended
-- indexes. Left out: the foreign key to profiles and the RLS policy (Supabase auth).
CREATE TABLE usage_logs (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id          uuid NOT NULL,
    action           text NOT NULL,
    credits_consumed numeric DEFAULT 1.0,
    metadata         jsonb,
    created_at       timestamptz DEFAULT now(),
    format           text,
    quality          text
);

CREATE INDEX idx_usage_logs_user_created ON usage_logs(user_id, created_at DESC);
CREATE INDEX idx_usage_logs_action ON usage_logs(action, created_at DESC);
CREATE INDEX idx_usage_logs_format_quality ON usage_logs(format, quality);
CREATE INDEX idx_usage_logs_created ON usage_logs(created_at DESC);
CREATE INDEX idx_usage_logs_credits ON usage_logs(credits_consumed DESC);
