//! The reply policy: an ordered table of rules (`mailrun.reply_rules`) deciding what an
//! SMTP answer means: retry with backoff, try another account, suppress the recipient or
//! fail, and whether to throttle the account or the recipient domain. Applied by
//! `mailrun.apply_result` when results arrive (docs/quotas.md).

use crate::dispatcher::typed::params;
use postgres::GenericClient;
use serde::Serialize;

use crate::cli::{CliError, EXIT_DATA};

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Temporary: deferred with the retry policy's backoff.
    Retry,
    /// Temporary: the message moves to the next account of its failover list, due now
    /// (without a list, or when all failed: as retry).
    AnotherAccount,
    /// Permanent for this recipient, and the recipient goes on the suppression list.
    Suppress,
    /// Permanent for this recipient.
    Fail,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Retry => "retry",
            Action::AnotherAccount => "another_account",
            Action::Suppress => "suppress",
            Action::Fail => "fail",
        }
    }
}

/// Whom a matching rule slows down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ThrottleTarget {
    None,
    /// The SMTP account the message was sent through.
    Account,
    /// The recipient's domain.
    Domain,
}

impl ThrottleTarget {
    pub fn as_str(self) -> &'static str {
        match self {
            ThrottleTarget::None => "none",
            ThrottleTarget::Account => "account",
            ThrottleTarget::Domain => "domain",
        }
    }
}

/// One rule; every given condition must match. `code` is three characters with `x`
/// for any digit ("421", "5xx"); `enhanced` a prefix by components ("5.7" matches
/// 5.7.1); `pattern` a case-insensitive POSIX regular expression on the reply text;
/// `domain` the recipient domain or a parent of it; `account` an SMTP account name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    pub id: i64,
    pub position: i32,
    pub code: Option<String>,
    pub enhanced: Option<String>,
    pub pattern: Option<String>,
    pub domain: Option<String>,
    pub account: Option<String>,
    pub action: String,
    pub throttle: String,
    pub note: Option<String>,
    /// Shipped with mailrun (the known misclassifications).
    pub shipped: bool,
}

/// A rule to add.
#[derive(Debug, Clone, Default)]
pub struct NewRule {
    /// Where in the order; default: after the last rule.
    pub position: Option<i32>,
    pub code: Option<String>,
    pub enhanced: Option<String>,
    pub pattern: Option<String>,
    pub domain: Option<String>,
    pub account: Option<String>,
    pub note: Option<String>,
}

/// What the policy decides for one answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// None when nothing is known (no code and no matching rule): the runner's reading
    /// (deferred for a timeout) stands.
    pub action: Option<String>,
    pub throttle: String,
    /// The reply_rules row that matched, if one did.
    pub rule_id: Option<i64>,
}

/// Positions are 1..MAX_POSITION (the table's CHECK); insertion shifts through the
/// upper half.
const MAX_POSITION: i32 = 999_999_999;

fn data_err(msg: String) -> anyhow::Error {
    CliError::new(EXIT_DATA, msg).into()
}

fn validate(c: &mut impl GenericClient, r: &NewRule) -> anyhow::Result<()> {
    if r.code.is_none() && r.enhanced.is_none() && r.pattern.is_none() {
        return Err(data_err(
            "a rule needs --code, --enhanced or --pattern".into(),
        ));
    }
    if let Some(code) = &r.code {
        if !crate::protocol::reply_rules::valid_code(code) {
            return Err(data_err(format!(
                "code {code:?}: want three characters like \"550\" or \"4xx\""
            )));
        }
    }
    if let Some(enhanced) = &r.enhanced {
        if !crate::protocol::reply_rules::valid_enhanced_prefix(enhanced) {
            return Err(data_err(format!(
                "enhanced status {enhanced:?}: want a prefix like \"5.7\" or \"5.7.1\""
            )));
        }
    }
    if let Some(p) = &r.pattern {
        // Runners take at most this much (the pattern travels with JobRunnerConfigUpdate).
        let max = crate::protocol::reply_rules::MAX_PATTERN_CHARS;
        if p.is_empty() || p.chars().count() > max {
            return Err(data_err(format!(
                "the pattern must be 1 to {max} characters"
            )));
        }
        let valid: bool = c
            .query_typed_one("SELECT mailrun.valid_regex($1)", &params(&[p]))?
            .get(0);
        if !valid || p.contains(['\r', '\n']) {
            return Err(data_err(format!(
                "pattern {p:?} is not a valid regular expression"
            )));
        }
    }
    if let Some(d) = &r.domain {
        let ok = !d.is_empty()
            && d.len() <= 253
            && d.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && !d.starts_with(['.', '-'])
            && !d.ends_with(['.', '-']);
        if !ok {
            return Err(data_err(format!(
                "domain {d:?}: want a lowercase domain like example.com"
            )));
        }
    }
    if let Some(a) = &r.account {
        if c.query_typed_opt(
            "SELECT 1 FROM mailrun.smtp_accounts WHERE name = $1",
            &params(&[a]),
        )?
        .is_none()
        {
            return Err(data_err(format!("no account {a:?}")));
        }
    }
    if r.note.as_deref().is_some_and(|n| n.contains(['\r', '\n'])) {
        return Err(data_err("the note must be one line".into()));
    }
    Ok(())
}

