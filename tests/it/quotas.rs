//! Quotas, throttle feedback, failover, the reply policy, suppression and the unknown
//! outcome, against the private PostgreSQL cluster and real SMTP servers (aiosmtpd,
//! tests/support/quota_smtp.py).
//!
//! The runner is not part of this test: a small stand-in here claims batches with
//! `queue::claim_batch`, delivers them over SMTP with lettre, and reports with
//! `queue::apply_results`, exactly the calls dispatch-cgi makes for a runner.
use crate::common;
use crate::common::admin;
use crate::common::web;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use chrono::{Timelike, Utc};
use common::{assert_status, stdout};
use mailrun::dispatcher::quota::{self, Caps, Scope};
use mailrun::dispatcher::reply_policy::{self, Action, NewRule, ThrottleTarget};
use mailrun::dispatcher::{queue, runners, suppression};
use mailrun::protocol::sign::SigningKey;
use mailrun::protocol::{JobRun, MessageResult, Outcome};
use postgres::{Client, NoTls};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// tests/support/quota_smtp.py on a loopback port; killed when dropped.
struct SmtpServer {
    port: u16,
    log: PathBuf,
    attempts: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl SmtpServer {
    fn start(mode: &str) -> SmtpServer {
        let probe = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .output()
            .expect("python3 not found: run scripts/test-setup.sh");
        assert!(
            probe.status.success(),
            "python3 module aiosmtpd missing: run scripts/test-setup.sh"
        );
        let dir = common::temp_dir();
        let log = dir.path().join("delivered.jsonl");
        let attempts = dir.path().join("attempts.jsonl");
        let port = common::free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/quota_smtp.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--port", &port.to_string(), "--mode", mode, "--log"])
            .arg(&log)
            .arg("--attempts")
            .arg(&attempts)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start quota_smtp.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read from quota_smtp.py");
        assert_eq!(line.trim(), "ready", "quota_smtp.py did not start");
        SmtpServer {
            port,
            log,
            attempts,
            child,
            _dir: dir,
        }
    }

    /// Every message the server accepted (one JSON object each).
    fn delivered(&self) -> Vec<Value> {
        Self::lines(&self.log)
    }

    /// Every MAIL FROM the server received, accepted or not.
    fn attempts(&self) -> Vec<Value> {
        Self::lines(&self.attempts)
    }

    fn lines(path: &Path) -> Vec<Value> {
        match std::fs::read_to_string(path) {
            Ok(s) => s
                .lines()
                .map(|l| serde_json::from_str(l).expect("log line is JSON"))
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn connect(url: &str) -> Client {
    Client::connect(url, NoTls).expect("connect")
}

/// A migrated database with runners r1..r4.
fn setup(name: &str) -> (String, Client) {
    let url = common::initialised_db(name);
    let mut c = connect(&url);
    for r in ["r1", "r2", "r3", "r4"] {
        runners::add(&mut c, r, "http://127.0.0.1:9/runner", 100).unwrap();
    }
    (url, c)
}

fn add_account(c: &mut Client, name: &str, port: u16) {
    c.execute(
        "INSERT INTO mailrun.smtp_accounts (name, host, port, security)
         VALUES ($1, '127.0.0.1', $2, 'none')",
        &[&name, &i32::from(port)],
    )
    .unwrap();
}

fn enqueue(c: &mut Client, m: Value) -> i64 {
    queue::enqueue(c, &m).expect("enqueue")
}

fn msg(account: &str, to: &str) -> Value {
    json!({"from": "Sender <sender@example.com>", "to": [to], "subject": "Hi",
           "text": "Body", "account": account})
}

fn claim(c: &mut Client, runner: &str, n: u32) -> JobRun {
    queue::claim_batch(c, runner, n, 300).expect("claim")
}

fn one(c: &mut Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).unwrap().get(0)
}

fn text(c: &mut Client, sql: &str, id: i64) -> Option<String> {
    c.query_one(sql, &[&id]).unwrap().get(0)
}

fn make_all_due(c: &mut Client) {
    c.execute(
        "UPDATE mailrun.messages SET next_attempt_at = now()
         WHERE state IN ('queued', 'deferred')",
        &[],
    )
    .unwrap();
}

/// Delivers a JobRun over SMTP with lettre, as a runner would; one result per message.
fn deliver(run: &JobRun) -> Vec<MessageResult> {
    use lettre::{Message, SmtpTransport, Transport};
    run.messages
        .iter()
        .map(|m| {
            let mut b = Message::builder()
                .from(m.from.parse().unwrap())
                .subject(m.subject.clone())
                .message_id(Some(m.message_id_header.clone()));
            for t in &m.to {
                b = b.to(t.parse().unwrap());
            }
            let email = b.body(m.text_body.clone().unwrap_or_default()).unwrap();
            let mailer = SmtpTransport::builder_dangerous(m.account.host.as_str())
                .port(m.account.port)
                .timeout(Some(Duration::from_secs(30)))
                .build();
            let (outcome, code, text) = match mailer.send(&email) {
                Ok(resp) => (
                    Outcome::Sent,
                    resp.code().to_string().parse::<u16>().ok(),
                    Some(resp.message().collect::<Vec<_>>().join(" ")),
                ),
                Err(e) => {
                    let code = e.status().and_then(|c| c.to_string().parse::<u16>().ok());
                    let outcome = if e.is_permanent() {
                        Outcome::Failed
                    } else {
                        Outcome::Deferred
                    };
                    (outcome, code, Some(e.to_string()))
                }
            };
            MessageResult {
                job_run_id: run.job_run_id.clone(),
                message_id: m.id,
                lease_token: m.lease_token.clone(),
                outcome,
                smtp_code: code,
                enhanced_status: None,
                text,
                attempted_at: Utc::now(),
                recipients: Vec::new(),
            }
        })
        .collect()
}

fn result(
    run: &JobRun,
    i: usize,
    outcome: Outcome,
    code: Option<u16>,
    text: &str,
) -> MessageResult {
    let m = &run.messages[i];
    MessageResult {
        job_run_id: run.job_run_id.clone(),
        message_id: m.id,
        lease_token: m.lease_token.clone(),
        outcome,
        smtp_code: code,
        enhanced_status: None,
        text: Some(text.into()),
        attempted_at: Utc::now(),
        recipients: Vec::new(),
    }
}

fn admin_json(url: &str, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = admin(url, &all);
    assert_status(&out, 0);
    serde_json::from_str(&stdout(&out)).expect("JSON output")
}

/// Hour and day caps count in UTC calendar buckets: keep a test off the boundary so a
/// new hour cannot start in the middle of it (a guard, not an assertion).
fn away_from_the_hour() {
    let now = Utc::now();
    if now.minute() == 59 && now.second() >= 30 {
        std::thread::sleep(Duration::from_secs(u64::from(61 - now.second())));
    }
}

// ---------------------------------------------------------------------------------------
// Quota ledger
// ---------------------------------------------------------------------------------------

#[test]
fn caps_hold_across_concurrent_claimers_counted_by_the_smtp_server() {
    away_from_the_hour();
    let server = SmtpServer::start("accept");
    let (url, mut c) = setup("caps_concurrent");
    add_account(&mut c, "main", server.port);
    // "This account: 300 per hour, 2 000 per day" (the binding cap is the hour's), a
    // recipient domain at 7 per hour and one runner at 5 per hour.
    let out = admin(
        &url,
        &[
            "quota",
            "set",
            "account",
            "main",
            "--per-hour",
            "300",
            "--per-day",
            "2000",
        ],
    );
    assert_status(&out, 0);
    quota::set(
        &mut c,
        Scope::Domain,
        "B.example",
        &Caps {
            per_second: None,
            per_hour: Some(7),
            per_day: None,
            window: None,
        },
    )
    .unwrap();
    quota::set(
        &mut c,
        Scope::Runner,
        "r1",
        &Caps {
            per_second: None,
            per_hour: Some(5),
            per_day: None,
            window: None,
        },
    )
    .unwrap();
    let mut batch = Vec::new();
    for i in 0..400 {
        let domain = if i % 4 == 0 { "b.example" } else { "a.example" };
        batch.push(msg("main", &format!("user{i}@{domain}")));
    }
    queue::enqueue_many(&mut c, &batch).unwrap();

    // Four runners claim, deliver and report at once, each on its own connection.
    let threads: Vec<_> = ["r1", "r2", "r3", "r4"]
        .into_iter()
        .map(|runner| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut c = connect(&url);
                let mut empties = 0;
                let mut got = 0;
                while empties < 3 {
                    let run = claim(&mut c, runner, 25);
                    assert!(run.messages.len() <= 25);
                    if run.messages.is_empty() {
                        empties += 1;
                        std::thread::sleep(Duration::from_millis(30));
                        continue;
                    }
                    got += run.messages.len();
                    let results = deliver(&run);
                    queue::apply_results(&mut c, runner, &results).unwrap();
                }
                (runner, got)
            })
        })
        .collect();
    let per_runner: HashMap<&str, usize> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    // Whatever a busy quota made a claimer skip is taken now, by one runner alone.
    loop {
        let run = claim(&mut c, "r2", 10);
        if run.messages.is_empty() {
            break;
        }
        queue::apply_results(&mut c, "r2", &deliver(&run)).unwrap();
    }

    let delivered = server.delivered();
    let to_b = delivered
        .iter()
        .filter(|d| d["rcpt"][0].as_str().unwrap().ends_with("@b.example"))
        .count();
    assert_eq!(delivered.len(), 300, "the account's hourly cap, exactly");
    assert_eq!(to_b, 7, "the domain's hourly cap, exactly");
    assert!(per_runner["r1"] <= 5, "runner cap: {per_runner:?}");
    let r1_attempts = one(
        &mut c,
        "SELECT count(*) FROM mailrun.delivery_attempts WHERE runner_id = 'r1'",
    );
    assert!(r1_attempts <= 5);
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM mailrun.messages WHERE state = 'sent'"
        ),
        300
    );

    // The other 100 wait, each saying for what.
    let held_account = one(
        &mut c,
        "SELECT count(*) FROM mailrun.messages WHERE state = 'queued'
         AND held_reason LIKE 'held: account main hourly cap 300/h until % UTC'",
    );
    let held_domain = one(
        &mut c,
        "SELECT count(*) FROM mailrun.messages WHERE state = 'queued'
         AND held_reason LIKE 'held: domain b.example hourly cap 7/h until % UTC'",
    );
    assert_eq!(held_account + held_domain, 100);
    assert!(held_account > 0);
    assert_eq!(
        one(&mut c, "SELECT mailrun.count_due()"),
        0,
        "held messages are not due"
    );
    let out = admin(&url, &["status"]);
    assert_status(&out, 0);
    let s = stdout(&out);
    assert!(
        s.contains("held: account main hourly cap 300/h until"),
        "{s}"
    );
    assert!(s.contains("300/300"), "{s}");
    assert!(s.contains("300/2000"), "{s}");
    let status = admin_json(&url, &["status"]);
    let quotas = status["quotas"].as_array().unwrap();
    let main = quotas.iter().find(|q| q["key"] == "main").unwrap();
    assert_eq!(main["used_hour"], 300);
    assert_eq!(main["used_day"], 300);
    assert!(!status["held"].as_array().unwrap().is_empty());
}

