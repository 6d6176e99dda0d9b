//! Sending quotas and throttle feedback (docs/quotas.md).
//!
//! The caps live in `mailrun.quotas`; `mailrun.claim_batch` enforces them under a row
//! lock per quota, counting into per-bucket counters (`mailrun.quota_usage`). This module
//! edits the caps and reads what is used, who is throttled and what is held back.

use crate::dispatcher::typed::params;
use chrono::{DateTime, Utc};
use postgres::GenericClient;
use serde::Serialize;

use crate::cli::{CliError, EXIT_DATA};

/// What a quota limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// An SMTP account, by name.
    Account,
    /// A runner, by id.
    Runner,
    /// A recipient domain (exact, lowercase).
    Domain,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Account => "account",
            Scope::Runner => "runner",
            Scope::Domain => "domain",
        }
    }

    fn parse(s: &str) -> anyhow::Result<Scope> {
        Ok(match s {
            "account" => Scope::Account,
            "runner" => Scope::Runner,
            "domain" => Scope::Domain,
            other => anyhow::bail!("unknown quota scope {other:?} in the database"),
        })
    }
}

/// The caps of one scope; `None` = no cap of that kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Caps {
    pub per_second: Option<i32>,
    pub per_hour: Option<i32>,
    pub per_day: Option<i32>,
    /// Sliding window: (limit, seconds).
    pub window: Option<(i32, i32)>,
}

impl Caps {
    pub fn is_empty(&self) -> bool {
        self.per_second.is_none()
            && self.per_hour.is_none()
            && self.per_day.is_none()
            && self.window.is_none()
    }

    fn validate(&self) -> anyhow::Result<()> {
        let bad = |what: &str| CliError::new(EXIT_DATA, format!("{what} must be at least 1"));
        for (v, what) in [
            (self.per_second, "--per-second"),
            (self.per_hour, "--per-hour"),
            (self.per_day, "--per-day"),
        ] {
            if v.is_some_and(|v| v < 1) {
                return Err(bad(what).into());
            }
        }
        if let Some((limit, seconds)) = self.window {
            if limit < 1 {
                return Err(bad("the window limit").into());
            }
            if !(1..=604_800).contains(&seconds) {
                return Err(CliError::new(
                    EXIT_DATA,
                    "the window must be between 1 second and 7 days",
                )
                .into());
            }
        }
        if self.is_empty() {
            return Err(CliError::new(
                EXIT_DATA,
                "give at least one cap: --per-second, --per-hour, --per-day or --window",
            )
            .into());
        }
        Ok(())
    }
}

/// A quota with what is used of it now.
#[derive(Debug, Clone, Serialize)]
pub struct QuotaStatus {
    pub scope: Scope,
    pub key: String,
    pub caps: Caps,
    pub used_second: i64,
    pub used_hour: i64,
    pub used_day: i64,
    pub used_window: i64,
    /// Throttle factor in force (1 = not throttled); caps are scaled by it.
    pub factor: f64,
}

/// Throttle state of an account or domain.
#[derive(Debug, Clone, Serialize)]
pub struct Throttle {
    pub scope: String,
    pub key: String,
    /// In force now (recovered by the quiet periods since the last signal).
    pub factor: f64,
    pub paused_until: Option<DateTime<Utc>>,
    pub signals: i64,
    pub last_signal_at: Option<DateTime<Utc>>,
    pub last_code: Option<i32>,
    pub last_enhanced: Option<String>,
    pub last_text: Option<String>,
}

/// Messages held back, grouped by reason.
#[derive(Debug, Clone, Serialize)]
pub struct Held {
    pub reason: String,
    pub messages: i64,
    pub until: DateTime<Utc>,
}

/// The throttle and unknown-outcome rules (one row, `mailrun.quota_settings`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    pub throttle_pause_seconds: i32,
    pub throttle_max_pause_seconds: i32,
    pub throttle_recover_seconds: i32,
    pub throttle_min_factor: f64,
    /// None: messages with an unknown outcome wait for an operator.
    pub unknown_retry_after_seconds: Option<i32>,
}

