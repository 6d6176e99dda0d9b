//! Results: every delivery attempt with its SMTP answer, one row per attempt and
//! recipient, filtered by time, outcome, runner, job run, recurring job or message; and
//! job-level summaries (per job run, per recurring job). Used by `dispatch-admin
//! report`; the output types are kept apart from the CLI's formatting.

use crate::dispatcher::typed::{params, Param};
use crate::schedule::Zone;
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use postgres::GenericClient;
use serde::Serialize;

/// Outcomes a report row can have.
pub const OUTCOMES: &[&str] = &["sent", "deferred", "failed", "not_attempted"];

/// Which rows a report covers; `None` means no restriction.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Attempts at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Attempts before this time.
    pub until: Option<DateTime<Utc>>,
    /// Outcome of the row (per recipient where the runner reported recipients).
    pub outcome: Option<String>,
    pub runner: Option<String>,
    pub job_run: Option<uuid::Uuid>,
    pub recurring_job: Option<i64>,
    pub message: Option<i64>,
    /// Most rows returned (newest are not preferred: rows come oldest first).
    pub limit: Option<i64>,
}

/// One attempt for one recipient.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Row {
    pub attempted_at: DateTime<Utc>,
    pub message_id: i64,
    /// The recipient the answer is for; all pending recipients (comma-separated) when
    /// the runner reported one answer for the whole message.
    pub recipient: String,
    pub runner: String,
    pub job_run_id: Option<String>,
    pub recurring_job_id: Option<i64>,
    pub outcome: String,
    pub smtp_code: Option<i32>,
    pub enhanced_status: Option<String>,
    pub text: Option<String>,
    /// Reported after the lease had been replaced: recorded, not applied.
    pub late: bool,
}

/// Column names of [`Row`], in CSV order.
pub const CSV_HEADER: &[&str] = &[
    "attempted_at",
    "message_id",
    "recipient",
    "runner",
    "job_run_id",
    "recurring_job_id",
    "outcome",
    "smtp_code",
    "enhanced_status",
    "text",
    "late",
];

/// SQL conditions and parameters built from a filter.
struct Where {
    conditions: Vec<String>,
    params: Vec<Box<dyn Param>>,
}

impl Where {
    fn new() -> Where {
        Where {
            conditions: Vec::new(),
            params: Vec::new(),
        }
    }

    /// Adds `sql` with `$?` replaced by the next parameter number.
    fn add(&mut self, sql: &str, value: Box<dyn Param>) {
        self.params.push(value);
        self.conditions
            .push(sql.replace("$?", &format!("${}", self.params.len())));
    }

    fn clause(&self) -> String {
        if self.conditions.is_empty() {
            "true".into()
        } else {
            self.conditions.join(" AND ")
        }
    }

    fn refs(&self) -> Vec<&dyn Param> {
        self.params.iter().map(|p| p.as_ref()).collect()
    }
}

