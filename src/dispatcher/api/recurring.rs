//! `/api/v1/recurring`: recurring jobs (cron spec + message template), the same rules as
//! `dispatch-admin schedule`.

use chrono::Duration;
use postgres::Transaction;
use serde_json::{json, Value};

use super::problem::{pointer_token, Problem};
use super::{internal, Context};
use crate::cli::CliError;
use crate::dispatcher::connection;
use crate::dispatcher::intake::{field_of, Intake};
use crate::dispatcher::recurring::{self, RecurringJob};
use crate::dispatcher::retry::Policy;
use crate::schedule::cron::CronSpec;
use crate::schedule::when;
use crate::schedule::Zone;

const FIELDS: &[&str] = &[
    "cron",
    "time_zone",
    "name",
    "template",
    "max_lateness_seconds",
    "count",
    "until",
];

fn job_json(job: &RecurringJob) -> Value {
    json!({
        "id": job.id, "name": job.name, "cron": job.cron, "time_zone": job.time_zone,
        "paused": job.paused, "created_at": job.created_at,
        "last_occurrence_at": job.last_occurrence_at,
        "max_lateness_seconds": job.max_lateness_seconds,
        "max_runs": job.max_runs, "runs": job.runs, "until": job.until,
        "finished": job.finished(),
        "next_run": job.next_run(), "template": job.template,
    })
}

/// A `CliError` from the recurring module is the input's fault; anything else is ours.
fn refusal(e: anyhow::Error, pointer: &str) -> Problem {
    match e.downcast_ref::<CliError>() {
        Some(c) => {
            let pointer = match c.message.strip_prefix("template: ") {
                Some(rest) => match field_of(rest) {
                    Some(f) => format!("/template/{}", pointer_token(f)),
                    None => "/template".to_string(),
                },
                None => pointer.to_string(),
            };
            Problem::invalid(pointer, c.message.clone())
        }
        None => internal(e),
    }
}

fn find(tx: &mut Transaction, job: &str) -> Result<RecurringJob, Problem> {
    recurring::find(tx, job).map_err(|e| match e.downcast_ref::<CliError>() {
        Some(c) => Problem::not_found(c.message.clone()),
        None => internal(e),
    })
}

pub(super) fn list(tx: &mut Transaction) -> Result<(u16, Value), Problem> {
    let jobs = recurring::list(tx).map_err(internal)?;
    Ok((
        200,
        json!({"jobs": jobs.iter().map(job_json).collect::<Vec<_>>()}),
    ))
}

pub(super) fn get(tx: &mut Transaction, job: &str) -> Result<(u16, Value), Problem> {
    Ok((200, job_json(&find(tx, job)?)))
}

pub(super) fn add(
    tx: &mut Transaction,
    ctx: &Context,
    body: Value,
) -> Result<(u16, Value), Problem> {
    let Some(obj) = body.as_object() else {
        return Err(Problem::invalid("", "the body must be a JSON object"));
    };
    if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(Problem::invalid(
            format!("/{}", pointer_token(k)),
            format!("unknown field \"{k}\""),
        ));
    }
    let text = |k: &str| match obj.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(Problem::invalid(
            format!("/{k}"),
            format!("\"{k}\" must be a string"),
        )),
    };
    let cron = text("cron")?.ok_or_else(|| Problem::invalid("/cron", "\"cron\" is required"))?;
    let tz = match text("time_zone")? {
        Some(name) => when::parse_time_zone(name)
            .map_err(|e| Problem::invalid("/time_zone", e.to_string()))?,
        None => match &ctx.config.time_zone {
            Some(name) => when::parse_time_zone(name).map_err(internal)?,
            None => Zone::UTC,
        },
    };
    let spec =
        CronSpec::parse_in(cron, tz).map_err(|e| Problem::invalid("/cron", e.to_string()))?;
    let name = text("name")?;
    let lateness = match obj.get("max_lateness_seconds") {
        None | Some(Value::Null) => Duration::hours(24),
        Some(v) => v.as_i64().and_then(Duration::try_seconds).ok_or_else(|| {
            Problem::invalid("/max_lateness_seconds", "want a whole number of seconds")
        })?,
    };
    let template = match obj.get("template") {
        Some(t @ Value::Object(_)) => t.clone(),
        _ => {
            return Err(Problem::invalid(
                "/template",
                "\"template\" must be a message object (without send_at and message_id)",
            ))
        }
    };
    if let Some(f) = ["send_at", "message_id"]
        .iter()
        .find(|f| template.get(**f).is_some())
    {
        return Err(Problem::invalid(
            format!("/template/{f}"),
            format!("\"{f}\" is set per occurrence; remove it from the template"),
        ));
    }
    let policy = Policy::load(tx).map_err(internal)?;
    let intake = Intake {
        defaults: &ctx.config.defaults,
        max_message_bytes: policy.max_message_bytes,
        now: connection::db_now(tx).map_err(internal)?,
    };
    let template = intake
        .complete(template, tz)
        .map_err(|e| {
            let pointer = match field_of(&e) {
                Some(f) => format!("/template/{}", pointer_token(f)),
                None => "/template".to_string(),
            };
            Problem::invalid(pointer, format!("template: {e}"))
        })?
        .message;
    let count = match obj.get("count") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    Problem::invalid("/count", "want a whole number of runs, at least 1")
                })?,
        ),
    };
    let until = match text("until")? {
        Some(input) => Some(
            intake
                .read_send_at(input, tz)
                .map_err(|e| Problem::invalid("/until", e.replacen("\"send_at\"", "\"until\"", 1)))?
                .at,
        ),
        None => None,
    };
    let id = recurring::add_limited(
        tx,
        &recurring::NewJob {
            name,
            spec: &spec,
            template: &template,
            max_lateness: lateness,
        },
        &recurring::RunLimits { count, until },
    )
    .map_err(|e| {
        let pointer = if e.to_string().contains("lateness") {
            "/max_lateness_seconds"
        } else {
            "/name"
        };
        refusal(e, pointer)
    })?;
    Ok((201, job_json(&find(tx, &id.to_string())?)))
}

pub(super) fn pause(tx: &mut Transaction, job: &str, pause: bool) -> Result<(u16, Value), Problem> {
    let j = find(tx, job)?;
    if pause {
        recurring::pause(tx, j.id).map_err(internal)?;
    } else {
        recurring::resume(tx, j.id).map_err(internal)?;
    }
    Ok((200, job_json(&find(tx, &j.id.to_string())?)))
}

pub(super) fn remove(tx: &mut Transaction, job: &str) -> Result<(u16, Value), Problem> {
    let j = find(tx, job)?;
    recurring::remove(tx, j.id).map_err(internal)?;
    Ok((200, json!({"id": j.id, "removed": true})))
}
