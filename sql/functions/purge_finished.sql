-- Looks at up to `max_rows` finished messages past their keep time, oldest first: sent
-- after `keep_sent`; failed, expired and cancelled after `keep_failed`. Those matching a
-- review pattern (see kept_for_review) are held; the others are deleted with their
-- attempts and leases. Job runs past the shorter keep time left without lease rows go
-- too (a fast claim round writes none: reports of its leases are taken until then).
-- Returns (purged, held):
-- messages deleted, and messages newly held for review by this call.
CREATE OR REPLACE FUNCTION mailrun.purge_finished(keep_sent interval, keep_failed interval,
                                       review text[], max_rows integer)
RETURNS TABLE (purged bigint, held bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_purged bigint;
    v_held bigint;
BEGIN
    IF keep_sent IS NULL OR keep_failed IS NULL OR keep_sent < interval '0'
       OR keep_failed < interval '0' THEN
        PERFORM mailrun.refuse(NULL, 'purge_finished: keep times must be given and not negative');
    END IF;
    IF max_rows IS NULL OR max_rows < 1 THEN
        PERFORM mailrun.refuse(NULL, 'purge_finished: max_rows must be at least 1');
    END IF;
    review := coalesce(review, '{}');

    WITH due AS (
        SELECT m.id, mailrun.kept_for_review(m, review) AS keep
        FROM mailrun.messages m
        WHERE m.finished_at IS NOT NULL AND NOT m.held_for_review
          AND m.finished_at < now() - least(keep_sent, keep_failed)
          AND m.finished_at < now() - CASE WHEN m.state = 'sent' THEN keep_sent ELSE keep_failed END
        ORDER BY m.finished_at
        LIMIT max_rows
        FOR UPDATE SKIP LOCKED
    ), hold AS (
        UPDATE mailrun.messages m SET held_for_review = true
        WHERE m.id IN (SELECT d.id FROM due d WHERE d.keep)
        RETURNING m.id
    ), gone AS (
        DELETE FROM mailrun.messages m
        WHERE m.id IN (SELECT d.id FROM due d WHERE NOT d.keep)
        RETURNING m.id
    ), gone_leases AS (
        -- No foreign key cascades to leases (migration 12): they go with their message.
        DELETE FROM mailrun.leases l WHERE l.message_id IN (SELECT g.id FROM gone g)
    )
    SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM hold)
    INTO v_purged, v_held;

    DELETE FROM mailrun.job_runs j
    WHERE j.created_at < now() - least(keep_sent, keep_failed)
      AND j.lease_expires_at < now()
      AND NOT EXISTS (SELECT 1 FROM mailrun.leases l WHERE l.job_run_id = j.id);

    purged := v_purged;
    held := v_held;
    RETURN NEXT;
END
$$;