/// Eight claimers in tight loops over messages whose failover lists and recipient
/// domains make them lock quotas in every order: no deadlock, no claim error, and the
/// leased counts never exceed any cap.
#[test]
fn concurrent_claimers_in_mixed_lock_orders_never_exceed_a_cap() {
    away_from_the_hour();
    let (url, mut c) = setup("claim_storm");
    for r in ["r5", "r6", "r7", "r8"] {
        runners::add(&mut c, r, "http://127.0.0.1:9/runner", 100).unwrap();
    }
    add_account(&mut c, "a", 2525);
    add_account(&mut c, "b", 2526);
    let hour = |n| Caps {
        per_second: None,
        per_hour: Some(n),
        per_day: None,
        window: None,
    };
    quota::set(&mut c, Scope::Account, "a", &hour(23)).unwrap();
    quota::set(&mut c, Scope::Account, "b", &hour(19)).unwrap();
    quota::set(&mut c, Scope::Domain, "x.example", &hour(11)).unwrap();
    quota::set(&mut c, Scope::Domain, "y.example", &hour(13)).unwrap();
    quota::set(&mut c, Scope::Runner, "r3", &hour(4)).unwrap();
    let mut batch = Vec::new();
    for i in 0..400 {
        let accounts = if i % 2 == 0 { ["a", "b"] } else { ["b", "a"] };
        let to = match i % 4 {
            0 => vec![format!("u{i}@x.example")],
            1 => vec![format!("u{i}@y.example")],
            2 => vec![format!("u{i}@x.example"), format!("v{i}@y.example")],
            _ => vec![format!("u{i}@z.example")],
        };
        batch.push(json!({"from": "s@example.com", "to": to, "text": "x", "accounts": accounts}));
    }
    queue::enqueue_many(&mut c, &batch).unwrap();
    let threads: Vec<_> = ["r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8"]
        .into_iter()
        .map(|runner| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut c = connect(&url);
                let mut empties = 0;
                while empties < 5 {
                    let run = claim(&mut c, runner, 3);
                    if run.messages.is_empty() {
                        empties += 1;
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // What a busy quota made a claimer skip, taken by one claimer alone.
    while !claim(&mut c, "r1", 10).messages.is_empty() {}
    let leased = |c: &mut Client, cond: &str| {
        one(
            c,
            &format!(
                "SELECT count(*) FROM mailrun.messages m JOIN mailrun.smtp_accounts a
                 ON a.id = m.account_id WHERE m.state = 'leased' AND {cond}"
            ),
        )
    };
    let on_a = leased(&mut c, "a.name = 'a'");
    let on_b = leased(&mut c, "a.name = 'b'");
    assert!(on_a <= 23 && on_b <= 19, "a {on_a}, b {on_b}");
    assert_eq!(
        on_a + on_b,
        42,
        "both accounts filled (z.example has no domain cap)"
    );
    let to_x = leased(
        &mut c,
        "EXISTS (SELECT 1 FROM unnest(m.to_addrs) t WHERE t LIKE '%@x.example')",
    );
    let to_y = leased(
        &mut c,
        "EXISTS (SELECT 1 FROM unnest(m.to_addrs) t WHERE t LIKE '%@y.example')",
    );
    assert!(to_x <= 11 && to_y <= 13, "x {to_x}, y {to_y}");
    assert!(leased(&mut c, "m.lease_runner = 'r3'") <= 4);
}

#[test]
fn per_second_and_window_caps_and_released_reservations() {
    away_from_the_hour();
    let (_url, mut c) = setup("rate_window");
    add_account(&mut c, "main", 2525);
    for i in 0..10 {
        enqueue(&mut c, msg("main", &format!("u{i}@example.org")));
    }
    let caps = |s, w| Caps {
        per_second: s,
        per_hour: None,
        per_day: None,
        window: w,
    };
    quota::set(&mut c, Scope::Account, "main", &caps(Some(3), None)).unwrap();
    // One claim is one transaction: one second's bucket.
    let run = claim(&mut c, "r1", 10);
    assert_eq!(run.messages.len(), 3);
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM mailrun.messages WHERE held_reason LIKE 'held: account main rate 3/s until %'"
        ),
        7
    );

    // A sliding window of 4 per hour instead (a cap counts from when it is set).
    quota::set(&mut c, Scope::Account, "main", &caps(None, Some((4, 3600)))).unwrap();
    make_all_due(&mut c);
    let run = claim(&mut c, "r1", 10);
    assert_eq!(run.messages.len(), 4);
    make_all_due(&mut c);
    assert!(claim(&mut c, "r1", 10).messages.is_empty());
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM mailrun.messages
             WHERE held_reason LIKE 'held: account main window cap 4 per 3600 s until %'"
        ),
        3
    );

    // Held until the window's oldest bucket (1/60 of it) has left it.
    let until_ok: bool = c
        .query_one(
            "SELECT bool_and(held_until BETWEEN now() + interval '3600 seconds'
                                            AND now() + interval '3660 seconds')
             FROM mailrun.messages WHERE held_reason LIKE '%window cap%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(until_ok);

    // NotAttempted gives its reservation back: one more fits.
    let r = result(&run, 0, Outcome::NotAttempted, None, "lease deadline");
    queue::apply_results(&mut c, "r1", &[r]).unwrap();
    make_all_due(&mut c);
    assert_eq!(claim(&mut c, "r1", 10).messages.len(), 1);
    // A sent one keeps it.
    let r = result(&run, 1, Outcome::Sent, Some(250), "ok");
    queue::apply_results(&mut c, "r1", &[r]).unwrap();
    make_all_due(&mut c);
    assert!(claim(&mut c, "r1", 10).messages.is_empty());
    // A reaped lease gives its reservation back too.
    c.execute(
        "UPDATE mailrun.messages SET lease_expires_at = now() - interval '1 second'
         WHERE id = $1",
        &[&run.messages[2].id],
    )
    .unwrap();
    assert_eq!(queue::reap_expired(&mut c).unwrap(), 1);
    make_all_due(&mut c);
    assert_eq!(claim(&mut c, "r1", 10).messages.len(), 1);
}

// ---------------------------------------------------------------------------------------
// Throttle feedback and failover
// ---------------------------------------------------------------------------------------

#[test]
fn throttle_feedback_from_a_server_answering_421() {
    away_from_the_hour();
    let server = SmtpServer::start("421");
    let (url, mut c) = setup("throttle_421");
    add_account(&mut c, "slow", server.port);
    quota::set(
        &mut c,
        Scope::Account,
        "slow",
        &Caps {
            per_second: None,
            per_hour: Some(10),
            per_day: None,
            window: None,
        },
    )
    .unwrap();
    let ids: Vec<i64> = (0..3)
        .map(|i| enqueue(&mut c, msg("slow", &format!("u{i}@example.org"))))
        .collect();
    let run = claim(&mut c, "r1", 10);
    assert_eq!(run.messages.len(), 3);
    let results = deliver(&run);
    assert!(results
        .iter()
        .all(|r| r.smtp_code == Some(421) && r.outcome == Outcome::Deferred));
    queue::apply_results(&mut c, "r1", &results).unwrap();
    assert!(server.delivered().is_empty());

    // Halved once (signals from mail already on its way do not halve again), paused.
    let t = quota::throttles(&mut c).unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(
        (t[0].scope.as_str(), t[0].key.as_str()),
        ("account", "slow")
    );
    assert_eq!(t[0].factor, 0.5);
    assert_eq!(t[0].signals, 3);
    assert_eq!(t[0].last_code, Some(421));
    assert!(t[0].paused_until.unwrap() > Utc::now());
    for id in &ids {
        assert_eq!(
            text(
                &mut c,
                "SELECT state FROM mailrun.messages WHERE id = $1",
                *id
            )
            .as_deref(),
            Some("deferred"),
            "421 is never final"
        );
    }

    // While paused nothing goes to that account, and status says why.
    make_all_due(&mut c);
    assert!(claim(&mut c, "r1", 10).messages.is_empty());
    let reason = text(
        &mut c,
        "SELECT held_reason FROM mailrun.messages WHERE id = $1",
        ids[0],
    )
    .unwrap();
    assert!(
        reason.starts_with("held: account slow throttled (421 "),
        "{reason}"
    );
    let out = admin(&url, &["quota", "list"]);
    assert_status(&out, 0);
    let s = stdout(&out);
    assert!(
        s.contains("throttled: account slow at 50.0% of its caps"),
        "{s}"
    );
    assert!(s.contains("3/5 (of 10)"), "{s}");

    // After the pause the halved cap applies: 5 per hour, 3 used.
    c.execute(
        "UPDATE mailrun.throttles SET paused_until = now() - interval '1 second'",
        &[],
    )
    .unwrap();
    for i in 0..5 {
        enqueue(&mut c, msg("slow", &format!("v{i}@example.org")));
    }
    make_all_due(&mut c);
    assert_eq!(claim(&mut c, "r1", 10).messages.len(), 2);
    // A quiet recover period doubles the factor back to 1: 10 per hour.
    c.execute(
        "UPDATE mailrun.throttles SET last_signal_at = now() - interval '601 seconds'",
        &[],
    )
    .unwrap();
    make_all_due(&mut c);
    assert_eq!(claim(&mut c, "r1", 10).messages.len(), 5);
    assert!(quota::throttles(&mut c).unwrap().is_empty());
}

