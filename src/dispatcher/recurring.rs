//! Recurring jobs: a crontab spec, its time zone and a message template, materialised
//! by `dispatch-tick` exactly once per occurrence.
//!
//! The rule for *which* occurrence is due is `schedule::cron::catch_up` (pure); this
//! module is the database half of the exactly-once contract in docs/scheduling.md: per
//! job, in one transaction, the occurrence row (primary key `(job_id, occurrence_at)`)
//! is inserted `ON CONFLICT DO NOTHING` and only the transaction whose insert won
//! enqueues the message. Overlapping ticks therefore enqueue one message, never two.

use crate::dispatcher::typed::params;
use chrono::{DateTime, Duration, Utc};
use postgres::error::SqlState;
use postgres::types::Type;
use postgres::GenericClient;
use serde::Serialize;
use serde_json::{json, Value};

use crate::cli::{CliError, EXIT_DATA};
use crate::dispatcher::queue::{self, EnqueueError};
use crate::schedule::cron::{catch_up, CatchUp, CronSpec};
use crate::schedule::when::parse_time_zone;

/// Template fields a recurring job may not set: every occurrence gets its own send
/// time (the occurrence) and its own Message-ID.
const PER_OCCURRENCE_FIELDS: &[&str] = &["send_at", "message_id"];

/// Bounds of `max_lateness` (the database checks the same).
pub const MIN_LATENESS: Duration = Duration::minutes(1);
pub const MAX_LATENESS: Duration = Duration::days(366);

/// A stored recurring job.
#[derive(Debug, Clone, Serialize)]
pub struct RecurringJob {
    pub id: i64,
    pub name: Option<String>,
    pub cron: String,
    pub time_zone: String,
    pub template: Value,
    pub paused: bool,
    pub created_at: DateTime<Utc>,
    pub last_occurrence_at: Option<DateTime<Utc>>,
    pub max_lateness_seconds: i32,
    /// Stop after this many occurrences queued a message (`schedule add --count`).
    pub max_runs: Option<i32>,
    /// No occurrence after this instant (`schedule add --until`).
    pub until: Option<DateTime<Utc>>,
    /// Occurrences that queued a message so far.
    pub runs: i32,
}

impl RecurringJob {
    /// The parsed spec in the job's time zone.
    pub fn spec(&self) -> anyhow::Result<CronSpec> {
        let tz = parse_time_zone(&self.time_zone)?;
        Ok(CronSpec::parse_in(&self.cron, tz)?)
    }

    /// The next occurrence a tick will materialise: the first one after the last handled
    /// (or after creation). It may be in the past when a tick is still to come. `None`
    /// when paused or when the spec no longer parses.
    pub fn next_run(&self) -> Option<DateTime<Utc>> {
        if self.paused || self.runs_used_up() {
            return None;
        }
        let after = self
            .last_occurrence_at
            .map_or(self.created_at, |l| l.max(self.created_at));
        self.spec()
            .ok()?
            .next_after(after)
            .filter(|t| self.until.is_none_or(|u| *t <= u))
    }

    /// Its run count is reached.
    pub fn runs_used_up(&self) -> bool {
        self.max_runs.is_some_and(|m| self.runs >= m)
    }

    /// Its run count is reached or no occurrence is left before its end time; a
    /// finished job stays listed until removed.
    pub fn finished(&self) -> bool {
        !self.paused && self.next_run().is_none() && self.spec().is_ok()
    }
}

const JOB_COLUMNS: &str = "id, name, cron, time_zone, template, paused, created_at, \
                           last_occurrence_at, max_lateness_seconds, max_runs, until, runs";

fn job_from_row(r: &postgres::Row) -> RecurringJob {
    RecurringJob {
        id: r.get(0),
        name: r.get(1),
        cron: r.get(2),
        time_zone: r.get(3),
        template: r.get(4),
        paused: r.get(5),
        created_at: r.get(6),
        last_occurrence_at: r.get(7),
        max_lateness_seconds: r.get(8),
        max_runs: r.get(9),
        until: r.get(10),
        runs: r.get(11),
    }
}

/// How long a job runs: at most `count` messages, none after `until` (both optional).
#[derive(Debug, Clone, Copy, Default)]
pub struct RunLimits {
    pub count: Option<i32>,
    pub until: Option<DateTime<Utc>>,
}

