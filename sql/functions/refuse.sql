-- Raises an invalid_parameter_value error; `pos` (1-based index in a bulk call) goes to
-- DETAIL as "position N" so callers can name the offending line.
CREATE OR REPLACE FUNCTION mailrun.refuse(pos integer, msg text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF pos IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = msg;
    END IF;
    RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
        MESSAGE = format('message %s: %s', pos, msg), DETAIL = format('position %s', pos);
END
$$;
