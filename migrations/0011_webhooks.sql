-- mailrun schema, version 11: delivery events posted to webhook endpoints
-- (docs/webhooks.md). The secret signs the posts (HMAC-SHA256), so it is stored as it
-- is; `dispatch-admin webhook add` prints it once and nothing shows it again.
CREATE TABLE mailrun.webhook_endpoints (
    id              bigserial PRIMARY KEY,
    url             text NOT NULL CHECK (url ~ '^https?://[^\s@]+$' AND char_length(url) <= 2000),
    secret          bytea NOT NULL CHECK (length(secret) = 32),
    events          text[] NOT NULL CHECK (cardinality(events) > 0 AND events <@ ARRAY[
                        'queued', 'sent', 'deferred', 'failed', 'cancelled', 'expired',
                        'unknown']::text[]),
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- Consecutive failed posts; the next post waits 2^failures seconds (capped).
    failures        integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_success_at timestamptz,
    last_error      text,
    last_error_at   timestamptz
);

-- One row per state change of a message (recipient NULL) and per recipient that
-- reached its outcome; written by the trigger mailrun.record_webhook_event.
CREATE TABLE mailrun.webhook_events (
    id              bigserial PRIMARY KEY,
    message_id      bigint NOT NULL,
    recipient       text,
    state           text NOT NULL,
    smtp_code       integer,
    enhanced_status text,
    text            text,
    attempted_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_events_created ON mailrun.webhook_events (created_at);

-- The outbox: an event waiting for one endpoint. Deleted when the endpoint accepted it.
-- Events of a message are made under its row lock, so their ids follow commit order
-- per message and delivering in id order keeps each message's order.
CREATE TABLE mailrun.webhook_deliveries (
    endpoint_id bigint NOT NULL REFERENCES mailrun.webhook_endpoints (id) ON DELETE CASCADE,
    event_id    bigint NOT NULL REFERENCES mailrun.webhook_events (id) ON DELETE CASCADE,
    PRIMARY KEY (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_event ON mailrun.webhook_deliveries (event_id);
