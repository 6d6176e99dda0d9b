//! The queue at the library and SQL level, against the private PostgreSQL cluster:
//! migrations, enqueue validation, claiming under concurrency, leases, idempotent and late
//! results, backoff, give-up, per-recipient outcomes and the finality policy.
use crate::common;

use std::collections::HashSet;

use chrono::Utc;
use mailrun::dispatcher::queue::{self, ApplyStatus, EnqueueError};
use mailrun::dispatcher::retry::{FinalityRule, Policy};
use mailrun::dispatcher::{runners, schema};
use mailrun::protocol::{MessageResult, Outcome, RecipientResult};
use postgres::{Client, NoTls};
use serde_json::{json, Value};

fn connect(url: &str) -> Client {
    Client::connect(url, NoTls).expect("connect")
}

/// A migrated database with account "main" and enabled runners r1, r2.
fn setup(name: &str) -> (String, Client) {
    let url = common::initialised_db(name);
    let mut c = connect(&url);
    c.batch_execute(
        "INSERT INTO mailrun.smtp_accounts (name, host, port, security, username, password)
         VALUES ('main', '127.0.0.1', 2525, 'none', 'user', 'hunter2')",
    )
    .unwrap();
    runners::add(&mut c, "r1", "http://127.0.0.1:9/runner", 100).unwrap();
    runners::add(&mut c, "r2", "http://127.0.0.1:9/runner", 100).unwrap();
    (url, c)
}

fn msg(to: &[&str]) -> Value {
    json!({"from": "Sender <sender@example.com>", "to": to, "subject": "Hello", "text": "Body"})
}

fn enqueue(c: &mut Client, m: Value) -> i64 {
    queue::enqueue(c, &m).expect("enqueue")
}

fn state(c: &mut Client, id: i64) -> String {
    c.query_one("SELECT state FROM mailrun.messages WHERE id = $1", &[&id])
        .unwrap()
        .get(0)
}

fn count(c: &mut Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).unwrap().get(0)
}

fn make_due(c: &mut Client, id: i64) {
    c.execute(
        "UPDATE mailrun.messages SET next_attempt_at = now() WHERE id = $1",
        &[&id],
    )
    .unwrap();
}

fn result(
    run_id: &str,
    id: i64,
    token: &str,
    outcome: Outcome,
    code: Option<u16>,
) -> MessageResult {
    MessageResult {
        job_run_id: run_id.to_string(),
        message_id: id,
        lease_token: token.to_string(),
        outcome,
        smtp_code: code,
        enhanced_status: None,
        text: code.map(|c| format!("{c} server says")),
        attempted_at: Utc::now(),
        recipients: Vec::new(),
    }
}

fn apply(c: &mut Client, runner: &str, r: &MessageResult) -> ApplyStatus {
    queue::apply_results_detailed(c, runner, std::slice::from_ref(r)).expect("apply")[0].1
}

/// Claims exactly one message and returns (job run id, lease token).
fn claim_one(c: &mut Client, runner: &str, id: i64) -> (String, String) {
    let run = queue::claim_batch(c, runner, 10, 600).expect("claim");
    assert_eq!(run.messages.len(), 1, "expected one message");
    assert_eq!(run.messages[0].id, id);
    (run.job_run_id, run.messages[0].lease_token.clone())
}

#[test]
fn migrate_is_idempotent_and_refuses_a_newer_schema() {
    let url = common::cluster().fresh_db("migrate");
    let mut c = connect(&url);
    assert_eq!(schema::current_version(&mut c).unwrap(), 0);
    assert!(schema::require_current(&mut c).is_err());
    let all: Vec<i32> = schema::MIGRATIONS.iter().map(|m| m.0).collect();
    let first = schema::migrate(&mut c).unwrap();
    assert_eq!(first.versions, all);
    assert!(first.sources);
    assert!(schema::migrate(&mut c).unwrap().is_noop());
    schema::require_current(&mut c).unwrap();

    // What a newer build's migrate leaves: its version, and its stamp on the schema.
    c.batch_execute(
        "INSERT INTO mailrun.schema_migrations (version, name) VALUES (999, 'future');
         COMMENT ON SCHEMA mailrun IS 'mailrun schema version 999, sources sha256 0'",
    )
    .unwrap();
    let err = schema::migrate(&mut c).unwrap_err();
    assert_eq!(mailrun::cli::exit_code_of(&err), 78, "{err:#}");
    assert!(format!("{err:#}").contains("newer"), "{err:#}");
    assert!(schema::require_current(&mut c).is_err());
}

#[test]
fn concurrent_migrations_serialize() {
    let url = common::cluster().fresh_db("migrate_conc");
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                schema::migrate(&mut connect(&url))
                    .map(|m| m.versions)
                    .map_err(|e| format!("{e:#}"))
            })
        })
        .collect();
    let applied: Vec<Vec<i32>> = handles
        .into_iter()
        .map(|h| h.join().unwrap().unwrap())
        .collect();
    // Every migration applied exactly once, whichever thread applied it.
    let mut all_applied: Vec<i32> = applied.concat();
    all_applied.sort();
    let all: Vec<i32> = schema::MIGRATIONS.iter().map(|m| m.0).collect();
    assert_eq!(all_applied, all);
    let mut c = connect(&url);
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM mailrun.schema_migrations"),
        all.len() as i64
    );
}

#[test]
fn enqueue_then_claim_maps_every_field() {
    let (_url, mut c) = setup("claim_fields");
    let id = enqueue(
        &mut c,
        json!({
            "from": "Sender <sender@example.com>",
            "reply_to": "help@example.com",
            "to": ["a@example.org"], "cc": "b@example.org", "bcc": ["c@example.org"],
            "subject": "Grüße", "text": "plain", "html": "<p>html</p>",
            "headers": [{"name": "X-Campaign", "value": "7"}],
            "attachments": [{"filename": "a.txt", "content_type": "text/plain", "data": "aGVsbG8="}],
            "account": "main"
        }),
    );
    assert_eq!(queue::count_due(&mut c).unwrap(), 1);
    let run = queue::claim_batch(&mut c, "r1", 10, 120).unwrap();
    assert!(!run.job_run_id.is_empty());
    assert_eq!(run.lease_seconds, 120);
    assert_eq!(run.messages.len(), 1);
    let m = &run.messages[0];
    assert_eq!(m.id, id);
    assert!(m.message_id_header.starts_with('<') && m.message_id_header.ends_with("@example.com>"));
    assert_eq!(m.from, "Sender <sender@example.com>");
    assert_eq!(m.reply_to.as_deref(), Some("help@example.com"));
    assert_eq!(m.to, vec!["a@example.org"]);
    assert_eq!(m.cc, vec!["b@example.org"]);
    assert_eq!(m.bcc, vec!["c@example.org"]);
    assert_eq!(m.subject, "Grüße");
    assert_eq!(m.text_body.as_deref(), Some("plain"));
    assert_eq!(m.html_body.as_deref(), Some("<p>html</p>"));
    assert_eq!(m.headers[0].name, "X-Campaign");
    assert_eq!(m.attachments[0].data, b"hello");
    assert_eq!(m.account.name, "main");
    assert_eq!(m.account.port, 2525);
    assert_eq!(m.account.password.as_deref(), Some("hunter2"));
    assert!(!format!("{:?}", m.account).contains("hunter2"));
    assert_eq!(state(&mut c, id), "leased");
    assert_eq!(queue::count_due(&mut c).unwrap(), 0);
    assert!(queue::claim_batch(&mut c, "r2", 10, 120)
        .unwrap()
        .messages
        .is_empty());
    let job_count: i32 = c
        .query_one(
            "SELECT message_count FROM mailrun.job_runs WHERE id::text = $1",
            &[&run.job_run_id],
        )
        .unwrap()
        .get(0);
    assert_eq!(job_count, 1);
}

