//! `push-config`: send the current runner settings (JobRunnerConfigUpdate) to one runner
//! or all, and record the version each runner applied.
//!
//! Settings live in `mailrun.config_versions` as JSON, one row per version; versions only
//! increase. `push-config set key=value ...` writes a new version derived from the latest
//! (validating every key) and pushes it; `push-config show` prints the latest.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use postgres::GenericClient;
use serde::{Deserialize, Serialize};

use crate::cli::{
    CliError, EXIT_CODES_HELP, EXIT_CONFIG, EXIT_DATA, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE,
};
use crate::dispatcher::outbound::{self, CallError};
use crate::dispatcher::runners::{self, Runner};
use crate::dispatcher::{connection, reply_policy, schema};
use crate::protocol::limits::{
    DEFAULT_MAX_SESSIONS, DEFAULT_MAX_SESSIONS_PER_ACCOUNT, MAX_CONNECTIONS,
};
use crate::protocol::reply_rules;
use crate::protocol::{
    Body, FaultReason, JobRunnerConfigUpdate, ReplyAction, ReplyRule, ReplyThrottle,
    RunnerSettings, SoftwareUpdate,
};
use crate::web::client::{Client, ClientOptions};

const MAX_RESPONSE_BYTES: u64 = 64 * 1024;

