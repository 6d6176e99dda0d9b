//! Configuration lookup shared by the dispatcher commands.
//!
//! Database URL order: `--database-url`, then `MAILRUN_DATABASE_URL`, then `database_url`
//! in the first config file found: `--config`, `MAILRUN_CONFIG`, the user's config dir
//! (`directories`: ~/.config/mailrun/dispatcher.toml), then `/etc/mailrun/dispatcher.toml`.
//! A file named explicitly (flag or environment) must exist; the default places may not.
//! Connecting is `dispatcher::connection::connect`.
//!
//! `dispatcher.toml` (every key optional):
//!
//! ```toml
//! database_url = "postgres://mailrun@localhost/mailrun"
//! max_message_bytes = 10240000      # enqueue refuses bigger messages
//! message_id_domain = "example.com" # default: the From address's domain
//! time_zone = "Europe/Berlin"       # local send-later times; default UTC
//!
//! [defaults]                        # merged into `dispatch-admin enqueue`
//! from = "News <news@example.com>"
//! reply_to = "help@example.com"
//! account = "main"
//!
//! [retry]                           # synced to mailrun.policy by init/migrate
//! backoff_min_seconds = 300
//! backoff_max_seconds = 4000
//! give_up_after_seconds = 432000    # 5 days
//! rules = [ { code = "550", enhanced = "5.7.1", permanent = false } ]
//!
//! [retention]                       # purged by dispatch-tick (dispatcher::retention)
//! keep_sent_days = 30
//! keep_failed_days = 90             # failed, expired, cancelled
//! review_codes = ["5.7.1", "55x"]   # kept until purged by hand
//!
//! [status_page]                     # GET on dispatch-cgi (dispatcher::status_page)
//! allow = "loopback"                # or "any", or "token" with token = "..."
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cli::{CliError, EXIT_CONFIG};
use crate::dispatcher::retention::RetentionConfig;
use crate::dispatcher::retry::RetryConfig;
use crate::dispatcher::status_page::StatusPageConfig;

/// Environment variable holding the database URL.
pub const DATABASE_URL_ENV: &str = "MAILRUN_DATABASE_URL";
/// Environment variable naming the config file.
pub const CONFIG_ENV: &str = "MAILRUN_CONFIG";

/// The system-wide config file.
pub const SYSTEM_CONFIG: &str = "/etc/mailrun/dispatcher.toml";

/// The dispatcher's `dispatcher.toml`.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatcherConfig {
    pub database_url: Option<String>,
    pub max_message_bytes: Option<i64>,
    pub message_id_domain: Option<String>,
    /// IANA time zone for local send-later times ("tomorrow 9am"); default UTC.
    pub time_zone: Option<String>,
    #[serde(default)]
    pub defaults: Defaults,
    pub retry: Option<RetryConfig>,
    #[serde(default)]
    pub retention: RetentionConfig,
    #[serde(default)]
    pub status_page: StatusPageConfig,
}

impl std::fmt::Debug for DispatcherConfig {
    // The database URL may carry a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatcherConfig")
            .field("database_url", &self.database_url.as_ref().map(|_| "<set>"))
            .field("max_message_bytes", &self.max_message_bytes)
            .field("message_id_domain", &self.message_id_domain)
            .field("time_zone", &self.time_zone)
            .field("defaults", &self.defaults)
            .field("retry", &self.retry)
            .field("retention", &self.retention)
            .field("status_page", &self.status_page)
            .finish()
    }
}

/// Values `dispatch-admin enqueue` uses when a message does not set them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    pub from: Option<String>,
    pub reply_to: Option<String>,
    pub account: Option<String>,
}

/// Where the config file is looked for, in order, given the `--config` flag.
pub fn config_candidates(flag: Option<&Path>) -> Vec<(PathBuf, bool)> {
    if let Some(path) = flag {
        return vec![(path.to_path_buf(), true)];
    }
    if let Some(path) = std::env::var_os(CONFIG_ENV).filter(|p| !p.is_empty()) {
        return vec![(PathBuf::from(path), true)];
    }
    let mut out = Vec::new();
    if let Some(dirs) = directories::ProjectDirs::from("", "", "mailrun") {
        out.push((dirs.config_dir().join("dispatcher.toml"), false));
    }
    out.push((PathBuf::from(SYSTEM_CONFIG), false));
    out
}

impl DispatcherConfig {
    /// The retry policy this file describes (defaults for what it leaves out).
    pub fn retry_policy(&self) -> crate::dispatcher::retry::Policy {
        self.retry
            .clone()
            .unwrap_or_default()
            .to_policy(self.max_message_bytes, self.message_id_domain.clone())
    }

    /// Loads the first config file found (see the module docs); the default (empty)
    /// config when there is none. Returns the path it was read from.
    pub fn load(flag: Option<&Path>) -> anyhow::Result<(DispatcherConfig, Option<PathBuf>)> {
        for (path, required) in config_candidates(flag) {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let config = DispatcherConfig::parse(&text).map_err(|e| {
                        CliError::new(EXIT_CONFIG, format!("{}: {e}", path.display()))
                    })?;
                    return Ok((config, Some(path)));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => continue,
                Err(e) => {
                    return Err(CliError::new(
                        EXIT_CONFIG,
                        format!("cannot read config file {}: {e}", path.display()),
                    )
                    .into())
                }
            }
        }
        Ok((DispatcherConfig::default(), None))
    }

    /// Parses and checks a config file's text.
    pub fn parse(text: &str) -> anyhow::Result<DispatcherConfig> {
        let config: DispatcherConfig = toml::from_str(text)?;
        if let Some(max) = config.max_message_bytes {
            anyhow::ensure!(max > 0, "max_message_bytes must be positive");
        }
        if let Some(domain) = &config.message_id_domain {
            anyhow::ensure!(
                !domain.is_empty()
                    && domain
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
                    && !domain.starts_with(['.', '-'])
                    && !domain.ends_with(['.', '-']),
                "message_id_domain {domain:?} is not a domain name"
            );
        }
        if let Some(retry) = &config.retry {
            retry.validate()?;
        }
        config.retention.validate()?;
        config.status_page.validate()?;
        if let Some(tz) = &config.time_zone {
            crate::schedule::when::parse_time_zone(tz)?;
        }
        Ok(config)
    }
}

/// The database URL per the lookup order in the module docs.
pub fn database_url(flag: Option<&str>, config_path: Option<&Path>) -> anyhow::Result<String> {
    if let Some(url) = flag.filter(|u| !u.is_empty()) {
        return Ok(url.to_string());
    }
    if let Ok(url) = std::env::var(DATABASE_URL_ENV) {
        if !url.is_empty() {
            return Ok(url);
        }
    }
    let (config, path) = DispatcherConfig::load(config_path)?;
    match (config.database_url, path) {
        (Some(url), _) if !url.is_empty() => Ok(url),
        (_, Some(path)) => Err(CliError::new(
            EXIT_CONFIG,
            format!(
                "no database URL: give --database-url, set {DATABASE_URL_ENV}, or set \
                 database_url in {}",
                path.display()
            ),
        )
        .into()),
        (_, None) => Err(CliError::new(
            EXIT_CONFIG,
            format!(
                "no database URL: give --database-url, set {DATABASE_URL_ENV}, or write \
                 database_url to {SYSTEM_CONFIG}"
            ),
        )
        .into()),
    }
}
