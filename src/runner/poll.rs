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

/// One poll: a JobRunRequest asking for work, preceded by report-only requests while
/// the outbox holds more results than one request carries. The caller holds the state
/// lock.
///
/// Results go oldest first, and all of them before new work is asked for: a request that
/// asked for a batch while results stayed behind would lengthen the backlog, and the
/// leases of the messages whose outcome sits in the outbox would run out (the dispatcher
/// re-queues them and they are delivered twice).
pub fn poll_once(
    state: &StateDir,
    config: &RunnerConfig,
    opts: &PollOptions,
) -> Result<PollOutcome> {
    poll_once_received(state, config, opts).map(|(outcome, _)| outcome)
}

/// A spooled batch as decoded on receipt: what the spool file holds, without reading and
/// decoding it again.
pub struct Received {
    pub run: JobRun,
    pub refused: Vec<codec::RefusedMessage>,
}

/// [`poll_once`], and with a spooled batch the batch itself.
pub fn poll_once_received(
    state: &StateDir,
    config: &RunnerConfig,
    opts: &PollOptions,
) -> Result<(PollOutcome, Option<Received>)> {
    if !config.enabled {
        return Ok((PollOutcome::Disabled, None));
    }
    let ready_path = state.ready_path();
    let marker = std::fs::read(&ready_path).ok();
    if marker.is_none() && !opts.force {
        return Ok((PollOutcome::NotReady, None));
    }
    let mut acknowledged = 0;
    loop {
        let outbox = spool::read_outbox(state)?;
        let pending: usize = outbox.iter().map(|f| f.results.len()).sum();
        let backlog = pending > MAX_RESULTS_PER_REQUEST;
        let capacity = if backlog {
            0
        } else {
            opts.capacity.unwrap_or(config.settings.batch_size)
        };
        let results = oldest_results(&outbox, MAX_RESULTS_PER_REQUEST);
        let sent = results.len();
        let held = spool::held_batches(state)?;
        let exchange = exchange(config, opts, results, capacity, held)?;
        // Spooled before the acknowledged results are forgotten: a crash in between
        // resends results (applied idempotently), never loses a batch.
        let spooled = spool_job_run(state, &exchange)?;
        let acked = spool::acknowledge(outbox, &exchange.run.acknowledged)?;
        acknowledged += acked;
        if let Some((job_run_id, messages)) = spooled {
            let received = Received {
                run: exchange.run,
                refused: exchange.refused,
            };
            let outcome = PollOutcome::Spooled {
                job_run_id,
                messages,
                acknowledged,
            };
            return Ok((outcome, Some(received)));
        }
        if backlog {
            if acked == 0 {
                // Without progress this loop would never end.
                return Err(CliError::new(
                    EXIT_DATA,
                    format!(
                        "the dispatcher acknowledged none of the {sent} results reported; \
                         they stay in the outbox"
                    ),
                )
                .into());
            }
            continue;
        }
        // No more work: the hint is used up, unless a new one arrived meanwhile.
        if marker.is_some() && std::fs::read(&ready_path).ok() == marker {
            remove_if_exists(&ready_path)?;
        }
        return Ok((PollOutcome::Empty { acknowledged }, None));
    }
}

/// At most `max` results of the outbox, oldest attempt first (file names are batch ids,
/// which say nothing about age).
fn oldest_results(outbox: &[spool::OutboxFile], max: usize) -> Vec<MessageResult> {
    let mut all: Vec<&MessageResult> = outbox.iter().flat_map(|f| f.results.iter()).collect();
    all.sort_by_key(|r| (r.attempted_at, r.message_id));
    all.into_iter().take(max).cloned().collect()
}

/// A JobRun as received, checked in full.
struct Exchange {
    run: JobRun,
    /// Messages of `run` set aside as unacceptable (runner-send reports them failed).
    refused: Vec<codec::RefusedMessage>,
    body: Vec<u8>,
    /// Runner clock when the request left (the lease cannot have started earlier).
    requested_at: i64,
}

/// Sends one JobRunRequest and checks the answer.
fn exchange(
    config: &RunnerConfig,
    opts: &PollOptions,
    results: Vec<MessageResult>,
    capacity: u32,
    held_job_runs: Option<Vec<String>>,
) -> Result<Exchange> {
    let request = Body::JobRunRequest(JobRunRequest {
        runner_id: config.runner_id.clone(),
        capacity,
        software_version: SOFTWARE_VERSION.to_string(),
        config_version: config.settings.version,
        results,
        held_job_runs,
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
    // Lenient: a message this runner cannot accept is reported failed by runner-send;
    // refusing the whole batch would strand its neighbours until the lease expires.
    let (run, refused) = match codec::decode_lenient(&response.body, &Limits::RESPONSE) {
        Ok((Body::JobRun(run), refused)) if response.status == 200 && response.authenticated => {
            (run, refused)
        }
        Ok((Body::Fault(fault), _)) => {
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
        Ok((other, _)) => {
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
    check_job_run(&run, &refused)
        .map_err(|e| CliError::new(EXIT_DATA, format!("dispatcher sent an invalid JobRun: {e}")))?;
    Ok(Exchange {
        run,
        refused,
        body: response.body,
        requested_at,
    })
}

/// Spools a non-empty batch; its id and size.
fn spool_job_run(state: &StateDir, exchange: &Exchange) -> Result<Option<(String, usize)>> {
    let run = &exchange.run;
    let messages = run.messages.len() + exchange.refused.len();
    if messages == 0 {
        return Ok(None);
    }
    if spool::batch_received_before(state, &run.job_run_id)? {
        // Its messages were (or are being) delivered: spooling it again would send them
        // twice. Nothing of this answer is used, its acknowledgements neither.
        return Err(CliError::new(
            EXIT_DATA,
            format!(
                "the dispatcher answered with batch {}, which this runner already received \
                 (a replayed answer?); ignored",
                run.job_run_id
            ),
        )
        .into());
    }
    spool::remember_received(state, &run.job_run_id, now_unix())
        .map_err(|e| CliError::new(EXIT_TEMPFAIL, format!("cannot spool the batch: {e:#}")))?;
    spool::spool_batch(
        state,
        &run.job_run_id,
        &exchange.body,
        BatchMeta {
            received_at: exchange.requested_at,
            lease_seconds: run.lease_seconds,
        },
    )
    .map_err(|e| {
        // The dispatcher re-queues the batch when its lease expires.
        CliError::new(EXIT_TEMPFAIL, format!("cannot spool the batch: {e:#}"))
    })?;
    Ok(Some((run.job_run_id.clone(), messages)))
}

/// Everything the runner relies on before it spools a batch.
fn check_job_run(run: &JobRun, refused: &[codec::RefusedMessage]) -> Result<(), String> {
    if run.messages.is_empty() && refused.is_empty() {
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
    let identities = run
        .messages
        .iter()
        .map(|m| (m.id, &m.lease_token))
        .chain(refused.iter().map(|r| (r.id, &r.lease_token)));
    for (id, lease_token) in identities {
        if !ids.insert(id) {
            return Err(format!("message {id} appears twice"));
        }
        if lease_token.is_empty() {
            return Err(format!("message {id} has no lease token"));
        }
    }
    Ok(())
}