#[derive(Parser)]
#[command(
    name = "push-config",
    version,
    about = "Send the current runner settings to one runner or all (JobRunnerConfigUpdate)",
    long_about = "Send the current runner settings to one runner or all \
        (JobRunnerConfigUpdate), and record the version each runner applied.\n\n\
        The settings come from the database's latest config version. \
        `push-config set KEY=VALUE...` creates a new version from the latest with the \
        given keys changed, then pushes it (to every enabled runner unless --runner). \
        `push-config show` prints the latest version.\n\n\
        Keys: batch_size (1-10000), send_rate_per_second (0 = unlimited, up to 10000), \
        smtp_connect_timeout_seconds (1-600), smtp_command_timeout_seconds (1-3600), \
        smtp_data_timeout_seconds (1-3600), poll_interval_seconds (1-86400), \
        lease_safety_margin_seconds (0-3600), dispatcher_url (http or https URL), \
        max_sessions (1-1000: SMTP sessions a runner keeps busy at once, default 100), \
        max_sessions_per_account (1-1000: sessions to one account unless the account \
        sets its own, default 20), \
        software_version, software_url (http or https URL), software_sha256 (64 hex \
        digits); the three software_* keys go together, and `software_version=` (empty) \
        clears them.\n\n\
        Every update also carries the reply policy (`dispatch-admin reply-rule`, \
        docs/quotas.md) as it is when pushed; adding or removing a reply rule creates a \
        new config version, so the next `push-config --all` sends it to every runner.\n\n\
        Runners already at the version (as recorded) are skipped unless --force. \
        An unreachable runner is reported and does not stop the others.\n\n\
        Exits 0 when every targeted runner applied the version, 69 when any was \
        unreachable, 65 when any refused it.",
    after_help = EXIT_CODES_HELP
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Push to this runner only.
    #[arg(long, value_name = "ID", global = true, conflicts_with = "all")]
    pub runner: Option<String>,

    /// Push to every enabled runner.
    #[arg(long, global = true)]
    pub all: bool,

    /// Push even to runners whose recorded version is already current.
    #[arg(long, global = true)]
    pub force: bool,

    /// PostgreSQL URL (default: MAILRUN_DATABASE_URL, then the config file).
    #[arg(long, value_name = "URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,

    /// Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml,
    /// /etc/mailrun/dispatcher.toml).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// Connect and read timeout for each runner, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 10, global = true,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub timeout: u64,

    /// Allow plain http:// to runners that are not on loopback (TLS is the default).
    /// MAILRUN_ALLOW_PLAIN_HTTP takes 1/0, yes/no, on/off or true/false.
    #[arg(long, env = "MAILRUN_ALLOW_PLAIN_HTTP", global = true,
          value_parser = crate::cli::SwitchParser)]
    pub allow_plain_http: bool,

    /// Print a line per runner to stderr.
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// Print the result as JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create a new config version with KEY=VALUE changes, then push it.
    Set {
        /// Settings to change, e.g. batch_size=100 send_rate_per_second=5.
        #[arg(value_name = "KEY=VALUE", required = true)]
        assignments: Vec<String>,

        /// Only create the version; push later.
        #[arg(long)]
        no_push: bool,
    },
    /// Print the latest config version.
    Show,
}

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
}

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
        .query_opt(
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
    tx.execute(
        "INSERT INTO mailrun.config_versions (version, settings) VALUES ($1, $2)",
        &[&version, &json],
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
fn check_update_size(version: i64, settings: &RunnerSettings) -> anyhow::Result<()> {
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

/// What happened with one runner, as printed by `--json`.
#[derive(Debug, Serialize)]
pub struct PushResult {
    pub id: String,
    /// applied; current (already recorded at the version, or the runner says it holds
    /// it or a newer one); unreachable; refused; poll-only.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_version: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct PushSummary {
    pub version: i64,
    pub runners: Vec<PushResult>,
}

pub fn main(args: Args) -> anyhow::Result<u8> {
    let url = crate::dispatcher::config::database_url(
        args.database_url.as_deref(),
        args.config.as_deref(),
    )?;
    let mut db = connection::connect(&url).map_err(connection::exit_context)?;
    schema::require_current(&mut db).map_err(connection::exit_context)?;

    let (version, settings) = match &args.command {
        Some(Command::Show) => return show(&args, &mut db),
        Some(Command::Set {
            assignments,
            no_push,
        }) => {
            let (version, settings) =
                create_version(&mut db, assignments).map_err(connection::exit_context)?;
            if args.verbose {
                eprintln!("push-config: created config version {version}");
            }
            if *no_push {
                if args.json {
                    println!("{}", serde_json::json!({ "version": version }));
                }
                return Ok(EXIT_OK);
            }
            (version, settings)
        }
        None => {
            if args.runner.is_none() && !args.all {
                return Err(CliError::new(
                    EXIT_USAGE,
                    "say which runners: --runner ID or --all (or `push-config set KEY=VALUE...`)",
                )
                .into());
            }
            latest(&mut db)
                .map_err(connection::exit_context)?
                .ok_or_else(|| {
                    CliError::new(
                        EXIT_CONFIG,
                        "no config version exists yet: create one with \
                         `push-config set dispatcher_url=https://...`",
                    )
                })?
        }
    };

    let targets = targets(&args, &mut db)?;
    let applied = recorded_versions(&mut db, &targets)?;
    let client = Client::new(ClientOptions {
        connect_timeout: Duration::from_secs(args.timeout),
        timeout: Duration::from_secs(args.timeout),
        allow_plain_http: args.allow_plain_http,
        max_response_bytes: MAX_RESPONSE_BYTES,
    });
    let mut protocol_settings = settings.to_protocol();
    protocol_settings.reply_policy =
        Some(current_reply_policy(&mut db).map_err(connection::exit_context)?);
    check_update_size(version, &protocol_settings)?;
    let work: Vec<(&Runner, Option<i64>)> = targets.iter().zip(applied).collect();
    let results = outbound::parallel_map(&work, 16, |(runner, recorded)| {
        if !args.force && recorded.is_some_and(|r| r >= version) {
            return PushResult {
                id: runner.id.clone(),
                status: "current".to_string(),
                applied_version: *recorded,
                error: None,
            };
        }
        push_one(&client, runner, version, &protocol_settings)
    });

    for result in &results {
        if result.status == "applied" {
            if let Some(v) = result.applied_version {
                record_applied(&mut db, &result.id, v).map_err(connection::exit_context)?;
            }
        }
    }
    let summary = PushSummary {
        version,
        runners: results,
    };
    report(&args, &summary)?;

    let failed: Vec<String> = summary
        .runners
        .iter()
        .filter(|r| matches!(r.status.as_str(), "unreachable" | "refused"))
        .map(|r| format!("{}: {}", r.id, r.error.as_deref().unwrap_or(&r.status)))
        .collect();
    if failed.is_empty() {
        return Ok(EXIT_OK);
    }
    let code = if summary.runners.iter().any(|r| r.status == "unreachable") {
        EXIT_UNAVAILABLE
    } else {
        EXIT_DATA
    };
    Err(CliError::new(
        code,
        format!(
            "config version {version} not applied by {} runner(s): {}",
            failed.len(),
            failed.join("; ")
        ),
    )
    .into())
}

/// The runners to push to: the one named, or every enabled runner.
fn targets(args: &Args, db: &mut postgres::Client) -> anyhow::Result<Vec<Runner>> {
    if let Some(id) = &args.runner {
        let runner = runners::get(db, id)
            .map_err(connection::exit_context)?
            .ok_or_else(|| CliError::new(EXIT_DATA, format!("no runner with id {id:?}")))?;
        return Ok(vec![runner]);
    }
    Ok(runners::list(db)
        .map_err(connection::exit_context)?
        .into_iter()
        .filter(|r| r.enabled)
        .collect())
}

/// The version each runner is recorded to have applied (None: never).
fn recorded_versions(
    db: &mut postgres::Client,
    targets: &[Runner],
) -> anyhow::Result<Vec<Option<i64>>> {
    let mut out = Vec::with_capacity(targets.len());
    for runner in targets {
        let row = db
            .query_opt(
                "SELECT config_version_applied FROM mailrun.runners WHERE id = $1",
                &[&runner.id],
            )
            .map_err(|e| connection::exit_context(e.into()))?;
        out.push(row.and_then(|r| r.get::<_, Option<i64>>(0)));
    }
    Ok(out)
}

fn record_applied(db: &mut postgres::Client, runner_id: &str, version: i64) -> anyhow::Result<()> {
    // GREATEST: a slow, older push finishing late never lowers the recorded version.
    db.execute(
        "UPDATE mailrun.runners
            SET config_version_applied = GREATEST(COALESCE(config_version_applied, 0), $2)
          WHERE id = $1",
        &[&runner_id, &version],
    )
    .with_context(|| format!("recording config version {version} for runner {runner_id}"))?;
    Ok(())
}

fn push_one(
    client: &Client,
    runner: &Runner,
    version: i64,
    settings: &RunnerSettings,
) -> PushResult {
    let body = Body::JobRunnerConfigUpdate(JobRunnerConfigUpdate {
        runner_id: runner.id.clone(),
        version,
        settings: settings.clone(),
    });
    let mut result = PushResult {
        id: runner.id.clone(),
        status: String::new(),
        applied_version: None,
        error: None,
    };
    match outbound::call(client, runner, &body) {
        Ok(Body::JobRunnerConfigUpdateResponse(answer)) if answer.applied_version == version => {
            result.status = "applied".to_string();
            result.applied_version = Some(answer.applied_version);
        }
        Ok(Body::JobRunnerConfigUpdateResponse(answer)) => {
            result.status = "refused".to_string();
            result.error = Some(format!(
                "runner reports version {} applied, not {version}",
                answer.applied_version
            ));
        }
        Ok(other) => {
            result.status = "refused".to_string();
            result.error = Some(format!(
                "answered {} to JobRunnerConfigUpdate",
                crate::protocol::codec::soap_action(&other)
            ));
        }
        Err(CallError::NoEndpoint) => {
            result.status = "poll-only".to_string();
            result.error = Some("runner has no endpoint; it cannot receive pushes".to_string());
        }
        Err(CallError::Fault {
            fault,
            signed: true,
        }) if fault.reason == FaultReason::VersionNotIncreasing => {
            // The runner already holds this version or a newer one: nothing to do.
            result.status = "current".to_string();
            result.error = Some(fault.message);
        }
        Err(err) => {
            result.status = if err.is_unreachable() {
                "unreachable"
            } else {
                "refused"
            }
            .to_string();
            result.error = Some(err.to_string());
        }
    }
    result
}

fn show(args: &Args, db: &mut postgres::Client) -> anyhow::Result<u8> {
    let Some((version, settings)) = latest(db).map_err(connection::exit_context)? else {
        return Err(CliError::new(
            EXIT_CONFIG,
            "no config version exists yet: create one with `push-config set dispatcher_url=https://...`",
        )
        .into());
    };
    let rules = reply_policy::list(db)
        .map_err(connection::exit_context)?
        .len();
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "version": version, "settings": settings, "reply_rules": rules })
        );
    } else {
        println!("version={version}");
        println!("reply_rules={rules}");
        let json = serde_json::to_value(&settings).context("encoding settings")?;
        if let serde_json::Value::Object(map) = json {
            for (key, value) in map {
                match value {
                    serde_json::Value::String(s) => println!("{key}={s}"),
                    other => println!("{key}={other}"),
                }
            }
        }
    }
    Ok(EXIT_OK)
}

fn report(args: &Args, summary: &PushSummary) -> anyhow::Result<()> {
    if args.verbose {
        for r in &summary.runners {
            let detail = r
                .error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            eprintln!(
                "push-config: runner {}: {} (version {}){detail}",
                r.id, r.status, summary.version
            );
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string(summary).context("encoding the summary")?
        );
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
