//! `push-config`: send the current runner settings (JobRunnerConfigUpdate) to one runner
//! or all, and record the version each runner applied.
//!
//! `push-config set key=value ...` writes a new version derived from the latest (validating
//! every key, `dispatcher::config_versions`) and pushes it; `push-config show` prints the
//! latest.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::cli::{
    CliError, EXIT_CODES_HELP, EXIT_CONFIG, EXIT_DATA, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE,
};
use crate::dispatcher::config_versions::{
    check_update_size, create_version, current_reply_policy, latest, PHP_RUNNER_SUFFIX,
};
use crate::dispatcher::outbound::{self, CallError};
use crate::dispatcher::runners::{self, Runner};
use crate::dispatcher::{connection, reply_policy, schema};
use crate::protocol::{Body, FaultReason, JobRunnerConfigUpdate, RunnerSettings};
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
        clears them; php_software_url and php_software_sha256 announce the PHP runner's \
        file for the same version, sent instead to runners that report a -php version.\n\n\
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

    /// PostgreSQL URL (default: MAILRUN_DATABASE_URL, then the config file); TLS:
    /// ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with
    /// target_session_attrs=read-write (docs/dispatcher.md).
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
    let mut db = connection::connect(&url).map_err(CliError::from)?;
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
    let policy = current_reply_policy(&mut db).map_err(connection::exit_context)?;
    let mut protocol_settings = settings.to_protocol();
    protocol_settings.reply_policy = Some(policy.clone());
    check_update_size(version, &protocol_settings)?;
    // PHP runners (a `-php` software version) are offered the PHP file instead.
    let mut php_settings = settings.to_protocol_for_php();
    php_settings.reply_policy = Some(policy);
    check_update_size(version, &php_settings)?;
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
        let is_php = runner
            .software_version
            .as_deref()
            .is_some_and(|v| v.ends_with(PHP_RUNNER_SUFFIX));
        let settings = if is_php {
            &php_settings
        } else {
            &protocol_settings
        };
        push_one(&client, runner, version, settings)
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
    targets
        .iter()
        .map(|runner| runners::applied_config_version(db, &runner.id))
        .collect::<anyhow::Result<_>>()
        .map_err(connection::exit_context)
}

fn record_applied(db: &mut postgres::Client, runner_id: &str, version: i64) -> anyhow::Result<()> {
    runners::record_applied_config(db, runner_id, version)
        .with_context(|| format!("recording config version {version} for runner {runner_id}"))
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
