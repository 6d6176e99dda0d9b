//! `runner-admin`: create the state folder, show its status, and run the delivery cycle
//! (poll, send, poll again...) that cron and runner-cgi start.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::cli::{
    CliError, EXIT_CODES_HELP, EXIT_CONFIG, EXIT_NO_WORK, EXIT_OK, EXIT_TEMPFAIL, EXIT_USAGE,
};
use crate::protocol::codec::{self, Limits};
use crate::protocol::Body;
use crate::runner::config::{RunnerConfig, Settings};
use crate::runner::deliver::{self, Engine, EngineOptions};
use crate::runner::poll::{self, PollOptions, PollOutcome};
use crate::runner::refill::Refill;
use crate::runner::spool::{self, Journal, SpooledBatch};
use crate::runner::state::{ConfigLock, StateDir};

/// Manage a runner's state folder and run delivery cycles.
#[derive(Debug, Parser)]
#[command(
    name = "runner-admin",
    version,
    about = "Set up a runner, show its status, run a poll/send cycle",
    after_help = EXIT_CODES_HELP
)]
pub struct Args {
    /// Runner state folder [default: $MAILRUN_RUNNER_DIR, else ~/.local/share/mailrun/runner]
    #[arg(long, value_name = "DIR", global = true)]
    pub state_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the state folder and runner.toml (mode 0600).
    Init(InitArgs),
    /// Print runner-cgi's WSDL with its real address and the schema inlined, for SOAP
    /// stacks to load as it is (a dispatcher written elsewhere); needs no state folder.
    Wsdl {
        /// The URL of this runner's runner-cgi, e.g. https://host/cgi-bin/runner-cgi.
        #[arg(long, value_name = "URL")]
        url: String,
    },
    /// Show config version, reply rules, spooled batches, journal progress, outbox, ready
    /// marker, lock.
    Status(StatusArgs),
    /// List the reply policy the dispatcher pushed, as runner-send applies it.
    #[command(
        long_about = "List the reply policy the dispatcher pushed with JobRunnerConfigUpdate, \
in the order runner-send tries the rules (first match decides). A rule whose pattern this \
runner cannot compile is marked `skipped here` (the dispatcher still applies it). See \
docs/quotas.md.\n\n\
Exit status: 0 rules listed, 3 no policy was pushed yet (or it is empty), 78 runner.toml \
is missing or invalid."
    )]
    Policy(StatusArgs),
    /// Poll, send, poll again... until the dispatcher has no work, the time budget ends,
    /// or the dispatcher does not answer. This is what cron and runner-cgi start.
    #[command(
        long_about = "Poll, send, poll again... until the dispatcher answers an empty JobRun, \
the time budget (--max-seconds) ends, or the dispatcher does not answer. Spooled batches \
left by an earlier run are delivered first. Without --force the first poll happens only \
if the `ready` marker exists (JobRunnerReady wrote it).\n\n\
Delivery runs on many SMTP sessions at once (see runner-send), and the next batch is asked \
for while the current one is still being delivered: once the messages waiting would last \
less than twice as long as the last request took, at the rate the sessions finish them \
(never later than when max_sessions wait, never more than one batch ahead), so sessions \
do not wait for the dispatcher; sessions stay open across batches. The first request asks \
for max_sessions messages, each next one for four times as many, up to batch_size. When \
the time budget ends, the batches in hand are delivered and reported, and nothing new is \
asked for. Like runner-send, it restarts itself once at start with glibc's malloc arenas \
capped (GLIBC_TUNABLES).\n\n\
Crontab line: `* * * * * runner-admin cycle --max-seconds 55` (add --force on runners \
that accept no inbound HTTP).\n\n\
Exit status: 0 work was done, 3 no work (or another run holds the lock), 69 the \
dispatcher is unreachable or timed out, 65 it answered something invalid, 75 the journal \
or the state folder could not be written, 78 configuration error."
    )]
    Cycle(CycleArgs),
    /// Switch to a new signing key; the old one stays accepted on inbound requests until
    /// `drop-previous-key` (rotate at the dispatcher too).
    RotateKey(RotateKeyArgs),
    /// Stop accepting the previous key.
    DropPreviousKey,
    /// Install the runner build the dispatcher announced (not in distribution packages).
    #[command(
        long_about = "Install the runner build the dispatcher announced in its last \
JobRunnerConfigUpdate (software_version, software_url, software_sha256), unless it is \
installed already: download it (https, or http to loopback), check its SHA-256, unpack \
it next to this program and replace the four runner binaries, each with one atomic \
rename. Any failure keeps the installed binaries. See docs/packaging.md.\n\n\
Crontab line: `17 * * * * runner-admin self-update`.\n\n\
Exit status: 0 updated, 3 nothing announced or already installed, 64 self-update is \
turned off in this build (installed from a package: use apt), 65 bad download \
(checksum, archive), 69 download server unavailable, 75 download interrupted or \
binaries not replaceable (retry later), 78 configuration error."
    )]
    SelfUpdate(crate::runner::update::SelfUpdateArgs),
}

