-- mailrun schema, version 1: the queue, its accounts and runners, and the stored
-- procedures applications call directly (documented in docs/queue.md).
--
-- Applied by `mailrun::dispatcher::schema::migrate` in one transaction, after
-- `CREATE SCHEMA mailrun` and `mailrun.schema_migrations` exist.

-- Retry policy and enqueue limits: one row, synced from the [retry] section of
-- dispatcher.toml by `dispatch-admin init|migrate`.
CREATE TABLE mailrun.policy (
    singleton             boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    backoff_min_seconds   integer NOT NULL DEFAULT 300 CHECK (backoff_min_seconds > 0),
    backoff_max_seconds   integer NOT NULL DEFAULT 4000,
    give_up_after_seconds integer NOT NULL DEFAULT 432000 CHECK (give_up_after_seconds > 0),
    max_message_bytes     bigint  NOT NULL DEFAULT 10240000 CHECK (max_message_bytes > 0),
    max_recipients        integer NOT NULL DEFAULT 1000 CHECK (max_recipients > 0),
    -- Domain of generated Message-IDs; NULL: the domain of the From address.
    message_id_domain     text CHECK (message_id_domain ~ '^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$'),
    -- Ordered list of {"code": "550", "enhanced": "5.7.1", "permanent": false};
    -- the first rule that matches decides. Without a match: 5xx permanent, else temporary.
    rules                 jsonb   NOT NULL DEFAULT '[]',
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CHECK (backoff_max_seconds >= backoff_min_seconds)
);

-- Is `r` a well-formed list of finality rules (see mailrun.policy.rules)?
CREATE FUNCTION mailrun.valid_rules(r jsonb) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    e jsonb;
    k text;
BEGIN
    IF r IS NULL THEN
        RETURN true;
    END IF;
    IF jsonb_typeof(r) <> 'array' THEN
        RETURN false;
    END IF;
    FOR e IN SELECT value FROM jsonb_array_elements(r) LOOP
        IF jsonb_typeof(e) <> 'object' THEN
            RETURN false;
        END IF;
        FOR k IN SELECT jsonb_object_keys(e) LOOP
            IF k NOT IN ('code', 'enhanced', 'permanent') THEN
                RETURN false;
            END IF;
        END LOOP;
        IF jsonb_typeof(e->'permanent') IS DISTINCT FROM 'boolean' THEN
            RETURN false;
        END IF;
        IF e->>'code' IS NULL AND e->>'enhanced' IS NULL THEN
            RETURN false;
        END IF;
        IF e->>'code' IS NOT NULL AND (jsonb_typeof(e->'code') <> 'string'
                OR e->>'code' !~ '^[245][0-9x][0-9x]$') THEN
            RETURN false;
        END IF;
        IF e->>'enhanced' IS NOT NULL AND (jsonb_typeof(e->'enhanced') <> 'string'
                OR e->>'enhanced' !~ '^[245](\.[0-9]{1,3}){0,2}$') THEN
            RETURN false;
        END IF;
    END LOOP;
    RETURN true;
END
$$;

ALTER TABLE mailrun.policy ADD CHECK (mailrun.valid_rules(rules));
INSERT INTO mailrun.policy DEFAULT VALUES;

CREATE TABLE mailrun.smtp_accounts (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    host       text NOT NULL CHECK (host ~ '^[A-Za-z0-9.:\[\]-]{1,253}$'),
    port       integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    security   text NOT NULL CHECK (security IN ('none', 'starttls', 'tls')),
    username   text CHECK (username !~ '[\r\n]'),
    -- Stored so runners can log in; never printed by any command.
    password   text CHECK (password !~ '[\r\n]'),
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((username IS NULL) = (password IS NULL))
);

