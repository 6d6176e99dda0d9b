-- The quotas a held message waits for: those of its accounts (the failover list) and of
-- its pending recipients' domains that have no room left now. claim_batch stores them
-- with every quota or account hold it sets (messages.held_quota_ids), inside the claim,
-- so it sees that claim's counters; quota_releases_wake finds the mail a given-back
-- reservation may free through them. NULL when no quota holds the message.
CREATE OR REPLACE FUNCTION mailrun.held_quota_ids(m mailrun.messages) RETURNS bigint[]
LANGUAGE sql STABLE AS $$
    SELECT nullif(ARRAY(
        SELECT q.id FROM mailrun.quotas q
        WHERE ((q.scope = 'account' AND q.key IN (
                    SELECT a.name FROM mailrun.smtp_accounts a
                    WHERE a.id = ANY (CASE WHEN cardinality(m.account_ids) > 0
                                           THEN m.account_ids ELSE ARRAY[m.account_id] END)))
               OR (q.scope = 'domain' AND q.key IN (
                    SELECT mailrun.addr_domain(t)
                    FROM unnest(mailrun.pending(m.to_addrs || m.cc_addrs || m.bcc_addrs,
                                                m.recipients_sent, m.recipients_failed)) t)))
          AND (SELECT r.room FROM mailrun.quota_room(q, mailrun.throttle_factor(q.scope, q.key)) r) <= 0
        ORDER BY q.id), '{}')
$$;