#[test]
fn unknown_or_disabled_runners_get_nothing() {
    let (_url, mut c) = setup("claim_runner");
    enqueue(&mut c, msg(&["a@example.org"]));
    assert!(queue::claim_batch(&mut c, "nobody", 10, 60)
        .unwrap()
        .messages
        .is_empty());
    runners::set_enabled(&mut c, "r1", false).unwrap();
    assert!(queue::claim_batch(&mut c, "r1", 10, 60)
        .unwrap()
        .messages
        .is_empty());
    assert_eq!(count(&mut c, "SELECT count(*) FROM mailrun.job_runs"), 0);
    runners::set_enabled(&mut c, "r1", true).unwrap();
    assert_eq!(
        queue::claim_batch(&mut c, "r1", 10, 60)
            .unwrap()
            .messages
            .len(),
        1
    );
}

#[test]
fn batch_size_and_send_at_limit_the_claim() {
    let (_url, mut c) = setup("claim_limits");
    runners::update(&mut c, "r1", None, Some(3)).unwrap();
    for _ in 0..5 {
        enqueue(&mut c, msg(&["a@example.org"]));
    }
    let mut later = msg(&["a@example.org"]);
    later["send_at"] = json!("2099-01-01T00:00:00Z");
    let later_id = enqueue(&mut c, later);
    assert_eq!(queue::count_due(&mut c).unwrap(), 5);
    assert_eq!(
        queue::claim_batch(&mut c, "r1", 10, 60)
            .unwrap()
            .messages
            .len(),
        3
    );
    assert_eq!(
        queue::claim_batch(&mut c, "r1", 10, 60)
            .unwrap()
            .messages
            .len(),
        2
    );
    assert!(queue::claim_batch(&mut c, "r1", 10, 60)
        .unwrap()
        .messages
        .is_empty());
    assert_eq!(state(&mut c, later_id), "queued");
}

#[test]
fn concurrent_claimers_never_share_a_message() {
    let (url, mut c) = setup("claim_concurrency");
    let many: Vec<Value> = (0..3000)
        .map(|i| msg(&[&format!("u{i}@example.org")]))
        .collect();
    let mut tx = c.transaction().unwrap();
    queue::enqueue_many(&mut tx, &many).unwrap();
    tx.commit().unwrap();
    for i in 3..9 {
        runners::add(&mut c, &format!("r{i}"), "http://127.0.0.1:9/x", 100).unwrap();
    }
    let handles: Vec<_> = (1..9)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut c = connect(&url);
                let mut got = Vec::new();
                loop {
                    let run = queue::claim_batch(&mut c, &format!("r{i}"), 37, 600).unwrap();
                    if run.messages.is_empty() {
                        return got;
                    }
                    got.extend(run.messages.iter().map(|m| m.id));
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut total = 0;
    for h in handles {
        for id in h.join().unwrap() {
            total += 1;
            assert!(seen.insert(id), "message {id} was claimed twice");
        }
    }
    assert_eq!(total, 3000);
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM mailrun.messages WHERE state = 'leased'"
        ),
        3000
    );
    assert_eq!(
        count(
            &mut c,
            "SELECT count(DISTINCT lease_token) FROM mailrun.messages WHERE state = 'leased'"
        ),
        3000
    );
}

#[test]
fn claim_uses_the_partial_due_index() {
    let (url, mut c) = setup("claim_explain");
    c.batch_execute(
        "INSERT INTO mailrun.messages (account_id, from_addr, to_addrs, size_bytes,
             message_id_header, send_at, next_attempt_at, expires_at, state, finished_at)
         SELECT 1, 'a@example.com', '{b@example.org}', 10, '<' || g || '@x>', now(), now(),
                now() + interval '5 days', 'sent', now()
         FROM generate_series(1, 50000) g;
         INSERT INTO mailrun.messages (account_id, from_addr, to_addrs, size_bytes,
             message_id_header, send_at, next_attempt_at, expires_at)
         SELECT 1, 'a@example.com', '{b@example.org}', 10, '<q' || g || '@x>', now(), now(),
                now() + interval '5 days'
         FROM generate_series(1, 100) g;
         ANALYZE mailrun.messages;",
    )
    .unwrap();
    // The plan of the statement inside mailrun.claim_batch itself, via auto_explain.
    let out = std::process::Command::new(common::pg_bin("psql"))
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-d", &url])
        .arg("-c")
        .arg(
            "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0;
             SET auto_explain.log_nested_statements = on; SET auto_explain.log_level = notice;
             BEGIN; SELECT count(*) FROM mailrun.claim_batch('r1', 50, 60); ROLLBACK;",
        )
        .output()
        .expect("run psql");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "psql failed: {log}");
    let claim_plan = log
        .split("NOTICE:")
        .find(|p| p.contains("SKIP LOCKED"))
        .unwrap_or_else(|| panic!("no plan for the claim query in:\n{log}"));
    assert!(
        claim_plan.contains("Index Scan using messages_due"),
        "claim does not use the due index:\n{claim_plan}"
    );
    assert!(!claim_plan.contains("Seq Scan"), "{claim_plan}");
    assert_eq!(
        queue::claim_batch(&mut c, "r1", 50, 60)
            .unwrap()
            .messages
            .len(),
        50
    );
}

#[test]
fn results_are_idempotent() {
    let (_url, mut c) = setup("results_idempotent");
    let id = enqueue(&mut c, msg(&["a@example.org"]));
    let (run, token) = claim_one(&mut c, "r1", id);
    let r = result(&run, id, &token, Outcome::Sent, Some(250));
    assert_eq!(apply(&mut c, "r1", &r), ApplyStatus::Applied);
    assert_eq!(apply(&mut c, "r1", &r), ApplyStatus::Duplicate);
    let acks = queue::apply_results(&mut c, "r1", std::slice::from_ref(&r)).unwrap();
    assert_eq!(acks[0].message_id, id);
    assert_eq!(acks[0].lease_token, token);
    assert_eq!(state(&mut c, id), "sent");
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM mailrun.delivery_attempts"),
        1
    );
    let attempts: i32 = c
        .query_one(
            "SELECT attempts FROM mailrun.messages WHERE id = $1",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert_eq!(attempts, 1);
    // Another runner cannot report on a lease it was not given; a forged token neither.
    assert_eq!(apply(&mut c, "r2", &r), ApplyStatus::Rejected);
    let forged = result(
        &run,
        id,
        &uuid::Uuid::new_v4().to_string(),
        Outcome::Failed,
        Some(550),
    );
    assert_eq!(apply(&mut c, "r1", &forged), ApplyStatus::Rejected);
    let nonsense = result(&run, id, "not-a-token", Outcome::Failed, Some(550));
    assert_eq!(apply(&mut c, "r1", &nonsense), ApplyStatus::Rejected);
    let gone = result(&run, 999_999, &token, Outcome::Sent, Some(250));
    assert_eq!(apply(&mut c, "r1", &gone), ApplyStatus::Unknown);
    assert_eq!(state(&mut c, id), "sent");
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM mailrun.delivery_attempts"),
        1
    );
}

