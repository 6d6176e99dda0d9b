-- Delay before the next try after `attempts` tries: min * 2^(attempts-1), capped at max.
CREATE OR REPLACE FUNCTION mailrun.backoff_seconds(attempts integer) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT least(p.backoff_max_seconds::bigint,
                 p.backoff_min_seconds::bigint * (2::bigint ^ least(greatest(attempts - 1, 0), 40))::bigint)
    FROM mailrun.policy p
$$;
