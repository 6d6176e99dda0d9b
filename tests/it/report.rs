//! Delivery results and the removal policy against the private PostgreSQL cluster:
//! `dispatch-admin report` (table, JSON, CSV, summaries, filters) over attempts recorded
//! by the queue's own stored procedures, and `retention::purge_due`.
use crate::common;
use crate::common::admin;

use std::process::Output;

use common::{assert_status, stderr, stdout};
use mailrun::dispatcher::retention::{self, RetentionConfig};
use mailrun::dispatcher::{queue, recurring};
use postgres::{Client, NoTls};
use serde_json::{json, Value};

fn json_out(out: &Output) -> Value {
    assert_status(out, 0);
    serde_json::from_str(stdout(out).trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(out), stderr(out)))
}

fn db(url: &str) -> Client {
    Client::connect(url, NoTls).expect("connect")
}

fn count(url: &str, sql: &str) -> i64 {
    db(url).query_one(sql, &[]).unwrap().get(0)
}

/// Schema, account "main", runner "r1", and three messages delivered in one job run:
/// 1 sent; 2 sent to one recipient and refused (550 5.1.1) for the other; 3 deferred.
/// Returns (url, job run id, [message ids]).
fn delivered(name: &str) -> (String, String, Vec<i64>) {
    let url = common::initialised_db(name);
    assert_status(
        &admin(
            &url,
            &[
                "account",
                "add",
                "main",
                "--host",
                "127.0.0.1",
                "--port",
                "2525",
                "--security",
                "none",
            ],
        ),
        0,
    );
    assert_status(
        &admin(
            &url,
            &["runner", "add", "r1", "--endpoint", "http://127.0.0.1:9/"],
        ),
        0,
    );
    let mut c = db(&url);
    let mut ids = Vec::new();
    for to in [
        json!(["one@example.org"]),
        json!(["two@example.org", "gone@example.org"]),
        json!(["three@example.org"]),
    ] {
        let m = json!({"from": "a@example.com", "to": to, "subject": "s", "text": "t"});
        ids.push(queue::enqueue(&mut c, &m).unwrap());
    }
    let rows = c
        .query(
            "SELECT job_run_id::text, message_id, lease_token::text
             FROM mailrun.claim_batch('r1', 10, 300) ORDER BY message_id",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 3);
    let job_run: String = rows[0].get(0);
    let token = |i: usize| rows[i].get::<_, String>(2);
    let results = [
        json!({"message_id": ids[0], "lease_token": token(0), "outcome": "sent",
               "smtp_code": 250, "enhanced_status": "2.0.0", "text": "OK queued as A1"}),
        json!({"message_id": ids[1], "lease_token": token(1), "outcome": "sent",
               "smtp_code": 250, "enhanced_status": "2.0.0", "text": "OK",
               "recipients": [
                   {"address": "two@example.org", "outcome": "sent", "smtp_code": 250,
                    "enhanced_status": "2.1.5", "text": "OK"},
                   {"address": "gone@example.org", "outcome": "failed", "smtp_code": 550,
                    "enhanced_status": "5.1.1", "text": "no such user, \"gone\""}]}),
        json!({"message_id": ids[2], "lease_token": token(2), "outcome": "deferred",
               "smtp_code": 451, "enhanced_status": "4.3.0", "text": "try later"}),
    ];
    for r in results {
        let status: String = c
            .query_one("SELECT mailrun.apply_result('r1', $1)", &[&r])
            .unwrap()
            .get(0);
        assert_eq!(status, "applied");
    }
    (url, job_run, ids)
}

#[test]
fn report_lists_every_attempt_per_recipient_with_its_smtp_answer() {
    let (url, job_run, ids) = delivered("report_rows");
    let rows = json_out(&admin(&url, &["report", "--json"]));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 4, "{rows:?}");
    let find = |recipient: &str| {
        rows.iter()
            .find(|r| r["recipient"] == recipient)
            .unwrap_or_else(|| panic!("no row for {recipient}: {rows:?}"))
    };
    let gone = find("gone@example.org");
    assert_eq!(gone["message_id"], ids[1]);
    assert_eq!(gone["outcome"], "failed");
    assert_eq!(gone["smtp_code"], 550);
    assert_eq!(gone["enhanced_status"], "5.1.1");
    assert_eq!(gone["text"], "no such user, \"gone\"");
    assert_eq!(gone["runner"], "r1");
    assert_eq!(gone["job_run_id"], job_run);
    assert_eq!(find("two@example.org")["enhanced_status"], "2.1.5");
    assert_eq!(find("one@example.org")["text"], "OK queued as A1");
    let three = find("three@example.org");
    assert_eq!(three["outcome"], "deferred");
    assert_eq!(three["smtp_code"], 451);

    // Filters.
    let only = |args: &[&str]| -> usize {
        let mut all = vec!["report", "--json"];
        all.extend_from_slice(args);
        json_out(&admin(&url, &all)).as_array().unwrap().len()
    };
    assert_eq!(only(&["--state", "failed"]), 1);
    assert_eq!(only(&["--state", "sent"]), 2);
    assert_eq!(only(&["--state", "deferred"]), 1);
    assert_eq!(only(&["--runner", "r1"]), 4);
    assert_eq!(only(&["--runner", "r2"]), 0);
    assert_eq!(only(&["--job-run", &job_run]), 4);
    assert_eq!(only(&["--message", &ids[1].to_string()]), 2);
    assert_eq!(only(&["--since", "1h"]), 4);
    assert_eq!(only(&["--since", "2 hours ago", "--until", "1h"]), 0);
    assert_eq!(only(&["--until", "2000-01-01T00:00:00Z"]), 0);
    assert_eq!(
        only(&["--since", "2000-01-01", "--time-zone", "Europe/Berlin"]),
        4
    );
    assert_eq!(only(&["--limit", "3"]), 3);

    // CSV: a header and one line per row, the SMTP text quoted as RFC 4180 says.
    let out = admin(&url, &["report", "--csv", "--state", "failed"]);
    assert_status(&out, 0);
    let csv = stdout(&out);
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[0].starts_with("attempted_at,message_id,recipient,runner"),
        "{csv}"
    );
    assert!(
        lines[1].contains(",gone@example.org,r1,")
            && lines[1].ends_with(",failed,550,5.1.1,\"no such user, \"\"gone\"\"\",false"),
        "{csv}"
    );

    // The table shows the answer.
    let table = stdout(&admin(&url, &["report"]));
    assert!(
        table.contains("gone@example.org") && table.contains("550 5.1.1 no such user"),
        "{table}"
    );
    // `show` has the same attempt with its per-recipient answers.
    let shown = stdout(&admin(&url, &["show", &ids[1].to_string()]));
    assert!(shown.contains("5.1.1"), "{shown}");
}

