-- Does a reservation taken at `p_at` still count against one of the quota's caps now?
-- (One from an earlier hour or day frees nothing in the current bucket.)
CREATE OR REPLACE FUNCTION mailrun.release_frees_now(q mailrun.quotas, p_at timestamptz) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT (q.per_second IS NOT NULL
            AND mailrun.quota_bucket('second', p_at, NULL) = mailrun.quota_bucket('second', now(), NULL))
        OR (q.per_hour IS NOT NULL
            AND mailrun.quota_bucket('hour', p_at, NULL) = mailrun.quota_bucket('hour', now(), NULL))
        OR (q.per_day IS NOT NULL
            AND mailrun.quota_bucket('day', p_at, NULL) = mailrun.quota_bucket('day', now(), NULL))
        OR (q.window_seconds IS NOT NULL
            AND mailrun.quota_bucket('window', p_at, q.window_seconds) > now() - make_interval(
                secs => q.window_seconds + mailrun.window_bucket_seconds(q.window_seconds)))
$$;
