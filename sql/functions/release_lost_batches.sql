-- Messages of batches a runner never received: leased to `p_runner` in a job run that
-- its JobRunRequest does not list among the batches it holds (`p_held`: received in the
-- last hour, spooled, or with results not yet acknowledged). The answer that carried such
-- a batch was lost on the way (a timeout, a dropped connection), so nobody will deliver
-- it; its leases are ended now and the reap that follows in the same transaction returns
-- the messages to the queue, in their place in line, with their quota reservations given
-- back, instead of after the lease (10 minutes by default). A runner asks again only
-- after the answer to its previous request, so no batch of this request's own claim can
-- be missing yet. Returns how many messages were released.
CREATE OR REPLACE FUNCTION mailrun.release_lost_batches(p_runner text, p_held text[])
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_count bigint;
BEGIN
    UPDATE mailrun.messages m SET lease_expires_at = now() - interval '1 second'
    WHERE m.id IN (
        SELECT d.id FROM mailrun.messages d
        WHERE d.state = 'leased' AND d.lease_runner = p_runner
          AND NOT d.job_run_id::text = ANY (p_held)
        FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;
