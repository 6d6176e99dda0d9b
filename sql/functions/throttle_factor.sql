-- The throttle factor in force now: the stored one, doubled per quiet recover period.
CREATE OR REPLACE FUNCTION mailrun.throttle_factor(p_scope text, p_key text) RETURNS double precision
LANGUAGE sql STABLE AS $$
    SELECT coalesce((
        SELECT least(1.0, t.factor * power(2.0, least(60, floor(
            extract(epoch FROM now() - coalesce(t.last_signal_at, now()))
            / s.throttle_recover_seconds))))
        FROM mailrun.throttles t, mailrun.quota_settings s
        WHERE t.scope = p_scope AND t.key = p_key), 1.0)
$$;
