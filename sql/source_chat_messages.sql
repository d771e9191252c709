-- The default raw source (seed 003's chat_messages_v2 design). `usage-etl generate` creates it
-- when missing; a real deployment already has its own table and maps it by configuration.
CREATE TABLE IF NOT EXISTS chat_messages (
    id              uuid PRIMARY KEY,
    user_id         uuid,
    conversation_id uuid,
    agent_id        uuid,
    model           text,
    created_at      timestamptz,
    metadata        jsonb
);
