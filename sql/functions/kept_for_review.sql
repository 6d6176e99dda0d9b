-- Is a message kept for review: did its last answer, or any answer recorded for it
-- (per recipient too), match a review pattern?
CREATE OR REPLACE FUNCTION mailrun.kept_for_review(m mailrun.messages, patterns text[]) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT cardinality(patterns) > 0 AND (
        mailrun.code_matches(m.last_code, m.last_enhanced, patterns)
        OR EXISTS (
            SELECT 1 FROM mailrun.delivery_attempts a
            WHERE a.message_id = m.id
              AND (mailrun.code_matches(a.smtp_code, a.enhanced_status, patterns)
                   OR EXISTS (
                       SELECT 1 FROM jsonb_array_elements(
                           CASE WHEN jsonb_typeof(a.recipients) = 'array'
                                THEN a.recipients ELSE '[]' END) r
                       WHERE mailrun.code_matches(
                           CASE WHEN jsonb_typeof(r->'smtp_code') = 'number'
                                THEN (r->>'smtp_code')::integer END,
                           r->>'enhanced_status', patterns)))))
$$;
