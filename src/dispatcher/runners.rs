//! Runners known to the dispatcher: endpoint, signing keys, batch size, last contact.
//!
//! Key rotation: `rotate_key` makes a new current key and keeps the old one as
//! `previous`; both verify until `confirm_key` is called with the new key id (the
//! endpoint does so when a request arrives signed with it; `dispatch-admin runner
//! confirm-key` does it by hand). Rotating again while a previous key is still kept
//! replaces that previous key.

use crate::dispatcher::typed::params;
use chrono::{DateTime, Utc};
use postgres::GenericClient;

use crate::cli::{CliError, EXIT_DATA};
use crate::protocol::sign::SigningKey;

/// Batch size of a new runner unless given.
pub const DEFAULT_BATCH_SIZE: u32 = 100;

#[derive(Debug, Clone, PartialEq)]
pub struct Runner {
    pub id: String,
    pub endpoint: String,
    pub enabled: bool,
    pub batch_size: u32,
    /// The current key first, then the previous one while a rotation is unconfirmed.
    pub keys: Vec<SigningKey>,
    pub last_seen: Option<DateTime<Utc>>,
    pub last_status: Option<String>,
    pub software_version: Option<String>,
    /// The config version the runner last reported applying.
    pub config_version: Option<i64>,
}

const COLUMNS: &str = "id, endpoint, enabled, batch_size, key_id, secret, previous_key_id,
    previous_secret, last_seen, last_status, software_version, config_version_applied";

fn key(id: String, secret: Vec<u8>) -> anyhow::Result<SigningKey> {
    let secret: [u8; 32] = secret
        .try_into()
        .map_err(|_| anyhow::anyhow!("stored key {id} is not 32 bytes"))?;
    Ok(SigningKey { key_id: id, secret })
}

fn from_row(row: &postgres::Row) -> anyhow::Result<Runner> {
    let mut keys = vec![key(row.get(4), row.get(5))?];
    let previous_id: Option<String> = row.get(6);
    let previous_secret: Option<Vec<u8>> = row.get(7);
    if let (Some(id), Some(secret)) = (previous_id, previous_secret) {
        keys.push(key(id, secret)?);
    }
    Ok(Runner {
        id: row.get(0),
        endpoint: row.get(1),
        enabled: row.get(2),
        batch_size: u32::try_from(row.get::<_, i32>(3)).unwrap_or(1),
        keys,
        last_seen: row.get(8),
        last_status: row.get(9),
        software_version: row.get(10),
        config_version: row.get(11),
    })
}

/// The runner owning `key_id` (current or previous key), if any.
pub fn find_by_key_id(c: &mut impl GenericClient, key_id: &str) -> anyhow::Result<Option<Runner>> {
    let sql =
        format!("SELECT {COLUMNS} FROM mailrun.runners WHERE key_id = $1 OR previous_key_id = $1");
    c.query_typed_opt(&sql, &params(&[&key_id]))?
        .map(|r| from_row(&r))
        .transpose()
}

pub fn get(c: &mut impl GenericClient, id: &str) -> anyhow::Result<Option<Runner>> {
    let sql = format!("SELECT {COLUMNS} FROM mailrun.runners WHERE id = $1");
    c.query_typed_opt(&sql, &params(&[&id]))?
        .map(|r| from_row(&r))
        .transpose()
}

/// Like `get`, but an unknown runner is a data error naming it.
pub fn require(c: &mut impl GenericClient, id: &str) -> anyhow::Result<Runner> {
    get(c, id)?.ok_or_else(|| CliError::new(EXIT_DATA, format!("no runner {id:?}")).into())
}

pub fn list(c: &mut impl GenericClient) -> anyhow::Result<Vec<Runner>> {
    let sql = format!("SELECT {COLUMNS} FROM mailrun.runners ORDER BY id");
    c.query_typed(&sql, &[])?.iter().map(from_row).collect()
}

