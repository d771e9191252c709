-- Recommended indexes on the raw source table. Each partition run reads
-- `created_at >= window_start AND created_at < window_end`; without an index on created_at every
-- run scans the whole table. The partial index makes the sweep for rows without created_at cheap.
CREATE INDEX IF NOT EXISTS chat_messages_created_at_idx ON chat_messages (created_at);
CREATE INDEX IF NOT EXISTS chat_messages_created_at_null_idx ON chat_messages (id) WHERE created_at IS NULL;
