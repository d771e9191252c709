-- Fingerprint of the raw source per business-timezone day, for :start <= created_at < :end.
-- Cheap: no jsonb is parsed, and the created_at index bounds the scan to the lookback window.
-- max_id compares bytes (COLLATE "C"): independent of the database collation and, in a UTF8
-- database, the order in which a daily run computes the same fingerprint from the rows it read
-- (fingerprint.of_rows compares UTF-8 bytes).
-- Any insert, update or delete of a row of the day changes it: row_count or max_id move on insert
-- and delete; xmin (the row version's transaction id, kept by VACUUM FREEZE) moves on update.
-- version hashes the others (created_at as epoch microseconds: independent of the session TimeZone).
-- {source}, {id}, {created_at} are identifiers quoted by SQLAlchemy; :tz is the IANA timezone.
SELECT day, row_count, max_id, max_created_at, xmin_sum::text AS xmin_sum, version
FROM (
    SELECT ({created_at} AT TIME ZONE :tz)::date AS day,
           count(*)                              AS row_count,
           max({id}::text COLLATE "C")           AS max_id,
           max({created_at})                     AS max_created_at,
           sum(xmin::text::bigint)               AS xmin_sum
    FROM {source}
    WHERE {created_at} >= :start AND {created_at} < :end
    GROUP BY 1
) AS f,
LATERAL (
    SELECT left(md5(concat_ws('|', row_count, max_id, (extract(epoch FROM max_created_at) * 1000000)::bigint, xmin_sum)), 16) AS version
) AS v
ORDER BY day
