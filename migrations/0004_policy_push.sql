-- mailrun schema, version 4: the reply policy travels to runners, and given-back quota
-- reservations release held mail early (docs/quotas.md).
--
-- 1. A change to mailrun.reply_rules creates a new config version (a copy of the latest
--    settings), so `push-config --all` sends the new policy to every runner.
-- 2. messages.held_quota_ids: the quotas a held message waits for. claim_batch (below;
--    the version 3 procedure with only the held_quota_ids lines added: set where a quota
--    holds a message, cleared where the hold ends) records them.
-- 3. Every insert into mailrun.quota_releases (NotAttempted reports, reaped leases)
--    makes as many messages held by that quota due again as reservations came back; the
--    next claim re-checks the cap and holds again what still does not fit.
-- 4. apply_result wraps version 3 (renamed apply_result_v3): a message a runner set
--    aside after an "another account" answer in its batch fails over like the message
--    that got the answer.

------------------------------------------------------------------------------------------
-- 1. Reply rules bump the config version
------------------------------------------------------------------------------------------

-- Patterns travel to runners, which take at most 1000 characters. NOT VALID: existing
-- rows are left alone (push-config names any that cannot be pushed).
ALTER TABLE mailrun.reply_rules ADD CONSTRAINT reply_rules_pattern_length
    CHECK (pattern IS NULL OR char_length(pattern) BETWEEN 1 AND 1000) NOT VALID;

-- One new config version per transaction that changes the rules (adding a rule at a
-- taken position shifts others first: still one version). Nothing to copy before the
-- first `push-config set`; that first version carries the rules anyway.
CREATE FUNCTION mailrun.reply_rules_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM changed)
       OR current_setting('mailrun.reply_rules_bumped', true) = 'yes' THEN
        RETURN NULL;
    END IF;
    -- The same lock push-config's `set` takes, so versions stay one apart.
    LOCK TABLE mailrun.config_versions IN SHARE ROW EXCLUSIVE MODE;
    INSERT INTO mailrun.config_versions (version, settings)
        SELECT c.version + 1, c.settings FROM mailrun.config_versions c
        ORDER BY c.version DESC LIMIT 1;
    PERFORM set_config('mailrun.reply_rules_bumped', 'yes', true);
    RETURN NULL;
END
$$;
CREATE TRIGGER reply_rules_inserted AFTER INSERT ON mailrun.reply_rules
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION mailrun.reply_rules_changed();
CREATE TRIGGER reply_rules_updated AFTER UPDATE ON mailrun.reply_rules
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION mailrun.reply_rules_changed();
CREATE TRIGGER reply_rules_deleted AFTER DELETE ON mailrun.reply_rules
    REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION mailrun.reply_rules_changed();

------------------------------------------------------------------------------------------
-- 2. Which quotas hold a message
------------------------------------------------------------------------------------------

ALTER TABLE mailrun.messages ADD COLUMN held_quota_ids bigint[];
-- Only held messages are in it; claims of unheld mail leave it untouched.
CREATE INDEX messages_held_quotas ON mailrun.messages USING gin (held_quota_ids)
    WHERE held_quota_ids IS NOT NULL;

