//! `runner.toml`: the runner's identity, dispatcher, key and pushed settings.
//!
//! The file holds the signing key, so it is written with mode 0600 from creation and
//! every command refuses to start when it is readable by group or others.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::cli::{CliError, EXIT_CONFIG};
use crate::protocol::reply_rules;
use crate::protocol::sign::SigningKey;
use crate::protocol::{ReplyAction, ReplyRule, ReplyThrottle, RunnerSettings, SoftwareUpdate};
use crate::runner::state::{write_atomic, StateDir};
use crate::smtp::SmtpOptions;

/// The whole `runner.toml`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunnerConfig {
    pub runner_id: String,
    pub dispatcher_url: String,
    pub key_id: String,
    /// 64 lowercase hex characters.
    pub key: String,
    /// The key being rotated out, still accepted on inbound requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_key: Option<String>,
    /// Allow plain http:// to a non-loopback dispatcher (off: only https or loopback).
    #[serde(default)]
    pub allow_plain_http: bool,
    /// Extra trusted root certificates (PEM file) for SMTP servers with a private CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_ca_file: Option<PathBuf>,
    /// A disabled runner answers JobRunnerReady with "disabled" and does not poll.
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub settings: Settings,
}

fn yes() -> bool {
    true
}

impl std::fmt::Debug for RunnerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerConfig")
            .field("runner_id", &self.runner_id)
            .field("dispatcher_url", &self.dispatcher_url)
            .field("key_id", &self.key_id)
            .field("key", &"<redacted>")
            .field("previous_key_id", &self.previous_key_id)
            .field("allow_plain_http", &self.allow_plain_http)
            .field("smtp_ca_file", &self.smtp_ca_file)
            .field("enabled", &self.enabled)
            .field("settings", &self.settings)
            .finish()
    }
}

use crate::protocol::limits::{
    DEFAULT_MAX_SESSIONS, DEFAULT_MAX_SESSIONS_PER_ACCOUNT, MAX_CONNECTIONS as MAX_SESSIONS_LIMIT,
};

/// Settings pushed by JobRunnerConfigUpdate, with the version they came with
/// (0 until the first push; then only increasing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub version: i64,
    pub batch_size: u32,
    pub send_rate_per_second: f64,
    pub smtp_connect_timeout_seconds: u32,
    pub smtp_command_timeout_seconds: u32,
    pub smtp_data_timeout_seconds: u32,
    pub poll_interval_seconds: u32,
    pub lease_safety_margin_seconds: u32,
    /// SMTP sessions this runner keeps busy at once, over all accounts.
    pub max_sessions: u32,
    /// Sessions to one SMTP account at once, unless the account says fewer or more.
    pub max_sessions_per_account: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub software_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub software_sha256: Option<String>,
    /// The reply policy last pushed (`None`: never pushed, no rules). Last in the struct:
    /// TOML writes arrays of tables after plain values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_policy: Option<Vec<StoredRule>>,
}

/// One reply rule as `runner.toml` stores it (`[[settings.reply_policy]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredRule {
    pub position: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enhanced: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    pub action: String,
    pub throttle: String,
}

impl StoredRule {
    pub fn from_protocol(r: &ReplyRule) -> StoredRule {
        StoredRule {
            position: r.position,
            code: r.code.clone(),
            enhanced: r.enhanced.clone(),
            pattern: r.pattern.clone(),
            domain: r.domain.clone(),
            account: r.account.clone(),
            action: r.action.as_str().to_string(),
            throttle: r.throttle.as_str().to_string(),
        }
    }

    pub fn to_protocol(&self) -> Result<ReplyRule, String> {
        Ok(ReplyRule {
            position: self.position,
            code: self.code.clone(),
            enhanced: self.enhanced.clone(),
            pattern: self.pattern.clone(),
            domain: self.domain.clone(),
            account: self.account.clone(),
            action: ReplyAction::parse(&self.action).ok_or_else(|| {
                format!(
                    "reply rule at position {}: action {:?} is not one of retry, \
                     another_account, suppress, fail",
                    self.position, self.action
                )
            })?,
            throttle: ReplyThrottle::parse(&self.throttle).ok_or_else(|| {
                format!(
                    "reply rule at position {}: throttle {:?} is not one of none, account, domain",
                    self.position, self.throttle
                )
            })?,
        })
    }
}

