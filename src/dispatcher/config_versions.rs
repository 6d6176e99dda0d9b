//! The settings pushed to runners: versions in `mailrun.config_versions` (JSON, one row
//! per version; versions only increase), the keys `push-config set` takes and their
//! checks, and the JobRunnerConfigUpdate a version becomes (with the reply policy as it is
//! when pushed).

use crate::dispatcher::typed::params;
use anyhow::Context;
use postgres::GenericClient;
use serde::{Deserialize, Serialize};

use crate::cli::{CliError, EXIT_DATA, EXIT_USAGE};
use crate::dispatcher::reply_policy;
use crate::protocol::limits::{
    DEFAULT_MAX_SESSIONS, DEFAULT_MAX_SESSIONS_PER_ACCOUNT, MAX_CONNECTIONS,
};
use crate::protocol::reply_rules;
use crate::protocol::{
    Body, JobRunnerConfigUpdate, ReplyAction, ReplyRule, ReplyThrottle, RunnerSettings,
    SoftwareUpdate,
};

/// Settings as stored in `mailrun.config_versions.settings` (JSON). The keys are the ones
/// `push-config set` takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredSettings {
    pub batch_size: u32,
    pub send_rate_per_second: f64,
    pub smtp_connect_timeout_seconds: u32,
    pub smtp_command_timeout_seconds: u32,
    pub smtp_data_timeout_seconds: u32,
    pub poll_interval_seconds: u32,
    pub lease_safety_margin_seconds: u32,
    pub dispatcher_url: String,
    /// Versions stored before these existed read as the defaults.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: u32,
    #[serde(default = "default_max_sessions_per_account")]
    pub max_sessions_per_account: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_sha256: Option<String>,
    /// The PHP runner's file for the same `software_version`, offered to runners that
    /// report a `-php` software version (docs/runner.md, "The PHP runner").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub php_software_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub php_software_sha256: Option<String>,
}

/// What a PHP runner appends to the software version it reports.
pub const PHP_RUNNER_SUFFIX: &str = "-php";

fn default_max_sessions() -> u32 {
    DEFAULT_MAX_SESSIONS
}

fn default_max_sessions_per_account() -> u32 {
    DEFAULT_MAX_SESSIONS_PER_ACCOUNT
}

impl StoredSettings {
    /// The starting point of the first version ([`RunnerSettings::defaults`]).
    pub fn defaults() -> StoredSettings {
        let d = RunnerSettings::defaults();
        StoredSettings {
            batch_size: d.batch_size,
            send_rate_per_second: d.send_rate_per_second,
            smtp_connect_timeout_seconds: d.smtp_connect_timeout_seconds,
            smtp_command_timeout_seconds: d.smtp_command_timeout_seconds,
            smtp_data_timeout_seconds: d.smtp_data_timeout_seconds,
            poll_interval_seconds: d.poll_interval_seconds,
            lease_safety_margin_seconds: d.lease_safety_margin_seconds,
            dispatcher_url: d.dispatcher_url,
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_sessions_per_account: DEFAULT_MAX_SESSIONS_PER_ACCOUNT,
            software_version: None,
            software_url: None,
            software_sha256: None,
            php_software_url: None,
            php_software_sha256: None,
        }
    }

