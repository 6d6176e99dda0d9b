-- Enqueues one message (a JSON object, fields in docs/queue.md); returns its id.
CREATE OR REPLACE FUNCTION mailrun.enqueue(m jsonb) RETURNS bigint
LANGUAGE sql AS $$
    SELECT mailrun.enqueue_at(NULL, m)
$$;