#[test]
fn a_fast_round_token_proves_its_own_message_and_job_run_only() {
    // Nothing can hold these back, so the claim takes the set-based round: no lease rows,
    // each token derived from the job run's secret (decision 43). A token must still
    // prove exactly what a lease row proved.
    let (_url, mut c) = setup("derived_tokens");
    let a = enqueue(&mut c, msg(&["a@example.org"]));
    let b = enqueue(&mut c, msg(&["b@example.org"]));
    let run1 = queue::claim_batch(&mut c, "r1", 2, 600).unwrap();
    assert_eq!(run1.messages.len(), 2);
    assert_eq!(count(&mut c, "SELECT count(*) FROM mailrun.leases"), 0);
    let token = |id: i64| -> String {
        run1.messages
            .iter()
            .find(|m| m.id == id)
            .unwrap()
            .lease_token
            .clone()
    };
    assert_ne!(token(a), token(b));
    let other = enqueue(&mut c, msg(&["c@example.org"]));
    let (run2, _) = claim_one(&mut c, "r1", other);

    let failed = |run: &str, id: i64, tok: &str| result(run, id, tok, Outcome::Failed, Some(550));
    // One message's token on another message of the same batch.
    assert_eq!(
        apply(&mut c, "r1", &failed(&run1.job_run_id, b, &token(a))),
        ApplyStatus::Rejected
    );
    // The right token under another job run of the same runner, an unknown one, none.
    assert_eq!(
        apply(&mut c, "r1", &failed(&run2, a, &token(a))),
        ApplyStatus::Rejected
    );
    let unknown_run = uuid::Uuid::new_v4().to_string();
    assert_eq!(
        apply(&mut c, "r1", &failed(&unknown_run, a, &token(a))),
        ApplyStatus::Rejected
    );
    assert_eq!(
        apply(&mut c, "r1", &failed("not-a-job-run", a, &token(a))),
        ApplyStatus::Rejected
    );
    // Another runner holding the whole report.
    assert_eq!(
        apply(&mut c, "r2", &failed(&run1.job_run_id, a, &token(a))),
        ApplyStatus::Rejected
    );
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM mailrun.delivery_attempts"),
        0
    );
    assert_eq!(state(&mut c, a), "leased");
    assert_eq!(state(&mut c, b), "leased");

    // The right report applies; once the lease has moved on, the old token is late.
    let sent = result(&run1.job_run_id, a, &token(a), Outcome::Sent, Some(250));
    assert_eq!(apply(&mut c, "r1", &sent), ApplyStatus::Applied);
    assert_eq!(state(&mut c, a), "sent");
    c.execute(
        "UPDATE mailrun.messages SET lease_expires_at = now() - interval '1 second' WHERE id = $1",
        &[&b],
    )
    .unwrap();
    assert_eq!(queue::reap_expired(&mut c).unwrap(), 1);
    let (_run3, token3) = claim_one(&mut c, "r2", b);
    assert_ne!(token3, token(b));
    let late = result(&run1.job_run_id, b, &token(b), Outcome::Sent, Some(250));
    assert_eq!(apply(&mut c, "r1", &late), ApplyStatus::Late);
    assert_eq!(apply(&mut c, "r1", &late), ApplyStatus::Duplicate);

    // A purge, however short its age, keeps a job run whose leases still run: its
    // tokens are checked against it.
    let d = enqueue(&mut c, msg(&["d@example.org"]));
    let (run4, token4) = claim_one(&mut c, "r1", d);
    c.batch_execute("UPDATE mailrun.job_runs SET created_at = now() - interval '2 hours'")
        .unwrap();
    queue::purge(&mut c, 60).unwrap();
    let sent = result(&run4, d, &token4, Outcome::Sent, Some(250));
    assert_eq!(apply(&mut c, "r1", &sent), ApplyStatus::Applied);
}

#[test]
fn expired_leases_are_reaped_and_late_reports_recorded_not_applied() {
    let (_url, mut c) = setup("reap_late");
    let id = enqueue(&mut c, msg(&["a@example.org"]));
    let (run1, token1) = claim_one(&mut c, "r1", id);
    assert_eq!(queue::reap_expired(&mut c).unwrap(), 0, "lease still valid");
    c.execute(
        "UPDATE mailrun.messages SET lease_expires_at = now() - interval '1 second' WHERE id = $1",
        &[&id],
    )
    .unwrap();
    assert_eq!(queue::reap_expired(&mut c).unwrap(), 1);
    assert_eq!(state(&mut c, id), "queued");
    let (run2, token2) = claim_one(&mut c, "r2", id);
    assert_ne!(token1, token2);

    // The first runner's late deferral is recorded but changes nothing.
    let late = result(&run1, id, &token1, Outcome::Deferred, Some(451));
    assert_eq!(apply(&mut c, "r1", &late), ApplyStatus::Late);
    assert_eq!(state(&mut c, id), "leased");
    assert_eq!(apply(&mut c, "r1", &late), ApplyStatus::Duplicate);
    let late_flag: bool = c
        .query_one(
            "SELECT late FROM mailrun.delivery_attempts WHERE lease_token::text = $1",
            &[&token1],
        )
        .unwrap()
        .get(0);
    assert!(late_flag);

    // The current lease's report applies.
    let now = result(&run2, id, &token2, Outcome::Failed, Some(550));
    assert_eq!(apply(&mut c, "r2", &now), ApplyStatus::Applied);
    assert_eq!(state(&mut c, id), "failed");
}

#[test]
fn a_late_sent_marks_the_message_sent_once() {
    let (_url, mut c) = setup("late_sent");
    let id = enqueue(&mut c, msg(&["a@example.org"]));
    let (run1, token1) = claim_one(&mut c, "r1", id);
    c.execute(
        "UPDATE mailrun.messages SET lease_expires_at = now() - interval '1 second' WHERE id = $1",
        &[&id],
    )
    .unwrap();
    queue::reap_expired(&mut c).unwrap();
    let (run2, token2) = claim_one(&mut c, "r2", id);
    // r1 did deliver before its lease ran out: the mail went out, so it is sent.
    assert_eq!(
        apply(
            &mut c,
            "r1",
            &result(&run1, id, &token1, Outcome::Sent, Some(250))
        ),
        ApplyStatus::Late
    );
    assert_eq!(state(&mut c, id), "sent");
    // r2's report for the replaced lease is recorded, never applied a second time.
    assert_eq!(
        apply(
            &mut c,
            "r2",
            &result(&run2, id, &token2, Outcome::Failed, Some(550))
        ),
        ApplyStatus::Late
    );
    assert_eq!(state(&mut c, id), "sent");
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM mailrun.delivery_attempts"),
        2
    );
}

#[test]
fn deferrals_back_off_exponentially_then_give_up() {
    let (_url, mut c) = setup("backoff");
    let policy = Policy::load(&mut c).unwrap();
    assert_eq!(policy, Policy::default());
    let id = enqueue(&mut c, msg(&["a@example.org"]));
    let expected = [300i64, 600, 1200, 2400, 4000, 4000];
    for (n, want) in expected.iter().enumerate() {
        make_due(&mut c, id);
        let (run, token) = claim_one(&mut c, "r1", id);
        let mut tx = c.transaction().unwrap();
        let r = result(&run, id, &token, Outcome::Deferred, Some(451));
        assert_eq!(
            queue::apply_results_detailed(&mut tx, "r1", &[r]).unwrap()[0].1,
            ApplyStatus::Applied
        );
        // now() is the transaction's start, so the delay is exact.
        let row = tx
            .query_one(
                "SELECT state, attempts, extract(epoch FROM next_attempt_at - now())::bigint,
                        last_code FROM mailrun.messages WHERE id = $1",
                &[&id],
            )
            .unwrap();
        tx.commit().unwrap();
        assert_eq!(row.get::<_, String>(0), "deferred");
        assert_eq!(row.get::<_, i32>(1), n as i32 + 1);
        assert_eq!(row.get::<_, i64>(2), *want, "after attempt {}", n + 1);
        assert_eq!(row.get::<_, Option<i32>>(3), Some(451));
        assert_eq!(policy.backoff_seconds(n as i32 + 1), *want);
    }
    // Past the give-up time a deferral expires the message.
    make_due(&mut c, id);
    let (run, token) = claim_one(&mut c, "r1", id);
    c.execute(
        "UPDATE mailrun.messages SET expires_at = now() - interval '1 second' WHERE id = $1",
        &[&id],
    )
    .unwrap();
    let r = result(&run, id, &token, Outcome::Deferred, Some(421));
    assert_eq!(apply(&mut c, "r1", &r), ApplyStatus::Applied);
    assert_eq!(state(&mut c, id), "expired");
}

