-- Whether `v` holds a character XML 1.0 cannot carry (C0 controls other than tab, LF and
-- CR; U+FFFE, U+FFFF; a NUL never reaches here, jsonb refuses it). One place for the set:
-- check_text and check_carriable's shortcut both ask. Plain SQL, inlined where used.
CREATE OR REPLACE FUNCTION mailrun.has_uncarriable_char(v text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT v ~ '[\u0001-\u0008\u000b\u000c\u000e-\u001f\uffff\ufffe]'
$$;
