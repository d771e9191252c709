-- The raw source's fingerprint per day as of each daily materialization (see
-- raw_window_fingerprints.sql). The late-data sensor compares it with the current fingerprint to
-- find days whose raw rows changed after they were materialized.
CREATE TABLE raw_window_fingerprint (
    source          text        NOT NULL,  -- schema.table of the raw source
    day             date        NOT NULL,  -- business-timezone day = daily partition key
    row_count       bigint      NOT NULL,
    max_id          text,
    max_created_at  timestamptz,
    xmin_sum        numeric     NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, day)
);