/// What `add` stores.
pub struct NewJob<'a> {
    pub name: Option<&'a str>,
    pub spec: &'a CronSpec,
    /// A message object in the shape of an enqueue JSON line, defaults already applied.
    pub template: &'a Value,
    pub max_lateness: Duration,
}

/// Stores a new job after checking its template; its id. The job fires for the first
/// occurrence after now (database clock), never for one before it was added.
pub fn add(c: &mut impl GenericClient, job: &NewJob) -> anyhow::Result<i64> {
    add_limited(c, job, &RunLimits::default())
}

/// `add` with a run count and an end time. The row is written by the stored procedure
/// `mailrun.add_recurring_job` (what applications using the database call), after the
/// checks that need Rust: the cron spec's fields and the name's form.
pub fn add_limited(
    c: &mut impl GenericClient,
    job: &NewJob,
    limits: &RunLimits,
) -> anyhow::Result<i64> {
    if job.max_lateness < MIN_LATENESS || job.max_lateness > MAX_LATENESS {
        return Err(CliError::new(
            EXIT_DATA,
            "the lateness limit must be between 1 minute and 366 days",
        )
        .into());
    }
    if let Some(name) = job.name {
        let well_formed = (1..=64).contains(&name.len())
            && name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !well_formed {
            return Err(CliError::new(
                EXIT_DATA,
                format!("invalid job name {name:?}: use 1-64 letters, digits, '.', '_' or '-'"),
            )
            .into());
        }
        if name.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CliError::new(
                EXIT_DATA,
                format!("job name {name:?} is a number; it would be mistaken for a job id"),
            )
            .into());
        }
    }
    let obj = job
        .template
        .as_object()
        .ok_or_else(|| CliError::new(EXIT_DATA, "the template must be a JSON object"))?;
    if let Some(f) = PER_OCCURRENCE_FIELDS.iter().find(|f| obj.contains_key(**f)) {
        return Err(CliError::new(
            EXIT_DATA,
            format!(
                "template: \"{f}\" is set per occurrence (the cron spec gives the time, each \
                 message gets its own Message-ID); remove it"
            ),
        )
        .into());
    }
    let seconds = i32::try_from(job.max_lateness.num_seconds()).unwrap_or(i32::MAX);
    let cron = job.spec.as_str();
    let tz = job.spec.time_zone().name();
    let row = c.query_typed_one(
        "SELECT mailrun.add_recurring_job($1, $2, $3, $4, $5, $6, $7)",
        &[
            (&cron, Type::TEXT),
            (job.template, Type::JSONB),
            (&tz, Type::TEXT),
            (&job.name, Type::TEXT),
            (&limits.count, Type::INT4),
            (&limits.until, Type::TIMESTAMPTZ),
            (&seconds, Type::INT4),
        ],
    );
    match row {
        Ok(row) => Ok(row.get(0)),
        Err(e) => match e.as_db_error() {
            Some(db) if *db.code() == SqlState::INVALID_PARAMETER_VALUE => {
                Err(CliError::new(EXIT_DATA, db.message()).into())
            }
            _ => Err(e.into()),
        },
    }
}

/// A job the tick still materialises: not paused, runs left (its end time is checked
/// against each occurrence). sql/functions/tick_begin.sql lists live jobs the same way.
const LIVE: &str = "NOT paused AND (max_runs IS NULL OR runs < max_runs)";

/// Every job, by id.
pub fn list(c: &mut impl GenericClient) -> anyhow::Result<Vec<RecurringJob>> {
    Ok(c.query_typed(
        &format!("SELECT {JOB_COLUMNS} FROM mailrun.recurring_jobs ORDER BY id"),
        &[],
    )?
    .iter()
    .map(job_from_row)
    .collect())
}

/// A job by its id or its name.
pub fn find(c: &mut impl GenericClient, id_or_name: &str) -> anyhow::Result<RecurringJob> {
    let row = match id_or_name.parse::<i64>() {
        Ok(id) => c.query_typed_opt(
            &format!("SELECT {JOB_COLUMNS} FROM mailrun.recurring_jobs WHERE id = $1"),
            &params(&[&id]),
        )?,
        Err(_) => c.query_typed_opt(
            &format!("SELECT {JOB_COLUMNS} FROM mailrun.recurring_jobs WHERE name = $1"),
            &params(&[&id_or_name]),
        )?,
    };
    row.map(|r| job_from_row(&r))
        .ok_or_else(|| CliError::new(EXIT_DATA, format!("no recurring job {id_or_name:?}")).into())
}

