-- The lease token of message `message_id` in a job run whose secret is `secret` (16
-- random bytes kept in job_runs.lease_secret, never sent): the first 16 bytes of
-- SHA-256(secret || message id) as a uuid. A claim round of the fast path gives these
-- tokens instead of writing a lease row per message; apply_result recomputes one to
-- check a report, so a token still proves that its job run leased that message, and
-- only the dispatcher can make one. A plain SQL expression, inlined where it is used.
CREATE OR REPLACE FUNCTION mailrun.lease_token(secret bytea, message_id bigint) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT encode(substr(sha256(secret || int8send(message_id)), 1, 16), 'hex')::uuid
$$;
