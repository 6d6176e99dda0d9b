-- Returns leased messages whose lease expired to the queue (or to 'expired' past their
-- give-up time), keeping their place in line, and gives back their quota reservations;
-- messages in state 'unknown' are retried once unknown_retry_after_seconds passed (when
-- set); old counters and orphaned reservations are pruned. Returns how many were reaped.
CREATE OR REPLACE FUNCTION mailrun.reap_expired() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_count bigint;
    v_unknown_after integer;
BEGIN
    WITH stale AS (
        SELECT id, lease_token FROM mailrun.messages
        WHERE state = 'leased' AND lease_expires_at < now()
        FOR UPDATE SKIP LOCKED),
    released AS (
        INSERT INTO mailrun.quota_releases (quota_id, at)
        SELECT r.quota_id, r.at FROM mailrun.quota_reservations r
        JOIN stale s ON s.lease_token = r.lease_token),
    forgotten AS (
        DELETE FROM mailrun.quota_reservations r USING stale s
        WHERE r.lease_token = s.lease_token)
    UPDATE mailrun.messages m SET
        state = CASE WHEN m.expires_at <= now() THEN 'expired' ELSE 'queued' END,
        finished_at = CASE WHEN m.expires_at <= now() THEN now() END,
        lease_runner = NULL, lease_token = NULL, lease_expires_at = NULL
    FROM stale WHERE m.id = stale.id;
    GET DIAGNOSTICS v_count = ROW_COUNT;

    SELECT unknown_retry_after_seconds INTO v_unknown_after FROM mailrun.quota_settings;
    IF v_unknown_after IS NOT NULL THEN
        UPDATE mailrun.messages m SET state = 'deferred', next_attempt_at = now()
        WHERE m.id IN (SELECT id FROM mailrun.messages
                       WHERE state = 'unknown'
                         AND last_attempt_at <= now() - make_interval(secs => v_unknown_after)
                       FOR UPDATE SKIP LOCKED);
    END IF;

    DELETE FROM mailrun.quota_usage WHERE bucket < now() - interval '8 days';
    -- A lease lasts at most a day; a reservation older than two is orphaned (its
    -- message was cancelled while leased and no report came).
    DELETE FROM mailrun.quota_reservations WHERE at < now() - interval '2 days';
    RETURN v_count;
END
$$;
