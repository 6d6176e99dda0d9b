-- Every text field of a message object against mailrun.field_limits and the characters
-- the protocol can carry. Values of the wrong type are left to enqueue_at, which names
-- them.
CREATE OR REPLACE FUNCTION mailrun.check_carriable(pos integer, m jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    lim jsonb;
    v_json text;
    f text;
    e jsonb;
BEGIN
    IF m IS NULL OR jsonb_typeof(m) <> 'object' THEN
        RETURN;
    END IF;
    -- Most messages: nothing but the bodies (which have no limit) is as long as the
    -- smallest limit checked here, so no string can be over its own; and no string holds
    -- a character the protocol cannot carry. Outside the bodies that shows in jsonb's
    -- rendering, which writes every control character as \b, \f, \t, \n, \r or \u00XX (a
    -- literal backslash may match too, and only costs the checks below); the bodies are
    -- looked at as they are (rendering them cost more than the checks it saved). Then
    -- nothing can fail, and the field-by-field checks (a quarter of an enqueue) are skipped.
    v_json := (m - 'text' - 'html')::text;
    IF v_json !~ '\\(u00|b|f)|[\uFFFE\uFFFF]'
       AND octet_length(v_json) < (
           SELECT min(x.max_chars) FROM mailrun.field_limits x
           WHERE x.field IN ('address', 'subject', 'message_id', 'header_value',
                             'attachment_filename', 'attachment_content_type'))
       AND NOT mailrun.has_uncarriable_char(coalesce(m->>'text', ''))
       AND NOT mailrun.has_uncarriable_char(coalesce(m->>'html', '')) THEN
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
