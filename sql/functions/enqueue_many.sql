-- Enqueues a JSON array of messages, all or nothing; returns the ids in input order.
-- A bad element raises invalid_parameter_value naming its position (DETAIL "position N").
CREATE OR REPLACE FUNCTION mailrun.enqueue_many(ms jsonb) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
DECLARE
    e jsonb;
    n integer := 0;
BEGIN
    IF ms IS NULL OR jsonb_typeof(ms) <> 'array' THEN
        PERFORM mailrun.refuse(NULL, 'enqueue_many takes a JSON array of messages');
    END IF;
    FOR e IN SELECT value FROM jsonb_array_elements(ms) LOOP
        n := n + 1;
        RETURN NEXT mailrun.enqueue_at(n, e);
    END LOOP;
END
$$;
