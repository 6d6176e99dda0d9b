//! The removal policy: how long finished messages are kept before the tick purges
//! them, and which SMTP answers keep a message for review instead.
//!
//! `[retention]` in dispatcher.toml (every key optional):
//!
//! ```toml
//! [retention]
//! keep_sent_days = 30          # sent messages, counted from when they finished
//! keep_failed_days = 90        # failed, expired and cancelled messages
//! review_codes = ["5.7.1", "55x"]  # answers that keep a message until purged by hand
//! ```
//!
//! A review code is a basic SMTP code with `x` wildcards (`550`, `55x`, `5xx`) or an
//! enhanced status code or its prefix (`5.7.1`, `5.7`). A message matches when its last
//! answer, or any answer recorded for it (per recipient too), matches; it is then
//! marked `held_for_review` and stays until `dispatch-admin purge` removes it (or a
//! retry makes it unfinished again).

use postgres::types::Type;
use postgres::GenericClient;
use serde::{Deserialize, Serialize};

/// Default days a sent message is kept.
pub const DEFAULT_KEEP_SENT_DAYS: u32 = 30;
/// Default days a failed, expired or cancelled message is kept.
pub const DEFAULT_KEEP_FAILED_DAYS: u32 = 90;
/// Longest keep time accepted (100 years: "keep forever" in practice).
pub const MAX_KEEP_DAYS: u32 = 36_500;
/// Most messages one tick deletes, so a tick after a long pause stays short; the rest
/// go on the next ticks.
pub const PURGE_BATCH: i32 = 10_000;

/// The `[retention]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    #[serde(default = "default_keep_sent")]
    pub keep_sent_days: u32,
    #[serde(default = "default_keep_failed")]
    pub keep_failed_days: u32,
    #[serde(default)]
    pub review_codes: Vec<String>,
}

fn default_keep_sent() -> u32 {
    DEFAULT_KEEP_SENT_DAYS
}

fn default_keep_failed() -> u32 {
    DEFAULT_KEEP_FAILED_DAYS
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            keep_sent_days: DEFAULT_KEEP_SENT_DAYS,
            keep_failed_days: DEFAULT_KEEP_FAILED_DAYS,
            review_codes: Vec::new(),
        }
    }
}

impl RetentionConfig {
    /// Refuses keep times outside 1..=36500 days and malformed review codes.
    pub fn validate(&self) -> anyhow::Result<()> {
        for (key, days) in [
            ("keep_sent_days", self.keep_sent_days),
            ("keep_failed_days", self.keep_failed_days),
        ] {
            anyhow::ensure!(
                (1..=MAX_KEEP_DAYS).contains(&days),
                "[retention] {key} must be between 1 and {MAX_KEEP_DAYS} days, not {days}"
            );
        }
        for code in &self.review_codes {
            anyhow::ensure!(
                valid_review_code(code),
                "[retention] review_codes: {code:?} is neither an SMTP code like \"550\" or \
                 \"55x\" nor an enhanced status code like \"5.7.1\" or \"5.7\""
            );
        }
        Ok(())
    }
}

/// `550`, `55x`, `5xx`; or `5.7.1`, `5.7`, `4`.
pub fn valid_review_code(code: &str) -> bool {
    use crate::protocol::reply_rules::{valid_code, valid_enhanced_prefix};
    valid_code(code) || (code.contains('.') && valid_enhanced_prefix(code))
}

/// What one purge did.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Purged {
    /// Messages deleted (with their attempts).
    pub purged: i64,
    /// Messages newly held for review (past their keep time, matching a review code).
    pub held_for_review: i64,
}

/// Deletes finished messages past their keep time per `config`, holding those that
/// match a review code (at most [`PURGE_BATCH`] examined per call). Called by every
/// `dispatch-tick`.
pub fn purge_due(c: &mut impl GenericClient, config: &RetentionConfig) -> anyhow::Result<Purged> {
    config.validate()?;
    // validate() bounds both to 36500, well inside i32.
    let sent = i32::try_from(config.keep_sent_days)?;
    let failed = i32::try_from(config.keep_failed_days)?;
    let row = c.query_typed_one(
        "SELECT purged, held FROM mailrun.purge_finished(
             make_interval(days => $1), make_interval(days => $2), $3, $4)",
        &[
            (&sent, Type::INT4),
            (&failed, Type::INT4),
            (&config.review_codes, Type::TEXT_ARRAY),
            (&PURGE_BATCH, Type::INT4),
        ],
    )?;
    Ok(Purged {
        purged: row.get(0),
        held_for_review: row.get(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn review_codes() {
        for ok in [
            "550", "55x", "5xx", "421", "5.7.1", "5.7", "4.2.2", "5.1.10",
        ] {
            assert!(valid_review_code(ok), "{ok}");
        }
        for bad in [
            "", "5", "650", "5500", "55", "5.a.1", "5.7.1.1", "5..1", "x50", "5.7.",
        ] {
            assert!(!valid_review_code(bad), "{bad}");
        }
    }

    #[test]
    fn defaults_and_bounds() {
        let c: RetentionConfig = toml::from_str("").unwrap();
        assert_eq!(c, RetentionConfig::default());
        assert!(c.validate().is_ok());
        let c: RetentionConfig = toml::from_str("keep_sent_days = 0").unwrap();
        assert!(c.validate().is_err());
        assert!(toml::from_str::<RetentionConfig>("keep_days = 3").is_err());
    }
}
