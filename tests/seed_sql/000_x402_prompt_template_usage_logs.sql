-- Seed 000 (migrations/003_add_usage_logs.sql) as described in its summary: identifiers, execution
-- details, token usage, payment info and timing, with the four indexes it lists. The types are
-- read from the description (status success/failed; tokens from the Claude response; amount paid
-- over a payment network); RLS policies are left out (Supabase auth).
CREATE TABLE x402_prompt_template_usage_logs (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    template_id       uuid NOT NULL,
    caller_id         text NOT NULL,
    status            text NOT NULL CHECK (status IN ('success', 'failed')),
    error_message     text,
    input_tokens      integer,
    output_tokens     integer,
    amount_paid       numeric(20, 6),
    payment_signature text,
    network           text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    execution_time_ms integer
);

CREATE INDEX idx_x402_usage_logs_template ON x402_prompt_template_usage_logs (template_id);
CREATE INDEX idx_x402_usage_logs_caller ON x402_prompt_template_usage_logs (caller_id);
CREATE INDEX idx_x402_usage_logs_created ON x402_prompt_template_usage_logs (created_at DESC);
CREATE INDEX idx_x402_usage_logs_template_caller ON x402_prompt_template_usage_logs (template_id, caller_id);
