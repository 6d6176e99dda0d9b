//! `runner-send`: deliver every spooled batch over SMTP, journalling each outcome.
//!
//! Guarantees (docs/runner.md): batches go out over up to `max_sessions` SMTP sessions
//! at once ([`crate::runner::deliver`]); an outcome is written to the batch's journal as
//! soon as it is known and made durable before the next final dot on any session (the
//! fsyncs run while the sessions talk, one covering many outcomes), so a restart never
//! resends a journalled message and at most one delivered message per open session lacks
//! a durable record; no message starts at or after the local lease deadline (receipt +
//! lease − safety margin, on this runner's clock), those are journalled as not attempted;
//! a journal write failure (disk full) stops sending at once.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;

use crate::cli::{EXIT_CODES_HELP, EXIT_NO_WORK, EXIT_OK};
use crate::runner::config::RunnerConfig;
use crate::runner::deliver;
use crate::runner::state::StateDir;

/// Deliver every spooled batch over SMTP.
#[derive(Debug, Parser)]
#[command(
    name = "runner-send",
    version,
    about = "Deliver every spooled batch over SMTP, journalling each outcome",
    long_about = "Deliver every spooled batch over SMTP on many sessions at once: up to \
max_sessions in all (default 100) and, per SMTP account, up to the account's own \
maxConnections or max_sessions_per_account (default 20), starting at 5 per account and \
growing with each accepted message, shrinking on 421 and refused connections \
(docs/runner.md, \"Concurrency\"). PIPELINING is used where the server offers it.\n\n\
Each outcome is journalled as soon as it is known, and no session sends a final dot before \
every outcome journalled so far is on disk. A restart resumes from the journal and never \
resends a journalled message (after kill -9, at most one message per open session may go \
out twice); no message starts after the batch's local lease deadline (request time + \
lease - lease_safety_margin_seconds); those are reported as not attempted. Finished \
batches move to outbox/ for the next runner-poll.\n\n\
Every SMTP answer is classified with the reply policy the dispatcher pushed (see \
`runner-admin policy`): a rule that throttles the account, or moves the message to another \
account, sets that SMTP account aside for the rest of the run; one that throttles the \
domain sets the recipient domain aside. Their messages are reported not attempted with the \
reason, and the reported outcome follows the rule.\n\n\
At start it restarts itself once with GLIBC_TUNABLES=glibc.malloc.arena_max=2 added (unless \
an arena_max is set already), so its memory follows the batches being delivered rather \
than the spool.\n\n\
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

pub use crate::runner::deliver::SendReport;

/// Delivers every spooled batch (over many sessions: [`crate::runner::deliver`]); the
/// caller holds the state lock.
pub fn send_all(state: &StateDir, config: &RunnerConfig, verbose: bool) -> Result<SendReport> {
    deliver::send_spooled(state, config, verbose)
}
