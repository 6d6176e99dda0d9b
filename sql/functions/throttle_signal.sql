-- Records a throttle signal for an account or a domain: unless already paused, the
-- factor halves (not below throttle_min_factor) and the scope pauses for
-- least(max_pause, pause / factor) seconds. Signals during a pause (mail that was
-- already on its way) only update the last answer.
CREATE OR REPLACE FUNCTION mailrun.throttle_signal(p_scope text, p_key text, p_code integer,
    p_enhanced text, p_text text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s mailrun.quota_settings%ROWTYPE;
    t mailrun.throttles%ROWTYPE;
    f double precision;
BEGIN
    IF p_key IS NULL THEN
        RETURN;
    END IF;
    SELECT * INTO s FROM mailrun.quota_settings;
    INSERT INTO mailrun.throttles (scope, key) VALUES (p_scope, p_key) ON CONFLICT DO NOTHING;
    SELECT * INTO t FROM mailrun.throttles WHERE scope = p_scope AND key = p_key FOR UPDATE;
    IF t.paused_until IS NULL OR t.paused_until <= now() THEN
        f := greatest(s.throttle_min_factor, mailrun.throttle_factor(p_scope, p_key) / 2);
        UPDATE mailrun.throttles SET factor = f, last_signal_at = now(),
            paused_until = now() + make_interval(secs =>
                least(s.throttle_max_pause_seconds::double precision, s.throttle_pause_seconds / f))
        WHERE scope = p_scope AND key = p_key;
    END IF;
    UPDATE mailrun.throttles SET signals = signals + 1, last_code = p_code,
        last_enhanced = p_enhanced, last_text = left(p_text, 500)
    WHERE scope = p_scope AND key = p_key;
END
$$;