#[test]
fn rust_and_sql_backoff_agree() {
    let (_url, mut c) = setup("backoff_parity");
    let policy = Policy {
        backoff_min_seconds: 7,
        backoff_max_seconds: 100_000,
        ..Policy::default()
    };
    policy.store(&mut c).unwrap();
    for attempts in 0..60 {
        let sql: i64 = c
            .query_one("SELECT mailrun.backoff_seconds($1)", &[&attempts])
            .unwrap()
            .get(0);
        assert_eq!(sql, policy.backoff_seconds(attempts), "attempts {attempts}");
    }
}

#[test]
fn a_due_message_past_its_give_up_time_expires_instead_of_being_claimed() {
    let (_url, mut c) = setup("expire_on_claim");
    let old = enqueue(&mut c, msg(&["a@example.org"]));
    let fresh = enqueue(&mut c, msg(&["b@example.org"]));
    c.execute(
        "UPDATE mailrun.messages SET expires_at = now() - interval '1 second' WHERE id = $1",
        &[&old],
    )
    .unwrap();
    let run = queue::claim_batch(&mut c, "r1", 10, 60).unwrap();
    assert_eq!(
        run.messages.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![fresh]
    );
    assert_eq!(state(&mut c, old), "expired");
}

#[test]
fn partial_recipient_failure_retries_only_the_deferred_recipients() {
    let (_url, mut c) = setup("partial");
    let id = enqueue(
        &mut c,
        json!({"from": "s@example.com", "to": ["a@example.org", "b@example.org"],
               "cc": ["c@example.org"], "text": "x"}),
    );
    let (run, token) = claim_one(&mut c, "r1", id);
    let mut r = result(&run, id, &token, Outcome::Sent, Some(250));
    r.recipients = vec![
        RecipientResult {
            address: "B@example.org".into(),
            outcome: Outcome::Deferred,
            smtp_code: Some(452),
            enhanced_status: Some("4.2.2".into()),
            text: Some("mailbox full".into()),
        },
        RecipientResult {
            address: "c@example.org".into(),
            outcome: Outcome::Failed,
            smtp_code: Some(550),
            enhanced_status: Some("5.1.1".into()),
            text: Some("no such user".into()),
        },
    ];
    assert_eq!(apply(&mut c, "r1", &r), ApplyStatus::Applied);
    let row = c
        .query_one(
            "SELECT state, recipients_sent, recipients_failed, last_code, last_text
             FROM mailrun.messages WHERE id = $1",
            &[&id],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "deferred");
    assert_eq!(row.get::<_, Vec<String>>(1), vec!["a@example.org"]);
    assert_eq!(row.get::<_, Vec<String>>(2), vec!["c@example.org"]);
    assert_eq!(row.get::<_, Option<i32>>(3), Some(452));
    assert_eq!(
        row.get::<_, Option<String>>(4).as_deref(),
        Some("mailbox full")
    );

    make_due(&mut c, id);
    let run2 = queue::claim_batch(&mut c, "r1", 10, 60).unwrap();
    let m = &run2.messages[0];
    assert_eq!(m.to, vec!["b@example.org"]);
    assert!(m.cc.is_empty());
    let r2 = result(
        &run2.job_run_id,
        id,
        &m.lease_token,
        Outcome::Sent,
        Some(250),
    );
    assert_eq!(apply(&mut c, "r1", &r2), ApplyStatus::Applied);
    let row = c
        .query_one(
            "SELECT state, recipients_sent, recipients_failed, attempts FROM mailrun.messages WHERE id = $1",
            &[&id],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "sent");
    assert_eq!(
        row.get::<_, Vec<String>>(1),
        vec!["a@example.org", "b@example.org"]
    );
    assert_eq!(row.get::<_, Vec<String>>(2), vec!["c@example.org"]);
    assert_eq!(row.get::<_, i32>(3), 2);

    // Retrying tries the failed recipient again, and only it. (The 550 5.1.1 also put
    // it on the suppression list, docs/quotas.md: take it off first.)
    assert_eq!(
        c.execute(
            "DELETE FROM mailrun.suppressions WHERE address = 'c@example.org'",
            &[]
        )
        .unwrap(),
        1
    );
    assert_eq!(queue::retry(&mut c, id).unwrap(), "sent");
    let run3 = queue::claim_batch(&mut c, "r1", 10, 60).unwrap();
    assert!(run3.messages[0].to.is_empty());
    assert_eq!(run3.messages[0].cc, vec!["c@example.org"]);
}

#[test]
fn all_recipients_refused_fails_the_message() {
    let (_url, mut c) = setup("all_refused");
    let id = enqueue(&mut c, msg(&["a@example.org"]));
    let (run, token) = claim_one(&mut c, "r1", id);
    assert_eq!(
        apply(
            &mut c,
            "r1",
            &result(&run, id, &token, Outcome::Failed, Some(554))
        ),
        ApplyStatus::Applied
    );
    assert_eq!(state(&mut c, id), "failed");
}

#[test]
fn the_policy_decides_which_codes_are_final() {
    let (_url, mut c) = setup("policy_rules");
    let policy = Policy {
        rules: vec![
            FinalityRule {
                code: Some("550".into()),
                enhanced: Some("5.7.1".into()),
                permanent: false,
            },
            FinalityRule {
                code: Some("45x".into()),
                enhanced: None,
                permanent: true,
            },
        ],
        ..Policy::default()
    };
    assert!(policy.store(&mut c).unwrap());
    assert!(
        !policy.store(&mut c).unwrap(),
        "storing the same policy changes nothing"
    );

    // 550 5.7.1 is temporary under the policy, whatever the runner thought.
    let a = enqueue(&mut c, msg(&["a@example.org"]));
    let (run, token) = claim_one(&mut c, "r1", a);
    let mut r = result(&run, a, &token, Outcome::Failed, Some(550));
    r.enhanced_status = Some("5.7.1".into());
    apply(&mut c, "r1", &r);
    assert_eq!(state(&mut c, a), "deferred");

    // 452 is permanent under the policy.
    let b = enqueue(&mut c, msg(&["b@example.org"]));
    let (run, token) = claim_one(&mut c, "r1", b);
    apply(
        &mut c,
        "r1",
        &result(&run, b, &token, Outcome::Deferred, Some(452)),
    );
    assert_eq!(state(&mut c, b), "failed");

    // A per-message rule wins over the policy.
    let mut m = msg(&["c@example.org"]);
    m["final_codes"] = json!([{"code": "4xx", "permanent": false}]);
    let d = enqueue(&mut c, m);
    let (run, token) = claim_one(&mut c, "r1", d);
    apply(
        &mut c,
        "r1",
        &result(&run, d, &token, Outcome::Deferred, Some(452)),
    );
    assert_eq!(state(&mut c, d), "deferred");

    // Without a code (timeout, dropped connection) the runner's outcome stands.
    let e = enqueue(&mut c, msg(&["e@example.org"]));
    let (run, token) = claim_one(&mut c, "r1", e);
    apply(
        &mut c,
        "r1",
        &result(&run, e, &token, Outcome::Deferred, None),
    );
    assert_eq!(state(&mut c, e), "deferred");
}

