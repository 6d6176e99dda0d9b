//! `runner-poll`: one JobRunRequest carrying the outbox's results; spool the answer.
//!
//! Order of effects, each durable before the next: the request goes out with every
//! result in `outbox/`; the dispatcher's JobRun is checked in full; a non-empty batch is
//! spooled (meta, then the exact bytes received); only then are the acknowledged results
//! removed from the outbox. A crash anywhere resends results (the dispatcher applies
//! them idempotently) and never loses a batch it handed out (its lease expires).

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;

use crate::cli::{
    CliError, EXIT_CODES_HELP, EXIT_CONFIG, EXIT_DATA, EXIT_NO_WORK, EXIT_OK, EXIT_TEMPFAIL,
    EXIT_UNAVAILABLE,
};
use crate::protocol::codec::{self, Limits};
use crate::protocol::{Body, FaultReason, JobRun, JobRunRequest, MessageResult, SOFTWARE_VERSION};
use crate::runner::config::RunnerConfig;
use crate::runner::spool::{self, BatchMeta};
use crate::runner::state::{now_unix, remove_if_exists, StateDir};
use crate::web::client::{Client, ClientOptions};

/// Largest JobRun accepted from the dispatcher (the codec's own limits apply too).
pub const MAX_RESPONSE_BYTES: u64 = Limits::RESPONSE.max_bytes as u64;

/// Most results one JobRunRequest carries (about 1 MB of XML at worst-case answer texts).
pub const MAX_RESULTS_PER_REQUEST: usize = 1000;

/// Ask the dispatcher for work, reporting pending results.
#[derive(Debug, Parser)]
#[command(
    name = "runner-poll",
    version,
    about = "Send one JobRunRequest (with pending results) and spool the JobRun answer",
    long_about = "Send one JobRunRequest carrying every result in outbox/, spool a non-empty \
JobRun atomically, and forget the results the dispatcher acknowledged.\n\n\
Without --force it only polls when the `ready` marker (written by JobRunnerReady) exists, \
so cron can call it every minute at no cost.\n\n\
Exit status: 0 a batch was spooled, 3 no work (empty answer, no ready marker, runner \
disabled, or another run holds the lock), 65 the dispatcher answered something invalid \
or refused the request, 69 the dispatcher is unreachable or timed out, 75 the answer was \
cut off, 78 configuration error (runner.toml missing, invalid, readable by others, or \
the dispatcher does not know this runner or its key).",
    after_help = EXIT_CODES_HELP
)]
pub struct Args {
    /// Runner state folder [default: $MAILRUN_RUNNER_DIR, else ~/.local/share/mailrun/runner]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Poll even without a `ready` marker (runners that accept no inbound HTTP).
    #[arg(long)]
    pub force: bool,
    /// Seconds to wait for the dispatcher's whole answer.
    #[arg(long, default_value_t = 60, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
    /// Print what happened to stderr.
    #[arg(long, short)]
    pub verbose: bool,
    /// Print the outcome as JSON to stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn main(args: Args) -> Result<u8> {
    let state = StateDir::locate(args.state_dir.as_deref())?;
    let config = RunnerConfig::load(&state)?;
    state.create()?;
    let Some(_lock) = state.try_lock()? else {
        if args.verbose {
            eprintln!("runner-poll: another run holds the lock");
        }
        return Ok(EXIT_NO_WORK);
    };
    let outcome = poll_once(&state, &config, &PollOptions::from_args(&args))?;
    if args.verbose {
        eprintln!("runner-poll: {outcome}");
    }
    if args.json {
        let json = serde_json::to_string(&outcome)
            .map_err(|e| anyhow::anyhow!("cannot serialise the outcome: {e}"))?;
        println!("{json}");
    }
    Ok(match outcome {
        PollOutcome::Spooled { .. } => EXIT_OK,
        _ => EXIT_NO_WORK,
    })
}

/// How one poll behaves.
#[derive(Debug, Clone)]
pub struct PollOptions {
    pub force: bool,
    pub timeout: Duration,
    /// Ask for at most this many messages (0: only report results). `None`: batch_size.
    pub capacity: Option<u32>,
}

impl PollOptions {
    fn from_args(args: &Args) -> PollOptions {
        PollOptions {
            force: args.force,
            timeout: Duration::from_secs(args.timeout.max(1)),
            capacity: None,
        }
    }
}

/// What one poll did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PollOutcome {
    /// A batch is in the spool.
    Spooled {
        job_run_id: String,
        messages: usize,
        acknowledged: usize,
    },
    /// The dispatcher has no work (results, if any, were delivered).
    Empty { acknowledged: usize },
    /// No `ready` marker and not forced: nothing was sent.
    NotReady,
    /// `enabled = false` in runner.toml.
    Disabled,
}

impl std::fmt::Display for PollOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PollOutcome::Spooled {
                job_run_id,
                messages,
                acknowledged,
            } => write!(
                f,
                "spooled batch {job_run_id} with {messages} message(s); {acknowledged} result(s) acknowledged"
            ),
            PollOutcome::Empty { acknowledged } => {
                write!(f, "no work; {acknowledged} result(s) acknowledged")
            }
            PollOutcome::NotReady => f.write_str("no ready marker; not polling (use --force)"),
            PollOutcome::Disabled => f.write_str("runner is disabled in runner.toml"),
        }
    }
}

