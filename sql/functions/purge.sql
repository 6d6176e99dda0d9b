-- Deletes finished messages (with their attempts and leases) older than `age`, and job
-- runs as old left without lease rows (a fast claim round writes none: its reports are
-- checked against the job run, so they are taken until the job run goes); returns the
-- number of messages deleted.
CREATE OR REPLACE FUNCTION mailrun.purge(age interval) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_count bigint;
BEGIN
    -- No foreign key cascades to leases (migration 12): they go with their message.
    WITH gone AS (
        DELETE FROM mailrun.messages WHERE finished_at < now() - age RETURNING id
    ), gone_leases AS (
        DELETE FROM mailrun.leases l WHERE l.message_id IN (SELECT g.id FROM gone g)
    )
    SELECT count(*) INTO v_count FROM gone;
    -- Never a job run whose leases still run: a fast round's reports are checked
    -- against it.
    DELETE FROM mailrun.job_runs j WHERE j.created_at < now() - age
        AND j.lease_expires_at < now()
        AND NOT EXISTS (SELECT 1 FROM mailrun.leases l WHERE l.job_run_id = j.id);
    RETURN v_count;
END
$$;