#[test]
fn failover_between_two_real_smtp_servers() {
    away_from_the_hour();
    let refusing = SmtpServer::start("421");
    let accepting = SmtpServer::start("accept");
    let (url, mut c) = setup("failover");
    add_account(&mut c, "primary", refusing.port);
    add_account(&mut c, "backup", accepting.port);
    let failover = |to: &str| {
        json!({"from": "s@example.com", "to": [to], "text": "x",
               "accounts": ["primary", "backup"]})
    };

    // 421 from the primary: the message moves to the backup at once, no backoff.
    let m1 = enqueue(&mut c, failover("one@example.org"));
    let run = claim(&mut c, "r1", 10);
    assert_eq!(run.messages[0].account.name, "primary");
    queue::apply_results(&mut c, "r1", &deliver(&run)).unwrap();
    assert_eq!(
        text(
            &mut c,
            "SELECT state FROM mailrun.messages WHERE id = $1",
            m1
        )
        .as_deref(),
        Some("deferred")
    );
    let run = claim(&mut c, "r1", 10);
    assert_eq!(run.messages.len(), 1, "due now on the next account");
    assert_eq!(run.messages[0].account.name, "backup");
    queue::apply_results(&mut c, "r1", &deliver(&run)).unwrap();
    assert_eq!(
        text(
            &mut c,
            "SELECT state FROM mailrun.messages WHERE id = $1",
            m1
        )
        .as_deref(),
        Some("sent")
    );
    let got = accepting.delivered();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["rcpt"][0], "one@example.org");

    // The primary is throttled now: new mail goes straight to the backup.
    enqueue(&mut c, failover("two@example.org"));
    let run = claim(&mut c, "r1", 10);
    assert_eq!(run.messages[0].account.name, "backup");
    queue::apply_results(&mut c, "r1", &deliver(&run)).unwrap();

    // Disabled: skipped as well.
    assert_status(
        &admin(&url, &["quota", "unthrottle", "account", "primary"]),
        0,
    );
    assert_status(&admin(&url, &["account", "disable", "primary"]), 0);
    enqueue(&mut c, failover("three@example.org"));
    let run = claim(&mut c, "r1", 10);
    assert_eq!(run.messages[0].account.name, "backup");
    queue::apply_results(&mut c, "r1", &deliver(&run)).unwrap();
    assert_eq!(accepting.delivered().len(), 3);

    // Over quota: the first message takes the primary's last slot, the next fails over.
    assert_status(&admin(&url, &["account", "enable", "primary"]), 0);
    assert_status(
        &admin(
            &url,
            &["quota", "set", "account", "primary", "--per-day", "1"],
        ),
        0,
    );
    enqueue(&mut c, failover("four@example.org"));
    enqueue(&mut c, failover("five@example.org"));
    let run = claim(&mut c, "r1", 10);
    let names: Vec<&str> = run
        .messages
        .iter()
        .map(|m| m.account.name.as_str())
        .collect();
    assert_eq!(names, vec!["primary", "backup"]);

    // A message with only a disabled account waits and says so.
    assert_status(&admin(&url, &["account", "disable", "primary"]), 0);
    let lone = enqueue(&mut c, msg("primary", "six@example.org"));
    assert!(claim(&mut c, "r1", 10).messages.is_empty());
    assert_eq!(
        text(
            &mut c,
            "SELECT held_reason FROM mailrun.messages WHERE id = $1",
            lone
        )
        .as_deref(),
        Some("held: account primary disabled")
    );
    let shown = admin_json(&url, &["show", &lone.to_string()]);
    assert_eq!(shown["message"]["held"], "held: account primary disabled");
    let out = admin(&url, &["show", &m1.to_string()]);
    assert!(stdout(&out).contains("primary, backup"), "{}", stdout(&out));
    // Enqueue refuses a bad failover list and changes nothing.
    let before = one(&mut c, "SELECT count(*) FROM mailrun.messages");
    for bad in [
        json!({"from": "s@example.com", "to": ["x@example.org"], "text": "x", "accounts": []}),
        json!({"from": "s@example.com", "to": ["x@example.org"], "text": "x", "accounts": ["nope"]}),
        json!({"from": "s@example.com", "to": ["x@example.org"], "text": "x",
               "accounts": ["backup", "backup"]}),
        json!({"from": "s@example.com", "to": ["x@example.org"], "text": "x",
               "accounts": ["backup"], "account": "primary"}),
    ] {
        assert!(queue::enqueue(&mut c, &bad).is_err(), "{bad}");
    }
    assert_eq!(one(&mut c, "SELECT count(*) FROM mailrun.messages"), before);
}

// ---------------------------------------------------------------------------------------
// Reply policy
// ---------------------------------------------------------------------------------------

#[test]
fn reply_policy_matching() {
    let (url, mut c) = setup("reply_policy");
    add_account(&mut c, "main", 2525);
    let mut decide =
        |code: Option<i32>, enh: Option<&str>, txt: Option<&str>, domain: Option<&str>| {
            let d = reply_policy::decide(&mut c, code, enh, txt, domain, Some("main")).unwrap();
            (d.action.unwrap_or_else(|| "-".into()), d.throttle)
        };
    let s = |a: &str, t: &str| (a.to_string(), t.to_string());
    // Shipped defaults: the known misclassifications.
    assert_eq!(
        decide(
            Some(550),
            Some("5.7.1"),
            Some("Rate limited, try later"),
            None
        ),
        s("retry", "account")
    );
    assert_eq!(
        decide(
            Some(550),
            Some("5.7.1"),
            Some("connection frequency limited"),
            None
        ),
        s("retry", "account")
    );
    assert_eq!(
        decide(Some(421), None, Some("closing"), None),
        s("another_account", "account")
    );
    assert_eq!(
        decide(Some(421), Some("4.7.0"), Some("anything at all"), None),
        s("another_account", "account")
    );
    assert_eq!(
        decide(
            Some(450),
            Some("4.2.1"),
            Some("The user is receiving mail at a rate that prevents additional messages"),
            Some("gmail.com")
        ),
        s("retry", "domain")
    );
    assert_eq!(
        decide(Some(550), Some("5.1.1"), Some("no such user"), None),
        s("suppress", "none")
    );
    assert_eq!(
        decide(Some(550), None, Some("User unknown"), None),
        s("suppress", "none")
    );
    assert_eq!(
        decide(Some(552), Some("5.2.2"), Some("mailbox full"), None),
        s("retry", "none")
    );
    assert_eq!(
        decide(Some(535), Some("5.7.8"), Some("auth failed"), None),
        s("another_account", "none")
    );
    // No rule: 5xx fail, 4xx retry, nothing known without a code.
    assert_eq!(
        decide(Some(554), Some("5.7.1"), Some("spam"), None),
        s("fail", "none")
    );
    assert_eq!(
        decide(Some(451), None, Some("local error"), None),
        s("retry", "none")
    );
    assert_eq!(decide(None, None, Some("timeout"), None), s("-", "none"));

    // An operator rule per domain, first in line, beats the shipped ones.
    let id = reply_policy::add(
        &mut c,
        &NewRule {
            position: Some(1),
            code: Some("5xx".into()),
            pattern: Some("blocked".into()),
            domain: Some("example.net".into()),
            ..NewRule::default()
        },
        Action::Retry,
        ThrottleTarget::Domain,
    )
    .unwrap();
    let d = reply_policy::decide(
        &mut c,
        Some(554),
        None,
        Some("IP blocked"),
        Some("mx.example.net"),
        None,
    )
    .unwrap();
    assert_eq!(
        (d.action.as_deref(), d.throttle.as_str(), d.rule_id),
        (Some("retry"), "domain", Some(id))
    );
    let d = reply_policy::decide(
        &mut c,
        Some(554),
        None,
        Some("IP blocked"),
        Some("example.org"),
        None,
    )
    .unwrap();
    assert_eq!(d.action.as_deref(), Some("fail"));
    let rules = reply_policy::list(&mut c).unwrap();
    assert_eq!(rules[0].id, id);
    assert_eq!(rules[0].position, 1);
    assert!(rules[1..].iter().all(|r| r.shipped));

    // The CLI: test, add, bad input refused without change, remove.
    let d = admin_json(
        &url,
        &[
            "reply-rule",
            "test",
            "--code",
            "550",
            "--enhanced",
            "5.7.1",
            "--text",
            "rate limited",
        ],
    );
    assert_eq!(d["action"], "retry");
    let count = reply_policy::list(&mut c).unwrap().len();
    for bad in [
        vec![
            "reply-rule",
            "add",
            "--action",
            "fail",
            "--pattern",
            "(unclosed",
        ],
        vec!["reply-rule", "add", "--action", "fail", "--code", "6xx"],
        vec!["reply-rule", "add", "--action", "fail", "--enhanced", "5.x"],
        vec!["reply-rule", "add", "--action", "fail"],
        vec![
            "reply-rule",
            "add",
            "--action",
            "fail",
            "--code",
            "550",
            "--account",
            "nope",
        ],
    ] {
        let out = admin(&url, &bad);
        assert_status(&out, 65);
    }
    assert_eq!(reply_policy::list(&mut c).unwrap().len(), count);
    let added = admin_json(
        &url,
        &[
            "reply-rule",
            "add",
            "--action",
            "suppress",
            "--code",
            "550",
            "--pattern",
            "gone away",
        ],
    );
    let new_id = added["id"].as_i64().unwrap();
    let d = admin_json(
        &url,
        &[
            "reply-rule",
            "test",
            "--code",
            "550",
            "--text",
            "mailbox gone away",
        ],
    );
    assert_eq!(d["action"], "suppress");
    assert_eq!(d["rule_id"], new_id);
    assert_status(
        &admin(&url, &["reply-rule", "remove", &new_id.to_string()]),
        0,
    );
    assert_status(
        &admin(&url, &["reply-rule", "remove", &new_id.to_string()]),
        65,
    );

    // Applied when results arrive: a "rate limited" 550 defers and throttles; a 5.1.1
    // fails the recipient and suppresses it; a message's own final_codes come first.
    let a = enqueue(&mut c, msg("main", "a@example.org"));
    let b = enqueue(&mut c, msg("main", "b@example.org"));
    let f = enqueue(
        &mut c,
        json!({"from": "s@example.com", "to": ["f@example.org"], "text": "x", "account": "main",
               "final_codes": [{"code": "550", "permanent": true}]}),
    );
    let run = claim(&mut c, "r1", 10);
    let idx = |id: i64| run.messages.iter().position(|m| m.id == id).unwrap();
    let mut rate = result(
        &run,
        idx(a),
        Outcome::Failed,
        Some(550),
        "5.7.1 rate limited",
    );
    rate.enhanced_status = Some("5.7.1".into());
    let mut gone = result(&run, idx(b), Outcome::Failed, Some(550), "no such user");
    gone.enhanced_status = Some("5.1.1".into());
    let own = result(&run, idx(f), Outcome::Failed, Some(550), "rate limited");
    queue::apply_results(&mut c, "r1", &[rate, gone, own]).unwrap();
    let st = |c: &mut Client, id| text(c, "SELECT state FROM mailrun.messages WHERE id = $1", id);
    assert_eq!(st(&mut c, a).as_deref(), Some("deferred"));
    assert_eq!(st(&mut c, b).as_deref(), Some("failed"));
    assert_eq!(st(&mut c, f).as_deref(), Some("failed"));
    let sup = suppression::get(&mut c, "b@example.org").unwrap().unwrap();
    assert_eq!((sup.source.as_str(), sup.smtp_code), ("bounce", Some(550)));
    assert!(quota::throttles(&mut c)
        .unwrap()
        .iter()
        .any(|t| t.key == "main"));

    // A message-level 5.1.1 for several recipients names none of them: they fail, but
    // nobody is suppressed on a guess.
    assert!(quota::unthrottle(&mut c, "account", "main").unwrap());
    let two = enqueue(
        &mut c,
        json!({"from": "s@example.com", "to": ["p@example.org", "q@example.org"], "text": "x",
               "account": "main"}),
    );
    let run = claim(&mut c, "r1", 10);
    let mut r = result(&run, 0, Outcome::Failed, Some(550), "no such user");
    r.enhanced_status = Some("5.1.1".into());
    assert_eq!(run.messages[0].id, two);
    queue::apply_results(&mut c, "r1", &[r]).unwrap();
    assert_eq!(st(&mut c, two).as_deref(), Some("failed"));
    assert!(suppression::get(&mut c, "p@example.org").unwrap().is_none());
}

