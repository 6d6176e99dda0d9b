-- Number of messages due now (queued or deferred with next_attempt_at <= now()).
CREATE OR REPLACE FUNCTION mailrun.count_due() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT count(*) FROM mailrun.messages
    WHERE state IN ('queued', 'deferred') AND next_attempt_at <= now()
$$;
