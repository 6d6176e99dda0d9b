-- Adds a recurring job for applications that use the database directly (what
-- `dispatch-admin schedule add` and the HTTP API also call); returns its id. The
-- template is checked by a trial enqueue that is rolled back; the cron spec's shape is
-- checked here, its fields by dispatch-tick (which reports a spec it cannot read), and
-- the time zone against PostgreSQL's list of IANA names.
CREATE OR REPLACE FUNCTION mailrun.add_recurring_job(
    p_cron text,
    p_template jsonb,
    p_time_zone text DEFAULT 'UTC',
    p_name text DEFAULT NULL,
    p_max_runs integer DEFAULT NULL,
    p_until timestamptz DEFAULT NULL,
    p_max_lateness_seconds integer DEFAULT 86400
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    v_msg text;
BEGIN
    IF p_cron IS NULL OR NOT (
        p_cron ~ '^@(hourly|daily|midnight|weekly|monthly|yearly|annually)$'
        OR p_cron ~ '^\s*\S+(\s+\S+){4}\s*$') THEN
        PERFORM mailrun.refuse(NULL, format(
            'cron spec %L: want 5 fields ("0 9 * * MON") or @hourly, @daily, @weekly, @monthly, @yearly',
            p_cron));
    END IF;
    IF p_template IS NULL OR jsonb_typeof(p_template) <> 'object' THEN
        PERFORM mailrun.refuse(NULL, 'template: must be a JSON object');
    END IF;
    IF p_template ? 'send_at' OR p_template ? 'message_id' THEN
        PERFORM mailrun.refuse(NULL,
            'template: "send_at" and "message_id" are set per occurrence; remove them');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = p_time_zone) THEN
        PERFORM mailrun.refuse(NULL, format('unknown time zone %L', p_time_zone));
    END IF;
    IF p_max_runs IS NOT NULL AND p_max_runs < 1 THEN
        PERFORM mailrun.refuse(NULL, 'the run count must be at least 1');
    END IF;
    IF p_until IS NOT NULL AND p_until <= now() THEN
        PERFORM mailrun.refuse(NULL, format('the end time %s is in the past', p_until));
    END IF;
    IF p_max_lateness_seconds IS NULL OR p_max_lateness_seconds NOT BETWEEN 60 AND 31622400 THEN
        PERFORM mailrun.refuse(NULL, 'the lateness limit must be between 1 minute and 366 days');
    END IF;
    -- The trial enqueue: refused now with the procedure's own words, not at 3 a.m.
    BEGIN
        PERFORM mailrun.enqueue(p_template);
        RAISE EXCEPTION USING ERRCODE = 'MRTRY';
    EXCEPTION
        WHEN SQLSTATE 'MRTRY' THEN NULL;
        WHEN invalid_parameter_value THEN
            GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT;
            PERFORM mailrun.refuse(NULL, 'template: ' || v_msg);
    END;
    INSERT INTO mailrun.recurring_jobs
        (name, cron, time_zone, template, max_lateness_seconds, max_runs, until)
    VALUES (p_name, btrim(p_cron), p_time_zone, p_template, p_max_lateness_seconds,
            p_max_runs, p_until)
    ON CONFLICT (name) DO NOTHING
    RETURNING id INTO v_id;
    IF v_id IS NULL THEN
        PERFORM mailrun.refuse(NULL, format('a recurring job named %L exists already', p_name));
    END IF;
    RETURN v_id;
END
$$;