impl Default for Settings {
    /// Before the first push: the protocol's defaults ([`RunnerSettings::defaults`]).
    fn default() -> Self {
        let d = RunnerSettings::defaults();
        Settings {
            version: 0,
            batch_size: d.batch_size,
            send_rate_per_second: d.send_rate_per_second,
            smtp_connect_timeout_seconds: d.smtp_connect_timeout_seconds,
            smtp_command_timeout_seconds: d.smtp_command_timeout_seconds,
            smtp_data_timeout_seconds: d.smtp_data_timeout_seconds,
            poll_interval_seconds: d.poll_interval_seconds,
            lease_safety_margin_seconds: d.lease_safety_margin_seconds,
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_sessions_per_account: DEFAULT_MAX_SESSIONS_PER_ACCOUNT,
            software_version: None,
            software_url: None,
            software_sha256: None,
            reply_policy: None,
        }
    }
}

impl Settings {
    /// The stored reply policy as protocol rules (empty when none was pushed).
    pub fn reply_rules(&self) -> Result<Vec<ReplyRule>, String> {
        self.reply_policy
            .iter()
            .flatten()
            .map(StoredRule::to_protocol)
            .collect()
    }

    fn smtp_options(&self) -> SmtpOptions {
        SmtpOptions {
            connect_timeout: Duration::from_secs(self.smtp_connect_timeout_seconds.into()),
            command_timeout: Duration::from_secs(self.smtp_command_timeout_seconds.into()),
            data_timeout: Duration::from_secs(self.smtp_data_timeout_seconds.into()),
            hello_name: None,
            extra_roots_pem: None,
        }
    }

    /// Checks every value; the message names the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        let range = |name: &str, v: u32, lo: u32, hi: u32| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name} = {v} is outside {lo}..={hi}"))
            }
        };
        if self.version < 0 {
            return Err(format!("version = {} is negative", self.version));
        }
        range("batch_size", self.batch_size, 1, 10_000)?;
        if !self.send_rate_per_second.is_finite()
            || !(0.0..=100_000.0).contains(&self.send_rate_per_second)
        {
            return Err(format!(
                "send_rate_per_second = {} must be between 0 (unlimited) and 100000",
                self.send_rate_per_second
            ));
        }
        range(
            "smtp_connect_timeout_seconds",
            self.smtp_connect_timeout_seconds,
            1,
            600,
        )?;
        range(
            "smtp_command_timeout_seconds",
            self.smtp_command_timeout_seconds,
            1,
            3600,
        )?;
        range(
            "smtp_data_timeout_seconds",
            self.smtp_data_timeout_seconds,
            1,
            3600,
        )?;
        range(
            "poll_interval_seconds",
            self.poll_interval_seconds,
            1,
            86_400,
        )?;
        range(
            "lease_safety_margin_seconds",
            self.lease_safety_margin_seconds,
            0,
            86_400,
        )?;
        range("max_sessions", self.max_sessions, 1, MAX_SESSIONS_LIMIT)?;
        range(
            "max_sessions_per_account",
            self.max_sessions_per_account,
            1,
            MAX_SESSIONS_LIMIT,
        )?;
        if let Some(sha) = &self.software_sha256 {
            if sha.len() != 64 || !sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return Err("software sha256 must be 64 lowercase hex characters".into());
            }
        }
        if let Some(url) = &self.software_url {
            validate_url("software url", url, false)?;
        }
        reply_rules::check_policy(&self.reply_rules()?)?;
        Ok(())
    }
}

/// Checks a dispatcher or download URL: http(s), a host, no spaces.
pub fn validate_url(what: &str, url: &str, allow_plain_http: bool) -> Result<(), String> {
    let rest = if let Some(rest) = url.strip_prefix("https://") {
        rest
    } else if let Some(rest) = url.strip_prefix("http://") {
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
        let bare = if host.starts_with('[') {
            host.split(']').next().unwrap_or("").trim_start_matches('[')
        } else {
            host.split(':').next().unwrap_or("")
        };
        let loopback = bare == "localhost"
            || bare
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !loopback && !allow_plain_http {
            return Err(format!(
                "{what} {url:?} is plain http to a non-loopback host: use https, or opt in with \
                 `runner-admin init --allow-plain-http` (allow_plain_http = true in runner.toml)"
            ));
        }
        rest
    } else {
        return Err(format!(
            "{what} {url:?} must start with https:// or http://"
        ));
    };
    if rest.is_empty()
        || rest.starts_with('/')
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!("{what} {url:?} is not a valid URL"));
    }
    Ok(())
}

