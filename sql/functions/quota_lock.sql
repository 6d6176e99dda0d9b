-- Locks a quota row for a claim. Waits only when `wait` (the caller keeps a global lock
-- order: runner quotas first, then by id); otherwise gives up at once when another
-- claimer holds it. Folds given-back reservations into the counters.
CREATE OR REPLACE FUNCTION mailrun.quota_lock(p_id bigint, p_wait boolean) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    q mailrun.quotas%ROWTYPE;
BEGIN
    -- NO KEY UPDATE: does not conflict with the KEY SHARE lock that inserting a
    -- release (foreign key) takes, so reports never wait for claimers.
    IF p_wait THEN
        SELECT * INTO q FROM mailrun.quotas WHERE id = p_id FOR NO KEY UPDATE;
    ELSE
        SELECT * INTO q FROM mailrun.quotas WHERE id = p_id FOR NO KEY UPDATE SKIP LOCKED;
    END IF;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE mailrun.quotas SET claims = claims + 1 WHERE id = p_id;
    WITH r AS (DELETE FROM mailrun.quota_releases WHERE quota_id = p_id RETURNING at),
    k AS (SELECT kind, mailrun.quota_bucket(kind, r.at, q.window_seconds) AS bucket,
                 count(*) AS n
          FROM r CROSS JOIN unnest(ARRAY['second', 'hour', 'day', 'window']) AS kind
          GROUP BY 1, 2)
    UPDATE mailrun.quota_usage u SET used = greatest(0, u.used - k.n)
    FROM k WHERE u.quota_id = p_id AND u.kind = k.kind AND u.bucket = k.bucket;
    RETURN true;
END
$$;