fn validate_key(scope: Scope, key: &str) -> anyhow::Result<()> {
    let ok = (1..=253).contains(&key.len())
        && key
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && (scope != Scope::Domain || !key.bytes().any(|b| b.is_ascii_uppercase()));
    if ok {
        Ok(())
    } else {
        Err(CliError::new(EXIT_DATA, format!("invalid {} {key:?}", scope.as_str())).into())
    }
}

/// Sets (creates or replaces) the caps of a scope. An account or runner must exist.
pub fn set(c: &mut impl GenericClient, scope: Scope, key: &str, caps: &Caps) -> anyhow::Result<()> {
    let key = if scope == Scope::Domain {
        key.to_ascii_lowercase()
    } else {
        key.to_string()
    };
    validate_key(scope, &key)?;
    caps.validate()?;
    let exists_sql = match scope {
        Scope::Account => Some("SELECT 1 FROM mailrun.smtp_accounts WHERE name = $1"),
        Scope::Runner => Some("SELECT 1 FROM mailrun.runners WHERE id = $1"),
        Scope::Domain => None,
    };
    if let Some(sql) = exists_sql {
        if c.query_typed_opt(sql, &params(&[&key]))?.is_none() {
            return Err(CliError::new(EXIT_DATA, format!("no {} {key:?}", scope.as_str())).into());
        }
    }
    let (wl, ws) = caps.window.unzip();
    c.execute_typed(
        "INSERT INTO mailrun.quotas (scope, key, per_second, per_hour, per_day, window_limit,
                                     window_seconds)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (scope, key) DO UPDATE SET per_second = $3, per_hour = $4, per_day = $5,
             window_limit = $6, window_seconds = $7, updated_at = now()",
        &params(&[
            &scope.as_str(),
            &key,
            &caps.per_second,
            &caps.per_hour,
            &caps.per_day,
            &wl,
            &ws,
        ]),
    )?;
    Ok(())
}

/// Removes the caps of a scope (its counters go with it); false when there were none.
pub fn remove(c: &mut impl GenericClient, scope: Scope, key: &str) -> anyhow::Result<bool> {
    Ok(c.execute_typed(
        "DELETE FROM mailrun.quotas WHERE scope = $1 AND key = $2",
        &params(&[&scope.as_str(), &key]),
    )? > 0)
}

