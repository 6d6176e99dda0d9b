-- mailrun schema, version 3: sending quotas, throttle feedback, failover between SMTP
-- accounts, the reply-policy table, the "unknown outcome" state and the suppression
-- list (docs/quotas.md). Replaces claim_batch, apply_result and reap_expired keeping
-- their signatures, and wraps enqueue_at.

------------------------------------------------------------------------------------------
-- Tables
------------------------------------------------------------------------------------------

-- A disabled account is skipped by claims (failover goes to the next one).
ALTER TABLE mailrun.smtp_accounts ADD COLUMN enabled boolean NOT NULL DEFAULT true;

-- Caps per scope: an SMTP account (by name), a runner (by id) or a recipient domain.
-- NULL = no cap of that kind. Hour and day are UTC calendar buckets; the window is
-- sliding (window_limit messages per window_seconds).
CREATE TABLE mailrun.quotas (
    id             bigserial PRIMARY KEY,
    scope          text NOT NULL CHECK (scope IN ('account', 'runner', 'domain')),
    key            text NOT NULL CHECK (key ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$'),
    per_second     integer CHECK (per_second > 0),
    per_hour       integer CHECK (per_hour > 0),
    per_day        integer CHECK (per_day > 0),
    window_seconds integer CHECK (window_seconds BETWEEN 1 AND 604800),
    window_limit   integer CHECK (window_limit > 0),
    -- Bumped by every claim that takes from this quota: under REPEATABLE READ a
    -- concurrent claimer then gets a serialization failure instead of a stale count.
    claims         bigint NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (scope, key),
    CHECK ((window_seconds IS NULL) = (window_limit IS NULL)),
    CHECK (scope <> 'domain' OR key = lower(key))
);

-- Per-bucket counters: claim cost depends on the number of quotas touched, never on
-- the queue. Only written by a claimer holding the quota row's lock.
CREATE TABLE mailrun.quota_usage (
    quota_id bigint NOT NULL REFERENCES mailrun.quotas (id) ON DELETE CASCADE,
    kind     text NOT NULL CHECK (kind IN ('second', 'hour', 'day', 'window')),
    bucket   timestamptz NOT NULL,
    used     integer NOT NULL,
    PRIMARY KEY (quota_id, kind, bucket)
);
CREATE INDEX quota_usage_bucket ON mailrun.quota_usage (bucket);

-- What each lease took (a lease is a reservation until its report arrives).
CREATE TABLE mailrun.quota_reservations (
    lease_token uuid NOT NULL,
    quota_id    bigint NOT NULL REFERENCES mailrun.quotas (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL,
    PRIMARY KEY (lease_token, quota_id)
);
CREATE INDEX quota_reservations_at ON mailrun.quota_reservations (at);

-- Reservations given back (NotAttempted, reaped). Insert-only, so reporting never waits
-- for a claimer; the next claimer holding the quota's lock folds them into the counters.
CREATE TABLE mailrun.quota_releases (
    id       bigserial PRIMARY KEY,
    quota_id bigint NOT NULL REFERENCES mailrun.quotas (id) ON DELETE CASCADE,
    at       timestamptz NOT NULL
);
CREATE INDEX quota_releases_quota ON mailrun.quota_releases (quota_id);

-- Throttle state from runners' reports (421, rate-limit texts). `factor` scales every cap
-- of the scope; it doubles back towards 1 every recover period without a new signal.
CREATE TABLE mailrun.throttles (
    scope          text NOT NULL CHECK (scope IN ('account', 'domain')),
    key            text NOT NULL,
    factor         double precision NOT NULL DEFAULT 1 CHECK (factor > 0 AND factor <= 1),
    paused_until   timestamptz,
    signals        bigint NOT NULL DEFAULT 0,
    last_signal_at timestamptz,
    last_code      integer,
    last_enhanced  text,
    last_text      text,
    PRIMARY KEY (scope, key)
);

-- One row: throttle rule parameters and the unknown-outcome rule.
CREATE TABLE mailrun.quota_settings (
    singleton                  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    throttle_pause_seconds     integer NOT NULL DEFAULT 60 CHECK (throttle_pause_seconds > 0),
    throttle_max_pause_seconds integer NOT NULL DEFAULT 3600
        CHECK (throttle_max_pause_seconds > 0),
    throttle_recover_seconds   integer NOT NULL DEFAULT 600 CHECK (throttle_recover_seconds > 0),
    throttle_min_factor        double precision NOT NULL DEFAULT 0.015625
        CHECK (throttle_min_factor > 0 AND throttle_min_factor <= 1),
    -- NULL: a message with an unknown outcome waits for an operator; else it is retried
    -- this long after the attempt.
    unknown_retry_after_seconds integer CHECK (unknown_retry_after_seconds > 0)
);
INSERT INTO mailrun.quota_settings DEFAULT VALUES;

-- Named failover lists: a message enqueued with "account_group" gets the group's
-- accounts (as they are at enqueue) as its failover list.
CREATE TABLE mailrun.account_groups (
    name       text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    accounts   text[] NOT NULL CHECK (cardinality(accounts) > 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Recipients never to send to (hard bounces, operator entries).
CREATE TABLE mailrun.suppressions (
    address    text PRIMARY KEY CHECK (address = lower(address) AND address ~ '^[^@\s]+@[^@\s]+$'),
    source     text NOT NULL CHECK (source IN ('operator', 'bounce')),
    reason     text NOT NULL CHECK (reason !~ '[\r\n]'),
    smtp_code  integer,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Is `p` a valid (case-insensitive POSIX) regular expression?
CREATE FUNCTION mailrun.valid_regex(p text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    PERFORM '' ~* p;
    RETURN true;
EXCEPTION WHEN invalid_regular_expression THEN
    RETURN false;
END
$$;

-- The reply policy: ordered rules deciding what an SMTP answer means (docs/quotas.md).
CREATE TABLE mailrun.reply_rules (
    id         bigserial PRIMARY KEY,
    position   integer NOT NULL UNIQUE CHECK (position BETWEEN 1 AND 999999999),
    code       text CHECK (code ~ '^[245][0-9x][0-9x]$'),
    enhanced   text CHECK (enhanced ~ '^[245](\.[0-9]{1,3}){0,2}$'),
    pattern    text CHECK (pattern !~ '[\r\n]' AND mailrun.valid_regex(pattern)),
    domain     text CHECK (domain ~ '^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$'),
    account    text,
    action     text NOT NULL CHECK (action IN ('retry', 'another_account', 'suppress', 'fail')),
    throttle   text NOT NULL DEFAULT 'none' CHECK (throttle IN ('none', 'account', 'domain')),
    note       text,
    shipped    boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (code IS NOT NULL OR enhanced IS NOT NULL OR pattern IS NOT NULL)
);

-- Shipped defaults: the known misclassifications. Operators may delete or reorder them.
INSERT INTO mailrun.reply_rules (position, code, enhanced, pattern, action, throttle, note) VALUES
    (10, '421', NULL, NULL, 'another_account', 'account',
     '421: the server is closing the connection; never final'),
    (20, '4xx', NULL, 'receiving mail at a rate|rate that prevents', 'retry', 'domain',
     'recipient domain rate-limits us'),
    (30, '4xx', NULL, 'rate.?limit|too many (messages|connections|mails|emails)|throttl|sending (limit|quota)|quota exceeded|try again later', 'retry', 'account',
     'provider rate limit (temporary)'),
    (40, '5xx', NULL, 'rate.?limit|connection frequency limited|too many (messages|connections|mails|emails)|throttl|sending (limit|quota)|quota exceeded|try again later', 'retry', 'account',
     'rate limit reported with a 5xx code: temporary (e.g. 550 5.7.1 "rate limited")'),
    (50, '535', NULL, NULL, 'another_account', 'none',
     'authentication failed: the account, not the recipient, is at fault'),
    (60, '5xx', NULL, 'relay access denied|relaying denied|not permitted to relay', 'another_account', 'none',
     'the account may not relay: try another'),
    (70, '552', '5.2.2', NULL, 'retry', 'none', 'mailbox full: usually temporary'),
    (80, '5xx', '5.1.1', NULL, 'suppress', 'none', 'no such mailbox: hard bounce'),
    (90, '5xx', '5.1.10', NULL, 'suppress', 'none', 'null MX: the domain accepts no mail'),
    (100, '550', NULL, 'user unknown|unknown user|no such user|mailbox does not exist|recipient address rejected: user', 'suppress', 'none',
     'no such mailbox (without an enhanced status)');
UPDATE mailrun.reply_rules SET shipped = true;

-- Messages: a failover list of accounts, accounts that failed for this message, the
-- reason a quota holds it back, and the new 'unknown' state.
ALTER TABLE mailrun.messages
    ADD COLUMN account_ids bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN skip_account_ids bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN held_reason text,
    ADD COLUMN held_until timestamptz;
ALTER TABLE mailrun.messages DROP CONSTRAINT messages_state_check;
ALTER TABLE mailrun.messages ADD CONSTRAINT messages_state_check CHECK (state IN
    ('queued', 'leased', 'sent', 'deferred', 'failed', 'cancelled', 'expired', 'unknown'));
CREATE INDEX messages_unknown ON mailrun.messages (last_attempt_at) WHERE state = 'unknown';
ALTER TABLE mailrun.delivery_attempts DROP CONSTRAINT delivery_attempts_outcome_check;
ALTER TABLE mailrun.delivery_attempts ADD CONSTRAINT delivery_attempts_outcome_check
    CHECK (outcome IN ('sent', 'deferred', 'failed', 'not_attempted', 'unknown'));
-- The account a lease was handed out with (throttle feedback names it).
ALTER TABLE mailrun.leases ADD COLUMN account_id bigint;

------------------------------------------------------------------------------------------
-- Quota arithmetic
------------------------------------------------------------------------------------------

-- Size of a sliding window's buckets: 1/60 of the window (at least 1 s).
CREATE FUNCTION mailrun.window_bucket_seconds(window_seconds integer) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT greatest(1, coalesce(window_seconds, 60) / 60)
$$;

-- The bucket an instant falls in, per kind (UTC calendar hour and day).
CREATE FUNCTION mailrun.quota_bucket(kind text, at timestamptz, window_seconds integer)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE kind
        WHEN 'second' THEN date_trunc('second', at)
        WHEN 'hour' THEN date_trunc('hour', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
        WHEN 'day' THEN date_trunc('day', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
        ELSE to_timestamp(floor(extract(epoch FROM at)
                / mailrun.window_bucket_seconds(window_seconds))
                * mailrun.window_bucket_seconds(window_seconds))
    END
$$;

-- The throttle factor in force now: the stored one, doubled per quiet recover period.
CREATE FUNCTION mailrun.throttle_factor(p_scope text, p_key text) RETURNS double precision
LANGUAGE sql STABLE AS $$
    SELECT coalesce((
        SELECT least(1.0, t.factor * power(2.0, least(60, floor(
            extract(epoch FROM now() - coalesce(t.last_signal_at, now()))
            / s.throttle_recover_seconds))))
        FROM mailrun.throttles t, mailrun.quota_settings s
        WHERE t.scope = p_scope AND t.key = p_key), 1.0)
$$;

-- A cap scaled by a throttle factor; never below 1.
CREATE FUNCTION mailrun.scaled(cap integer, factor double precision) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN cap IS NULL THEN NULL ELSE greatest(1, floor(cap * factor)::integer) END
$$;

-- Room left in a quota now (NULL = unlimited), and when a full quota frees up with a
-- human reason naming the binding cap. Call with the quota row locked.
CREATE FUNCTION mailrun.quota_room(q mailrun.quotas, factor double precision,
    OUT room integer, OUT free_at timestamptz, OUT reason text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    k text;
    cap integer;
    used integer;
    r integer;
    v_free timestamptz;
    bs integer := mailrun.window_bucket_seconds(q.window_seconds);
    label text;
BEGIN
    FOREACH k IN ARRAY ARRAY['second', 'hour', 'day', 'window'] LOOP
        cap := mailrun.scaled(CASE k WHEN 'second' THEN q.per_second WHEN 'hour' THEN q.per_hour
            WHEN 'day' THEN q.per_day ELSE q.window_limit END, factor);
        CONTINUE WHEN cap IS NULL;
        IF k = 'window' THEN
            -- Buckets overlapping the window count whole: conservative, never over.
            SELECT coalesce(sum(u.used), 0) INTO used FROM mailrun.quota_usage u
            WHERE u.quota_id = q.id AND u.kind = 'window'
              AND u.bucket > now() - make_interval(secs => q.window_seconds + bs);
        ELSE
            SELECT coalesce(sum(u.used), 0) INTO used FROM mailrun.quota_usage u
            WHERE u.quota_id = q.id AND u.kind = k
              AND u.bucket = mailrun.quota_bucket(k, now(), q.window_seconds);
        END IF;
        r := cap - used;
        room := least(coalesce(room, r), r);
        IF r <= 0 THEN
            IF k = 'window' THEN
                -- Frees when enough of the oldest buckets have left the window for one
                -- more to fit.
                SELECT min(x.bucket) + make_interval(secs => q.window_seconds + bs) INTO v_free
                FROM (SELECT u.bucket, sum(u.used) OVER (ORDER BY u.bucket) AS cum
                      FROM mailrun.quota_usage u
                      WHERE u.quota_id = q.id AND u.kind = 'window'
                        AND u.bucket > now() - make_interval(secs => q.window_seconds + bs)) x
                WHERE used - x.cum < cap;
                v_free := coalesce(v_free, now() + make_interval(secs => bs));
            ELSE
                v_free := mailrun.quota_bucket(k, now(), NULL) + CASE k
                    WHEN 'second' THEN interval '1 second' WHEN 'hour' THEN interval '1 hour'
                    ELSE interval '1 day' END;
            END IF;
            IF free_at IS NULL OR v_free > free_at THEN
                free_at := v_free;
                label := CASE k
                    WHEN 'second' THEN format('rate %s/s', cap)
                    WHEN 'hour' THEN format('hourly cap %s/h', cap)
                    WHEN 'day' THEN format('daily cap %s/day', cap)
                    ELSE format('window cap %s per %s s', cap, q.window_seconds) END;
                reason := format('%s %s %s%s until %s', q.scope, q.key, label,
                    CASE WHEN factor < 1 THEN format(' (throttled to %s%%)', round((factor * 100)::numeric, 1)) ELSE '' END,
                    to_char(v_free AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC');
            END IF;
        END IF;
    END LOOP;
END
$$;

-- Locks a quota row for a claim. Waits only when `wait` (the caller keeps a global lock
-- order: runner quotas first, then by id); otherwise gives up at once when another
-- claimer holds it. Folds given-back reservations into the counters.
CREATE FUNCTION mailrun.quota_lock(p_id bigint, p_wait boolean) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    q mailrun.quotas%ROWTYPE;
BEGIN
    -- NO KEY UPDATE: does not conflict with the KEY SHARE lock that inserting a
    -- release (foreign key) takes, so reports never wait for claimers.
    IF p_wait THEN
        SELECT * INTO q FROM mailrun.quotas WHERE id = p_id FOR NO KEY UPDATE;
    ELSE
        SELECT * INTO q FROM mailrun.quotas WHERE id = p_id FOR NO KEY UPDATE SKIP LOCKED;
    END IF;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE mailrun.quotas SET claims = claims + 1 WHERE id = p_id;
    WITH r AS (DELETE FROM mailrun.quota_releases WHERE quota_id = p_id RETURNING at),
    k AS (SELECT kind, mailrun.quota_bucket(kind, r.at, q.window_seconds) AS bucket,
                 count(*) AS n
          FROM r CROSS JOIN unnest(ARRAY['second', 'hour', 'day', 'window']) AS kind
          GROUP BY 1, 2)
    UPDATE mailrun.quota_usage u SET used = greatest(0, u.used - k.n)
    FROM k WHERE u.quota_id = p_id AND u.kind = k.kind AND u.bucket = k.bucket;
    RETURN true;
END
$$;

-- Counts one message against a quota now (call with the row locked).
CREATE FUNCTION mailrun.quota_take(p_id bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    q mailrun.quotas%ROWTYPE;
    k text;
BEGIN
    SELECT * INTO q FROM mailrun.quotas WHERE id = p_id;
    FOREACH k IN ARRAY ARRAY['second', 'hour', 'day', 'window'] LOOP
        CONTINUE WHEN (CASE k WHEN 'second' THEN q.per_second WHEN 'hour' THEN q.per_hour
            WHEN 'day' THEN q.per_day ELSE q.window_limit END) IS NULL;
        INSERT INTO mailrun.quota_usage AS u (quota_id, kind, bucket, used)
        VALUES (p_id, k, mailrun.quota_bucket(k, now(), q.window_seconds), 1)
        ON CONFLICT (quota_id, kind, bucket) DO UPDATE SET used = u.used + 1;
    END LOOP;
END
$$;

-- Gives back what a lease reserved (NotAttempted, reaped): insert-only.
CREATE FUNCTION mailrun.quota_release(p_token uuid) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO mailrun.quota_releases (quota_id, at)
        SELECT r.quota_id, r.at FROM mailrun.quota_reservations r WHERE r.lease_token = p_token;
    DELETE FROM mailrun.quota_reservations r WHERE r.lease_token = p_token;
$$;

-- Records a throttle signal for an account or a domain: unless already paused, the
-- factor halves (not below throttle_min_factor) and the scope pauses for
-- least(max_pause, pause / factor) seconds. Signals during a pause (mail that was
-- already on its way) only update the last answer.
CREATE FUNCTION mailrun.throttle_signal(p_scope text, p_key text, p_code integer,
    p_enhanced text, p_text text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s mailrun.quota_settings%ROWTYPE;
    t mailrun.throttles%ROWTYPE;
    f double precision;
BEGIN
    IF p_key IS NULL THEN
        RETURN;
    END IF;
    SELECT * INTO s FROM mailrun.quota_settings;
    INSERT INTO mailrun.throttles (scope, key) VALUES (p_scope, p_key) ON CONFLICT DO NOTHING;
    SELECT * INTO t FROM mailrun.throttles WHERE scope = p_scope AND key = p_key FOR UPDATE;
    IF t.paused_until IS NULL OR t.paused_until <= now() THEN
        f := greatest(s.throttle_min_factor, mailrun.throttle_factor(p_scope, p_key) / 2);
        UPDATE mailrun.throttles SET factor = f, last_signal_at = now(),
            paused_until = now() + make_interval(secs =>
                least(s.throttle_max_pause_seconds::double precision, s.throttle_pause_seconds / f))
        WHERE scope = p_scope AND key = p_key;
    END IF;
    UPDATE mailrun.throttles SET signals = signals + 1, last_code = p_code,
        last_enhanced = p_enhanced, last_text = left(p_text, 500)
    WHERE scope = p_scope AND key = p_key;
END
$$;

------------------------------------------------------------------------------------------
-- Reply policy
------------------------------------------------------------------------------------------

-- The domain of an address (lowercase), or NULL.
CREATE FUNCTION mailrun.addr_domain(addr text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT lower(substring(mailrun.addr_spec(addr) FROM '@([^@]+)$'))
$$;

-- What an SMTP answer means: the first match among the message's own final_codes,
-- the reply_rules table (by position), the config's finality rules; else 5xx fail,
-- 4xx retry. `action` is NULL when nothing is known (no code, no matching text).
CREATE FUNCTION mailrun.reply_decision(p_code integer, p_enhanced text, p_text text,
    p_domain text, p_account text, p_message_rules jsonb,
    OUT action text, OUT throttle text, OUT rule_id bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    r jsonb;
    rr mailrun.reply_rules%ROWTYPE;
    perm boolean;
BEGIN
    throttle := 'none';
    FOR r IN SELECT value FROM jsonb_array_elements(coalesce(p_message_rules, '[]'::jsonb)) LOOP
        IF (r->>'code' IS NULL
                OR (p_code IS NOT NULL AND p_code::text LIKE replace(r->>'code', 'x', '_')))
           AND (r->>'enhanced' IS NULL
                OR (p_enhanced IS NOT NULL
                    AND (p_enhanced = r->>'enhanced' OR p_enhanced LIKE (r->>'enhanced') || '.%')))
        THEN
            action := CASE WHEN (r->>'permanent')::boolean THEN 'fail' ELSE 'retry' END;
            RETURN;
        END IF;
    END LOOP;
    SELECT * INTO rr FROM mailrun.reply_rules x
    WHERE (x.code IS NULL OR (p_code IS NOT NULL AND p_code::text LIKE replace(x.code, 'x', '_')))
      AND (x.enhanced IS NULL OR (p_enhanced IS NOT NULL
           AND (p_enhanced = x.enhanced OR p_enhanced LIKE x.enhanced || '.%')))
      AND (x.pattern IS NULL OR (p_text IS NOT NULL AND p_text ~* x.pattern))
      AND (x.domain IS NULL OR (p_domain IS NOT NULL
           AND (lower(p_domain) = x.domain OR lower(p_domain) LIKE '%.' || x.domain)))
      AND (x.account IS NULL OR x.account = p_account)
    ORDER BY x.position LIMIT 1;
    IF FOUND THEN
        action := rr.action;
        throttle := rr.throttle;
        rule_id := rr.id;
        RETURN;
    END IF;
    perm := mailrun.is_permanent(p_code, p_enhanced, NULL);
    IF perm IS NOT NULL THEN
        action := CASE WHEN perm THEN 'fail' ELSE 'retry' END;
    END IF;
END
$$;

------------------------------------------------------------------------------------------
-- Enqueue: failover lists and suppression
------------------------------------------------------------------------------------------

ALTER FUNCTION mailrun.enqueue_at(integer, jsonb) RENAME TO enqueue_at_v1;

-- Adds to version 1: "accounts" (an ordered failover list of account names, instead of
-- "account"), "account_group" (a named list) and the suppression list (suppressed
-- recipients are failed at once; a message with only suppressed recipients is stored
-- as failed).
CREATE FUNCTION mailrun.enqueue_at(pos integer, m jsonb) RETURNS bigint
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

------------------------------------------------------------------------------------------
-- Claim, report, reap (replacing version 1)
------------------------------------------------------------------------------------------

-- As version 1 (same result columns), and: a message goes out only when it fits every
-- quota of its account, its recipients' domains and the runner; over-quota messages are
-- held (next_attempt_at moves to when the cap frees, held_reason says why); a message
-- with a failover list uses the first usable account; suppressed recipients are failed.
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
                    finished_at = now(), held_reason = NULL, held_until = NULL
                WHERE d.id = m.id;
                CONTINUE;
            END IF;
        END IF;

        v_busy := false;
        v_hold_until := NULL;
        v_hold_reason := NULL;
        v_take := '{}';
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
                held_until = v_hold_until, held_reason = 'held: ' || v_hold_reason
            WHERE d.id = m.id;
            CONTINUE;
        END IF;

        -- The first usable account of the failover list (or the message's one account).
        v_accounts := CASE WHEN cardinality(m.account_ids) > 0 THEN m.account_ids
                           ELSE ARRAY[m.account_id] END;
        v_chosen := NULL;
        v_acc_until := NULL;
        v_acc_reasons := '{}';
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
                held_reason = 'held: ' || array_to_string(v_acc_reasons, '; ')
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
            held_reason = NULL, held_until = NULL
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

-- As version 1, and: the reply policy decides each answer (retry, another account,
-- suppress, fail) and may throttle the account or the recipient domain; outcome
-- 'unknown' (DATA sent, no answer) parks the message in state 'unknown'; a lease's
-- quota reservation is given back on NotAttempted and kept otherwise.
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
    IF coalesce(r->>'lease_token', '') !~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$' THEN
        RETURN 'rejected';
    END IF;
    v_token := (r->>'lease_token')::uuid;
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
    RETURN 'applied';
END
$$;

-- As version 1, and: reaped leases give back their quota reservations; messages in
-- state 'unknown' are retried once unknown_retry_after_seconds passed (when set); old
-- counters and orphaned reservations are pruned.
CREATE OR REPLACE FUNCTION mailrun.reap_expired() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_count bigint;
    v_unknown_after integer;
BEGIN
    WITH stale AS (
        SELECT id, lease_token FROM mailrun.messages
        WHERE state = 'leased' AND lease_expires_at < now()
        FOR UPDATE SKIP LOCKED),
    released AS (
        INSERT INTO mailrun.quota_releases (quota_id, at)
        SELECT r.quota_id, r.at FROM mailrun.quota_reservations r
        JOIN stale s ON s.lease_token = r.lease_token),
    forgotten AS (
        DELETE FROM mailrun.quota_reservations r USING stale s
        WHERE r.lease_token = s.lease_token)
    UPDATE mailrun.messages m SET
        state = CASE WHEN m.expires_at <= now() THEN 'expired' ELSE 'queued' END,
        finished_at = CASE WHEN m.expires_at <= now() THEN now() END,
        lease_runner = NULL, lease_token = NULL, lease_expires_at = NULL
    FROM stale WHERE m.id = stale.id;
    GET DIAGNOSTICS v_count = ROW_COUNT;

    SELECT unknown_retry_after_seconds INTO v_unknown_after FROM mailrun.quota_settings;
    IF v_unknown_after IS NOT NULL THEN
        UPDATE mailrun.messages m SET state = 'deferred', next_attempt_at = now()
        WHERE m.id IN (SELECT id FROM mailrun.messages
                       WHERE state = 'unknown'
                         AND last_attempt_at <= now() - make_interval(secs => v_unknown_after)
                       FOR UPDATE SKIP LOCKED);
    END IF;

    DELETE FROM mailrun.quota_usage WHERE bucket < now() - interval '8 days';
    -- A lease lasts at most a day; a reservation older than two is orphaned (its
    -- message was cancelled while leased and no report came).
    DELETE FROM mailrun.quota_reservations WHERE at < now() - interval '2 days';
    RETURN v_count;
END
$$;

-- Decides a message whose outcome is unknown: 'sent' (the operator knows it arrived),
-- 'failed', or 'retry' (due now). Returns the state before.
CREATE FUNCTION mailrun.resolve_unknown(p_id bigint, p_as text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    m mailrun.messages%ROWTYPE;
    v_pending text[];
BEGIN
    IF p_as IS NULL OR p_as NOT IN ('sent', 'failed', 'retry') THEN
        PERFORM mailrun.refuse(NULL, 'resolve as sent, failed or retry');
    END IF;
    SELECT * INTO m FROM mailrun.messages WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'no_data_found', MESSAGE = format('no message %s', p_id);
    END IF;
    IF m.state <> 'unknown' THEN
        PERFORM mailrun.refuse(NULL, format('message %s is %s, not unknown', p_id, m.state));
    END IF;
    v_pending := mailrun.pending(m.to_addrs || m.cc_addrs || m.bcc_addrs,
                                 m.recipients_sent, m.recipients_failed);
    IF p_as = 'retry' THEN
        UPDATE mailrun.messages SET state = 'queued', next_attempt_at = now() WHERE id = p_id;
    ELSIF p_as = 'sent' THEN
        UPDATE mailrun.messages SET state = 'sent', finished_at = now(),
            recipients_sent = recipients_sent || v_pending,
            last_text = 'marked sent by an operator after an unknown outcome'
        WHERE id = p_id;
    ELSE
        UPDATE mailrun.messages SET state = 'failed', finished_at = now(),
            recipients_failed = recipients_failed || v_pending,
            last_text = 'marked failed by an operator after an unknown outcome'
        WHERE id = p_id;
    END IF;
    RETURN m.state;
END
$$;
