//! `runner-send`: deliver every spooled batch over SMTP, journalling each outcome.
//!
//! Guarantees (docs/runner.md): an outcome is written to the batch's journal before the
//! next message starts and fsynced before the next message's final dot (the fsync runs
//! while MAIL, RCPT and DATA are exchanged), so a restart never resends a journalled
//! message and at most one delivered message at a time lacks a durable record; no message
//! starts at or after the local lease deadline (receipt + lease − safety margin, on this
//! runner's clock), those are journalled as not attempted; a journal write failure (disk
//! full) stops sending at once.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::Utc;
use clap::Parser;

use crate::cli::{CliError, EXIT_CODES_HELP, EXIT_DATA, EXIT_NO_WORK, EXIT_OK, EXIT_TEMPFAIL};
use crate::protocol::codec::{self, Limits, RefusedMessage};
use crate::protocol::{Body, JobRun, MessageResult, Outcome};
use crate::reply_rules::Policy;
use crate::runner::config::RunnerConfig;
use crate::runner::reply_policy::BatchGuard;
use crate::runner::spool::{self, BatchMeta, Journal, SpooledBatch};
use crate::runner::state::StateDir;
use crate::smtp::Sender;

/// Deliver every spooled batch over SMTP.
#[derive(Debug, Parser)]
#[command(
    name = "runner-send",
    version,
    about = "Deliver every spooled batch over SMTP, journalling each outcome",
    long_about = "Deliver every spooled batch over SMTP, journalling each outcome before the \
next message starts (its fsync completes before the next message's final dot). A restart resumes from the journal and never resends a \
journalled message; no message starts after the batch's local lease deadline (request time + \
lease - lease_safety_margin_seconds); those are reported as not attempted. Finished \
batches move to outbox/ for the next runner-poll.\n\n\
Every SMTP answer is classified with the reply policy the dispatcher pushed (see \
`runner-admin policy`): a rule that throttles the account, or moves the message to another \
account, sets that SMTP account aside for the rest of the batch; one that throttles the \
domain sets the recipient domain aside. Their messages are reported not attempted with the \
reason, and the reported outcome follows the rule.\n\n\
Exit status: 0 batches were delivered, 3 no spooled batch (or another run holds the \
lock), 65 a spooled batch is unreadable (moved aside as .xml.rejected; the others are \
still sent), 75 the journal or outbox could not be written (disk full?): sending stopped, \
78 runner.toml is missing, invalid or readable by others.",
    after_help = EXIT_CODES_HELP
)]
pub struct Args {
    /// Runner state folder [default: $MAILRUN_RUNNER_DIR, else ~/.local/share/mailrun/runner]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Print one line per message to stderr.
    #[arg(long, short)]
    pub verbose: bool,
    /// Print a JSON summary (batches, sent, deferred, failed, not_attempted) to stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn main(args: Args) -> Result<u8> {
    let state = StateDir::locate(args.state_dir.as_deref())?;
    let config = RunnerConfig::load(&state)?;
    state.create()?;
    let Some(_lock) = state.try_lock()? else {
        if args.verbose {
            eprintln!("runner-send: another run holds the lock");
        }
        return Ok(EXIT_NO_WORK);
    };
    let report = send_all(&state, &config, args.verbose)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).context("cannot serialise report")?
        );
    }
    Ok(if report.batches == 0 {
        EXIT_NO_WORK
    } else {
        EXIT_OK
    })
}

/// What one `send_all` did.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct SendReport {
    pub batches: usize,
    pub sent: usize,
    pub deferred: usize,
    pub failed: usize,
    pub not_attempted: usize,
    /// DATA sent, no answer (docs/quotas.md).
    pub unknown: usize,
}

impl SendReport {
    fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Sent => self.sent += 1,
            Outcome::Deferred => self.deferred += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::NotAttempted => self.not_attempted += 1,
            Outcome::Unknown => self.unknown += 1,
        }
    }
}