    /// Applies one `key=value`; the value is checked, the key must be known.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let value = value.trim();
        match key {
            "batch_size" => self.batch_size = parse_range(key, value, 1, 10_000)?,
            "send_rate_per_second" => {
                let rate: f64 = value
                    .parse()
                    .map_err(|_| format!("{key}: {value:?} is not a number"))?;
                if !rate.is_finite() || !(0.0..=10_000.0).contains(&rate) {
                    return Err(format!("{key}: {value} is outside 0..=10000"));
                }
                self.send_rate_per_second = rate;
            }
            "smtp_connect_timeout_seconds" => {
                self.smtp_connect_timeout_seconds = parse_range(key, value, 1, 600)?
            }
            "smtp_command_timeout_seconds" => {
                self.smtp_command_timeout_seconds = parse_range(key, value, 1, 3600)?
            }
            "smtp_data_timeout_seconds" => {
                self.smtp_data_timeout_seconds = parse_range(key, value, 1, 3600)?
            }
            "poll_interval_seconds" => {
                self.poll_interval_seconds = parse_range(key, value, 1, 86_400)?
            }
            "lease_safety_margin_seconds" => {
                self.lease_safety_margin_seconds = parse_range(key, value, 0, 3600)?
            }
            "dispatcher_url" => self.dispatcher_url = check_url(key, value)?,
            "max_sessions" => self.max_sessions = parse_range(key, value, 1, MAX_CONNECTIONS)?,
            "max_sessions_per_account" => {
                self.max_sessions_per_account = parse_range(key, value, 1, MAX_CONNECTIONS)?
            }
            "software_version" => {
                if value.is_empty() {
                    self.software_version = None;
                    self.software_url = None;
                    self.software_sha256 = None;
                    self.php_software_url = None;
                    self.php_software_sha256 = None;
                } else {
                    self.software_version = Some(check_version(key, value)?);
                }
            }
            "software_url" => {
                self.software_url = if value.is_empty() {
                    None
                } else {
                    Some(check_url(key, value)?)
                }
            }
            "software_sha256" => {
                self.software_sha256 = if value.is_empty() {
                    None
                } else {
                    Some(check_sha256(key, value)?)
                }
            }
            "php_software_url" => {
                self.php_software_url = if value.is_empty() {
                    None
                } else {
                    Some(check_url(key, value)?)
                }
            }
            "php_software_sha256" => {
                self.php_software_sha256 = if value.is_empty() {
                    None
                } else {
                    Some(check_sha256(key, value)?)
                }
            }
            other => {
                return Err(format!(
                    "unknown setting {other:?} (see push-config --help for the keys)"
                ))
            }
        }
        Ok(())
    }

    /// Checks the whole set: every value in range and the software triple complete.
    pub fn validate(&self) -> Result<(), String> {
        let mut copy = self.clone();
        let checks: [(&str, String); 10] = [
            ("batch_size", self.batch_size.to_string()),
            (
                "send_rate_per_second",
                self.send_rate_per_second.to_string(),
            ),
            (
                "smtp_connect_timeout_seconds",
                self.smtp_connect_timeout_seconds.to_string(),
            ),
            (
                "smtp_command_timeout_seconds",
                self.smtp_command_timeout_seconds.to_string(),
            ),
            (
                "smtp_data_timeout_seconds",
                self.smtp_data_timeout_seconds.to_string(),
            ),
            (
                "poll_interval_seconds",
                self.poll_interval_seconds.to_string(),
            ),
            (
                "lease_safety_margin_seconds",
                self.lease_safety_margin_seconds.to_string(),
            ),
            ("dispatcher_url", self.dispatcher_url.clone()),
            ("max_sessions", self.max_sessions.to_string()),
            (
                "max_sessions_per_account",
                self.max_sessions_per_account.to_string(),
            ),
        ];
        for (key, value) in checks {
            if key == "dispatcher_url" && value.is_empty() {
                return Err(
                    "dispatcher_url is not set: add dispatcher_url=https://.../cgi-bin/dispatch-cgi"
                        .to_string(),
                );
            }
            copy.set(key, &value)?;
        }
        match (
            &self.software_version,
            &self.php_software_url,
            &self.php_software_sha256,
        ) {
            (_, None, None) => {}
            (Some(_), Some(u), Some(h)) => {
                check_url("php_software_url", u)?;
                check_sha256("php_software_sha256", h)?;
            }
            _ => {
                return Err(
                    "php_software_url and php_software_sha256 go together, with \
                            software_version"
                        .to_string(),
                )
            }
        }
        match (
            &self.software_version,
            &self.software_url,
            &self.software_sha256,
        ) {
            (None, None, None) => Ok(()),
            (Some(v), Some(u), Some(h)) => {
                check_version("software_version", v)?;
                check_url("software_url", u)?;
                check_sha256("software_sha256", h)?;
                Ok(())
            }
            _ => Err(
                "software_version, software_url and software_sha256 must be set together"
                    .to_string(),
            ),
        }
    }

    /// The settings for a PHP runner: the PHP file instead of the tar.gz, announced as
    /// `VERSION-php` (nothing when no PHP file is announced).
    pub fn to_protocol_for_php(&self) -> RunnerSettings {
        let mut settings = self.to_protocol();
        settings.software = match (
            &self.software_version,
            &self.php_software_url,
            &self.php_software_sha256,
        ) {
            (Some(version), Some(url), Some(sha256)) => Some(SoftwareUpdate {
                version: format!("{version}{PHP_RUNNER_SUFFIX}"),
                url: url.clone(),
                sha256: sha256.clone(),
            }),
            _ => None,
        };
        settings
    }

    pub fn to_protocol(&self) -> RunnerSettings {
        let software = match (
            &self.software_version,
            &self.software_url,
            &self.software_sha256,
        ) {
            (Some(version), Some(url), Some(sha256)) => Some(SoftwareUpdate {
                version: version.clone(),
                url: url.clone(),
                sha256: sha256.clone(),
            }),
            _ => None,
        };
        RunnerSettings {
            batch_size: self.batch_size,
            send_rate_per_second: self.send_rate_per_second,
            smtp_connect_timeout_seconds: self.smtp_connect_timeout_seconds,
            smtp_command_timeout_seconds: self.smtp_command_timeout_seconds,
            smtp_data_timeout_seconds: self.smtp_data_timeout_seconds,
            poll_interval_seconds: self.poll_interval_seconds,
            lease_safety_margin_seconds: self.lease_safety_margin_seconds,
            dispatcher_url: self.dispatcher_url.clone(),
            software,
            reply_policy: None,
            max_sessions: Some(self.max_sessions),
            max_sessions_per_account: Some(self.max_sessions_per_account),
        }
    }
}

