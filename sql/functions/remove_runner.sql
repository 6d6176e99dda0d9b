-- Removes a runner (`dispatch-admin runner remove`): revokes it first (its leased
-- messages go back to the queue now), then deletes it with its job runs, leases and
-- runner quotas. Its delivery attempts stay, naming it. Returns how many messages were
-- re-queued.
CREATE OR REPLACE FUNCTION mailrun.remove_runner(p_runner text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_count bigint;
BEGIN
    v_count := mailrun.revoke_runner(p_runner);
    DELETE FROM mailrun.quotas WHERE scope = 'runner' AND key = p_runner;
    -- Its job runs go by cascade from the runner; their leases (no foreign key since
    -- migration 12) go here.
    DELETE FROM mailrun.leases l USING mailrun.job_runs j
    WHERE l.job_run_id = j.id AND j.runner_id = p_runner;
    DELETE FROM mailrun.runners WHERE id = p_runner;
    RETURN v_count;
END
$$;
