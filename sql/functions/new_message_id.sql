-- A Message-ID for a message that brought none: a random uuid at the policy's
-- message_id_domain, or else at the sender's domain. One place for enqueue_at and
-- enqueue_many's plain path.
CREATE OR REPLACE FUNCTION mailrun.new_message_id(p_domain text, p_from text) RETURNS text
LANGUAGE sql VOLATILE AS $$
    SELECT '<' || gen_random_uuid() || '@'
        || coalesce(p_domain, substring(mailrun.addr_spec(p_from) FROM '@([^@]+)$')) || '>'
$$;
