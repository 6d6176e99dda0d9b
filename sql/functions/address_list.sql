-- An address list field: a JSON string or array of strings; each a valid mailbox.
CREATE OR REPLACE FUNCTION mailrun.address_list(pos integer, field text, v jsonb) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    out text[] := '{}';
    e jsonb;
BEGIN
    IF v IS NULL OR jsonb_typeof(v) = 'null' THEN
        RETURN out;
    END IF;
    IF jsonb_typeof(v) = 'string' THEN
        v := jsonb_build_array(v);
    END IF;
    IF jsonb_typeof(v) <> 'array' THEN
        PERFORM mailrun.refuse(pos, format('"%s" must be a string or an array of strings', field));
    END IF;
    FOR e IN SELECT value FROM jsonb_array_elements(v) LOOP
        IF jsonb_typeof(e) <> 'string' THEN
            PERFORM mailrun.refuse(pos, format('"%s" must contain strings', field));
        END IF;
        IF e #>> '{}' ~ '[\r\n]' THEN
            PERFORM mailrun.refuse(pos, format('"%s" contains CR or LF', field));
        END IF;
        IF mailrun.addr_spec(e #>> '{}') IS NULL THEN
            PERFORM mailrun.refuse(pos, format('"%s": invalid address %s', field, e));
        END IF;
        out := out || (e #>> '{}');
    END LOOP;
    RETURN out;
END
$$;