#[derive(Debug, Parser)]
pub struct RotateKeyArgs {
    /// The id of the new key.
    #[arg(long, value_name = "KID")]
    pub key_id: String,
    /// The new key as 64 hex characters (prefer --key-file).
    #[arg(long, value_name = "HEX", conflicts_with = "key_file")]
    pub key: Option<String>,
    /// Read the new key from this file, or from stdin with `-`.
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Parser)]
pub struct InitArgs {
    /// The dispatcher's endpoint, e.g. https://mail.example.com/cgi-bin/dispatch-cgi
    #[arg(long, value_name = "URL")]
    pub dispatcher_url: String,
    /// This runner's id, as registered at the dispatcher.
    #[arg(long, value_name = "ID")]
    pub runner_id: String,
    /// The id of the signing key.
    #[arg(long, value_name = "KID")]
    pub key_id: String,
    /// The 32-byte key as 64 hex characters (prefer --key-file: shell history keeps this).
    #[arg(long, value_name = "HEX", conflicts_with = "key_file")]
    pub key: Option<String>,
    /// Read the key (64 hex characters) from this file, or from stdin with `-`.
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,
    /// Allow plain http:// to a non-loopback dispatcher (off by default).
    #[arg(long)]
    pub allow_plain_http: bool,
    /// Replace an existing runner.toml (pushed settings are kept).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Parser)]
pub struct StatusArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Parser)]
pub struct CycleArgs {
    /// Stop starting new polls after this many seconds [default: the poll interval].
    #[arg(long, value_name = "SECONDS")]
    pub max_seconds: Option<u64>,
    /// Poll even without a `ready` marker.
    #[arg(long)]
    pub force: bool,
    /// Seconds to wait for each dispatcher answer.
    #[arg(long, default_value_t = 60, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
    /// Print progress to stderr.
    #[arg(long, short)]
    pub verbose: bool,
}

pub fn main(args: Args) -> Result<u8> {
    if let Command::Wsdl { url } = &args.command {
        let wsdl = crate::protocol::wsdl::with_address(crate::protocol::wsdl::Service::Runner, url)
            .map_err(|e| CliError::new(crate::cli::EXIT_USAGE, e))?;
        print!("{wsdl}");
        return Ok(crate::cli::EXIT_OK);
    }
    let state = StateDir::locate(args.state_dir.as_deref())?;
    match args.command {
        Command::Init(a) => init(&state, a),
        Command::Status(a) => status(&state, a),
        Command::Policy(a) => policy(&state, a),
        Command::Cycle(a) => {
            crate::runner::heap::cap_arenas();
            cycle(&state, a)
        }
        Command::RotateKey(a) => rotate_key(&state, a),
        Command::DropPreviousKey => drop_previous_key(&state),
        Command::SelfUpdate(a) => crate::runner::update::main(&state, a),
        Command::Wsdl { .. } => unreachable!("answered before the state folder is located"),
    }
}

/// The key from `--key` or `--key-file` (`-` = stdin), trimmed and lowercased.
fn read_key(key: Option<&str>, key_file: Option<&Path>) -> Result<String> {
    let text = match (key, key_file) {
        (Some(k), None) => k.to_string(),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the key from stdin")?;
            text
        }
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read key file {}", path.display()))?,
        _ => return Err(CliError::new(EXIT_USAGE, "give the key with --key or --key-file").into()),
    };
    Ok(text.trim().to_ascii_lowercase())
}