fn parse_range(key: &str, value: &str, min: u32, max: u32) -> Result<u32, String> {
    let n: u32 = value
        .parse()
        .map_err(|_| format!("{key}: {value:?} is not a whole number"))?;
    if n < min || n > max {
        return Err(format!("{key}: {n} is outside {min}..={max}"));
    }
    Ok(n)
}

/// An absolute http(s) URL with a host and nothing that could smuggle a second value.
fn check_url(key: &str, value: &str) -> Result<String, String> {
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{key}: URL must not contain spaces or control characters"
        ));
    }
    let uri: ureq::http::Uri = value
        .parse()
        .map_err(|e| format!("{key}: {value:?} is not a URL ({e})"))?;
    match uri.scheme_str() {
        Some("https") | Some("http") => {}
        _ => {
            return Err(format!(
                "{key}: {value:?} must start with https:// or http://"
            ))
        }
    }
    match uri.host() {
        Some(host) if !host.is_empty() => {}
        _ => return Err(format!("{key}: {value:?} has no host")),
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(format!("{key}: credentials in the URL are not allowed"));
    }
    Ok(value.to_string())
}

fn check_version(key: &str, value: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '~' | '_'));
    if ok {
        Ok(value.to_string())
    } else {
        Err(format!(
            "{key}: {value:?} is not a version (letters, digits and . - + ~ _, at most 64)"
        ))
    }
}

fn check_sha256(key: &str, value: &str) -> Result<String, String> {
    if value.len() == 64 && value.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(format!("{key}: expected 64 hexadecimal digits (a SHA-256)"))
    }
}

/// The latest config version and its settings, if any.
pub fn latest(c: &mut impl GenericClient) -> anyhow::Result<Option<(i64, StoredSettings)>> {
    let row = c
        .query_typed_opt(
            "SELECT version, settings FROM mailrun.config_versions ORDER BY version DESC LIMIT 1",
            &[],
        )
        .context("reading mailrun.config_versions")?;
    let Some(row) = row else { return Ok(None) };
    let version: i64 = row.get(0);
    let json: serde_json::Value = row.get(1);
    let settings: StoredSettings = serde_json::from_value(json).map_err(|e| {
        CliError::new(
            EXIT_DATA,
            format!("config version {version} in the database is not valid: {e}"),
        )
    })?;
    Ok(Some((version, settings)))
}

/// Creates the next version from the latest (or the defaults) with `assignments`
/// applied. Validates everything first: a bad assignment writes nothing.
pub fn create_version(
    c: &mut postgres::Client,
    assignments: &[String],
) -> anyhow::Result<(i64, StoredSettings)> {
    let mut tx = c.transaction()?;
    // Serialises concurrent `set`s so each derives from the one before it.
    tx.batch_execute("LOCK TABLE mailrun.config_versions IN SHARE ROW EXCLUSIVE MODE")
        .context("locking mailrun.config_versions")?;
    let (previous, mut settings) = match latest(&mut tx)? {
        Some((v, s)) => (v, s),
        None => (0, StoredSettings::defaults()),
    };
    for assignment in assignments {
        let (key, value) = assignment
            .split_once('=')
            .ok_or_else(|| CliError::new(EXIT_USAGE, format!("{assignment:?} is not KEY=VALUE")))?;
        settings
            .set(key.trim(), value)
            .map_err(|e| CliError::new(EXIT_DATA, e))?;
    }
    settings
        .validate()
        .map_err(|e| CliError::new(EXIT_DATA, e))?;
    let version = previous + 1;
    let json = serde_json::to_value(&settings).context("encoding settings")?;
    tx.execute_typed(
        "INSERT INTO mailrun.config_versions (version, settings) VALUES ($1, $2)",
        &params(&[&version, &json]),
    )
    .context("inserting the new config version")?;
    tx.commit().context("committing the new config version")?;
    Ok((version, settings))
}