/// The attempt rows matching `f`, oldest first.
pub fn attempts(c: &mut impl GenericClient, f: &Filter) -> anyhow::Result<Vec<Row>> {
    if let Some(o) = &f.outcome {
        anyhow::ensure!(
            OUTCOMES.contains(&o.as_str()),
            "unknown outcome {o:?}: use one of {}",
            OUTCOMES.join(", ")
        );
    }
    let mut w = Where::new();
    if let Some(t) = f.since {
        w.add("a.attempted_at >= $?", Box::new(t));
    }
    if let Some(t) = f.until {
        w.add("a.attempted_at < $?", Box::new(t));
    }
    if let Some(r) = &f.runner {
        w.add("a.runner_id = $?", Box::new(r.clone()));
    }
    if let Some(j) = f.job_run {
        w.add("a.job_run_id = $?", Box::new(j));
    }
    if let Some(j) = f.recurring_job {
        w.add("m.recurring_job_id = $?", Box::new(j));
    }
    if let Some(m) = f.message {
        w.add("a.message_id = $?", Box::new(m));
    }
    let mut outer = Where {
        conditions: Vec::new(),
        params: std::mem::take(&mut w.params),
    };
    if let Some(o) = &f.outcome {
        outer.add("x.outcome = $?", Box::new(o.clone()));
    }
    let mut limit = String::new();
    if let Some(n) = f.limit {
        anyhow::ensure!(n > 0, "--limit must be positive");
        outer.add("true", Box::new(n));
        limit = format!("LIMIT ${}", outer.params.len());
    }
    let sql = format!(
        "SELECT x.* FROM (
           SELECT a.attempted_at, a.message_id,
                  coalesce(r->>'address',
                           array_to_string(m.to_addrs || m.cc_addrs || m.bcc_addrs, ', ')) AS recipient,
                  a.runner_id, a.job_run_id::text, m.recurring_job_id,
                  coalesce(r->>'outcome', a.outcome) AS outcome,
                  CASE WHEN r IS NULL THEN a.smtp_code
                       WHEN jsonb_typeof(r->'smtp_code') = 'number'
                       THEN (r->>'smtp_code')::integer END,
                  CASE WHEN r IS NULL THEN a.enhanced_status ELSE r->>'enhanced_status' END,
                  CASE WHEN r IS NULL THEN a.text ELSE r->>'text' END,
                  a.late, a.id, r.n
           FROM mailrun.delivery_attempts a
           JOIN mailrun.messages m ON m.id = a.message_id
           LEFT JOIN LATERAL jsonb_array_elements(
               CASE WHEN jsonb_typeof(a.recipients) = 'array' AND a.recipients <> '[]'
                    THEN a.recipients END) WITH ORDINALITY AS r(r, n) ON true
           WHERE {}) x
         WHERE {}
         ORDER BY x.attempted_at, x.id, x.n
         {limit}",
        w.clause(),
        outer.clause()
    );
    Ok(c.query_typed(&sql, &params(&outer.refs()))?
        .iter()
        .map(|r| Row {
            attempted_at: r.get(0),
            message_id: r.get(1),
            recipient: r.get(2),
            runner: r.get(3),
            job_run_id: r.get(4),
            recurring_job_id: r.get(5),
            outcome: r.get(6),
            smtp_code: r.get(7),
            enhanced_status: r.get(8),
            text: r.get(9),
            late: r.get(10),
        })
        .collect())
}

/// One CSV field (RFC 4180): quoted when it holds a comma, quote or line break.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// An SMTP answer for a table: "550 5.1.1 user unknown". The enhanced status is left out
/// when the server's text already starts with it, as most servers' texts do.
pub fn smtp_answer(code: Option<i64>, enhanced: Option<&str>, text: Option<&str>) -> String {
    let text = text.map(str::trim);
    let enhanced = enhanced.filter(|e| !text.is_some_and(|t| t.starts_with(e)));
    [
        code.map(|c| c.to_string()),
        enhanced.map(str::to_string),
        text.map(str::to_string),
    ]
    .into_iter()
    .flatten()
    .filter(|part| !part.is_empty())
    .collect::<Vec<_>>()
    .join(" ")
}

