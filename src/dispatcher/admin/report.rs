//! `dispatch-admin report`: delivery results, every attempt with its SMTP answer.

use std::path::Path;

use chrono::{DateTime, Utc};
use clap::{Args as ClapArgs, ValueEnum};

use crate::cli::{CliError, EXIT_OK, EXIT_USAGE};
use crate::dispatcher::config::DispatcherConfig;
use crate::dispatcher::connection::db_now;
use crate::dispatcher::recurring;
use crate::dispatcher::report::{self, Filter};
use crate::protocol::Outcome;

use super::args::*;

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
        let outcome = match self {
            OutcomeArg::Sent => Outcome::Sent,
            OutcomeArg::Deferred => Outcome::Deferred,
            OutcomeArg::Failed => Outcome::Failed,
            OutcomeArg::NotAttempted => Outcome::NotAttempted,
        };
        outcome.as_str()
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
    /// Queue the report as a message to this address (repeatable), through mailrun
    /// itself: counts and the first failures in the body, every row as a CSV
    /// attachment; prints the message id.
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["csv", "summary"])]
    pub mail_to: Vec<String>,
    /// Sender of the mailed report [default: [defaults] from in the config file]
    #[arg(long, value_name = "ADDR", requires = "mail_to")]
    pub mail_from: Option<String>,
    /// SMTP account of the mailed report [default: [defaults] account, else the only
    /// account]
    #[arg(long, value_name = "NAME", requires = "mail_to")]
    pub mail_account: Option<String>,
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
            if !args.mail_to.is_empty() {
                let mail = super::report_mail::MailTo {
                    to: &args.mail_to,
                    from: args.mail_from.as_deref(),
                    account: args.mail_account.as_deref(),
                };
                return super::report_mail::queue_report(
                    db,
                    &config,
                    &mail,
                    &rows,
                    (since, until, now),
                    json_out,
                );
            }
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
pub(super) fn one_line(s: &str) -> String {
    s.split(['\r', '\n'])
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" / ")
}
