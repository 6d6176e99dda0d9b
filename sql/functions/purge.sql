-- Deletes finished messages (with their attempts and leases) older than `age`, and job
-- runs left without leases; returns the number of messages deleted.
CREATE OR REPLACE FUNCTION mailrun.purge(age interval) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_count bigint;
BEGIN
    DELETE FROM mailrun.messages WHERE finished_at < now() - age;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    DELETE FROM mailrun.job_runs j WHERE j.created_at < now() - age
        AND NOT EXISTS (SELECT 1 FROM mailrun.leases l WHERE l.job_run_id = j.id);
    RETURN v_count;
END
$$;