fn rotate_key(state: &StateDir, args: RotateKeyArgs) -> Result<u8> {
    let key = read_key(args.key.as_deref(), args.key_file.as_deref())?;
    let _guard = ConfigLock::take(state)?;
    let mut config = RunnerConfig::load(state)?;
    if args.key_id == config.key_id {
        return Err(CliError::new(
            EXIT_USAGE,
            format!(
                "the new key needs a new key id (current: {:?})",
                config.key_id
            ),
        )
        .into());
    }
    config.previous_key_id = Some(std::mem::replace(&mut config.key_id, args.key_id));
    config.previous_key = Some(std::mem::replace(&mut config.key, key));
    config
        .validate()
        .map_err(|e| CliError::new(EXIT_USAGE, e))?;
    config.save(state)?;
    Ok(EXIT_OK)
}

fn drop_previous_key(state: &StateDir) -> Result<u8> {
    let _guard = ConfigLock::take(state)?;
    let mut config = RunnerConfig::load(state)?;
    if config.previous_key.is_none() {
        return Ok(EXIT_NO_WORK);
    }
    config.previous_key_id = None;
    config.previous_key = None;
    config.save(state)?;
    Ok(EXIT_OK)
}

fn init(state: &StateDir, args: InitArgs) -> Result<u8> {
    let key = read_key(args.key.as_deref(), args.key_file.as_deref())?;
    let existing = state.config_path().exists();
    if existing && !args.force {
        return Err(CliError::new(
            EXIT_CONFIG,
            format!(
                "{} exists; use --force to replace it",
                state.config_path().display()
            ),
        )
        .into());
    }
    // --force keeps what the dispatcher pushed and the operator's CA file.
    let previous = existing.then(|| RunnerConfig::load(state).ok()).flatten();
    let settings = previous
        .as_ref()
        .map(|c| c.settings.clone())
        .unwrap_or_else(Settings::default);
    let smtp_ca_file = previous.and_then(|c| c.smtp_ca_file);
    let config = RunnerConfig {
        runner_id: args.runner_id,
        dispatcher_url: args.dispatcher_url,
        key_id: args.key_id,
        key,
        previous_key_id: None,
        previous_key: None,
        allow_plain_http: args.allow_plain_http,
        smtp_ca_file,
        enabled: true,
        settings,
    };
    config
        .validate()
        .map_err(|e| CliError::new(EXIT_USAGE, e))?;
    state.create()?;
    config.save(state)?;
    Ok(EXIT_OK)
}

#[derive(Debug, Serialize)]
struct Status {
    state_dir: String,
    runner_id: String,
    dispatcher_url: String,
    enabled: bool,
    config_version: i64,
    /// Rules of the pushed reply policy; `None` when none was pushed yet.
    reply_rules: Option<usize>,
    ready: bool,
    locked: bool,
    spooled_batches: Vec<BatchStatus>,
    outbox_files: usize,
    outbox_results: usize,
}

#[derive(Debug, Serialize)]
struct BatchStatus {
    job_run_id: String,
    /// Messages in the batch; `None` when the spooled file cannot be decoded.
    messages: Option<usize>,
    journalled: usize,
    received_at: Option<i64>,
    lease_seconds: Option<u32>,
}