CREATE TABLE mailrun.runners (
    id                     text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    endpoint               text NOT NULL CHECK (endpoint ~ '^https?://[^\s]+$'),
    enabled                boolean NOT NULL DEFAULT true,
    batch_size             integer NOT NULL DEFAULT 100 CHECK (batch_size BETWEEN 1 AND 10000),
    key_id                 text NOT NULL UNIQUE CHECK (key_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    secret                 bytea NOT NULL CHECK (length(secret) = 32),
    -- The key before the last rotation, still accepted until the runner is seen
    -- using the new one (see docs/queue.md, "Key rotation").
    previous_key_id        text UNIQUE CHECK (previous_key_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    previous_secret        bytea CHECK (length(previous_secret) = 32),
    created_at             timestamptz NOT NULL DEFAULT now(),
    last_seen              timestamptz,
    last_status            text,
    software_version       text,
    config_version_applied bigint,
    CHECK ((previous_key_id IS NULL) = (previous_secret IS NULL))
);

-- Settings pushed to runners with JobRunnerConfigUpdate; versions only increase.
CREATE TABLE mailrun.config_versions (
    version    bigint PRIMARY KEY CHECK (version > 0),
    settings   jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Recurring jobs (cron spec + message template), materialised by dispatch-tick.
CREATE TABLE mailrun.recurring_jobs (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    cron        text NOT NULL,
    template    jsonb NOT NULL CHECK (jsonb_typeof(template) = 'object'),
    enabled     boolean NOT NULL DEFAULT true,
    next_run_at timestamptz,
    last_run_at timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE mailrun.job_runs (
    id               uuid PRIMARY KEY,
    runner_id        text NOT NULL REFERENCES mailrun.runners (id) ON DELETE CASCADE,
    created_at       timestamptz NOT NULL DEFAULT now(),
    lease_expires_at timestamptz NOT NULL,
    message_count    integer NOT NULL
);
CREATE INDEX job_runs_created ON mailrun.job_runs (created_at);

CREATE TABLE mailrun.messages (
    id                bigserial PRIMARY KEY,
    state             text NOT NULL DEFAULT 'queued' CHECK (state IN
                        ('queued', 'leased', 'sent', 'deferred', 'failed', 'cancelled', 'expired')),
    account_id        bigint NOT NULL REFERENCES mailrun.smtp_accounts (id),
    from_addr         text NOT NULL,
    reply_to          text,
    to_addrs          text[] NOT NULL DEFAULT '{}',
    cc_addrs          text[] NOT NULL DEFAULT '{}',
    bcc_addrs         text[] NOT NULL DEFAULT '{}',
    subject           text NOT NULL DEFAULT '',
    text_body         text,
    html_body         text,
    headers           jsonb NOT NULL DEFAULT '[]',   -- [{"name": .., "value": ..}]
    attachments       jsonb NOT NULL DEFAULT '[]',   -- [{"filename", "content_type", "data" (base64)}]
    size_bytes        bigint NOT NULL,
    message_id_header text NOT NULL UNIQUE,
    final_codes       jsonb CHECK (mailrun.valid_rules(final_codes)),
    recurring_job_id  bigint REFERENCES mailrun.recurring_jobs (id) ON DELETE SET NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    send_at           timestamptz NOT NULL,
    -- Due when next_attempt_at <= now() and state is queued or deferred.
    next_attempt_at   timestamptz NOT NULL,
    expires_at        timestamptz NOT NULL,
    attempts          integer NOT NULL DEFAULT 0,
    lease_runner      text,
    lease_token       uuid,
    lease_expires_at  timestamptz,
    job_run_id        uuid,
    -- Recipients with a final outcome; a retry goes only to the others.
    recipients_sent   text[] NOT NULL DEFAULT '{}',
    recipients_failed text[] NOT NULL DEFAULT '{}',
    last_code         integer,
    last_enhanced     text,
    last_text         text,
    last_attempt_at   timestamptz,
    finished_at       timestamptz,
    CHECK ((state = 'leased') = (lease_token IS NOT NULL)),
    CHECK ((state IN ('sent', 'failed', 'cancelled', 'expired')) = (finished_at IS NOT NULL))
);
-- Claiming reads the oldest due rows from this index: cost independent of queue length.
CREATE INDEX messages_due ON mailrun.messages (next_attempt_at, id)
    WHERE state IN ('queued', 'deferred');
CREATE INDEX messages_leased ON mailrun.messages (lease_expires_at) WHERE state = 'leased';
CREATE INDEX messages_finished ON mailrun.messages (finished_at) WHERE finished_at IS NOT NULL;

-- Every lease ever handed out: proves a reported lease token was given to that runner.
CREATE TABLE mailrun.leases (
    lease_token      uuid PRIMARY KEY,
    message_id       bigint NOT NULL REFERENCES mailrun.messages (id) ON DELETE CASCADE,
    job_run_id       uuid NOT NULL REFERENCES mailrun.job_runs (id) ON DELETE CASCADE,
    runner_id        text NOT NULL,
    leased_at        timestamptz NOT NULL DEFAULT now(),
    lease_expires_at timestamptz NOT NULL
);
CREATE INDEX leases_message ON mailrun.leases (message_id);
CREATE INDEX leases_job_run ON mailrun.leases (job_run_id);

-- Every reported attempt, one row per (message, lease); per-recipient outcomes inline.
CREATE TABLE mailrun.delivery_attempts (
    id              bigserial PRIMARY KEY,
    message_id      bigint NOT NULL REFERENCES mailrun.messages (id) ON DELETE CASCADE,
    lease_token     uuid NOT NULL,
    job_run_id      uuid,
    runner_id       text NOT NULL,
    outcome         text NOT NULL CHECK (outcome IN ('sent', 'deferred', 'failed', 'not_attempted')),
    smtp_code       integer,
    enhanced_status text,
    text            text,
    -- [{"address", "outcome", "smtp_code", "enhanced_status", "text"}]
    recipients      jsonb NOT NULL DEFAULT '[]',
    attempted_at    timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    -- Reported after the lease was replaced or the message finished: recorded, not applied.
    late            boolean NOT NULL DEFAULT false,
    UNIQUE (message_id, lease_token)
);

-- Replay cache for request signatures.
CREATE TABLE mailrun.nonces (
    key_id  text NOT NULL,
    nonce   text NOT NULL,
    seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (key_id, nonce)
);
CREATE INDEX nonces_seen ON mailrun.nonces (seen_at);

------------------------------------------------------------------------------------------
-- Helpers
------------------------------------------------------------------------------------------

-- Raises an invalid_parameter_value error; `pos` (1-based index in a bulk call) goes to
-- DETAIL as "position N" so callers can name the offending line.
CREATE FUNCTION mailrun.refuse(pos integer, msg text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF pos IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = msg;
    END IF;
    RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
        MESSAGE = format('message %s: %s', pos, msg), DETAIL = format('position %s', pos);
END
$$;

-- The addr-spec of "Name <local@domain>" or "local@domain"; NULL when malformed.
-- Applications get the same rule as the CLI's lettre parser in its essentials:
-- one @, no whitespace or specials in the local part, a dotted domain.
CREATE FUNCTION mailrun.addr_spec(mailbox text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN a ~ '^[A-Za-z0-9!#$%&''*+/=?^_`{|}~.-]+@([A-Za-z0-9\u0080-\uffff]([A-Za-z0-9\u0080-\uffff-]*[A-Za-z0-9\u0080-\uffff])?\.)*[A-Za-z0-9\u0080-\uffff]([A-Za-z0-9\u0080-\uffff-]*[A-Za-z0-9\u0080-\uffff])?$'
             AND a !~ '^\.|\.\.|\.@'
        THEN a END
    FROM (SELECT CASE
            WHEN mailbox ~ '^[^<>]*<[^<>]+>\s*$' THEN substring(mailbox FROM '<([^<>]+)>\s*$')
            ELSE btrim(mailbox)
          END AS a) s
$$;

-- An address list field: a JSON string or array of strings; each a valid mailbox.
CREATE FUNCTION mailrun.address_list(pos integer, field text, v jsonb) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    out text[] := '{}';
    e jsonb;
BEGIN
    IF v IS NULL OR jsonb_typeof(v) = 'null' THEN
        RETURN out;
    END IF;
    IF jsonb_typeof(v) = 'string' THEN
        v := jsonb_build_array(v);
    END IF;
    IF jsonb_typeof(v) <> 'array' THEN
        PERFORM mailrun.refuse(pos, format('"%s" must be a string or an array of strings', field));
    END IF;
    FOR e IN SELECT value FROM jsonb_array_elements(v) LOOP
        IF jsonb_typeof(e) <> 'string' THEN
            PERFORM mailrun.refuse(pos, format('"%s" must contain strings', field));
        END IF;
        IF e #>> '{}' ~ '[\r\n]' THEN
            PERFORM mailrun.refuse(pos, format('"%s" contains CR or LF', field));
        END IF;
        IF mailrun.addr_spec(e #>> '{}') IS NULL THEN
            PERFORM mailrun.refuse(pos, format('"%s": invalid address %s', field, e));
        END IF;
        out := out || (e #>> '{}');
    END LOOP;
    RETURN out;
END
$$;

-- A single-line text field (no CR/LF), or NULL when absent.
CREATE FUNCTION mailrun.header_text(pos integer, field text, v jsonb) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    IF v IS NULL OR jsonb_typeof(v) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(v) <> 'string' THEN
        PERFORM mailrun.refuse(pos, format('"%s" must be a string', field));
    END IF;
    IF v #>> '{}' ~ '[\r\n]' THEN
        PERFORM mailrun.refuse(pos, format('"%s" contains CR or LF', field));
    END IF;
    RETURN v #>> '{}';
END
$$;

-- Does a finality rule list decide that (code, enhanced) is permanent? The per-message
-- rules are checked first, then the policy's; without a match 5xx (or an enhanced
-- status 5.x.x) is permanent and 4xx temporary. NULL when nothing is known (no code).
CREATE FUNCTION mailrun.is_permanent(p_code integer, p_enhanced text, p_message_rules jsonb)
RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
    r jsonb;
BEGIN
    FOR r IN SELECT value FROM jsonb_array_elements(
            coalesce(p_message_rules, '[]'::jsonb) || (SELECT rules FROM mailrun.policy)) LOOP
        IF (r->>'code' IS NULL
                OR (p_code IS NOT NULL AND p_code::text LIKE replace(r->>'code', 'x', '_')))
           AND (r->>'enhanced' IS NULL
                OR (p_enhanced IS NOT NULL
                    AND (p_enhanced = r->>'enhanced' OR p_enhanced LIKE (r->>'enhanced') || '.%')))
        THEN
            RETURN (r->>'permanent')::boolean;
        END IF;
    END LOOP;
    IF p_code IS NOT NULL THEN
        RETURN p_code >= 500;
    END IF;
    IF p_enhanced ~ '^5\.' THEN
        RETURN true;
    ELSIF p_enhanced ~ '^4\.' THEN
        RETURN false;
    END IF;
    RETURN NULL;
END
$$;

-- Delay before the next try after `attempts` tries: min * 2^(attempts-1), capped at max.
CREATE FUNCTION mailrun.backoff_seconds(attempts integer) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT least(p.backoff_max_seconds::bigint,
                 p.backoff_min_seconds::bigint * (2::bigint ^ least(greatest(attempts - 1, 0), 40))::bigint)
    FROM mailrun.policy p
$$;

-- Recipients of a message that still need a delivery (not yet sent or failed).
CREATE FUNCTION mailrun.pending(addrs text[], sent text[], failed text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(array_agg(a ORDER BY n), '{}')
    FROM unnest(addrs) WITH ORDINALITY AS t(a, n)
    WHERE NOT EXISTS (SELECT 1 FROM unnest(sent || failed) AS x
                      WHERE lower(mailrun.addr_spec(x)) = lower(mailrun.addr_spec(a)))
$$;

------------------------------------------------------------------------------------------
-- Enqueue
------------------------------------------------------------------------------------------

-- Validates and inserts one message; `pos` is its 1-based position in a bulk call.
CREATE FUNCTION mailrun.enqueue_at(pos integer, m jsonb) RETURNS bigint
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
    v_domain text;
BEGIN
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

    v_size := v_size + octet_length(v_from) + octet_length(coalesce(v_reply, ''))
        + octet_length(v_subject) + octet_length(coalesce(v_text, ''))
        + octet_length(coalesce(v_html, ''))
        + octet_length(array_to_string(v_to || v_cc || v_bcc, ', '));
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
        v_domain := coalesce(p.message_id_domain,
                             substring(mailrun.addr_spec(v_from) FROM '@([^@]+)$'));
        v_msgid := '<' || gen_random_uuid() || '@' || v_domain || '>';
    END IF;

    INSERT INTO mailrun.messages (account_id, from_addr, reply_to, to_addrs, cc_addrs, bcc_addrs,
        subject, text_body, html_body, headers, attachments, size_bytes, message_id_header,
        final_codes, send_at, next_attempt_at, expires_at)
    VALUES (v_account, v_from, v_reply, v_to, v_cc, v_bcc, v_subject, v_text, v_html, v_headers,
        v_attachments, v_size, v_msgid, v_rules, v_send_at, v_send_at,
        v_send_at + make_interval(secs => p.give_up_after_seconds))
    RETURNING id INTO v_id;
    RETURN v_id;
END
$$;

-- Enqueues one message (a JSON object, fields in docs/queue.md); returns its id.
CREATE FUNCTION mailrun.enqueue(m jsonb) RETURNS bigint
LANGUAGE sql AS $$
    SELECT mailrun.enqueue_at(NULL, m)
$$;

-- Enqueues a JSON array of messages, all or nothing; returns the ids in input order.
-- A bad element raises invalid_parameter_value naming its position (DETAIL "position N").
CREATE FUNCTION mailrun.enqueue_many(ms jsonb) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
DECLARE
    e jsonb;
    n integer := 0;
BEGIN
    IF ms IS NULL OR jsonb_typeof(ms) <> 'array' THEN
        PERFORM mailrun.refuse(NULL, 'enqueue_many takes a JSON array of messages');
    END IF;
    FOR e IN SELECT value FROM jsonb_array_elements(ms) LOOP
        n := n + 1;
        RETURN NEXT mailrun.enqueue_at(n, e);
    END LOOP;
END
$$;

------------------------------------------------------------------------------------------
-- Claim, report, reap
------------------------------------------------------------------------------------------

-- Leases up to `n` due messages (fewer if the runner's batch_size is smaller) to an
-- enabled runner for `lease_seconds`. Creates one job_runs row; returns one row per
-- message with its account. Due messages past their give-up time become 'expired'
-- instead. Returns no rows for an unknown or disabled runner or when nothing is due.
CREATE FUNCTION mailrun.claim_batch(p_runner text, n integer, lease_seconds integer)
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
    v_ids bigint[];
    v_count integer := 0;
    v_round integer := 0;
    v_expired integer;
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
    v_expiry := now() + make_interval(secs => lease_seconds);
    INSERT INTO mailrun.job_runs (id, runner_id, lease_expires_at, message_count)
        VALUES (v_job, p_runner, v_expiry, 0);

    -- A few rounds at most: rounds only repeat when expired messages took places.
    WHILE v_count < v_limit AND v_round < 5 LOOP
        v_round := v_round + 1;
        SELECT array_agg(m.id) INTO v_ids FROM (
            SELECT d.id FROM mailrun.messages d
            WHERE d.state IN ('queued', 'deferred') AND d.next_attempt_at <= now()
            ORDER BY d.next_attempt_at, d.id
            LIMIT v_limit - v_count
            FOR UPDATE SKIP LOCKED) m;
        EXIT WHEN v_ids IS NULL;

        UPDATE mailrun.messages d SET state = 'expired', finished_at = now()
            WHERE d.id = ANY (v_ids) AND d.expires_at <= now();
        GET DIAGNOSTICS v_expired = ROW_COUNT;

        WITH leased AS (
            UPDATE mailrun.messages d
            SET state = 'leased', lease_runner = p_runner, lease_token = gen_random_uuid(),
                lease_expires_at = v_expiry, job_run_id = v_job
            WHERE d.id = ANY (v_ids) AND d.state IN ('queued', 'deferred')
            RETURNING d.id, d.lease_token)
        INSERT INTO mailrun.leases (lease_token, message_id, job_run_id, runner_id, lease_expires_at)
            SELECT l.lease_token, l.id, v_job, p_runner, v_expiry FROM leased l;
        SELECT count(*) INTO v_count FROM mailrun.leases l WHERE l.job_run_id = v_job;
        EXIT WHEN v_expired = 0;
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

-- Records one reported outcome (the JSON form of protocol::MessageResult, see
-- docs/queue.md) and returns what happened to it:
--   'applied'   it matched the current lease; the message moved on;
--   'duplicate' this (message, lease token) was already recorded; nothing changed;
--   'late'      the lease was replaced or the message finished meanwhile: the attempt is
--               recorded with late = true and only its accepted recipients count
--               (the mail went out; marking them sent avoids a second copy);
--   'unknown'   no such message (purged); nothing recorded;
--   'rejected'  this runner was never given that lease token; nothing recorded.
CREATE FUNCTION mailrun.apply_result(p_runner text, r jsonb) RETURNS text
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
    perm boolean;
    v_state text;
    v_last_code integer;
    v_last_enh text;
    v_last_text text;
BEGIN
    IF r IS NULL OR jsonb_typeof(r) <> 'object' THEN
        PERFORM mailrun.refuse(NULL, 'apply_result takes a JSON object');
    END IF;
    v_outcome := r->>'outcome';
    IF v_outcome IS NULL OR v_outcome NOT IN ('sent', 'deferred', 'failed', 'not_attempted') THEN
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

    INSERT INTO mailrun.delivery_attempts (message_id, lease_token, job_run_id, runner_id, outcome,
        smtp_code, enhanced_status, text, recipients, attempted_at, late)
    VALUES (m.id, v_token, v_lease.job_run_id, p_runner, v_outcome, v_code, v_enh, v_text,
        v_recips, v_at, v_late);

    -- Decide each pending recipient: its own entry if the runner sent one, else the
    -- message's outcome; the finality policy overrides the runner's reading of a code.
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
        ELSE
            o := v_outcome;
            c := v_code;
            en := v_enh;
        END IF;
        IF o IN ('failed', 'deferred') THEN
            perm := mailrun.is_permanent(c, en, m.final_codes);
            IF perm IS NOT NULL THEN
                o := CASE WHEN perm THEN 'failed' ELSE 'deferred' END;
            END IF;
            IF v_last_code IS NULL AND v_last_enh IS NULL AND rr IS NOT NULL THEN
                v_last_code := c;
                v_last_enh := en;
                v_last_text := rr->>'text';
            END IF;
        END IF;
        IF o = 'sent' THEN
            v_new_sent := v_new_sent || addr;
        ELSIF o = 'failed' AND NOT v_late THEN
            v_new_failed := v_new_failed || addr;
        END IF;
        rr := NULL;
    END LOOP;

    IF v_late THEN
        -- Only what certainly happened counts: accepted recipients of a still-live message.
        IF m.state IN ('queued', 'deferred', 'leased') AND cardinality(v_new_sent) > 0 THEN
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
    ELSIF now() >= m.expires_at THEN
        v_state := 'expired';
    ELSE
        v_state := 'deferred';
    END IF;

    -- The last answer shown: a refused recipient's when the message is not done, else
    -- the message's own.
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
            WHEN v_state = 'deferred' THEN now() + make_interval(secs =>
                mailrun.backoff_seconds(attempts + 1))
            WHEN v_state = 'queued' THEN now()
            ELSE next_attempt_at END,
        finished_at = CASE WHEN v_state IN ('sent', 'failed', 'expired') THEN now() END,
        lease_runner = NULL, lease_token = NULL, lease_expires_at = NULL,
        recipients_sent = recipients_sent || v_new_sent,
        recipients_failed = recipients_failed || v_new_failed,
        last_code = CASE WHEN v_state = 'queued' THEN last_code ELSE v_last_code END,
        last_enhanced = CASE WHEN v_state = 'queued' THEN last_enhanced ELSE v_last_enh END,
        last_text = CASE WHEN v_state = 'queued' THEN last_text ELSE v_last_text END,
        last_attempt_at = CASE WHEN v_state = 'queued' THEN last_attempt_at ELSE v_at END
    WHERE id = m.id;
    RETURN 'applied';
END
$$;

-- Returns leased messages whose lease expired to the queue (or to 'expired' past their
-- give-up time), keeping their place in line. Returns how many were reaped.
CREATE FUNCTION mailrun.reap_expired() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_count bigint;
BEGIN
    WITH stale AS (
        SELECT id FROM mailrun.messages
        WHERE state = 'leased' AND lease_expires_at < now()
        FOR UPDATE SKIP LOCKED)
    UPDATE mailrun.messages m SET
        state = CASE WHEN m.expires_at <= now() THEN 'expired' ELSE 'queued' END,
        finished_at = CASE WHEN m.expires_at <= now() THEN now() END,
        lease_runner = NULL, lease_token = NULL, lease_expires_at = NULL
    FROM stale WHERE m.id = stale.id;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;

-- Number of messages due now (queued or deferred with next_attempt_at <= now()).
CREATE FUNCTION mailrun.count_due() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT count(*) FROM mailrun.messages
    WHERE state IN ('queued', 'deferred') AND next_attempt_at <= now()
$$;

-- Cancels a message that is not finished; returns its state before. A leased message
-- may already be on its way: its late report is still recorded.
CREATE FUNCTION mailrun.cancel(p_id bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_state text;
BEGIN
    SELECT state INTO v_state FROM mailrun.messages WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'no_data_found', MESSAGE = format('no message %s', p_id);
    END IF;
    IF v_state NOT IN ('queued', 'deferred', 'leased') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('message %s is %s; only queued, deferred or leased messages can be cancelled', p_id, v_state);
    END IF;
    UPDATE mailrun.messages SET state = 'cancelled', finished_at = now(),
        lease_runner = NULL, lease_token = NULL, lease_expires_at = NULL
    WHERE id = p_id;
    RETURN v_state;
END
$$;

-- Makes a message due now with a fresh give-up time: deferred, failed, expired or
-- cancelled messages, and sent ones whose failed recipients should be tried again
-- (their failures are forgotten; accepted recipients are not sent to twice).
-- Returns its state before.
CREATE FUNCTION mailrun.retry(p_id bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    m mailrun.messages%ROWTYPE;
BEGIN
    SELECT * INTO m FROM mailrun.messages WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'no_data_found', MESSAGE = format('no message %s', p_id);
    END IF;
    IF m.state = 'leased' THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('message %s is leased to runner %s; wait for its report', p_id, m.lease_runner);
    END IF;
    IF m.state = 'sent' AND cardinality(m.recipients_failed) = 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('message %s was sent to every recipient', p_id);
    END IF;
    UPDATE mailrun.messages SET state = 'queued', finished_at = NULL, next_attempt_at = now(),
        expires_at = now() + make_interval(secs => (SELECT give_up_after_seconds FROM mailrun.policy)),
        recipients_failed = '{}'
    WHERE id = p_id;
    RETURN m.state;
END
$$;

-- Deletes finished messages (with their attempts and leases) older than `age`, and job
-- runs left without leases; returns the number of messages deleted.
CREATE FUNCTION mailrun.purge(age interval) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_count bigint;
BEGIN
    DELETE FROM mailrun.messages WHERE finished_at < now() - age;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    DELETE FROM mailrun.job_runs j WHERE j.created_at < now() - age
        AND NOT EXISTS (SELECT 1 FROM mailrun.leases l WHERE l.job_run_id = j.id);
    RETURN v_count;
END
$$;

-- Remembers a request nonce; false when it was seen before (a replay). Forgets nonces
-- after 15 minutes (a signature is valid for ±300 s around its timestamp).
CREATE FUNCTION mailrun.remember_nonce(p_key_id text, p_nonce text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_new integer;
BEGIN
    DELETE FROM mailrun.nonces WHERE seen_at < now() - interval '15 minutes';
    INSERT INTO mailrun.nonces (key_id, nonce) VALUES (p_key_id, p_nonce)
        ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS v_new = ROW_COUNT;
    RETURN v_new = 1;
END
$$;