// ---------------------------------------------------------------------------------------
// Suppression
// ---------------------------------------------------------------------------------------

#[test]
fn suppression_at_enqueue_and_at_claim() {
    let (url, mut c) = setup("suppression");
    add_account(&mut c, "main", 2525);
    assert_status(
        &admin(
            &url,
            &[
                "suppress",
                "add",
                "X@Example.org",
                "--reason",
                "asked to stop",
            ],
        ),
        0,
    );
    let out = admin(&url, &["suppress", "check", "x@example.org"]);
    assert_status(&out, 0);
    assert!(stdout(&out).contains("asked to stop"));
    assert_status(&admin(&url, &["suppress", "check", "y@example.org"]), 3);
    assert_status(&admin(&url, &["suppress", "add", "not an address"]), 65);

    // At enqueue: a suppressed recipient is failed at once; with none left, the message.
    let mixed = enqueue(
        &mut c,
        json!({"from": "s@example.com", "to": ["Xavier <x@example.org>", "y@example.org"],
               "text": "x", "account": "main"}),
    );
    let only = enqueue(&mut c, msg("main", "x@example.org"));
    let row = c
        .query_one(
            "SELECT state, recipients_failed FROM mailrun.messages WHERE id = $1",
            &[&mixed],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "queued");
    assert_eq!(row.get::<_, Vec<String>>(1), vec!["Xavier <x@example.org>"]);
    assert_eq!(
        text(
            &mut c,
            "SELECT state FROM mailrun.messages WHERE id = $1",
            only
        )
        .as_deref(),
        Some("failed")
    );

    // At claim: suppressed since enqueue.
    let later = enqueue(&mut c, msg("main", "z@example.org"));
    suppression::add(&mut c, "z@example.org", "complaint").unwrap();
    let run = claim(&mut c, "r1", 10);
    assert_eq!(run.messages.len(), 1);
    assert_eq!(run.messages[0].id, mixed);
    assert_eq!(run.messages[0].to, vec!["y@example.org"]);
    assert_eq!(
        text(
            &mut c,
            "SELECT state FROM mailrun.messages WHERE id = $1",
            later
        )
        .as_deref(),
        Some("failed")
    );
    assert_eq!(
        text(
            &mut c,
            "SELECT last_text FROM mailrun.messages WHERE id = $1",
            later
        )
        .as_deref(),
        Some("suppressed: z@example.org")
    );

    let list = admin_json(&url, &["suppress", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_status(&admin(&url, &["suppress", "remove", "x@example.org"]), 0);
    assert!(suppression::get(&mut c, "x@example.org").unwrap().is_none());
}

// ---------------------------------------------------------------------------------------
// Unknown outcome
// ---------------------------------------------------------------------------------------

#[test]
fn unknown_outcome_is_never_retried_silently() {
    let (url, mut c) = setup("unknown");
    add_account(&mut c, "main", 2525);
    let id = enqueue(&mut c, msg("main", "a@example.org"));
    let run = claim(&mut c, "r1", 10);
    let r = result(
        &run,
        0,
        Outcome::Unknown,
        None,
        "timeout after the final dot",
    );
    queue::apply_results(&mut c, "r1", &[r]).unwrap();
    let st = |c: &mut Client| text(c, "SELECT state FROM mailrun.messages WHERE id = $1", id);
    assert_eq!(st(&mut c).as_deref(), Some("unknown"));
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM mailrun.delivery_attempts WHERE outcome = 'unknown'"
        ),
        1
    );
    // Not due, not reaped back, shown in status.
    make_all_due(&mut c);
    assert!(claim(&mut c, "r1", 10).messages.is_empty());
    queue::reap_expired(&mut c).unwrap();
    assert_eq!(st(&mut c).as_deref(), Some("unknown"));
    let status = admin_json(&url, &["status"]);
    assert_eq!(status["counts"]["unknown"], 1);
    assert_eq!(status["unknown_outcome"], 1);
    let list = admin_json(&url, &["unknown", "list"]);
    assert_eq!(list[0]["id"], id);

    // With a configured wait, reaping retries it once the wait has passed.
    assert_status(
        &admin(&url, &["quota", "settings", "--unknown-retry-after", "600"]),
        0,
    );
    queue::reap_expired(&mut c).unwrap();
    assert_eq!(st(&mut c).as_deref(), Some("unknown"));
    c.execute(
        "UPDATE mailrun.messages SET last_attempt_at = now() - interval '601 seconds' WHERE id = $1",
        &[&id],
    )
    .unwrap();
    queue::reap_expired(&mut c).unwrap();
    assert_eq!(st(&mut c).as_deref(), Some("deferred"));
    let run = claim(&mut c, "r1", 10);
    assert_eq!(run.messages.len(), 1);

    // An operator decides: resolve refuses other states, and is all or nothing.
    let r = result(
        &run,
        0,
        Outcome::Unknown,
        None,
        "connection lost after DATA",
    );
    queue::apply_results(&mut c, "r1", &[r]).unwrap();
    let other = enqueue(&mut c, msg("main", "b@example.org"));
    let out = admin(
        &url,
        &[
            "unknown",
            "resolve",
            &id.to_string(),
            &other.to_string(),
            "--as",
            "sent",
        ],
    );
    assert_status(&out, 65);
    assert_eq!(st(&mut c).as_deref(), Some("unknown"));
    assert_status(
        &admin(
            &url,
            &["unknown", "resolve", &id.to_string(), "--as", "sent"],
        ),
        0,
    );
    assert_eq!(st(&mut c).as_deref(), Some("sent"));
}

// ---------------------------------------------------------------------------------------
// dispatch-admin quota
// ---------------------------------------------------------------------------------------

#[test]
fn quota_commands_validate_and_list() {
    let (url, mut c) = setup("quota_cli");
    add_account(&mut c, "main", 2525);
    for bad in [
        vec!["quota", "set", "account", "main"],
        vec!["quota", "set", "account", "nope", "--per-day", "5"],
        vec!["quota", "set", "runner", "nope", "--per-day", "5"],
        vec!["quota", "set", "account", "main", "--per-day", "0"],
        vec!["quota", "set", "domain", "bad domain", "--per-day", "5"],
        vec!["quota", "set", "account", "main", "--window", "5/0"],
        vec!["quota", "remove", "account", "main"],
    ] {
        assert_status(&admin(&url, &bad), 65);
    }
    assert_status(
        &admin(&url, &["quota", "set", "account", "main", "--window", "x"]),
        64,
    );
    assert_eq!(one(&mut c, "SELECT count(*) FROM mailrun.quotas"), 0);
    assert_status(
        &admin(
            &url,
            &[
                "quota",
                "set",
                "account",
                "main",
                "--per-hour",
                "300",
                "--per-day",
                "2000",
            ],
        ),
        0,
    );
    assert_status(
        &admin(
            &url,
            &["quota", "set", "domain", "Gmail.com", "--window", "100/600"],
        ),
        0,
    );
    let list = admin_json(&url, &["quota", "list"]);
    let quotas = list["quotas"].as_array().unwrap();
    assert_eq!(quotas.len(), 2);
    assert_eq!(quotas[0]["key"], "main");
    assert_eq!(quotas[0]["caps"]["per_hour"], 300);
    assert_eq!(quotas[0]["caps"]["per_day"], 2000);
    assert_eq!(quotas[1]["key"], "gmail.com");
    assert_eq!(quotas[1]["caps"]["window"], json!([100, 600]));
    let out = admin(&url, &["quota", "list"]);
    assert!(stdout(&out).contains("0/300"), "{}", stdout(&out));
    assert_status(&admin(&url, &["quota", "remove", "domain", "gmail.com"]), 0);
    assert_eq!(one(&mut c, "SELECT count(*) FROM mailrun.quotas"), 1);
    let s = admin_json(&url, &["quota", "settings"]);
    assert_eq!(s["throttle_pause_seconds"], 60);
    assert_eq!(s["unknown_retry_after_seconds"], Value::Null);
    assert_status(
        &admin(&url, &["quota", "settings", "--throttle-min-factor", "2"]),
        65,
    );
}

#[test]
fn enqueue_takes_a_failover_list_from_flags_and_json_lines() {
    let (url, mut c) = setup("enqueue_accounts");
    add_account(&mut c, "a", 2525);
    add_account(&mut c, "b", 2526);
    let out = admin(
        &url,
        &[
            "enqueue",
            "--from",
            "s@example.com",
            "--to",
            "x@example.org",
            "--text",
            "x",
            "--accounts",
            "b,a",
        ],
    );
    assert_status(&out, 0);
    let id: i64 = stdout(&out).trim().parse().unwrap();
    let names: Vec<String> = c
        .query_one(
            "SELECT array(SELECT a.name FROM unnest(m.account_ids) WITH ORDINALITY u(id, i)
                          JOIN mailrun.smtp_accounts a ON a.id = u.id ORDER BY u.i)
             FROM mailrun.messages m WHERE m.id = $1",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert_eq!(names, vec!["b", "a"]);
    let dir = common::temp_dir();
    let lines = dir.path().join("m.jsonl");
    common::write(
        &lines,
        "{\"from\": \"s@example.com\", \"to\": \"y@example.org\", \"text\": \"x\", \"accounts\": [\"a\", \"b\"]}\n",
    );
    assert_status(
        &admin(&url, &["enqueue", "--jsonl", lines.to_str().unwrap()]),
        0,
    );
    common::write(
        &lines,
        "{\"from\": \"s@example.com\", \"to\": \"y@example.org\", \"text\": \"x\", \"accounts\": [\"a\", \"zz\"]}\n",
    );
    let out = admin(&url, &["enqueue", "--jsonl", lines.to_str().unwrap()]);
    assert_status(&out, 65);
    assert!(common::stderr(&out).contains("unknown SMTP account \"zz\""));
    assert_eq!(one(&mut c, "SELECT count(*) FROM mailrun.messages"), 2);
    assert_status(
        &admin(
            &url,
            &[
                "enqueue",
                "--from",
                "s@example.com",
                "--to",
                "x@example.org",
                "--text",
                "x",
                "--accounts",
                "a",
                "--account",
                "b",
            ],
        ),
        64,
    );
}