#[test]
fn not_attempted_requeues_without_counting() {
    let (_url, mut c) = setup("not_attempted");
    let id = enqueue(&mut c, msg(&["a@example.org"]));
    let (run, token) = claim_one(&mut c, "r1", id);
    apply(
        &mut c,
        "r1",
        &result(&run, id, &token, Outcome::NotAttempted, None),
    );
    let row = c
        .query_one(
            "SELECT state, attempts FROM mailrun.messages WHERE id = $1",
            &[&id],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "queued");
    assert_eq!(row.get::<_, i32>(1), 0);
    assert_eq!(queue::count_due(&mut c).unwrap(), 1);
}

#[test]
fn invalid_messages_are_refused_and_change_nothing() {
    let (_url, mut c) = setup("bad_input");
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"to": ["a@example.org"], "text": "x"}),
            "\"from\" is required",
        ),
        (
            json!({"from": "s@example.com", "to": ["not an address"], "text": "x"}),
            "invalid address",
        ),
        (
            json!({"from": "s@example.com", "to": [], "text": "x"}),
            "no recipients",
        ),
        (
            json!({"from": "s@example.com", "to": "a@example.org"}),
            "no body",
        ),
        (
            json!({"from": "s@example.com", "to": "a@example.org", "text": "x", "subject": "a\r\nBcc: x@evil.org"}),
            "CR or LF",
        ),
        (
            json!({"from": "s@example.com", "to": "a@example.org", "text": "x", "headers": [{"name": "X-A", "value": "1\nBcc: y"}]}),
            "CR or LF",
        ),
        (
            json!({"from": "s@example.com", "to": "a@example.org", "text": "x", "headers": [{"name": "Bcc", "value": "y@example.org"}]}),
            "set from the message fields",
        ),
        (
            json!({"from": "s@example.com", "to": "a@example.org\r\n", "text": "x"}),
            "CR or LF",
        ),
        (
            json!({"from": "s@example.com", "to": "a@example.org", "text": "x", "too": "typo"}),
            "unknown field \"too\"",
        ),
        (
            json!({"from": "s@example.com", "to": "a@example.org", "text": "x", "account": "nope"}),
            "unknown SMTP account",
        ),
        (
            json!({"from": "s@example.com", "to": "a@example.org", "text": "x", "send_at": "tomorrow"}),
            "RFC 3339",
        ),
        (
            json!({"from": "s@example.com", "to": "a@example.org", "text": "x", "send_at": "2026-02-30T00:00:00Z"}),
            "invalid time",
        ),
        (
            json!({"from": "s@example.com", "to": "a@example.org", "text": "x", "attachments": [{"filename": "a", "content_type": "text/plain", "data": "!!"}]}),
            "not base64",
        ),
        (
            json!({"from": "s@example.com", "to": "a@example.org", "text": "x", "final_codes": [{"code": "abc", "permanent": true}]}),
            "final_codes",
        ),
        (
            json!({"from": "s@example.com", "to": "a@example.org", "text": "x", "message_id": "no-brackets"}),
            "message_id",
        ),
        (json!("just a string"), "JSON object"),
    ];
    for (m, want) in cases {
        match queue::enqueue(&mut c, &m) {
            Err(EnqueueError::Invalid { position, message }) => {
                assert_eq!(position, None);
                assert!(
                    message.contains(want),
                    "{m}: got {message:?}, want {want:?}"
                );
            }
            other => panic!("{m}: expected a refusal, got {other:?}"),
        }
    }
    // Too big for a lowered size limit.
    Policy {
        max_message_bytes: 100,
        ..Policy::default()
    }
    .store(&mut c)
    .unwrap();
    let big = json!({"from": "s@example.com", "to": "a@example.org", "text": "x".repeat(200)});
    assert!(matches!(
        queue::enqueue(&mut c, &big),
        Err(EnqueueError::Invalid { message, .. }) if message.contains("over the limit")
    ));
    assert_eq!(count(&mut c, "SELECT count(*) FROM mailrun.messages"), 0);
}

#[test]
fn a_bad_row_refuses_the_whole_bulk_and_names_its_position() {
    let (_url, mut c) = setup("bulk_bad");
    let mut many: Vec<Value> = (0..7000)
        .map(|i| msg(&[&format!("u{i}@example.org")]))
        .collect();
    many[6123]["to"] = json!(["broken@"]);
    let mut tx = c.transaction().unwrap();
    match queue::enqueue_many(&mut tx, &many) {
        Err(EnqueueError::Invalid { position, message }) => {
            assert_eq!(position, Some(6123));
            assert!(message.contains("invalid address"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    drop(tx);
    assert_eq!(count(&mut c, "SELECT count(*) FROM mailrun.messages"), 0);

    many[6123]["to"] = json!(["fixed@example.org"]);
    let mut tx = c.transaction().unwrap();
    let ids = queue::enqueue_many(&mut tx, &many).unwrap();
    tx.commit().unwrap();
    assert_eq!(ids.len(), 7000);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(count(&mut c, "SELECT count(*) FROM mailrun.messages"), 7000);
}

#[test]
fn the_only_account_is_the_default() {
    let (_url, mut c) = setup("default_account");
    let m = json!({"from": "s@example.com", "to": "a@example.org", "text": "x"});
    enqueue(&mut c, m.clone());
    c.batch_execute(
        "INSERT INTO mailrun.smtp_accounts (name, host, port, security) VALUES ('other', 'h', 25, 'none')",
    )
    .unwrap();
    assert!(matches!(
        queue::enqueue(&mut c, &m),
        Err(EnqueueError::Invalid { message, .. }) if message.contains("\"account\" is required")
    ));
}

#[test]
fn nonces_are_remembered() {
    let (_url, mut c) = setup("nonces");
    let ts = Utc::now().timestamp();
    assert!(queue::remember_nonce(&mut c, "k1", "00112233445566778899aabbccddeeff", ts).unwrap());
    assert!(!queue::remember_nonce(&mut c, "k1", "00112233445566778899aabbccddeeff", ts).unwrap());
    assert!(queue::remember_nonce(&mut c, "k2", "00112233445566778899aabbccddeeff", ts).unwrap());
    c.batch_execute("UPDATE mailrun.nonces SET seen_at = now() - interval '1 hour'")
        .unwrap();
    assert!(queue::remember_nonce(&mut c, "k3", "ff", ts).unwrap());
    assert_eq!(count(&mut c, "SELECT count(*) FROM mailrun.nonces"), 1);
}

#[test]
fn cancel_retry_and_purge() {
    let (_url, mut c) = setup("cancel_retry");
    let id = enqueue(&mut c, msg(&["a@example.org"]));
    assert_eq!(queue::cancel(&mut c, id).unwrap(), "queued");
    assert_eq!(state(&mut c, id), "cancelled");
    let err = queue::cancel(&mut c, id).unwrap_err();
    assert_eq!(mailrun::cli::exit_code_of(&err), 65);
    assert!(queue::claim_batch(&mut c, "r1", 10, 60)
        .unwrap()
        .messages
        .is_empty());
    assert_eq!(queue::retry(&mut c, id).unwrap(), "cancelled");
    let (run, token) = claim_one(&mut c, "r1", id);
    let err = queue::retry(&mut c, id).unwrap_err();
    assert!(format!("{err:#}").contains("leased"), "{err:#}");
    apply(
        &mut c,
        "r1",
        &result(&run, id, &token, Outcome::Sent, Some(250)),
    );
    assert!(
        queue::retry(&mut c, id).is_err(),
        "a fully sent message is not retried"
    );
    assert_eq!(
        mailrun::cli::exit_code_of(&queue::cancel(&mut c, 424242).unwrap_err()),
        65
    );

    assert_eq!(queue::purge(&mut c, 3600).unwrap(), 0);
    c.batch_execute("UPDATE mailrun.messages SET finished_at = now() - interval '2 hours'")
        .unwrap();
    assert_eq!(queue::purge(&mut c, 3600).unwrap(), 1);
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM mailrun.delivery_attempts"),
        0
    );
    assert_eq!(count(&mut c, "SELECT count(*) FROM mailrun.leases"), 0);
}

#[test]
fn key_rotation_keeps_the_previous_key_until_confirmed() {
    let (_url, mut c) = setup("rotation");
    let old = runners::get(&mut c, "r1").unwrap().unwrap().keys[0].clone();
    let new = runners::rotate_key(&mut c, "r1").unwrap();
    assert_ne!(old.key_id, new.key_id);
    let r = runners::find_by_key_id(&mut c, &old.key_id)
        .unwrap()
        .unwrap();
    assert_eq!(r.id, "r1");
    assert_eq!(r.keys, vec![new.clone(), old.clone()]);
    assert_eq!(
        runners::find_by_key_id(&mut c, &new.key_id)
            .unwrap()
            .unwrap()
            .id,
        "r1"
    );
    assert!(!runners::confirm_key(&mut c, "r1", &old.key_id).unwrap());
    assert!(runners::confirm_key(&mut c, "r1", &new.key_id).unwrap());
    assert!(runners::find_by_key_id(&mut c, &old.key_id)
        .unwrap()
        .is_none());
    assert_eq!(runners::get(&mut c, "r1").unwrap().unwrap().keys, vec![new]);

    runners::record_contact(&mut c, "r1", "ready: accepted", Some("0.1.0"), Some(3)).unwrap();
    let r = runners::get(&mut c, "r1").unwrap().unwrap();
    assert!(r.last_seen.is_some());
    assert_eq!(r.software_version.as_deref(), Some("0.1.0"));
    assert_eq!(r.config_version, Some(3));
    assert!(!format!("{r:?}").contains(&hex::encode(r.keys[0].secret)));
}

#[test]
fn a_reaped_lease_past_the_give_up_time_expires() {
    let (_url, mut c) = setup("reap_expire");
    let id = enqueue(&mut c, msg(&["a@example.org"]));
    claim_one(&mut c, "r1", id);
    c.execute(
        "UPDATE mailrun.messages SET lease_expires_at = now() - interval '1 second',
                expires_at = now() - interval '1 second' WHERE id = $1",
        &[&id],
    )
    .unwrap();
    assert_eq!(queue::reap_expired(&mut c).unwrap(), 1);
    assert_eq!(state(&mut c, id), "expired");
}

#[test]
fn a_cancelled_message_stays_cancelled_when_its_lease_reports_late() {
    let (_url, mut c) = setup("cancel_leased");
    let id = enqueue(&mut c, msg(&["a@example.org"]));
    let (run, token) = claim_one(&mut c, "r1", id);
    assert_eq!(queue::cancel(&mut c, id).unwrap(), "leased");
    let r = result(&run, id, &token, Outcome::Sent, Some(250));
    assert_eq!(apply(&mut c, "r1", &r), ApplyStatus::Late);
    assert_eq!(state(&mut c, id), "cancelled");
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) FROM mailrun.delivery_attempts WHERE late"
        ),
        1
    );
}

