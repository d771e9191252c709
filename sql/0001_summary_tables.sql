-- Summary tables read by dashboards, admins and billing (docs/architecture.md, "Tables"), plus the internal
-- conversation-day grain that weeks and months roll up from, and the quarantine of bad raw rows.
-- Unqualified names: the migration runner sets search_path to the configured schema.

CREATE TABLE user_token_usage (
    user_id                     text        NOT NULL,
    period_type                 text        NOT NULL CHECK (period_type IN ('daily', 'weekly', 'monthly')),
    period_start                timestamptz NOT NULL,
    period_end                  timestamptz NOT NULL,
    input_tokens                bigint      NOT NULL,
    cache_creation_input_tokens bigint      NOT NULL,
    cache_read_input_tokens     bigint      NOT NULL,
    output_tokens               bigint      NOT NULL,
    reasoning_tokens            bigint      NOT NULL,
    total_tokens                bigint      NOT NULL,
    message_count               integer     NOT NULL,
    error_count                 integer     NOT NULL,
    conversation_count          integer     NOT NULL,
    agent_ids                   text[]      NOT NULL,
    models                      text[]      NOT NULL,
    cost_usd                    numeric(18, 6) NOT NULL,
    unpriced_message_count      integer     NOT NULL,
    paid_amount                 numeric(18, 6),
    first_activity              timestamptz,
    last_activity               timestamptz,
    computed_at                 timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, period_type, period_start),
    CHECK (period_end > period_start)
);
CREATE INDEX user_token_usage_period_idx ON user_token_usage (period_type, period_start);

CREATE TABLE user_token_usage_by_model (
    user_id                     text        NOT NULL,
    period_type                 text        NOT NULL CHECK (period_type IN ('daily', 'weekly', 'monthly')),
    period_start                timestamptz NOT NULL,
    model                       text        NOT NULL,  -- '(unknown)' when the source had none
    period_end                  timestamptz NOT NULL,
    input_tokens                bigint      NOT NULL,
    cache_creation_input_tokens bigint      NOT NULL,
    cache_read_input_tokens     bigint      NOT NULL,
    output_tokens               bigint      NOT NULL,
    reasoning_tokens            bigint      NOT NULL,
    total_tokens                bigint      NOT NULL,
    message_count               integer     NOT NULL,
    error_count                 integer     NOT NULL,
    conversation_count          integer     NOT NULL,
    agent_ids                   text[]      NOT NULL,
    models                      text[]      NOT NULL,
    cost_usd                    numeric(18, 6) NOT NULL,
    unpriced_message_count      integer     NOT NULL,
    paid_amount                 numeric(18, 6),
    first_activity              timestamptz,
    last_activity               timestamptz,
    computed_at                 timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, period_type, period_start, model),
    CHECK (period_end > period_start)
);
CREATE INDEX user_token_usage_by_model_period_idx ON user_token_usage_by_model (period_type, period_start);

-- One row per (user, business-timezone day, conversation, agent, model). Written by the daily
-- partition; weekly and monthly partitions roll up from it, so they never rescan raw rows.
-- Costs are exact integers: pico-USD (1e-12 USD); paid amounts in millionths of the paid unit.
CREATE TABLE user_conversation_day_usage (
    user_id                        text   NOT NULL,
    day                            date   NOT NULL,
    conversation_id                text,
    agent_id                       text,
    model                          text,
    input_tokens                   bigint NOT NULL,
    cache_creation_input_tokens    bigint NOT NULL,
    cache_creation_1h_input_tokens bigint NOT NULL,
    cache_read_input_tokens        bigint NOT NULL,
    output_tokens                  bigint NOT NULL,
    reasoning_tokens               bigint NOT NULL,
    message_count                  bigint NOT NULL,
    error_count                    bigint NOT NULL,
    unpriced_message_count         bigint NOT NULL,
    cost_pico_usd                  bigint NOT NULL,
    paid_micro                     bigint,
    first_activity                 timestamptz NOT NULL,
    last_activity                  timestamptz NOT NULL
);
CREATE INDEX user_conversation_day_usage_day_idx ON user_conversation_day_usage (day);

-- Raw rows that could not be aggregated, with the reason. For every daily window:
-- raw rows = aggregated messages + quarantined rows. partition_key is NULL for rows without
-- created_at (they belong to no window).
CREATE TABLE usage_quarantine (
    source        text NOT NULL,
    partition_key text,
    message_id    text,
    user_id       text,
    created_at    timestamptz,
    reason        text NOT NULL,
    detail        text
);
CREATE INDEX usage_quarantine_partition_idx ON usage_quarantine (source, partition_key);
