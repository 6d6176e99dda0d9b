-- Records a JSON array of reported outcomes (each as mailrun.apply_result takes it) and
-- returns (position, what happened) for each, exactly as apply_result one by one would.
-- The common report, a message sent to every recipient under its current lease, is
-- recorded for all such elements at once (an attempt each, the message 'sent'): one
-- plpgsql call per result cost four times as much. Everything else (another outcome,
-- per-recipient answers, late, duplicate or foreign tokens, a message named twice) goes
-- through apply_result in array order. Every reported message is locked first, in id
-- order, so two transactions reporting on the same messages cannot deadlock.
CREATE OR REPLACE FUNCTION mailrun.apply_results(p_runner text, rs jsonb)
RETURNS TABLE (n bigint, status text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_ids bigint[];
    v_tokens uuid[];
BEGIN
    IF rs IS NULL OR jsonb_typeof(rs) <> 'array' THEN
        PERFORM mailrun.refuse(NULL, 'apply_results takes a JSON array of results');
    END IF;
    PERFORM 1 FROM mailrun.messages m
        WHERE m.id = ANY (ARRAY(
            SELECT (e->>'message_id')::bigint FROM jsonb_array_elements(rs) e
            WHERE jsonb_typeof(e) = 'object' AND jsonb_typeof(e->'message_id') = 'number'))
        ORDER BY m.id FOR UPDATE;

    WITH r AS (
        SELECT t.e, (t.e->>'message_id')::bigint AS id,
            mailrun.as_uuid(t.e->>'lease_token') AS token,
            mailrun.as_uuid(t.e->>'job_run_id') AS job_run_id,
            t.e->'job_run_id' IS NULL AS no_job_run,
            count(*) OVER (PARTITION BY t.e->'message_id') AS times
        FROM jsonb_array_elements(rs) AS t(e)
        WHERE jsonb_typeof(t.e) = 'object' AND jsonb_typeof(t.e->'message_id') = 'number'
    ), fast AS (
        SELECT r.e, m.id, r.token, coalesce(l.job_run_id, j.id) AS job_run_id
        FROM r
        JOIN mailrun.messages m ON m.id = r.id
        LEFT JOIN mailrun.leases l ON l.lease_token = r.token AND l.message_id = m.id
        -- A fast claim round's token is derived from its job run (see apply_result).
        LEFT JOIN mailrun.job_runs j ON l.lease_token IS NULL
            AND (r.job_run_id IS NOT NULL OR r.no_job_run)
            AND j.id = coalesce(r.job_run_id, m.job_run_id)
            AND j.lease_secret IS NOT NULL
            AND mailrun.lease_token(j.lease_secret, m.id) = r.token
        WHERE r.times = 1
          AND r.e->>'outcome' = 'sent'
          AND r.token IS NOT NULL
          AND (jsonb_typeof(r.e->'recipients') IS DISTINCT FROM 'array'
               OR jsonb_array_length(r.e->'recipients') = 0)
          AND m.state = 'leased' AND m.lease_token = r.token
          AND coalesce(l.runner_id, j.runner_id) = p_runner
          AND NOT EXISTS (SELECT 1 FROM mailrun.delivery_attempts a
                          WHERE a.message_id = m.id AND a.lease_token = r.token)
    ), recorded AS (
        INSERT INTO mailrun.delivery_attempts (message_id, lease_token, job_run_id, runner_id,
            outcome, smtp_code, enhanced_status, text, recipients, attempted_at, late)
        SELECT f.id, f.token, f.job_run_id, p_runner, 'sent',
            CASE WHEN jsonb_typeof(f.e->'smtp_code') = 'number' THEN (f.e->>'smtp_code')::integer END,
            f.e->>'enhanced_status', f.e->>'text', '[]'::jsonb,
            coalesce((f.e->>'attempted_at')::timestamptz, now()), false
        FROM fast f
        ORDER BY f.id
        RETURNING message_id, lease_token
    )
    SELECT array_agg(message_id), array_agg(lease_token) INTO v_ids, v_tokens FROM recorded;

    IF v_ids IS NOT NULL THEN
        -- As apply_result leaves a message all of whose pending recipients were accepted.
        UPDATE mailrun.messages m SET
            state = CASE WHEN cardinality(m.recipients_sent || mailrun.pending(
                         m.to_addrs || m.cc_addrs || m.bcc_addrs, m.recipients_sent,
                         m.recipients_failed)) > 0 THEN 'sent' ELSE 'failed' END,
            attempts = m.attempts + 1,
            finished_at = now(),
            lease_runner = NULL, lease_token = NULL, lease_expires_at = NULL,
            recipients_sent = m.recipients_sent || mailrun.pending(
                m.to_addrs || m.cc_addrs || m.bcc_addrs, m.recipients_sent, m.recipients_failed),
            last_code = a.smtp_code,
            last_enhanced = a.enhanced_status,
            last_text = a.text,
            last_attempt_at = a.attempted_at
        FROM unnest(v_ids, v_tokens) AS f(id, token)
        JOIN mailrun.delivery_attempts a ON a.message_id = f.id AND a.lease_token = f.token
        WHERE m.id = f.id;
        DELETE FROM mailrun.quota_reservations q WHERE q.lease_token = ANY (v_tokens);
    END IF;

    -- The function scan yields the elements in order: the rest go one by one, in order.
    RETURN QUERY
        SELECT t.n, CASE
            WHEN jsonb_typeof(t.e) = 'object' AND jsonb_typeof(t.e->'message_id') = 'number'
                 AND v_ids IS NOT NULL
            THEN CASE WHEN (t.e->>'message_id')::bigint = ANY (v_ids) THEN 'applied'
                      ELSE mailrun.apply_result(p_runner, t.e) END
            ELSE mailrun.apply_result(p_runner, t.e) END
        FROM jsonb_array_elements(rs) WITH ORDINALITY AS t(e, n);
END
$$;
