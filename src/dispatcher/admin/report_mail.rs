//! `dispatch-admin report --mail-to ADDR`: the report queued as a message through mailrun
//! itself, a summary in the body and every row as a CSV attachment (the same columns as
//! `report --csv`), checked like any enqueue.

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::cli::{CliError, EXIT_DATA, EXIT_OK};
use crate::dispatcher::config::DispatcherConfig;
use crate::dispatcher::intake::Intake;
use crate::dispatcher::message;
use crate::dispatcher::queue::{self, EnqueueError};
use crate::dispatcher::report::{self, Row};
use crate::dispatcher::retry::Policy;
use crate::schedule::Zone;

use super::args::fmt_time;

/// Failures listed in the body (all are in the attachment).
const FAILURES_SHOWN: usize = 20;

/// Where the mailed report goes and comes from.
pub(super) struct MailTo<'a> {
    pub to: &'a [String],
    pub from: Option<&'a str>,
    pub account: Option<&'a str>,
}

/// The body: the period, counts per outcome, and the first failures.
pub(super) fn summary(
    rows: &[Row],
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> (String, String) {
    let count = |o: &str| rows.iter().filter(|r| r.outcome == o).count();
    let (sent, deferred, failed, not_attempted) = (
        count("sent"),
        count("deferred"),
        count("failed"),
        count("not_attempted"),
    );
    let late = rows.iter().filter(|r| r.late).count();
    let period = format!(
        "{} to {}",
        since.map_or("the first attempt".to_string(), |t| fmt_time(Some(t))),
        fmt_time(Some(until.unwrap_or(now)))
    );
    let subject =
        format!("mailrun report: {sent} sent, {deferred} deferred, {failed} failed ({period})");
    let mut text = format!(
        "mailrun delivery report\n\nperiod:         {period}\n\
         attempts:       {} (one per recipient where the server answered each)\n\
         sent:           {sent}\ndeferred:       {deferred}\nfailed:         {failed}\n\
         not attempted:  {not_attempted}\nlate reports:   {late}\n",
        rows.len()
    );
    let failures: Vec<&Row> = rows.iter().filter(|r| r.outcome == "failed").collect();
    if !failures.is_empty() {
        text.push_str(&format!(
            "\nfailed ({} shown of {}):\n",
            failures.len().min(FAILURES_SHOWN),
            failures.len()
        ));
        for r in failures.iter().take(FAILURES_SHOWN) {
            let answer = report::smtp_answer(
                r.smtp_code.map(i64::from),
                r.enhanced_status.as_deref(),
                r.text.as_deref().map(one_line).as_deref(),
            );
            text.push_str(&format!(
                "  {}  message {}  {}  {}\n",
                fmt_time(Some(r.attempted_at)),
                r.message_id,
                r.recipient,
                answer
            ));
        }
    }
    text.push_str(
        "\nEvery attempt is in the attached CSV (the columns of `dispatch-admin report --csv`).\n",
    );
    (subject, text)
}

/// Queues the report; prints the new message's id (JSON with --json).
pub(super) fn queue_report(
    db: &mut postgres::Client,
    config: &DispatcherConfig,
    mail: &MailTo,
    rows: &[Row],
    (since, until, now): (Option<DateTime<Utc>>, Option<DateTime<Utc>>, DateTime<Utc>),
    json_out: bool,
) -> anyhow::Result<u8> {
    let (subject, text) = summary(rows, since, until, now);
    let filename = format!("mailrun-report-{}.csv", now.format("%Y%m%d-%H%M"));
    let csv = report::to_csv(rows);
    let mut m = json!({
        "to": mail.to,
        "subject": subject,
        "text": text,
        "attachments": [message::attachment(&filename, "text/csv", csv.as_bytes())],
    });
    if let Some(f) = mail.from {
        m["from"] = json!(f);
    }
    if let Some(a) = mail.account {
        m["account"] = json!(a);
    }
    let policy = Policy::load(db)?;
    let prepared = Intake {
        defaults: &config.defaults,
        max_message_bytes: policy.max_message_bytes,
        now,
    }
    .complete(m, Zone::UTC)
    .map_err(|e| CliError::new(EXIT_DATA, format!("the report cannot be mailed: {e}")))?;
    let id = queue::enqueue(db, &prepared.message).map_err(|e| match e {
        EnqueueError::Invalid { message, .. } => {
            CliError::new(EXIT_DATA, format!("the report cannot be mailed: {message}")).into()
        }
        EnqueueError::Database(e) => anyhow::Error::from(e),
    })?;
    if json_out {
        println!(
            "{}",
            json!({"queued": id, "rows": rows.len(), "to": mail.to})
        );
    } else {
        println!("{id}");
    }
    Ok(EXIT_OK)
}

/// An SMTP answer on one line of the body (multi-line answers joined).
fn one_line(s: &str) -> String {
    s.split(['\r', '\n'])
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" / ")
}
