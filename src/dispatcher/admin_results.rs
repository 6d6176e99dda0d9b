//! `dispatch-admin schedule ...` (recurring jobs) and `dispatch-admin report` (delivery
//! results): the clap definitions and their handlers, kept out of admin.rs.

use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use clap::{Args as ClapArgs, Subcommand, ValueEnum};
use serde_json::{json, Value};

use crate::cli::{CliError, EXIT_CONFIG, EXIT_DATA, EXIT_OK, EXIT_USAGE};
use crate::config::DispatcherConfig;
use crate::dispatcher::report::{self, Filter};
use crate::dispatcher::retry::Policy;
use crate::dispatcher::{message, recurring};
use crate::schedule::cron::CronSpec;
use crate::schedule::when;

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

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SummaryBy {
    /// Per batch handed to a runner: messages sent, deferred, failed.
    JobRun,
    /// Per recurring job: occurrences, and its messages by current state.
    RecurringJob,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OutcomeArg {
    Sent,
    Deferred,
    Failed,
    #[value(name = "not_attempted", alias = "not-attempted")]
    NotAttempted,
}

impl OutcomeArg {
    fn as_str(self) -> &'static str {
        match self {
            OutcomeArg::Sent => "sent",
            OutcomeArg::Deferred => "deferred",
            OutcomeArg::Failed => "failed",
            OutcomeArg::NotAttempted => "not_attempted",
        }
    }
}

/// `dispatch-admin report`.
#[derive(Debug, ClapArgs)]
#[command(after_help = "\
TIME is RFC 3339 (2026-11-23T08:00:00Z), a local date or date and time in --time-zone
(2026-11-23, \"2026-11-23 08:00\"), or an age back from now (90m, 2h, 7d, \"3 days ago\").
Rows are one per attempt and recipient, oldest first: when, message, recipient, runner,
job run, recurring job, outcome, SMTP code, enhanced status, the server's text, and
whether the report came late (after the lease was replaced; recorded, not applied).")]
pub struct ReportArgs {
    /// Attempts at or after this time.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Attempts before this time.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only rows with this outcome (per recipient where the runner said).
    #[arg(long, visible_alias = "outcome", value_enum, value_name = "OUTCOME")]
    pub state: Option<OutcomeArg>,
    /// Only attempts by this runner.
    #[arg(long, value_name = "ID")]
    pub runner: Option<String>,
    /// Only this job run (batch).
    #[arg(long, value_name = "UUID")]
    pub job_run: Option<uuid::Uuid>,
    /// Only messages of this recurring job (id or name).
    #[arg(long, value_name = "JOB")]
    pub recurring_job: Option<String>,
    /// Only this message.
    #[arg(long, value_name = "ID")]
    pub message: Option<i64>,
    /// At most this many rows.
    #[arg(long, value_name = "N")]
    pub limit: Option<i64>,
    /// Print CSV (RFC 4180, with a header line) instead of a table.
    #[arg(long)]
    pub csv: bool,
    /// Counts per job run (default) or per recurring job instead of attempt rows.
    #[arg(long, value_enum, value_name = "BY", num_args = 0..=1, default_missing_value = "job-run")]
    pub summary: Option<SummaryBy>,
    /// IANA time zone for local --since/--until [default: time_zone in the config
    /// file, else UTC]
    #[arg(long, value_name = "TZ")]
    pub time_zone: Option<String>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| format!("{s:?}: want a number and a unit, e.g. 24h"))?;
    let mult = match unit {
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{s:?}: unit must be m, h or d")),
    };
    n.checked_mul(mult)
        .and_then(Duration::try_seconds)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// The time zone from a flag (a usage error if bad), else the config (a config error).
fn time_zone(flag: Option<&str>, config: &DispatcherConfig) -> anyhow::Result<chrono_tz::Tz> {
    Ok(match (flag, &config.time_zone) {
        (Some(name), _) => {
            when::parse_time_zone(name).map_err(|e| CliError::new(EXIT_USAGE, e.to_string()))?
        }
        (None, Some(name)) => {
            when::parse_time_zone(name).map_err(|e| CliError::new(EXIT_CONFIG, e.to_string()))?
        }
        (None, None) => chrono_tz::UTC,
    })
}

fn db_now(db: &mut postgres::Client) -> anyhow::Result<DateTime<Utc>> {
    Ok(db.query_one("SELECT now()", &[])?.get(0))
}

fn read_template(path: &Path) -> anyhow::Result<Value> {
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

fn fmt_time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| "-".into())
}