#[test]
fn account_groups_name_a_failover_list() {
    let (url, mut c) = setup("account_groups");
    add_account(&mut c, "a", 2525);
    add_account(&mut c, "b", 2526);
    for bad in [
        vec!["account-group", "set", "g", "a,nope"],
        vec!["account-group", "set", "g", "a,a"],
        vec!["account-group", "set", "bad name", "a"],
        vec!["account-group", "remove", "g"],
    ] {
        assert_status(&admin(&url, &bad), 65);
    }
    assert_status(&admin(&url, &["account-group", "set", "g", "b,a"]), 0);
    let groups = admin_json(&url, &["account-group", "list"]);
    assert_eq!(groups, json!([{"name": "g", "accounts": ["b", "a"]}]));
    let id = enqueue(
        &mut c,
        json!({"from": "s@example.com", "to": "x@example.org", "text": "x", "account_group": "g"}),
    );
    let out = admin(
        &url,
        &[
            "enqueue",
            "--from",
            "s@example.com",
            "--to",
            "y@example.org",
            "--text",
            "x",
            "--account-group",
            "g",
        ],
    );
    assert_status(&out, 0);
    let id2: i64 = stdout(&out).trim().parse().unwrap();
    for m in [id, id2] {
        let shown = admin_json(&url, &["show", &m.to_string()]);
        assert_eq!(shown["message"]["failover_accounts"], json!(["b", "a"]));
        assert_eq!(shown["message"]["account"], "b");
    }
    let before = one(&mut c, "SELECT count(*) FROM mailrun.messages");
    for bad in [
        json!({"from": "s@example.com", "to": "x@example.org", "text": "x", "account_group": "nope"}),
        json!({"from": "s@example.com", "to": "x@example.org", "text": "x", "account_group": "g",
               "account": "a"}),
    ] {
        assert!(queue::enqueue(&mut c, &bad).is_err(), "{bad}");
    }
    assert_eq!(one(&mut c, "SELECT count(*) FROM mailrun.messages"), before);
    // The list is taken at enqueue: changing the group later does not move queued mail.
    assert_status(&admin(&url, &["account-group", "set", "g", "a"]), 0);
    let run = claim(&mut c, "r1", 10);
    assert!(run.messages.iter().all(|m| m.account.name == "b"));
    assert_status(&admin(&url, &["account-group", "remove", "g"]), 0);
}

// ---------------------------------------------------------------------------------------
// The real stack: two runners (runner-admin cycle) against dispatch-cgi behind lighttpd
// ---------------------------------------------------------------------------------------

#[test]
fn two_real_runners_deliver_up_to_the_cap_and_a_421_throttles_its_account() {
    away_from_the_hour();
    let accepting = SmtpServer::start("accept");
    let refusing = SmtpServer::start("421");
    let url = common::initialised_db("real_runners");
    let mut c = connect(&url);
    add_account(&mut c, "main", accepting.port);
    add_account(&mut c, "slow", refusing.port);
    assert_status(
        &admin(
            &url,
            &["quota", "set", "account", "main", "--per-hour", "7"],
        ),
        0,
    );
    let server = web::Lighttpd::start_cgi(
        &[(
            "dispatch-cgi",
            Path::new(env!("CARGO_BIN_EXE_dispatch-cgi")),
        )],
        &[("MAILRUN_DATABASE_URL", url.as_str())],
    );
    let dispatcher_url = server.url("dispatch-cgi");
    let states: Vec<tempfile::TempDir> = (0..2).map(|_| common::temp_dir()).collect();
    for (i, state) in states.iter().enumerate() {
        let id = format!("real{i}");
        let key = SigningKey::generate(format!("key-real{i}"));
        common::runner_init(state.path(), &dispatcher_url, &id, &key);
        c.execute(
            "INSERT INTO mailrun.runners (id, endpoint, batch_size, key_id, secret)
             VALUES ($1, 'http://127.0.0.1:9/runner-cgi', 3, $2, $3)",
            &[&id, &key.key_id, &key.secret.to_vec()],
        )
        .unwrap();
    }
    for i in 0..20 {
        enqueue(&mut c, msg("main", &format!("u{i}@example.org")));
    }
    for i in 0..3 {
        enqueue(&mut c, msg("slow", &format!("s{i}@example.org")));
    }

    // Both runners cycle at once: poll, send, poll with the results, until no work.
    let cycles: Vec<Child> = states
        .iter()
        .map(|state| {
            common::command(env!("CARGO_BIN_EXE_runner-admin"))
                .arg("--state-dir")
                .arg(state.path())
                .args(["cycle", "--force", "--max-seconds", "120"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("runner-admin cycle")
        })
        .collect();
    for child in cycles {
        let out = child.wait_with_output().expect("cycle");
        assert!(
            matches!(out.status.code(), Some(0) | Some(3)),
            "cycle: {}\n{}\n{}",
            stdout(&out),
            common::stderr(&out),
            server.error_log()
        );
    }

    // Exactly the cap went out, counted by the SMTP server, and the rest waits.
    assert_eq!(accepting.delivered().len(), 7);
    assert!(refusing.delivered().is_empty());
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM mailrun.messages m JOIN mailrun.smtp_accounts a
             ON a.id = m.account_id WHERE a.name = 'main' AND m.state = 'sent'"
        ),
        7
    );
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM mailrun.messages
             WHERE held_reason LIKE 'held: account main hourly cap 7/h until %'"
        ),
        13
    );
    // The runners reported the 421s; the dispatcher slowed that account down: what was
    // tried is deferred (421 is never final), what was not yet is held while paused.
    let t = quota::throttles(&mut c).unwrap();
    let slow = t
        .iter()
        .find(|t| t.key == "slow")
        .expect("slow is throttled");
    assert_eq!(slow.factor, 0.5);
    assert_eq!(slow.last_code, Some(421));
    let slow_state = |c: &mut Client, cond: &str| {
        one(
            c,
            &format!(
                "SELECT count(*) FROM mailrun.messages m JOIN mailrun.smtp_accounts a
                 ON a.id = m.account_id WHERE a.name = 'slow' AND {cond}"
            ),
        )
    };
    let deferred = slow_state(&mut c, "m.state = 'deferred'");
    let held = slow_state(
        &mut c,
        "m.state = 'queued' AND m.held_reason LIKE 'held: account slow throttled (421 %'",
    );
    assert!(deferred >= 1);
    assert_eq!(deferred + held, 3);
}

// ---------------------------------------------------------------------------------------
// Given-back reservations release held messages early
// ---------------------------------------------------------------------------------------

fn held(c: &mut Client, id: i64) -> (Option<String>, bool) {
    let r = c
        .query_one(
            "SELECT held_reason, next_attempt_at <= now() FROM mailrun.messages WHERE id = $1",
            &[&id],
        )
        .unwrap();
    (r.get(0), r.get(1))
}

#[test]
fn given_back_reservations_make_held_messages_due_at_once() {
    away_from_the_hour();
    let (url, mut c) = setup("release_held");
    add_account(&mut c, "main", 2525);
    add_account(&mut c, "other", 2526);
    quota::set(
        &mut c,
        Scope::Account,
        "main",
        &Caps {
            per_second: None,
            per_hour: Some(2),
            per_day: None,
            window: None,
        },
    )
    .unwrap();
    let ids: Vec<i64> = (0..5)
        .map(|i| enqueue(&mut c, msg("main", &format!("u{i}@example.org"))))
        .collect();
    // Not held by the quota: must never be woken by it.
    let unrelated = enqueue(&mut c, msg("other", "w@example.org"));
    c.execute(
        "UPDATE mailrun.messages SET next_attempt_at = now() + interval '1 hour' WHERE id = $1",
        &[&unrelated],
    )
    .unwrap();
    let run = claim(&mut c, "r1", 10);
    assert_eq!(run.messages.len(), 2);
    let held_ids: Vec<i64> = ids
        .iter()
        .copied()
        .filter(|id| run.messages.iter().all(|m| m.id != *id))
        .collect();
    for id in &held_ids {
        let (reason, due) = held(&mut c, *id);
        assert!(
            reason
                .as_deref()
                .is_some_and(|r| r.starts_with("held: account main hourly cap 2/h until ")),
            "{reason:?}"
        );
        assert!(!due);
    }

    // A Sent report keeps its reservation: nothing is released.
    let sent = result(&run, 1, Outcome::Sent, Some(250), "ok");
    queue::apply_results(&mut c, "r1", &[sent]).unwrap();
    assert!(held_ids.iter().all(|id| !held(&mut c, *id).1));

    // NotAttempted gives one reservation back: exactly one held message is due now, with
    // its hold cleared; the others keep waiting for the cap's hour.
    let back = result(&run, 0, Outcome::NotAttempted, None, "not attempted");
    queue::apply_results(&mut c, "r1", &[back]).unwrap();
    let woken: Vec<i64> = held_ids
        .iter()
        .copied()
        .filter(|id| held(&mut c, *id) == (None, true))
        .collect();
    assert_eq!(woken.len(), 1, "one slot came back, one message woke");
    assert!(!held(&mut c, unrelated).1);
    // The next claim takes the given-back message and the woken one fit the cap (2/h:
    // one sent + one); everything else is held again.
    let run2 = claim(&mut c, "r1", 10);
    let mut got: Vec<i64> = run2.messages.iter().map(|m| m.id).collect();
    got.sort();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0] == woken[0] || got[0] == run.messages[0].id,
        "{got:?}"
    );
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM mailrun.messages WHERE state = 'leased'"
        ),
        1
    );

    // A reaped lease gives its reservation back too and wakes one more.
    c.execute(
        "UPDATE mailrun.messages SET lease_expires_at = now() - interval '1 second'
         WHERE id = $1",
        &[&run2.messages[0].id],
    )
    .unwrap();
    let still_held = |c: &mut Client| {
        one(
            c,
            "SELECT count(*) FROM mailrun.messages
             WHERE held_until > now() AND state IN ('queued', 'deferred')
               AND held_reason LIKE 'held: account main %'",
        )
    };
    let before = still_held(&mut c);
    assert!(before >= 1);
    assert_eq!(queue::reap_expired(&mut c).unwrap(), 1);
    assert_eq!(still_held(&mut c), before - 1);
    let run3 = claim(&mut c, "r1", 10);
    assert_eq!(run3.messages.len(), 1);
    assert_status(&admin(&url, &["status"]), 0);

    // While the account is paused by throttle feedback, a given-back reservation wakes
    // nothing: the held mail could not use the room.
    enqueue(&mut c, msg("main", "late@example.org"));
    assert!(claim(&mut c, "r1", 10).messages.is_empty());
    let before = still_held(&mut c);
    assert!(before >= 1);
    c.execute(
        "INSERT INTO mailrun.throttles (scope, key, factor, paused_until, last_code)
         VALUES ('account', 'main', 0.5, now() + interval '1 hour', 421)",
        &[],
    )
    .unwrap();
    let back = result(&run3, 0, Outcome::NotAttempted, None, "not attempted");
    queue::apply_results(&mut c, "r1", &[back]).unwrap();
    assert_eq!(still_held(&mut c), before);
}

