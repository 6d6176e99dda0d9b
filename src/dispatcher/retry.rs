//! The retry policy: backoff, give-up time, enqueue limits and which SMTP codes are final.
//!
//! The stored procedures read it from the one-row table `mailrun.policy`; the `[retry]`
//! section of dispatcher.toml (plus `max_message_bytes`, `message_id_domain`) is the
//! source that `dispatch-admin init|migrate|policy sync` writes there. Keys missing from
//! the file mean the defaults below (Postfix's): the file is the whole truth.

use crate::dispatcher::typed::params;
use postgres::GenericClient;
use serde::{Deserialize, Serialize};

/// Default minimum backoff (Postfix `minimal_backoff_time`).
pub const DEFAULT_BACKOFF_MIN_SECONDS: i32 = 300;
/// Default maximum backoff (Postfix `maximal_backoff_time`).
pub const DEFAULT_BACKOFF_MAX_SECONDS: i32 = 4000;
/// Default give-up time: 5 days (Postfix `maximal_queue_lifetime`).
pub const DEFAULT_GIVE_UP_AFTER_SECONDS: i32 = 5 * 24 * 3600;
/// Default message size limit (Postfix `message_size_limit`).
pub const DEFAULT_MAX_MESSAGE_BYTES: i64 = 10_240_000;
/// Default recipients per message (Postfix `smtpd_recipient_limit`).
pub const DEFAULT_MAX_RECIPIENTS: i32 = 1000;

/// The defaults, as printed in `dispatch-admin --help` and docs/queue.md.
pub const DEFAULTS_HELP: &str = "\
Retry policy defaults (dispatcher.toml [retry]):
  4xx, timeouts, dropped connections: deferred, retried after
  min(backoff_max, backoff_min * 2^(attempts-1)) seconds
  backoff_min_seconds = 300, backoff_max_seconds = 4000
  give_up_after_seconds = 432000 (5 days; then the message is expired)
  5xx: failed (final). rules = [{ code = \"550\", enhanced = \"5.7.1\", permanent = false }]
  overrides this per code (x = any digit) and enhanced-status prefix; the first match wins
  max_message_bytes = 10240000, at most 1000 recipients per message";

/// One finality rule: a code pattern ("550", "4xx") and/or an enhanced status prefix
/// ("5.7", "5.7.1") and whether a match is permanent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinalityRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enhanced: Option<String>,
    pub permanent: bool,
}

impl FinalityRule {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.code.is_some() || self.enhanced.is_some(),
            "a retry rule needs a code or an enhanced status"
        );
        if let Some(code) = &self.code {
            let b = code.as_bytes();
            anyhow::ensure!(
                b.len() == 3
                    && matches!(b[0], b'2' | b'4' | b'5')
                    && b[1..].iter().all(|c| c.is_ascii_digit() || *c == b'x'),
                "retry rule code {code:?}: want three characters like \"550\" or \"4xx\""
            );
        }
        if let Some(enhanced) = &self.enhanced {
            let parts: Vec<&str> = enhanced.split('.').collect();
            anyhow::ensure!(
                matches!(parts[0], "2" | "4" | "5")
                    && parts.len() <= 3
                    && parts[1..].iter().all(
                        |p| (1..=3).contains(&p.len()) && p.bytes().all(|c| c.is_ascii_digit())
                    ),
                "retry rule enhanced status {enhanced:?}: want a prefix like \"5.7\" or \"5.7.1\""
            );
        }
        Ok(())
    }
}

/// The `[retry]` section of dispatcher.toml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    pub backoff_min_seconds: Option<i32>,
    pub backoff_max_seconds: Option<i32>,
    pub give_up_after_seconds: Option<i32>,
    pub max_recipients: Option<i32>,
    #[serde(default)]
    pub rules: Vec<FinalityRule>,
}

