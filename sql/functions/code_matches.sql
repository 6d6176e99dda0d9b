-- Does an SMTP answer match one of the review patterns? A pattern is a basic code with
-- `x` wildcards ("550", "55x", "5xx") or an enhanced status code or its prefix
-- ("5.7.1", "5.7").
CREATE OR REPLACE FUNCTION mailrun.code_matches(p_code integer, p_enhanced text, patterns text[])
RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(bool_or(
        CASE WHEN p ~ '^[245][0-9x][0-9x]$'
             THEN p_code IS NOT NULL AND p_code::text LIKE replace(p, 'x', '_')
             ELSE p_enhanced IS NOT NULL AND (p_enhanced = p OR p_enhanced LIKE p || '.%')
        END), false)
    FROM unnest(patterns) AS t(p)
$$;