fn status(state: &StateDir, args: StatusArgs) -> Result<u8> {
    let config = RunnerConfig::load(state)?;
    let mut batches = Vec::new();
    for batch in spool::list_batches(state)? {
        let messages = batch
            .read_xml()
            .ok()
            .and_then(|b| codec::decode_with(&b, &Limits::RESPONSE).ok())
            .and_then(|body| match body {
                Body::JobRun(run) => Some(run.messages.len()),
                _ => None,
            });
        let journalled = if batch.journal.exists() {
            Journal::open(&batch.journal)?.entries().len()
        } else {
            0
        };
        let meta = batch.read_meta().ok();
        batches.push(BatchStatus {
            job_run_id: batch.id.clone(),
            messages,
            journalled,
            received_at: meta.map(|m| m.received_at),
            lease_seconds: meta.map(|m| m.lease_seconds),
        });
    }
    let outbox = spool::read_outbox(state)?;
    let status = Status {
        state_dir: state.root().display().to_string(),
        runner_id: config.runner_id.clone(),
        dispatcher_url: config.dispatcher_url.clone(),
        enabled: config.enabled,
        config_version: config.settings.version,
        reply_rules: config.settings.reply_policy.as_ref().map(Vec::len),
        ready: state.ready_path().exists(),
        locked: state.is_locked()?,
        outbox_files: outbox.len(),
        outbox_results: outbox.iter().map(|f| f.results.len()).sum(),
        spooled_batches: batches,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status).context("cannot serialise status")?
        );
    } else {
        println!("state folder:    {}", status.state_dir);
        println!("runner id:       {}", status.runner_id);
        println!("dispatcher:      {}", status.dispatcher_url);
        println!("enabled:         {}", status.enabled);
        println!("config version:  {}", status.config_version);
        match status.reply_rules {
            Some(n) => println!("reply policy:    {n} rule(s)"),
            None => println!("reply policy:    none pushed"),
        }
        println!(
            "ready marker:    {}",
            if status.ready { "yes" } else { "no" }
        );
        println!(
            "lock held:       {}",
            if status.locked { "yes" } else { "no" }
        );
        println!("spooled batches: {}", status.spooled_batches.len());
        for b in &status.spooled_batches {
            let total = b.messages.map_or("?".to_string(), |n| n.to_string());
            println!("  {}: {}/{} journalled", b.job_run_id, b.journalled, total);
        }
        println!(
            "outbox:          {} result(s) in {} file(s)",
            status.outbox_results, status.outbox_files
        );
    }
    Ok(EXIT_OK)
}

#[derive(Debug, Serialize)]
struct PolicyRule {
    position: u32,
    code: Option<String>,
    enhanced: Option<String>,
    pattern: Option<String>,
    domain: Option<String>,
    account: Option<String>,
    action: &'static str,
    throttle: &'static str,
    /// False when this runner cannot compile the pattern (the rule is skipped here).
    applied: bool,
}

fn policy(state: &StateDir, args: StatusArgs) -> Result<u8> {
    let config = RunnerConfig::load(state)?;
    let rules = config
        .settings
        .reply_rules()
        .map_err(|e| CliError::new(EXIT_CONFIG, e))?;
    let listed: Vec<PolicyRule> = rules
        .iter()
        .map(|r| PolicyRule {
            position: r.position,
            code: r.code.clone(),
            enhanced: r.enhanced.clone(),
            pattern: r.pattern.clone(),
            domain: r.domain.clone(),
            account: r.account.clone(),
            action: r.action.as_str(),
            throttle: r.throttle.as_str(),
            applied: crate::protocol::reply_rules::Policy::compile(std::slice::from_ref(r))
                .1
                .is_empty(),
        })
        .collect();
    if args.json {
        let json = serde_json::json!({
            "config_version": config.settings.version,
            "pushed": config.settings.reply_policy.is_some(),
            "rules": listed,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&json).context("cannot serialise the policy")?
        );
    } else {
        if config.settings.reply_policy.is_none() {
            println!(
                "no reply policy pushed yet (config version {})",
                config.settings.version
            );
        }
        if !listed.is_empty() {
            println!(
                "{:>5} {:<5} {:<7} {:<16} {:<8} {:<24} PATTERN",
                "POS", "CODE", "ENH", "ACTION", "THROTTLE", "DOMAIN/ACCOUNT"
            );
        }
        for r in &listed {
            let scope = match (&r.domain, &r.account) {
                (Some(d), Some(a)) => format!("{d}/{a}"),
                (Some(d), None) => d.clone(),
                (None, Some(a)) => format!("account {a}"),
                (None, None) => "-".into(),
            };
            println!(
                "{:>5} {:<5} {:<7} {:<16} {:<8} {:<24} {}{}",
                r.position,
                r.code.as_deref().unwrap_or("-"),
                r.enhanced.as_deref().unwrap_or("-"),
                r.action,
                r.throttle,
                scope,
                r.pattern.as_deref().unwrap_or("-"),
                if r.applied {
                    ""
                } else {
                    "  (skipped here: does not compile)"
                }
            );
        }
    }
    Ok(if listed.is_empty() {
        EXIT_NO_WORK
    } else {
        EXIT_OK
    })
}

