-- Per quota, one held message per given-back reservation becomes due now (hold cleared).
-- Runs in the reporting transaction: it reads quotas without locking them and takes
-- held messages with SKIP LOCKED, so a report never waits for a claimer (nor for another
-- report); a message skipped that way keeps its hold time.
-- The planner settings keep the search on messages_held_quotas: with LIMIT and stale
-- statistics it may otherwise prefer a sequential (or messages_due) scan expecting an
-- early hit, which reads the whole table when the quota holds nothing.
CREATE OR REPLACE FUNCTION mailrun.quota_releases_wake() RETURNS trigger
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
CREATE OR REPLACE TRIGGER quota_releases_wake AFTER INSERT ON mailrun.quota_releases
    REFERENCING NEW TABLE AS released
    FOR EACH STATEMENT EXECUTE FUNCTION mailrun.quota_releases_wake();
