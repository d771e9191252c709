-- Provenance of every computed cost: the price book version (PriceBook.version, first 12 hex
-- digits of a SHA-256 over the loaded price book content) that priced the rows.
-- Daily rows and grain rows carry exactly one version. Weekly and monthly rows roll up from the
-- grain and carry the sorted distinct versions of their days joined by ',' (two or more when the
-- window's days were priced by different books: repricing left part of it behind).
-- NULL: rows written before this migration.

ALTER TABLE user_token_usage ADD COLUMN price_book_version text;
ALTER TABLE user_token_usage_by_model ADD COLUMN price_book_version text;
ALTER TABLE user_conversation_day_usage ADD COLUMN price_book_version text;

COMMENT ON COLUMN user_token_usage.price_book_version IS
    'price book version(s) that priced cost_usd; several sorted and comma-separated when the days of a week/month were priced by different books';
COMMENT ON COLUMN user_token_usage_by_model.price_book_version IS
    'price book version(s) that priced cost_usd; several sorted and comma-separated when the days of a week/month were priced by different books';
COMMENT ON COLUMN user_conversation_day_usage.price_book_version IS
    'price book version that priced cost_pico_usd';
