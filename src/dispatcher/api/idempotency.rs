//! `Idempotency-Key`: the first answer to a key is stored in the transaction that did
//! the work, so it commits (or not) with it. A retry with the same key and request gets
//! that answer again and queues nothing; another request under the same key is refused.
//!
//! Two requests with one key at the same moment: the second's insert waits on the
//! first's row lock, then sees it (committed: replay) or not (rolled back: it does the
//! work itself). Keys are kept 24 hours.

use postgres::types::Type;
use postgres::GenericClient;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// How long a key is remembered.
pub const KEEP_HOURS: i64 = 24;

/// What the stored state says to do with a request.
pub enum Begin {
    /// First use: do the work, then `finish`.
    New,
    /// Seen before with this request: answer this again.
    Replay { status: u16, body: Value },
    /// Seen before with another request.
    Mismatch,
}

/// A valid key: 1-255 visible ASCII characters.
pub fn check_key(key: &str) -> Result<(), String> {
    if (1..=255).contains(&key.len()) && key.bytes().all(|b| (b'!'..=b'~').contains(&b)) {
        Ok(())
    } else {
        Err("Idempotency-Key must be 1-255 visible ASCII characters".into())
    }
}

/// The digest that tells two requests apart.
pub fn request_digest(method: &str, path: &str, query: &str, body: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    for part in [method.as_bytes(), path.as_bytes(), query.as_bytes()] {
        h.update(part);
        h.update([0]);
    }
    h.update(body);
    h.finalize().to_vec()
}

/// Claims `key` for this request inside the caller's transaction.
pub fn begin(
    c: &mut impl GenericClient,
    api_key_id: i64,
    key: &str,
    digest: &[u8],
) -> anyhow::Result<Begin> {
    // An expired entry no longer binds its key. Each use also forgets a few other
    // expired entries, oldest first, so the table stays small without a tick's help.
    c.execute_typed(
        "DELETE FROM mailrun.api_idempotency
         WHERE created_at < now() - make_interval(hours => $3::int)
           AND ((api_key_id = $1 AND idem_key = $2)
                OR (api_key_id, idem_key) IN (
                    SELECT api_key_id, idem_key FROM mailrun.api_idempotency
                    WHERE created_at < now() - make_interval(hours => $3::int)
                    ORDER BY created_at LIMIT 100))",
        &[
            (&api_key_id, Type::INT8),
            (&key, Type::TEXT),
            (&(KEEP_HOURS as i32), Type::INT4),
        ],
    )?;
    let inserted = c.execute_typed(
        "INSERT INTO mailrun.api_idempotency (api_key_id, idem_key, request_sha256)
         VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        &[
            (&api_key_id, Type::INT8),
            (&key, Type::TEXT),
            (&digest, Type::BYTEA),
        ],
    )?;
    if inserted == 1 {
        return Ok(Begin::New);
    }
    let row = c.query_typed_one(
        "SELECT request_sha256, status, response FROM mailrun.api_idempotency
         WHERE api_key_id = $1 AND idem_key = $2",
        &[(&api_key_id, Type::INT8), (&key, Type::TEXT)],
    )?;
    let stored: Vec<u8> = row.get(0);
    if stored != digest {
        return Ok(Begin::Mismatch);
    }
    let status: Option<i32> = row.get(1);
    let body: Option<Value> = row.get(2);
    match (status.and_then(|s| u16::try_from(s).ok()), body) {
        (Some(status), Some(body)) => Ok(Begin::Replay { status, body }),
        // A row without an answer belongs to a transaction still running; the insert
        // above waited for it, so this cannot be seen once it committed.
        _ => anyhow::bail!("idempotency entry without an answer"),
    }
}

/// Stores the answer to `key` (same transaction as the work).
pub fn finish(
    c: &mut impl GenericClient,
    api_key_id: i64,
    key: &str,
    status: u16,
    body: &Value,
) -> anyhow::Result<()> {
    c.execute_typed(
        "UPDATE mailrun.api_idempotency SET status = $3, response = $4
         WHERE api_key_id = $1 AND idem_key = $2",
        &[
            (&api_key_id, Type::INT8),
            (&key, Type::TEXT),
            (&i32::from(status), Type::INT4),
            (body, Type::JSONB),
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_digests() {
        assert!(check_key("order-42").is_ok());
        assert!(check_key("").is_err());
        assert!(check_key("a b").is_err());
        assert!(check_key(&"x".repeat(256)).is_err());
        assert_ne!(
            request_digest("POST", "/messages", "", b"{}"),
            request_digest("POST", "/messages/batch", "", b"{}")
        );
    }
}
