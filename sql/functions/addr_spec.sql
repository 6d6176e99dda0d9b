-- The addr-spec of "Display Name <local@domain>" or "local@domain"; NULL when malformed.
-- The same rule as dispatch-admin's (src/dispatcher/message.rs, tested on one corpus):
-- a display name is empty, a quoted string, or a phrase of atext, dots, spaces and
-- non-ASCII letters; the addr-spec is a dot-atom local part and a dotted domain.
CREATE OR REPLACE FUNCTION mailrun.addr_spec(mailbox text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    m text := btrim(mailbox, E' \t');
    a text;
    d text;
    open integer;
BEGIN
    IF m IS NULL THEN
        RETURN NULL;
    END IF;
    IF right(m, 1) = '>' THEN
        IF strpos(m, '<') = 0 THEN
            RETURN NULL;
        END IF;
        open := char_length(m) - strpos(reverse(m), '<') + 1;
        d := btrim(left(m, open - 1), E' \t');
        a := substr(m, open + 1, char_length(m) - open - 1);
        IF d <> '' AND d !~ '^"([^"\\\r\n]|\\[^\r\n])*"$'
           AND d !~ '^[A-Za-z0-9!#$%&''*+/=?^_`{|}~. \u0080-\uffff-]+$' THEN
            RETURN NULL;
        END IF;
    ELSE
        a := m;
    END IF;
    IF a ~ '^[A-Za-z0-9!#$%&''*+/=?^_`{|}~.-]+@([A-Za-z0-9\u0080-\uffff]([A-Za-z0-9\u0080-\uffff-]*[A-Za-z0-9\u0080-\uffff])?\.)*[A-Za-z0-9\u0080-\uffff]([A-Za-z0-9\u0080-\uffff-]*[A-Za-z0-9\u0080-\uffff])?$'
       AND a !~ '^\.|\.\.|\.@' THEN
        RETURN a;
    END IF;
    RETURN NULL;
END
$$;
