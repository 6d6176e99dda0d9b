-- mailrun schema, version 9: the HTTP JSON API (docs/api.md). API keys are stored as
-- the SHA-256 of the whole key (a key is 32 random bytes: a slow hash adds nothing);
-- the prefix finds the row without revealing the secret part.
CREATE TABLE mailrun.api_keys (
    id           bigserial PRIMARY KEY,
    prefix       text NOT NULL UNIQUE CHECK (prefix ~ '^[a-z0-9]{8,32}$'),
    key_sha256   bytea NOT NULL CHECK (length(key_sha256) = 32),
    scope        text NOT NULL CHECK (scope IN ('send', 'read', 'admin')),
    note         text CHECK (note !~ '[\r\n]' AND char_length(note) <= 200),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);

-- The first answer to each Idempotency-Key, stored in the transaction that did the
-- work, so a retry after a lost answer (even a kill -9 between commit and reply) gets
-- it again instead of queueing twice. Kept 24 hours.
CREATE TABLE mailrun.api_idempotency (
    api_key_id   bigint NOT NULL REFERENCES mailrun.api_keys (id) ON DELETE CASCADE,
    idem_key     text NOT NULL CHECK (char_length(idem_key) BETWEEN 1 AND 255),
    -- SHA-256 of method, path and body: the same key with another request is refused.
    request_sha256 bytea NOT NULL,
    status       integer,
    response     jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (api_key_id, idem_key)
);
CREATE INDEX api_idempotency_created ON mailrun.api_idempotency (created_at);

-- Keyset paging of message lists (API and `dispatch-admin list`) by (send_at, id).
CREATE INDEX messages_send_at_id ON mailrun.messages (send_at, id);
