-- mailrun schema, baseline (versions 1-7, squashed before the first release): tables,
-- indexes and the rows the queue starts with. Documented in docs/queue.md,
-- docs/results.md, docs/scheduling.md and docs/quotas.md.
--
-- Applied by `mailrun::dispatcher::schema::migrate` in one transaction, after
-- `CREATE SCHEMA mailrun`, `mailrun.schema_migrations` and the constraint helpers of
-- sql/checks/ exist. Functions, procedures and triggers are not here: each has one
-- source file under sql/, applied with CREATE OR REPLACE after the versioned steps.
-- A later migration changes only schema and data, and never a function body.

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
    rules                 jsonb   NOT NULL DEFAULT '[]' CHECK (mailrun.valid_rules(rules)),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CHECK (backoff_max_seconds >= backoff_min_seconds)
);
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
    -- A disabled account is skipped by claims (failover goes to the next one).
    enabled    boolean NOT NULL DEFAULT true,
    -- The most SMTP sessions a runner may hold to it at once (providers cap it;
    -- docs/runner.md, "Concurrency"). NULL: the runner's own max_sessions_per_account.
    -- It travels with the account in every JobRun.
    max_connections integer CHECK (max_connections BETWEEN 1 AND 1000),
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

-- Recurring jobs (cron spec + message template), materialised exactly once per
-- occurrence by dispatch-tick (docs/scheduling.md).
CREATE TABLE mailrun.recurring_jobs (
    id                   bigserial PRIMARY KEY,
    name                 text UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    cron                 text NOT NULL CHECK (cron <> '' AND cron !~ '[\r\n]'),
    template             jsonb NOT NULL CHECK (jsonb_typeof(template) = 'object'),
    created_at           timestamptz NOT NULL DEFAULT now(),
    -- IANA name the cron fields are read in (checked by the CLI with chrono-tz).
    time_zone            text NOT NULL DEFAULT 'UTC' CHECK (time_zone ~ '^[A-Za-z0-9/_+-]{1,64}$'),
    paused               boolean NOT NULL DEFAULT false,
    -- The latest occurrence handled (enqueued, skipped or failed); never moves back.
    last_occurrence_at   timestamptz,
    -- An occurrence later than this when a tick sees it is skipped, not sent.
    max_lateness_seconds integer NOT NULL DEFAULT 86400
        CHECK (max_lateness_seconds BETWEEN 60 AND 31622400),
    updated_at           timestamptz NOT NULL DEFAULT now()
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
                        ('queued', 'leased', 'sent', 'deferred', 'failed', 'cancelled', 'expired',
                         -- DATA sent, no answer: never retried silently (docs/quotas.md).
                         'unknown')),
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
    -- A finished message a purge found matching a review code: kept until an operator
    -- removes it (`dispatch-admin purge`), and not examined again by later purges, so a
    -- tick's work stays bounded however many are held.
    held_for_review   boolean NOT NULL DEFAULT false,
    -- The failover list of accounts (empty: account_id alone) and those that failed for
    -- this message.
    account_ids       bigint[] NOT NULL DEFAULT '{}',
    skip_account_ids  bigint[] NOT NULL DEFAULT '{}',
    -- Why and until when a quota, pause or account state holds it back, and which
    -- quotas it waits for (set by claim_batch with the hold, cleared with it).
    held_reason       text,
    held_until        timestamptz,
    held_quota_ids    bigint[],
    CHECK ((state = 'leased') = (lease_token IS NOT NULL)),
    CHECK ((state IN ('sent', 'failed', 'cancelled', 'expired')) = (finished_at IS NOT NULL))
);
-- Claiming reads the oldest due rows from this index: cost independent of queue length.
CREATE INDEX messages_due ON mailrun.messages (next_attempt_at, id)
    WHERE state IN ('queued', 'deferred');
CREATE INDEX messages_leased ON mailrun.messages (lease_expires_at) WHERE state = 'leased';
CREATE INDEX messages_finished ON mailrun.messages (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX messages_purgeable ON mailrun.messages (finished_at)
    WHERE finished_at IS NOT NULL AND NOT held_for_review;
CREATE INDEX messages_held ON mailrun.messages (id) WHERE held_for_review;
CREATE INDEX messages_recurring_job ON mailrun.messages (recurring_job_id)
    WHERE recurring_job_id IS NOT NULL;
CREATE INDEX messages_scheduled ON mailrun.messages (send_at)
    WHERE state = 'queued' AND attempts = 0;
CREATE INDEX messages_unknown ON mailrun.messages (last_attempt_at) WHERE state = 'unknown';
-- Only held messages are in it; claims of unheld mail leave it untouched.
CREATE INDEX messages_held_quotas ON mailrun.messages USING gin (held_quota_ids)
    WHERE held_quota_ids IS NOT NULL;

-- Every lease ever handed out: proves a reported lease token was given to that runner.
CREATE TABLE mailrun.leases (
    lease_token      uuid PRIMARY KEY,
    message_id       bigint NOT NULL REFERENCES mailrun.messages (id) ON DELETE CASCADE,
    job_run_id       uuid NOT NULL REFERENCES mailrun.job_runs (id) ON DELETE CASCADE,
    runner_id        text NOT NULL,
    leased_at        timestamptz NOT NULL DEFAULT now(),
    lease_expires_at timestamptz NOT NULL,
    -- The account a lease was handed out with (throttle feedback names it).
    account_id       bigint
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
    outcome         text NOT NULL CHECK (outcome IN ('sent', 'deferred', 'failed', 'not_attempted', 'unknown')),
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
CREATE INDEX delivery_attempts_attempted ON mailrun.delivery_attempts (attempted_at);
CREATE INDEX delivery_attempts_job_run ON mailrun.delivery_attempts (job_run_id);

-- Replay cache for request signatures.
CREATE TABLE mailrun.nonces (
    key_id  text NOT NULL,
    nonce   text NOT NULL,
    seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (key_id, nonce)
);
CREATE INDEX nonces_seen ON mailrun.nonces (seen_at);

-- One row per occurrence a tick handled. The primary key is the exactly-once guarantee:
-- overlapping ticks compute the same occurrence and only one insert wins.
CREATE TABLE mailrun.recurring_occurrences (
    job_id        bigint NOT NULL REFERENCES mailrun.recurring_jobs (id) ON DELETE CASCADE,
    occurrence_at timestamptz NOT NULL,
    -- enqueued: message_id was queued; skipped: later than max_lateness when seen;
    -- failed: the template was refused at that time (detail says why).
    status        text NOT NULL CHECK (status IN ('enqueued', 'skipped', 'failed')),
    message_id    bigint REFERENCES mailrun.messages (id) ON DELETE SET NULL,
    detail        text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, occurrence_at)
);
CREATE INDEX recurring_occurrences_message ON mailrun.recurring_occurrences (message_id);

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
-- Patterns travel to runners, which take at most 1000 characters. NOT VALID (as added
-- in version 5): rows stored before it are left alone (push-config names any that
-- cannot be pushed).
ALTER TABLE mailrun.reply_rules ADD CONSTRAINT reply_rules_pattern_length
    CHECK (pattern IS NULL OR char_length(pattern) BETWEEN 1 AND 1000) NOT VALID;

-- The longest value, in characters, a JobRun carries in each message field. The same
-- table is in the code (protocol::limits::field::TABLE); a test holds the two equal. A
-- runner refuses a longer value, so enqueue (mailrun.check_carriable) must too.
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
