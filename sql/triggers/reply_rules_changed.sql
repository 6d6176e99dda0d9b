-- One new config version per transaction that changes the rules (adding a rule at a
-- taken position shifts others first: still one version). Nothing to copy before the
-- first `push-config set`; that first version carries the rules anyway.
CREATE OR REPLACE FUNCTION mailrun.reply_rules_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM changed)
       OR current_setting('mailrun.reply_rules_bumped', true) = 'yes' THEN
        RETURN NULL;
    END IF;
    -- The same lock push-config's `set` takes, so versions stay one apart.
    LOCK TABLE mailrun.config_versions IN SHARE ROW EXCLUSIVE MODE;
    INSERT INTO mailrun.config_versions (version, settings)
        SELECT c.version + 1, c.settings FROM mailrun.config_versions c
        ORDER BY c.version DESC LIMIT 1;
    PERFORM set_config('mailrun.reply_rules_bumped', 'yes', true);
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER reply_rules_inserted AFTER INSERT ON mailrun.reply_rules
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION mailrun.reply_rules_changed();
CREATE OR REPLACE TRIGGER reply_rules_updated AFTER UPDATE ON mailrun.reply_rules
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION mailrun.reply_rules_changed();
CREATE OR REPLACE TRIGGER reply_rules_deleted AFTER DELETE ON mailrun.reply_rules
    REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION mailrun.reply_rules_changed();