/// Records a contact with a runner (a request from it, or its answer to one).
/// `status` is free text such as "ready: accepted" or "unreachable: timeout".
pub fn record_contact(
    c: &mut impl GenericClient,
    id: &str,
    status: &str,
    software_version: Option<&str>,
    config_version: Option<i64>,
) -> anyhow::Result<()> {
    c.execute_typed(
        "UPDATE mailrun.runners SET last_seen = now(), last_status = $2,
                software_version = coalesce($3, software_version),
                config_version_applied = coalesce($4, config_version_applied)
         WHERE id = $1",
        &params(&[&id, &status, &software_version, &config_version]),
    )?;
    Ok(())
}

/// Records a runner's status without a proof that it answered (an unsigned or failed
/// contact): last_seen and the versions stay as they were.
pub fn record_status(c: &mut impl GenericClient, id: &str, status: &str) -> anyhow::Result<()> {
    c.execute_typed(
        "UPDATE mailrun.runners SET last_status = $2 WHERE id = $1",
        &params(&[&id, &status]),
    )?;
    Ok(())
}

/// The config version a runner is recorded to have applied (None: never, or no such
/// runner).
pub fn applied_config_version(c: &mut impl GenericClient, id: &str) -> anyhow::Result<Option<i64>> {
    Ok(c.query_typed_opt(
        "SELECT config_version_applied FROM mailrun.runners WHERE id = $1",
        &params(&[&id]),
    )?
    .and_then(|r| r.get::<_, Option<i64>>(0)))
}

/// Records that a runner applied a config version. GREATEST: a slow, older push finishing
/// late never lowers the recorded version.
pub fn record_applied_config(
    c: &mut impl GenericClient,
    id: &str,
    version: i64,
) -> anyhow::Result<()> {
    c.execute_typed(
        "UPDATE mailrun.runners
            SET config_version_applied = GREATEST(COALESCE(config_version_applied, 0), $2)
          WHERE id = $1",
        &params(&[&id, &version]),
    )?;
    Ok(())
}

/// A fresh random key with a random id.
pub fn generate_key() -> anyhow::Result<SigningKey> {
    let mut secret = [0u8; 32];
    let mut id = [0u8; 8];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    getrandom::fill(&mut id).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(SigningKey {
        key_id: hex::encode(id),
        secret,
    })
}

/// Checks a runner id: 1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit.
pub fn validate_id(id: &str) -> anyhow::Result<()> {
    let ok = (1..=64).contains(&id.len())
        && id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(CliError::new(
            EXIT_DATA,
            format!("invalid runner id {id:?}: use 1-64 letters, digits, '.', '_' or '-'"),
        )
        .into())
    }
}

/// Checks a runner endpoint URL (http or https, no whitespace).
pub fn validate_endpoint(endpoint: &str) -> anyhow::Result<()> {
    let rest = endpoint
        .strip_prefix("https://")
        .or_else(|| endpoint.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.chars().any(char::is_whitespace) => Ok(()),
        _ => Err(CliError::new(
            EXIT_DATA,
            format!("invalid endpoint {endpoint:?}: want an http:// or https:// URL"),
        )
        .into()),
    }
}

pub fn validate_batch_size(n: u32) -> anyhow::Result<()> {
    if (1..=10000).contains(&n) {
        Ok(())
    } else {
        Err(CliError::new(
            EXIT_DATA,
            format!("batch size {n} is not between 1 and 10000"),
        )
        .into())
    }
}

/// Adds a runner with a new key; returns the key (shown once, never stored elsewhere).
pub fn add(
    c: &mut impl GenericClient,
    id: &str,
    endpoint: &str,
    batch_size: u32,
) -> anyhow::Result<SigningKey> {
    validate_id(id)?;
    validate_endpoint(endpoint)?;
    validate_batch_size(batch_size)?;
    if get(c, id)?.is_some() {
        return Err(CliError::new(EXIT_DATA, format!("runner {id:?} already exists")).into());
    }
    let key = generate_key()?;
    c.execute_typed(
        "INSERT INTO mailrun.runners (id, endpoint, batch_size, key_id, secret)
         VALUES ($1, $2, $3, $4, $5)",
        &params(&[
            &id,
            &endpoint,
            &(batch_size as i32),
            &key.key_id,
            &key.secret.as_slice(),
        ]),
    )?;
    Ok(key)
}

