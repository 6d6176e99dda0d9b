//! `dispatch-admin reply-rule`: the reply policy.

use clap::Subcommand;
use serde_json::json;

use crate::cli::{CliError, EXIT_DATA, EXIT_OK, EXIT_USAGE};
use crate::dispatcher::reply_policy::{self, Action, NewRule, ThrottleTarget};

use super::output::*;

#[derive(Debug, Subcommand)]
pub enum ReplyRuleCommand {
    /// The rules in the order they are tried (first match decides).
    List,
    /// Add a rule. Every condition given must match.
    #[command(
        long_about = "Add a rule. Every condition given must match; the first \
matching rule by position decides.\n\n\
Runners apply the policy too, while they send a batch (docs/quotas.md): adding or \
removing a rule creates a new runner config version, and the next `push-config --all` \
sends the policy to every runner. Patterns are case-insensitive POSIX regular \
expressions (1 to 1000 characters); a runner skips one its regex engine cannot compile \
(back-references, look-around), the dispatcher still applies it."
    )]
    Add {
        /// What a match does.
        #[arg(long, value_enum)]
        action: Action,
        /// Slow down the account or the recipient domain on a match.
        #[arg(long, value_enum, default_value = "none")]
        throttle: ThrottleTarget,
        /// SMTP code, x = any digit: 550, 4xx.
        #[arg(long)]
        code: Option<String>,
        /// Enhanced status prefix: 5.7 or 5.7.1.
        #[arg(long)]
        enhanced: Option<String>,
        /// Case-insensitive POSIX regular expression on the reply text.
        #[arg(long)]
        pattern: Option<String>,
        /// Recipient domain (or a parent domain), e.g. gmail.com.
        #[arg(long)]
        domain: Option<String>,
        /// SMTP account name (the provider).
        #[arg(long)]
        account: Option<String>,
        /// Place in the order (later rules move down); default: last.
        #[arg(long)]
        position: Option<i32>,
        #[arg(long)]
        note: Option<String>,
    },
    /// Remove a rule by id (a new runner config version: push it with `push-config --all`).
    Remove { id: i64 },
    /// What the policy decides for an answer.
    Test {
        #[arg(long)]
        code: Option<i32>,
        #[arg(long)]
        enhanced: Option<String>,
        #[arg(long)]
        text: Option<String>,
        #[arg(long)]
        domain: Option<String>,
        #[arg(long)]
        account: Option<String>,
    },
}

pub(super) fn reply_rule_cmd(
    db: &mut postgres::Client,
    cmd: ReplyRuleCommand,
    out: Output,
) -> anyhow::Result<u8> {
    match cmd {
        ReplyRuleCommand::List => {
            let rules = reply_policy::list(db)?;
            out.listing(serde_json::to_value(&rules)?, || {
                let mut s = format!(
                    "{:>4} {:>4} {:<5} {:<7} {:<16} {:<8} {:<16} {}\n",
                    "ID", "POS", "CODE", "ENH", "ACTION", "THROTTLE", "DOMAIN/ACCOUNT", "PATTERN"
                );
                for r in &rules {
                    let scope = match (&r.domain, &r.account) {
                        (Some(d), Some(a)) => format!("{d}/{a}"),
                        (Some(d), None) => d.clone(),
                        (None, Some(a)) => format!("account {a}"),
                        (None, None) => "-".into(),
                    };
                    s.push_str(&format!(
                        "{:>4} {:>4} {:<5} {:<7} {:<16} {:<8} {:<16} {}\n",
                        r.id,
                        r.position,
                        r.code.as_deref().unwrap_or("-"),
                        r.enhanced.as_deref().unwrap_or("-"),
                        r.action,
                        r.throttle,
                        scope,
                        r.pattern.as_deref().unwrap_or("-"),
                    ));
                }
                s.push_str("then the config's [retry] rules, then 5xx fail and 4xx retry\n");
                s
            });
        }
        ReplyRuleCommand::Add {
            action,
            throttle,
            code,
            enhanced,
            pattern,
            domain,
            account,
            position,
            note,
        } => {
            let rule = NewRule {
                position,
                code,
                enhanced,
                pattern,
                domain: domain.map(|d| d.to_ascii_lowercase()),
                account,
                note,
            };
            let id = reply_policy::add(db, &rule, action, throttle)?;
            out.result(json!({"id": id}), || {
                format!("reply rule {id} added; `push-config --all` sends it to the runners")
            });
        }
        ReplyRuleCommand::Remove { id } => {
            if !reply_policy::remove(db, id)? {
                return Err(CliError::new(EXIT_DATA, format!("no reply rule {id}")).into());
            }
            out.result(json!({"id": id, "removed": true}), || {
                format!(
                    "reply rule {id} removed; `push-config --all` sends the change to the runners"
                )
            });
        }
        ReplyRuleCommand::Test {
            code,
            enhanced,
            text,
            domain,
            account,
        } => {
            if code.is_none() && enhanced.is_none() && text.is_none() {
                return Err(
                    CliError::new(EXIT_USAGE, "give --code, --enhanced or --text to test").into(),
                );
            }
            let d = reply_policy::decide(
                db,
                code,
                enhanced.as_deref(),
                text.as_deref(),
                domain.as_deref(),
                account.as_deref(),
            )?;
            out.listing(serde_json::to_value(&d)?, || {
                format!(
                    "{} (throttle {}){}\n",
                    d.action
                        .as_deref()
                        .unwrap_or("no decision: the runner's outcome stands"),
                    d.throttle,
                    d.rule_id
                        .map(|id| format!(", rule {id}"))
                        .unwrap_or_else(|| ", no reply rule matched".into())
                )
            });
        }
    }
    Ok(EXIT_OK)
}