/// Poll → deliver → poll ... under one lock, with no idle gap: the next batch is asked
/// for while the sessions still deliver the current one (when, see [`Refill`]), so
/// sessions never wait for the HTTP round trip and the claim. The results of a batch ride
/// on the first request after it finished.
fn cycle(state: &StateDir, args: CycleArgs) -> Result<u8> {
    let config = RunnerConfig::load(state)?;
    state.create()?;
    let Some(_lock) = state.try_lock()? else {
        if args.verbose {
            eprintln!("runner-admin cycle: another run holds the lock");
        }
        return Ok(EXIT_NO_WORK);
    };
    let started = Instant::now();
    let budget = Duration::from_secs(
        args.max_seconds
            .unwrap_or(config.settings.poll_interval_seconds.into()),
    );
    let log = |what: &str| {
        if args.verbose {
            eprintln!("runner-admin cycle: {what}");
        }
    };
    let mut did_work = false;
    spool::remove_orphans(state)?;
    let engine = Engine::new(
        state,
        EngineOptions::from_config(&config, args.verbose)?,
        deliver::reply_policy(&config),
    );
    // Batches left by an interrupted run go first: their leases are running.
    let leftovers = spool::list_batches(state)?;
    if !leftovers.is_empty() {
        did_work = true;
        log(&format!(
            "delivering {} leftover batch(es)",
            leftovers.len()
        ));
    }
    for batch in leftovers {
        engine.add(batch)?;
    }

    let mut opts = PollOptions {
        force: args.force,
        timeout: Duration::from_secs(args.timeout.max(1)),
        capacity: None,
    };
    let mut refill = Refill::new(config.settings.max_sessions, config.settings.batch_size);
    let mut dry = false;
    let polled: Result<()> = (|| loop {
        if engine.stopped().is_some() || !engine.lease_too_short().is_empty() {
            return Ok(());
        }
        if started.elapsed() >= budget {
            log("time budget used up");
            return Ok(());
        }
        let low_water = refill.low_water(engine.rate());
        if !dry && engine.queued() <= low_water {
            opts.capacity = Some(refill.capacity());
            let asked_at = Instant::now();
            let (outcome, received) = poll::poll_once_received(state, &config, &opts)?;
            log(&outcome.to_string());
            match outcome {
                PollOutcome::Spooled { job_run_id, .. } => {
                    did_work = true;
                    let batch = SpooledBatch::new(state, &job_run_id);
                    match received {
                        Some(received) => engine.add_received(batch, received)?,
                        None => engine.add(batch)?,
                    }
                    refill.requested(asked_at.elapsed());
                    // The hint was acted on; keep asking until the dispatcher runs dry.
                    opts.force = true;
                }
                PollOutcome::Empty { acknowledged } => {
                    did_work |= acknowledged > 0;
                    dry = true;
                }
                PollOutcome::NotReady | PollOutcome::Disabled => dry = true,
            }
            continue;
        }
        if dry && engine.idle() {
            // Outcomes that finished since the last request go back now, with a request
            // that may bring new work.
            if spool::read_outbox(state)?.is_empty() || !opts.force {
                return Ok(());
            }
            dry = false;
            continue;
        }
        engine.set_low_water(low_water);
        engine.wait(Duration::from_millis(500));
    })();
    // Batches in hand are leased to this runner: they are delivered whatever happened.
    let lease_too_short = engine.lease_too_short();
    let delivered = engine.finish();
    if polled.is_ok() && !spool::read_outbox(state)?.is_empty() {
        // Report what was done, ask for nothing new.
        opts.capacity = Some(0);
        let outcome = poll::poll_once(state, &config, &opts)?;
        log(&format!("final report: {outcome}"));
    }
    let report = delivered?;
    polled?;
    if report.peak_sessions > 0 {
        log(&format!(
            "{} sent, {} deferred, {} failed, {} not attempted, {} unknown; at most {} \
             session(s) at once",
            report.sent,
            report.deferred,
            report.failed,
            report.not_attempted,
            report.unknown,
            report.peak_sessions
        ));
    }
    if let Some(job_run_id) = lease_too_short.first() {
        // Not one message could start before the local lease deadline (a lease no
        // longer than the safety margin): asking again at once would get the same
        // messages back, forever.
        return Err(CliError::new(
            EXIT_TEMPFAIL,
            format!(
                "batch {job_run_id}: no message could start before the local lease \
                 deadline (lease minus lease_safety_margin_seconds = {}); the \
                 dispatcher's lease is too short for this runner",
                config.settings.lease_safety_margin_seconds
            ),
        )
        .into());
    }
    Ok(if did_work { EXIT_OK } else { EXIT_NO_WORK })
}
