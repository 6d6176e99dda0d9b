//! API keys of the HTTP JSON API (docs/api.md): made by `dispatch-admin api-key add`,
//! shown once, stored as a SHA-256 digest, revocable, with a scope and a last use.
//!
//! A key reads `mrk_<prefix>_<secret>`: the prefix (public, 12 characters) finds the
//! row, the secret is 32 random bytes. A fast hash is enough for a secret of that
//! entropy (no dictionary to guess from), and keeps every request one lookup.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use postgres::types::Type;
use postgres::GenericClient;
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a key may do. Each scope includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Read messages, attempts, lists and recurring jobs.
    Read,
    /// Also queue and cancel messages.
    Send,
    /// Also add, pause, resume and remove recurring jobs.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Send => "send",
            Scope::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Scope, String> {
        match s {
            "read" => Ok(Scope::Read),
            "send" => Ok(Scope::Send),
            "admin" => Ok(Scope::Admin),
            other => Err(format!("unknown scope {other:?}: use send, read or admin")),
        }
    }
}

/// A key just made: `token` is the only copy of the secret and is shown once.
pub struct NewKey {
    pub id: i64,
    pub prefix: String,
    pub token: String,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("id", &self.id)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A stored key as listed (never the secret).
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub id: i64,
    pub prefix: String,
    pub scope: String,
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The key a request authenticated with.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub key_id: i64,
    pub scope: Scope,
}

/// Why a presented key was refused; the message never repeats the key.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the API key is malformed (want mrk_<prefix>_<secret>)")]
    Malformed,
    #[error("unknown API key")]
    Unknown,
    #[error("the API key was revoked")]
    Revoked,
    #[error(transparent)]
    Database(#[from] postgres::Error),
}

const TOKEN_PREFIX: &str = "mrk_";
const PREFIX_LEN: usize = 12;

fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(buf)
}

/// Makes and stores a key; the token is returned once and stored only as a digest.
pub fn add(c: &mut impl GenericClient, scope: Scope, note: Option<&str>) -> anyhow::Result<NewKey> {
    if let Some(n) = note {
        if n.contains(['\r', '\n']) || n.chars().count() > 200 {
            return Err(crate::cli::CliError::new(
                crate::cli::EXIT_DATA,
                "--note must be one line of at most 200 characters",
            )
            .into());
        }
    }
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let prefix: String = random_bytes::<PREFIX_LEN>()?
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect();
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>()?);
    let token = format!("{TOKEN_PREFIX}{prefix}_{secret}");
    let id: i64 = c
        .query_typed_one(
            "INSERT INTO mailrun.api_keys (prefix, key_sha256, scope, note)
             VALUES ($1, $2, $3, $4) RETURNING id",
            &[
                (&prefix, Type::TEXT),
                (&digest(&token), Type::BYTEA),
                (&scope.as_str(), Type::TEXT),
                (&note, Type::TEXT),
            ],
        )?
        .get(0);
    Ok(NewKey { id, prefix, token })
}

/// Every key, revoked ones included, by id.
pub fn list(c: &mut impl GenericClient) -> anyhow::Result<Vec<KeyInfo>> {
    Ok(c.query_typed(
        "SELECT id, prefix, scope, note, created_at, last_used_at, revoked_at
             FROM mailrun.api_keys ORDER BY id",
        &[],
    )?
    .iter()
    .map(|r| KeyInfo {
        id: r.get(0),
        prefix: r.get(1),
        scope: r.get(2),
        note: r.get(3),
        created_at: r.get(4),
        last_used_at: r.get(5),
        revoked_at: r.get(6),
    })
    .collect())
}

/// Revokes a key by id or prefix; None when there is no such key, Some(false) when it
/// was revoked already.
pub fn revoke(
    c: &mut impl GenericClient,
    id_or_prefix: &str,
) -> anyhow::Result<Option<(i64, bool)>> {
    let id: i64 = id_or_prefix.parse().unwrap_or(-1);
    let row = c.query_typed_opt(
        "WITH k AS (SELECT id, revoked_at IS NULL AS live FROM mailrun.api_keys
                    WHERE id = $1 OR prefix = $2 FOR UPDATE),
              u AS (UPDATE mailrun.api_keys a SET revoked_at = now()
                    FROM k WHERE a.id = k.id AND k.live RETURNING a.id)
         SELECT k.id, k.live FROM k",
        &[(&id, Type::INT8), (&id_or_prefix, Type::TEXT)],
    )?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// Checks a bearer token; records the use (at most once a minute per key, so reads do
/// not turn into a write each).
pub fn authenticate(c: &mut impl GenericClient, token: &str) -> Result<Caller, AuthError> {
    let prefix = token
        .strip_prefix(TOKEN_PREFIX)
        .and_then(|rest| rest.split_once('_'))
        .map(|(p, _)| p)
        .filter(|p| p.len() == PREFIX_LEN && p.bytes().all(|b| b.is_ascii_alphanumeric()))
        .ok_or(AuthError::Malformed)?;
    let row = c
        .query_typed_opt(
            "SELECT id, key_sha256, scope, revoked_at IS NOT NULL
             FROM mailrun.api_keys WHERE prefix = $1",
            &[(&prefix, Type::TEXT)],
        )?
        .ok_or(AuthError::Unknown)?;
    let stored: Vec<u8> = row.get(1);
    if !bool::from(stored.ct_eq(&digest(token))) {
        return Err(AuthError::Unknown);
    }
    if row.get::<_, bool>(3) {
        return Err(AuthError::Revoked);
    }
    let key_id: i64 = row.get(0);
    let scope: String = row.get(2);
    c.execute_typed(
        "UPDATE mailrun.api_keys SET last_used_at = now()
         WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
        &[(&key_id, Type::INT8)],
    )?;
    Ok(Caller {
        key_id,
        scope: scope.parse().unwrap_or(Scope::Read),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_include_the_lesser_ones() {
        assert!(Scope::Admin > Scope::Send && Scope::Send > Scope::Read);
        assert_eq!("send".parse::<Scope>(), Ok(Scope::Send));
        assert!("root".parse::<Scope>().is_err());
    }

    #[test]
    fn debug_hides_the_token() {
        let k = NewKey {
            id: 1,
            prefix: "abc".into(),
            token: "mrk_abc_secret".into(),
        };
        assert!(!format!("{k:?}").contains("secret"));
    }
}
