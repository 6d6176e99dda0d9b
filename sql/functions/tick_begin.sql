-- The housekeeping every dispatch-tick does, in one round trip (a tick through a pooler
-- pays per statement): reaps expired leases, purges finished messages and delivered
-- webhook events past their keep times, and says what else the tick has to do: the live
-- recurring jobs to evaluate, whether an endpoint has webhook events waiting, whether any
-- message is due. `stamp` and `schema_version` are the schema stamp and version the
-- caller was built for (see dispatcher::schema::stamp); when the database carries
-- another, nothing is done and schema_ok is false, so a binary never runs this against
-- routines it does not know.
-- NULL skips that check (the caller verified the schema the long way).
CREATE OR REPLACE FUNCTION mailrun.tick_begin(stamp text, schema_version integer,
        keep_sent_days integer,
        keep_failed_days integer, review text[], purge_rows integer,
        webhook_keep_days integer, webhook_purge_rows bigint)
RETURNS TABLE (schema_ok boolean, reaped bigint, db_now timestamptz, recurring_ids bigint[],
               purged bigint, held bigint, webhooks_waiting boolean,
               webhook_events_purged bigint, anything_due boolean)
LANGUAGE plpgsql AS $$
BEGIN
    IF stamp IS NOT NULL
       -- pg_description read directly: obj_description() is an SQL function planned
       -- at every call, a third of this function's cost on an empty tick.
       AND ((SELECT d.description FROM pg_catalog.pg_description d
             WHERE d.objoid = 'mailrun'::regnamespace
               AND d.classoid = 'pg_catalog.pg_namespace'::regclass AND d.objsubid = 0)
            IS DISTINCT FROM stamp
            OR (SELECT max(v.version) FROM mailrun.schema_migrations v)
               IS DISTINCT FROM schema_version) THEN
        schema_ok := false;
        RETURN NEXT;
        RETURN;
    END IF;
    schema_ok := true;
    reaped := mailrun.reap_expired();
    db_now := now();
    recurring_ids := ARRAY(SELECT r.id FROM mailrun.recurring_jobs r
                           WHERE NOT r.paused AND (r.max_runs IS NULL OR r.runs < r.max_runs)
                           ORDER BY r.id);
    -- Purging looks for rows in several tables; most ticks have nothing past its keep
    -- time, which one index probe each tells.
    IF EXISTS (SELECT 1 FROM mailrun.messages m
               WHERE m.finished_at IS NOT NULL AND NOT m.held_for_review
                 AND m.finished_at < now() - make_interval(days => least(keep_sent_days,
                                                                         keep_failed_days)))
       OR EXISTS (SELECT 1 FROM mailrun.job_runs j
                  WHERE j.created_at < now() - make_interval(days => least(keep_sent_days,
                                                                           keep_failed_days))) THEN
        SELECT p.purged, p.held INTO purged, held
        FROM mailrun.purge_finished(make_interval(days => keep_sent_days),
                                    make_interval(days => keep_failed_days), review, purge_rows) p;
    ELSE
        purged := 0;
        held := 0;
    END IF;
    webhooks_waiting := EXISTS (
        SELECT 1 FROM mailrun.webhook_endpoints e
        WHERE e.next_attempt_at <= now()
          AND EXISTS (SELECT 1 FROM mailrun.webhook_deliveries d WHERE d.endpoint_id = e.id));
    IF EXISTS (SELECT 1 FROM mailrun.webhook_events v
               WHERE v.created_at < now() - make_interval(days => webhook_keep_days)) THEN
        webhook_events_purged := mailrun.purge_webhook_events(webhook_keep_days,
                                                              webhook_purge_rows);
    ELSE
        webhook_events_purged := 0;
    END IF;
    anything_due := EXISTS (
        SELECT 1 FROM mailrun.messages m
        WHERE m.state IN ('queued', 'deferred') AND m.next_attempt_at <= now());
    RETURN NEXT;
END
$$;
