-- Counts one message against a quota now (call with the row locked).
CREATE OR REPLACE FUNCTION mailrun.quota_take(p_id bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    q mailrun.quotas%ROWTYPE;
    k text;
BEGIN
    SELECT * INTO q FROM mailrun.quotas WHERE id = p_id;
    FOREACH k IN ARRAY ARRAY['second', 'hour', 'day', 'window'] LOOP
        CONTINUE WHEN (CASE k WHEN 'second' THEN q.per_second WHEN 'hour' THEN q.per_hour
            WHEN 'day' THEN q.per_day ELSE q.window_limit END) IS NULL;
        INSERT INTO mailrun.quota_usage AS u (quota_id, kind, bucket, used)
        VALUES (p_id, k, mailrun.quota_bucket(k, now(), q.window_seconds), 1)
        ON CONFLICT (quota_id, kind, bucket) DO UPDATE SET used = u.used + 1;
    END LOOP;
END
$$;
