-- Every state change of a message (except into 'leased', the runner's lease) and every
-- recipient that reached its outcome becomes a webhook event, queued for each endpoint
-- subscribed to that state. One place for all: apply_result, claim_batch (expired),
-- cancel, retry, reap and resolve only change rows. Nothing is written while no
-- endpoint exists. Per-recipient answers come from the attempt that decided them.
CREATE OR REPLACE FUNCTION mailrun.record_webhook_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_attempt jsonb;
    v_rec record;
    v_entry jsonb;
    v_event bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM mailrun.webhook_endpoints) THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' AND (NEW.recipients_sent IS DISTINCT FROM OLD.recipients_sent
                             OR NEW.recipients_failed IS DISTINCT FROM OLD.recipients_failed) THEN
        SELECT a.recipients INTO v_attempt FROM mailrun.delivery_attempts a
            WHERE a.message_id = NEW.id ORDER BY a.id DESC LIMIT 1;
        FOR v_rec IN
            SELECT addr, st FROM (
                SELECT u.addr, 'sent' AS st, u.i, 0 AS k
                    FROM unnest(NEW.recipients_sent) WITH ORDINALITY u(addr, i)
                    WHERE NOT u.addr = ANY (OLD.recipients_sent)
                UNION ALL
                SELECT u.addr, 'failed', u.i, 1
                    FROM unnest(NEW.recipients_failed) WITH ORDINALITY u(addr, i)
                    WHERE NOT u.addr = ANY (OLD.recipients_failed)) x
            ORDER BY k, i
        LOOP
            SELECT value INTO v_entry FROM jsonb_array_elements(coalesce(v_attempt, '[]'))
                WHERE lower(mailrun.addr_spec(value->>'address')) = lower(mailrun.addr_spec(v_rec.addr))
                LIMIT 1;
            INSERT INTO mailrun.webhook_events (message_id, recipient, state, smtp_code,
                enhanced_status, text, attempted_at)
            VALUES (NEW.id, v_rec.addr, v_rec.st,
                CASE WHEN v_entry IS NULL THEN NEW.last_code
                     WHEN jsonb_typeof(v_entry->'smtp_code') = 'number' THEN (v_entry->>'smtp_code')::integer END,
                CASE WHEN v_entry IS NULL THEN NEW.last_enhanced ELSE v_entry->>'enhanced_status' END,
                CASE WHEN v_entry IS NULL THEN NEW.last_text ELSE v_entry->>'text' END,
                NEW.last_attempt_at)
            RETURNING id INTO v_event;
            INSERT INTO mailrun.webhook_deliveries (endpoint_id, event_id)
                SELECT e.id, v_event FROM mailrun.webhook_endpoints e WHERE v_rec.st = ANY (e.events);
            v_entry := NULL;
        END LOOP;
    END IF;
    IF NEW.state <> 'leased' AND (TG_OP = 'INSERT' OR NEW.state IS DISTINCT FROM OLD.state) THEN
        INSERT INTO mailrun.webhook_events (message_id, recipient, state, smtp_code,
            enhanced_status, text, attempted_at)
        VALUES (NEW.id, NULL, NEW.state,
            CASE WHEN NEW.state IN ('queued', 'cancelled') THEN NULL ELSE NEW.last_code END,
            CASE WHEN NEW.state IN ('queued', 'cancelled') THEN NULL ELSE NEW.last_enhanced END,
            CASE WHEN NEW.state IN ('queued', 'cancelled') THEN NULL ELSE NEW.last_text END,
            CASE WHEN NEW.state IN ('queued', 'cancelled') THEN NULL ELSE NEW.last_attempt_at END)
        RETURNING id INTO v_event;
        INSERT INTO mailrun.webhook_deliveries (endpoint_id, event_id)
            SELECT e.id, v_event FROM mailrun.webhook_endpoints e WHERE NEW.state = ANY (e.events);
    END IF;
    RETURN NULL;
END
$$;

-- Leasing (the bulk of updates, by claim_batch) does not even call the function.
CREATE OR REPLACE TRIGGER record_webhook_event AFTER UPDATE OF state, recipients_sent, recipients_failed
    ON mailrun.messages FOR EACH ROW
    WHEN (NEW.state IS DISTINCT FROM OLD.state AND NEW.state <> 'leased'
          OR NEW.recipients_sent IS DISTINCT FROM OLD.recipients_sent
          OR NEW.recipients_failed IS DISTINCT FROM OLD.recipients_failed)
    EXECUTE FUNCTION mailrun.record_webhook_event();
CREATE OR REPLACE TRIGGER record_webhook_event_queued AFTER INSERT
    ON mailrun.messages FOR EACH ROW EXECUTE FUNCTION mailrun.record_webhook_event();
