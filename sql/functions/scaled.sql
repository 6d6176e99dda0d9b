-- A cap scaled by a throttle factor; never below 1.
CREATE OR REPLACE FUNCTION mailrun.scaled(cap integer, factor double precision) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN cap IS NULL THEN NULL ELSE greatest(1, floor(cap * factor)::integer) END
$$;
