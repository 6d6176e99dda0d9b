-- mailrun schema, version 6: enqueue refuses exactly what the protocol cannot carry, and
-- checks addresses with the same rule as dispatch-admin (docs/queue.md).
--
-- 1. mailrun.field_limits: the longest value, in characters, a JobRun carries in each
--    message field. The same table is in the code (protocol::limits::field::TABLE); a
--    test holds the two equal. A runner refuses a longer value, so enqueue must too.
-- 2. mailrun.check_carriable: those limits, and no character XML cannot carry (C0
--    controls other than tab, LF and CR; U+FFFE, U+FFFF), in any text field.
-- 3. mailrun.addr_spec: the display name is checked too (a phrase of atext, dots,
--    spaces and non-ASCII letters, or a quoted string), as dispatch-admin checks it;
--    `"victim@evil.test, <app@probe.test>"` is no longer one mailbox.
-- 4. mailrun.enqueue_at: as version 4, calling check_carriable first.

------------------------------------------------------------------------------------------
-- 1. Field limits
------------------------------------------------------------------------------------------

CREATE TABLE mailrun.field_limits (
    field text PRIMARY KEY,
    max_chars integer NOT NULL CHECK (max_chars > 0)
);

INSERT INTO mailrun.field_limits (field, max_chars) VALUES
    ('address', 998),
    ('subject', 16384),
    ('header_name', 76),
    ('header_value', 998),
    ('message_id', 998),
    ('attachment_filename', 255),
    ('attachment_content_type', 255),
    ('account_name', 128),
    ('account_host', 255),
    ('account_username', 255),
    ('account_password', 1024);

------------------------------------------------------------------------------------------
-- 2. What the protocol can carry
------------------------------------------------------------------------------------------

-- Refuses a string over its field's limit, or holding a character XML 1.0 cannot carry.
CREATE FUNCTION mailrun.check_text(pos integer, what text, v text, max_chars integer)
RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF v IS NULL THEN
        RETURN;
    END IF;
    IF max_chars IS NOT NULL AND char_length(v) > max_chars THEN
        PERFORM mailrun.refuse(pos, format('%s is %s characters, over the limit of %s',
            what, char_length(v), max_chars));
    END IF;
    IF v ~ '[\u0001-\u0008\u000b\u000c\u000e-\u001f\uffff\ufffe]' THEN
        PERFORM mailrun.refuse(pos, format(
            '%s contains a control character the protocol cannot carry (only tab, CR and LF are allowed)',
            what));
    END IF;
END
$$;

-- Every text field of a message object against mailrun.field_limits. Values of the
-- wrong type are left to enqueue_at, which names them.
CREATE FUNCTION mailrun.check_carriable(pos integer, m jsonb) RETURNS void
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

------------------------------------------------------------------------------------------
-- 3. One mailbox rule
------------------------------------------------------------------------------------------

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

------------------------------------------------------------------------------------------
-- 4. Enqueue checks what the protocol can carry first
------------------------------------------------------------------------------------------

-- As version 4, with check_carriable before anything else.
CREATE OR REPLACE FUNCTION mailrun.enqueue_at(pos integer, m jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_ids bigint[] := '{}';
    v_id bigint;
    v_acc bigint;
    e jsonb;
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
    v_id := mailrun.enqueue_at_v1(pos, m);
    IF cardinality(v_ids) > 1 THEN
        UPDATE mailrun.messages SET account_ids = v_ids WHERE id = v_id;
    END IF;

    IF NOT EXISTS (SELECT 1 FROM mailrun.suppressions) THEN
        RETURN v_id;
    END IF;
    SELECT to_addrs || cc_addrs || bcc_addrs INTO v_all FROM mailrun.messages WHERE id = v_id;
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