fn job_json(job: &recurring::RecurringJob) -> Value {
    let next = job.next_run();
    let tz = when::parse_time_zone(&job.time_zone).ok();
    json!({
        "id": job.id, "name": job.name, "cron": job.cron, "time_zone": job.time_zone,
        "paused": job.paused, "created_at": job.created_at,
        "last_occurrence_at": job.last_occurrence_at,
        "max_lateness_seconds": job.max_lateness_seconds,
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
        } => {
            let tz = time_zone(tz_flag.as_deref(), &config)?;
            let spec = CronSpec::parse_in(&cron, tz)
                .map_err(|e| CliError::new(EXIT_DATA, e.to_string()))?;
            let mut template = read_template(&template)?;
            message::apply_defaults(&mut template, &config.defaults);
            let policy = Policy::load(db)?;
            message::check(&template, Some(policy.max_message_bytes))
                .map_err(|e| CliError::new(EXIT_DATA, format!("template: {e}")))?;
            let id = recurring::add(
                db,
                &recurring::NewJob {
                    name: name.as_deref(),
                    spec: &spec,
                    template: &template,
                    max_lateness,
                },
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

fn state_change(id: i64, verb: &str, changed: bool, json_out: bool, verbose: bool) {
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

fn job_table(jobs: &[recurring::RecurringJob]) -> String {
    let mut s = format!(
        "{:>5} {:<16} {:<18} {:<16} {:<7} {:<21} {}\n",
        "ID", "NAME", "CRON", "TIME ZONE", "PAUSED", "NEXT RUN (UTC)", "SUBJECT"
    );
    for j in jobs {
        s.push_str(&format!(
            "{:>5} {:<16} {:<18} {:<16} {:<7} {:<21} {}\n",
            j.id,
            j.name.as_deref().unwrap_or("-"),
            j.cron,
            j.time_zone,
            if j.paused { "yes" } else { "no" },
            fmt_time(j.next_run()),
            j.template
                .get("subject")
                .and_then(Value::as_str)
                .unwrap_or("")
        ));
    }
    s
}

/// `dispatch-admin report`.
pub fn report(
    db: &mut postgres::Client,
    config_path: Option<&Path>,
    args: ReportArgs,
    json_out: bool,
) -> anyhow::Result<u8> {
    if json_out && args.csv {
        return Err(CliError::new(EXIT_USAGE, "give --json or --csv, not both").into());
    }
    let (config, _) = DispatcherConfig::load(config_path)?;
    let tz = time_zone(args.time_zone.as_deref(), &config)?;
    let now = db_now(db)?;
    let read = |flag: &str, v: &Option<String>| -> anyhow::Result<Option<DateTime<Utc>>> {
        v.as_deref()
            .map(|s| {
                report::parse_time(s, now, tz)
                    .map_err(|e| CliError::new(EXIT_USAGE, format!("--{flag}: {e}")).into())
            })
            .transpose()
    };
    let since = read("since", &args.since)?;
    let until = read("until", &args.until)?;
    let recurring_job = match &args.recurring_job {
        Some(j) => Some(recurring::find(db, j)?.id),
        None => None,
    };
    let filter = Filter {
        since,
        until,
        outcome: args.state.map(|s| s.as_str().to_string()),
        runner: args.runner.clone(),
        job_run: args.job_run,
        recurring_job,
        message: args.message,
        limit: args.limit,
    };
    if let Some(n) = filter.limit {
        if n < 1 {
            return Err(CliError::new(EXIT_USAGE, "--limit must be at least 1").into());
        }
    }
    // Refuse filters a summary would silently ignore.
    let ignored: &[(&str, bool)] = match args.summary {
        None => &[],
        Some(SummaryBy::JobRun) => &[
            ("--state", args.state.is_some()),
            ("--message", args.message.is_some()),
            ("--recurring-job", args.recurring_job.is_some()),
        ],
        Some(SummaryBy::RecurringJob) => &[
            ("--state", args.state.is_some()),
            ("--message", args.message.is_some()),
            ("--runner", args.runner.is_some()),
            ("--job-run", args.job_run.is_some()),
            ("--limit", args.limit.is_some()),
        ],
    };
    if let Some((flag, _)) = ignored.iter().find(|(_, given)| *given) {
        return Err(CliError::new(
            EXIT_USAGE,
            format!("{flag} does not apply to this --summary"),
        )
        .into());
    }
    match args.summary {
        Some(SummaryBy::JobRun) => {
            let rows = report::job_run_summary(db, &filter)?;
            if json_out {
                println!("{}", serde_json::to_value(&rows)?);
            } else if args.csv {
                let mut s = String::from(
                    "job_run_id,runner,created_at,messages,reported,sent,deferred,failed,not_attempted\r\n",
                );
                for r in &rows {
                    s.push_str(&format!(
                        "{},{},{},{},{},{},{},{},{}\r\n",
                        r.job_run_id,
                        report::csv_field(&r.runner),
                        r.created_at.to_rfc3339(),
                        r.messages,
                        r.reported,
                        r.sent,
                        r.deferred,
                        r.failed,
                        r.not_attempted
                    ));
                }
                print!("{s}");
            } else {
                let mut s = format!(
                    "{:<36} {:<16} {:<20} {:>5} {:>5} {:>5} {:>5} {:>5}\n",
                    "JOB RUN", "RUNNER", "CREATED (UTC)", "MSGS", "SENT", "DEFER", "FAIL", "OPEN"
                );
                for r in &rows {
                    s.push_str(&format!(
                        "{:<36} {:<16} {:<20} {:>5} {:>5} {:>5} {:>5} {:>5}\n",
                        r.job_run_id,
                        r.runner,
                        fmt_time(Some(r.created_at)),
                        r.messages,
                        r.sent,
                        r.deferred,
                        r.failed,
                        i64::from(r.messages) - r.reported + r.not_attempted
                    ));
                }
                print!("{s}");
            }
        }
        Some(SummaryBy::RecurringJob) => {
            let rows = report::recurring_summary(db, &filter)?;
            if json_out {
                println!("{}", serde_json::to_value(&rows)?);
            } else if args.csv {
                let mut s = String::from(
                    "job_id,name,cron,occurrences_enqueued,occurrences_skipped,occurrences_failed,\
                     messages,queued,leased,deferred,sent,failed,cancelled,expired\r\n",
                );
                for r in &rows {
                    s.push_str(&format!(
                        "{},{},{},{},{},{},{},{},{},{},{},{},{},{}\r\n",
                        r.job_id,
                        report::csv_field(r.name.as_deref().unwrap_or("")),
                        report::csv_field(&r.cron),
                        r.occurrences_enqueued,
                        r.occurrences_skipped,
                        r.occurrences_failed,
                        r.messages,
                        r.queued,
                        r.leased,
                        r.deferred,
                        r.sent,
                        r.failed,
                        r.cancelled,
                        r.expired
                    ));
                }
                print!("{s}");
            } else {
                let mut s = format!(
                    "{:>5} {:<16} {:<16} {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} {:>5}\n",
                    "JOB", "NAME", "CRON", "RUNS", "SKIP", "MSGS", "SENT", "DEFER", "FAIL", "OPEN"
                );
                for r in &rows {
                    s.push_str(&format!(
                        "{:>5} {:<16} {:<16} {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} {:>5}\n",
                        r.job_id,
                        r.name.as_deref().unwrap_or("-"),
                        r.cron,
                        r.occurrences_enqueued,
                        r.occurrences_skipped + r.occurrences_failed,
                        r.messages,
                        r.sent,
                        r.deferred,
                        r.failed + r.expired,
                        r.queued + r.leased
                    ));
                }
                print!("{s}");
            }
        }
        None => {
            let rows = report::attempts(db, &filter)?;
            if json_out {
                println!("{}", serde_json::to_value(&rows)?);
            } else if args.csv {
                print!("{}", report::to_csv(&rows));
            } else {
                let mut s = format!(
                    "{:<20} {:>7} {:<28} {:<12} {:<13} {}\n",
                    "ATTEMPTED (UTC)", "MESSAGE", "RECIPIENT", "RUNNER", "OUTCOME", "SMTP ANSWER"
                );
                for r in &rows {
                    let answer = report::smtp_answer(
                        r.smtp_code.map(i64::from),
                        r.enhanced_status.as_deref(),
                        r.text.as_deref().map(one_line).as_deref(),
                    );
                    s.push_str(&format!(
                        "{:<20} {:>7} {:<28} {:<12} {:<13} {}\n",
                        fmt_time(Some(r.attempted_at)),
                        r.message_id,
                        r.recipient,
                        r.runner,
                        if r.late {
                            format!("{} (late)", r.outcome)
                        } else {
                            r.outcome.clone()
                        },
                        if answer.is_empty() { "-" } else { &answer }
                    ));
                }
                print!("{s}");
            }
        }
    }
    Ok(EXIT_OK)
}

/// SMTP text on one table line (multi-line answers joined).
fn one_line(s: &str) -> String {
    s.split(['\r', '\n'])
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" / ")
}
