-- Validates and inserts one message; `pos` is its 1-based position in a bulk call.
-- Checked in this order: what the protocol can carry (check_carriable), the account
-- choice ("account", a failover list "accounts", or "account_group" resolved to its
-- accounts as they are now), then every other field. Suppressed recipients are failed
-- at once (the message fails when none is left).
CREATE OR REPLACE FUNCTION mailrun.enqueue_at(pos integer, m jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    p mailrun.policy%ROWTYPE;
    k text;
    v_from text;
    v_reply text;
    v_to text[];
    v_cc text[];
    v_bcc text[];
    v_subject text;
    v_text text;
    v_html text;
    v_headers jsonb := '[]';
    v_attachments jsonb := '[]';
    v_account bigint;
    v_send_at timestamptz := now();
    v_msgid text;
    v_size bigint := 0;
    v_rules jsonb;
    e jsonb;
    v_id bigint;
    v_ids bigint[] := '{}';
    v_acc bigint;
    v_all text[];
    v_supp text[];
    v_group text[];
BEGIN
    PERFORM mailrun.check_carriable(pos, m);
    IF m IS NOT NULL AND jsonb_typeof(m) = 'object' AND m ? 'account_group' THEN
        IF jsonb_typeof(m->'account_group') = 'null' THEN
            m := m - 'account_group';
        ELSE
            IF (m ? 'account' AND jsonb_typeof(m->'account') <> 'null')
               OR (m ? 'accounts' AND jsonb_typeof(m->'accounts') <> 'null') THEN
                PERFORM mailrun.refuse(pos, 'give one of "account", "accounts" or "account_group"');
            END IF;
            IF jsonb_typeof(m->'account_group') <> 'string' THEN
                PERFORM mailrun.refuse(pos, '"account_group" must be a string');
            END IF;
            SELECT g.accounts INTO v_group FROM mailrun.account_groups g
                WHERE g.name = m->>'account_group';
            IF v_group IS NULL THEN
                PERFORM mailrun.refuse(pos, format('unknown account group %s', m->'account_group'));
            END IF;
            m := (m - 'account_group' - 'account') || jsonb_build_object('accounts', to_jsonb(v_group));
        END IF;
    END IF;
    IF m IS NOT NULL AND jsonb_typeof(m) = 'object' AND m ? 'accounts'
       AND jsonb_typeof(m->'accounts') <> 'null' THEN
        IF m ? 'account' AND jsonb_typeof(m->'account') <> 'null' THEN
            PERFORM mailrun.refuse(pos, 'give "account" or "accounts", not both');
        END IF;
        IF jsonb_typeof(m->'accounts') <> 'array' OR jsonb_array_length(m->'accounts') = 0 THEN
            PERFORM mailrun.refuse(pos, '"accounts" must be a non-empty array of account names');
        END IF;
        FOR e IN SELECT value FROM jsonb_array_elements(m->'accounts') LOOP
            IF jsonb_typeof(e) <> 'string' THEN
                PERFORM mailrun.refuse(pos, '"accounts" must contain strings');
            END IF;
            SELECT id INTO v_acc FROM mailrun.smtp_accounts WHERE name = e #>> '{}';
            IF v_acc IS NULL THEN
                PERFORM mailrun.refuse(pos, format('unknown SMTP account %s', e));
            END IF;
            IF v_acc = ANY (v_ids) THEN
                PERFORM mailrun.refuse(pos, format('"accounts" names %s twice', e));
            END IF;
            v_ids := v_ids || v_acc;
        END LOOP;
        m := (m - 'accounts') || jsonb_build_object('account', m->'accounts'->0);
    ELSIF m IS NOT NULL AND jsonb_typeof(m) = 'object' AND m ? 'accounts' THEN
        m := m - 'accounts';
    END IF;
    IF m IS NULL OR jsonb_typeof(m) <> 'object' THEN
        PERFORM mailrun.refuse(pos, 'a message must be a JSON object');
    END IF;
    FOR k IN SELECT jsonb_object_keys(m) LOOP
        IF k NOT IN ('from', 'reply_to', 'to', 'cc', 'bcc', 'subject', 'text', 'html', 'headers',
                     'attachments', 'account', 'send_at', 'message_id', 'final_codes') THEN
            PERFORM mailrun.refuse(pos, format('unknown field "%s"', k));
        END IF;
    END LOOP;
    SELECT * INTO p FROM mailrun.policy;

    v_from := mailrun.header_text(pos, 'from', m->'from');
    IF v_from IS NULL THEN
        PERFORM mailrun.refuse(pos, '"from" is required');
    END IF;
    IF mailrun.addr_spec(v_from) IS NULL THEN
        PERFORM mailrun.refuse(pos, format('"from": invalid address %s', to_jsonb(v_from)));
    END IF;
    v_reply := mailrun.header_text(pos, 'reply_to', m->'reply_to');
    IF v_reply IS NOT NULL AND mailrun.addr_spec(v_reply) IS NULL THEN
        PERFORM mailrun.refuse(pos, format('"reply_to": invalid address %s', to_jsonb(v_reply)));
    END IF;
    v_to := mailrun.address_list(pos, 'to', m->'to');
    v_cc := mailrun.address_list(pos, 'cc', m->'cc');
    v_bcc := mailrun.address_list(pos, 'bcc', m->'bcc');
    IF cardinality(v_to) + cardinality(v_cc) + cardinality(v_bcc) = 0 THEN
        PERFORM mailrun.refuse(pos, 'no recipients: give "to", "cc" or "bcc"');
    END IF;
    IF cardinality(v_to) + cardinality(v_cc) + cardinality(v_bcc) > p.max_recipients THEN
        PERFORM mailrun.refuse(pos, format('more than %s recipients', p.max_recipients));
    END IF;
    v_subject := coalesce(mailrun.header_text(pos, 'subject', m->'subject'), '');

    IF m ? 'text' AND jsonb_typeof(m->'text') <> 'null' THEN
        IF jsonb_typeof(m->'text') <> 'string' THEN
            PERFORM mailrun.refuse(pos, '"text" must be a string');
        END IF;
        v_text := m->>'text';
    END IF;
    IF m ? 'html' AND jsonb_typeof(m->'html') <> 'null' THEN
        IF jsonb_typeof(m->'html') <> 'string' THEN
            PERFORM mailrun.refuse(pos, '"html" must be a string');
        END IF;
        v_html := m->>'html';
    END IF;
    IF v_text IS NULL AND v_html IS NULL THEN
        PERFORM mailrun.refuse(pos, 'no body: give "text" or "html"');
    END IF;

    IF m ? 'headers' AND jsonb_typeof(m->'headers') <> 'null' THEN
        IF jsonb_typeof(m->'headers') <> 'array' THEN
            PERFORM mailrun.refuse(pos, '"headers" must be an array of {"name", "value"}');
        END IF;
        FOR e IN SELECT value FROM jsonb_array_elements(m->'headers') LOOP
            IF jsonb_typeof(e) <> 'object' THEN
                PERFORM mailrun.refuse(pos, '"headers" must be an array of {"name", "value"}');
            END IF;
            IF jsonb_typeof(e->'name') IS DISTINCT FROM 'string'
               OR jsonb_typeof(e->'value') IS DISTINCT FROM 'string'
               OR (SELECT count(*) FROM jsonb_object_keys(e)) <> 2 THEN
                PERFORM mailrun.refuse(pos, '"headers" must be an array of {"name", "value"}');
            END IF;
            IF e->>'name' !~ '^[!-9;-~]{1,76}$' THEN
                PERFORM mailrun.refuse(pos, format('invalid header name %s', e->'name'));
            END IF;
            IF lower(e->>'name') IN ('from', 'to', 'cc', 'bcc', 'subject', 'reply-to', 'message-id',
                    'date', 'mime-version', 'content-type', 'content-transfer-encoding', 'sender') THEN
                PERFORM mailrun.refuse(pos, format('header %s is set from the message fields', e->'name'));
            END IF;
            IF e->>'value' ~ '[\r\n]' THEN
                PERFORM mailrun.refuse(pos, format('header %s contains CR or LF', e->'name'));
            END IF;
            v_size := v_size + octet_length(e->>'name') + octet_length(e->>'value') + 4;
        END LOOP;
        v_headers := m->'headers';
    END IF;

    IF m ? 'attachments' AND jsonb_typeof(m->'attachments') <> 'null' THEN
        IF jsonb_typeof(m->'attachments') <> 'array' THEN
            PERFORM mailrun.refuse(pos, '"attachments" must be an array');
        END IF;
        FOR e IN SELECT value FROM jsonb_array_elements(m->'attachments') LOOP
            IF jsonb_typeof(e) <> 'object' THEN
                PERFORM mailrun.refuse(pos,
                    'an attachment must be {"filename", "content_type", "data" (base64)}');
            END IF;
            IF jsonb_typeof(e->'filename') IS DISTINCT FROM 'string'
               OR jsonb_typeof(e->'content_type') IS DISTINCT FROM 'string'
               OR jsonb_typeof(e->'data') IS DISTINCT FROM 'string'
               OR (SELECT count(*) FROM jsonb_object_keys(e)) <> 3 THEN
                PERFORM mailrun.refuse(pos,
                    'an attachment must be {"filename", "content_type", "data" (base64)}');
            END IF;
            IF e->>'filename' ~ '[\r\n"\\/]' OR e->>'filename' = '' THEN
                PERFORM mailrun.refuse(pos, format('invalid attachment filename %s', e->'filename'));
            END IF;
            IF e->>'content_type' !~ '^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$' THEN
                PERFORM mailrun.refuse(pos, format('invalid attachment content type %s', e->'content_type'));
            END IF;
            IF e->>'data' !~ '^[A-Za-z0-9+/]*={0,2}$' OR length(e->>'data') % 4 <> 0 THEN
                PERFORM mailrun.refuse(pos, format('attachment %s: "data" is not base64', e->'filename'));
            END IF;
            v_size := v_size + (length(e->>'data') / 4) * 3;
        END LOOP;
        v_attachments := m->'attachments';
    END IF;

    v_size := v_size + mailrun.message_size(v_from, v_reply, v_subject, v_text, v_html,
        v_to || v_cc || v_bcc);
    IF v_size > p.max_message_bytes THEN
        PERFORM mailrun.refuse(pos, format('message is %s bytes, over the limit of %s',
            v_size, p.max_message_bytes));
    END IF;

    IF m ? 'account' AND jsonb_typeof(m->'account') <> 'null' THEN
        IF jsonb_typeof(m->'account') <> 'string' THEN
            PERFORM mailrun.refuse(pos, '"account" must be a string');
        END IF;
        SELECT id INTO v_account FROM mailrun.smtp_accounts WHERE name = m->>'account';
        IF v_account IS NULL THEN
            PERFORM mailrun.refuse(pos, format('unknown SMTP account %s', m->'account'));
        END IF;
    ELSE
        -- Without an account: the only one, if there is exactly one.
        SELECT CASE WHEN count(*) = 1 THEN min(id) END INTO v_account FROM mailrun.smtp_accounts;
        IF v_account IS NULL THEN
            PERFORM mailrun.refuse(pos, '"account" is required (there is not exactly one SMTP account)');
        END IF;
    END IF;

    IF m ? 'send_at' AND jsonb_typeof(m->'send_at') <> 'null' THEN
        IF jsonb_typeof(m->'send_at') <> 'string' OR m->>'send_at' !~
           '^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|z|[+-]\d{2}(:?\d{2})?)$' THEN
            PERFORM mailrun.refuse(pos, '"send_at" must be an RFC 3339 time with a zone, e.g. 2026-01-31T08:00:00Z');
        END IF;
        BEGIN
            v_send_at := (m->>'send_at')::timestamptz;
        EXCEPTION WHEN datetime_field_overflow OR invalid_datetime_format THEN
            PERFORM mailrun.refuse(pos, format('"send_at": invalid time %s', m->'send_at'));
        END;
        v_send_at := greatest(v_send_at, now());
    END IF;

    IF m ? 'final_codes' AND jsonb_typeof(m->'final_codes') <> 'null' THEN
        IF NOT mailrun.valid_rules(m->'final_codes') THEN
            PERFORM mailrun.refuse(pos,
                '"final_codes" must be a list of {"code": "550", "enhanced": "5.7.1", "permanent": false}');
        END IF;
        v_rules := m->'final_codes';
    END IF;

    IF m ? 'message_id' AND jsonb_typeof(m->'message_id') <> 'null' THEN
        v_msgid := mailrun.header_text(pos, 'message_id', m->'message_id');
        IF v_msgid !~ '^<[!-;=?-~]+@[!-;=?-Z^-~]+>$' THEN
            PERFORM mailrun.refuse(pos, format('invalid "message_id" %s (want <left@right>)', m->'message_id'));
        END IF;
        IF EXISTS (SELECT 1 FROM mailrun.messages WHERE message_id_header = v_msgid) THEN
            PERFORM mailrun.refuse(pos, format('"message_id" %s is already queued', m->'message_id'));
        END IF;
    ELSE
        v_msgid := mailrun.new_message_id(p.message_id_domain, v_from);
    END IF;

    INSERT INTO mailrun.messages (account_id, account_ids, from_addr, reply_to, to_addrs,
        cc_addrs, bcc_addrs, subject, text_body, html_body, headers, attachments, size_bytes,
        message_id_header, final_codes, send_at, next_attempt_at, expires_at)
    VALUES (v_account, CASE WHEN cardinality(v_ids) > 1 THEN v_ids ELSE '{}' END, v_from,
        v_reply, v_to, v_cc, v_bcc, v_subject, v_text, v_html, v_headers,
        v_attachments, v_size, v_msgid, v_rules, v_send_at, v_send_at,
        v_send_at + make_interval(secs => p.give_up_after_seconds))
    RETURNING id INTO v_id;

    IF NOT EXISTS (SELECT 1 FROM mailrun.suppressions) THEN
        RETURN v_id;
    END IF;
    v_all := v_to || v_cc || v_bcc;
    v_supp := ARRAY(SELECT a FROM unnest(v_all) a
                    WHERE EXISTS (SELECT 1 FROM mailrun.suppressions s
                                  WHERE s.address = lower(mailrun.addr_spec(a))));
    IF cardinality(v_supp) > 0 THEN
        UPDATE mailrun.messages SET recipients_failed = v_supp,
            last_text = 'suppressed: ' || array_to_string(v_supp, ', ')
        WHERE id = v_id;
        IF cardinality(mailrun.pending(v_all, '{}', v_supp)) = 0 THEN
            UPDATE mailrun.messages SET state = 'failed', finished_at = now() WHERE id = v_id;
        END IF;
    END IF;
    RETURN v_id;
END
$$;
