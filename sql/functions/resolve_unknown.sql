-- Decides a message whose outcome is unknown: 'sent' (the operator knows it arrived),
-- 'failed', or 'retry' (due now). Returns the state before.
CREATE OR REPLACE FUNCTION mailrun.resolve_unknown(p_id bigint, p_as text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    m mailrun.messages%ROWTYPE;
    v_pending text[];
BEGIN
    IF p_as IS NULL OR p_as NOT IN ('sent', 'failed', 'retry') THEN
        PERFORM mailrun.refuse(NULL, 'resolve as sent, failed or retry');
    END IF;
    SELECT * INTO m FROM mailrun.messages WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'no_data_found', MESSAGE = format('no message %s', p_id);
    END IF;
    IF m.state <> 'unknown' THEN
        PERFORM mailrun.refuse(NULL, format('message %s is %s, not unknown', p_id, m.state));
    END IF;
    v_pending := mailrun.pending(m.to_addrs || m.cc_addrs || m.bcc_addrs,
                                 m.recipients_sent, m.recipients_failed);
    IF p_as = 'retry' THEN
        UPDATE mailrun.messages SET state = 'queued', next_attempt_at = now() WHERE id = p_id;
    ELSIF p_as = 'sent' THEN
        UPDATE mailrun.messages SET state = 'sent', finished_at = now(),
            recipients_sent = recipients_sent || v_pending,
            last_text = 'marked sent by an operator after an unknown outcome'
        WHERE id = p_id;
    ELSE
        UPDATE mailrun.messages SET state = 'failed', finished_at = now(),
            recipients_failed = recipients_failed || v_pending,
            last_text = 'marked failed by an operator after an unknown outcome'
        WHERE id = p_id;
    END IF;
    RETURN m.state;
END
$$;