#[test]
fn releasing_never_waits_for_claimers_and_leaves_throttle_holds_alone() {
    away_from_the_hour();
    let (url, mut c) = setup("release_no_wait");
    add_account(&mut c, "main", 2525);
    add_account(&mut c, "paused", 2526);
    quota::set(
        &mut c,
        Scope::Account,
        "main",
        &Caps {
            per_second: None,
            per_hour: Some(1),
            per_day: None,
            window: None,
        },
    )
    .unwrap();
    let ids: Vec<i64> = (0..3)
        .map(|i| enqueue(&mut c, msg("main", &format!("u{i}@example.org"))))
        .collect();
    let run = claim(&mut c, "r1", 10);
    assert_eq!(run.messages.len(), 1);
    let held_ids: Vec<i64> = ids
        .iter()
        .copied()
        .filter(|id| *id != run.messages[0].id)
        .collect();

    // A message held by a throttle pause (not by a quota) is not woken by releases.
    let paused_id = enqueue(&mut c, msg("paused", "p@example.org"));
    c.execute(
        "INSERT INTO mailrun.throttles (scope, key, factor, paused_until, last_code, last_text)
         VALUES ('account', 'paused', 0.5, now() + interval '1 hour', 421, 'slow down')",
        &[],
    )
    .unwrap();
    assert!(claim(&mut c, "r2", 10).messages.is_empty());
    assert!(held(&mut c, paused_id)
        .0
        .is_some_and(|r| r.starts_with("held: account paused throttled (421 ")));

    // A claimer holds the quota's lock and one held message's row lock, as a claim in
    // progress would. The report must not wait for either (lock_timeout turns a wait
    // into an error instead of a hang).
    let mut claimer = connect(&url);
    let mut tx = claimer.transaction().unwrap();
    tx.execute(
        "SELECT 1 FROM mailrun.quotas WHERE scope = 'account' AND key = 'main' FOR NO KEY UPDATE",
        &[],
    )
    .unwrap();
    tx.execute(
        "SELECT 1 FROM mailrun.messages WHERE id = $1 FOR UPDATE",
        &[&held_ids[0]],
    )
    .unwrap();
    c.batch_execute("SET lock_timeout = '20s'").unwrap();
    let back = result(&run, 0, Outcome::NotAttempted, None, "not attempted");
    queue::apply_results(&mut c, "r1", &[back]).expect("a report never waits for a claimer");
    // The locked message was skipped; the other one woke.
    assert!(!held(&mut c, held_ids[0]).1);
    assert_eq!(held(&mut c, held_ids[1]), (None, true));
    assert!(!held(&mut c, paused_id).1);
    tx.rollback().unwrap();
}

// ---------------------------------------------------------------------------------------
// The reply policy on runners: pushed with JobRunnerConfigUpdate, applied per batch
// ---------------------------------------------------------------------------------------

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `runner-cgi --listen` on a free loopback port; its endpoint URL.
fn runner_cgi(state: &Path) -> (Killed, String) {
    let port = common::free_port();
    let child = common::command(env!("CARGO_BIN_EXE_runner-cgi"))
        .arg("--state-dir")
        .arg(state)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--no-start"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("runner-cgi --listen");
    let mut child = Killed(child);
    common::wait_for_listener(
        &format!("127.0.0.1:{port}"),
        "runner-cgi --listen",
        Some(&mut child.0),
        String::new,
    );
    (child, format!("http://127.0.0.1:{port}/cgi-bin/runner-cgi"))
}

fn push(url: &str, args: &[&str]) -> Output {
    common::run(
        common::command(env!("CARGO_BIN_EXE_push-config"))
            .arg("--database-url")
            .arg(url)
            .args(args),
    )
}

fn runner_admin(state: &Path, args: &[&str]) -> Output {
    common::run(
        common::command(env!("CARGO_BIN_EXE_runner-admin"))
            .arg("--state-dir")
            .arg(state)
            .args(args),
    )
}

/// The policy as the runner stored it (`runner-admin policy --json`).
fn runner_policy(state: &Path) -> Value {
    let out = runner_admin(state, &["policy", "--json"]);
    assert!(
        matches!(out.status.code(), Some(0) | Some(3)),
        "{}",
        common::stderr(&out)
    );
    serde_json::from_str(&stdout(&out)).expect("policy JSON")
}

