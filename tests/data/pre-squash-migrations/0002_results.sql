-- mailrun schema, version 2: recurring jobs materialised exactly once, and the
-- retention policy's purge (documented in docs/results.md and docs/scheduling.md).

------------------------------------------------------------------------------------------
-- Recurring jobs
------------------------------------------------------------------------------------------

-- Version 1 created the table as a placeholder that nothing wrote to; its bookkeeping
-- columns are replaced by the exactly-once contract of docs/scheduling.md.
ALTER TABLE mailrun.recurring_jobs
    DROP COLUMN enabled,
    DROP COLUMN next_run_at,
    DROP COLUMN last_run_at,
    ALTER COLUMN name DROP NOT NULL,
    ADD CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    ADD CHECK (cron <> '' AND cron !~ '[\r\n]'),
    -- IANA name the cron fields are read in (checked by the CLI with chrono-tz).
    ADD COLUMN time_zone text NOT NULL DEFAULT 'UTC' CHECK (time_zone ~ '^[A-Za-z0-9/_+-]{1,64}$'),
    ADD COLUMN paused boolean NOT NULL DEFAULT false,
    -- The latest occurrence handled (enqueued, skipped or failed); never moves back.
    ADD COLUMN last_occurrence_at timestamptz,
    -- An occurrence later than this when a tick sees it is skipped, not sent.
    ADD COLUMN max_lateness_seconds integer NOT NULL DEFAULT 86400
        CHECK (max_lateness_seconds BETWEEN 60 AND 31622400),
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

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
CREATE INDEX messages_recurring_job ON mailrun.messages (recurring_job_id)
    WHERE recurring_job_id IS NOT NULL;

------------------------------------------------------------------------------------------
-- Reports
------------------------------------------------------------------------------------------

CREATE INDEX delivery_attempts_attempted ON mailrun.delivery_attempts (attempted_at);
CREATE INDEX delivery_attempts_job_run ON mailrun.delivery_attempts (job_run_id);
CREATE INDEX messages_scheduled ON mailrun.messages (send_at)
    WHERE state = 'queued' AND attempts = 0;

------------------------------------------------------------------------------------------
-- Retention
------------------------------------------------------------------------------------------

-- Does an SMTP answer match one of the review patterns? A pattern is a basic code with
-- `x` wildcards ("550", "55x", "5xx") or an enhanced status code or its prefix
-- ("5.7.1", "5.7").
CREATE FUNCTION mailrun.code_matches(p_code integer, p_enhanced text, patterns text[])
RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(bool_or(
        CASE WHEN p ~ '^[245][0-9x][0-9x]$'
             THEN p_code IS NOT NULL AND p_code::text LIKE replace(p, 'x', '_')
             ELSE p_enhanced IS NOT NULL AND (p_enhanced = p OR p_enhanced LIKE p || '.%')
        END), false)
    FROM unnest(patterns) AS t(p)
$$;

-- Is a message kept for review: did its last answer, or any answer recorded for it
-- (per recipient too), match a review pattern?
CREATE FUNCTION mailrun.kept_for_review(m mailrun.messages, patterns text[]) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT cardinality(patterns) > 0 AND (
        mailrun.code_matches(m.last_code, m.last_enhanced, patterns)
        OR EXISTS (
            SELECT 1 FROM mailrun.delivery_attempts a
            WHERE a.message_id = m.id
              AND (mailrun.code_matches(a.smtp_code, a.enhanced_status, patterns)
                   OR EXISTS (
                       SELECT 1 FROM jsonb_array_elements(
                           CASE WHEN jsonb_typeof(a.recipients) = 'array'
                                THEN a.recipients ELSE '[]' END) r
                       WHERE mailrun.code_matches(
                           CASE WHEN jsonb_typeof(r->'smtp_code') = 'number'
                                THEN (r->>'smtp_code')::integer END,
                           r->>'enhanced_status', patterns)))))
$$;

-- Finished messages a purge found matching a review code: kept until an operator
-- removes them (`dispatch-admin purge`), and not examined again by later purges, so a
-- tick's work stays bounded however many are held.
ALTER TABLE mailrun.messages ADD COLUMN held_for_review boolean NOT NULL DEFAULT false;
CREATE INDEX messages_purgeable ON mailrun.messages (finished_at)
    WHERE finished_at IS NOT NULL AND NOT held_for_review;
CREATE INDEX messages_held ON mailrun.messages (id) WHERE held_for_review;

-- A message that is retried (no longer finished) is no longer held.
CREATE FUNCTION mailrun.release_review_hold() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.finished_at IS NULL THEN
        NEW.held_for_review := false;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER messages_release_review_hold BEFORE UPDATE OF finished_at ON mailrun.messages
    FOR EACH ROW WHEN (OLD.held_for_review) EXECUTE FUNCTION mailrun.release_review_hold();

-- Looks at up to `max_rows` finished messages past their keep time, oldest first: sent
-- after `keep_sent`; failed, expired and cancelled after `keep_failed`. Those matching a
-- review pattern (see kept_for_review) are held; the others are deleted with their
-- attempts and leases. Job runs left without leases go too. Returns (purged, held):
-- messages deleted, and messages newly held for review by this call.
CREATE FUNCTION mailrun.purge_finished(keep_sent interval, keep_failed interval,
                                       review text[], max_rows integer)
RETURNS TABLE (purged bigint, held bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_purged bigint;
    v_held bigint;
BEGIN
    IF keep_sent IS NULL OR keep_failed IS NULL OR keep_sent < interval '0'
       OR keep_failed < interval '0' THEN
        PERFORM mailrun.refuse(NULL, 'purge_finished: keep times must be given and not negative');
    END IF;
    IF max_rows IS NULL OR max_rows < 1 THEN
        PERFORM mailrun.refuse(NULL, 'purge_finished: max_rows must be at least 1');
    END IF;
    review := coalesce(review, '{}');

    WITH due AS (
        SELECT m.id, mailrun.kept_for_review(m, review) AS keep
        FROM mailrun.messages m
        WHERE m.finished_at IS NOT NULL AND NOT m.held_for_review
          AND m.finished_at < now() - least(keep_sent, keep_failed)
          AND m.finished_at < now() - CASE WHEN m.state = 'sent' THEN keep_sent ELSE keep_failed END
        ORDER BY m.finished_at
        LIMIT max_rows
        FOR UPDATE SKIP LOCKED
    ), hold AS (
        UPDATE mailrun.messages m SET held_for_review = true
        WHERE m.id IN (SELECT d.id FROM due d WHERE d.keep)
        RETURNING m.id
    ), gone AS (
        DELETE FROM mailrun.messages m
        WHERE m.id IN (SELECT d.id FROM due d WHERE NOT d.keep)
        RETURNING m.id
    )
    SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM hold)
    INTO v_purged, v_held;

    DELETE FROM mailrun.job_runs j
    WHERE j.created_at < now() - least(keep_sent, keep_failed)
      AND j.lease_expires_at < now()
      AND NOT EXISTS (SELECT 1 FROM mailrun.leases l WHERE l.job_run_id = j.id);

    purged := v_purged;
    held := v_held;
    RETURN NEXT;
END
$$;
