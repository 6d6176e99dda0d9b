-- The bucket an instant falls in, per kind (UTC calendar hour and day).
CREATE OR REPLACE FUNCTION mailrun.quota_bucket(kind text, at timestamptz, window_seconds integer)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE kind
        WHEN 'second' THEN date_trunc('second', at)
        WHEN 'hour' THEN date_trunc('hour', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
        WHEN 'day' THEN date_trunc('day', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
        ELSE to_timestamp(floor(extract(epoch FROM at)
                / mailrun.window_bucket_seconds(window_seconds))
                * mailrun.window_bucket_seconds(window_seconds))
    END
$$;
