//! Delivery of spooled batches over many SMTP sessions at once (docs/runner.md,
//! "Concurrency").
//!
//! One process, a thread per session: `max_sessions` in all, and per SMTP account at most
//! its `maxConnections` (or the runner's `max_sessions_per_account`). Like Postfix's
//! scheduler, an account starts at [`INITIAL_WINDOW`] sessions, gains one with every
//! message it accepts, and loses one on a 421, a refused or timed-out connection; an
//! account none of whose sessions could be opened is given up for this run (its messages
//! are deferred with the reason). A worker keeps its session across messages of the
//! account, and across batches: batches added while others are being delivered
//! ([`Engine::add`]) join the same queues, so sessions never wait for the next poll.
//!
//! Durability, for N sessions: an outcome is appended to its batch's journal as soon as
//! it is known, and no session sends a final dot before every outcome appended so far
//! (of every batch) is on disk; the journals' fsync threads commit them in groups. After
//! kill -9 at most the messages between their final dot and the append of their outcome
//! are sent again: at most one per open session.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::Utc;

use crate::cli::{CliError, EXIT_DATA, EXIT_TEMPFAIL};
use crate::protocol::codec::{self, Limits, RefusedMessage};
use crate::protocol::reply_rules::Policy;
use crate::protocol::{Body, JobRun, MessageResult, OutboundMessage, Outcome};
use crate::runner::config::RunnerConfig;
use crate::runner::refill::Pace;
use crate::runner::reply_policy::BatchGuard;
use crate::runner::spool::{self, BatchMeta, Journal, SpooledBatch};
use crate::runner::state::StateDir;
use crate::smtp::{ConnectFailure, Delivery, Sender, SmtpOptions};

/// Sessions an account starts with (Postfix's `initial_destination_concurrency`).
pub const INITIAL_WINDOW: usize = 5;

/// A worker's stack: SMTP, TLS and MIME building need little; many threads fit where a
/// host limits memory.
const WORKER_STACK_BYTES: usize = 512 * 1024;