/// Enables or disables a runner; an unknown runner is an error.
pub fn set_enabled(c: &mut impl GenericClient, id: &str, enabled: bool) -> anyhow::Result<()> {
    let n = c.execute_typed(
        "UPDATE mailrun.runners SET enabled = $2 WHERE id = $1",
        &params(&[&id, &enabled]),
    )?;
    if n == 0 {
        return Err(CliError::new(EXIT_DATA, format!("no runner {id:?}")).into());
    }
    Ok(())
}

/// Revokes a runner (`mailrun.revoke_runner`): disabled, its leased messages back in the
/// queue now; how many.
pub fn revoke(c: &mut impl GenericClient, id: &str) -> anyhow::Result<i64> {
    routine(c, "SELECT mailrun.revoke_runner($1)", id)
}

/// Removes a runner after revoking it (`mailrun.remove_runner`); how many messages went
/// back to the queue.
pub fn remove(c: &mut impl GenericClient, id: &str) -> anyhow::Result<i64> {
    routine(c, "SELECT mailrun.remove_runner($1)", id)
}

fn routine(c: &mut impl GenericClient, sql: &str, id: &str) -> anyhow::Result<i64> {
    match c.query_typed_one(sql, &[(&id, postgres::types::Type::TEXT)]) {
        Ok(row) => Ok(row.get(0)),
        Err(e)
            if e.as_db_error()
                .is_some_and(|d| *d.code() == postgres::error::SqlState::NO_DATA_FOUND) =>
        {
            Err(CliError::new(EXIT_DATA, format!("no runner {id:?}")).into())
        }
        Err(e) => Err(e.into()),
    }
}

/// Changes endpoint and/or batch size.
pub fn update(
    c: &mut impl GenericClient,
    id: &str,
    endpoint: Option<&str>,
    batch_size: Option<u32>,
) -> anyhow::Result<()> {
    if let Some(e) = endpoint {
        validate_endpoint(e)?;
    }
    if let Some(n) = batch_size {
        validate_batch_size(n)?;
    }
    let n = c.execute_typed(
        "UPDATE mailrun.runners SET endpoint = coalesce($2, endpoint),
                batch_size = coalesce($3, batch_size)
         WHERE id = $1",
        &params(&[&id, &endpoint, &batch_size.map(|n| n as i32)]),
    )?;
    if n == 0 {
        return Err(CliError::new(EXIT_DATA, format!("no runner {id:?}")).into());
    }
    Ok(())
}

/// Makes a new current key, keeping the current one as previous; returns the new key.
pub fn rotate_key(c: &mut impl GenericClient, id: &str) -> anyhow::Result<SigningKey> {
    let key = generate_key()?;
    let n = c.execute_typed(
        "UPDATE mailrun.runners SET previous_key_id = key_id, previous_secret = secret,
                key_id = $2, secret = $3
         WHERE id = $1",
        &params(&[&id, &key.key_id, &key.secret.as_slice()]),
    )?;
    if n == 0 {
        return Err(CliError::new(EXIT_DATA, format!("no runner {id:?}")).into());
    }
    Ok(key)
}

/// Forgets the previous key once the runner has used the current one (`key_id`).
/// True when a previous key was dropped.
pub fn confirm_key(c: &mut impl GenericClient, id: &str, key_id: &str) -> anyhow::Result<bool> {
    let n = c.execute_typed(
        "UPDATE mailrun.runners SET previous_key_id = NULL, previous_secret = NULL
         WHERE id = $1 AND key_id = $2 AND previous_key_id IS NOT NULL",
        &params(&[&id, &key_id]),
    )?;
    Ok(n > 0)
}