/// Delivers every spooled batch; the caller holds the state lock.
pub fn send_all(state: &StateDir, config: &RunnerConfig, verbose: bool) -> Result<SendReport> {
    spool::remove_orphans(state)?;
    let mut report = SendReport::default();
    let mut sender = Sender::new(config.smtp_options()?);
    let policy = reply_policy(config);
    let result = (|| {
        // An unreadable batch does not hold up the others; it is reported at the end.
        let mut rejected: Option<anyhow::Error> = None;
        for batch in spool::list_batches(state)? {
            match send_batch(
                state,
                config,
                &policy,
                &batch,
                &mut sender,
                &mut report,
                verbose,
            ) {
                Ok(()) => report.batches += 1,
                Err(e) if crate::cli::exit_code_of(&e) == EXIT_DATA => {
                    eprintln!("runner-send: {e:#}");
                    rejected.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        match rejected {
            Some(e) => Err(e),
            None => Ok(report),
        }
    })();
    sender.close();
    result
}

/// The pushed reply policy, compiled; a rule this runner cannot compile is skipped with
/// a warning (docs/quotas.md).
fn reply_policy(config: &RunnerConfig) -> Policy {
    let rules = match config.settings.reply_rules() {
        Ok(rules) => rules,
        // RunnerConfig::load validated it; never reached with a loaded config.
        Err(e) => {
            eprintln!("runner-send: reply policy ignored: {e}");
            return Policy::default();
        }
    };
    let (policy, warnings) = Policy::compile(&rules);
    // Once per process: a cycle compiles the policy for every batch it fetches.
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        for w in warnings {
            eprintln!("runner-send: warning: {w}");
        }
    });
    policy
}

/// The batch, and the messages in it this runner cannot accept (reported failed).
fn decode_batch(batch: &SpooledBatch) -> Result<(JobRun, Vec<RefusedMessage>)> {
    let bytes = batch.read_xml()?;
    match codec::decode_lenient(&bytes, &Limits::RESPONSE) {
        Ok((Body::JobRun(run), refused)) if run.job_run_id == batch.id => Ok((run, refused)),
        Ok((Body::JobRun(run), _)) => {
            anyhow::bail!("holds batch {:?}, not {:?}", run.job_run_id, batch.id)
        }
        Ok(_) => anyhow::bail!("is not a JobRun"),
        Err(fault) => anyhow::bail!("cannot be decoded: {fault}"),
    }
}

fn send_batch(
    state: &StateDir,
    config: &RunnerConfig,
    policy: &Policy,
    batch: &SpooledBatch,
    sender: &mut Sender,
    report: &mut SendReport,
    verbose: bool,
) -> Result<()> {
    let (run, refused) = match decode_batch(batch) {
        Ok(decoded) => decoded,
        Err(e) => {
            // Without ids and lease tokens nothing can be reported: keep the file for
            // the operator and let the dispatcher's lease expire (messages are requeued).
            let aside = batch.xml.with_extension("xml.rejected");
            std::fs::rename(&batch.xml, &aside)
                .with_context(|| format!("cannot move {} aside", batch.xml.display()))?;
            return Err(CliError::new(
                EXIT_DATA,
                format!(
                    "spooled batch {} {e:#}; moved to {}",
                    batch.id,
                    aside.display()
                ),
            )
            .into());
        }
    };
    // Without a readable receipt time the lease cannot be trusted: report every message
    // not yet done as not attempted (the dispatcher re-queues them) instead of guessing.
    let meta = batch.read_meta().unwrap_or_else(|e| {
        eprintln!(
            "runner-send: batch {}: {e:#}; its messages are reported not attempted",
            batch.id
        );
        BatchMeta {
            received_at: 0,
            lease_seconds: 0,
        }
    });
    let deadline = meta.deadline(config.settings.lease_safety_margin_seconds);
    let mut journal = Journal::open(&batch.journal)?;
    let done = journal.done();
    let rate = config.settings.send_rate_per_second;
    let interval = (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
    let mut last_start: Option<Instant> = None;
    // Accounts and domains the reply policy set aside, rebuilt from the journal when a
    // batch resumes.
    let mut guard = BatchGuard::new(policy);
    for msg in &run.messages {
        if let Some(r) = journal
            .entries()
            .iter()
            .rev()
            .find(|r| r.message_id == msg.id)
        {
            guard.review(msg, &mut r.clone());
        }
    }

    // Messages the runner cannot accept fail at once, with the codec's reason; the rest
    // of the batch goes out as usual.
    for bad in &refused {
        if done.contains(&bad.id) {
            continue;
        }
        let result = MessageResult {
            job_run_id: run.job_run_id.clone(),
            message_id: bad.id,
            lease_token: bad.lease_token.clone(),
            outcome: Outcome::Failed,
            smtp_code: None,
            enhanced_status: None,
            text: Some(format!(
                "the runner cannot accept this message: {}",
                bad.reason
            )),
            attempted_at: Utc::now(),
            recipients: Vec::new(),
        };
        if verbose {
            eprintln!(
                "runner-send: batch {} message {}: Failed (not accepted: {})",
                run.job_run_id, bad.id, bad.reason
            );
        }
        journal.append(result).map_err(|e| {
            CliError::new(
                EXIT_TEMPFAIL,
                format!("sending stopped: {e:#}; the batch resumes on the next run"),
            )
        })?;
        report.count(Outcome::Failed);
    }

    for msg in &run.messages {
        if done.contains(&msg.id) {
            continue; // journalled by an earlier run: never resend
        }
        let skip = guard.skip_reason(msg).cloned();
        // The rate limit may delay a start; a start delayed past the deadline is no start.
        let wait = match (interval, last_start, &skip) {
            (Some(interval), Some(last), None) => interval.saturating_sub(last.elapsed()),
            _ => Duration::ZERO,
        };
        let deadline_ms = deadline.saturating_mul(1000);
        let wait_ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
        let in_time = Utc::now().timestamp_millis().saturating_add(wait_ms) < deadline_ms;
        if in_time && !wait.is_zero() {
            std::thread::sleep(wait);
        }
        let result = if let Some(aside) = skip {
            // The answer that set the account or domain aside travels along: the
            // dispatcher applies its policy to it (docs/quotas.md).
            MessageResult {
                job_run_id: run.job_run_id.clone(),
                message_id: msg.id,
                lease_token: msg.lease_token.clone(),
                outcome: Outcome::NotAttempted,
                smtp_code: aside.smtp_code,
                enhanced_status: aside.enhanced_status,
                text: Some(aside.reason),
                attempted_at: Utc::now(),
                recipients: Vec::new(),
            }
        } else if !in_time || Utc::now().timestamp_millis() >= deadline_ms {
            MessageResult {
                job_run_id: run.job_run_id.clone(),
                message_id: msg.id,
                lease_token: msg.lease_token.clone(),
                outcome: Outcome::NotAttempted,
                smtp_code: None,
                enhanced_status: None,
                text: Some("local lease deadline passed before the message started".into()),
                attempted_at: Utc::now(),
                recipients: Vec::new(),
            }
        } else {
            last_start = Some(Instant::now());
            let attempted_at = Utc::now();
            // The previous outcome's fsync overlaps this message's MAIL, RCPT and DATA;
            // its final dot waits for it (docs/runner.md).
            let mut unsynced = None;
            let d = sender.deliver_gated(msg, &mut || {
                journal.synced().map_err(|e| {
                    let text = format!("{e:#}");
                    unsynced = Some(e);
                    text
                })
            });
            if let Some(e) = unsynced {
                return Err(CliError::new(
                    EXIT_TEMPFAIL,
                    format!("sending stopped: {e:#}; the batch resumes on the next run"),
                )
                .into());
            }
            let mut result = MessageResult {
                job_run_id: run.job_run_id.clone(),
                message_id: msg.id,
                lease_token: msg.lease_token.clone(),
                outcome: d.outcome,
                smtp_code: d.smtp_code,
                enhanced_status: d.enhanced_status,
                text: d.text,
                attempted_at,
                recipients: d.recipients,
            };
            guard.review(msg, &mut result);
            result
        };
        if verbose {
            eprintln!(
                "runner-send: batch {} message {}: {:?}{}{}",
                run.job_run_id,
                msg.id,
                result.outcome,
                result
                    .smtp_code
                    .map(|c| format!(" {c}"))
                    .unwrap_or_default(),
                result
                    .text
                    .as_deref()
                    .map(|t| format!(" {t}"))
                    .unwrap_or_default()
            );
        }
        let outcome = result.outcome;
        journal.append(result).map_err(|e| {
            CliError::new(
                EXIT_TEMPFAIL,
                format!("sending stopped: {e:#}; the batch resumes on the next run"),
            )
        })?;
        report.count(outcome);
    }

    journal.synced().map_err(|e| {
        CliError::new(
            EXIT_TEMPFAIL,
            format!("sending stopped: {e:#}; the batch resumes on the next run"),
        )
    })?;
    // Everything in this batch has an outcome; report the journal in batch order.
    let mut results: Vec<MessageResult> = Vec::with_capacity(run.messages.len() + refused.len());
    let ids = refused
        .iter()
        .map(|r| r.id)
        .chain(run.messages.iter().map(|m| m.id));
    for id in ids {
        if let Some(r) = journal.entries().iter().rev().find(|r| r.message_id == id) {
            results.push(r.clone());
        }
    }
    spool::finish_batch(state, batch, &results)
        .map_err(|e| CliError::new(EXIT_TEMPFAIL, format!("{e:#}")))?;
    Ok(())
}
