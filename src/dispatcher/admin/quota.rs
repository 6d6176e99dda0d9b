//! `dispatch-admin quota`: sending caps and throttle state.

use clap::Subcommand;
use serde_json::{json, Value};

use crate::cli::{CliError, EXIT_DATA, EXIT_OK};
use crate::dispatcher::queue::MessageState;
use crate::dispatcher::quota::{self, Caps, Scope};
use crate::dispatcher::stats;

use super::output::*;

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

pub(super) fn parse_window(s: &str) -> Result<(i32, i32), String> {
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

pub(super) fn cap(used: i64, cap: Option<i32>, factor: f64) -> String {
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
pub(super) fn status_section(db: &mut postgres::Client) -> anyhow::Result<(Value, String)> {
    let quotas = quota::list(db)?;
    let throttles = quota::throttles(db)?;
    let held = quota::held(db)?;
    let unknown = stats::count_in_state(db, MessageState::Unknown)?;
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

pub(super) fn quota_cmd(
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