/// Adds a rule; its id. At an occupied position the rules from there on move down by
/// one.
pub fn add(
    c: &mut impl GenericClient,
    rule: &NewRule,
    action: Action,
    throttle: ThrottleTarget,
) -> anyhow::Result<i64> {
    validate(c, rule)?;
    let mut tx = c.transaction()?;
    tx.execute_typed("LOCK TABLE mailrun.reply_rules IN EXCLUSIVE MODE", &[])?;
    let position = match rule.position {
        Some(p) => {
            if !(1..MAX_POSITION / 2).contains(&p) {
                return Err(data_err(format!(
                    "--position must be between 1 and {}",
                    MAX_POSITION / 2 - 1
                )));
            }
            // Two steps through a free range so the UNIQUE constraint never sees a
            // transient duplicate.
            tx.execute_typed(
                "UPDATE mailrun.reply_rules SET position = position + $2 WHERE position >= $1",
                &params(&[&p, &(MAX_POSITION / 2)]),
            )?;
            tx.execute_typed(
                "UPDATE mailrun.reply_rules SET position = position - $1 + 1 WHERE position >= $1",
                &params(&[&(MAX_POSITION / 2)]),
            )?;
            p
        }
        None => {
            let p: i32 = tx
                .query_typed_one(
                    "SELECT coalesce(max(position), 0) + 10 FROM mailrun.reply_rules",
                    &[],
                )?
                .get(0);
            if p >= MAX_POSITION / 2 {
                return Err(data_err("no free position left: give --position".into()));
            }
            p
        }
    };
    let id: i64 = tx
        .query_typed_one(
            "INSERT INTO mailrun.reply_rules (position, code, enhanced, pattern, domain, account,
                                              action, throttle, note)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            &params(&[
                &position,
                &rule.code,
                &rule.enhanced,
                &rule.pattern,
                &rule.domain,
                &rule.account,
                &action.as_str(),
                &throttle.as_str(),
                &rule.note,
            ]),
        )?
        .get(0);
    tx.commit()?;
    Ok(id)
}

/// Removes a rule (shipped ones too); false when there was no such rule.
pub fn remove(c: &mut impl GenericClient, id: i64) -> anyhow::Result<bool> {
    Ok(c.execute_typed(
        "DELETE FROM mailrun.reply_rules WHERE id = $1",
        &params(&[&id]),
    )? > 0)
}

/// The rules in the order they are tried.
pub fn list(c: &mut impl GenericClient) -> anyhow::Result<Vec<Rule>> {
    let rows = c.query_typed(
        "SELECT id, position, code, enhanced, pattern, domain, account, action, throttle, note,
                shipped
         FROM mailrun.reply_rules ORDER BY position",
        &[],
    )?;
    Ok(rows
        .iter()
        .map(|r| Rule {
            id: r.get(0),
            position: r.get(1),
            code: r.get(2),
            enhanced: r.get(3),
            pattern: r.get(4),
            domain: r.get(5),
            account: r.get(6),
            action: r.get(7),
            throttle: r.get(8),
            note: r.get(9),
            shipped: r.get(10),
        })
        .collect())
}

/// What the policy decides for an answer, exactly as `mailrun.apply_result` would
/// (message-specific `final_codes` aside): the reply rules, then the config's finality
/// rules, then 5xx fail / 4xx retry.
pub fn decide(
    c: &mut impl GenericClient,
    code: Option<i32>,
    enhanced: Option<&str>,
    text: Option<&str>,
    domain: Option<&str>,
    account: Option<&str>,
) -> anyhow::Result<Decision> {
    let r = c.query_typed_one(
        "SELECT action, throttle, rule_id
         FROM mailrun.reply_decision($1, $2, $3, $4, $5, NULL)",
        &params(&[&code, &enhanced, &text, &domain, &account]),
    )?;
    Ok(Decision {
        action: r.get(0),
        throttle: r.get(1),
        rule_id: r.get(2),
    })
}
