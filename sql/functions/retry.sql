-- Makes a message due now with a fresh give-up time: deferred, failed, expired or
-- cancelled messages, and sent ones whose failed recipients should be tried again
-- (their failures are forgotten; accepted recipients are not sent to twice).
-- Returns its state before.
CREATE OR REPLACE FUNCTION mailrun.retry(p_id bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    m mailrun.messages%ROWTYPE;
BEGIN
    SELECT * INTO m FROM mailrun.messages WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'no_data_found', MESSAGE = format('no message %s', p_id);
    END IF;
    IF m.state = 'leased' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('message %s is leased to runner %s; wait for its report', p_id, m.lease_runner);
    END IF;
    IF m.state = 'sent' AND cardinality(m.recipients_failed) = 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('message %s was sent to every recipient', p_id);
    END IF;
    UPDATE mailrun.messages SET state = 'queued', finished_at = NULL, next_attempt_at = now(),
        expires_at = now() + make_interval(secs => (SELECT give_up_after_seconds FROM mailrun.policy)),
        recipients_failed = '{}'
    WHERE id = p_id;
    RETURN m.state;
END
$$;