/// Leases `n` for r1 and returns the message ids in the JobRun's order.
fn claimed_ids(c: &mut Client, n: u32) -> Vec<i64> {
    queue::claim_batch(c, "r1", n, 600)
        .expect("claim")
        .messages
        .iter()
        .map(|m| m.id)
        .collect()
}

#[test]
fn the_set_based_claim_leases_what_the_per_message_claim_leases() {
    // Same queue twice: once with nothing that can hold a message back (the set-based
    // path), once with an unrelated suppressed address (forces the per-message path).
    let mut picks = Vec::new();
    for (name, suppress) in [("claim_fast", false), ("claim_slow", true)] {
        let (_url, mut c) = setup(name);
        if suppress {
            c.batch_execute(
                "INSERT INTO mailrun.suppressions (address, source, reason)
                 VALUES ('nobody@elsewhere.example', 'operator', 'test')",
            )
            .unwrap();
        }
        let mut ids = Vec::new();
        for i in 0..40 {
            ids.push(enqueue(&mut c, msg(&[&format!("rcpt{i}@example.net")])));
        }
        // Due times out of id order; one already past its give-up time.
        c.batch_execute(
            "UPDATE mailrun.messages SET next_attempt_at = now() - (id % 7) * interval '1 minute'",
        )
        .unwrap();
        c.execute(
            "UPDATE mailrun.messages SET expires_at = now() - interval '1 second' WHERE id = $1",
            &[&ids[3]],
        )
        .unwrap();
        let first = claimed_ids(&mut c, 15);
        let second = claimed_ids(&mut c, 100);
        assert_eq!(state(&mut c, ids[3]), "expired", "{name}");
        assert_eq!(first.len() + second.len(), 39, "{name}");
        // The per-message path records a lease row each; the set-based path none: its
        // tokens are derived from the job run's secret (decision 43). Without the
        // suppression only the first claim's round, which met the expired message, went
        // message by message.
        let leases = count(&mut c, "SELECT count(*) FROM mailrun.leases");
        let derived = count(
            &mut c,
            "SELECT count(*) FROM mailrun.messages m JOIN mailrun.job_runs j ON j.id = m.job_run_id
             WHERE m.state = 'leased' AND m.lease_token = mailrun.lease_token(j.lease_secret, m.id)",
        );
        assert_eq!(leases + derived, 39, "{name}: every lease on record once");
        assert_eq!(
            derived,
            if suppress { 0 } else { 24 },
            "{name}: derived tokens"
        );
        let tokens = count(
            &mut c,
            "SELECT count(DISTINCT lease_token) FROM mailrun.messages WHERE state = 'leased'",
        );
        assert_eq!(tokens, 39, "{name}: every message its own token");
        // Map ids to their position so the two databases compare.
        let pos = |v: &[i64]| -> Vec<usize> {
            v.iter()
                .map(|id| ids.iter().position(|x| x == id).unwrap())
                .collect()
        };
        picks.push((pos(&first), pos(&second)));
    }
    assert_eq!(picks[0], picks[1]);
}

#[test]
fn pending_recipients_match_the_version_1_definition() {
    let (_url, mut c) = setup("pending_v1");
    // Version 1's SQL definition, kept here as the reference.
    c.batch_execute(
        "CREATE FUNCTION public.pending_v1(addrs text[], sent text[], failed text[]) RETURNS text[]
         LANGUAGE sql IMMUTABLE AS $$
             SELECT coalesce(array_agg(a ORDER BY n), '{}')
             FROM unnest(addrs) WITH ORDINALITY AS t(a, n)
             WHERE NOT EXISTS (SELECT 1 FROM unnest(sent || failed) AS x
                               WHERE lower(mailrun.addr_spec(x)) = lower(mailrun.addr_spec(a)))
         $$",
    )
    .unwrap();
    let lists: &[&[&str]] = &[
        &[],
        &["a@x.org"],
        &["A@X.org"],
        &["Ann <a@x.org>", "b@y.org", "b@y.org"],
        &["not an address", "c@z.org"],
        &["b@y.org", "Bob <B@Y.ORG>"],
    ];
    for addrs in lists {
        for sent in lists {
            for failed in lists {
                let row = c
                    .query_one(
                        "SELECT mailrun.pending($1, $2, $3), public.pending_v1($1, $2, $3)",
                        &[addrs, sent, failed],
                    )
                    .unwrap();
                let (now, v1): (Vec<String>, Vec<String>) = (row.get(0), row.get(1));
                assert_eq!(now, v1, "pending({addrs:?}, {sent:?}, {failed:?})");
            }
        }
    }
}

