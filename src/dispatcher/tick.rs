//! `dispatch-tick`: one tick of the dispatcher, run by cron every minute.
//!
//! Reaps expired leases, materialises due recurring jobs (exactly once per occurrence,
//! `recurring`), purges finished messages past their keep time (`retention`), posts
//! delivery events to webhook endpoints within a time budget (`webhooks`) and
//! counts due work (up to what the wake-up needs); when there is some, sends a signed
//! JobRunnerReady to as many enabled runners as the work needs (the due messages over
//! their batch sizes, at most --max-wake), least recently seen first and runners whose
//! last contact failed last, in parallel (each call bounded by a timeout), and records
//! each answer, software and config version, and last-seen time. A runner that does not
//! answer is replaced by the next one. A tick that finds nothing due contacts no runner.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Parser;
use postgres::types::Type;
use serde::Serialize;

use crate::cli::{CliError, EXIT_CODES_HELP, EXIT_NO_WORK, EXIT_OK, EXIT_UNAVAILABLE};
use crate::dispatcher::config::DispatcherConfig;
use crate::dispatcher::outbound::{self, CallError};
use crate::dispatcher::recurring::{self, Materialised, OccurrenceOutcome};
use crate::dispatcher::retention::{self, Purged};
use crate::dispatcher::runners::{self, Runner};
use crate::dispatcher::webhooks::{self, DeliveryOptions, EndpointDelivery};
use crate::dispatcher::{connection, queue, schema};
use crate::protocol::{Body, JobRunnerReady, ReadyStatus};
use crate::web::client::{Client, ClientOptions};

/// Answers from runners are tiny; anything bigger is refused.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024;

/// Most delivered webhook events one tick deletes.
const WEBHOOK_PURGE_BATCH: i64 = 10_000;

#[derive(Parser)]
#[command(
    name = "dispatch-tick",
    version,
    about = "One dispatcher tick: reap leases, count due mail, wake the runners",
    long_about = "One dispatcher tick, for cron (`* * * * * dispatch-tick`).\n\n\
        Reaps expired leases, enqueues due occurrences of recurring jobs (once each, \
        even when ticks overlap; after missed ticks only the latest), purges finished \
        messages past their [retention] keep time, posts pending delivery events to \
        webhook endpoints in signed batches (at most --webhook-budget seconds; a failing \
        endpoint backs off, see docs/webhooks.md), and counts due messages. If any are due, sends a signed \
        JobRunnerReady to as many enabled runners as the work needs (the due messages \
        over their batch sizes, at most --max-wake), least recently seen first and those \
        whose last contact failed last, in parallel, each call bounded by --timeout; a \
        runner that does not answer is replaced by the next. Records each runner's \
        answer, software version, config version and last-seen time. Every runner still \
        polls on its own schedule. If nothing is due, contacts no runner and exits 3.\n\n\
        Prints nothing on success unless --verbose (a line per runner on stderr) or \
        --json (a summary object on stdout).\n\n\
        Exits 0 when work is due and at least one runner will take it (accepted, busy, \
        or poll-only), 3 when nothing is due, 69 when work is due but no runner could \
        be reached or the database is unavailable.",
    after_help = EXIT_CODES_HELP
)]
pub struct Args {
    /// PostgreSQL URL (default: MAILRUN_DATABASE_URL, then the config file); TLS:
    /// ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with
    /// target_session_attrs=read-write (docs/dispatcher.md).
    #[arg(long, value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml,
    /// /etc/mailrun/dispatcher.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Connect and read timeout for each runner, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub timeout: u64,

    /// How many runners to contact at once.
    #[arg(long, value_name = "N", default_value_t = 16,
          value_parser = clap::value_parser!(u64).range(1..=256))]
    pub parallel: u64,

    /// Most runners one tick wakes, however much is due.
    #[arg(long, value_name = "N", default_value_t = 16,
          value_parser = clap::value_parser!(u64).range(1..=10000))]
    pub max_wake: u64,

    /// Allow plain http:// to runners that are not on loopback (TLS is the default).
    /// MAILRUN_ALLOW_PLAIN_HTTP takes 1/0, yes/no, on/off or true/false.
    #[arg(long, env = "MAILRUN_ALLOW_PLAIN_HTTP", value_parser = crate::cli::SwitchParser)]
    pub allow_plain_http: bool,

    /// Most seconds spent posting delivery events to webhook endpoints per tick; no post
    /// outlives it, and what is left waits for the next tick.
    #[arg(long, value_name = "SECONDS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub webhook_budget: u64,

    /// Most events in one webhook post.
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub webhook_batch: u64,

    /// Print a line per runner contacted to stderr.
    #[arg(short, long)]
    pub verbose: bool,

    /// Print a JSON summary to stdout.
    #[arg(long)]
    pub json: bool,
}

