-- Does a finality rule list decide that (code, enhanced) is permanent? The per-message
-- rules are checked first, then the policy's; without a match 5xx (or an enhanced
-- status 5.x.x) is permanent and 4xx temporary. NULL when nothing is known (no code).
CREATE OR REPLACE FUNCTION mailrun.is_permanent(p_code integer, p_enhanced text, p_message_rules jsonb)
RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
    r jsonb;
BEGIN
    FOR r IN SELECT value FROM jsonb_array_elements(
            coalesce(p_message_rules, '[]'::jsonb) || (SELECT rules FROM mailrun.policy)) LOOP
        IF (r->>'code' IS NULL
                OR (p_code IS NOT NULL AND p_code::text LIKE replace(r->>'code', 'x', '_')))
           AND (r->>'enhanced' IS NULL
                OR (p_enhanced IS NOT NULL
                    AND (p_enhanced = r->>'enhanced' OR p_enhanced LIKE (r->>'enhanced') || '.%')))
        THEN
            RETURN (r->>'permanent')::boolean;
        END IF;
    END LOOP;
    IF p_code IS NOT NULL THEN
        RETURN p_code >= 500;
    END IF;
    IF p_enhanced ~ '^5\.' THEN
        RETURN true;
    ELSIF p_enhanced ~ '^4\.' THEN
        RETURN false;
    END IF;
    RETURN NULL;
END
$$;
