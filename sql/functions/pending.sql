-- Recipients of a message that still need a delivery (not yet sent or failed), without
-- parsing any address when nothing was sent or failed yet (the common case). plpgsql: a
-- SQL function with a FROM clause is never inlined and costs a query start per call.
CREATE OR REPLACE FUNCTION mailrun.pending(addrs text[], sent text[], failed text[])
RETURNS text[]
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_done text[];
    v_out text[] := '{}';
    a text;
BEGIN
    IF addrs IS NULL OR cardinality(addrs) = 0 THEN
        RETURN '{}';
    END IF;
    v_done := coalesce(sent, '{}') || coalesce(failed, '{}');
    IF cardinality(v_done) = 0 THEN
        RETURN addrs;
    END IF;
    v_done := ARRAY(SELECT lower(mailrun.addr_spec(x)) FROM unnest(v_done) AS x);
    FOREACH a IN ARRAY addrs LOOP
        -- A NULL (unparsable) address matches nothing.
        IF (lower(mailrun.addr_spec(a)) = ANY (v_done)) IS NOT TRUE THEN
            v_out := v_out || a;
        END IF;
    END LOOP;
    RETURN v_out;
END
$$;
