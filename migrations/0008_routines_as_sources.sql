-- mailrun schema, version 8: every routine now has one source file under sql/. Databases
-- migrated before that carry the wrappers those files fold back into the functions they
-- patched (apply_result_base, enqueue_at_v1, the messages_held_quotas trigger); on a
-- fresh database these statements do nothing. The sources replace the rest right after.
DROP TRIGGER IF EXISTS messages_held_quotas ON mailrun.messages;
DROP FUNCTION IF EXISTS mailrun.messages_held_quotas();
DROP FUNCTION IF EXISTS mailrun.apply_result_base(text, jsonb);
DROP FUNCTION IF EXISTS mailrun.enqueue_at_v1(integer, jsonb);
