-- Takes a runner out of service at once (`dispatch-admin runner revoke`): disables it, so
-- its requests are refused (RunnerDisabled), and returns the messages leased to it to
-- the queue now, in their place in line and with their quota reservations given back,
-- instead of when their lease ends. Its leases stay on record: a report it sends later
-- (after `runner enable`) is recorded as late, never applied twice. Returns how many
-- messages were re-queued.
CREATE OR REPLACE FUNCTION mailrun.revoke_runner(p_runner text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_count bigint;
BEGIN
    UPDATE mailrun.runners SET enabled = false WHERE id = p_runner;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'no_data_found', MESSAGE = format('no runner %L', p_runner);
    END IF;
    UPDATE mailrun.messages SET lease_expires_at = now() - interval '1 second'
    WHERE state = 'leased' AND lease_runner = p_runner;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    PERFORM mailrun.reap_expired();
    RETURN v_count;
END
$$;
