-- Remembers a request nonce; false when it was seen before (a replay). Forgets nonces
-- after 15 minutes (a signature is valid for ±300 s around its timestamp).
CREATE OR REPLACE FUNCTION mailrun.remember_nonce(p_key_id text, p_nonce text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_new integer;
BEGIN
    DELETE FROM mailrun.nonces WHERE seen_at < now() - interval '15 minutes';
    INSERT INTO mailrun.nonces (key_id, nonce) VALUES (p_key_id, p_nonce)
        ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS v_new = ROW_COUNT;
    RETURN v_new = 1;
END
$$;
