-- Records one reported outcome (the JSON form of protocol::MessageResult, see
-- docs/queue.md) and returns what happened to it:
--   'applied'   it matched the current lease; the message moved on;
--   'duplicate' this (message, lease token) was already recorded; nothing changed;
--   'late'      the lease was replaced or the message finished meanwhile: the attempt is
--               recorded with late = true and only its accepted recipients count
--               (the mail went out; marking them sent avoids a second copy);
--   'unknown'   no such message (purged); nothing recorded;
--   'rejected'  this runner was never given that lease token; nothing recorded.
-- The reply policy decides each answer (retry, another account, suppress, fail) and may
-- throttle the account or the recipient domain; outcome 'unknown' (DATA sent, no answer)
-- parks the message in state 'unknown'; a lease's quota reservation is given back on
-- NotAttempted and kept otherwise. Retry timing: mailrun.backoff_seconds.
CREATE OR REPLACE FUNCTION mailrun.apply_result(p_runner text, r jsonb) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    m mailrun.messages%ROWTYPE;
    v_lease mailrun.leases%ROWTYPE;
    v_token uuid;
    v_outcome text;
    v_code integer;
    v_enh text;
    v_text text;
    v_at timestamptz;
    v_recips jsonb := '[]';
    v_late boolean;
    v_all text[];
    v_pending text[];
    v_new_sent text[] := '{}';
    v_new_failed text[] := '{}';
    addr text;
    rr jsonb;
    o text;
    c integer;
    en text;
    tx text;
    dec record;
    v_state text;
    v_last_code integer;
    v_last_enh text;
    v_last_text text;
    v_account text;
    v_switch boolean := false;
    v_any_unknown boolean := false;
    v_throttled text[] := '{}';
    v_next_acc bigint;
    v_accounts bigint[];
    v_action text;
    v_until timestamptz;
    -- Recipients a per-recipient report left out: recorded with the message's answer,
    -- marked, so reports show every recipient (docs/protocol.md, "Per-recipient results").
    v_unreported jsonb := '[]';
