-- mailrun schema, version 5: the reply policy travels to runners, and given-back quota
-- reservations release held mail early (docs/quotas.md). Replaces no procedure of
-- versions 3 and 4 (claim_batch is untouched); wraps apply_result.
--
-- 1. A change to mailrun.reply_rules creates a new config version (a copy of the latest
--    settings), so `push-config --all` sends the new policy to every runner.
-- 2. messages.held_quota_ids: the quotas a held message waits for, filled by a trigger
--    whenever a claim sets held_until (the message's full quotas at that moment) and
--    cleared with it.
-- 3. Every insert into mailrun.quota_releases (NotAttempted reports, reaped leases)
--    makes as many messages held by that quota due again as reservations came back; the
--    next claim re-checks the cap and holds again what still does not fit.
-- 4. apply_result wraps the previous one (renamed apply_result_base): a message a runner
--    set aside after an "another account" answer fails over like the message that got
--    the answer.

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

-- The quotas a message is held by: those of its accounts (the failover list) and of its
-- pending recipients' domains that have no room left when the hold is set. Runs only
-- when held_until changes (a hold set, moved or ended), inside the claim that holds the
-- message, so it sees that claim's counters. A statement that sets held_quota_ids itself
-- keeps its value.
CREATE FUNCTION mailrun.messages_held_quotas() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.held_until IS NULL THEN
        NEW.held_quota_ids := NULL;
        RETURN NEW;
    END IF;
    IF NEW.held_quota_ids IS DISTINCT FROM OLD.held_quota_ids THEN
        RETURN NEW;
    END IF;
    NEW.held_quota_ids := nullif(ARRAY(
        SELECT q.id FROM mailrun.quotas q
        WHERE ((q.scope = 'account' AND q.key IN (
                    SELECT a.name FROM mailrun.smtp_accounts a
                    WHERE a.id = ANY (CASE WHEN cardinality(NEW.account_ids) > 0
                                           THEN NEW.account_ids ELSE ARRAY[NEW.account_id] END)))
               OR (q.scope = 'domain' AND q.key IN (
                    SELECT mailrun.addr_domain(t)
                    FROM unnest(mailrun.pending(NEW.to_addrs || NEW.cc_addrs || NEW.bcc_addrs,
                                                NEW.recipients_sent, NEW.recipients_failed)) t)))
          AND (SELECT r.room FROM mailrun.quota_room(q, mailrun.throttle_factor(q.scope, q.key)) r) <= 0
        ORDER BY q.id), '{}');
    RETURN NEW;
END
$$;
CREATE TRIGGER messages_held_quotas BEFORE UPDATE OF held_until ON mailrun.messages
    FOR EACH ROW WHEN (NEW.held_until IS DISTINCT FROM OLD.held_until)
    EXECUTE FUNCTION mailrun.messages_held_quotas();

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
-- 4. Messages set aside after an "another account" answer fail over too
------------------------------------------------------------------------------------------

ALTER FUNCTION mailrun.apply_result(text, jsonb) RENAME TO apply_result_base;

-- As before (apply_result_base), and: a runner applying the reply policy stops using an
-- account for the rest of a batch once an answer says "another account" (535, relay
-- denied) and reports the messages it did not start NotAttempted, carrying that answer's
-- code and enhanced status, with "not attempted: account X ..." as the text.
-- apply_result_base only re-queues them, and the next batch would try the broken
-- account again, one message per batch. Here such a message fails over as if it had got
-- the answer itself, when the policy (decided here, not by the runner) says
-- another_account and the account is not paused (a paused account is the claim's
-- business: held with the throttle reason, or the next account): to the next account of
-- its failover list, due now; with no account left it is held for the retry backoff. No
-- attempt is counted; the reservation was given back.
CREATE FUNCTION mailrun.apply_result(p_runner text, r jsonb) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_result text;
    m mailrun.messages%ROWTYPE;
    v_lease mailrun.leases%ROWTYPE;
    v_account text;
    v_code integer;
    v_action text;
    v_accounts bigint[];
    v_next bigint;
    v_until timestamptz;
BEGIN
    v_result := mailrun.apply_result_base(p_runner, r);
    IF v_result <> 'applied' OR r->>'outcome' IS DISTINCT FROM 'not_attempted'
       OR coalesce(r->>'text', '') NOT LIKE 'not attempted: account %'
       OR jsonb_typeof(r->'smtp_code') IS DISTINCT FROM 'number' THEN
        RETURN v_result;
    END IF;
    v_code := (r->>'smtp_code')::integer;
    -- apply_result_base validated and locked the message; NotAttempted left it 'queued'.
    SELECT * INTO m FROM mailrun.messages WHERE id = (r->>'message_id')::bigint;
    SELECT * INTO v_lease FROM mailrun.leases l
        WHERE l.lease_token = (r->>'lease_token')::uuid AND l.message_id = m.id;
    IF m.state <> 'queued' OR v_lease.account_id IS NULL THEN
        RETURN v_result;
    END IF;
    SELECT a.name INTO v_account FROM mailrun.smtp_accounts a WHERE a.id = v_lease.account_id;
    IF EXISTS (SELECT 1 FROM mailrun.throttles t
               WHERE t.scope = 'account' AND t.key = v_account AND t.paused_until > now()) THEN
        RETURN v_result;
    END IF;
    SELECT d.action INTO v_action FROM mailrun.reply_decision(v_code, r->>'enhanced_status',
        r->>'text', mailrun.addr_domain((m.to_addrs || m.cc_addrs || m.bcc_addrs)[1]),
        v_account, m.final_codes) d;
    IF v_action IS DISTINCT FROM 'another_account' THEN
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
        -- Not a quota hold: an empty held_quota_ids keeps releases from waking it early.
        UPDATE mailrun.messages SET skip_account_ids = '{}', next_attempt_at = v_until,
            held_until = v_until, held_quota_ids = '{}',
            held_reason = format('held: account %s refused another message of its batch (%s %s) until %s',
                v_account, v_code, coalesce(r->>'enhanced_status', ''),
                to_char(v_until AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC')
        WHERE id = m.id;
    END IF;
    RETURN v_result;
END
$$;