/// What the tick did, as printed by `--json`.
#[derive(Debug, Serialize)]
pub struct TickSummary {
    /// Expired leases put back in the queue.
    pub reaped: u64,
    /// Recurring-job occurrences handled this tick (enqueued, skipped or failed).
    pub recurring: Vec<Materialised>,
    /// Finished messages purged (and held for review) per `[retention]`.
    pub retention: Purged,
    /// Webhook endpoints posted to (docs/webhooks.md).
    pub webhooks: Vec<EndpointDelivery>,
    /// Delivered events purged (older than the retention of sent messages).
    pub webhook_events_purged: u64,
    /// Messages due now, counted up to what waking `max_wake` runners needs.
    pub due: i64,
    /// `due` stopped at that bound: at least that many are due.
    pub due_capped: bool,
    /// One entry per runner contacted (empty when nothing was due).
    pub runners: Vec<RunnerContact>,
    /// Runners that will pick up work: accepted, busy (already working) or poll-only.
    pub available: usize,
}

#[derive(Debug, Serialize)]
pub struct RunnerContact {
    pub id: String,
    /// accepted, busy, disabled, poll-only, unreachable, fault, unexpected-answer, no-key.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_version: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The runner itself answered (a signed response), so it was seen now.
    #[serde(skip)]
    pub answered: bool,
}

impl RunnerContact {
    fn will_work(&self) -> bool {
        matches!(self.status.as_str(), "accepted" | "busy" | "poll-only")
    }
}

