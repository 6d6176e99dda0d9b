//! Messages whose outcome is unknown: DATA was sent but no final answer came (timeout
//! after the final dot, connection lost). They may have been delivered, so they are
//! never retried silently: an operator resolves them, or, when
//! `unknown_retry_after_seconds` is set, `reap_expired` retries them after that wait
//! (docs/quotas.md).

use crate::dispatcher::typed::params;
use chrono::{DateTime, Utc};
use postgres::error::SqlState;
use postgres::GenericClient;
use serde::Serialize;

use crate::cli::{CliError, EXIT_DATA};

/// How an operator resolves an unknown outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Resolution {
    /// It arrived (e.g. the recipient confirmed): pending recipients count as sent.
    Sent,
    /// Give up: pending recipients count as failed.
    Failed,
    /// Send it again now (the recipient may get two copies).
    Retry,
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Sent => "sent",
            Resolution::Failed => "failed",
            Resolution::Retry => "retry",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct UnknownMessage {
    pub id: i64,
    pub account: String,
    pub to: Vec<String>,
    pub subject: String,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_text: Option<String>,
}

/// Messages in state `unknown`, oldest attempt first (at most `limit`).
pub fn list(c: &mut impl GenericClient, limit: i64) -> anyhow::Result<Vec<UnknownMessage>> {
    let rows = c.query_typed(
        "SELECT m.id, a.name, m.to_addrs || m.cc_addrs || m.bcc_addrs, m.subject,
                m.last_attempt_at, m.last_text
         FROM mailrun.messages m JOIN mailrun.smtp_accounts a ON a.id = m.account_id
         WHERE m.state = 'unknown' ORDER BY m.last_attempt_at, m.id LIMIT $1",
        &params(&[&limit]),
    )?;
    Ok(rows
        .iter()
        .map(|r| UnknownMessage {
            id: r.get(0),
            account: r.get(1),
            to: r.get(2),
            subject: r.get(3),
            last_attempt_at: r.get(4),
            last_text: r.get(5),
        })
        .collect())
}

/// Resolves one message; its state before (always "unknown").
pub fn resolve(c: &mut impl GenericClient, id: i64, how: Resolution) -> anyhow::Result<String> {
    match c.query_typed_one(
        "SELECT mailrun.resolve_unknown($1, $2)",
        &params(&[&id, &how.as_str()]),
    ) {
        Ok(row) => Ok(row.get(0)),
        Err(e) => match e.as_db_error() {
            Some(db)
                if *db.code() == SqlState::INVALID_PARAMETER_VALUE
                    || *db.code() == SqlState::NO_DATA_FOUND =>
            {
                Err(CliError::new(EXIT_DATA, db.message()).into())
            }
            _ => Err(e.into()),
        },
    }
}