BEGIN
    IF r IS NULL OR jsonb_typeof(r) <> 'object' THEN
        PERFORM mailrun.refuse(NULL, 'apply_result takes a JSON object');
    END IF;
    v_outcome := r->>'outcome';
    IF v_outcome IS NULL OR v_outcome NOT IN ('sent', 'deferred', 'failed', 'not_attempted', 'unknown') THEN
        PERFORM mailrun.refuse(NULL, format('invalid outcome %s', r->'outcome'));
    END IF;
    IF jsonb_typeof(r->'message_id') IS DISTINCT FROM 'number' THEN
        PERFORM mailrun.refuse(NULL, '"message_id" must be a number');
    END IF;
    v_token := mailrun.as_uuid(r->>'lease_token');
    IF v_token IS NULL THEN
        RETURN 'rejected';
    END IF;
    IF jsonb_typeof(r->'smtp_code') = 'number' THEN
        v_code := (r->>'smtp_code')::integer;
    END IF;
    v_enh := r->>'enhanced_status';
    v_text := r->>'text';
    v_at := coalesce((r->>'attempted_at')::timestamptz, now());
    IF jsonb_typeof(r->'recipients') = 'array' THEN
        v_recips := r->'recipients';
    END IF;

    SELECT * INTO m FROM mailrun.messages WHERE id = (r->>'message_id')::bigint FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'unknown';
    END IF;
    SELECT * INTO v_lease FROM mailrun.leases l WHERE l.lease_token = v_token AND l.message_id = m.id;
    IF NOT FOUND AND (r->'job_run_id' IS NULL OR mailrun.as_uuid(r->>'job_run_id') IS NOT NULL) THEN
        -- A lease of a fast claim round has no row: its token is derived from its job
        -- run's secret (mailrun.lease_token), so a match proves the same. It was leased
        -- on the message's one account (the fast path takes no failover list). A report
        -- without its job run (a direct SQL caller) can only be of the current lease.
        SELECT v_token, m.id, j.id, j.runner_id, j.created_at, j.lease_expires_at, m.account_id
        INTO v_lease
        FROM mailrun.job_runs j
        WHERE j.id = coalesce(mailrun.as_uuid(r->>'job_run_id'), m.job_run_id)
          AND j.lease_secret IS NOT NULL
          AND mailrun.lease_token(j.lease_secret, m.id) = v_token;
    END IF;
    IF NOT FOUND OR v_lease.runner_id <> p_runner THEN
        RETURN 'rejected';
    END IF;
    IF EXISTS (SELECT 1 FROM mailrun.delivery_attempts a
               WHERE a.message_id = m.id AND a.lease_token = v_token) THEN
        RETURN 'duplicate';
    END IF;
    v_late := NOT (m.state = 'leased' AND m.lease_token = v_token);
    SELECT a.name INTO v_account FROM mailrun.smtp_accounts a
        WHERE a.id = coalesce(v_lease.account_id, m.account_id);

    INSERT INTO mailrun.delivery_attempts (message_id, lease_token, job_run_id, runner_id, outcome,
        smtp_code, enhanced_status, text, recipients, attempted_at, late)
    VALUES (m.id, v_token, v_lease.job_run_id, p_runner, v_outcome, v_code, v_enh, v_text,
        v_recips, v_at, v_late);

    -- Decide each pending recipient: its own entry if the runner sent one, else the
    -- message's outcome; the reply policy overrides the runner's reading of a code.
    v_all := m.to_addrs || m.cc_addrs || m.bcc_addrs;
    v_pending := mailrun.pending(v_all, m.recipients_sent, m.recipients_failed);
    FOREACH addr IN ARRAY v_pending LOOP
        SELECT value INTO rr FROM jsonb_array_elements(v_recips)
            WHERE lower(mailrun.addr_spec(value->>'address')) = lower(mailrun.addr_spec(addr))
            LIMIT 1;
        IF rr IS NOT NULL THEN
            o := rr->>'outcome';
            c := CASE WHEN jsonb_typeof(rr->'smtp_code') = 'number' THEN (rr->>'smtp_code')::integer END;
            en := rr->>'enhanced_status';
            tx := rr->>'text';
        ELSE
            o := v_outcome;
            c := v_code;
            en := v_enh;
            tx := v_text;
            IF jsonb_array_length(v_recips) > 0 THEN
                v_unreported := v_unreported || jsonb_build_object(
                    'address', addr, 'outcome', v_outcome, 'smtp_code', v_code,
                    'enhanced_status', v_enh, 'reported', false,
                    'text', 'not reported by the runner; the message''s answer: '
                            || coalesce(v_text, '-'));
            END IF;
        END IF;
        IF o IN ('failed', 'deferred') THEN
            SELECT * INTO dec FROM mailrun.reply_decision(c, en, tx, mailrun.addr_domain(addr), v_account, m.final_codes);
            IF dec.action IS NOT NULL THEN
                o := CASE WHEN dec.action IN ('fail', 'suppress') THEN 'failed' ELSE 'deferred' END;
                IF NOT v_late THEN
                    -- A message-level answer names no recipient: suppress only when
                    -- it can only be about this one.
                    IF dec.action = 'suppress' AND (rr IS NOT NULL OR cardinality(v_pending) = 1)
                       AND mailrun.addr_spec(addr) IS NOT NULL THEN
                        INSERT INTO mailrun.suppressions (address, source, reason, smtp_code)
                        VALUES (lower(mailrun.addr_spec(addr)), 'bounce',
                                regexp_replace(left(concat_ws(' ', c, en, tx), 500), '[\r\n]+', ' ', 'g'), c)
                        ON CONFLICT (address) DO NOTHING;
                    ELSIF dec.action = 'another_account' THEN
                        v_switch := true;
                    END IF;
                END IF;
                IF dec.throttle = 'account' AND NOT ('account:' || v_account) = ANY (v_throttled) THEN
                    PERFORM mailrun.throttle_signal('account', v_account, c, en, tx);
                    v_throttled := v_throttled || ('account:' || v_account);
                ELSIF dec.throttle = 'domain'
                      AND NOT ('domain:' || mailrun.addr_domain(addr)) = ANY (v_throttled) THEN
                    PERFORM mailrun.throttle_signal('domain', mailrun.addr_domain(addr), c, en, tx);
                    v_throttled := v_throttled || ('domain:' || mailrun.addr_domain(addr));
                END IF;
            END IF;
            IF v_last_code IS NULL AND v_last_enh IS NULL AND rr IS NOT NULL THEN
                v_last_code := c;
                v_last_enh := en;
                v_last_text := rr->>'text';
            END IF;
        END IF;
        IF o = 'unknown' THEN
            v_any_unknown := true;
        END IF;
        IF o = 'sent' THEN
            v_new_sent := v_new_sent || addr;
        ELSIF o = 'failed' AND NOT v_late THEN
            v_new_failed := v_new_failed || addr;
        END IF;
        rr := NULL;
    END LOOP;
    IF jsonb_array_length(v_unreported) > 0 THEN
        UPDATE mailrun.delivery_attempts SET recipients = v_recips || v_unreported
            WHERE message_id = m.id AND lease_token = v_token;
    END IF;

    IF v_late THEN
        -- The lease was reaped (its reservation already given back) or replaced: what
        -- it reserved is spent either way.
        DELETE FROM mailrun.quota_reservations q WHERE q.lease_token = v_token;
        -- Only what certainly happened counts: accepted recipients of a still-live message.
        IF m.state IN ('queued', 'deferred', 'leased', 'unknown') AND cardinality(v_new_sent) > 0 THEN
            UPDATE mailrun.messages SET recipients_sent = recipients_sent || v_new_sent
                WHERE id = m.id;
            IF cardinality(mailrun.pending(v_all, m.recipients_sent || v_new_sent,
                                           m.recipients_failed)) = 0 THEN
                UPDATE mailrun.messages SET state = 'sent', finished_at = now(),
                    lease_runner = NULL, lease_token = NULL, lease_expires_at = NULL,
                    last_code = v_code, last_enhanced = v_enh, last_text = v_text,
                    last_attempt_at = v_at
                WHERE id = m.id;
            END IF;
        END IF;
        RETURN 'late';
    END IF;

    IF cardinality(mailrun.pending(v_pending, v_new_sent, v_new_failed)) = 0 THEN
        v_state := CASE WHEN cardinality(m.recipients_sent || v_new_sent) > 0
                        THEN 'sent' ELSE 'failed' END;
    ELSIF v_outcome = 'not_attempted' AND cardinality(v_new_sent || v_new_failed) = 0 THEN
        v_state := 'queued';
    ELSIF v_any_unknown THEN
        -- DATA went out, no answer came: never retried silently (docs/quotas.md).
        v_state := 'unknown';
    ELSIF now() >= m.expires_at THEN
        v_state := 'expired';
    ELSE
        v_state := 'deferred';
    END IF;

    IF v_state = 'queued' THEN
        PERFORM mailrun.quota_release(v_token);
    ELSE
        DELETE FROM mailrun.quota_reservations q WHERE q.lease_token = v_token;
    END IF;

    -- Failover: the next account of the list not yet failed for this message, due now.
    IF v_state = 'deferred' AND v_switch THEN
        v_accounts := CASE WHEN cardinality(m.account_ids) > 0 THEN m.account_ids
                           ELSE ARRAY[m.account_id] END;
        SELECT a INTO v_next_acc FROM unnest(v_accounts) WITH ORDINALITY AS u(a, i)
            WHERE a <> m.account_id AND NOT a = ANY (m.skip_account_ids) ORDER BY i LIMIT 1;
    END IF;

    IF (v_state = 'sent' OR v_last_code IS NULL AND v_last_enh IS NULL)
       AND (v_code IS NOT NULL OR v_enh IS NOT NULL OR v_text IS NOT NULL) THEN
        v_last_code := v_code;
        v_last_enh := v_enh;
        v_last_text := v_text;
    END IF;

    UPDATE mailrun.messages SET
        state = v_state,
        attempts = attempts + CASE WHEN v_state = 'queued' THEN 0 ELSE 1 END,
        next_attempt_at = CASE
            WHEN v_state = 'deferred' AND v_next_acc IS NOT NULL THEN now()
            WHEN v_state = 'deferred' THEN now() + make_interval(secs =>
                mailrun.backoff_seconds(attempts + 1))
            WHEN v_state = 'queued' THEN now()
            ELSE next_attempt_at END,
        -- Failed accounts are remembered until every account of the list has failed;
        -- then the list starts over after the backoff.
        skip_account_ids = CASE
            WHEN v_next_acc IS NOT NULL THEN skip_account_ids || account_id
            WHEN v_state = 'deferred' AND v_switch THEN '{}'::bigint[]
            ELSE skip_account_ids END,
        finished_at = CASE WHEN v_state IN ('sent', 'failed', 'expired') THEN now() END,
        lease_runner = NULL, lease_token = NULL, lease_expires_at = NULL,
        recipients_sent = recipients_sent || v_new_sent,
        recipients_failed = recipients_failed || v_new_failed,
        last_code = CASE WHEN v_state = 'queued' THEN last_code ELSE v_last_code END,
        last_enhanced = CASE WHEN v_state = 'queued' THEN last_enhanced ELSE v_last_enh END,
        last_text = CASE WHEN v_state = 'queued' THEN last_text
                         WHEN v_state = 'unknown' THEN coalesce(v_last_text, 'no answer after the final dot')
                         ELSE v_last_text END,
        last_attempt_at = CASE WHEN v_state = 'queued' THEN last_attempt_at ELSE v_at END
    WHERE id = m.id;

    -- A runner applying the reply policy stops using an account for the rest of a batch
    -- once an answer says "another account" (535, relay denied) and reports the messages
    -- it did not start NotAttempted, carrying that answer's code and enhanced status, with
    -- "not attempted: account X ..." as the text. Re-queued as they are, the next batch
    -- would try the broken account again, one message per batch; so such a message fails
    -- over as if it had got the answer itself, when the policy (decided here, not by the
    -- runner) says another_account and the account is not paused (a paused account is
    -- the claim's business: held with the throttle reason, or the next account): to the
    -- next account of its failover list, due now; with no account left it is held for
    -- the retry backoff. No attempt is counted; the reservation was given back above.
    IF v_state = 'queued' AND v_outcome = 'not_attempted' AND v_code IS NOT NULL
       AND coalesce(v_text, '') LIKE 'not attempted: account %'
       AND v_lease.account_id IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM mailrun.throttles t
                       WHERE t.scope = 'account' AND t.key = v_account
                         AND t.paused_until > now()) THEN
        SELECT d.action INTO v_action FROM mailrun.reply_decision(v_code, v_enh, v_text,
            mailrun.addr_domain(v_all[1]), v_account, m.final_codes) d;
        IF v_action = 'another_account' THEN
            v_accounts := CASE WHEN cardinality(m.account_ids) > 0 THEN m.account_ids
                               ELSE ARRAY[m.account_id] END;
            SELECT u.acc INTO v_next_acc FROM unnest(v_accounts) WITH ORDINALITY AS u(acc, i)
                WHERE u.acc <> v_lease.account_id AND NOT u.acc = ANY (m.skip_account_ids)
                ORDER BY u.i LIMIT 1;
            IF v_next_acc IS NOT NULL THEN
                UPDATE mailrun.messages SET skip_account_ids = skip_account_ids || v_lease.account_id,
                    next_attempt_at = now()
                WHERE id = m.id;
            ELSE
                v_until := now() + make_interval(secs => mailrun.backoff_seconds(m.attempts + 1));
                -- Not a quota hold: an empty held_quota_ids keeps releases from waking it early.
                UPDATE mailrun.messages SET skip_account_ids = '{}', next_attempt_at = v_until,
                    held_until = v_until, held_quota_ids = '{}',
                    held_reason = format('held: account %s refused another message of its batch (%s %s) until %s',
                        v_account, v_code, coalesce(v_enh, ''),
                        to_char(v_until AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC')
                WHERE id = m.id;
            END IF;
        END IF;
    END IF;
    RETURN 'applied';
END
$$;