/// The reply policy as pushed: `mailrun.reply_rules` by position, checked against the
/// protocol's limits (a policy the runners would refuse is not sent).
pub fn current_reply_policy(c: &mut impl GenericClient) -> anyhow::Result<Vec<ReplyRule>> {
    let refuse = |msg: String| {
        CliError::new(
            EXIT_DATA,
            format!(
                "the reply policy cannot be pushed: {msg} (fix it with `dispatch-admin reply-rule`)"
            ),
        )
    };
    let mut rules = Vec::new();
    for r in reply_policy::list(c)? {
        let rule = ReplyRule {
            position: u32::try_from(r.position)
                .map_err(|_| refuse(format!("rule {} has position {}", r.id, r.position)))?,
            code: r.code,
            enhanced: r.enhanced,
            pattern: r.pattern,
            domain: r.domain,
            account: r.account,
            action: ReplyAction::parse(&r.action)
                .ok_or_else(|| refuse(format!("rule {} has action {:?}", r.id, r.action)))?,
            throttle: ReplyThrottle::parse(&r.throttle)
                .ok_or_else(|| refuse(format!("rule {} has throttle {:?}", r.id, r.throttle)))?,
        };
        reply_rules::check_rule(&rule).map_err(|e| refuse(format!("rule {}: {e}", r.id)))?;
        rules.push(rule);
    }
    reply_rules::check_policy(&rules).map_err(refuse)?;
    Ok(rules)
}

/// Refuses an update runners would refuse for its size (runner-cgi reads at most
/// [`RUNNER_MAX_REQUEST_BYTES`](crate::protocol::limits::RUNNER_MAX_REQUEST_BYTES)) before contacting
/// any of them. Only a very large reply policy gets near it.
pub fn check_update_size(version: i64, settings: &RunnerSettings) -> anyhow::Result<()> {
    let limit = crate::protocol::limits::RUNNER_MAX_REQUEST_BYTES;
    let body = Body::JobRunnerConfigUpdate(JobRunnerConfigUpdate {
        // The longest runner id the protocol allows.
        runner_id: "x".repeat(128),
        version,
        settings: settings.clone(),
    });
    let size = crate::protocol::codec::encode(&body).len();
    if size > limit {
        return Err(CliError::new(
            EXIT_DATA,
            format!(
                "the config update would be {size} bytes, more than the {limit} a runner \
                 accepts: shorten or remove reply rules (`dispatch-admin reply-rule`)"
            ),
        )
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> StoredSettings {
        let mut s = StoredSettings::defaults();
        s.set(
            "dispatcher_url",
            "https://mail.example.org/cgi-bin/dispatch-cgi",
        )
        .unwrap();
        s
    }

    #[test]
    fn defaults_need_a_dispatcher_url() {
        assert!(StoredSettings::defaults().validate().is_err());
        assert!(valid().validate().is_ok());
    }

    #[test]
    fn ranges_are_checked() {
        let mut s = valid();
        assert!(s.set("batch_size", "0").is_err());
        assert!(s.set("batch_size", "10001").is_err());
        assert!(s.set("batch_size", "-1").is_err());
        assert!(s.set("batch_size", "100").is_ok());
        assert_eq!(s.batch_size, 100);
        assert!(s.set("send_rate_per_second", "NaN").is_err());
        assert!(s.set("send_rate_per_second", "inf").is_err());
        assert!(s.set("send_rate_per_second", "-1").is_err());
        assert!(s.set("send_rate_per_second", "2.5").is_ok());
        assert!(s.set("lease_safety_margin_seconds", "0").is_ok());
        assert!(s.set("no_such_key", "1").is_err());
    }

    #[test]
    fn urls_and_hashes_are_checked() {
        let mut s = valid();
        assert!(s.set("dispatcher_url", "ftp://x/").is_err());
        assert!(s.set("dispatcher_url", "https:///nohost").is_err());
        assert!(s.set("dispatcher_url", "https://a b/").is_err());
        assert!(s.set("dispatcher_url", "https://user:pw@host/").is_err());
        assert!(s.set("software_sha256", "abc").is_err());
        assert!(s.set("software_sha256", &"G".repeat(64)).is_err());
        assert!(s.set("software_sha256", &"AB".repeat(32)).is_ok());
        assert_eq!(s.software_sha256.as_deref(), Some("ab".repeat(32).as_str()));
    }

    #[test]
    fn software_keys_go_together() {
        let mut s = valid();
        s.set("software_version", "1.2.3").unwrap();
        assert!(s.validate().is_err());
        s.set("software_url", "https://example.org/mailrun-1.2.3.tar.gz")
            .unwrap();
        s.set("software_sha256", &"0".repeat(64)).unwrap();
        assert!(s.validate().is_ok());
        assert!(s.to_protocol().software.is_some());
        s.set("software_version", "").unwrap();
        assert!(s.validate().is_ok());
        assert!(s.to_protocol().software.is_none());
    }

    #[test]
    fn stored_form_round_trips_and_refuses_unknown_keys() {
        let s = valid();
        let json = serde_json::to_value(&s).unwrap();
        let back: StoredSettings = serde_json::from_value(json).unwrap();
        assert_eq!(back, s);
        let bad = serde_json::json!({"batch_size": 1, "surprise": true});
        assert!(serde_json::from_value::<StoredSettings>(bad).is_err());
    }
}