impl RunnerConfig {
    /// Applies a pushed update (already checked to have a higher version).
    pub fn apply_update(&mut self, version: i64, s: &RunnerSettings) -> Result<(), String> {
        let software: Option<&SoftwareUpdate> = s.software.as_ref();
        let next = Settings {
            version,
            batch_size: s.batch_size,
            send_rate_per_second: s.send_rate_per_second,
            smtp_connect_timeout_seconds: s.smtp_connect_timeout_seconds,
            smtp_command_timeout_seconds: s.smtp_command_timeout_seconds,
            smtp_data_timeout_seconds: s.smtp_data_timeout_seconds,
            poll_interval_seconds: s.poll_interval_seconds,
            lease_safety_margin_seconds: s.lease_safety_margin_seconds,
            // An update without them (an older dispatcher) keeps the values in force.
            max_sessions: s.max_sessions.unwrap_or(self.settings.max_sessions),
            max_sessions_per_account: s
                .max_sessions_per_account
                .unwrap_or(self.settings.max_sessions_per_account),
            software_version: software.map(|u| u.version.clone()),
            software_url: software.map(|u| u.url.clone()),
            software_sha256: software.map(|u| u.sha256.clone()),
            // An update without a policy (an older dispatcher) keeps the one in force.
            reply_policy: match &s.reply_policy {
                Some(rules) => Some(rules.iter().map(StoredRule::from_protocol).collect()),
                None => self.settings.reply_policy.clone(),
            },
        };
        next.validate()?;
        let url = if s.dispatcher_url.is_empty() {
            self.dispatcher_url.clone()
        } else {
            validate_url("dispatcher_url", &s.dispatcher_url, self.allow_plain_http)?;
            s.dispatcher_url.clone()
        };
        self.settings = next;
        self.dispatcher_url = url;
        Ok(())
    }

    /// SMTP timeouts from the pushed settings and the extra CA file, if any.
    pub fn smtp_options(&self) -> Result<SmtpOptions> {
        let mut options = self.settings.smtp_options();
        if let Some(path) = &self.smtp_ca_file {
            let pem = fs::read(path).map_err(|e| {
                CliError::new(
                    EXIT_CONFIG,
                    format!("cannot read smtp_ca_file {}: {e}", path.display()),
                )
            })?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                return Err(CliError::new(
                    EXIT_CONFIG,
                    format!("smtp_ca_file {} holds no PEM certificate", path.display()),
                )
                .into());
            }
            options.extra_roots_pem = Some(pem);
        }
        Ok(options)
    }

    /// The signing key used for outbound requests.
    pub fn signing_key(&self) -> Result<SigningKey> {
        parse_key(&self.key_id, &self.key)
    }

    /// Every key accepted on inbound requests: current first, then the previous one.
    pub fn accepted_keys(&self) -> Result<Vec<SigningKey>> {
        let mut keys = vec![self.signing_key()?];
        if let (Some(id), Some(hex)) = (&self.previous_key_id, &self.previous_key) {
            keys.push(parse_key(id, hex)?);
        }
        Ok(keys)
    }

    /// Checks identity fields; used by `init` and on every load.
    pub fn validate(&self) -> Result<(), String> {
        let ident = |what: &str, v: &str| {
            if v.is_empty()
                || v.len() > 128
                || !v
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
            {
                Err(format!(
                    "{what} {v:?} must be 1-128 characters of letters, digits, - _ . @"
                ))
            } else {
                Ok(())
            }
        };
        ident("runner_id", &self.runner_id)?;
        ident("key_id", &self.key_id)?;
        check_key_hex(&self.key)?;
        match (&self.previous_key_id, &self.previous_key) {
            (Some(id), Some(key)) => {
                ident("previous_key_id", id)?;
                check_key_hex(key)?;
            }
            (None, None) => {}
            _ => return Err("previous_key_id and previous_key go together".into()),
        }
        validate_url(
            "dispatcher_url",
            &self.dispatcher_url,
            self.allow_plain_http,
        )?;
        self.settings.validate()
    }

    /// Reads `runner.toml`, refusing a file that group or others can read.
    pub fn load(state: &StateDir) -> Result<RunnerConfig> {
        let path = state.config_path();
        let config_err = |msg: String| CliError::new(EXIT_CONFIG, msg);
        let meta = fs::metadata(&path).map_err(|e| {
            config_err(format!(
                "cannot read {}: {e} (create it with `runner-admin init`)",
                path.display()
            ))
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(config_err(format!(
                "{} is readable by group or others (mode {mode:04o}); it holds the signing key: run `chmod 600 {}`",
                path.display(),
                path.display()
            ))
            .into());
        }
        let text = fs::read_to_string(&path)
            .map_err(|e| config_err(format!("cannot read {}: {e}", path.display())))?;
        // toml's errors quote the offending line, which may hold the key: keep only the
        // position and the reason.
        let config: RunnerConfig = toml::from_str(&text).map_err(|e| {
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!(" at line {line}")
                })
                .unwrap_or_default();
            config_err(format!(
                "{} is invalid{at}: {}",
                path.display(),
                e.message()
            ))
        })?;
        config
            .validate()
            .map_err(|e| config_err(format!("{} is invalid: {e}", path.display())))?;
        Ok(config)
    }

    /// Writes `runner.toml` atomically with mode 0600.
    pub fn save(&self, state: &StateDir) -> Result<()> {
        let text = toml::to_string(self).context("cannot serialise runner.toml")?;
        write_atomic(&state.config_path(), text.as_bytes(), 0o600)
    }
}