/// Pauses a job; false when it was paused already.
pub fn pause(c: &mut impl GenericClient, id: i64) -> anyhow::Result<bool> {
    let n = c.execute_typed(
        "UPDATE mailrun.recurring_jobs SET paused = true, updated_at = now()
         WHERE id = $1 AND NOT paused",
        &params(&[&id]),
    )?;
    Ok(n == 1)
}

/// Resumes a job; false when it was not paused. Occurrences that fell in the pause are
/// not caught up: the job continues with the first occurrence after now.
pub fn resume(c: &mut impl GenericClient, id: i64) -> anyhow::Result<bool> {
    let n = c.execute_typed(
        "UPDATE mailrun.recurring_jobs SET paused = false, updated_at = now(),
             last_occurrence_at = greatest(last_occurrence_at, now())
         WHERE id = $1 AND paused",
        &params(&[&id]),
    )?;
    Ok(n == 1)
}

/// Removes a job and its occurrence history; its messages stay (without the link).
pub fn remove(c: &mut impl GenericClient, id: i64) -> anyhow::Result<bool> {
    Ok(c.execute_typed(
        "DELETE FROM mailrun.recurring_jobs WHERE id = $1",
        &params(&[&id]),
    )? == 1)
}

/// What a tick did for one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Materialised {
    pub job_id: i64,
    pub occurrence_at: DateTime<Utc>,
    #[serde(flatten)]
    pub outcome: OccurrenceOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum OccurrenceOutcome {
    /// The message was queued.
    Enqueued { message_id: i64 },
    /// Later than the job's lateness limit when seen; not sent.
    Skipped,
    /// The template was refused at this time (say, its account was removed).
    Failed { detail: String },
}

/// A job the tick could not evaluate (its spec or time zone no longer parses).
#[derive(Debug, Clone, Serialize)]
pub struct BadJob {
    pub job_id: i64,
    pub error: String,
}

/// Everything one `materialise_due` call did.
#[derive(Debug, Default, Serialize)]
pub struct TickReport {
    pub materialised: Vec<Materialised>,
    pub bad_jobs: Vec<BadJob>,
}