#[test]
fn report_summaries_per_job_run_and_recurring_job() {
    let (url, job_run, _) = delivered("report_summary");
    let summary = json_out(&admin(&url, &["report", "--summary", "--json"]));
    assert_eq!(
        summary,
        json!([{
            "job_run_id": job_run, "runner": "r1",
            "created_at": summary[0]["created_at"],
            "messages": 3, "reported": 3, "sent": 2, "deferred": 1, "failed": 0,
            "not_attempted": 0,
        }])
    );
    let csv = stdout(&admin(&url, &["report", "--summary", "job-run", "--csv"]));
    assert!(csv.contains(&format!("{job_run},r1,")), "{csv}");
    assert_eq!(
        json_out(&admin(
            &url,
            &["report", "--summary", "--runner", "nobody", "--json"]
        )),
        json!([])
    );

    // A recurring job with one enqueued occurrence.
    let mut c = db(&url);
    let spec = mailrun::schedule::CronSpec::parse("*/5 * * * *").unwrap();
    let template = json!({"from": "a@example.com", "to": "x@example.org", "text": "t"});
    let job = recurring::add(
        &mut c,
        &recurring::NewJob {
            name: Some("digest"),
            spec: &spec,
            template: &template,
            max_lateness: chrono::Duration::hours(1),
        },
    )
    .unwrap();
    c.execute(
        "UPDATE mailrun.recurring_jobs SET created_at = now() - interval '1 hour' WHERE id = $1",
        &[&job],
    )
    .unwrap();
    let now: chrono::DateTime<chrono::Utc> = c.query_one("SELECT now()", &[]).unwrap().get(0);
    assert_eq!(
        recurring::materialise_due(&mut c, now)
            .unwrap()
            .materialised
            .len(),
        1
    );
    let s = json_out(&admin(
        &url,
        &["report", "--summary", "recurring-job", "--json"],
    ));
    assert_eq!(s.as_array().unwrap().len(), 1);
    assert_eq!(s[0]["job_id"], job);
    assert_eq!(s[0]["name"], "digest");
    assert_eq!(s[0]["occurrences_enqueued"], 1);
    assert_eq!(s[0]["messages"], 1);
    assert_eq!(s[0]["queued"], 1);
    assert_eq!(s[0]["sent"], 0);
    let table = stdout(&admin(&url, &["report", "--summary", "recurring-job"]));
    assert!(table.contains("digest"), "{table}");
    // The attempts of that job's messages: none yet.
    assert_eq!(
        json_out(&admin(
            &url,
            &["report", "--recurring-job", "digest", "--json"]
        )),
        json!([])
    );
}