fn check_key_hex(hex_key: &str) -> Result<(), String> {
    if hex_key.len() == 64
        && hex_key
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        Ok(())
    } else {
        Err("key must be 64 lowercase hex characters (32 bytes)".into())
    }
}

fn parse_key(key_id: &str, hex_key: &str) -> Result<SigningKey> {
    check_key_hex(hex_key).map_err(|e| CliError::new(EXIT_CONFIG, e))?;
    let mut secret = [0u8; 32];
    hex::decode_to_slice(hex_key, &mut secret)
        .map_err(|_| CliError::new(EXIT_CONFIG, "key is not valid hex"))?;
    Ok(SigningKey {
        key_id: key_id.to_string(),
        secret,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RunnerConfig {
        RunnerConfig {
            runner_id: "r1".into(),
            dispatcher_url: "http://127.0.0.1:8080/cgi-bin/dispatch-cgi".into(),
            key_id: "k1".into(),
            key: "ab".repeat(32),
            previous_key_id: None,
            previous_key: None,
            allow_plain_http: false,
            smtp_ca_file: None,
            enabled: true,
            settings: Settings::default(),
        }
    }

    #[test]
    fn round_trips_and_hides_key_in_debug() {
        let c = sample();
        c.validate().unwrap();
        let text = toml::to_string(&c).unwrap();
        let back: RunnerConfig = toml::from_str(&text).unwrap();
        assert_eq!(back.settings, c.settings);
        assert!(!format!("{c:?}").contains(&"ab".repeat(32)));
    }

    #[test]
    fn plain_http_needs_loopback_or_opt_in() {
        assert!(validate_url("u", "http://127.0.0.1:8/x", false).is_ok());
        assert!(validate_url("u", "http://[::1]:8/x", false).is_ok());
        assert!(validate_url("u", "http://example.com/x", false).is_err());
        assert!(validate_url("u", "http://example.com/x", true).is_ok());
        assert!(validate_url("u", "https://example.com/x", false).is_ok());
        assert!(validate_url("u", "ftp://example.com/x", true).is_err());
        assert!(validate_url("u", "https://", true).is_err());
    }

    #[test]
    fn bad_settings_are_named() {
        let mut s = Settings {
            batch_size: 0,
            ..Settings::default()
        };
        assert!(s.validate().unwrap_err().contains("batch_size"));
        s.batch_size = 1;
        s.send_rate_per_second = f64::NAN;
        assert!(s.validate().unwrap_err().contains("send_rate"));
    }
}
