-- Deletes up to `max_rows` webhook events older than `keep_days` that no endpoint still
-- has to receive, oldest first. Returns how many went.
CREATE OR REPLACE FUNCTION mailrun.purge_webhook_events(keep_days integer, max_rows bigint)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_count bigint;
BEGIN
    DELETE FROM mailrun.webhook_events WHERE id IN (
        SELECT v.id FROM mailrun.webhook_events v
        WHERE v.created_at < now() - make_interval(days => keep_days)
          AND NOT EXISTS (SELECT 1 FROM mailrun.webhook_deliveries d WHERE d.event_id = v.id)
        ORDER BY v.id LIMIT max_rows);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;