/// How often a mailrun function ran in the current transaction (needs
/// `SET LOCAL track_functions = 'pl'` first).
fn calls_in_this_transaction(c: &mut impl postgres::GenericClient, function: &str) -> i64 {
    c.query_one(
        "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_xact_user_functions
         WHERE schemaname = 'mailrun' AND funcname = $1",
        &[&function],
    )
    .unwrap()
    .get(0)
}

/// What a report leaves behind in one database: the status of each result, then every
/// message, attempt and webhook event it touched, as text (ids of job runs and tokens,
/// random per database, only as present or not).
fn report_scenario(db: &str, bulk: bool) -> (Vec<String>, String) {
    let (_url, mut c) = setup(db);
    c.batch_execute(
        "INSERT INTO mailrun.smtp_accounts (name, host, port, security, username, password)
         VALUES ('backup', '127.0.0.1', 2526, 'none', 'user', 'hunter2');
         INSERT INTO mailrun.webhook_endpoints (url, secret, events)
         VALUES ('http://127.0.0.1:9/hook', decode(repeat('ab', 32), 'hex'),
                 ARRAY['sent', 'deferred', 'failed'])",
    )
    .unwrap();
    // Two accounts: every message names its own.
    let on_main = |to: &[&str]| {
        let mut m = msg(to);
        m["account"] = json!("main");
        m
    };
    let one = |c: &mut Client, to: &str| enqueue(c, on_main(&[to]));
    // A failover list: claimed on its own, it gets a lease row (the others are claimed in
    // a fast round, their tokens derived from the job run).
    let mut failover = msg(&["g@example.org"]);
    failover["accounts"] = json!(["main", "backup"]);
    let lease_row = enqueue(&mut c, failover);
    let (run_of_lease_row, token_of_lease_row) = claim_one(&mut c, "r1", lease_row);
    assert_eq!(count(&mut c, "SELECT count(*) FROM mailrun.leases"), 1);
    let sent = one(&mut c, "a@example.org");
    let per_recipient = enqueue(&mut c, on_main(&["b1@example.org", "b2@example.org"]));
    let deferred = one(&mut c, "c@example.org");
    let twice = one(&mut c, "d@example.org");
    let wrong_token = one(&mut c, "e@example.org");
    let no_job_run = one(&mut c, "f@example.org");
    let late = one(&mut c, "h@example.org");
    let duplicate = one(&mut c, "j@example.org");
    let mut three = on_main(&["k1@example.org"]);
    three["cc"] = json!(["k2@example.org"]);
    three["bcc"] = json!(["k3@example.org"]);
    let three = enqueue(&mut c, three);
    let empty_list = one(&mut c, "l@example.org");

    let run = queue::claim_batch(&mut c, "r1", 100, 600).unwrap();
    assert_eq!(run.messages.len(), 10);
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM mailrun.leases"),
        1,
        "a fast round"
    );
    let token = |id: i64| -> String {
        match run.messages.iter().find(|m| m.id == id) {
            Some(m) => m.lease_token.clone(),
            None => token_of_lease_row.clone(),
        }
    };
    // Leased to the other runner, reported by this one.
    let foreign = one(&mut c, "m@example.org");
    let (run_of_foreign, token_of_foreign) = claim_one(&mut c, "r2", foreign);
    c.execute(
        "UPDATE mailrun.messages SET lease_expires_at = now() - interval '1 second' WHERE id = $1",
        &[&late],
    )
    .unwrap();
    assert_eq!(queue::reap_expired(&mut c).unwrap(), 1);
    claim_one(&mut c, "r2", late);
    let mut earlier = result(
        &run.job_run_id,
        duplicate,
        &token(duplicate),
        Outcome::Sent,
        Some(250),
    );
    earlier.attempted_at = "2026-12-05T08:00:00Z".parse().unwrap();
    assert_eq!(apply(&mut c, "r1", &earlier), ApplyStatus::Applied);

    let r = |id: i64, outcome: &str, code: u16| {
        json!({"job_run_id": run.job_run_id, "message_id": id, "lease_token": token(id),
               "outcome": outcome, "smtp_code": code, "enhanced_status": null,
               "text": format!("{code} server says"), "attempted_at": "2026-12-05T09:00:00Z",
               "recipients": []})
    };
    let mut b = r(per_recipient, "sent", 250);
    b["recipients"] = json!([
        {"address": "b1@example.org", "outcome": "sent", "smtp_code": 250},
        {"address": "b2@example.org", "outcome": "failed", "smtp_code": 550,
         "enhanced_status": "5.1.1", "text": "no such user"}]);
    let mut e = r(wrong_token, "sent", 250);
    e["lease_token"] = json!(token(sent));
    let mut f = r(no_job_run, "sent", 250);
    f.as_object_mut().unwrap().remove("job_run_id");
    let mut g = r(lease_row, "sent", 250);
    g["job_run_id"] = json!(run_of_lease_row);
    let mut l = r(empty_list, "sent", 250);
    l.as_object_mut().unwrap().remove("recipients");
    let mut m = r(foreign, "sent", 250);
    m["job_run_id"] = json!(run_of_foreign);
    m["lease_token"] = json!(token_of_foreign);
    let unknown = json!({"message_id": 999_999, "lease_token": uuid::Uuid::new_v4().to_string(),
                         "outcome": "sent", "smtp_code": 250});
    let report = vec![
        g,
        r(sent, "sent", 250),
        b,
        r(deferred, "deferred", 451),
        r(twice, "sent", 250),
        r(twice, "failed", 550),
        e,
        f,
        r(late, "sent", 250),
        r(duplicate, "sent", 250),
        r(three, "sent", 250),
        l,
        m,
        unknown,
    ];
    let mut tx = c.transaction().unwrap();
    let statuses: Vec<String> = if bulk {
        tx.batch_execute("SET LOCAL track_functions = 'pl'")
            .unwrap();
        let statuses = tx
            .query(
                "SELECT status FROM mailrun.apply_results('r1', $1) ORDER BY n",
                &[&Value::Array(report)],
            )
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        // g, a, f, k and l are recorded together; the other nine one by one.
        assert_eq!(calls_in_this_transaction(&mut tx, "apply_result"), 9);
        statuses
    } else {
        report
            .iter()
            .map(|r| {
                tx.query_one("SELECT mailrun.apply_result('r1', $1)", &[r])
                    .unwrap()
                    .get(0)
            })
            .collect()
    };
    tx.commit().unwrap();
    let snapshot: String = c
        .query_one(
            "SELECT concat_ws(E'\\n',
               (SELECT string_agg(concat_ws(' ', id, state, attempts, recipients_sent,
                    recipients_failed, last_code, last_enhanced, last_text,
                    last_attempt_at, lease_token IS NULL, finished_at IS NULL,
                    skip_account_ids, next_attempt_at > now()), E'\\n' ORDER BY id)
                FROM mailrun.messages),
               (SELECT string_agg(concat_ws(' ', message_id, runner_id, outcome, smtp_code,
                    enhanced_status, text, recipients, attempted_at, late,
                    job_run_id IS NULL), E'\\n' ORDER BY message_id, id)
                FROM mailrun.delivery_attempts),
               (SELECT string_agg(concat_ws(' ', message_id, recipient, state, smtp_code,
                    enhanced_status, text, attempted_at), E'\\n'
                    ORDER BY message_id, recipient NULLS FIRST, state, text)
                FROM mailrun.webhook_events),
               (SELECT count(*) FROM mailrun.webhook_deliveries))",
            &[],
        )
        .unwrap()
        .get(0);
    (statuses, snapshot)
}

