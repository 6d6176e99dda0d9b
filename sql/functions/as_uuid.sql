-- `v` as a uuid when it is one (32 hex digits, hyphens where uuids have them), else NULL:
-- a malformed token or job run id in a report is a refusal, not an error. Plain SQL,
-- inlined where used (apply_result, apply_results).
CREATE OR REPLACE FUNCTION mailrun.as_uuid(v text) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN v ~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$'
                THEN v::uuid END
$$;
