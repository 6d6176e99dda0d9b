-- Gives back what a lease reserved (NotAttempted, reaped): insert-only.
CREATE OR REPLACE FUNCTION mailrun.quota_release(p_token uuid) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO mailrun.quota_releases (quota_id, at)
        SELECT r.quota_id, r.at FROM mailrun.quota_reservations r WHERE r.lease_token = p_token;
    DELETE FROM mailrun.quota_reservations r WHERE r.lease_token = p_token;
$$;
