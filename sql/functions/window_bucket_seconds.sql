-- Size of a sliding window's buckets: 1/60 of the window (at least 1 s).
CREATE OR REPLACE FUNCTION mailrun.window_bucket_seconds(window_seconds integer) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT greatest(1, coalesce(window_seconds, 60) / 60)
$$;