/// Every quota with its use now. Given-back reservations not yet folded into the
/// counters (the next claim does that) are subtracted here.
pub fn list(c: &mut impl GenericClient) -> anyhow::Result<Vec<QuotaStatus>> {
    let rows = c.query_typed(
        "SELECT q.scope, q.key, q.per_second, q.per_hour, q.per_day, q.window_limit,
                q.window_seconds, k.second, k.hour, k.day, k.win,
                CASE WHEN q.scope = 'runner' THEN 1.0
                     ELSE mailrun.throttle_factor(q.scope, q.key) END
         FROM mailrun.quotas q
         CROSS JOIN LATERAL (
             SELECT
               (SELECT coalesce(sum(u.used), 0) FROM mailrun.quota_usage u WHERE u.quota_id = q.id
                  AND u.kind = 'second' AND u.bucket = mailrun.quota_bucket('second', now(), NULL))
               - (SELECT count(*) FROM mailrun.quota_releases r WHERE r.quota_id = q.id
                  AND mailrun.quota_bucket('second', r.at, NULL) = mailrun.quota_bucket('second', now(), NULL))
                 AS second,
               (SELECT coalesce(sum(u.used), 0) FROM mailrun.quota_usage u WHERE u.quota_id = q.id
                  AND u.kind = 'hour' AND u.bucket = mailrun.quota_bucket('hour', now(), NULL))
               - (SELECT count(*) FROM mailrun.quota_releases r WHERE r.quota_id = q.id
                  AND mailrun.quota_bucket('hour', r.at, NULL) = mailrun.quota_bucket('hour', now(), NULL))
                 AS hour,
               (SELECT coalesce(sum(u.used), 0) FROM mailrun.quota_usage u WHERE u.quota_id = q.id
                  AND u.kind = 'day' AND u.bucket = mailrun.quota_bucket('day', now(), NULL))
               - (SELECT count(*) FROM mailrun.quota_releases r WHERE r.quota_id = q.id
                  AND mailrun.quota_bucket('day', r.at, NULL) = mailrun.quota_bucket('day', now(), NULL))
                 AS day,
               (SELECT coalesce(sum(u.used), 0) FROM mailrun.quota_usage u WHERE u.quota_id = q.id
                  AND u.kind = 'window' AND u.bucket > now() - make_interval(secs =>
                      coalesce(q.window_seconds, 0) + mailrun.window_bucket_seconds(q.window_seconds)))
               - (SELECT count(*) FROM mailrun.quota_releases r WHERE r.quota_id = q.id
                  AND q.window_seconds IS NOT NULL
                  AND mailrun.quota_bucket('window', r.at, q.window_seconds) > now() - make_interval(
                      secs => q.window_seconds + mailrun.window_bucket_seconds(q.window_seconds)))
                 AS win) k
         ORDER BY q.scope, q.key",
        &[],
    )?;
    rows.iter()
        .map(|r| {
            let wl: Option<i32> = r.get(5);
            let ws: Option<i32> = r.get(6);
            let used = |i: usize| r.get::<_, i64>(i).max(0);
            Ok(QuotaStatus {
                scope: Scope::parse(r.get(0))?,
                key: r.get(1),
                caps: Caps {
                    per_second: r.get(2),
                    per_hour: r.get(3),
                    per_day: r.get(4),
                    window: wl.zip(ws),
                },
                used_second: used(7),
                used_hour: used(8),
                used_day: used(9),
                used_window: used(10),
                factor: r.get(11),
            })
        })
        .collect()
}

/// Throttled accounts and domains (also those recovered, until their factor is back at 1).
pub fn throttles(c: &mut impl GenericClient) -> anyhow::Result<Vec<Throttle>> {
    let rows = c.query_typed(
        "SELECT scope, key, mailrun.throttle_factor(scope, key), paused_until, signals,
                last_signal_at, last_code, last_enhanced, last_text
         FROM mailrun.throttles
         WHERE paused_until > now() OR mailrun.throttle_factor(scope, key) < 1
         ORDER BY scope, key",
        &[],
    )?;
    Ok(rows
        .iter()
        .map(|r| Throttle {
            scope: r.get(0),
            key: r.get(1),
            factor: r.get(2),
            paused_until: r.get(3),
            signals: r.get(4),
            last_signal_at: r.get(5),
            last_code: r.get(6),
            last_enhanced: r.get(7),
            last_text: r.get(8),
        })
        .collect())
}

/// Forgets the throttle state of an account or domain; false when it had none.
pub fn unthrottle(c: &mut impl GenericClient, scope: &str, key: &str) -> anyhow::Result<bool> {
    Ok(c.execute_typed(
        "DELETE FROM mailrun.throttles WHERE scope = $1 AND key = $2",
        &params(&[&scope, &key]),
    )? > 0)
}

/// Queued or deferred messages a quota or throttle holds back now, by reason.
pub fn held(c: &mut impl GenericClient) -> anyhow::Result<Vec<Held>> {
    let rows = c.query_typed(
        "SELECT held_reason, count(*), min(held_until) FROM mailrun.messages
         WHERE state IN ('queued', 'deferred') AND held_until > now()
           AND held_reason IS NOT NULL
         GROUP BY held_reason ORDER BY min(held_until), held_reason LIMIT 50",
        &[],
    )?;
    Ok(rows
        .iter()
        .map(|r| Held {
            reason: r.get(0),
            messages: r.get(1),
            until: r.get(2),
        })
        .collect())
}

pub fn settings(c: &mut impl GenericClient) -> anyhow::Result<Settings> {
    let r = c.query_typed_one(
        "SELECT throttle_pause_seconds, throttle_max_pause_seconds, throttle_recover_seconds,
                throttle_min_factor, unknown_retry_after_seconds FROM mailrun.quota_settings",
        &[],
    )?;
    Ok(Settings {
        throttle_pause_seconds: r.get(0),
        throttle_max_pause_seconds: r.get(1),
        throttle_recover_seconds: r.get(2),
        throttle_min_factor: r.get(3),
        unknown_retry_after_seconds: r.get(4),
    })
}