#[test]
fn a_report_of_many_results_records_exactly_what_one_at_a_time_would() {
    // mailrun.apply_results records the common report (sent under the current lease) for
    // many messages at once and leaves the rest to apply_result: the outcome must be the
    // same as apply_result's, result by result, in the same order.
    let (bulk, bulk_rows) = report_scenario("report_bulk", true);
    let (single, single_rows) = report_scenario("report_single", false);
    assert_eq!(bulk, single);
    assert_eq!(bulk_rows, single_rows);
    assert_eq!(
        single,
        [
            "applied",
            "applied",
            "applied",
            "applied",
            "applied",
            "duplicate",
            "rejected",
            "applied",
            "late",
            "duplicate",
            "applied",
            "applied",
            "rejected",
            "unknown"
        ]
    );
    assert!(single_rows.contains("{k1@example.org,k2@example.org,k3@example.org}"));
}

/// Plain messages of every shape the set-based path of `mailrun.enqueue_many` takes.
fn plain_messages() -> Vec<Value> {
    vec![
        json!({"from": "Sender <sender@example.com>", "to": ["a@example.org"], "subject": "Hi",
               "text": "Body"}),
        json!({"from": "sender@example.com", "to": "b@example.org", "text": "no subject"}),
        json!({"from": "\"Last, First\" <sender@example.com>", "reply_to": "r@example.com",
               "to": [], "cc": ["C <c@example.org>"], "bcc": ["d@example.org", "e@example.org"],
               "subject": "Grüße — ✓", "html": "<p>only html</p>", "account": "main"}),
        json!({"from": "Ünïcode <sender@bücher.example>", "to": ["f@bücher.example"],
               "subject": null, "text": "text", "html": "<b>and html</b>", "account": null,
               "cc": null, "reply_to": null}),
        json!({"from": "sender@example.com", "to": ["g@example.org"], "text": "",
               "html": null}),
    ]
}

/// Every row the messages left (times as their differences, the random part of the
/// Message-ID as its domain) and the webhook events, as text.
fn enqueued_rows(c: &mut impl postgres::GenericClient) -> String {
    c.query_one(
        "SELECT concat_ws(E'\\n',
           (SELECT string_agg((to_jsonb(m) - ARRAY(
                    SELECT column_name::text FROM information_schema.columns
                    WHERE table_schema = 'mailrun' AND table_name = 'messages'
                      AND data_type = 'timestamp with time zone') - 'message_id_header'
                || jsonb_build_object(
                    'message_id_domain', substring(m.message_id_header FROM '@([^@]+)>$'),
                    'life', m.expires_at - m.send_at,
                    'due_at_send', m.next_attempt_at = m.send_at,
                    'sent_now', m.send_at = now()))::text, E'\\n' ORDER BY m.id)
            FROM mailrun.messages m),
           (SELECT string_agg(concat_ws(' ', message_id, recipient, state), E'\\n'
                              ORDER BY message_id, id) FROM mailrun.webhook_events))",
        &[],
    )
    .unwrap()
    .get(0)
}

/// A body long enough to be compressed is compressed with lz4 (schema 13), which the
/// test cluster's server, like Debian's, is built with; it reads back as it was.
#[test]
fn a_long_body_is_stored_with_lz4_and_read_back_intact() {
    let (_u, mut c) = setup("lz4_bodies");
    let body: String = (0..400)
        .map(|i| format!("line {i} of the body\n"))
        .collect();
    let mut m = msg(&["to@example.com"]);
    m["text"] = json!(body);
    m["html"] = json!(format!("<pre>{body}</pre>"));
    let id = enqueue(&mut c, m);
    let methods: Vec<Option<String>> = c
        .query_one(
            "SELECT pg_column_compression(text_body), pg_column_compression(html_body)
               FROM mailrun.messages WHERE id = $1",
            &[&id],
        )
        .map(|r| vec![r.get(0), r.get(1)])
        .unwrap();
    assert_eq!(methods, vec![Some("lz4".to_string()); 2]);
    let (text, html): (String, String) = c
        .query_one(
            "SELECT text_body, html_body FROM mailrun.messages WHERE id = $1",
            &[&id],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(text, body);
    assert_eq!(html, format!("<pre>{body}</pre>"));
}

#[test]
fn plain_messages_enqueued_together_are_the_rows_enqueue_at_writes_one_by_one() {
    let hook = "INSERT INTO mailrun.webhook_endpoints (url, secret, events)
                VALUES ('http://127.0.0.1:9/hook', decode(repeat('ab', 32), 'hex'), ARRAY['queued'])";
    let (_u, mut together) = setup("plain_together");
    together.batch_execute(hook).unwrap();
    let mut tx = together.transaction().unwrap();
    tx.batch_execute("SET LOCAL track_functions = 'pl'")
        .unwrap();
    let ids = queue::enqueue_many(&mut tx, &plain_messages()).unwrap();
    assert_eq!(
        calls_in_this_transaction(&mut tx, "enqueue_at"),
        0,
        "the set-based path took them"
    );
    let rows_together = enqueued_rows(&mut tx);
    tx.commit().unwrap();

    let (_u, mut single) = setup("plain_single");
    single.batch_execute(hook).unwrap();
    let mut tx = single.transaction().unwrap();
    let single_ids: Vec<i64> = plain_messages()
        .iter()
        .enumerate()
        .map(|(i, m)| {
            tx.query_one("SELECT mailrun.enqueue_at($1, $2)", &[&(i as i32 + 1), m])
                .unwrap()
                .get(0)
        })
        .collect();
    let rows_single = enqueued_rows(&mut tx);
    tx.commit().unwrap();
    assert_eq!(ids, single_ids);
    assert_eq!(rows_together, rows_single);
    assert!(rows_together.contains("bücher.example"), "{rows_together}");
}

#[test]
fn a_bad_plain_message_among_many_is_named_as_one_by_one_and_nothing_is_queued() {
    let (_u, mut c) = setup("plain_refused");
    // Each spoils the batch in a way the set-based path only notices as a missing row,
    // or by a check that raises; the first bad one is named either way.
    let spoil: Vec<(usize, Value, &str)> = vec![
        (
            2,
            json!({"to": ["x@example.org"], "text": "no from"}),
            "\"from\" is required",
        ),
        (
            1,
            json!({"from": "s@example.com", "to": ["not an address"], "text": "t"}),
            "\"to\": invalid address \"not an address\"",
        ),
        (
            3,
            json!({"from": "s@example.com", "to": ["x@example.org"], "text": "t",
                   "account": "nonesuch"}),
            "unknown SMTP account \"nonesuch\"",
        ),
        (
            0,
            json!({"from": "s@example.com", "to": ["x@example.org"]}),
            "no body: give \"text\" or \"html\"",
        ),
        (
            4,
            json!({"from": "s@example.com", "to": [], "text": "t"}),
            "no recipients: give \"to\", \"cc\" or \"bcc\"",
        ),
        (
            2,
            json!({"from": "s@example.com", "to": ["x@example.org"], "subject": "a\r\nb",
                   "text": "t"}),
            "\"subject\" contains CR or LF",
        ),
        (
            1,
            json!({"from": "s@example.com", "to": ["x@example.org"],
                   "text": "x".repeat(30 * 1024 * 1024)}),
            "over the limit",
        ),
    ];
    for (at, bad, why) in spoil {
        let mut batch = plain_messages();
        batch.insert(at, bad);
        // A second bad one later: the first is named.
        batch.push(json!({"from": "s@example.com", "text": "no recipients"}));
        let mut tx = c.transaction().unwrap();
        let err = queue::enqueue_many(&mut tx, &batch).unwrap_err();
        drop(tx);
        match err {
            EnqueueError::Invalid { position, message } => {
                assert_eq!(position, Some(at), "{message}");
                assert!(message.contains(why), "{why:?} not in {message:?}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(count(&mut c, "SELECT count(*) FROM mailrun.messages"), 0);
    }
}
