-- Cancels a message that is not finished; returns its state before. A leased message
-- may already be on its way: its late report is still recorded.
CREATE OR REPLACE FUNCTION mailrun.cancel(p_id bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_state text;
BEGIN
    SELECT state INTO v_state FROM mailrun.messages WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'no_data_found', MESSAGE = format('no message %s', p_id);
    END IF;
    IF v_state NOT IN ('queued', 'deferred', 'leased') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('message %s is %s; only queued, deferred or leased messages can be cancelled', p_id, v_state);
    END IF;
    UPDATE mailrun.messages SET state = 'cancelled', finished_at = now(),
        lease_runner = NULL, lease_token = NULL, lease_expires_at = NULL
    WHERE id = p_id;
    RETURN v_state;
END
$$;
