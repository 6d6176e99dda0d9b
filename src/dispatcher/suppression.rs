//! The suppression list: recipients mailrun never sends to (hard bounces recorded by the
//! reply policy, operator entries). `mailrun.enqueue` fails suppressed recipients at
//! once and `mailrun.claim_batch` drops those suppressed later (docs/quotas.md).

use crate::dispatcher::typed::params;
use chrono::{DateTime, Utc};
use postgres::GenericClient;
use serde::Serialize;

use crate::cli::{CliError, EXIT_DATA};

#[derive(Debug, Clone, Serialize)]
pub struct Suppression {
    pub address: String,
    /// "operator" or "bounce".
    pub source: String,
    pub reason: String,
    pub smtp_code: Option<i32>,
    pub created_at: DateTime<Utc>,
}

/// The lowercase addr-spec of an address ("Name <a@b>" or "a@b"), checked with lettre's
/// parser.
pub fn normalize(address: &str) -> anyhow::Result<String> {
    let spec = match (address.find('<'), address.rfind('>')) {
        (Some(a), Some(b)) if a < b => &address[a + 1..b],
        _ => address.trim(),
    };
    spec.parse::<lettre::Address>()
        .map(|a| a.to_string().to_lowercase())
        .map_err(|e| CliError::new(EXIT_DATA, format!("invalid address {address:?}: {e}")).into())
}

/// Adds an operator entry; false when the address was already suppressed (the first
/// reason is kept).
pub fn add(c: &mut impl GenericClient, address: &str, reason: &str) -> anyhow::Result<bool> {
    let address = normalize(address)?;
    if reason.contains(['\r', '\n']) {
        return Err(CliError::new(EXIT_DATA, "the reason must be one line").into());
    }
    Ok(c.execute_typed(
        "INSERT INTO mailrun.suppressions (address, source, reason) VALUES ($1, 'operator', $2)
         ON CONFLICT (address) DO NOTHING",
        &params(&[&address, &reason]),
    )? > 0)
}

/// Removes an entry; false when the address was not suppressed.
pub fn remove(c: &mut impl GenericClient, address: &str) -> anyhow::Result<bool> {
    let address = normalize(address)?;
    Ok(c.execute_typed(
        "DELETE FROM mailrun.suppressions WHERE address = $1",
        &params(&[&address]),
    )? > 0)
}

/// The entry for an address, if suppressed.
pub fn get(c: &mut impl GenericClient, address: &str) -> anyhow::Result<Option<Suppression>> {
    let address = normalize(address)?;
    let rows = c.query_typed(
        "SELECT address, source, reason, smtp_code, created_at FROM mailrun.suppressions
         WHERE address = $1",
        &params(&[&address]),
    )?;
    Ok(rows.first().map(from_row))
}

/// Entries, newest first (at most `limit`).
pub fn list(c: &mut impl GenericClient, limit: i64) -> anyhow::Result<Vec<Suppression>> {
    let rows = c.query_typed(
        "SELECT address, source, reason, smtp_code, created_at FROM mailrun.suppressions
         ORDER BY created_at DESC, address LIMIT $1",
        &params(&[&limit]),
    )?;
    Ok(rows.iter().map(from_row).collect())
}

fn from_row(r: &postgres::Row) -> Suppression {
    Suppression {
        address: r.get(0),
        source: r.get(1),
        reason: r.get(2),
        smtp_code: r.get(3),
        created_at: r.get(4),
    }
}
