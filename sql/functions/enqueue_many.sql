-- Enqueues a JSON array of messages, all or nothing; returns the ids in input order.
-- A bad element raises invalid_parameter_value naming its position (DETAIL "position N").
--
-- Plain messages (no more than from, reply_to, to, cc, bcc, subject, text, html and an
-- account name), while no address is suppressed, are checked and inserted with one
-- statement for the whole array: the same checks as enqueue_at, the same rows, half the
-- cost (one plpgsql call and one INSERT per message cost the other half). When any of
-- them fails, that attempt is undone and every element goes through enqueue_at in
-- order, which names the first bad one exactly as always.
CREATE OR REPLACE FUNCTION mailrun.enqueue_many(ms jsonb) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
DECLARE
    e jsonb;
    n integer := 0;
    p mailrun.policy%ROWTYPE;
    v_only bigint;
    v_ids bigint[];
BEGIN
    IF ms IS NULL OR jsonb_typeof(ms) <> 'array' THEN
        PERFORM mailrun.refuse(NULL, 'enqueue_many takes a JSON array of messages');
    END IF;
    IF jsonb_array_length(ms) > 1
       AND NOT EXISTS (SELECT 1 FROM mailrun.suppressions)
       AND NOT EXISTS (
           SELECT 1 FROM jsonb_array_elements(ms) x
           WHERE jsonb_typeof(x) <> 'object'
              OR coalesce(jsonb_typeof(x->'text'), 'null') NOT IN ('string', 'null')
              OR coalesce(jsonb_typeof(x->'html'), 'null') NOT IN ('string', 'null')
              OR coalesce(jsonb_typeof(x->'account'), 'null') NOT IN ('string', 'null')
              OR EXISTS (SELECT 1 FROM jsonb_object_keys(x) k
                         WHERE k NOT IN ('from', 'reply_to', 'to', 'cc', 'bcc', 'subject',
                                         'text', 'html', 'account'))) THEN
        SELECT * INTO p FROM mailrun.policy;
        SELECT CASE WHEN count(*) = 1 THEN min(id) END INTO v_only FROM mailrun.smtp_accounts;
        BEGIN
            PERFORM mailrun.check_carriable(t.n::integer, t.e)
                FROM jsonb_array_elements(ms) WITH ORDINALITY AS t(e, n);
            WITH src AS (
                SELECT t.n,
                    mailrun.header_text(t.n::integer, 'from', t.e->'from') AS v_from,
                    mailrun.header_text(t.n::integer, 'reply_to', t.e->'reply_to') AS v_reply,
                    mailrun.address_list(t.n::integer, 'to', t.e->'to') AS v_to,
                    mailrun.address_list(t.n::integer, 'cc', t.e->'cc') AS v_cc,
                    mailrun.address_list(t.n::integer, 'bcc', t.e->'bcc') AS v_bcc,
                    coalesce(mailrun.header_text(t.n::integer, 'subject', t.e->'subject'), '')
                        AS v_subject,
                    t.e->>'text' AS v_text,
                    t.e->>'html' AS v_html,
                    CASE WHEN jsonb_typeof(t.e->'account') = 'string'
                         THEN (SELECT a.id FROM mailrun.smtp_accounts a
                               WHERE a.name = t.e->>'account')
                         ELSE v_only END AS v_account
                FROM jsonb_array_elements(ms) WITH ORDINALITY AS t(e, n)
            ), sized AS (
                SELECT s.*, mailrun.message_size(s.v_from, s.v_reply, s.v_subject, s.v_text,
                    s.v_html, s.v_to || s.v_cc || s.v_bcc) AS v_size
                FROM src s
            ), ok AS (
                SELECT s.* FROM sized s
                WHERE s.v_from IS NOT NULL AND mailrun.addr_spec(s.v_from) IS NOT NULL
                  AND (s.v_reply IS NULL OR mailrun.addr_spec(s.v_reply) IS NOT NULL)
                  AND cardinality(s.v_to) + cardinality(s.v_cc) + cardinality(s.v_bcc)
                      BETWEEN 1 AND p.max_recipients
                  AND (s.v_text IS NOT NULL OR s.v_html IS NOT NULL)
                  AND s.v_size <= p.max_message_bytes
                  AND s.v_account IS NOT NULL
            ), inserted AS (
                INSERT INTO mailrun.messages (account_id, account_ids, from_addr, reply_to,
                    to_addrs, cc_addrs, bcc_addrs, subject, text_body, html_body, headers,
                    attachments, size_bytes, message_id_header, final_codes, send_at,
                    next_attempt_at, expires_at)
                SELECT o.v_account, '{}', o.v_from, o.v_reply, o.v_to, o.v_cc, o.v_bcc,
                    o.v_subject, o.v_text, o.v_html, '[]', '[]', o.v_size,
                    mailrun.new_message_id(p.message_id_domain, o.v_from),
                    NULL, now(), now(), now() + make_interval(secs => p.give_up_after_seconds)
                FROM ok o
                ORDER BY o.n
                RETURNING id
            )
            SELECT array_agg(id ORDER BY id) INTO v_ids FROM inserted;
            IF coalesce(cardinality(v_ids), 0) <> jsonb_array_length(ms) THEN
                -- One failed a check that names no field here: undo, go one by one.
                RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value';
            END IF;
        EXCEPTION WHEN invalid_parameter_value THEN
            v_ids := NULL;
        END;
        IF v_ids IS NOT NULL THEN
            RETURN QUERY SELECT unnest(v_ids);
            RETURN;
        END IF;
    END IF;
    FOR e IN SELECT value FROM jsonb_array_elements(ms) LOOP
        n := n + 1;
        RETURN NEXT mailrun.enqueue_at(n, e);
    END LOOP;
END
$$;