#[test]
fn report_refuses_bad_arguments() {
    let (url, _, _) = delivered("report_refuse");
    for (args, code, says) in [
        (vec!["--since", "someday"], 64, "--since"),
        (
            vec![
                "--until",
                "2026-10-25 02:30",
                "--time-zone",
                "Europe/Berlin",
            ],
            64,
            "twice",
        ),
        (vec!["--json", "--csv"], 64, "not both"),
        (vec!["--job-run", "not-a-uuid"], 64, "job-run"),
        (vec!["--state", "lost"], 64, "lost"),
        (vec!["--limit", "0"], 64, "limit"),
        (vec!["--recurring-job", "nope"], 65, "no recurring job"),
        (vec!["--time-zone", "Mars/Base"], 64, "Mars/Base"),
        (vec!["--summary", "--state", "failed"], 64, "--state"),
        (
            vec!["--summary", "recurring-job", "--runner", "r1"],
            64,
            "--runner",
        ),
    ] {
        let mut all = vec!["report"];
        all.extend_from_slice(&args);
        let out = admin(&url, &all);
        assert_status(&out, code);
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn retention_purges_finished_messages_and_keeps_review_codes() {
    let (url, _, ids) = delivered("report_retention");
    let mut c = db(&url);
    // A cancelled message too.
    let cancelled = queue::enqueue(
        &mut c,
        &json!({"from": "a@example.com", "to": "c@example.org", "text": "t"}),
    )
    .unwrap();
    queue::cancel(&mut c, cancelled).unwrap();
    let state = |id: i64| -> Option<String> {
        db(&url)
            .query_opt("SELECT state FROM mailrun.messages WHERE id = $1", &[&id])
            .unwrap()
            .map(|r| r.get(0))
    };
    assert_eq!(state(ids[0]).as_deref(), Some("sent"));
    assert_eq!(state(ids[1]).as_deref(), Some("sent"));
    assert_eq!(state(ids[2]).as_deref(), Some("deferred"));

    let config = RetentionConfig {
        keep_sent_days: 30,
        keep_failed_days: 90,
        review_codes: vec!["5.1.1".into()],
    };
    // Nothing is old enough yet.
    let p = retention::purge_due(&mut c, &config).unwrap();
    assert_eq!((p.purged, p.held_for_review), (0, 0));

    c.batch_execute(
        "UPDATE mailrun.messages SET finished_at = now() - interval '40 days'
         WHERE finished_at IS NOT NULL",
    )
    .unwrap();
    let p = retention::purge_due(&mut c, &config).unwrap();
    // Message 1 (sent) goes; 2 (sent, but a recipient got 5.1.1) is kept for review;
    // the cancelled one is within keep_failed_days; 3 is not finished.
    assert_eq!((p.purged, p.held_for_review), (1, 1));
    assert_eq!(state(ids[0]), None);
    assert_eq!(state(ids[1]).as_deref(), Some("sent"));
    assert_eq!(state(cancelled).as_deref(), Some("cancelled"));
    assert_eq!(state(ids[2]).as_deref(), Some("deferred"));
    for table in ["delivery_attempts", "leases"] {
        assert_eq!(
            count(
                &url,
                &format!(
                    "SELECT count(*) FROM mailrun.{table} WHERE message_id = {}",
                    ids[0]
                )
            ),
            0,
            "{table} of a purged message"
        );
    }
    // Its attempts stay, and so do the job runs that prove its leases (these were leased
    // by the fast claim round: no lease rows, tokens checked against the job run).
    assert!(
        count(
            &url,
            &format!(
                "SELECT count(*) FROM mailrun.delivery_attempts a
                 JOIN mailrun.job_runs j ON j.id = a.job_run_id
                 WHERE a.message_id = {}",
                ids[1]
            )
        ) > 0,
        "a message kept for review keeps its attempts and their job runs"
    );

    c.batch_execute(
        "UPDATE mailrun.messages SET finished_at = now() - interval '100 days'
         WHERE finished_at IS NOT NULL",
    )
    .unwrap();
    let p = retention::purge_due(&mut c, &config).unwrap();
    // The cancelled message goes; the held one is not looked at again.
    assert_eq!((p.purged, p.held_for_review), (1, 0));
    assert_eq!(state(cancelled), None);
    let held = |id: i64| -> bool {
        db(&url)
            .query_one(
                "SELECT held_for_review FROM mailrun.messages WHERE id = $1",
                &[&id],
            )
            .unwrap()
            .get(0)
    };
    assert!(held(ids[1]));
    let p = retention::purge_due(&mut c, &RetentionConfig::default()).unwrap();
    assert_eq!((p.purged, p.held_for_review), (0, 0));
    assert_eq!(state(ids[1]).as_deref(), Some("sent"));

    // A retry makes it unfinished, and no longer held.
    queue::retry(&mut c, ids[1]).unwrap();
    assert!(!held(ids[1]));
    // An operator's purge removes what is finished, held or not.
    c.batch_execute(
        "UPDATE mailrun.messages SET state = 'failed', finished_at = now() - interval '100 days',
             held_for_review = true WHERE id IN (SELECT id FROM mailrun.messages WHERE state = 'queued')",
    )
    .unwrap();
    assert_status(&admin(&url, &["purge", "--older-than", "1d"]), 0);
    assert_eq!(state(ids[1]), None);
    assert_eq!(state(ids[2]).as_deref(), Some("deferred"));
}

#[test]
fn review_patterns_match_basic_and_enhanced_codes() {
    let url = common::initialised_db("report_patterns");
    let mut c = db(&url);
    let matches = |c: &mut Client, code: Option<i32>, enhanced: Option<&str>, p: &[&str]| -> bool {
        let p: Vec<String> = p.iter().map(|s| s.to_string()).collect();
        c.query_one(
            "SELECT mailrun.code_matches($1, $2, $3)",
            &[&code, &enhanced, &p],
        )
        .unwrap()
        .get(0)
    };
    assert!(matches(&mut c, Some(550), None, &["550"]));
    assert!(matches(&mut c, Some(554), None, &["55x"]));
    assert!(matches(&mut c, Some(521), None, &["5xx"]));
    assert!(!matches(&mut c, Some(450), None, &["5xx"]));
    assert!(matches(&mut c, None, Some("5.7.1"), &["5.7.1"]));
    assert!(matches(&mut c, None, Some("5.7.26"), &["5.7"]));
    assert!(!matches(&mut c, None, Some("5.7.1"), &["5.7.10"]));
    assert!(!matches(&mut c, None, Some("5.71.1"), &["5.7"]));
    assert!(matches(&mut c, Some(250), Some("2.0.0"), &["4xx", "2.0"]));
    assert!(!matches(&mut c, None, None, &["5xx", "5.7"]));
    assert!(!matches(&mut c, Some(550), Some("5.1.1"), &[]));
}

#[test]
fn retention_and_status_page_settings_are_checked_in_the_config_file() {
    let url = common::initialised_db("report_config");
    let dir = common::temp_dir();
    let path = dir.path().join("dispatcher.toml");
    for (text, says) in [
        ("[retention]\nkeep_sent_days = 0\n", "keep_sent_days"),
        ("[retention]\nreview_codes = [\"5.7.x.1\"]\n", "5.7.x.1"),
        ("[retention]\nkeep_days = 3\n", "keep_days"),
        ("[status_page]\nallow = \"token\"\n", "token"),
        ("[status_page]\nallow = \"everyone\"\n", "everyone"),
        (
            "[status_page]\nallow = \"token\"\ntoken = \"short\"\n",
            "16",
        ),
    ] {
        std::fs::write(&path, text).unwrap();
        let out = admin(
            &url,
            &["--config", path.to_str().unwrap(), "schedule", "list"],
        );
        assert_status(&out, 78);
        assert!(stderr(&out).contains(says), "{text}: {}", stderr(&out));
        // The token never appears in an error.
        assert!(!stderr(&out).contains("short\""), "{}", stderr(&out));
    }
    std::fs::write(
        &path,
        "[retention]\nkeep_sent_days = 7\nreview_codes = [\"5.7.1\", \"55x\"]\n\
         [status_page]\nallow = \"token\"\ntoken = \"0123456789abcdef0123456789abcdef\"\n",
    )
    .unwrap();
    assert_status(
        &admin(
            &url,
            &["--config", path.to_str().unwrap(), "schedule", "list"],
        ),
        0,
    );
}

#[test]
fn dispatch_tick_purges_per_the_config_file() {
    let (url, _, ids) = delivered("report_tick_purge");
    let dir = common::temp_dir();
    let config = dir.path().join("dispatcher.toml");
    std::fs::write(
        &config,
        "[retention]\nkeep_sent_days = 2\nkeep_failed_days = 2\nreview_codes = [\"5.1.1\"]\n",
    )
    .unwrap();
    db(&url)
        .batch_execute(
            "UPDATE mailrun.messages SET finished_at = now() - interval '3 days'
             WHERE finished_at IS NOT NULL",
        )
        .unwrap();
    let out = common::run(
        common::command(env!("CARGO_BIN_EXE_dispatch-tick"))
            .arg("--database-url")
            .arg(&url)
            .arg("--config")
            .arg(&config)
            .arg("--json"),
    );
    // Message 3 is deferred (not due yet): nothing to wake runners for.
    assert_status(&out, 3);
    let summary = json_out_any(&out);
    assert_eq!(
        summary["retention"],
        json!({"purged": 1, "held_for_review": 1})
    );
    assert_eq!(
        count(&url, "SELECT count(*) FROM mailrun.messages"),
        2,
        "the sent message went; the 5.1.1 one is held; the deferred one stays"
    );
    assert_eq!(
        count(
            &url,
            &format!(
                "SELECT count(*) FROM mailrun.messages WHERE id = {} AND held_for_review",
                ids[1]
            )
        ),
        1
    );

    // A bad [retention] stops the tick as a configuration error, changing nothing.
    std::fs::write(&config, "[retention]\nkeep_sent_days = -1\n").unwrap();
    let out = common::run(
        common::command(env!("CARGO_BIN_EXE_dispatch-tick"))
            .arg("--database-url")
            .arg(&url)
            .arg("--config")
            .arg(&config),
    );
    assert_status(&out, 78);
    assert_eq!(count(&url, "SELECT count(*) FROM mailrun.messages"), 2);
}

fn json_out_any(out: &Output) -> Value {
    serde_json::from_str(stdout(out).trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(out), stderr(out)))
}

/// A message to three recipients, one accepted, one refused for good, one for now:
/// reported as the contract says (every recipient with its own answer), `show` and
/// `report` give each recipient its answer; reported by a runner that lists only the
/// refused one, the two left out are recorded with the message's answer, marked as not
/// reported, instead of vanishing from the report (issue 18).
#[test]
fn mixed_outcomes_show_every_recipient() {
    let url = common::initialised_db("report_mixed");
    assert_status(
        &admin(
            &url,
            &[
                "account",
                "add",
                "main",
                "--host",
                "127.0.0.1",
                "--port",
                "2525",
                "--security",
                "none",
            ],
        ),
        0,
    );
    assert_status(
        &admin(
            &url,
            &["runner", "add", "r1", "--endpoint", "http://127.0.0.1:9/"],
        ),
        0,
    );
    let mut c = db(&url);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let m = json!({"from": "a@example.com", "to": ["alice@example.org", "bob@example.org"],
                       "cc": ["carol@example.org"], "subject": "s", "text": "t"});
        ids.push(queue::enqueue(&mut c, &m).unwrap());
    }
    let rows = c
        .query(
            "SELECT message_id, lease_token::text
             FROM mailrun.claim_batch('r1', 10, 300) ORDER BY message_id",
            &[],
        )
        .unwrap();
    let token = |i: usize| rows[i].get::<_, String>(1);
    let alice = json!({"address": "alice@example.org", "outcome": "sent", "smtp_code": 250,
                       "enhanced_status": "2.1.5", "text": "Recipient ok"});
    let bob = json!({"address": "bob@example.org", "outcome": "failed", "smtp_code": 550,
                     "enhanced_status": "5.1.1", "text": "No such user"});
    let carol = json!({"address": "carol@example.org", "outcome": "deferred", "smtp_code": 452,
                       "enhanced_status": "4.2.2", "text": "Mailbox full"});
    let results = [
        json!({"message_id": ids[0], "lease_token": token(0), "outcome": "sent",
               "smtp_code": 250, "enhanced_status": "2.0.0", "text": "queued as Q1",
               "recipients": [alice, bob, carol]}),
        json!({"message_id": ids[1], "lease_token": token(1), "outcome": "sent",
               "smtp_code": 250, "enhanced_status": "2.0.0", "text": "queued as Q2",
               "recipients": [bob]}),
    ];
    for r in results {
        let status: String = c
            .query_one("SELECT mailrun.apply_result('r1', $1)", &[&r])
            .unwrap()
            .get(0);
        assert_eq!(status, "applied");
    }

    // As the contract says: each recipient its own answer.
    let rows = json_out(&admin(
        &url,
        &["report", "--json", "--message", &ids[0].to_string()],
    ));
    let by = |rows: &Value, who: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["recipient"] == who)
            .unwrap_or_else(|| panic!("no row for {who}: {rows}"))
            .clone()
    };
    assert_eq!(rows.as_array().unwrap().len(), 3, "{rows}");
    assert_eq!(by(&rows, "alice@example.org")["outcome"], "sent");
    assert_eq!(by(&rows, "bob@example.org")["smtp_code"], 550);
    assert_eq!(by(&rows, "carol@example.org")["outcome"], "deferred");
    let shown = stdout(&admin(&url, &["show", &ids[0].to_string()]));
    for line in [
        "alice@example.org  sent  250 2.1.5 Recipient ok",
        "bob@example.org  failed  550 5.1.1 No such user",
        "carol@example.org  deferred  452 4.2.2 Mailbox full",
    ] {
        assert!(shown.contains(line), "{line:?} not in:\n{shown}");
    }

    // Only the refused one reported: the others still appear, with the message's answer
    // marked as not theirs, and count as sent (the message's answer).
    let rows = json_out(&admin(
        &url,
        &["report", "--json", "--message", &ids[1].to_string()],
    ));
    assert_eq!(rows.as_array().unwrap().len(), 3, "{rows}");
    assert_eq!(by(&rows, "bob@example.org")["outcome"], "failed");
    for who in ["alice@example.org", "carol@example.org"] {
        let row = by(&rows, who);
        assert_eq!(row["outcome"], "sent", "{row}");
        assert!(
            row["text"]
                .as_str()
                .unwrap()
                .starts_with("not reported by the runner; the message's answer: queued as Q2"),
            "{row}"
        );
    }
    let shown = stdout(&admin(&url, &["show", &ids[1].to_string()]));
    assert!(
        shown.contains("carol@example.org  sent  250 2.0.0 not reported by the runner"),
        "{shown}"
    );
    let state: String = c
        .query_one(
            "SELECT state FROM mailrun.messages WHERE id = $1",
            &[&ids[1]],
        )
        .unwrap()
        .get(0);
    assert_eq!(state, "sent");
}