pub fn store_settings(c: &mut impl GenericClient, s: &Settings) -> anyhow::Result<()> {
    let positive = [
        s.throttle_pause_seconds,
        s.throttle_max_pause_seconds,
        s.throttle_recover_seconds,
    ];
    if positive.iter().any(|v| *v < 1) || s.unknown_retry_after_seconds.is_some_and(|v| v < 1) {
        return Err(CliError::new(EXIT_DATA, "durations must be at least 1 second").into());
    }
    if !(s.throttle_min_factor > 0.0 && s.throttle_min_factor <= 1.0) {
        return Err(CliError::new(
            EXIT_DATA,
            "the minimum throttle factor must be above 0 and at most 1",
        )
        .into());
    }
    c.execute_typed(
        "UPDATE mailrun.quota_settings SET throttle_pause_seconds = $1,
                throttle_max_pause_seconds = $2, throttle_recover_seconds = $3,
                throttle_min_factor = $4, unknown_retry_after_seconds = $5",
        &params(&[
            &s.throttle_pause_seconds,
            &s.throttle_max_pause_seconds,
            &s.throttle_recover_seconds,
            &s.throttle_min_factor,
            &s.unknown_retry_after_seconds,
        ]),
    )?;
    Ok(())
}

/// Disables or enables an SMTP account for claims (failover skips a disabled one).
pub fn set_account_enabled(
    c: &mut impl GenericClient,
    name: &str,
    enabled: bool,
) -> anyhow::Result<()> {
    if c.execute_typed(
        "UPDATE mailrun.smtp_accounts SET enabled = $2 WHERE name = $1",
        &params(&[&name, &enabled]),
    )? == 0
    {
        return Err(CliError::new(EXIT_DATA, format!("no account {name:?}")).into());
    }
    Ok(())
}

/// A named failover list of SMTP accounts.
#[derive(Debug, Clone, Serialize)]
pub struct AccountGroup {
    pub name: String,
    pub accounts: Vec<String>,
}

/// Creates or replaces a group; every account must exist, none twice.
pub fn set_account_group(
    c: &mut impl GenericClient,
    name: &str,
    accounts: &[String],
) -> anyhow::Result<()> {
    crate::dispatcher::accounts::validate_name(name)?;
    if accounts.is_empty() {
        return Err(CliError::new(EXIT_DATA, "a group needs at least one account").into());
    }
    for (i, a) in accounts.iter().enumerate() {
        if accounts[..i].contains(a) {
            return Err(CliError::new(EXIT_DATA, format!("account {a:?} is named twice")).into());
        }
        if c.query_typed_opt(
            "SELECT 1 FROM mailrun.smtp_accounts WHERE name = $1",
            &params(&[a]),
        )?
        .is_none()
        {
            return Err(CliError::new(EXIT_DATA, format!("no account {a:?}")).into());
        }
    }
    c.execute_typed(
        "INSERT INTO mailrun.account_groups (name, accounts) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET accounts = $2, updated_at = now()",
        &params(&[&name, &accounts]),
    )?;
    Ok(())
}

/// Removes a group (messages already enqueued keep their list); false if none.
pub fn remove_account_group(c: &mut impl GenericClient, name: &str) -> anyhow::Result<bool> {
    Ok(c.execute_typed(
        "DELETE FROM mailrun.account_groups WHERE name = $1",
        &params(&[&name]),
    )? > 0)
}

pub fn account_groups(c: &mut impl GenericClient) -> anyhow::Result<Vec<AccountGroup>> {
    Ok(c.query_typed(
        "SELECT name, accounts FROM mailrun.account_groups ORDER BY name",
        &[],
    )?
    .iter()
    .map(|r| AccountGroup {
        name: r.get(0),
        accounts: r.get(1),
    })
    .collect())
}
