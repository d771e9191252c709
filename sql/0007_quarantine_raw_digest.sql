-- Which raw row a quarantine row stands for: sources.postgres.raw_digest, a 64-bit hash of the
-- row's values. The reconciliation leaves out exactly the quarantined copies of a message id
-- (another copy of the id may be valid). NULL: rows written before this migration.
ALTER TABLE usage_quarantine ADD COLUMN raw_digest bigint;
