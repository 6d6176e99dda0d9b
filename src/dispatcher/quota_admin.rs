//! The `quota`, `suppress`, `reply-rule` and `unknown` subcommands of dispatch-admin
//! (docs/quotas.md). Kept apart from admin.rs, which only routes to them.

use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde_json::{json, Value};

use crate::cli::{CliError, EXIT_DATA, EXIT_OK, EXIT_USAGE};
use crate::dispatcher::admin::Output;
use crate::dispatcher::quota::{self, Caps, Scope};
use crate::dispatcher::reply_policy::{self, Action, NewRule, ThrottleTarget};
use crate::dispatcher::suppression;
use crate::dispatcher::unknown::{self, Resolution};

#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    /// Set the caps of an SMTP account, a runner or a recipient domain (replacing its
    /// caps). --per-hour and --per-day count UTC calendar hours and days; --window slides.
    /// Example: quota set account main --per-hour 300 --per-day 2000
    Set {
        #[arg(value_enum)]
        scope: Scope,
        /// Account name, runner id or domain.
        key: String,
        /// At most N messages handed out per second.
        #[arg(long, value_name = "N")]
        per_second: Option<i32>,
        /// At most N per UTC hour.
        #[arg(long, value_name = "N")]
        per_hour: Option<i32>,
        /// At most N per UTC day.
        #[arg(long, value_name = "N")]
        per_day: Option<i32>,
        /// Sliding window "N/SECONDS", e.g. 100/600: at most 100 in any 10 minutes.
        #[arg(long, value_name = "N/SECONDS", value_parser = parse_window)]
        window: Option<(i32, i32)>,
    },
    /// Remove the caps of a scope.
    Remove {
        #[arg(value_enum)]
        scope: Scope,
        key: String,
    },
    /// Caps and use now, throttled accounts and domains, and what is held back.
    List,
    /// Forget the throttle state of an account or domain (back to full speed now).
    Unthrottle {
        /// account or domain
        #[arg(value_parser = ["account", "domain"])]
        scope: String,
        key: String,
    },
    /// Show or change the throttle rule and the unknown-outcome rule.
    Settings {
        /// First pause after a throttle signal (divided by the new factor).
        #[arg(long, value_name = "SECONDS")]
        throttle_pause_seconds: Option<i32>,
        /// Longest pause.
        #[arg(long, value_name = "SECONDS")]
        throttle_max_pause_seconds: Option<i32>,
        /// Quiet time after which the factor doubles back towards 1.
        #[arg(long, value_name = "SECONDS")]
        throttle_recover_seconds: Option<i32>,
        /// Lowest factor (default 1/64).
        #[arg(long, value_name = "FACTOR")]
        throttle_min_factor: Option<f64>,
        /// Retry messages with an unknown outcome this long after the attempt.
        #[arg(long, value_name = "SECONDS", conflicts_with = "unknown_review")]
        unknown_retry_after: Option<i32>,
        /// Leave messages with an unknown outcome to an operator (the default).
        #[arg(long)]
        unknown_review: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SuppressCommand {
    /// Never send to these addresses.
    Add {
        #[arg(required = true)]
        addresses: Vec<String>,
        /// Why (shown in listings and in the messages' last answer).
        #[arg(long, default_value = "operator entry")]
        reason: String,
    },
    /// Take addresses off the list.
    Remove {
        #[arg(required = true)]
        addresses: Vec<String>,
    },
    /// Entries, newest first.
    List {
        #[arg(long, default_value_t = 1000)]
        limit: i64,
    },
    /// Is this address suppressed? Exit 0 if so, 3 if not.
    Check { address: String },
}

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

#[derive(Debug, Subcommand)]
pub enum UnknownCommand {
    /// Messages whose outcome is unknown (DATA sent, no answer).
    List {
        #[arg(long, default_value_t = 1000)]
        limit: i64,
    },
    /// Decide what happened to messages with an unknown outcome (all or nothing).
    Resolve {
        #[arg(required = true)]
        ids: Vec<i64>,
        #[arg(long = "as", value_enum)]
        resolution: Resolution,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccountGroupCommand {
    /// Create or replace a group: its accounts in failover order. Messages take the
    /// list as it is when they are enqueued.
    Set {
        name: String,
        #[arg(required = true, value_delimiter = ',')]
        accounts: Vec<String>,
    },
    /// Remove a group (queued messages keep their list).
    Remove { name: String },
    /// List groups.
    List,
}

fn parse_window(s: &str) -> Result<(i32, i32), String> {
    let (n, secs) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: want N/SECONDS, e.g. 100/600"))?;
    let n = n
        .trim()
        .parse::<i32>()
        .map_err(|_| format!("{s:?}: N must be a number"))?;
    let secs = secs
        .trim()
        .parse::<i32>()
        .map_err(|_| format!("{s:?}: SECONDS must be a number"))?;
    Ok((n, secs))
}

fn utc(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "-".into())
}

fn cap(used: i64, cap: Option<i32>, factor: f64) -> String {
    match cap {
        None => "-".into(),
        Some(c) => {
            let eff = ((c as f64 * factor).floor() as i64).max(1);
            if eff < c as i64 {
                format!("{used}/{eff} (of {c})")
            } else {
                format!("{used}/{c}")
            }
        }
    }
}

/// The quota section of `dispatch-admin status` and `quota list`: JSON and text.
pub(crate) fn status_section(db: &mut postgres::Client) -> anyhow::Result<(Value, String)> {
    let quotas = quota::list(db)?;
    let throttles = quota::throttles(db)?;
    let held = quota::held(db)?;
    let unknown: i64 = db
        .query_one(
            "SELECT count(*) FROM mailrun.messages WHERE state = 'unknown'",
            &[],
        )?
        .get(0);
    let value = json!({
        "quotas": quotas, "throttles": throttles, "held": held, "unknown_outcome": unknown,
    });
    let mut s = String::new();
    if !quotas.is_empty() {
        s.push_str(&format!(
            "{:<8} {:<24} {:>14} {:>16} {:>16} {:>20}\n",
            "SCOPE", "KEY", "SECOND", "HOUR", "DAY", "WINDOW"
        ));
        for q in &quotas {
            let window = match q.caps.window {
                None => "-".to_string(),
                Some((limit, secs)) => {
                    format!("{} per {secs}s", cap(q.used_window, Some(limit), q.factor))
                }
            };
            s.push_str(&format!(
                "{:<8} {:<24} {:>14} {:>16} {:>16} {:>20}\n",
                q.scope.as_str(),
                q.key,
                cap(q.used_second, q.caps.per_second, q.factor),
                cap(q.used_hour, q.caps.per_hour, q.factor),
                cap(q.used_day, q.caps.per_day, q.factor),
                window
            ));
        }
    }
    for t in &throttles {
        s.push_str(&format!(
            "throttled: {} {} at {:.1}% of its caps, paused until {}; last answer {} {} {} ({} signals)\n",
            t.scope,
            t.key,
            t.factor * 100.0,
            utc(t.paused_until),
            t.last_code.map(|c| c.to_string()).unwrap_or_default(),
            t.last_enhanced.as_deref().unwrap_or(""),
            t.last_text.as_deref().unwrap_or(""),
            t.signals
        ));
    }
    for h in &held {
        s.push_str(&format!("{} message(s) {}\n", h.messages, h.reason));
    }
    if unknown > 0 {
        s.push_str(&format!(
            "{unknown} message(s) with an unknown outcome: see `dispatch-admin unknown list`\n"
        ));
    }
    Ok((value, s))
}

pub(crate) fn quota_cmd(
    db: &mut postgres::Client,
    cmd: QuotaCommand,
    out: Output,
) -> anyhow::Result<u8> {
    match cmd {
        QuotaCommand::Set {
            scope,
            key,
            per_second,
            per_hour,
            per_day,
            window,
        } => {
            let caps = Caps {
                per_second,
                per_hour,
                per_day,
                window,
            };
            quota::set(db, scope, &key, &caps)?;
            out.result(json!({"scope": scope, "key": key, "caps": caps}), || {
                format!("quota for {} {key} set", scope.as_str())
            });
        }
        QuotaCommand::Remove { scope, key } => {
            if !quota::remove(db, scope, &key)? {
                return Err(CliError::new(
                    EXIT_DATA,
                    format!("no quota for {} {key:?}", scope.as_str()),
                )
                .into());
            }
            out.result(json!({"scope": scope, "key": key, "removed": true}), || {
                format!("quota for {} {key} removed", scope.as_str())
            });
        }
        QuotaCommand::List => {
            let (value, text) = status_section(db)?;
            out.listing(value, || {
                if text.is_empty() {
                    "no quotas, throttles or held messages\n".into()
                } else {
                    text
                }
            });
        }
        QuotaCommand::Unthrottle { scope, key } => {
            let was = quota::unthrottle(db, &scope, &key)?;
            out.result(
                json!({"scope": scope, "key": key, "was_throttled": was}),
                || {
                    if was {
                        format!("{scope} {key} is no longer throttled")
                    } else {
                        format!("{scope} {key} was not throttled")
                    }
                },
            );
        }
        QuotaCommand::Settings {
            throttle_pause_seconds,
            throttle_max_pause_seconds,
            throttle_recover_seconds,
            throttle_min_factor,
            unknown_retry_after,
            unknown_review,
        } => {
            let mut s = quota::settings(db)?;
            let before = s.clone();
            if let Some(v) = throttle_pause_seconds {
                s.throttle_pause_seconds = v;
            }
            if let Some(v) = throttle_max_pause_seconds {
                s.throttle_max_pause_seconds = v;
            }
            if let Some(v) = throttle_recover_seconds {
                s.throttle_recover_seconds = v;
            }
            if let Some(v) = throttle_min_factor {
                s.throttle_min_factor = v;
            }
            if unknown_retry_after.is_some() {
                s.unknown_retry_after_seconds = unknown_retry_after;
            }
            if unknown_review {
                s.unknown_retry_after_seconds = None;
            }
            if s != before {
                quota::store_settings(db, &s)?;
            }
            out.listing(serde_json::to_value(&s)?, || {
                format!(
                    "throttle_pause_seconds      {}\nthrottle_max_pause_seconds  {}\n\
                     throttle_recover_seconds    {}\nthrottle_min_factor         {}\n\
                     unknown outcome             {}\n",
                    s.throttle_pause_seconds,
                    s.throttle_max_pause_seconds,
                    s.throttle_recover_seconds,
                    s.throttle_min_factor,
                    match s.unknown_retry_after_seconds {
                        Some(v) => format!("retried {v} s after the attempt"),
                        None => "left to an operator (dispatch-admin unknown)".into(),
                    }
                )
            });
        }
    }
    Ok(EXIT_OK)
}

pub(crate) fn suppress_cmd(
    db: &mut postgres::Client,
    cmd: SuppressCommand,
    out: Output,
) -> anyhow::Result<u8> {
    match cmd {
        SuppressCommand::Add { addresses, reason } => {
            let mut tx = db.transaction()?;
            let mut added = Vec::new();
            for a in &addresses {
                if suppression::add(&mut tx, a, &reason)? {
                    added.push(suppression::normalize(a)?);
                }
            }
            tx.commit()?;
            out.result(json!({"added": added}), || {
                format!("{} address(es) added", added.len())
            });
        }
        SuppressCommand::Remove { addresses } => {
            let mut tx = db.transaction()?;
            let mut removed = Vec::new();
            for a in &addresses {
                if suppression::remove(&mut tx, a)? {
                    removed.push(suppression::normalize(a)?);
                }
            }
            tx.commit()?;
            out.result(json!({"removed": removed}), || {
                format!("{} address(es) removed", removed.len())
            });
        }
        SuppressCommand::List { limit } => {
            let list = suppression::list(db, limit)?;
            out.listing(serde_json::to_value(&list)?, || {
                let mut s = format!(
                    "{:<40} {:<9} {:<20} {}\n",
                    "ADDRESS", "SOURCE", "SINCE", "REASON"
                );
                for e in &list {
                    s.push_str(&format!(
                        "{:<40} {:<9} {:<20} {}\n",
                        e.address,
                        e.source,
                        e.created_at.format("%Y-%m-%d %H:%M"),
                        e.reason
                    ));
                }
                s
            });
        }
        SuppressCommand::Check { address } => {
            let entry = suppression::get(db, &address)?;
            out.listing(json!({"suppressed": entry}), || match &entry {
                Some(e) => format!("{} is suppressed ({}: {})\n", e.address, e.source, e.reason),
                None => format!("{address} is not suppressed\n"),
            });
            if entry.is_none() {
                return Ok(crate::cli::EXIT_NO_WORK);
            }
        }
    }
    Ok(EXIT_OK)
}

pub(crate) fn reply_rule_cmd(
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

pub(crate) fn unknown_cmd(
    db: &mut postgres::Client,
    cmd: UnknownCommand,
    out: Output,
) -> anyhow::Result<u8> {
    match cmd {
        UnknownCommand::List { limit } => {
            let list = unknown::list(db, limit)?;
            out.listing(serde_json::to_value(&list)?, || {
                let mut s = format!(
                    "{:>8} {:<16} {:<23} {:<30} {}\n",
                    "ID", "ACCOUNT", "ATTEMPTED", "TO", "LAST ANSWER"
                );
                for m in &list {
                    s.push_str(&format!(
                        "{:>8} {:<16} {:<23} {:<30} {}\n",
                        m.id,
                        m.account,
                        utc(m.last_attempt_at),
                        m.to.join(", "),
                        m.last_text.as_deref().unwrap_or("-")
                    ));
                }
                s
            });
        }
        UnknownCommand::Resolve { ids, resolution } => {
            let mut tx = db.transaction()?;
            for &id in &ids {
                unknown::resolve(&mut tx, id, resolution)?;
            }
            tx.commit()?;
            out.result(json!({"resolved": ids, "as": resolution.as_str()}), || {
                format!(
                    "{} message(s) resolved as {}",
                    ids.len(),
                    resolution.as_str()
                )
            });
        }
    }
    Ok(EXIT_OK)
}

pub(crate) fn account_group_cmd(
    db: &mut postgres::Client,
    cmd: AccountGroupCommand,
    out: Output,
) -> anyhow::Result<u8> {
    match cmd {
        AccountGroupCommand::Set { name, accounts } => {
            quota::set_account_group(db, &name, &accounts)?;
            out.result(json!({"group": name, "accounts": accounts}), || {
                format!("account group {name} set: {}", accounts.join(", "))
            });
        }
        AccountGroupCommand::Remove { name } => {
            if !quota::remove_account_group(db, &name)? {
                return Err(CliError::new(EXIT_DATA, format!("no account group {name:?}")).into());
            }
            out.result(json!({"group": name, "removed": true}), || {
                format!("account group {name} removed")
            });
        }
        AccountGroupCommand::List => {
            let groups = quota::account_groups(db)?;
            out.listing(serde_json::to_value(&groups)?, || {
                groups
                    .iter()
                    .map(|g| format!("{:<24} {}\n", g.name, g.accounts.join(", ")))
                    .collect()
            });
        }
    }
    Ok(EXIT_OK)
}
