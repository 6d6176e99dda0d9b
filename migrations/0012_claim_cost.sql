-- mailrun schema, version 12: a cheaper claim (docs/decisions.md, 41 and 43).
-- mailrun.claim_batch returns each account's max_connections with the batch (the claim
-- no longer looks it up once per row). A function's result type cannot be changed in
-- place, so the old one goes here and sql/functions/claim_batch.sql creates the new one
-- right after, in the same transaction.
DROP FUNCTION IF EXISTS mailrun.claim_batch(text, integer, integer);
-- A lease row is written only by claim_batch, for a message it has just locked and the
-- job run it has just made, so the two foreign keys proved nothing a claim did not
-- already ensure, and their checks were a quarter of a claim's cost. What their cascades
-- did, the procedures that delete messages, job runs and runners now do themselves
-- (purge, purge_finished, remove_runner).
ALTER TABLE mailrun.leases DROP CONSTRAINT IF EXISTS leases_message_id_fkey,
                           DROP CONSTRAINT IF EXISTS leases_job_run_id_fkey;
-- Leases whose message or job run is already gone (none in a database only mailrun
-- changed; the cascades kept it so).
DELETE FROM mailrun.leases l
WHERE NOT EXISTS (SELECT 1 FROM mailrun.messages m WHERE m.id = l.message_id)
   OR NOT EXISTS (SELECT 1 FROM mailrun.job_runs j WHERE j.id = l.job_run_id);
-- apply_result finds a lease by (message, token); a key in that order serves it and the
-- deletes by message, so the separate message index goes: one index entry fewer per
-- leased message, and the key grows with message ids instead of at random uuids.
ALTER TABLE mailrun.leases DROP CONSTRAINT leases_pkey,
                           ADD PRIMARY KEY (message_id, lease_token);
DROP INDEX mailrun.leases_message;
-- A fast claim round writes no lease rows: its tokens are derived from a secret its job
-- run keeps (mailrun.lease_token), which apply_result checks instead. Job runs from
-- before have none; their leases have rows.
ALTER TABLE mailrun.job_runs ADD COLUMN lease_secret bytea;
