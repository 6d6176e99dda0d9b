-- What an SMTP answer means: the first match among the message's own final_codes,
-- the reply_rules table (by position), the config's finality rules; else 5xx fail,
-- 4xx retry. `action` is NULL when nothing is known (no code, no matching text).
CREATE OR REPLACE FUNCTION mailrun.reply_decision(p_code integer, p_enhanced text, p_text text,
    p_domain text, p_account text, p_message_rules jsonb,
    OUT action text, OUT throttle text, OUT rule_id bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    r jsonb;
    rr mailrun.reply_rules%ROWTYPE;
    perm boolean;
BEGIN
    throttle := 'none';
    FOR r IN SELECT value FROM jsonb_array_elements(coalesce(p_message_rules, '[]'::jsonb)) LOOP
        IF (r->>'code' IS NULL
                OR (p_code IS NOT NULL AND p_code::text LIKE replace(r->>'code', 'x', '_')))
           AND (r->>'enhanced' IS NULL
                OR (p_enhanced IS NOT NULL
                    AND (p_enhanced = r->>'enhanced' OR p_enhanced LIKE (r->>'enhanced') || '.%')))
        THEN
            action := CASE WHEN (r->>'permanent')::boolean THEN 'fail' ELSE 'retry' END;
            RETURN;
        END IF;
    END LOOP;
    SELECT * INTO rr FROM mailrun.reply_rules x
    WHERE (x.code IS NULL OR (p_code IS NOT NULL AND p_code::text LIKE replace(x.code, 'x', '_')))
      AND (x.enhanced IS NULL OR (p_enhanced IS NOT NULL
           AND (p_enhanced = x.enhanced OR p_enhanced LIKE x.enhanced || '.%')))
      AND (x.pattern IS NULL OR (p_text IS NOT NULL AND p_text ~* x.pattern))
      AND (x.domain IS NULL OR (p_domain IS NOT NULL
           AND (lower(p_domain) = x.domain OR lower(p_domain) LIKE '%.' || x.domain)))
      AND (x.account IS NULL OR x.account = p_account)
    ORDER BY x.position LIMIT 1;
    IF FOUND THEN
        action := rr.action;
        throttle := rr.throttle;
        rule_id := rr.id;
        RETURN;
    END IF;
    perm := mailrun.is_permanent(p_code, p_enhanced, NULL);
    IF perm IS NOT NULL THEN
        action := CASE WHEN perm THEN 'fail' ELSE 'retry' END;
    END IF;
END
$$;
