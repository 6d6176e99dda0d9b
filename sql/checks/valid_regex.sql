-- Is `p` a valid (case-insensitive POSIX) regular expression?
CREATE OR REPLACE FUNCTION mailrun.valid_regex(p text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    PERFORM '' ~* p;
    RETURN true;
EXCEPTION WHEN invalid_regular_expression THEN
    RETURN false;
END
$$;