pub fn main(args: Args) -> anyhow::Result<u8> {
    let url = crate::dispatcher::config::database_url(
        args.database_url.as_deref(),
        args.config.as_deref(),
    )?;
    let mut db = connection::connect(&url).map_err(CliError::from)?;
    let (config, _) = DispatcherConfig::load(args.config.as_deref())?;

    let begun = begin(&mut db, &config)?;
    // Before counting: an occurrence due now is part of this tick's work.
    let recurring = if begun.recurring_ids.is_empty() {
        Vec::new()
    } else {
        materialise(&mut db, &begun.recurring_ids, begun.db_now)?
    };
    let webhooks = if begun.webhooks_waiting {
        deliver_webhooks(&mut db, &args)?
    } else {
        Vec::new()
    };
    let enqueued_now = recurring
        .iter()
        .any(|m| matches!(m.outcome, OccurrenceOutcome::Enqueued { .. }));
    let anything_due = begun.anything_due
        || (enqueued_now
            && queue::count_due_upto(&mut db, 1)
                .map_err(connection::exit_context)
                .context("counting due messages")?
                > 0);
    let (reaped, retention, webhook_events_purged) =
        (begun.reaped, begun.retention, begun.webhook_events_purged);
    // The common tick finds nothing due: no runner list read.
    let enabled: Vec<Runner> = if !anything_due {
        Vec::new()
    } else {
        runners::list(&mut db)
            .map_err(connection::exit_context)
            .context("listing runners")?
            .into_iter()
            .filter(|r| r.enabled)
            .collect()
    };
    let max_wake = usize::try_from(args.max_wake).unwrap_or(usize::MAX);
    // Counting stops where the wake-up plan stops needing more: a tick costs the same with
    // a million due as with a thousand.
    let widest = enabled
        .iter()
        .map(|r| i64::from(r.batch_size))
        .max()
        .unwrap_or(1);
    let bound = widest
        .saturating_mul(i64::try_from(max_wake).unwrap_or(i64::MAX))
        .max(1);
    let due = if !anything_due {
        0
    } else {
        queue::count_due_upto(&mut db, bound)
            .map_err(connection::exit_context)
            .context("counting due messages")?
    };
    let mut summary = TickSummary {
        reaped,
        recurring,
        retention,
        webhooks,
        webhook_events_purged,
        due,
        due_capped: due >= bound,
        runners: Vec::new(),
        available: 0,
    };
    if due == 0 {
        report(&args, &summary)?;
        return Ok(EXIT_NO_WORK);
    }
    let timeout = Duration::from_secs(args.timeout);
    let client = Client::new(ClientOptions {
        connect_timeout: timeout,
        timeout,
        allow_plain_http: args.allow_plain_http,
        max_response_bytes: MAX_RESPONSE_BYTES,
    });
    let queued = u64::try_from(due).unwrap_or(0);
    let parallel = usize::try_from(args.parallel).unwrap_or(16);
    let mut candidates = wake_order(&enabled);
    // Rounds: wake enough runners for the work; those that will not work are replaced by
    // the next candidates, until the work is covered, the cap is reached or none is left.
    let mut covered: i64 = 0;
    while covered < due && summary.runners.len() < max_wake && !candidates.is_empty() {
        let mut round = Vec::new();
        let mut planned = covered;
        while planned < due && summary.runners.len() + round.len() < max_wake {
            let Some(runner) = candidates.pop_front() else {
                break;
            };
            planned += i64::from(runner.batch_size.max(1));
            round.push(runner);
        }
        let contacts =
            outbound::parallel_map(&round, parallel, |runner| wake(&client, runner, queued));
        for (runner, contact) in round.iter().zip(&contacts) {
            if contact.will_work() {
                covered += i64::from(runner.batch_size.max(1));
            }
        }
        summary.runners.extend(contacts);
    }

    // Recorded after all calls, on the one database connection (the calls ran in parallel).
    for contact in &summary.runners {
        if contact.status == "poll-only" {
            continue;
        }
        record(&mut db, contact)
            .map_err(connection::exit_context)
            .with_context(|| format!("recording the answer of runner {}", contact.id))?;
    }
    summary.available = summary.runners.iter().filter(|c| c.will_work()).count();
    report(&args, &summary)?;

    if summary.available > 0 {
        Ok(EXIT_OK)
    } else if enabled.is_empty() {
        Err(CliError::new(
            EXIT_UNAVAILABLE,
            format!("{due} message(s) due but no runner is enabled"),
        )
        .into())
    } else {
        Err(CliError::new(
            EXIT_UNAVAILABLE,
            format!(
                "{due} message(s) due but no runner could be reached ({})",
                summary
                    .runners
                    .iter()
                    .map(|c| format!("{}: {}", c.id, c.error.as_deref().unwrap_or(&c.status)))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        )
        .into())
    }
}

/// What `mailrun.tick_begin` did and found, in one round trip.
struct Begun {
    reaped: u64,
    db_now: DateTime<Utc>,
    recurring_ids: Vec<i64>,
    retention: Purged,
    webhooks_waiting: bool,
    webhook_events_purged: u64,
    anything_due: bool,
}

/// The tick's housekeeping in one statement (`sql/functions/tick_begin.sql`), which also
/// checks this build's schema stamp: with the stamp current, an empty tick costs the
/// connection and this one round trip. Without it (a database migrated by another build,
/// or missing the routine) the full schema check decides, with its own message.
fn begin(db: &mut postgres::Client, config: &DispatcherConfig) -> anyhow::Result<Begun> {
    let stamp = schema::stamp();
    match tick_begin(db, Some(&stamp), config) {
        Ok(Some(begun)) => return Ok(begun),
        Ok(None) => {}
        Err(err) => {
            let answered = err
                .downcast_ref::<postgres::Error>()
                .is_some_and(|e| e.as_db_error().is_some());
            if answered {
                schema::require_current(db).map_err(connection::exit_context)?;
            }
            return Err(connection::exit_context(err)).context("tick housekeeping");
        }
    }
    schema::require_current(db).map_err(connection::exit_context)?;
    tick_begin(db, None, config)
        .map_err(connection::exit_context)
        .context("tick housekeeping")?
        .context("tick housekeeping: the database refused the schema check it was told to skip")
}

/// None when the database carries another schema stamp than `stamp` (nothing was done).
fn tick_begin(
    db: &mut postgres::Client,
    stamp: Option<&str>,
    config: &DispatcherConfig,
) -> anyhow::Result<Option<Begun>> {
    let retention = &config.retention;
    retention.validate()?;
    // validate() bounds both to 36500, well inside i32.
    let sent = i32::try_from(retention.keep_sent_days)?;
    let failed = i32::try_from(retention.keep_failed_days)?;
    let row = db.query_typed_one(
        "SELECT schema_ok, reaped, db_now, recurring_ids, purged, held, webhooks_waiting,
                webhook_events_purged, anything_due
         FROM mailrun.tick_begin($1, $2, $3, $4, $5, $6, $3, $7)",
        &[
            (&stamp, Type::TEXT),
            (&schema::latest_version(), Type::INT4),
            (&sent, Type::INT4),
            (&failed, Type::INT4),
            (&retention.review_codes, Type::TEXT_ARRAY),
            (&retention::PURGE_BATCH, Type::INT4),
            (&WEBHOOK_PURGE_BATCH, Type::INT8),
        ],
    )?;
    if !row.get::<_, bool>("schema_ok") {
        return Ok(None);
    }
    Ok(Some(Begun {
        reaped: u64::try_from(row.get::<_, i64>("reaped")).unwrap_or(0),
        db_now: row.get("db_now"),
        recurring_ids: row.get("recurring_ids"),
        retention: Purged {
            purged: row.get("purged"),
            held_for_review: row.get("held"),
        },
        webhooks_waiting: row.get("webhooks_waiting"),
        webhook_events_purged: u64::try_from(row.get::<_, i64>("webhook_events_purged"))
            .unwrap_or(0),
        anything_due: row.get("anything_due"),
    }))
}

/// Materialises the due occurrences of the live recurring jobs `ids` (docs/results.md) as
/// of the database's clock. An
/// occurrence that was skipped or refused is said on stderr: cron mails it to the
/// operator, once, since the occurrence is recorded and never tried again.
fn materialise(
    db: &mut postgres::Client,
    ids: &[i64],
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<Materialised>> {
    let report = recurring::materialise_jobs(db, ids, now)
        .map_err(connection::exit_context)
        .context("materialising recurring jobs")?;
    for bad in &report.bad_jobs {
        eprintln!(
            "dispatch-tick: recurring job {} cannot be evaluated: {}",
            bad.job_id, bad.error
        );
    }
    for m in &report.materialised {
        let at = m.occurrence_at.to_rfc3339();
        match &m.outcome {
            OccurrenceOutcome::Enqueued { .. } => {}
            OccurrenceOutcome::Skipped => eprintln!(
                "dispatch-tick: recurring job {}: occurrence {at} skipped, later than the \
                 job's lateness limit",
                m.job_id
            ),
            OccurrenceOutcome::Failed { detail } => eprintln!(
                "dispatch-tick: recurring job {}: occurrence {at} not enqueued: {detail}",
                m.job_id
            ),
        }
    }
    Ok(report.materialised)
}

/// Posts pending delivery events within --webhook-budget. A failing endpoint is said on
/// stderr (without its secret, which is never in an error) and recorded on its row.
fn deliver_webhooks(
    db: &mut postgres::Client,
    args: &Args,
) -> anyhow::Result<Vec<EndpointDelivery>> {
    let budget = Duration::from_secs(args.webhook_budget);
    let timeout = Duration::from_secs(args.timeout);
    let client = Client::new(ClientOptions {
        connect_timeout: timeout,
        timeout,
        allow_plain_http: args.allow_plain_http,
        max_response_bytes: MAX_RESPONSE_BYTES,
    });
    let options = DeliveryOptions {
        budget,
        timeout,
        batch: i64::try_from(args.webhook_batch).unwrap_or(100),
        parallel: usize::try_from(args.parallel).unwrap_or(16),
    };
    let reports = webhooks::deliver(db, &client, &options)
        .map_err(connection::exit_context)
        .context("delivering webhook events")?;
    for r in &reports {
        if let Some(error) = &r.error {
            eprintln!(
                "dispatch-tick: webhook {}: {error} ({} event(s) waiting)",
                r.id, r.pending
            );
        }
    }
    Ok(reports)
}

/// Sends JobRunnerReady to one runner and turns the answer into a contact record.
fn wake(client: &Client, runner: &Runner, queued: u64) -> RunnerContact {
    let body = Body::JobRunnerReady(JobRunnerReady {
        runner_id: runner.id.clone(),
        queued,
    });
    let mut contact = RunnerContact {
        id: runner.id.clone(),
        status: String::new(),
        software_version: None,
        config_version: None,
        error: None,
        answered: false,
    };
    match outbound::call(client, runner, &body) {
        Ok(Body::JobRunnerReadyResponse(answer)) => {
            contact.status = match answer.status {
                ReadyStatus::Accepted => "accepted",
                ReadyStatus::Busy => "busy",
                ReadyStatus::Disabled => "disabled",
            }
            .to_string();
            contact.software_version = Some(answer.software_version);
            contact.config_version = Some(answer.config_version);
            contact.answered = true;
        }
        Ok(other) => {
            contact.answered = true;
            contact.status = "unexpected-answer".to_string();
            contact.error = Some(format!(
                "answered {} to JobRunnerReady",
                crate::protocol::codec::soap_action(&other)
            ));
        }
        Err(CallError::NoEndpoint) => contact.status = "poll-only".to_string(),
        Err(err) => {
            contact.answered = matches!(err, CallError::Fault { signed: true, .. });
            contact.status = err.kind().to_string();
            contact.error = Some(err.to_string());
        }
    }
    contact
}

/// Records one runner's answer. Only a signed answer proves the runner was there, so
/// only then is it "seen" (last_seen, versions); otherwise just the status changes.
/// The order runners are woken in: those whose last contact went well (or that were never
/// contacted) first, least recently seen first, so wake-ups spread over the fleet; runners
/// whose last contact failed last, so a dead runner does not take a live one's turn.
fn wake_order(enabled: &[Runner]) -> std::collections::VecDeque<Runner> {
    let mut runners = enabled.to_vec();
    let failed = |r: &Runner| {
        r.last_status
            .as_deref()
            .is_some_and(|s| !["accepted", "busy", "polled", "disabled", "poll-only"].contains(&s))
    };
    runners.sort_by(|a, b| (failed(a), a.last_seen, &a.id).cmp(&(failed(b), b.last_seen, &b.id)));
    runners.into()
}

fn record(db: &mut postgres::Client, contact: &RunnerContact) -> anyhow::Result<()> {
    let status = match &contact.error {
        Some(error) => format!("{}: {}", contact.status, truncate(error, 300)),
        None => contact.status.clone(),
    };
    if contact.answered {
        runners::record_contact(
            db,
            &contact.id,
            &status,
            contact.software_version.as_deref(),
            contact.config_version,
        )
    } else {
        runners::record_status(db, &contact.id, &status)
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}

fn report(args: &Args, summary: &TickSummary) -> anyhow::Result<()> {
    if args.verbose {
        eprintln!(
            "dispatch-tick: reaped {} expired lease(s), {}{} message(s) due",
            summary.reaped,
            if summary.due_capped { "at least " } else { "" },
            summary.due
        );
        for m in &summary.recurring {
            if let OccurrenceOutcome::Enqueued { message_id } = m.outcome {
                eprintln!(
                    "dispatch-tick: recurring job {}: occurrence {} enqueued as message {message_id}",
                    m.job_id,
                    m.occurrence_at.to_rfc3339()
                );
            }
        }
        let r = &summary.retention;
        if r.purged > 0 || r.held_for_review > 0 {
            eprintln!(
                "dispatch-tick: purged {} finished message(s), held {} for review",
                r.purged, r.held_for_review
            );
        }
        for w in &summary.webhooks {
            eprintln!(
                "dispatch-tick: webhook {}: {} event(s) delivered in {} post(s), {} waiting{}",
                w.id,
                w.delivered,
                w.posts,
                w.pending,
                if w.out_of_budget {
                    " (budget spent)"
                } else {
                    ""
                }
            );
        }
        if summary.due == 0 {
            eprintln!("dispatch-tick: nothing due, contacted no runner");
        }
        for c in &summary.runners {
            let mut line = format!("dispatch-tick: runner {}: {}", c.id, c.status);
            if let Some(v) = &c.software_version {
                line.push_str(&format!(", software {v}"));
            }
            if let Some(v) = c.config_version {
                line.push_str(&format!(", config {v}"));
            }
            if let Some(e) = &c.error {
                line.push_str(&format!(" ({e})"));
            }
            eprintln!("{line}");
        }
    }
    if args.json {
        let text = serde_json::to_string(summary).context("encoding the summary")?;
        println!("{text}");
    }
    Ok(())
}