/// What a run of the engine did (the `--json` summary of runner-send).
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct SendReport {
    pub batches: usize,
    pub sent: usize,
    pub deferred: usize,
    pub failed: usize,
    pub not_attempted: usize,
    /// DATA sent, no answer (docs/quotas.md).
    pub unknown: usize,
    /// Most sessions open at once.
    pub peak_sessions: usize,
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

/// Limits and behaviour of one engine.
#[derive(Clone)]
pub struct EngineOptions {
    pub max_sessions: usize,
    pub max_sessions_per_account: usize,
    pub smtp: SmtpOptions,
    /// Messages per second across the runner (0: unlimited).
    pub send_rate_per_second: f64,
    pub lease_safety_margin_seconds: u32,
    pub verbose: bool,
}

impl EngineOptions {
    pub fn from_config(config: &RunnerConfig, verbose: bool) -> Result<EngineOptions> {
        Ok(EngineOptions {
            max_sessions: config.settings.max_sessions.max(1) as usize,
            max_sessions_per_account: config.settings.max_sessions_per_account.max(1) as usize,
            smtp: config.smtp_options()?,
            send_rate_per_second: config.settings.send_rate_per_second,
            lease_safety_margin_seconds: config.settings.lease_safety_margin_seconds,
            verbose,
        })
    }
}

/// Delivers batches with a pool of session threads; see the module docs.
pub struct Engine {
    shared: Arc<Shared>,
}

struct Shared {
    state_dir: StateDir,
    options: EngineOptions,
    /// Accounts and domains the reply policy set aside: for the rest of the run, over
    /// every batch (a batch fetched a moment later would only hit the same answer).
    guard: Mutex<BatchGuard>,
    sched: Mutex<Sched>,
    /// Idle workers wait here for work (or for the run to close or stop). Kept apart from
    /// `progress`: a worker going idle must not wake the other idle workers, which would
    /// wake each other in turn and spin both cores while a batch is being fetched.
    work: Condvar,
    /// The owner waits here: a message taken, a batch finished, a worker gone, a stop.
    progress: Condvar,
}

struct Sched {
    batches: Vec<BatchRun>,
    accounts: HashMap<String, AccountRun>,
    /// Messages not yet taken by a worker.
    queued: usize,
    /// The owner is woken when a worker takes a message and no more than this many
    /// are left queued (it tops the queues up then).
    low_water: usize,
    pace: Pace,
    /// Handles not yet joined.
    workers: Vec<JoinHandle<()>>,
    /// Workers running (the handles may have been taken by a join already).
    live_workers: usize,
    idle_workers: usize,
    sessions_open: usize,
    /// No batch will be added any more: workers leave once nothing is queued.
    closing: bool,
    /// A journal or outbox write failed: every worker stops before its next final dot.
    stopped: Option<String>,
    /// Spooled batches that could not be read (moved aside).
    rejected: Vec<String>,
    /// Batches of which not one message could start before the local lease deadline.
    lease_too_short: Vec<String>,
    /// Rate limit: when the next message may start.
    next_start: Option<Instant>,
    spawn_failed: bool,
    report: SendReport,
}

struct BatchRun {
    batch: SpooledBatch,
    run: Arc<JobRun>,
    refused: Vec<RefusedMessage>,
    /// Closed (None) once the batch is finished: no thread or file is kept per batch.
    journal: Option<Arc<Journal>>,
    /// No message may start at or after this unix time in milliseconds.
    deadline_ms: i64,
    /// Messages without an outcome yet.
    remaining: usize,
    started: usize,
    deadline_skips: usize,
    done: bool,
}

/// One message waiting for a session: (batch index, message index).
type Job = (usize, usize);

struct AccountRun {
    /// Host, port and login, to end a session to it.
    account: crate::protocol::SmtpAccount,
    queue: VecDeque<Job>,
    /// Workers holding (or opening) a session to the account.
    active: usize,
    limit: usize,
    window: usize,
    /// No session could be opened and none is left: the rest of its messages get this.
    given_up: Option<Delivery>,
}

impl AccountRun {
    /// Whether one more session may be opened.
    fn has_room(&self) -> bool {
        self.active < self.window.min(self.limit)
    }
}

impl Engine {
    pub fn new(state_dir: &StateDir, options: EngineOptions, policy: Policy) -> Engine {
        let policy = Arc::new(policy);
        let low_water = 2 * options.max_sessions.max(1);
        Engine {
            shared: Arc::new(Shared {
                state_dir: state_dir.clone(),
                options,
                guard: Mutex::new(BatchGuard::new(policy)),
                sched: Mutex::new(Sched {
                    batches: Vec::new(),
                    accounts: HashMap::new(),
                    queued: 0,
                    low_water,
                    pace: Pace::default(),
                    workers: Vec::new(),
                    live_workers: 0,
                    idle_workers: 0,
                    sessions_open: 0,
                    closing: false,
                    stopped: None,
                    rejected: Vec::new(),
                    lease_too_short: Vec::new(),
                    next_start: None,
                    spawn_failed: false,
                    report: SendReport::default(),
                }),
                work: Condvar::new(),
                progress: Condvar::new(),
            }),
        }
    }

    /// Adds a spooled batch, read from its file: its messages without an outcome join the
    /// accounts' queues. An unreadable batch is moved aside (reported by [`Engine::finish`]).
    pub fn add(&self, batch: SpooledBatch) -> Result<()> {
        let (run, refused) = match decode_batch(&batch) {
            Ok(decoded) => decoded,
            Err(e) => {
                // Without ids and lease tokens nothing can be reported: keep the file for
                // the operator and let the dispatcher's lease expire (messages are
                // requeued).
                let aside = batch.xml.with_extension("xml.rejected");
                std::fs::rename(&batch.xml, &aside)
                    .with_context(|| format!("cannot move {} aside", batch.xml.display()))?;
                let text = format!(
                    "spooled batch {} {e:#}; moved to {}",
                    batch.id,
                    aside.display()
                );
                eprintln!("runner-send: {text}");
                self.shared.lock().rejected.push(text);
                return Ok(());
            }
        };
        self.add_decoded(batch, run, refused)
    }

    /// Adds a batch just spooled, as decoded on receipt (the file holds the same bytes).
    pub fn add_received(
        &self,
        batch: SpooledBatch,
        received: crate::runner::poll::Received,
    ) -> Result<()> {
        if received.run.job_run_id != batch.id {
            anyhow::bail!(
                "received batch {:?} spooled as {:?}",
                received.run.job_run_id,
                batch.id
            );
        }
        self.add_decoded(batch, received.run, received.refused)
    }

    fn add_decoded(
        &self,
        batch: SpooledBatch,
        run: JobRun,
        refused: Vec<RefusedMessage>,
    ) -> Result<()> {
        // Without a readable receipt time the lease cannot be trusted: every message not
        // yet done is reported not attempted (the dispatcher re-queues them).
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
        let deadline_ms = meta
            .deadline(self.shared.options.lease_safety_margin_seconds)
            .saturating_mul(1000);
        let journal = Arc::new(Journal::open(&batch.journal)?);
        // Accounts and domains the reply policy set aside, rebuilt from the journal when
        // a batch resumes.
        let latest = latest_outcomes(journal.entries());
        {
            let mut guard = self.shared.guard();
            for msg in &run.messages {
                if let Some(r) = latest.get(&msg.id) {
                    guard.review(msg, &mut r.clone());
                }
            }
        }
        let done = |id: &i64| latest.contains_key(id);
        let run = Arc::new(run);
        let mut sched = self.shared.lock();
        let index = sched.batches.len();
        let mut remaining = 0;
        for bad in refused.iter().filter(|b| !done(&b.id)) {
            // Fails at once with the codec's reason; the rest of the batch goes out.
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
            if self.shared.options.verbose {
                eprintln!(
                    "runner-send: batch {} message {}: Failed (not accepted: {})",
                    run.job_run_id, bad.id, bad.reason
                );
            }
            journal.append(result).map_err(stopped)?;
            sched.report.count(Outcome::Failed);
        }
        for (i, msg) in run.messages.iter().enumerate() {
            if done(&msg.id) {
                continue; // journalled by an earlier run: never resend
            }
            remaining += 1;
            let per_account = self.shared.options.max_sessions_per_account;
            let account = sched
                .accounts
                .entry(msg.account.name.clone())
                .or_insert_with(|| AccountRun {
                    account: msg.account.clone(),
                    queue: VecDeque::new(),
                    active: 0,
                    limit: per_account,
                    window: INITIAL_WINDOW,
                    given_up: None,
                });
            // The account's own cap travels with it in the JobRun.
            account.limit = msg
                .account
                .max_connections
                .map_or(per_account, |n| n.max(1) as usize);
            account.queue.push_back((index, i));
            sched.queued += 1;
        }
        sched.batches.push(BatchRun {
            batch,
            run,
            refused,
            journal: Some(journal),
            deadline_ms,
            remaining,
            started: 0,
            deadline_skips: 0,
            done: false,
        });
        spawn_workers(&self.shared, &mut sched);
        drop(sched);
        if remaining == 0 {
            // Everything journalled already (a run killed after its last append).
            finish_batch(&self.shared, index)?;
            self.shared.progress.notify_all();
        }
        self.shared.work.notify_all();
        Ok(())
    }

    /// The most sessions open at once.
    pub fn max_sessions(&self) -> usize {
        self.shared.options.max_sessions
    }

    /// Messages not yet taken by a session.
    pub fn queued(&self) -> usize {
        self.shared.lock().queued
    }

    /// Wake [`Engine::wait`] once no more than `n` messages are queued.
    pub fn set_low_water(&self, n: usize) {
        self.shared.lock().low_water = n;
    }

    /// Messages a second the sessions finish while they have work (see [`Pace`]).
    pub fn rate(&self) -> Option<f64> {
        self.shared.lock().pace.rate(Instant::now())
    }

    /// Whether every added batch has its outcomes in the outbox.
    pub fn idle(&self) -> bool {
        let sched = self.shared.lock();
        sched.batches.iter().all(|b| b.done) || sched.stopped.is_some()
    }

    /// Why delivery stopped (a journal or outbox write failed), if it did.
    pub fn stopped(&self) -> Option<String> {
        self.shared.lock().stopped.clone()
    }

    /// Batches of which not one message could start before the local lease deadline.
    pub fn lease_too_short(&self) -> Vec<String> {
        self.shared.lock().lease_too_short.clone()
    }

    /// Waits until something changed (a batch finished, a message was taken) or the
    /// timeout passed.
    pub fn wait(&self, timeout: Duration) {
        let sched = self.shared.lock();
        let _ = self
            .shared
            .progress
            .wait_timeout(sched, timeout)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }

    /// Delivers what is left, closes every session and reports. Errors: a journal or
    /// outbox write failed (75), or a spooled batch was unreadable (65; the others were
    /// still delivered).
    pub fn finish(self) -> Result<SendReport> {
        self.join_workers();
        let sched = self.shared.lock();
        if let Some(e) = &sched.stopped {
            return Err(CliError::new(
                EXIT_TEMPFAIL,
                format!("sending stopped: {e}; the batch resumes on the next run"),
            )
            .into());
        }
        if let Some(first) = sched.rejected.first() {
            return Err(CliError::new(EXIT_DATA, first.clone()).into());
        }
        Ok(sched.report)
    }
}

/// Starts workers while queued work could use a session no idle worker offers (a new
/// batch, or an account whose window grew).
fn spawn_workers(shared: &Arc<Shared>, sched: &mut Sched) {
    let max = shared.options.max_sessions;
    loop {
        let useful: usize = sched
            .accounts
            .values()
            .filter(|a| !a.queue.is_empty())
            .map(|a| {
                if a.given_up.is_some() {
                    1
                } else {
                    a.window.min(a.limit).saturating_sub(a.active)
                }
            })
            .sum::<usize>()
            .min(sched.queued);
        let live = sched.live_workers;
        if sched.spawn_failed || live >= max || useful <= sched.idle_workers {
            return;
        }
        let shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("smtp-{live}"))
            .stack_size(WORKER_STACK_BYTES)
            .spawn(move || worker(&shared));
        match spawned {
            Ok(handle) => {
                sched.workers.push(handle);
                sched.live_workers += 1;
                // Counted idle until it takes a message, so the next add does not
                // start another for the same work.
                sched.idle_workers += 1;
            }
            Err(e) => {
                // Hosts limit threads per account: deliver with what we have.
                eprintln!(
                    "runner-send: warning: cannot start more than {live} SMTP session \
                     thread(s) ({e}); continuing with those"
                );
                sched.spawn_failed = true;
                if live == 0 {
                    sched.stopped = Some(format!("cannot start a thread: {e}"));
                }
                return;
            }
        }
    }
}

