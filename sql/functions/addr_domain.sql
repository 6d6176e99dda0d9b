-- The domain of an address (lowercase), or NULL.
CREATE OR REPLACE FUNCTION mailrun.addr_domain(addr text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT lower(substring(mailrun.addr_spec(addr) FROM '@([^@]+)$'))
$$;