/// One JobRunRequest/JobRun exchange; the caller holds the state lock.
pub fn poll_once(
    state: &StateDir,
    config: &RunnerConfig,
    opts: &PollOptions,
) -> Result<PollOutcome> {
    if !config.enabled {
        return Ok(PollOutcome::Disabled);
    }
    let ready_path = state.ready_path();
    let marker = std::fs::read(&ready_path).ok();
    if marker.is_none() && !opts.force {
        return Ok(PollOutcome::NotReady);
    }
    let outbox = spool::read_outbox(state)?;
    // Bounded so one request stays far below the dispatcher's body limit however large the
    // backlog; the rest rides on the next poll (acknowledgement is per result).
    let results: Vec<MessageResult> = outbox
        .iter()
        .flat_map(|f| f.results.iter().cloned())
        .take(MAX_RESULTS_PER_REQUEST)
        .collect();
    let request = Body::JobRunRequest(JobRunRequest {
        runner_id: config.runner_id.clone(),
        capacity: opts.capacity.unwrap_or(config.settings.batch_size),
        software_version: SOFTWARE_VERSION.to_string(),
        config_version: config.settings.version,
        results,
    });
    let body = codec::encode(&request);
    let key = config.signing_key()?;
    let client = Client::new(ClientOptions {
        connect_timeout: Duration::from_secs(10).min(opts.timeout),
        timeout: opts.timeout,
        allow_plain_http: config.allow_plain_http,
        max_response_bytes: MAX_RESPONSE_BYTES,
    });
    // The lease clock starts before the request leaves: the dispatcher's lease cannot
    // have started earlier, so the local deadline never lies after the real one.
    let requested_at = now_unix();
    let response = client
        .post_signed(
            &config.dispatcher_url,
            &key,
            codec::soap_action(&request),
            &body,
        )
        .map_err(|e| CliError::new(e.exit_code(), format!("dispatcher: {e}")))?;
    let run = match codec::decode_with(&response.body, &Limits::RESPONSE) {
        Ok(Body::JobRun(run)) if response.status == 200 && response.authenticated => run,
        Ok(Body::Fault(fault)) => {
            let code = match fault.reason {
                FaultReason::MissingSignature
                | FaultReason::BadSignature
                | FaultReason::StaleTimestamp
                | FaultReason::UnknownRunner
                | FaultReason::RunnerDisabled
                | FaultReason::PlainHttpRefused => EXIT_CONFIG,
                FaultReason::Unavailable | FaultReason::Internal => EXIT_UNAVAILABLE,
                _ => EXIT_DATA,
            };
            return Err(
                CliError::new(code, format!("dispatcher refused the request: {fault}")).into(),
            );
        }
        Ok(other) => {
            return Err(CliError::new(
                EXIT_DATA,
                format!(
                    "dispatcher answered {} with HTTP {}, expected a JobRun",
                    codec::operation_name(&other),
                    response.status
                ),
            )
            .into())
        }
        Err(fault) => {
            return Err(CliError::new(
                EXIT_DATA,
                format!("dispatcher sent an invalid JobRun: {fault}"),
            )
            .into())
        }
    };
    check_job_run(&run)
        .map_err(|e| CliError::new(EXIT_DATA, format!("dispatcher sent an invalid JobRun: {e}")))?;

    let outcome = if run.messages.is_empty() {
        PollOutcome::Empty { acknowledged: 0 }
    } else {
        let batch = spool::SpooledBatch::new(state, &run.job_run_id);
        // A batch already spooled (an answer seen twice) keeps its journal and meta.
        if !batch.xml.exists() {
            spool::spool_batch(
                state,
                &run.job_run_id,
                &response.body,
                BatchMeta {
                    received_at: requested_at,
                    lease_seconds: run.lease_seconds,
                },
            )
            .map_err(|e| {
                // The dispatcher re-queues the batch when its lease expires.
                CliError::new(EXIT_TEMPFAIL, format!("cannot spool the batch: {e:#}"))
            })?;
        }
        PollOutcome::Spooled {
            job_run_id: run.job_run_id.clone(),
            messages: run.messages.len(),
            acknowledged: 0,
        }
    };
    let acknowledged = spool::acknowledge(outbox, &run.acknowledged)?;
    Ok(match outcome {
        PollOutcome::Empty { .. } => {
            // No more work: the hint is used up, unless a new one arrived meanwhile.
            if marker.is_some() && std::fs::read(&ready_path).ok() == marker {
                remove_if_exists(&ready_path)?;
            }
            PollOutcome::Empty { acknowledged }
        }
        PollOutcome::Spooled {
            job_run_id,
            messages,
            ..
        } => PollOutcome::Spooled {
            job_run_id,
            messages,
            acknowledged,
        },
        other => other,
    })
}

/// Everything the runner relies on before it spools a batch.
fn check_job_run(run: &JobRun) -> Result<(), String> {
    if run.messages.is_empty() {
        return Ok(());
    }
    if !spool::valid_batch_id(&run.job_run_id) {
        return Err(format!(
            "job run id {:?} is not 1-128 characters of letters, digits, - _ .",
            run.job_run_id
        ));
    }
    if run.lease_seconds == 0 {
        return Err("lease_seconds is 0".into());
    }
    let mut ids = HashSet::new();
    for m in &run.messages {
        if !ids.insert(m.id) {
            return Err(format!("message {} appears twice", m.id));
        }
        if m.lease_token.is_empty() {
            return Err(format!("message {} has no lease token", m.id));
        }
    }
    Ok(())
}