fn config_mode(state: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(state.join("runner.toml"))
        .expect("runner.toml")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn push_config_delivers_the_reply_policy_to_a_real_runner() {
    let (url, mut c) = setup("policy_push");
    add_account(&mut c, "main", 2525);
    let key = SigningKey::generate("key-policy");
    let state = common::temp_dir();
    let dispatcher_url = "http://127.0.0.1:9/cgi-bin/dispatch-cgi";
    common::runner_init(state.path(), dispatcher_url, "pol", &key);
    let (_cgi, endpoint) = runner_cgi(state.path());
    c.execute(
        "INSERT INTO mailrun.runners (id, endpoint, batch_size, key_id, secret)
         VALUES ('pol', $1, 10, $2, $3)",
        &[&endpoint, &key.key_id, &key.secret.to_vec()],
    )
    .unwrap();
    // The other runners of setup() have no live endpoint: push to this one.
    c.execute(
        "UPDATE mailrun.runners SET enabled = false WHERE id <> 'pol'",
        &[],
    )
    .unwrap();
    let before = runner_policy(state.path());
    assert_eq!(before["pushed"], false);
    let status = |state: &Path| -> Value {
        let out = runner_admin(state, &["status", "--json"]);
        assert_status(&out, 0);
        serde_json::from_str(&stdout(&out)).unwrap()
    };
    assert_eq!(status(state.path())["reply_rules"], Value::Null);

    // The first version carries the shipped defaults, by position.
    let out = push(&url, &["set", &format!("dispatcher_url={dispatcher_url}")]);
    assert_status(&out, 0);
    let shipped = reply_policy::list(&mut c).unwrap();
    let pushed = runner_policy(state.path());
    assert_eq!(pushed["config_version"], 1);
    let rules = pushed["rules"].as_array().unwrap();
    assert_eq!(rules.len(), shipped.len());
    for (got, want) in rules.iter().zip(&shipped) {
        assert_eq!(got["position"], want.position);
        assert_eq!(got["code"].as_str(), want.code.as_deref());
        assert_eq!(got["enhanced"].as_str(), want.enhanced.as_deref());
        assert_eq!(got["pattern"].as_str(), want.pattern.as_deref());
        assert_eq!(got["action"].as_str(), Some(want.action.as_str()));
        assert_eq!(got["throttle"].as_str(), Some(want.throttle.as_str()));
        assert_eq!(got["applied"], true);
    }
    assert_eq!(config_mode(state.path()), 0o600);
    assert_eq!(status(state.path())["reply_rules"], shipped.len());
    let toml = std::fs::read_to_string(state.path().join("runner.toml")).unwrap();
    assert!(toml.contains("[[settings.reply_policy]]"), "{toml}");

    // A rule change makes a new config version, so push-config --all sends it.
    let out = admin(
        &url,
        &[
            "reply-rule",
            "add",
            "--code",
            "554",
            "--pattern",
            "(spam|blocked) (.+) \\2",
            "--domain",
            "example.org",
            "--account",
            "main",
            "--action",
            "fail",
            "--position",
            "5",
        ],
    );
    assert_status(&out, 0);
    let out = push(&url, &["show", "--json"]);
    assert_status(&out, 0);
    let shown: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        shown["version"], 2,
        "one rule change, one version (positions shifted)"
    );
    assert_eq!(shown["reply_rules"], shipped.len() + 1);
    let out = push(&url, &["--all", "--json"]);
    assert_status(&out, 0);
    let pushed = runner_policy(state.path());
    assert_eq!(pushed["config_version"], 2);
    let first = &pushed["rules"][0];
    assert_eq!(first["position"], 5);
    assert_eq!(first["domain"], "example.org");
    assert_eq!(first["account"], "main");
    // PostgreSQL takes the back-reference, the regex crate does not: skipped here only.
    assert_eq!(first["applied"], false);
    let out = runner_admin(state.path(), &["policy"]);
    assert_status(&out, 0);
    assert!(
        stdout(&out).contains("(skipped here: does not compile)"),
        "{}",
        stdout(&out)
    );
    let recorded: Option<i64> = c
        .query_one(
            "SELECT config_version_applied FROM mailrun.runners WHERE id = 'pol'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(recorded, Some(2));

    // Removing every rule (one version each) pushes an empty policy: the runner then
    // has no rules.
    let removed = reply_policy::list(&mut c).unwrap().len();
    for r in reply_policy::list(&mut c).unwrap() {
        assert!(reply_policy::remove(&mut c, r.id).unwrap());
    }
    // Removing nothing changes nothing.
    assert!(!reply_policy::remove(&mut c, 999_999).unwrap());
    let out = push(&url, &["show", "--json"]);
    let shown: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(shown["version"], 2 + removed);
    assert_eq!(shown["reply_rules"], 0);
    let out = push(&url, &["--all"]);
    assert_status(&out, 0);
    let pushed = runner_policy(state.path());
    assert_eq!(pushed["pushed"], true);
    assert_eq!(pushed["rules"].as_array().unwrap().len(), 0);
    assert_eq!(
        runner_admin(state.path(), &["policy"]).status.code(),
        Some(3)
    );
    assert_eq!(config_mode(state.path()), 0o600);

    // A hostile policy, signed with the runner's key: refused with a clear fault, and
    // runner.toml stays as it was.
    use mailrun::protocol::codec;
    use mailrun::protocol::{
        Body, FaultReason, JobRunnerConfigUpdate, ReplyAction, ReplyRule, ReplyThrottle,
        RunnerSettings,
    };
    use mailrun::web::client::{Client as WebClient, ClientOptions};
    let before = std::fs::read(state.path().join("runner.toml")).unwrap();
    let version_before = runner_policy(state.path())["config_version"].clone();
    let client = WebClient::new(ClientOptions {
        connect_timeout: Duration::from_secs(5),
        timeout: Duration::from_secs(30),
        allow_plain_http: false,
        max_response_bytes: 1024 * 1024,
    });
    let rule = |position: u32, pattern: &str| ReplyRule {
        position,
        code: Some("5xx".into()),
        enhanced: None,
        pattern: Some(pattern.into()),
        domain: None,
        account: None,
        action: ReplyAction::Fail,
        throttle: ReplyThrottle::None,
    };
    let send = |rules: Vec<ReplyRule>| {
        let body = Body::JobRunnerConfigUpdate(JobRunnerConfigUpdate {
            runner_id: "pol".into(),
            version: 99,
            settings: RunnerSettings {
                batch_size: 10,
                send_rate_per_second: 0.0,
                smtp_connect_timeout_seconds: 30,
                smtp_command_timeout_seconds: 300,
                smtp_data_timeout_seconds: 600,
                poll_interval_seconds: 60,
                lease_safety_margin_seconds: 30,
                dispatcher_url: dispatcher_url.into(),
                software: None,
                reply_policy: Some(rules),
                max_sessions: None,
                max_sessions_per_account: None,
            },
        });
        let bytes = codec::encode(&body);
        let resp = client
            .post_signed(&endpoint, &key, codec::soap_action(&body), &bytes)
            .expect("runner-cgi answers");
        (resp.status, codec::decode(&resp.body).expect("an envelope"))
    };
    let cases: Vec<(Vec<ReplyRule>, &str)> = vec![
        (
            (1..=1001).map(|i| rule(i, "x")).collect(),
            "holds 1001 rules, at most 1000",
        ),
        (
            vec![rule(1, &"y".repeat(5000))],
            "longer than 1000 characters",
        ),
        (vec![rule(7, "a"), rule(7, "b")], "does not increase"),
    ];
    for (rules, expect) in cases {
        let (status, answer) = send(rules);
        assert_eq!(status, 500);
        let Body::Fault(fault) = answer else {
            panic!("expected a fault, got {answer:?}")
        };
        assert_eq!(fault.reason, FaultReason::InvalidValue, "{fault}");
        assert!(fault.message.contains(expect), "{fault}");
        assert_eq!(
            std::fs::read(state.path().join("runner.toml")).unwrap(),
            before
        );
    }
    assert_eq!(
        runner_policy(state.path())["config_version"],
        version_before
    );
}

/// A database with accounts "main" (on `accepting`) and a second one, dispatch-cgi under
/// lighttpd, and a registered runner `runner_id` (batch size 10) with its own runner-cgi.
struct PolicySite {
    url: String,
    c: Client,
    server: web::Lighttpd,
    dispatcher_url: String,
    state: tempfile::TempDir,
    _cgi: Killed,
}

fn policy_site(
    db: &str,
    accepting: &SmtpServer,
    (second, second_server): (&str, &SmtpServer),
    runner_id: &str,
) -> PolicySite {
    let url = common::initialised_db(db);
    let mut c = connect(&url);
    add_account(&mut c, "main", accepting.port);
    add_account(&mut c, second, second_server.port);
    let server = web::Lighttpd::start_cgi(
        &[(
            "dispatch-cgi",
            Path::new(env!("CARGO_BIN_EXE_dispatch-cgi")),
        )],
        &[("MAILRUN_DATABASE_URL", url.as_str())],
    );
    let dispatcher_url = server.url("dispatch-cgi");
    let state = common::temp_dir();
    let key = SigningKey::generate(format!("key-{runner_id}"));
    common::runner_init(state.path(), &dispatcher_url, runner_id, &key);
    let (cgi, endpoint) = runner_cgi(state.path());
    c.execute(
        "INSERT INTO mailrun.runners (id, endpoint, batch_size, key_id, secret)
         VALUES ($1, $2, 10, $3, $4)",
        &[&runner_id, &endpoint, &key.key_id, &key.secret.to_vec()],
    )
    .unwrap();
    PolicySite {
        url,
        c,
        server,
        dispatcher_url,
        state,
        _cgi: cgi,
    }
}

#[test]
fn a_421_sets_the_account_aside_for_the_rest_of_the_batch() {
    away_from_the_hour();
    let accepting = SmtpServer::start("accept");
    let refusing = SmtpServer::start("421");
    let PolicySite {
        url,
        mut c,
        server,
        dispatcher_url,
        state,
        _cgi,
    } = policy_site("policy_421", &accepting, ("slow", &refusing), "aside");
    // The shipped policy (421: another account, throttle the account) reaches the
    // runner, with one last rule its regex engine cannot compile.
    assert_status(
        &admin(
            &url,
            &[
                "reply-rule",
                "add",
                "--code",
                "5xx",
                "--pattern",
                "(loop)\\1",
                "--action",
                "fail",
            ],
        ),
        0,
    );
    assert_status(
        &push(&url, &["set", &format!("dispatcher_url={dispatcher_url}")]),
        0,
    );
    assert!(
        runner_policy(state.path())["rules"]
            .as_array()
            .unwrap()
            .len()
            >= 10
    );

    // One batch (of ten): eight messages through "slow" first, then two through "main",
    // over several sessions at once.
    let slow: Vec<i64> = (0..8)
        .map(|i| enqueue(&mut c, msg("slow", &format!("s{i}@example.org"))))
        .collect();
    let main: Vec<i64> = (0..2)
        .map(|i| enqueue(&mut c, msg("main", &format!("m{i}@example.org"))))
        .collect();
    c.execute(
        "UPDATE mailrun.messages SET next_attempt_at = now() - make_interval(secs => 100 - id)",
        &[],
    )
    .unwrap();

    let out = common::run(
        common::command(env!("CARGO_BIN_EXE_runner-admin"))
            .arg("--state-dir")
            .arg(state.path())
            .args(["cycle", "--force", "--max-seconds", "120", "--verbose"]),
    );
    assert!(
        matches!(out.status.code(), Some(0) | Some(3)),
        "cycle: {}\n{}\n{}",
        stdout(&out),
        common::stderr(&out),
        server.error_log()
    );

    // One warning for the skipped rule, however many batches the cycle sent.
    assert_eq!(
        common::stderr(&out)
            .matches("skipped on this runner: its pattern \"(loop)\\\\1\"")
            .count(),
        1,
        "{}",
        common::stderr(&out)
    );

    // Counted by the servers: the sessions busy when the first 421 came (at most the
    // account's starting window) reached the 421 server, then none; the other
    // account's mail went out.
    let tried = refusing.attempts().len();
    assert!(
        (1..=mailrun::runner::deliver::INITIAL_WINDOW).contains(&tried),
        "{:?}",
        refusing.attempts()
    );
    assert!(refusing.delivered().is_empty());
    assert_eq!(accepting.delivered().len(), 2);
    let state_of = |c: &mut Client, id: i64| {
        text(c, "SELECT state FROM mailrun.messages WHERE id = $1", id).unwrap()
    };
    for id in &main {
        assert_eq!(state_of(&mut c, *id), "sent");
    }

    // The slow messages tried were deferred (421 is never final); the rest came back
    // NotAttempted with the reason, gave their reservations back and are held by the
    // dispatcher while the account is paused.
    let deferred: Vec<i64> = slow
        .iter()
        .copied()
        .filter(|id| state_of(&mut c, *id) == "deferred")
        .collect();
    assert_eq!(deferred.len(), tried);
    let not_attempted = one(
        &mut c,
        "SELECT count(*) FROM mailrun.delivery_attempts
         WHERE outcome = 'not_attempted'
           AND text LIKE 'not attempted: account slow throttled (421 %Too many messages%'",
    );
    assert_eq!(not_attempted, (slow.len() - tried) as i64);
    for id in slow.iter().filter(|id| !deferred.contains(id)) {
        assert_eq!(state_of(&mut c, *id), "queued");
        let reason = text(
            &mut c,
            "SELECT held_reason FROM mailrun.messages WHERE id = $1",
            *id,
        )
        .unwrap_or_default();
        assert!(
            reason.starts_with("held: account slow throttled (421 "),
            "{reason}"
        );
    }
    let t = quota::throttles(&mut c).unwrap();
    assert!(t
        .iter()
        .any(|t| t.key == "slow" && t.last_code == Some(421)));
}

/// The runner's matcher and PostgreSQL's `mailrun.reply_decision` agree on the shipped
/// defaults and on operator rules (domain, account, enhanced prefixes).
#[test]
fn runner_and_dispatcher_classify_answers_alike() {
    use mailrun::protocol::reply_rules::{Answer, Policy};
    let (_url, mut c) = setup("policy_agree");
    add_account(&mut c, "main", 2525);
    add_account(&mut c, "eu", 2526);
    for (code, enhanced, pattern, domain, account, action, throttle, position) in [
        (
            Some("4xx"),
            None,
            None,
            Some("gmail.com"),
            None,
            Action::Fail,
            ThrottleTarget::Domain,
            1,
        ),
        (
            Some("5xx"),
            Some("5.7"),
            Some("policy"),
            None,
            Some("eu"),
            Action::Suppress,
            ThrottleTarget::None,
            2,
        ),
        (
            None,
            Some("4.4"),
            None,
            None,
            None,
            Action::Retry,
            ThrottleTarget::Account,
            3,
        ),
    ] {
        reply_policy::add(
            &mut c,
            &NewRule {
                position: Some(position),
                code: code.map(Into::into),
                enhanced: enhanced.map(Into::into),
                pattern: pattern.map(Into::into),
                domain: domain.map(Into::into),
                account: account.map(Into::into),
                note: None,
            },
            action,
            throttle,
        )
        .unwrap();
    }
    let rules = mailrun::dispatcher::config_versions::current_reply_policy(&mut c).unwrap();
    let (policy, warnings) = Policy::compile(&rules);
    assert!(warnings.is_empty(), "{warnings:?}");
    let answers: &[(u16, Option<&str>, &str, &str, &str)] = &[
        (
            421,
            Some("4.7.0"),
            "Too many messages, slow down",
            "example.org",
            "main",
        ),
        (450, None, "mailbox busy", "mx.gmail.com", "main"),
        (450, None, "mailbox busy", "notgmail.com", "main"),
        (
            451,
            Some("4.4.1"),
            "no answer from host",
            "example.org",
            "main",
        ),
        (451, Some("4.41.1"), "odd", "example.org", "main"),
        (
            550,
            Some("5.7.1"),
            "Rate limited, try later",
            "example.org",
            "main",
        ),
        (550, Some("5.7.1"), "Policy violation", "example.org", "eu"),
        (
            550,
            Some("5.7.1"),
            "POLICY violation",
            "example.org",
            "main",
        ),
        (
            550,
            Some("5.7.1"),
            "Connection frequency limited",
            "example.org",
            "main",
        ),
        (550, Some("5.1.1"), "No such user", "example.org", "main"),
        (550, Some("5.1.10"), "null MX", "example.org", "main"),
        (
            550,
            None,
            "Recipient address rejected: User unknown",
            "example.org",
            "main",
        ),
        (552, Some("5.2.2"), "Mailbox full", "example.org", "main"),
        (
            535,
            Some("5.7.8"),
            "Authentication failed",
            "example.org",
            "main",
        ),
        (554, None, "Relay access denied", "example.org", "main"),
        (
            554,
            Some("5.7.1"),
            "Message rejected as spam",
            "example.org",
            "main",
        ),
        (
            450,
            None,
            "4.2.1 receiving mail at a rate that prevents delivery",
            "yahoo.com",
            "main",
        ),
        (451, None, "Temporary local problem", "example.org", "main"),
    ];
    for &(code, enhanced, text, domain, account) in answers {
        let pg = reply_policy::decide(
            &mut c,
            Some(i32::from(code)),
            enhanced,
            Some(text),
            Some(domain),
            Some(account),
        )
        .unwrap();
        let ours = policy.decide(&Answer {
            code: Some(code),
            enhanced,
            text: Some(text),
            domain: Some(domain),
            account: Some(account),
        });
        let what = format!("{code} {enhanced:?} {text:?} {domain} {account}");
        match (pg.rule_id, ours) {
            (None, None) => {}
            (Some(_), Some(rule)) => {
                assert_eq!(pg.action.as_deref(), Some(rule.action.as_str()), "{what}");
                assert_eq!(pg.throttle, rule.throttle.as_str(), "{what}");
            }
            (pg_rule, ours) => panic!("{what}: dispatcher rule {pg_rule:?}, runner {ours:?}"),
        }
    }
}

#[test]
fn messages_set_aside_after_an_another_account_answer_fail_over_too() {
    away_from_the_hour();
    let (_url, mut c) = setup("set_aside_failover");
    add_account(&mut c, "a", 2525);
    add_account(&mut c, "b", 2526);
    let listed: Vec<i64> = (0..3)
        .map(|i| {
            enqueue(
                &mut c,
                json!({"from": "s@example.com", "to": [format!("l{i}@example.org")],
                       "subject": "Hi", "text": "Body", "accounts": ["a", "b"]}),
            )
        })
        .collect();
    let single = enqueue(&mut c, msg("a", "single@example.org"));
    let run = claim(&mut c, "r1", 10);
    assert_eq!(run.messages.len(), 4);
    assert!(run.messages.iter().all(|m| m.account.name == "a"));
    let aside = "not attempted: account a refused in this batch (535 authentication failed)";
    let mut results = vec![result(
        &run,
        0,
        Outcome::Deferred,
        Some(535),
        "authentication failed: 5.7.8 Authentication credentials invalid",
    )];
    // The runner reports the answer that made it set the account aside with them.
    for i in 1..4 {
        let mut r = result(&run, i, Outcome::NotAttempted, Some(535), aside);
        r.enhanced_status = Some("5.7.8".into());
        results.push(r);
    }
    queue::apply_results(&mut c, "r1", &results).unwrap();
    let row = |c: &mut Client, id: i64| {
        let r = c
            .query_one(
                "SELECT m.state, m.next_attempt_at <= now(), m.held_reason, m.attempts,
                        array(SELECT a.name FROM mailrun.smtp_accounts a
                              WHERE a.id = ANY (m.skip_account_ids))
                 FROM mailrun.messages m WHERE m.id = $1",
                &[&id],
            )
            .unwrap();
        (
            r.get::<_, String>(0),
            r.get::<_, bool>(1),
            r.get::<_, Option<String>>(2),
            r.get::<_, i32>(3),
            r.get::<_, Vec<String>>(4),
        )
    };
    // The answered message and the ones set aside all move to account b, due now; only
    // the answered one counts an attempt.
    for id in &listed {
        let (state, due, reason, attempts, skip) = row(&mut c, *id);
        assert_eq!(skip, vec!["a".to_string()], "message {id}");
        assert!(due && reason.is_none(), "message {id}");
        let tried = *id == run.messages[0].id;
        assert_eq!(state, if tried { "deferred" } else { "queued" });
        assert_eq!(attempts, i32::from(tried));
    }
    // One account only: held for the retry backoff, the reason says why.
    let (state, due, reason, attempts, _) = row(&mut c, single);
    assert_eq!((state.as_str(), due, attempts), ("queued", false, 0));
    let reason = reason.unwrap();
    assert!(
        reason.starts_with("held: account a refused another message of its batch (535 "),
        "{reason}"
    );
    let again = claim(&mut c, "r1", 10);
    let mut ids: Vec<i64> = again.messages.iter().map(|m| m.id).collect();
    ids.sort();
    assert_eq!(ids, listed);
    assert!(again.messages.iter().all(|m| m.account.name == "b"));

    // Without an answer the policy sends to another account, NotAttempted only
    // re-queues, whatever its text.
    for code in [None, Some(450)] {
        let other = enqueue(&mut c, msg("a", "other@example.org"));
        let run = claim(&mut c, "r1", 10);
        let i = run.messages.iter().position(|m| m.id == other).unwrap();
        let r = result(&run, i, Outcome::NotAttempted, code, aside);
        queue::apply_results(&mut c, "r1", &[r]).unwrap();
        let (state, due, reason, _, skip) = row(&mut c, other);
        assert_eq!(
            (state.as_str(), due, reason, skip.len()),
            ("queued", true, None, 0),
            "{code:?}"
        );
        c.execute(
            "UPDATE mailrun.messages SET state = 'cancelled', finished_at = now() WHERE id = $1",
            &[&other],
        )
        .unwrap();
    }
}

#[test]
fn a_server_refusing_to_relay_sends_the_batch_to_the_next_account() {
    away_from_the_hour();
    let accepting = SmtpServer::start("accept");
    let relay = SmtpServer::start("relay");
    let PolicySite {
        url,
        mut c,
        server,
        dispatcher_url,
        state,
        _cgi,
    } = policy_site("policy_relay", &accepting, ("closed", &relay), "relayer");
    assert_status(
        &push(&url, &["set", &format!("dispatcher_url={dispatcher_url}")]),
        0,
    );
    // One batch of ten, over several sessions at once.
    let ids: Vec<i64> = (0..10)
        .map(|i| {
            enqueue(
                &mut c,
                json!({"from": "s@example.com", "to": [format!("r{i}@example.org")],
                       "subject": "Hi", "text": "Body", "accounts": ["closed", "main"]}),
            )
        })
        .collect();

    let out = common::run(
        common::command(env!("CARGO_BIN_EXE_runner-admin"))
            .arg("--state-dir")
            .arg(state.path())
            .args(["cycle", "--force", "--max-seconds", "120"]),
    );
    assert!(
        matches!(out.status.code(), Some(0) | Some(3)),
        "cycle: {}\n{}\n{}",
        stdout(&out),
        common::stderr(&out),
        server.error_log()
    );
    // The transactions of the sessions busy when the first answer came (at most the
    // starting window) reached the closed relay (RCPT refused: 554 5.7.1 relay access
    // denied, shipped rule 60: another account); every message went out through main.
    let tried = relay.attempts().len();
    assert!(
        (1..=mailrun::runner::deliver::INITIAL_WINDOW).contains(&tried),
        "{:?}",
        relay.attempts()
    );
    assert_eq!(accepting.delivered().len(), 10);
    for id in ids {
        assert_eq!(
            text(
                &mut c,
                "SELECT state FROM mailrun.messages WHERE id = $1",
                id
            )
            .as_deref(),
            Some("sent")
        );
    }
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM mailrun.delivery_attempts
             WHERE outcome = 'not_attempted'
               AND text LIKE 'not attempted: account closed refused in this batch (554 %'"
        ),
        (10 - tried) as i64
    );
}