/// `report --mail-to` queues the report through mailrun itself: the counts and the
/// failure in the body, and exactly the rows of `report --csv` as an attachment.
#[test]
fn report_mailed_through_mailrun_itself() {
    use base64::Engine as _;
    let (url, _job_run, _ids) = delivered("report_mail");
    let csv = stdout(&admin(&url, &["report", "--csv"]));
    let before = count(&url, "SELECT count(*) FROM mailrun.messages");
    let v = json_out(&admin(
        &url,
        &[
            "--json",
            "report",
            "--mail-to",
            "ops@example.org",
            "--mail-from",
            "mailrun@example.org",
        ],
    ));
    let id = v["queued"].as_i64().unwrap();
    assert_eq!(
        count(&url, "SELECT count(*) FROM mailrun.messages"),
        before + 1
    );
    let row = db(&url)
        .query_one(
            "SELECT to_addrs, subject, text_body, attachments, state FROM mailrun.messages
             WHERE id = $1",
            &[&id],
        )
        .unwrap();
    let to: Vec<String> = row.get(0);
    let subject: String = row.get(1);
    let text: String = row.get(2);
    let attachments: Value = row.get(3);
    let state: String = row.get(4);
    assert_eq!(to, vec!["ops@example.org".to_string()]);
    assert_eq!(state, "queued");
    assert!(
        subject.starts_with("mailrun report: 2 sent, 1 deferred, 1 failed"),
        "{subject}"
    );
    assert!(
        text.contains("failed (1 shown of 1)") && text.contains("550"),
        "{text}"
    );
    let a = &attachments[0];
    assert_eq!(a["content_type"], "text/csv");
    assert!(a["filename"].as_str().unwrap().ends_with(".csv"));
    let data = base64::engine::general_purpose::STANDARD
        .decode(a["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(String::from_utf8(data).unwrap(), csv);

    // Refused, queueing nothing: flags that do not go together, a bad address, no sender.
    assert_status(
        &admin(&url, &["report", "--csv", "--mail-to", "ops@example.org"]),
        64,
    );
    assert_status(
        &admin(&url, &["report", "--mail-from", "a@example.org"]),
        64,
    );
    let bad = admin(
        &url,
        &[
            "report",
            "--mail-to",
            "not an address",
            "--mail-from",
            "a@example.org",
        ],
    );
    assert_status(&bad, 65);
    assert!(
        stderr(&bad).contains("cannot be mailed"),
        "{}",
        stderr(&bad)
    );
    assert_status(
        &admin(&url, &["report", "--mail-to", "ops@example.org"]),
        65,
    );
    assert_eq!(
        count(&url, "SELECT count(*) FROM mailrun.messages"),
        before + 1
    );
}