impl Engine {
    /// Lets the workers finish what is queued and waits for them, including any a
    /// growing window started meanwhile.
    fn join_workers(&self) {
        self.shared.lock().closing = true;
        loop {
            let workers = std::mem::take(&mut self.shared.lock().workers);
            if workers.is_empty() {
                return;
            }
            self.shared.work.notify_all();
            for w in workers {
                let _ = w.join();
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.join_workers();
    }
}

impl Shared {
    fn guard(&self) -> MutexGuard<'_, BatchGuard> {
        self.guard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock(&self) -> MutexGuard<'_, Sched> {
        // Every change to the schedule is complete before anything that can panic.
        self.sched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every outcome appended so far, of every batch, is on disk: called before each
    /// final dot.
    fn sync_journals(&self) -> Result<(), String> {
        let journals: Vec<Arc<Journal>> = {
            let sched = self.lock();
            if let Some(e) = &sched.stopped {
                return Err(e.clone());
            }
            sched
                .batches
                .iter()
                .filter(|b| !b.done)
                .filter_map(|b| b.journal.clone())
                .collect()
        };
        for j in journals {
            j.synced().map_err(|e| {
                let text = format!("{e:#}");
                self.stop(&text);
                text
            })?;
        }
        Ok(())
    }

    fn stop(&self, why: &str) {
        let mut sched = self.lock();
        sched.stopped.get_or_insert_with(|| why.to_string());
        drop(sched);
        self.work.notify_all();
        self.progress.notify_all();
    }
}

fn stopped(e: anyhow::Error) -> anyhow::Error {
    CliError::new(
        EXIT_TEMPFAIL,
        format!("sending stopped: {e:#}; the batch resumes on the next run"),
    )
    .into()
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

/// What a worker was given to do.
enum Task {
    /// Deliver this message on the worker's session to its account.
    Deliver(Job),
    /// The account was given up: record this outcome without a session.
    GivenUp(Job, Delivery),
    /// Only end the session named with it.
    Release,
}

/// One session thread: takes messages, keeps its session for the account while that
/// account has work, moves to another account when it has none.
fn worker(shared: &Arc<Shared>) {
    // A bug must not leave a taken message without an outcome and the run waiting for it
    // forever: the run stops (the batch resumes on the next run), and the caller says so.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(shared)));
    if outcome.is_err() {
        let mut sched = shared.lock();
        sched.live_workers = sched.live_workers.saturating_sub(1);
        drop(sched);
        shared.stop("internal error in an SMTP session thread (see the message above)");
    }
}

fn work(shared: &Arc<Shared>) {
    let mut sender = Sender::new(shared.options.smtp.clone());
    // The account whose session this worker holds (counted in its `active`).
    let mut holding: Option<String> = None;
    // Spawned as idle (so one `add` does not start two workers for the same work).
    shared.lock().idle_workers -= 1;
    loop {
        let sched = shared.lock();
        let (mut sched, picked) = next_task(shared, sched, &mut holding);
        let Some((task, release)) = picked else {
            if let Some(name) = holding.take() {
                if let Some(a) = sched.accounts.get_mut(&name) {
                    a.active = a.active.saturating_sub(1);
                }
                sched.sessions_open = sched.sessions_open.saturating_sub(1);
            }
            sched.live_workers -= 1;
            drop(sched);
            sender.close();
            // Its account has room for another session now.
            shared.work.notify_all();
            shared.progress.notify_all();
            return;
        };
        let running_low = sched.queued <= sched.low_water;
        drop(sched);
        if running_low {
            shared.progress.notify_all();
        }
        if let Some(account) = release {
            sender.release(&account);
        }
        match task {
            Task::Release => {}
            Task::GivenUp(job, delivery) => record(shared, job, Recorded::Delivered(delivery)),
            Task::Deliver(job) => deliver_one(shared, &mut sender, &mut holding, job),
        }
    }
}

/// Picks the next task under the lock; waits while nothing can be done. `None`: the
/// worker is done (closing and nothing queued, or delivery stopped). Returned with it:
/// an account whose session the worker must end first.
fn next_task<'a>(
    shared: &'a Shared,
    mut sched: MutexGuard<'a, Sched>,
    holding: &mut Option<String>,
) -> (MutexGuard<'a, Sched>, Option<Picked>) {
    loop {
        if sched.stopped.is_some() {
            return (sched, None);
        }
        // Messages of a given-up account need no session.
        let given_up = sched
            .accounts
            .iter()
            .find(|(_, a)| a.given_up.is_some() && !a.queue.is_empty())
            .map(|(name, _)| name.clone());
        if let Some(name) = given_up {
            let a = sched.accounts.get_mut(&name).expect("found above");
            let job = a.queue.pop_front().expect("not empty");
            let delivery = a.given_up.clone().expect("given up");
            sched.queued -= 1;
            return (sched, Some((Task::GivenUp(job, delivery), None)));
        }
        // The account this worker holds a session to, while it has work and its window
        // still counts this session.
        if let Some(name) = holding.clone() {
            let a = sched.accounts.get_mut(&name).expect("held account exists");
            if !a.queue.is_empty() && a.active <= a.window.min(a.limit) {
                let job = a.queue.pop_front().expect("not empty");
                sched.queued -= 1;
                return (sched, Some((Task::Deliver(job), None)));
            }
        }
        // Another account with room for a session: the one with the fewest sessions,
        // then the oldest waiting message.
        let candidate = sched
            .accounts
            .iter()
            .filter(|(name, a)| {
                !a.queue.is_empty() && a.has_room() && holding.as_deref() != Some(name.as_str())
            })
            .min_by_key(|(_, a)| (a.active, a.queue.front().copied()))
            .map(|(name, _)| name.clone());
        if let Some(name) = candidate {
            let mut release = None;
            if let Some(old) = holding.take() {
                if let Some(a) = sched.accounts.get_mut(&old) {
                    a.active = a.active.saturating_sub(1);
                }
                release = account_of(&sched, &old);
            } else {
                sched.sessions_open += 1;
                sched.report.peak_sessions = sched.report.peak_sessions.max(sched.sessions_open);
            }
            let a = sched.accounts.get_mut(&name).expect("found above");
            a.active += 1;
            let job = a.queue.pop_front().expect("not empty");
            sched.queued -= 1;
            *holding = Some(name);
            return (sched, Some((Task::Deliver(job), release)));
        }
        if sched.queued == 0 && sched.closing {
            return (sched, None);
        }
        // A session to an account whose queue ran dry stays open for the next batch;
        // one the account's window no longer counts is ended.
        if let Some(name) = holding.clone() {
            let over = {
                let a = &sched.accounts[&name];
                a.active > a.window.min(a.limit)
            };
            if over {
                if let Some(a) = sched.accounts.get_mut(&name) {
                    a.active -= 1;
                }
                sched.sessions_open = sched.sessions_open.saturating_sub(1);
                *holding = None;
                let release = account_of(&sched, &name);
                return (sched, Some((Task::Release, release)));
            }
        }
        sched.idle_workers += 1;
        sched = shared
            .work
            .wait_timeout(sched, Duration::from_secs(1))
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0;
        sched.idle_workers = sched.idle_workers.saturating_sub(1);
    }
}

/// A task and an account whose session must be ended first.
type Picked = (Task, Option<crate::protocol::SmtpAccount>);

/// The SMTP account (host, port, login) of an account name.
fn account_of(sched: &Sched, name: &str) -> Option<crate::protocol::SmtpAccount> {
    sched.accounts.get(name).map(|a| a.account.clone())
}

/// What becomes of a message taken by a worker.
enum Recorded {
    Delivered(Delivery),
    /// Not started: set aside by the reply policy, or past the lease deadline.
    NotAttempted {
        text: String,
        smtp_code: Option<u16>,
        enhanced_status: Option<String>,
        deadline: bool,
    },
}

fn deliver_one(shared: &Arc<Shared>, sender: &mut Sender, holding: &mut Option<String>, job: Job) {
    let (run, deadline_ms) = {
        let sched = shared.lock();
        let b = &sched.batches[job.0];
        (b.run.clone(), b.deadline_ms)
    };
    let msg: &OutboundMessage = &run.messages[job.1];
    let skip = shared.guard().skip_reason(msg).cloned();
    if let Some(aside) = skip {
        // The answer that set the account or domain aside travels along: the dispatcher
        // applies its policy to it (docs/quotas.md).
        return record(
            shared,
            job,
            Recorded::NotAttempted {
                text: aside.reason,
                smtp_code: aside.smtp_code,
                enhanced_status: aside.enhanced_status,
                deadline: false,
            },
        );
    }
    // The rate limit may delay a start; a start delayed past the deadline is no start.
    let start_at = reserve_start(shared, deadline_ms);
    let Some(start_at) = start_at else {
        return record(
            shared,
            job,
            Recorded::NotAttempted {
                text: "local lease deadline passed before the message started".into(),
                smtp_code: None,
                enhanced_status: None,
                deadline: true,
            },
        );
    };
    let wait = start_at.saturating_duration_since(Instant::now());
    if !wait.is_zero() {
        std::thread::sleep(wait);
    }
    {
        let mut sched = shared.lock();
        sched.batches[job.0].started += 1;
    }
    let delivery = sender.deliver_gated(msg, &mut || shared.sync_journals());
    if let Some(why) = delivery.connect_failure {
        if connect_failed(shared, sender, holding, job, &delivery, why) {
            return; // back in the queue for a session that works
        }
    } else {
        adjust_window(shared, &msg.account.name, &delivery);
    }
    record(shared, job, Recorded::Delivered(delivery));
}

/// Reserves a start under the rate limit; `None` when it would fall at or after the
/// deadline.
fn reserve_start(shared: &Shared, deadline_ms: i64) -> Option<Instant> {
    let rate = shared.options.send_rate_per_second;
    let mut sched = shared.lock();
    let now = Instant::now();
    let at = match sched.next_start {
        Some(next) if rate > 0.0 && next > now => next,
        _ => now,
    };
    let wait_ms = i64::try_from(at.saturating_duration_since(now).as_millis()).unwrap_or(i64::MAX);
    if Utc::now().timestamp_millis().saturating_add(wait_ms) >= deadline_ms {
        return None;
    }
    if rate > 0.0 {
        sched.next_start = Some(at + Duration::from_secs_f64(1.0 / rate));
    }
    Some(at)
}

/// Feedback from an answered message: an accepted one widens the account's window by
/// one (slow start), a 421 narrows it.
fn adjust_window(shared: &Arc<Shared>, account: &str, delivery: &Delivery) {
    let mut sched = shared.lock();
    let Some(a) = sched.accounts.get_mut(account) else {
        return;
    };
    if delivery.smtp_code == Some(421) {
        a.window = a.window.saturating_sub(1).max(1);
    } else if delivery.outcome == Outcome::Sent && a.window < a.limit {
        a.window += 1;
        // Room for one more session: an idle worker takes it, or a new one.
        let wake = !a.queue.is_empty() && sched.idle_workers > 0;
        spawn_workers(shared, &mut sched);
        drop(sched);
        if wake {
            shared.work.notify_one();
        }
    }
}

/// A session could not be opened. With other sessions of the account working, the
/// message goes back to the queue (nothing of it was sent) and the window shrinks to
/// them; with none, the account is given up for this run and the message (like the rest
/// of its queue) gets the failure. Returns whether the message went back.
fn connect_failed(
    shared: &Shared,
    sender: &mut Sender,
    holding: &mut Option<String>,
    job: Job,
    delivery: &Delivery,
    why: ConnectFailure,
) -> bool {
    let account = {
        let sched = shared.lock();
        sched.batches[job.0].run.messages[job.1].account.clone()
    };
    sender.release(&account);
    let mut sched = shared.lock();
    let others_working = {
        let a = sched
            .accounts
            .get_mut(&account.name)
            .expect("account of a queued message");
        a.active = a.active.saturating_sub(1);
        a.active > 0 && why == ConnectFailure::Transient
    };
    sched.sessions_open = sched.sessions_open.saturating_sub(1);
    *holding = None;
    let a = sched
        .accounts
        .get_mut(&account.name)
        .expect("account of a queued message");
    if others_working {
        a.window = a.active.max(1);
        a.queue.push_front(job);
        sched.queued += 1;
        sched.batches[job.0].started -= 1;
        drop(sched);
        shared.work.notify_all();
        return true;
    }
    a.given_up = Some(delivery.clone());
    drop(sched);
    shared.work.notify_all();
    false
}

/// Journals the outcome of a taken message; finishes its batch after the last one.
fn record(shared: &Shared, job: Job, what: Recorded) {
    let (run, journal) = {
        let sched = shared.lock();
        let b = &sched.batches[job.0];
        let journal = b.journal.clone();
        (
            b.run.clone(),
            journal.expect("a batch with a message in flight is not finished"),
        )
    };
    let msg = &run.messages[job.1];
    let attempted_at = Utc::now();
    let mut deadline = false;
    let mut result = match what {
        Recorded::Delivered(d) => MessageResult {
            job_run_id: run.job_run_id.clone(),
            message_id: msg.id,
            lease_token: msg.lease_token.clone(),
            outcome: d.outcome,
            smtp_code: d.smtp_code,
            enhanced_status: d.enhanced_status,
            text: d.text,
            attempted_at,
            recipients: d.recipients,
        },
        Recorded::NotAttempted {
            text,
            smtp_code,
            enhanced_status,
            deadline: past,
        } => {
            deadline = past;
            MessageResult {
                job_run_id: run.job_run_id.clone(),
                message_id: msg.id,
                lease_token: msg.lease_token.clone(),
                outcome: Outcome::NotAttempted,
                smtp_code,
                enhanced_status,
                text: Some(text),
                attempted_at,
                recipients: Vec::new(),
            }
        }
    };
    if result.outcome != Outcome::NotAttempted {
        shared.guard().review(msg, &mut result);
    }
    if shared.options.verbose {
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
    if let Err(e) = journal.append(result) {
        shared.stop(&format!("{e:#}"));
        return;
    }
    let mut sched = shared.lock();
    sched.report.count(outcome);
    let queued = sched.queued;
    sched.pace.outcome(Instant::now(), queued);
    let b = &mut sched.batches[job.0];
    b.remaining -= 1;
    if deadline {
        b.deadline_skips += 1;
    }
    let last = b.remaining == 0;
    drop(sched);
    if last {
        if let Err(e) = finish_batch(shared, job.0) {
            shared.stop(&format!("{e:#}"));
            return;
        }
        shared.progress.notify_all();
    }
}

/// Every message of the batch has an outcome: its results go to the outbox, in batch
/// order, once the journal is on disk.
fn finish_batch(shared: &Shared, index: usize) -> Result<()> {
    // The fsync wait and the outbox write happen without the schedule's lock: the other
    // sessions go on meanwhile.
    let (journal, run, refused_ids, batch) = {
        let sched = shared.lock();
        let b = &sched.batches[index];
        let refused: Vec<i64> = b.refused.iter().map(|r| r.id).collect();
        let journal = b.journal.clone();
        let journal = journal.expect("a batch is finished once");
        (journal, b.run.clone(), refused, b.batch.clone())
    };
    journal.synced()?;
    let latest = latest_outcomes(journal.entries());
    let results: Vec<MessageResult> = refused_ids
        .into_iter()
        .chain(run.messages.iter().map(|m| m.id))
        .filter_map(|id| latest.get(&id).cloned())
        .collect();
    spool::finish_batch(&shared.state_dir, &batch, &results)?;
    let mut sched = shared.lock();
    let b = &mut sched.batches[index];
    b.done = true;
    if b.started == 0 && b.deadline_skips > 0 {
        let id = b.run.job_run_id.clone();
        sched.lease_too_short.push(id);
    }
    sched.report.batches += 1;
    // No session refers to a finished batch's messages again: free them, so a run over
    // many spooled batches holds only those being delivered.
    let b = &mut sched.batches[index];
    b.run = Arc::new(JobRun {
        job_run_id: b.run.job_run_id.clone(),
        lease_seconds: b.run.lease_seconds,
        acknowledged: Vec::new(),
        messages: Vec::new(),
    });
    b.refused = Vec::new();
    b.journal = None;
    Ok(())
}

/// The last outcome journalled for each message.
fn latest_outcomes(entries: Vec<MessageResult>) -> HashMap<i64, MessageResult> {
    // Later lines win: a message's outcome is appended once per run that reached it.
    entries.into_iter().map(|r| (r.message_id, r)).collect()
}

/// Delivers every spooled batch and waits for the outcomes; the caller holds the state
/// lock.
pub fn send_spooled(state: &StateDir, config: &RunnerConfig, verbose: bool) -> Result<SendReport> {
    spool::remove_orphans(state)?;
    let engine = Engine::new(
        state,
        EngineOptions::from_config(config, verbose)?,
        reply_policy(config),
    );
    // Batches join as the sessions need work, not all at once: memory stays about that of
    // two batches however many are spooled (1 k or 100 k messages: the same peak RSS).
    let ahead = 2 * engine.max_sessions().max(1);
    for batch in spool::list_batches(state)? {
        while engine.queued() >= ahead && engine.stopped().is_none() {
            engine.wait(Duration::from_millis(200));
        }
        engine.add(batch)?;
    }
    engine.finish()
}

/// The pushed reply policy, compiled; a rule this runner cannot compile is skipped with
/// a warning (docs/quotas.md).
pub fn reply_policy(config: &RunnerConfig) -> Policy {
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