/// Materialises the due occurrence of every unpaused job, per the catch-up rule, as of
/// `now` (pass the database's `now()`). Each job is handled in its own transaction;
/// a job another tick is handling at the same moment is skipped (that tick does it).
pub fn materialise_due(
    c: &mut impl GenericClient,
    now: DateTime<Utc>,
) -> anyhow::Result<TickReport> {
    let ids: Vec<i64> = c
        .query_typed(
            &format!("SELECT id FROM mailrun.recurring_jobs WHERE {LIVE} ORDER BY id"),
            &[],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    materialise_jobs(c, &ids, now)
}

/// [`materialise_due`] for jobs already listed (dispatch-tick gets the live ones from
/// `mailrun.tick_begin`); a job no longer live when its turn comes is skipped.
pub fn materialise_jobs(
    c: &mut impl GenericClient,
    ids: &[i64],
    now: DateTime<Utc>,
) -> anyhow::Result<TickReport> {
    let mut report = TickReport::default();
    for &id in ids {
        let mut tx = c.transaction()?;
        let Some(row) = tx.query_typed_opt(
            &format!(
                "SELECT {JOB_COLUMNS} FROM mailrun.recurring_jobs
                 WHERE id = $1 AND {LIVE} FOR UPDATE SKIP LOCKED"
            ),
            &params(&[&id]),
        )?
        else {
            continue;
        };
        let job = job_from_row(&row);
        let spec = match job.spec() {
            Ok(spec) => spec,
            Err(e) => {
                report.bad_jobs.push(BadJob {
                    job_id: id,
                    error: format!("{e:#}"),
                });
                continue;
            }
        };
        let lateness = Duration::seconds(i64::from(job.max_lateness_seconds));
        let outcome = match catch_up(&spec, job.last_occurrence_at, job.created_at, now, lateness) {
            CatchUp::NothingDue => None,
            // Past its end time: the job is finished, nothing is recorded.
            CatchUp::Stale(t) | CatchUp::Due(t) if job.until.is_some_and(|u| t > u) => None,
            CatchUp::Stale(t) => record(&mut tx, &job, t, None)?,
            CatchUp::Due(t) => record(&mut tx, &job, t, Some(&job.template))?,
        };
        tx.commit()?;
        report.materialised.extend(outcome);
    }
    Ok(report)
}

/// Claims occurrence `t` of `job` and, for a due one (`template` given), enqueues its
/// message; `None` when another tick claimed it first.
fn record(
    tx: &mut postgres::Transaction,
    job: &RecurringJob,
    t: DateTime<Utc>,
    template: Option<&Value>,
) -> anyhow::Result<Option<Materialised>> {
    let status = if template.is_some() {
        "enqueued"
    } else {
        "skipped"
    };
    let won = tx.execute_typed(
        "INSERT INTO mailrun.recurring_occurrences (job_id, occurrence_at, status)
         VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        &params(&[&job.id, &t, &status]),
    )? == 1;
    if !won {
        return Ok(None);
    }
    tx.execute_typed(
        "UPDATE mailrun.recurring_jobs
         SET last_occurrence_at = greatest(last_occurrence_at, $2), updated_at = now()
         WHERE id = $1",
        &params(&[&job.id, &t]),
    )?;
    let Some(template) = template else {
        return Ok(Some(Materialised {
            job_id: job.id,
            occurrence_at: t,
            outcome: OccurrenceOutcome::Skipped,
        }));
    };
    let mut message = template.clone();
    if let Some(obj) = message.as_object_mut() {
        obj.insert("send_at".into(), json!(t.to_rfc3339()));
    }
    // A savepoint: a refused template must not undo the occurrence row, or every
    // later tick would try (and fail) again.
    let mut sp = tx.transaction()?;
    let outcome = match queue::enqueue(&mut sp, &message) {
        Ok(message_id) => {
            sp.execute_typed(
                "UPDATE mailrun.messages SET recurring_job_id = $2 WHERE id = $1",
                &params(&[&message_id, &job.id]),
            )?;
            // Under the job's row lock, with the occurrence row: the count holds
            // however many ticks overlap.
            sp.execute_typed(
                "UPDATE mailrun.recurring_jobs SET runs = runs + 1 WHERE id = $1",
                &[(&job.id, Type::INT8)],
            )?;
            sp.execute_typed(
                "UPDATE mailrun.recurring_occurrences SET message_id = $3
                 WHERE job_id = $1 AND occurrence_at = $2",
                &params(&[&job.id, &t, &message_id]),
            )?;
            sp.commit()?;
            OccurrenceOutcome::Enqueued { message_id }
        }
        Err(EnqueueError::Invalid { message, .. }) => {
            sp.rollback()?;
            tx.execute_typed(
                "UPDATE mailrun.recurring_occurrences SET status = 'failed', detail = $3
                 WHERE job_id = $1 AND occurrence_at = $2",
                &params(&[&job.id, &t, &message]),
            )?;
            OccurrenceOutcome::Failed { detail: message }
        }
        Err(EnqueueError::Database(e)) => return Err(e.into()),
    };
    Ok(Some(Materialised {
        job_id: job.id,
        occurrence_at: t,
        outcome,
    }))
}

/// One handled occurrence, for `schedule list --json` and the status page.
#[derive(Debug, Clone, Serialize)]
pub struct Occurrence {
    pub job_id: i64,
    pub occurrence_at: DateTime<Utc>,
    pub status: String,
    pub message_id: Option<i64>,
    pub detail: Option<String>,
}

/// The latest `limit` occurrences of a job, newest first.
pub fn occurrences(
    c: &mut impl GenericClient,
    job_id: i64,
    limit: i64,
) -> anyhow::Result<Vec<Occurrence>> {
    Ok(c.query_typed(
        "SELECT job_id, occurrence_at, status, message_id, detail
             FROM mailrun.recurring_occurrences WHERE job_id = $1
             ORDER BY occurrence_at DESC LIMIT $2",
        &params(&[&job_id, &limit]),
    )?
    .iter()
    .map(|r| Occurrence {
        job_id: r.get(0),
        occurrence_at: r.get(1),
        status: r.get(2),
        message_id: r.get(3),
        detail: r.get(4),
    })
    .collect())
}
