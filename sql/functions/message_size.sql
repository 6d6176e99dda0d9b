-- The size a message is held to (policy.max_message_bytes) before its custom headers and
-- attachments: sender, reply-to, subject, bodies and the recipients as one list. One
-- place for enqueue_at and enqueue_many's plain path. Plain SQL, inlined where used.
CREATE OR REPLACE FUNCTION mailrun.message_size(p_from text, p_reply text, p_subject text,
    p_text text, p_html text, p_recipients text[]) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT octet_length(p_from)::bigint + octet_length(coalesce(p_reply, ''))
        + octet_length(p_subject) + octet_length(coalesce(p_text, ''))
        + octet_length(coalesce(p_html, ''))
        + octet_length(array_to_string(p_recipients, ', '))
$$;
