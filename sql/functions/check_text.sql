-- Refuses a string over its field's limit, or holding a character XML 1.0 cannot carry.
CREATE OR REPLACE FUNCTION mailrun.check_text(pos integer, what text, v text, max_chars integer)
RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF v IS NULL THEN
        RETURN;
    END IF;
    IF max_chars IS NOT NULL AND char_length(v) > max_chars THEN
        PERFORM mailrun.refuse(pos, format('%s is %s characters, over the limit of %s',
            what, char_length(v), max_chars));
    END IF;
    IF mailrun.has_uncarriable_char(v) THEN
        PERFORM mailrun.refuse(pos, format(
            '%s contains a control character the protocol cannot carry (only tab, CR and LF are allowed)',
            what));
    END IF;
END
$$;
