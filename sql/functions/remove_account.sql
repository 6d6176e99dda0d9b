-- Removes an SMTP account (`dispatch-admin account remove`). Refused while a message
-- (unfinished or finished: each names its account) or an account group uses it, unless
-- `p_to` names the account to move them to: then every such message and group names
-- `p_to` instead (failover lists keep their order, without duplicates) and the removed
-- account's quotas and throttle state go with it. Returns how many messages moved.
CREATE OR REPLACE FUNCTION mailrun.remove_account(p_name text, p_to text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    v_to bigint;
    v_open bigint;
    v_done bigint;
    v_groups text;
BEGIN
    SELECT id INTO v_id FROM mailrun.smtp_accounts WHERE name = p_name FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'no_data_found', MESSAGE = format('no account %L', p_name);
    END IF;
    IF p_to IS NOT NULL THEN
        SELECT id INTO v_to FROM mailrun.smtp_accounts WHERE name = p_to FOR SHARE;
        IF NOT FOUND THEN
            PERFORM mailrun.refuse(NULL, format('no account %L to move the messages to', p_to));
        END IF;
        IF v_to = v_id THEN
            PERFORM mailrun.refuse(NULL, 'an account cannot take over its own messages');
        END IF;
    END IF;
    SELECT count(*) FILTER (WHERE finished_at IS NULL),
           count(*) FILTER (WHERE finished_at IS NOT NULL)
      INTO v_open, v_done
      FROM mailrun.messages
     WHERE account_id = v_id OR v_id = ANY (account_ids) OR v_id = ANY (skip_account_ids);
    SELECT string_agg(name, ', ' ORDER BY name) INTO v_groups
      FROM mailrun.account_groups WHERE p_name = ANY (accounts);
    IF v_to IS NULL THEN
        IF v_open + v_done > 0 THEN
            PERFORM mailrun.refuse(NULL, format(
                'account %L is used by %s unfinished and %s finished message(s); move them '
                'with --to OTHER (or purge the finished ones first)', p_name, v_open, v_done));
        END IF;
        IF v_groups IS NOT NULL THEN
            PERFORM mailrun.refuse(NULL, format(
                'account %L is in account group(s) %s; move it with --to OTHER or change '
                'the groups first', p_name, v_groups));
        END IF;
    ELSE
        UPDATE mailrun.messages m SET
            account_id = CASE WHEN m.account_id = v_id THEN v_to ELSE m.account_id END,
            account_ids = coalesce((
                SELECT array_agg(x ORDER BY first_at) FROM (
                    SELECT x, min(i) AS first_at
                    FROM unnest(array_replace(m.account_ids, v_id, v_to)) WITH ORDINALITY u(x, i)
                    GROUP BY x) d), '{}'),
            skip_account_ids = array_remove(m.skip_account_ids, v_id)
        WHERE m.account_id = v_id OR v_id = ANY (m.account_ids) OR v_id = ANY (m.skip_account_ids);
        UPDATE mailrun.account_groups g SET updated_at = now(), accounts = (
                SELECT array_agg(x ORDER BY first_at) FROM (
                    SELECT x, min(i) AS first_at
                    FROM unnest(array_replace(g.accounts, p_name, p_to)) WITH ORDINALITY u(x, i)
                    GROUP BY x) d)
        WHERE p_name = ANY (g.accounts);
    END IF;
    DELETE FROM mailrun.quotas WHERE scope = 'account' AND key = p_name;
    DELETE FROM mailrun.throttles WHERE scope = 'account' AND key = p_name;
    DELETE FROM mailrun.smtp_accounts WHERE id = v_id;
    RETURN v_open + v_done;
END
$$;