#[test]
fn a_given_back_domain_reservation_releases_mail_held_for_that_domain() {
    away_from_the_hour();
    let (_url, mut c) = setup("release_domain");
    add_account(&mut c, "main", 2525);
    quota::set(
        &mut c,
        Scope::Domain,
        "slow.example",
        &Caps {
            per_second: None,
            per_hour: Some(1),
            per_day: None,
            window: None,
        },
    )
    .unwrap();
    let to_slow: Vec<i64> = (0..3)
        .map(|i| enqueue(&mut c, msg("main", &format!("u{i}@slow.example"))))
        .collect();
    let run = claim(&mut c, "r1", 10);
    assert_eq!(run.messages.len(), 1);
    let held_ids: Vec<i64> = to_slow
        .iter()
        .copied()
        .filter(|id| *id != run.messages[0].id)
        .collect();
    let quota_id: i64 = c
        .query_one(
            "SELECT id FROM mailrun.quotas WHERE scope = 'domain' AND key = 'slow.example'",
            &[],
        )
        .unwrap()
        .get(0);
    for id in &held_ids {
        let ids: Option<Vec<i64>> = c
            .query_one(
                "SELECT held_quota_ids FROM mailrun.messages WHERE id = $1",
                &[id],
            )
            .unwrap()
            .get(0);
        assert_eq!(ids, Some(vec![quota_id]), "held by the domain's quota");
        assert!(held(&mut c, *id)
            .0
            .is_some_and(|r| r.starts_with("held: domain slow.example hourly cap 1/h until ")));
    }
    let back = result(&run, 0, Outcome::NotAttempted, None, "not attempted");
    queue::apply_results(&mut c, "r1", &[back]).unwrap();
    let woken = held_ids
        .iter()
        .filter(|id| held(&mut c, **id) == (None, true))
        .count();
    assert_eq!(woken, 1);
    // A claim leases one of the two due messages and holds the other again, with its
    // quota recorded again.
    assert_eq!(claim(&mut c, "r1", 10).messages.len(), 1);
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM mailrun.messages
             WHERE state = 'queued' AND held_quota_ids IS NOT NULL AND held_until > now()"
        ),
        2
    );
}