/// The rows as CSV with a header line, CRLF line ends (RFC 4180).
pub fn to_csv(rows: &[Row]) -> String {
    let mut out = CSV_HEADER.join(",");
    out.push_str("\r\n");
    for r in rows {
        let fields = [
            r.attempted_at.to_rfc3339(),
            r.message_id.to_string(),
            r.recipient.clone(),
            r.runner.clone(),
            r.job_run_id.clone().unwrap_or_default(),
            r.recurring_job_id
                .map(|j| j.to_string())
                .unwrap_or_default(),
            r.outcome.clone(),
            r.smtp_code.map(|c| c.to_string()).unwrap_or_default(),
            r.enhanced_status.clone().unwrap_or_default(),
            r.text.clone().unwrap_or_default(),
            r.late.to_string(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

/// Outcome counts of one job run (a batch handed to a runner).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct JobRunSummary {
    pub job_run_id: String,
    pub runner: String,
    pub created_at: DateTime<Utc>,
    /// Messages in the batch.
    pub messages: i32,
    /// Messages whose result was reported.
    pub reported: i64,
    pub sent: i64,
    pub deferred: i64,
    pub failed: i64,
    pub not_attempted: i64,
}

/// Job runs created in `[since, until)` (filter: runner, job run), newest first, with
/// how their messages went. Counts are per message (the attempt's own outcome).
pub fn job_run_summary(
    c: &mut impl GenericClient,
    f: &Filter,
) -> anyhow::Result<Vec<JobRunSummary>> {
    let mut w = Where::new();
    if let Some(t) = f.since {
        w.add("j.created_at >= $?", Box::new(t));
    }
    if let Some(t) = f.until {
        w.add("j.created_at < $?", Box::new(t));
    }
    if let Some(r) = &f.runner {
        w.add("j.runner_id = $?", Box::new(r.clone()));
    }
    if let Some(j) = f.job_run {
        w.add("j.id = $?", Box::new(j));
    }
    let limit = f.limit.unwrap_or(i64::MAX);
    w.add("true", Box::new(limit));
    let n = w.params.len();
    let sql = format!(
        "SELECT j.id::text, j.runner_id, j.created_at, j.message_count,
                count(a.id),
                count(a.id) FILTER (WHERE a.outcome = 'sent'),
                count(a.id) FILTER (WHERE a.outcome = 'deferred'),
                count(a.id) FILTER (WHERE a.outcome = 'failed'),
                count(a.id) FILTER (WHERE a.outcome = 'not_attempted')
         FROM mailrun.job_runs j
         LEFT JOIN mailrun.delivery_attempts a ON a.job_run_id = j.id
         WHERE {}
         GROUP BY j.id
         ORDER BY j.created_at DESC, j.id
         LIMIT ${n}",
        w.clause()
    );
    Ok(c.query_typed(&sql, &params(&w.refs()))?
        .iter()
        .map(|r| JobRunSummary {
            job_run_id: r.get(0),
            runner: r.get(1),
            created_at: r.get(2),
            messages: r.get(3),
            reported: r.get(4),
            sent: r.get(5),
            deferred: r.get(6),
            failed: r.get(7),
            not_attempted: r.get(8),
        })
        .collect())
}

/// Where the messages of one recurring job stand.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RecurringSummary {
    pub job_id: i64,
    pub name: Option<String>,
    pub cron: String,
    /// Occurrences enqueued, skipped (too late) and failed (template refused).
    pub occurrences_enqueued: i64,
    pub occurrences_skipped: i64,
    pub occurrences_failed: i64,
    /// Messages by current state (messages created in `[since, until)`).
    pub messages: i64,
    pub queued: i64,
    pub leased: i64,
    pub deferred: i64,
    pub sent: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub expired: i64,
}

/// Every recurring job (or the one in the filter) with its occurrences and its
/// messages by state; `since`/`until` restrict both to that window.
pub fn recurring_summary(
    c: &mut impl GenericClient,
    f: &Filter,
) -> anyhow::Result<Vec<RecurringSummary>> {
    let mut w = Where::new();
    if let Some(j) = f.recurring_job {
        w.add("j.id = $?", Box::new(j));
    }
    w.add("true", Box::new(f.since));
    let since = w.params.len();
    w.add("true", Box::new(f.until));
    let until = w.params.len();
    let window = |col: &str| {
        format!(
            "({col} >= ${since} OR ${since}::timestamptz IS NULL) \
             AND ({col} < ${until} OR ${until}::timestamptz IS NULL)"
        )
    };
    let sql = format!(
        "SELECT j.id, j.name, j.cron,
                (SELECT count(*) FROM mailrun.recurring_occurrences o
                 WHERE o.job_id = j.id AND o.status = 'enqueued' AND {occ}),
                (SELECT count(*) FROM mailrun.recurring_occurrences o
                 WHERE o.job_id = j.id AND o.status = 'skipped' AND {occ}),
                (SELECT count(*) FROM mailrun.recurring_occurrences o
                 WHERE o.job_id = j.id AND o.status = 'failed' AND {occ}),
                count(m.id),
                count(m.id) FILTER (WHERE m.state = 'queued'),
                count(m.id) FILTER (WHERE m.state = 'leased'),
                count(m.id) FILTER (WHERE m.state = 'deferred'),
                count(m.id) FILTER (WHERE m.state = 'sent'),
                count(m.id) FILTER (WHERE m.state = 'failed'),
                count(m.id) FILTER (WHERE m.state = 'cancelled'),
                count(m.id) FILTER (WHERE m.state = 'expired')
         FROM mailrun.recurring_jobs j
         LEFT JOIN mailrun.messages m ON m.recurring_job_id = j.id AND {msg}
         WHERE {}
         GROUP BY j.id
         ORDER BY j.id",
        w.clause(),
        occ = window("o.occurrence_at"),
        msg = window("m.created_at"),
    );
    Ok(c.query_typed(&sql, &params(&w.refs()))?
        .iter()
        .map(|r| RecurringSummary {
            job_id: r.get(0),
            name: r.get(1),
            cron: r.get(2),
            occurrences_enqueued: r.get(3),
            occurrences_skipped: r.get(4),
            occurrences_failed: r.get(5),
            messages: r.get(6),
            queued: r.get(7),
            leased: r.get(8),
            deferred: r.get(9),
            sent: r.get(10),
            failed: r.get(11),
            cancelled: r.get(12),
            expired: r.get(13),
        })
        .collect())
}

/// Reads a report bound: RFC 3339 (`2026-11-23T08:00:00Z`), a local date or date and
/// time in `tz` (`2026-11-23`, `2026-11-23 08:00`), or an age back from `now` (`90m`,
/// `2h`, `7d`, `2w`, optionally written out: `2 hours ago`, `7 days ago`).
pub fn parse_time(input: &str, now: DateTime<Utc>, tz: Zone) -> Result<DateTime<Utc>, String> {
    let s = input.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let local = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M"))
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S"))
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S"))
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        });
    if let Some(local) = local {
        return match tz.from_local_datetime(&local) {
            chrono::LocalResult::Single(t) => Ok(t.with_timezone(&Utc)),
            chrono::LocalResult::Ambiguous(a, b) => Err(format!(
                "{input:?} happens twice in {} (clocks go back): give {} or {}",
                tz.name(),
                a.to_rfc3339(),
                b.to_rfc3339()
            )),
            chrono::LocalResult::None => Err(format!(
                "{input:?} does not exist in {} (clocks skip it)",
                tz.name()
            )),
        };
    }
    age(s)
        .and_then(|d| now.checked_sub_signed(d))
        .ok_or_else(|| {
            format!(
                "cannot read {input:?} as a time: use RFC 3339 (2026-11-23T08:00:00Z), a local \
                 date and time (2026-11-23 08:00, read in {}), or an age (2h, 7d, \"3 days ago\")",
                tz.name()
            )
        })
}

