-- A message that is retried (no longer finished) is no longer held.
CREATE OR REPLACE FUNCTION mailrun.release_review_hold() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.finished_at IS NULL THEN
        NEW.held_for_review := false;
    END IF;
    RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER messages_release_review_hold BEFORE UPDATE OF finished_at ON mailrun.messages
    FOR EACH ROW WHEN (OLD.held_for_review) EXECUTE FUNCTION mailrun.release_review_hold();
