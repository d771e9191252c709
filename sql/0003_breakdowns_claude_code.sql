-- Breakdown dimensions (a source's request_type, customer_id, action, template_id, network, …) and the
-- landing tables of Claude Code JSONL transcripts. Unqualified names: search_path is the ETL schema.

-- Same measures as user_token_usage, per value of each configured breakdown dimension. For one
-- dimension the values of a user add up to the user's row (a null value is stored as '(none)').
CREATE TABLE user_token_usage_by_dimension (
    user_id                     text        NOT NULL,
    period_type                 text        NOT NULL CHECK (period_type IN ('daily', 'weekly', 'monthly')),
    period_start                timestamptz NOT NULL,
    dimension                   text        NOT NULL,
    value                       text        NOT NULL,
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
    price_book_version          text,
    PRIMARY KEY (user_id, period_type, period_start, dimension, value),
    CHECK (period_end > period_start)
);
CREATE INDEX user_token_usage_by_dimension_period_idx ON user_token_usage_by_dimension (period_type, period_start, dimension);

-- The conversation-day grain per (dimension, value): weeks and months of the breakdown table roll
-- up from it with exact distinct conversation counts per value, like user_conversation_day_usage.
CREATE TABLE user_conversation_day_dimension_usage (
    dimension                      text   NOT NULL,
    value                          text   NOT NULL,
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
    last_activity                  timestamptz NOT NULL,
    price_book_version             text
);
CREATE INDEX user_conversation_day_dimension_usage_day_idx ON user_conversation_day_dimension_usage (day);

-- Claude Code assistant responses, one row per de-duplicated message (message.id:requestId). A
-- re-read snapshot replaces the row only when it is more complete (larger output_tokens, then
-- larger token total, then later file/line), so re-ingesting changes nothing. Read as a flat
-- source (examples/004_claude_code_jsonl.toml).
CREATE TABLE claude_code_messages (
    message_id                     text        PRIMARY KEY,
    user_id                        text        NOT NULL,
    conversation_id                text,
    agent_id                       text,
    model                          text,
    created_at                     timestamptz NOT NULL,
    status                         text        NOT NULL,
    input_tokens                   bigint      NOT NULL CHECK (input_tokens >= 0),
    cache_creation_input_tokens    bigint      NOT NULL CHECK (cache_creation_input_tokens >= 0),
    cache_creation_1h_input_tokens bigint      NOT NULL CHECK (cache_creation_1h_input_tokens >= 0),
    cache_read_input_tokens        bigint      NOT NULL CHECK (cache_read_input_tokens >= 0),
    output_tokens                  bigint      NOT NULL CHECK (output_tokens >= 0),
    reasoning_tokens               bigint      NOT NULL CHECK (reasoning_tokens >= 0),
    source_root                    text        NOT NULL,
    source_file                    text        NOT NULL,
    source_line                    bigint      NOT NULL,
    ingested_at                    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX claude_code_messages_created_at_idx ON claude_code_messages (created_at);

-- Read position per transcript file: bytes consumed (always right after a newline) and the line
-- number the next read starts at. Updated in the same transaction as the messages it produced.
CREATE TABLE claude_code_files (
    root        text        NOT NULL,
    file        text        NOT NULL,  -- "/"-separated path relative to root
    byte_offset bigint      NOT NULL CHECK (byte_offset >= 0),
    next_line   bigint      NOT NULL CHECK (next_line >= 1),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (root, file)
);

-- Transcript lines that could not be trusted (truncated JSON, bad usage, no timestamp, …).
CREATE TABLE claude_code_quarantine (
    root        text        NOT NULL,
    file        text        NOT NULL,
    line_no     bigint      NOT NULL,
    reason      text        NOT NULL,
    detail      text,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (root, file, line_no)
);
