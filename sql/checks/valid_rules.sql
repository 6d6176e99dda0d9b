-- Is `r` a well-formed list of finality rules (see mailrun.policy.rules)?
CREATE OR REPLACE FUNCTION mailrun.valid_rules(r jsonb) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    e jsonb;
    k text;
BEGIN
    IF r IS NULL THEN
        RETURN true;
    END IF;
    IF jsonb_typeof(r) <> 'array' THEN
        RETURN false;
    END IF;
    FOR e IN SELECT value FROM jsonb_array_elements(r) LOOP
        IF jsonb_typeof(e) <> 'object' THEN
            RETURN false;
        END IF;
        FOR k IN SELECT jsonb_object_keys(e) LOOP
            IF k NOT IN ('code', 'enhanced', 'permanent') THEN
                RETURN false;
            END IF;
        END LOOP;
        IF jsonb_typeof(e->'permanent') IS DISTINCT FROM 'boolean' THEN
            RETURN false;
        END IF;
        IF e->>'code' IS NULL AND e->>'enhanced' IS NULL THEN
            RETURN false;
        END IF;
        IF e->>'code' IS NOT NULL AND (jsonb_typeof(e->'code') <> 'string'
                OR e->>'code' !~ '^[245][0-9x][0-9x]$') THEN
            RETURN false;
        END IF;
        IF e->>'enhanced' IS NOT NULL AND (jsonb_typeof(e->'enhanced') <> 'string'
                OR e->>'enhanced' !~ '^[245](\.[0-9]{1,3}){0,2}$') THEN
            RETURN false;
        END IF;
    END LOOP;
    RETURN true;
END
$$;