impl RetryConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        self.to_policy(None, None).validate()
    }

    /// The policy this section describes, with the file's top-level enqueue limits.
    pub fn to_policy(&self, max_bytes: Option<i64>, domain: Option<String>) -> Policy {
        let d = Policy::default();
        Policy {
            backoff_min_seconds: self.backoff_min_seconds.unwrap_or(d.backoff_min_seconds),
            backoff_max_seconds: self.backoff_max_seconds.unwrap_or(d.backoff_max_seconds),
            give_up_after_seconds: self
                .give_up_after_seconds
                .unwrap_or(d.give_up_after_seconds),
            max_message_bytes: max_bytes.unwrap_or(d.max_message_bytes),
            max_recipients: self.max_recipients.unwrap_or(d.max_recipients),
            message_id_domain: domain,
            rules: self.rules.clone(),
        }
    }
}

/// The contents of `mailrun.policy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub backoff_min_seconds: i32,
    pub backoff_max_seconds: i32,
    pub give_up_after_seconds: i32,
    pub max_message_bytes: i64,
    pub max_recipients: i32,
    pub message_id_domain: Option<String>,
    pub rules: Vec<FinalityRule>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            backoff_min_seconds: DEFAULT_BACKOFF_MIN_SECONDS,
            backoff_max_seconds: DEFAULT_BACKOFF_MAX_SECONDS,
            give_up_after_seconds: DEFAULT_GIVE_UP_AFTER_SECONDS,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_recipients: DEFAULT_MAX_RECIPIENTS,
            message_id_domain: None,
            rules: Vec::new(),
        }
    }
}

impl Policy {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.backoff_min_seconds > 0,
            "backoff_min_seconds must be positive"
        );
        anyhow::ensure!(
            self.backoff_max_seconds >= self.backoff_min_seconds,
            "backoff_max_seconds must be at least backoff_min_seconds"
        );
        anyhow::ensure!(
            self.give_up_after_seconds > 0,
            "give_up_after_seconds must be positive"
        );
        anyhow::ensure!(
            self.max_message_bytes > 0,
            "max_message_bytes must be positive"
        );
        anyhow::ensure!(self.max_recipients > 0, "max_recipients must be positive");
        for rule in &self.rules {
            rule.validate()?;
        }
        Ok(())
    }

    /// Delay before the next try after `attempts` tries (the same arithmetic as the
    /// stored procedure `mailrun.backoff_seconds`).
    pub fn backoff_seconds(&self, attempts: i32) -> i64 {
        let exp = (attempts.max(1) - 1).min(40) as u32;
        let min = i64::from(self.backoff_min_seconds);
        min.saturating_mul(1i64 << exp)
            .min(i64::from(self.backoff_max_seconds))
    }

    /// Reads `mailrun.policy`.
    pub fn load(c: &mut impl GenericClient) -> anyhow::Result<Policy> {
        let row = c.query_typed_one(
            "SELECT backoff_min_seconds, backoff_max_seconds, give_up_after_seconds,
                    max_message_bytes, max_recipients, message_id_domain, rules
             FROM mailrun.policy",
            &[],
        )?;
        let rules: serde_json::Value = row.get(6);
        Ok(Policy {
            backoff_min_seconds: row.get(0),
            backoff_max_seconds: row.get(1),
            give_up_after_seconds: row.get(2),
            max_message_bytes: row.get(3),
            max_recipients: row.get(4),
            message_id_domain: row.get(5),
            rules: serde_json::from_value(rules)?,
        })
    }

    /// Writes this policy to `mailrun.policy`; true when it changed anything.
    pub fn store(&self, c: &mut impl GenericClient) -> anyhow::Result<bool> {
        self.validate()?;
        if Policy::load(c)? == *self {
            return Ok(false);
        }
        let rules = serde_json::to_value(&self.rules)?;
        c.execute_typed(
            "UPDATE mailrun.policy SET backoff_min_seconds = $1, backoff_max_seconds = $2,
                    give_up_after_seconds = $3, max_message_bytes = $4, max_recipients = $5,
                    message_id_domain = $6, rules = $7, updated_at = now()",
            &params(&[
                &self.backoff_min_seconds,
                &self.backoff_max_seconds,
                &self.give_up_after_seconds,
                &self.max_message_bytes,
                &self.max_recipients,
                &self.message_id_domain,
                &rules,
            ]),
        )?;
        Ok(true)
    }
}
