-- Room left in a quota now (NULL = unlimited), and when a full quota frees up with a
-- human reason naming the binding cap. Call with the quota row locked.
CREATE OR REPLACE FUNCTION mailrun.quota_room(q mailrun.quotas, factor double precision,
    OUT room integer, OUT free_at timestamptz, OUT reason text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    k text;
    cap integer;
    used integer;
    r integer;
    v_free timestamptz;
    bs integer := mailrun.window_bucket_seconds(q.window_seconds);
    label text;
BEGIN
    FOREACH k IN ARRAY ARRAY['second', 'hour', 'day', 'window'] LOOP
        cap := mailrun.scaled(CASE k WHEN 'second' THEN q.per_second WHEN 'hour' THEN q.per_hour
            WHEN 'day' THEN q.per_day ELSE q.window_limit END, factor);
        CONTINUE WHEN cap IS NULL;
        IF k = 'window' THEN
            -- Buckets overlapping the window count whole: conservative, never over.
            SELECT coalesce(sum(u.used), 0) INTO used FROM mailrun.quota_usage u
            WHERE u.quota_id = q.id AND u.kind = 'window'
              AND u.bucket > now() - make_interval(secs => q.window_seconds + bs);
        ELSE
            SELECT coalesce(sum(u.used), 0) INTO used FROM mailrun.quota_usage u
            WHERE u.quota_id = q.id AND u.kind = k
              AND u.bucket = mailrun.quota_bucket(k, now(), q.window_seconds);
        END IF;
        r := cap - used;
        room := least(coalesce(room, r), r);
        IF r <= 0 THEN
            IF k = 'window' THEN
                -- Frees when enough of the oldest buckets have left the window for one
                -- more to fit.
                SELECT min(x.bucket) + make_interval(secs => q.window_seconds + bs) INTO v_free
                FROM (SELECT u.bucket, sum(u.used) OVER (ORDER BY u.bucket) AS cum
                      FROM mailrun.quota_usage u
                      WHERE u.quota_id = q.id AND u.kind = 'window'
                        AND u.bucket > now() - make_interval(secs => q.window_seconds + bs)) x
                WHERE used - x.cum < cap;
                v_free := coalesce(v_free, now() + make_interval(secs => bs));
            ELSE
                v_free := mailrun.quota_bucket(k, now(), NULL) + CASE k
                    WHEN 'second' THEN interval '1 second' WHEN 'hour' THEN interval '1 hour'
                    ELSE interval '1 day' END;
            END IF;
            IF free_at IS NULL OR v_free > free_at THEN
                free_at := v_free;
                label := CASE k
                    WHEN 'second' THEN format('rate %s/s', cap)
                    WHEN 'hour' THEN format('hourly cap %s/h', cap)
                    WHEN 'day' THEN format('daily cap %s/day', cap)
                    ELSE format('window cap %s per %s s', cap, q.window_seconds) END;
                reason := format('%s %s %s%s until %s', q.scope, q.key, label,
                    CASE WHEN factor < 1 THEN format(' (throttled to %s%%)', round((factor * 100)::numeric, 1)) ELSE '' END,
                    to_char(v_free AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC');
            END IF;
        END IF;
    END LOOP;
END
$$;
