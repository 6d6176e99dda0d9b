//! `dispatch-admin schedule`: recurring jobs (cron spec + message template).

use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::Duration;
use clap::Subcommand;
use serde_json::{json, Value};

use crate::cli::{CliError, EXIT_DATA, EXIT_OK};
use crate::dispatcher::config::DispatcherConfig;
use crate::dispatcher::retry::Policy;
use crate::dispatcher::{message, recurring};
use crate::schedule::cron::CronSpec;
use crate::schedule::when;

use super::args::*;

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Add a recurring job: a crontab spec and a message template (one JSON object in
    /// the shape of an `enqueue --jsonl` line, without send_at and message_id). The
    /// template is checked like an enqueue now; prints the job id.
    Add {
        /// Standard 5-field crontab spec ("0 9 * * MON") or @hourly, @daily, @weekly,
        /// @monthly, @yearly.
        #[arg(long, value_name = "SPEC")]
        cron: String,
        /// File with the JSON message template, `-` for stdin.
        #[arg(long, value_name = "PATH")]
        template: PathBuf,
        /// IANA time zone the spec's times are read in [default: time_zone in the
        /// config file, else UTC]
        #[arg(long, value_name = "TZ")]
        time_zone: Option<String>,
        /// A unique name to refer to the job by (letters, digits, '.', '_', '-').
        #[arg(long)]
        name: Option<String>,
        /// Skip an occurrence a tick sees later than this (after an outage) instead of
        /// sending it late: 30m, 6h, 2d.
        #[arg(long, value_name = "AGE", default_value = "24h", value_parser = parse_duration)]
        max_lateness: Duration,
        /// Stop after this many occurrences have queued a message (skipped or refused
        /// occurrences do not count).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
        count: Option<i32>,
        /// No occurrence after this time: RFC 3339 or a send-later phrase ("in 30 days",
        /// "2027-01-31 18:00"), read in the job's time zone.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
    },
    /// List recurring jobs with their next run.
    List,
    /// One job with its template and its latest occurrences.
    Show {
        /// Job id or name.
        job: String,
    },
    /// Stop materialising a job's occurrences.
    Pause { job: String },
    /// Materialise a paused job again, from its first occurrence after now (the
    /// occurrences missed while paused are not caught up).
    Resume { job: String },
    /// Delete a job and its occurrence history (its queued messages stay queued).
    Remove { job: String },
}

pub(super) fn read_template(path: &Path) -> anyhow::Result<Value> {
    let mut text = String::new();
    let read = if path == Path::new("-") {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(path).map(|t| text = t)
    };
    read.map_err(|e| CliError::new(EXIT_DATA, format!("cannot read {}: {e}", path.display())))?;
    let template: Value = serde_json::from_str(&text).map_err(|e| {
        CliError::new(
            EXIT_DATA,
            format!("{}: not a JSON object: {e}", path.display()),
        )
    })?;
    message::check_no_nul(&template)
        .map_err(|e| CliError::new(EXIT_DATA, format!("{}: {e}", path.display())))?;
    Ok(template)
}

pub(super) fn job_json(job: &recurring::RecurringJob) -> Value {
    let next = job.next_run();
    let tz = when::parse_time_zone(&job.time_zone).ok();
    json!({
        "id": job.id, "name": job.name, "cron": job.cron, "time_zone": job.time_zone,
        "paused": job.paused, "created_at": job.created_at,
        "last_occurrence_at": job.last_occurrence_at,
        "max_lateness_seconds": job.max_lateness_seconds,
        "max_runs": job.max_runs, "runs": job.runs, "until": job.until,
        "finished": job.finished(),
        "next_run": next,
        "next_run_read_as": next.zip(tz).map(|(t, tz)| when::describe(t, tz)),
        "subject": job.template.get("subject"),
    })
}

