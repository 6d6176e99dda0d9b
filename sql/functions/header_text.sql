-- A single-line text field (no CR/LF), or NULL when absent.
CREATE OR REPLACE FUNCTION mailrun.header_text(pos integer, field text, v jsonb) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    IF v IS NULL OR jsonb_typeof(v) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(v) <> 'string' THEN
        PERFORM mailrun.refuse(pos, format('"%s" must be a string', field));
    END IF;
    IF v #>> '{}' ~ '[\r\n]' THEN
        PERFORM mailrun.refuse(pos, format('"%s" contains CR or LF', field));
    END IF;
    RETURN v #>> '{}';
END
$$;