-- As version 3, and records held_quota_ids (see the header).
CREATE OR REPLACE FUNCTION mailrun.claim_batch(p_runner text, n integer, lease_seconds integer)
RETURNS TABLE (
    job_run_id uuid, lease_expires_at timestamptz, message_id bigint, lease_token uuid,
    message_id_header text, from_addr text, reply_to text, to_addrs text[], cc_addrs text[],
    bcc_addrs text[], subject text, text_body text, html_body text, headers jsonb,
    attachments jsonb, account_name text, account_host text, account_port integer,
    account_security text, account_username text, account_password text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_limit integer;
    v_job uuid := gen_random_uuid();
    v_expiry timestamptz;
    v_count integer := 0;
    v_runner_q mailrun.quotas%ROWTYPE;
    v_room record;
    -- Lock order: the runner quota (rank 0), then other quotas by id. Waiting only for
    -- locks above every lock held makes deadlocks between claimers impossible.
    v_max_key numeric := -1;
    v_locked bigint[] := '{}';
    m record;
    v_pending text[];
    v_supp text[];
    v_domains text[];
    v_take bigint[];
    v_busy boolean;
    v_hold_until timestamptz;
    v_hold_reason text;
    v_accounts bigint[];
    v_acc bigint;
    v_acc_row mailrun.smtp_accounts%ROWTYPE;
    v_chosen bigint;
    v_acc_until timestamptz;
    v_acc_reasons text[];
    v_t mailrun.throttles%ROWTYPE;
    q mailrun.quotas%ROWTYPE;
    v_key numeric;
    v_ok boolean;
    v_token uuid;
    v_qid bigint;
    v_ids bigint[];
    v_seen bigint[] := '{}';
    v_round integer := 0;
    -- Quotas a held message waits for (a given-back reservation makes it due again).
    v_hold_q bigint[];
    v_acc_q bigint[];
BEGIN
    IF n IS NULL OR n < 1 THEN
        PERFORM mailrun.refuse(NULL, 'claim_batch: n must be at least 1');
    END IF;
    IF lease_seconds IS NULL OR lease_seconds < 1 OR lease_seconds > 86400 THEN
        PERFORM mailrun.refuse(NULL, 'claim_batch: lease_seconds must be between 1 and 86400');
    END IF;
    SELECT least(n, r.batch_size) INTO v_limit
        FROM mailrun.runners r WHERE r.id = p_runner AND r.enabled;
    IF v_limit IS NULL THEN
        RETURN;
    END IF;

    SELECT * INTO v_runner_q FROM mailrun.quotas x WHERE x.scope = 'runner' AND x.key = p_runner;
    IF FOUND THEN
        PERFORM mailrun.quota_lock(v_runner_q.id, true);
        v_max_key := 0;
        v_locked := v_locked || v_runner_q.id;
        SELECT * INTO v_room FROM mailrun.quota_room(v_runner_q, 1.0);
        IF v_room.room IS NOT NULL THEN
            v_limit := least(v_limit, v_room.room);
        END IF;
        IF v_limit <= 0 THEN
            RETURN;
        END IF;
    END IF;

    v_expiry := now() + make_interval(secs => lease_seconds);
    INSERT INTO mailrun.job_runs (id, runner_id, lease_expires_at, message_count)
        VALUES (v_job, p_runner, v_expiry, 0);

    -- A few bounded rounds: held messages leave the due set, so a round only repeats
    -- when quotas held back (or expired) part of the previous one.
    WHILE v_count < v_limit AND v_round < 4 LOOP
    v_round := v_round + 1;
    SELECT array_agg(x.id ORDER BY x.next_attempt_at, x.id) INTO v_ids FROM (
        SELECT d.id, d.next_attempt_at FROM mailrun.messages d
        WHERE d.state IN ('queued', 'deferred') AND d.next_attempt_at <= now()
          AND NOT d.id = ANY (v_seen)
        ORDER BY d.next_attempt_at, d.id
        LIMIT 2 * (v_limit - v_count) + 50
        FOR UPDATE SKIP LOCKED) x;
    EXIT WHEN v_ids IS NULL;
    v_seen := v_seen || v_ids;

    -- Lock every quota these messages may take from, in lock order, before deciding
    -- any: concurrent claimers then queue up behind each other instead of skipping.
    FOR v_qid IN
        SELECT q2.id FROM mailrun.quotas q2
        WHERE NOT q2.id = ANY (v_locked) AND (
            (q2.scope = 'account' AND q2.key IN (
                SELECT a.name FROM mailrun.messages d
                CROSS JOIN LATERAL unnest(CASE WHEN cardinality(d.account_ids) > 0
                    THEN d.account_ids ELSE ARRAY[d.account_id] END) AS acc(id)
                JOIN mailrun.smtp_accounts a ON a.id = acc.id
                WHERE d.id = ANY (v_ids)))
            OR (q2.scope = 'domain' AND q2.key IN (
                SELECT mailrun.addr_domain(t) FROM mailrun.messages d
                CROSS JOIN LATERAL unnest(d.to_addrs || d.cc_addrs || d.bcc_addrs) AS t
                WHERE d.id = ANY (v_ids))))
        ORDER BY q2.id
    LOOP
        v_key := 1e15 + v_qid;
        IF mailrun.quota_lock(v_qid, v_key > v_max_key) THEN
            v_locked := v_locked || v_qid;
            v_max_key := greatest(v_max_key, v_key);
        END IF;
    END LOOP;

    FOR m IN
        SELECT d.* FROM mailrun.messages d
        WHERE d.id = ANY (v_ids)
        ORDER BY d.next_attempt_at, d.id
    LOOP
        IF m.expires_at <= now() THEN
            UPDATE mailrun.messages d SET state = 'expired', finished_at = now() WHERE d.id = m.id;
            CONTINUE;
        END IF;

        v_pending := mailrun.pending(m.to_addrs || m.cc_addrs || m.bcc_addrs,
                                     m.recipients_sent, m.recipients_failed);
        v_supp := ARRAY(SELECT a FROM unnest(v_pending) a
                        WHERE EXISTS (SELECT 1 FROM mailrun.suppressions s
                                      WHERE s.address = lower(mailrun.addr_spec(a))));
        IF cardinality(v_supp) > 0 THEN
            v_pending := mailrun.pending(v_pending, '{}', v_supp);
            UPDATE mailrun.messages d SET recipients_failed = d.recipients_failed || v_supp,
                last_text = 'suppressed: ' || array_to_string(v_supp, ', ')
            WHERE d.id = m.id;
            IF cardinality(v_pending) = 0 THEN
                UPDATE mailrun.messages d SET
                    state = CASE WHEN cardinality(d.recipients_sent) > 0 THEN 'sent' ELSE 'failed' END,
                    finished_at = now(), held_reason = NULL, held_until = NULL,
                    held_quota_ids = NULL
                WHERE d.id = m.id;
                CONTINUE;
            END IF;
        END IF;

        v_busy := false;
        v_hold_until := NULL;
        v_hold_reason := NULL;
        v_take := '{}';
        v_hold_q := '{}';
        v_domains := ARRAY(SELECT DISTINCT mailrun.addr_domain(a) FROM unnest(v_pending) a);

        -- Recipient domains: paused by throttle feedback, or over a quota.
        FOR v_t IN SELECT * FROM mailrun.throttles t
                   WHERE t.scope = 'domain' AND t.key = ANY (v_domains) AND t.paused_until > now() LOOP
            IF v_hold_until IS NULL OR v_t.paused_until > v_hold_until THEN
                v_hold_until := v_t.paused_until;
                v_hold_reason := format('domain %s throttled (%s %s) until %s', v_t.key,
                    coalesce(v_t.last_code::text, ''), coalesce(v_t.last_text, ''),
                    to_char(v_t.paused_until AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC');
            END IF;
        END LOOP;
        IF v_hold_until IS NULL THEN
            FOR q IN SELECT * FROM mailrun.quotas x
                     WHERE x.scope = 'domain' AND x.key = ANY (v_domains) ORDER BY x.id LOOP
                v_key := 1e15 + q.id;
                IF NOT q.id = ANY (v_locked) THEN
                    v_ok := mailrun.quota_lock(q.id, v_key > v_max_key);
                    IF NOT v_ok THEN
                        v_busy := true;
                        EXIT;
                    END IF;
                    v_locked := v_locked || q.id;
                    v_max_key := greatest(v_max_key, v_key);
                END IF;
                SELECT * INTO q FROM mailrun.quotas x WHERE x.id = q.id;
                SELECT * INTO v_room FROM mailrun.quota_room(q, mailrun.throttle_factor('domain', q.key));
                IF v_room.room IS NOT NULL AND v_room.room <= 0 THEN
                    v_hold_q := v_hold_q || q.id;
                    IF v_hold_until IS NULL OR v_room.free_at > v_hold_until THEN
                        v_hold_until := v_room.free_at;
                        v_hold_reason := v_room.reason;
                    END IF;
                ELSE
                    v_take := v_take || q.id;
                END IF;
            END LOOP;
        END IF;
        CONTINUE WHEN v_busy;
        IF v_hold_until IS NOT NULL THEN
            UPDATE mailrun.messages d SET next_attempt_at = greatest(d.next_attempt_at, v_hold_until),
                held_until = v_hold_until, held_reason = 'held: ' || v_hold_reason,
                held_quota_ids = nullif(v_hold_q, '{}')
            WHERE d.id = m.id;
            CONTINUE;
        END IF;

        -- The first usable account of the failover list (or the message's one account).
        v_accounts := CASE WHEN cardinality(m.account_ids) > 0 THEN m.account_ids
                           ELSE ARRAY[m.account_id] END;
        v_chosen := NULL;
        v_acc_until := NULL;
        v_acc_reasons := '{}';
        v_acc_q := '{}';
        FOREACH v_acc IN ARRAY v_accounts LOOP
            SELECT * INTO v_acc_row FROM mailrun.smtp_accounts a WHERE a.id = v_acc;
            IF v_acc = ANY (m.skip_account_ids) THEN
                v_acc_reasons := v_acc_reasons || format('account %s failed for this message', v_acc_row.name);
                CONTINUE;
            END IF;
            IF NOT v_acc_row.enabled THEN
                v_acc_reasons := v_acc_reasons || format('account %s disabled', v_acc_row.name);
                CONTINUE;
            END IF;
            SELECT * INTO v_t FROM mailrun.throttles t
            WHERE t.scope = 'account' AND t.key = v_acc_row.name AND t.paused_until > now();
            IF FOUND THEN
                v_acc_reasons := v_acc_reasons || format('account %s throttled (%s %s) until %s',
                    v_acc_row.name, coalesce(v_t.last_code::text, ''), coalesce(v_t.last_text, ''),
                    to_char(v_t.paused_until AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC');
                v_acc_until := least(coalesce(v_acc_until, v_t.paused_until), v_t.paused_until);
                CONTINUE;
            END IF;
            SELECT * INTO q FROM mailrun.quotas x WHERE x.scope = 'account' AND x.key = v_acc_row.name;
            IF NOT FOUND THEN
                v_chosen := v_acc;
                EXIT;
            END IF;
            v_key := 1e15 + q.id;
            IF NOT q.id = ANY (v_locked) THEN
                v_ok := mailrun.quota_lock(q.id, v_key > v_max_key);
                IF NOT v_ok THEN
                    v_busy := true;
                    CONTINUE;
                END IF;
                v_locked := v_locked || q.id;
                v_max_key := greatest(v_max_key, v_key);
            END IF;
            SELECT * INTO q FROM mailrun.quotas x WHERE x.id = q.id;
            SELECT * INTO v_room FROM mailrun.quota_room(q, mailrun.throttle_factor('account', q.key));
            IF v_room.room IS NOT NULL AND v_room.room <= 0 THEN
                v_acc_q := v_acc_q || q.id;
                v_acc_reasons := v_acc_reasons || v_room.reason;
                v_acc_until := least(coalesce(v_acc_until, v_room.free_at), v_room.free_at);
                CONTINUE;
            END IF;
            v_take := v_take || q.id;
            v_chosen := v_acc;
            EXIT;
        END LOOP;
        IF v_chosen IS NULL THEN
            IF v_busy THEN
                CONTINUE;   -- another claimer is using that quota: try again next claim
            END IF;
            -- Disabled or failed-for-this-message accounts have no end time: look again
            -- in five minutes.
            v_acc_until := coalesce(v_acc_until, now() + interval '5 minutes');
            UPDATE mailrun.messages d SET next_attempt_at = greatest(d.next_attempt_at, v_acc_until),
                held_until = v_acc_until,
                held_reason = 'held: ' || array_to_string(v_acc_reasons, '; '),
                held_quota_ids = nullif(v_acc_q, '{}')
            WHERE d.id = m.id;
            CONTINUE;
        END IF;

        IF v_runner_q.id IS NOT NULL THEN
            v_take := v_take || v_runner_q.id;
        END IF;
        v_token := gen_random_uuid();
        FOREACH v_qid IN ARRAY v_take LOOP
            PERFORM mailrun.quota_take(v_qid);
            INSERT INTO mailrun.quota_reservations (lease_token, quota_id, at)
                VALUES (v_token, v_qid, now());
        END LOOP;
        UPDATE mailrun.messages d
        SET state = 'leased', lease_runner = p_runner, lease_token = v_token,
            lease_expires_at = v_expiry, job_run_id = v_job, account_id = v_chosen,
            held_reason = NULL, held_until = NULL, held_quota_ids = NULL
        WHERE d.id = m.id;
        INSERT INTO mailrun.leases (lease_token, message_id, job_run_id, runner_id,
                                    lease_expires_at, account_id)
            VALUES (v_token, m.id, v_job, p_runner, v_expiry, v_chosen);
        v_count := v_count + 1;
        EXIT WHEN v_count >= v_limit;
    END LOOP;
    END LOOP;

    IF v_count = 0 THEN
        DELETE FROM mailrun.job_runs j WHERE j.id = v_job;
        RETURN;
    END IF;
    UPDATE mailrun.job_runs j SET message_count = v_count WHERE j.id = v_job;

    RETURN QUERY
        SELECT v_job, v_expiry, d.id, d.lease_token, d.message_id_header, d.from_addr, d.reply_to,
            mailrun.pending(d.to_addrs, d.recipients_sent, d.recipients_failed),
            mailrun.pending(d.cc_addrs, d.recipients_sent, d.recipients_failed),
            mailrun.pending(d.bcc_addrs, d.recipients_sent, d.recipients_failed),
            d.subject, d.text_body, d.html_body, d.headers, d.attachments,
            a.name, a.host, a.port, a.security, a.username, a.password
        FROM mailrun.messages d JOIN mailrun.smtp_accounts a ON a.id = d.account_id
        WHERE d.job_run_id = v_job AND d.state = 'leased'
        ORDER BY d.next_attempt_at, d.id;
END
$$;

------------------------------------------------------------------------------------------
-- 3. Given-back reservations release held messages
------------------------------------------------------------------------------------------

-- Does a reservation taken at `p_at` still count against one of the quota's caps now?
-- (One from an earlier hour or day frees nothing in the current bucket.)
CREATE FUNCTION mailrun.release_frees_now(q mailrun.quotas, p_at timestamptz) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT (q.per_second IS NOT NULL
            AND mailrun.quota_bucket('second', p_at, NULL) = mailrun.quota_bucket('second', now(), NULL))
        OR (q.per_hour IS NOT NULL
            AND mailrun.quota_bucket('hour', p_at, NULL) = mailrun.quota_bucket('hour', now(), NULL))
        OR (q.per_day IS NOT NULL
            AND mailrun.quota_bucket('day', p_at, NULL) = mailrun.quota_bucket('day', now(), NULL))
        OR (q.window_seconds IS NOT NULL
            AND mailrun.quota_bucket('window', p_at, q.window_seconds) > now() - make_interval(
                secs => q.window_seconds + mailrun.window_bucket_seconds(q.window_seconds)))
$$;

-- Per quota, one held message per given-back reservation becomes due now (hold cleared).
-- Runs in the reporting transaction: it reads quotas without locking them and takes
-- held messages with SKIP LOCKED, so a report never waits for a claimer (nor for another
-- report); a message skipped that way keeps its hold time.
-- The planner settings keep the search on messages_held_quotas: with LIMIT and stale
-- statistics it may otherwise prefer a sequential (or messages_due) scan expecting an
-- early hit, which reads the whole table when the quota holds nothing.
CREATE FUNCTION mailrun.quota_releases_wake() RETURNS trigger
LANGUAGE plpgsql SET enable_seqscan = off SET enable_indexscan = off AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT x.quota_id, count(*) AS n
        FROM released x JOIN mailrun.quotas q ON q.id = x.quota_id
        WHERE mailrun.release_frees_now(q, x.at)
          -- A paused account or domain cannot use the room now (its held mail would
          -- only be held again): the pause ends on its own.
          AND NOT EXISTS (SELECT 1 FROM mailrun.throttles t
                          WHERE t.scope = q.scope AND t.key = q.key AND t.paused_until > now())
        GROUP BY x.quota_id ORDER BY x.quota_id
    LOOP
        UPDATE mailrun.messages m SET next_attempt_at = now(),
            held_until = NULL, held_reason = NULL, held_quota_ids = NULL
        WHERE m.id IN (
            SELECT d.id FROM mailrun.messages d
            WHERE d.held_quota_ids IS NOT NULL AND d.held_quota_ids @> ARRAY[r.quota_id]
              AND d.state IN ('queued', 'deferred')
              -- Still waiting for that hold (not for a retry backoff beyond it).
              AND d.held_until > now() AND d.next_attempt_at > now()
              AND d.next_attempt_at <= d.held_until
            LIMIT r.n
            FOR UPDATE SKIP LOCKED);
    END LOOP;
    RETURN NULL;
END
$$;
CREATE TRIGGER quota_releases_wake AFTER INSERT ON mailrun.quota_releases
    REFERENCING NEW TABLE AS released
    FOR EACH STATEMENT EXECUTE FUNCTION mailrun.quota_releases_wake();

------------------------------------------------------------------------------------------
-- 4. Messages a runner set aside after an "another account" answer fail over too
------------------------------------------------------------------------------------------

-- Did this attempt get an answer (message-level or for one recipient) that the reply
-- policy answers with another_account? Decided as apply_result decided it.
CREATE FUNCTION mailrun.attempt_wants_another_account(x mailrun.delivery_attempts,
    p_account text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
    m mailrun.messages%ROWTYPE;
    e jsonb;
BEGIN
    SELECT * INTO m FROM mailrun.messages WHERE id = x.message_id;
    IF x.outcome IN ('deferred', 'failed') AND (x.smtp_code IS NOT NULL OR x.text IS NOT NULL)
       AND (SELECT d.action FROM mailrun.reply_decision(x.smtp_code, x.enhanced_status, x.text,
                mailrun.addr_domain((m.to_addrs || m.cc_addrs || m.bcc_addrs)[1]),
                p_account, m.final_codes) d) = 'another_account' THEN
        RETURN true;
    END IF;
    FOR e IN SELECT value FROM jsonb_array_elements(x.recipients) LOOP
        IF e->>'outcome' IN ('deferred', 'failed')
           AND (SELECT d.action FROM mailrun.reply_decision(
                    CASE WHEN jsonb_typeof(e->'smtp_code') = 'number' THEN (e->>'smtp_code')::integer END,
                    e->>'enhanced_status', e->>'text', mailrun.addr_domain(e->>'address'),
                    p_account, m.final_codes) d) = 'another_account' THEN
            RETURN true;
        END IF;
    END LOOP;
    RETURN false;
END
$$;

ALTER FUNCTION mailrun.apply_result(text, jsonb) RENAME TO apply_result_v3;

-- As version 3, and: a runner applying the reply policy stops using an account for the
-- rest of a batch once an answer says "another account" (535, relay denied), and reports
-- the messages it did not start NotAttempted. Version 3 would only re-queue those, and
-- the next batch would try the broken account again, one message per batch. Here such a
-- message fails over as if it had got that answer itself: to the next account of its
-- failover list, due now; with no account left it is held for the retry backoff (no
-- attempt counted; its reservation was given back by version 3).
CREATE FUNCTION mailrun.apply_result(p_runner text, r jsonb) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_result text;
    m mailrun.messages%ROWTYPE;
    v_lease mailrun.leases%ROWTYPE;
    v_account text;
    x mailrun.delivery_attempts%ROWTYPE;
    v_accounts bigint[];
    v_next bigint;
    v_until timestamptz;
BEGIN
    v_result := mailrun.apply_result_v3(p_runner, r);
    -- The runner says why it did not start the message ("not attempted: account X
    -- refused in this batch (...)"): only then is the batch searched for the answer,
    -- which is what decides (the text alone never moves a message).
    IF v_result <> 'applied' OR r->>'outcome' IS DISTINCT FROM 'not_attempted'
       OR coalesce(r->>'text', '') NOT LIKE 'not attempted: account %' THEN
        RETURN v_result;
    END IF;
    -- Version 3 validated and locked the message; NotAttempted left it 'queued'.
    SELECT * INTO m FROM mailrun.messages WHERE id = (r->>'message_id')::bigint;
    SELECT * INTO v_lease FROM mailrun.leases l
        WHERE l.lease_token = (r->>'lease_token')::uuid AND l.message_id = m.id;
    IF m.state <> 'queued' OR v_lease.account_id IS NULL THEN
        RETURN v_result;
    END IF;
    SELECT a.name INTO v_account FROM mailrun.smtp_accounts a WHERE a.id = v_lease.account_id;
    -- A paused account (421, rate limits) is handled by the claim: held with the
    -- throttle reason, or the next account of the list.
    IF EXISTS (SELECT 1 FROM mailrun.throttles t
               WHERE t.scope = 'account' AND t.key = v_account AND t.paused_until > now()) THEN
        RETURN v_result;
    END IF;
    -- The evidence: the last answered attempt of the same batch through the same
    -- account (the runner stops using the account right after the answer and reports in
    -- batch order, so that answer is already recorded and is the last one), if the
    -- policy sends it to another account. One decision per result, not one per attempt.
    SELECT x2.* INTO x FROM mailrun.delivery_attempts x2
        JOIN mailrun.leases l ON l.lease_token = x2.lease_token
        WHERE x2.job_run_id = v_lease.job_run_id AND x2.message_id <> m.id
          AND l.account_id = v_lease.account_id
          AND (x2.outcome IN ('deferred', 'failed') OR jsonb_array_length(x2.recipients) > 0)
        ORDER BY x2.id DESC LIMIT 1;
    IF NOT FOUND OR NOT mailrun.attempt_wants_another_account(x, v_account) THEN
        RETURN v_result;
    END IF;
    v_accounts := CASE WHEN cardinality(m.account_ids) > 0 THEN m.account_ids
                       ELSE ARRAY[m.account_id] END;
    SELECT u.acc INTO v_next FROM unnest(v_accounts) WITH ORDINALITY AS u(acc, i)
        WHERE u.acc <> v_lease.account_id AND NOT u.acc = ANY (m.skip_account_ids)
        ORDER BY u.i LIMIT 1;
    IF v_next IS NOT NULL THEN
        UPDATE mailrun.messages SET skip_account_ids = skip_account_ids || v_lease.account_id,
            next_attempt_at = now()
        WHERE id = m.id;
    ELSE
        v_until := now() + make_interval(secs => mailrun.backoff_seconds(m.attempts + 1));
        UPDATE mailrun.messages SET skip_account_ids = '{}', next_attempt_at = v_until,
            held_until = v_until, held_quota_ids = NULL,
            held_reason = format('held: account %s refused another message of its batch (%s) until %s',
                v_account,
                regexp_replace(left(concat_ws(' ', x.smtp_code, x.text), 200), '[\r\n]+', ' ', 'g'),
                to_char(v_until AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC')
        WHERE id = m.id;
    END IF;
    RETURN v_result;
END
$$;