/// `dispatch-admin schedule ...`.
pub fn schedule(
    db: &mut postgres::Client,
    config_path: Option<&Path>,
    cmd: ScheduleCommand,
    json_out: bool,
    verbose: bool,
) -> anyhow::Result<u8> {
    let (config, _) = DispatcherConfig::load(config_path)?;
    match cmd {
        ScheduleCommand::Add {
            cron,
            template,
            time_zone: tz_flag,
            name,
            max_lateness,
            count,
            until,
        } => {
            let tz = time_zone(tz_flag.as_deref(), &config)?;
            let until = match until {
                Some(s) => Some(
                    when::parse_send_at(&s, crate::dispatcher::connection::db_now(db)?, tz)
                        .map_err(|e| CliError::new(EXIT_DATA, format!("--until: {e}")))?
                        .at,
                ),
                None => None,
            };
            let spec = CronSpec::parse_in(&cron, tz)
                .map_err(|e| CliError::new(EXIT_DATA, e.to_string()))?;
            let mut template = read_template(&template)?;
            message::apply_defaults(&mut template, &config.defaults);
            let policy = Policy::load(db)?;
            message::check(&template, Some(policy.max_message_bytes))
                .map_err(|e| CliError::new(EXIT_DATA, format!("template: {e}")))?;
            let id = recurring::add_limited(
                db,
                &recurring::NewJob {
                    name: name.as_deref(),
                    spec: &spec,
                    template: &template,
                    max_lateness,
                },
                &recurring::RunLimits { count, until },
            )?;
            let job = recurring::find(db, &id.to_string())?;
            if json_out {
                println!("{}", job_json(&job));
            } else {
                println!("{id}");
                if verbose {
                    match job.next_run() {
                        Some(t) => println!("next run {}", when::describe(t, tz)),
                        None => println!("no next run"),
                    }
                }
            }
        }
        ScheduleCommand::List => {
            let jobs = recurring::list(db)?;
            if json_out {
                println!("{}", Value::Array(jobs.iter().map(job_json).collect()));
            } else {
                print!("{}", job_table(&jobs));
            }
        }
        ScheduleCommand::Show { job } => {
            let job = recurring::find(db, &job)?;
            let occurrences = recurring::occurrences(db, job.id, 20)?;
            let mut value = job_json(&job);
            value["template"] = job.template.clone();
            value["occurrences"] = serde_json::to_value(&occurrences)?;
            if json_out {
                println!("{value}");
            } else {
                let mut s = String::new();
                for key in [
                    "id",
                    "name",
                    "cron",
                    "time_zone",
                    "paused",
                    "created_at",
                    "last_occurrence_at",
                    "max_lateness_seconds",
                    "max_runs",
                    "runs",
                    "until",
                    "finished",
                    "next_run_read_as",
                ] {
                    let v = match &value[key] {
                        Value::Null => "-".to_string(),
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    s.push_str(&format!("{key:<22} {v}\n"));
                }
                s.push_str(&format!(
                    "template               {}\n",
                    serde_json::to_string(&job.template)?
                ));
                s.push_str(&format!("\noccurrences ({} latest):\n", occurrences.len()));
                for o in &occurrences {
                    s.push_str(&format!(
                        "  {}  {:<8}  {}  {}\n",
                        fmt_time(Some(o.occurrence_at)),
                        o.status,
                        o.message_id
                            .map_or("-".to_string(), |m| format!("message {m}")),
                        o.detail.as_deref().unwrap_or("")
                    ));
                }
                print!("{s}");
            }
        }
        ScheduleCommand::Pause { job } => {
            let job = recurring::find(db, &job)?;
            let changed = recurring::pause(db, job.id)?;
            state_change(job.id, "paused", changed, json_out, verbose);
        }
        ScheduleCommand::Resume { job } => {
            let job = recurring::find(db, &job)?;
            let changed = recurring::resume(db, job.id)?;
            state_change(job.id, "resumed", changed, json_out, verbose);
        }
        ScheduleCommand::Remove { job } => {
            let job = recurring::find(db, &job)?;
            let changed = recurring::remove(db, job.id)?;
            state_change(job.id, "removed", changed, json_out, verbose);
        }
    }
    Ok(EXIT_OK)
}

pub(super) fn state_change(id: i64, verb: &str, changed: bool, json_out: bool, verbose: bool) {
    if json_out {
        println!("{}", json!({"id": id, verb: changed}));
    } else if verbose {
        if changed {
            println!("recurring job {id} {verb}");
        } else {
            println!("recurring job {id} was already {verb}");
        }
    }
}

pub(super) fn job_table(jobs: &[recurring::RecurringJob]) -> String {
    let mut s = format!(
        "{:>5} {:<16} {:<18} {:<16} {:<7} {:<7} {:<21} {:<21} {}\n",
        "ID",
        "NAME",
        "CRON",
        "TIME ZONE",
        "PAUSED",
        "RUNS",
        "UNTIL (UTC)",
        "NEXT RUN (UTC)",
        "SUBJECT"
    );
    for j in jobs {
        let runs = match j.max_runs {
            Some(m) => format!("{}/{m}", j.runs),
            None => j.runs.to_string(),
        };
        let next = if j.finished() {
            "finished".to_string()
        } else {
            fmt_time(j.next_run())
        };
        s.push_str(&format!(
            "{:>5} {:<16} {:<18} {:<16} {:<7} {:<7} {:<21} {:<21} {}\n",
            j.id,
            j.name.as_deref().unwrap_or("-"),
            j.cron,
            j.time_zone,
            if j.paused { "yes" } else { "no" },
            runs,
            fmt_time(j.until),
            next,
            j.template
                .get("subject")
                .and_then(Value::as_str)
                .unwrap_or("")
        ));
    }
    s
}
