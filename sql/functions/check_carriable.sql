-- Every text field of a message object against mailrun.field_limits. Values of the
-- wrong type are left to enqueue_at, which names them.
CREATE OR REPLACE FUNCTION mailrun.check_carriable(pos integer, m jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    lim jsonb;
    f text;
    e jsonb;
BEGIN
    IF m IS NULL OR jsonb_typeof(m) <> 'object' THEN
        RETURN;
    END IF;
    SELECT jsonb_object_agg(field, max_chars) INTO lim FROM mailrun.field_limits;
    FOREACH f IN ARRAY ARRAY['from', 'reply_to'] LOOP
        IF jsonb_typeof(m->f) = 'string' THEN
            PERFORM mailrun.check_text(pos, format('"%s"', f), m->>f, (lim->>'address')::integer);
        END IF;
    END LOOP;
    FOREACH f IN ARRAY ARRAY['to', 'cc', 'bcc'] LOOP
        IF jsonb_typeof(m->f) = 'string' THEN
            PERFORM mailrun.check_text(pos, format('"%s"', f), m->>f, (lim->>'address')::integer);
        ELSIF jsonb_typeof(m->f) = 'array' THEN
            FOR e IN SELECT value FROM jsonb_array_elements(m->f) LOOP
                IF jsonb_typeof(e) = 'string' THEN
                    PERFORM mailrun.check_text(pos, format('an address in "%s"', f), e #>> '{}',
                        (lim->>'address')::integer);
                END IF;
            END LOOP;
        END IF;
    END LOOP;
    IF jsonb_typeof(m->'subject') = 'string' THEN
        PERFORM mailrun.check_text(pos, '"subject"', m->>'subject', (lim->>'subject')::integer);
    END IF;
    IF jsonb_typeof(m->'message_id') = 'string' THEN
        PERFORM mailrun.check_text(pos, '"message_id"', m->>'message_id', (lim->>'message_id')::integer);
    END IF;
    FOREACH f IN ARRAY ARRAY['text', 'html'] LOOP
        IF jsonb_typeof(m->f) = 'string' THEN
            PERFORM mailrun.check_text(pos, format('"%s"', f), m->>f, NULL);
        END IF;
    END LOOP;
    IF jsonb_typeof(m->'headers') = 'array' THEN
        FOR e IN SELECT value FROM jsonb_array_elements(m->'headers') LOOP
            IF jsonb_typeof(e->'value') = 'string' THEN
                PERFORM mailrun.check_text(pos, format('header %s', e->'name'), e->>'value',
                    (lim->>'header_value')::integer);
            END IF;
        END LOOP;
    END IF;
    IF jsonb_typeof(m->'attachments') = 'array' THEN
        FOR e IN SELECT value FROM jsonb_array_elements(m->'attachments') LOOP
            IF jsonb_typeof(e->'filename') = 'string' THEN
                PERFORM mailrun.check_text(pos, 'an attachment filename', e->>'filename',
                    (lim->>'attachment_filename')::integer);
            END IF;
            IF jsonb_typeof(e->'content_type') = 'string' THEN
                PERFORM mailrun.check_text(pos, format('the content type of attachment %s', e->'filename'),
                    e->>'content_type', (lim->>'attachment_content_type')::integer);
            END IF;
        END LOOP;
    END IF;
END
$$;