/// `90m`, `2h`, `7 d`, `3 days ago`, `1 week ago`.
fn age(s: &str) -> Option<Duration> {
    let s = s.to_ascii_lowercase();
    let s = s.strip_suffix(" ago").unwrap_or(&s).trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: i64 = num.parse().ok()?;
    let unit_seconds = match unit.trim() {
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 604_800,
        _ => return None,
    };
    Duration::try_seconds(n.checked_mul(unit_seconds)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap();
        let utc = Zone::UTC;
        let berlin = Zone::named("Europe/Berlin").unwrap();
        assert_eq!(
            parse_time("2h", now, utc).unwrap(),
            now - Duration::hours(2)
        );
        assert_eq!(
            parse_time("3 days ago", now, utc).unwrap(),
            now - Duration::days(3)
        );
        assert_eq!(
            parse_time("2026-11-23T08:00:00+01:00", now, utc).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 23, 7, 0, 0).unwrap()
        );
        assert_eq!(
            parse_time("2026-11-23", now, berlin).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 22, 23, 0, 0).unwrap()
        );
        assert!(parse_time("2026-10-25 02:30", now, berlin)
            .unwrap_err()
            .contains("twice"));
        assert!(parse_time("yesterday", now, utc).is_err());
        assert!(parse_time("99999999999999999d", now, utc).is_err());
    }

    #[test]
    fn smtp_answer_says_the_enhanced_status_once() {
        assert_eq!(
            smtp_answer(Some(250), Some("2.0.0"), Some("2.0.0 Ok: queued")),
            "250 2.0.0 Ok: queued"
        );
        assert_eq!(
            smtp_answer(Some(550), Some("5.1.1"), Some("no such user")),
            "550 5.1.1 no such user"
        );
        assert_eq!(smtp_answer(None, None, Some("timed out")), "timed out");
        assert_eq!(smtp_answer(None, None, None), "");
    }

    #[test]
    fn csv_quotes() {
        let row = Row {
            attempted_at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
            message_id: 7,
            recipient: "a@example.com".into(),
            runner: "r1".into(),
            job_run_id: None,
            recurring_job_id: Some(3),
            outcome: "failed".into(),
            smtp_code: Some(550),
            enhanced_status: Some("5.1.1".into()),
            text: Some("no \"such\" user, sorry\nbye".into()),
            late: false,
        };
        assert_eq!(
            to_csv(&[row]),
            "attempted_at,message_id,recipient,runner,job_run_id,recurring_job_id,outcome,\
             smtp_code,enhanced_status,text,late\r\n\
             2026-01-02T03:04:05+00:00,7,a@example.com,r1,,3,failed,550,5.1.1,\
             \"no \"\"such\"\" user, sorry\nbye\",false\r\n"
        );
    }
}
