//! Delivery events posted to webhook endpoints (docs/webhooks.md): the real
//! dispatch-tick and dispatch-admin against a real HTTP receiver (a TcpListener here)
//! that checks every signature, refuses, fails and hangs for a while, and in the end
//! must hold every event the database recorded, in order per message.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use chrono::Utc;
use hmac::{Hmac, Mac};
use postgres::{Client, NoTls};
use serde_json::{json, Value};
use sha2::Sha256;

use mailrun::dispatcher::{queue, runners};
use mailrun::protocol::{MessageResult, Outcome, RecipientResult};

use crate::common::pipeline::{self, DISPATCH_TICK};
use crate::common::{self, admin, assert_status, json_out};

const ACCEPT: u8 = 0;
const FAIL: u8 = 1;
/// Reads the request, records it, and never answers.
const HANG: u8 = 2;

/// One post as received: the body, and whether it was answered 2xx.
struct Post {
    body: Value,
    accepted: bool,
}

struct Receiver {
    mode: Arc<AtomicU8>,
    posts: Arc<Mutex<Vec<Post>>>,
    bad_signatures: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    fn start(listener: TcpListener, secret: String) -> Receiver {
        let mode = Arc::new(AtomicU8::new(ACCEPT));
        let posts = Arc::new(Mutex::new(Vec::new()));
        let bad_signatures = Arc::new(Mutex::new(Vec::new()));
        let (m, p, b) = (mode.clone(), posts.clone(), bad_signatures.clone());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (m, p, b, secret) = (m.clone(), p.clone(), b.clone(), secret.clone());
                thread::spawn(move || serve(stream, &secret, &m, &p, &b));
            }
        });
        Receiver {
            mode,
            posts,
            bad_signatures,
        }
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }
}

fn serve(
    stream: TcpStream,
    secret: &str,
    mode: &AtomicU8,
    posts: &Mutex<Vec<Post>>,
    bad: &Mutex<Vec<String>>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut headers = BTreeMap::new();
    let mut line = String::new();
    // Every webhook post starts with a request line. A connection that closes without one
    // is not a post: another test's client that picked this port as a free one (an SMTP
    // client waits for a greeting and sends nothing) must not count as a bad signature.
    if reader.read_line(&mut line).unwrap_or(0) == 0 || !line.starts_with("POST ") {
        return;
    }
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let timestamp = headers
        .get("x-mailrun-webhook-timestamp")
        .cloned()
        .unwrap_or_default();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(&body);
    let expected = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
    let fresh = timestamp
        .parse::<i64>()
        .is_ok_and(|t| (Utc::now().timestamp() - t).abs() <= 300);
    if headers.get("x-mailrun-webhook-signature") != Some(&expected) || !fresh {
        bad.lock().unwrap().push(format!("{headers:?}"));
    }
    let body: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("not a JSON body ({e}): {headers:?}"));
    let mode = mode.load(Ordering::SeqCst);
    let mut stream = stream;
    match mode {
        ACCEPT => {
            posts.lock().unwrap().push(Post {
                body,
                accepted: true,
            });
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        }
        FAIL => {
            let _ = stream.write_all(
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\noops",
            );
        }
        _ => {
            // Got it, but the answer never comes: the sender must give up and send again.
            posts.lock().unwrap().push(Post {
                body,
                accepted: false,
            });
            thread::sleep(Duration::from_secs(120));
        }
    }
}

/// Every body against the WebhookPost schema of protocol/openapi.yaml (jsonschema, a
/// validator mailrun did not write).
#[track_caller]
fn assert_conform<'a>(bodies: impl Iterator<Item = &'a Value>) {
    let dir = common::temp_dir();
    let file = dir.path().join("bodies.jsonl");
    let text: String = bodies.map(|b| format!("{b}\n")).collect();
    common::write(&file, text);
    let out = common::run(
        std::process::Command::new(pipeline::manifest_path(".venv-test/bin/python3"))
            .arg(pipeline::manifest_path("tests/it/webhooks/validate.py"))
            .arg(pipeline::manifest_path("protocol/openapi.yaml"))
            .arg(&file),
    );
    assert!(
        out.status.success(),
        "posts do not conform to protocol/openapi.yaml:\n{}{}",
        common::stdout(&out),
        common::stderr(&out)
    );
}

fn connect(url: &str) -> Client {
    Client::connect(url, NoTls).expect("connect")
}

fn add_webhook(url: &str, port: u16) -> (i64, String) {
    let out = admin(
        url,
        &[
            "webhook",
            "add",
            &format!("http://127.0.0.1:{port}/hook"),
            "--events",
            "all",
            "--json",
        ],
    );
    assert_status(&out, 0);
    let v = json_out(&out);
    (
        v["id"].as_i64().unwrap(),
        v["secret"].as_str().unwrap().to_string(),
    )
}

/// Ticks with a short budget; returns the tick's JSON summary and its stderr.
fn tick_json(url: &str, extra: &[&str]) -> (Value, String) {
    let mut args = vec!["--database-url", url, "--json"];
    args.extend_from_slice(extra);
    for (flag, default) in [
        ("--webhook-budget", "3"),
        ("--webhook-batch", "50"),
        ("--timeout", "10"),
    ] {
        if !extra.contains(&flag) {
            args.extend([flag, default]);
        }
    }
    let out = common::run(common::command(DISPATCH_TICK).args(&args));
    let stdout = common::stdout(&out);
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("tick printed no summary ({e}): {}", common::stderr(&out)));
    (summary, common::stderr(&out))
}

/// Lets a backing-off endpoint be tried at the next tick (the test's clock is faster).
fn due_now(c: &mut Client) {
    c.batch_execute("UPDATE mailrun.webhook_endpoints SET next_attempt_at = now()")
        .unwrap();
}

fn pending(c: &mut Client) -> i64 {
    c.query_one("SELECT count(*) FROM mailrun.webhook_deliveries", &[])
        .unwrap()
        .get(0)
}

fn result(
    run: &str,
    id: i64,
    token: &str,
    outcome: Outcome,
    code: u16,
    recipients: Vec<RecipientResult>,
) -> MessageResult {
    MessageResult {
        job_run_id: run.to_string(),
        message_id: id,
        lease_token: token.to_string(),
        outcome,
        smtp_code: Some(code),
        enhanced_status: None,
        text: Some(format!("{code} answer for {id}")),
        attempted_at: Utc::now(),
        recipients,
    }
}

/// Claims every due message and reports an outcome for each, as a runner would.
fn deliver_round(c: &mut Client, decide: impl Fn(i64) -> MessageResult) -> usize {
    let mut n = 0;
    loop {
        let run = queue::claim_batch(c, "r1", 500, 600).expect("claim");
        if run.messages.is_empty() {
            return n;
        }
        let results: Vec<MessageResult> = run
            .messages
            .iter()
            .map(|m| {
                let mut r = decide(m.id);
                r.job_run_id = run.job_run_id.clone();
                r.lease_token = m.lease_token.clone();
                r
            })
            .collect();
        n += results.len();
        queue::apply_results_detailed(c, "r1", &results).expect("apply");
    }
}

fn rcpt(address: String, outcome: Outcome, code: u16) -> RecipientResult {
    RecipientResult {
        address,
        outcome,
        smtp_code: Some(code),
        enhanced_status: Some(if code >= 500 { "5.1.1" } else { "2.0.0" }.into()),
        text: Some(format!("{code} for this recipient")),
    }
}

#[test]
fn every_state_change_of_1000_messages_arrives_in_order_despite_failures() {
    let url = common::initialised_db("webhooks_all");
    let mut c = connect(&url);
    c.batch_execute(
        "INSERT INTO mailrun.smtp_accounts (name, host, port, security)
         VALUES ('main', '127.0.0.1', 2525, 'none')",
    )
    .unwrap();
    runners::add(&mut c, "r1", "http://127.0.0.1:9/runner", 500).unwrap();

    // Registered before the receiver listens: the first posts are refused.
    let port = common::free_port();
    let (hook, secret) = add_webhook(&url, port);

    c.batch_execute(
        "SELECT mailrun.enqueue(jsonb_build_object(
             'from', 'sender@example.org',
             'to', jsonb_build_array('a' || g || '@example.org', 'b' || g || '@example.org'),
             'subject', 'm' || g, 'text', 'hello', 'account', 'main'))
         FROM generate_series(1, 1000) g",
    )
    .unwrap();

    let (summary, stderr) = tick_json(&url, &[]);
    let w = &summary["webhooks"][0];
    assert_eq!(w["id"], hook);
    let wait: f64 = c
        .query_one(
            "SELECT extract(epoch FROM next_attempt_at - last_error_at)::float8
             FROM mailrun.webhook_endpoints",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(wait, 2.0);
    assert_eq!(w["delivered"], 0, "{summary}");
    assert!(
        w["error"].as_str().unwrap().contains("cannot connect"),
        "{summary}"
    );
    assert!(!stderr.contains(&secret) && !summary.to_string().contains(&secret));

    // A failing endpoint shows in status, without its secret.
    let status = admin(&url, &["status", "--json"]);
    assert!(!common::stdout(&status).contains(&secret));
    let failing = &json_out(&status)["failing_webhooks"];
    assert_eq!(failing[0]["id"], hook, "{failing}");
    assert_eq!(failing[0]["failures"], 1);
    let status = admin(&url, &["status"]);
    assert!(common::stdout(&status).contains(&format!("webhook {hook} (")));
    let page = mailrun::dispatcher::status_page::render(&mut c, Utc::now()).unwrap();
    assert!(
        page.contains("<span id=\"webhooks-failing\">1</span>"),
        "{page}"
    );
    assert!(page.contains(&format!("127.0.0.1:{port}/hook")) && !page.contains(&secret));
    let list = common::stdout(&admin(&url, &["webhook", "list", "--json"]));
    assert!(
        !list.contains(&secret) && list.contains("cannot connect"),
        "{list}"
    );

    // The receiver comes up, failing with 500 at first.
    let receiver = Receiver::start(
        TcpListener::bind(("127.0.0.1", port)).unwrap(),
        secret.clone(),
    );
    receiver.set(FAIL);
    due_now(&mut c);
    let (summary, _) = tick_json(&url, &[]);
    assert!(summary["webhooks"][0]["error"]
        .as_str()
        .unwrap()
        .contains("HTTP status 500"));
    // Backing off, doubling: 2 s after the first failure, 4 s after the second.
    let wait: f64 = c
        .query_one(
            "SELECT extract(epoch FROM next_attempt_at - last_error_at)::float8
             FROM mailrun.webhook_endpoints",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(wait, 4.0);

    // First attempts: a quarter each sent, failed, deferred, and split per recipient.
    let first = deliver_round(&mut c, |id| match id % 4 {
        0 => result("", id, "", Outcome::Sent, 250, vec![]),
        1 => result("", id, "", Outcome::Failed, 550, vec![]),
        2 => result("", id, "", Outcome::Deferred, 451, vec![]),
        _ => result(
            "",
            id,
            "",
            Outcome::Failed,
            550,
            vec![
                rcpt(format!("a{id}@example.org"), Outcome::Sent, 250),
                rcpt(format!("b{id}@example.org"), Outcome::Failed, 550),
            ],
        ),
    });
    assert_eq!(first, 1000);

    // Hanging: the batch arrives, the answer never does; it must come again.
    receiver.set(HANG);
    due_now(&mut c);
    let (summary, _) = tick_json(&url, &["--timeout", "2"]);
    assert!(
        summary["webhooks"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("timed out")),
        "{summary}"
    );
    // Accepting now; a short budget covers part of the backlog at most.
    receiver.set(ACCEPT);
    due_now(&mut c);
    let (summary, _) = tick_json(&url, &["--webhook-budget", "1", "--webhook-batch", "10"]);
    assert!(summary["webhooks"][0]["delivered"].as_i64().unwrap() > 0);
    // Deferred ones: some cancelled, the rest sent at the second attempt.
    c.batch_execute("UPDATE mailrun.messages SET next_attempt_at = now() WHERE state = 'deferred'")
        .unwrap();
    let cancel: Vec<String> = (1..=1000)
        .filter(|id| id % 4 == 2 && id % 40 == 2)
        .map(|id| id.to_string())
        .collect();
    let mut args = vec!["cancel"];
    args.extend(cancel.iter().map(String::as_str));
    assert_status(&admin(&url, &args), 0);
    let second = deliver_round(&mut c, |id| result("", id, "", Outcome::Sent, 250, vec![]));
    assert_eq!(second, 250 - cancel.len());

    // Refused again for a while, then accepted until the backlog is gone.
    receiver.set(FAIL);
    due_now(&mut c);
    let (summary, _) = tick_json(&url, &[]);
    assert!(summary["webhooks"][0]["error"].is_string(), "{summary}");
    receiver.set(ACCEPT);
    for _ in 0..100 {
        if pending(&mut c) == 0 {
            break;
        }
        due_now(&mut c);
        let (summary, stderr) = tick_json(&url, &[]);
        assert!(!stderr.contains(&secret));
        assert!(summary["webhooks"][0]["error"].is_null(), "{summary}");
    }
    assert_eq!(pending(&mut c), 0, "the backlog never drained");
    assert!(receiver.bad_signatures.lock().unwrap().is_empty());

    // What the database recorded, field by field.
    let recorded: BTreeMap<i64, Value> = c
        .query(
            "SELECT id, to_jsonb(e) FROM mailrun.webhook_events e ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let posts = receiver.posts.lock().unwrap();
    assert_conform(posts.iter().map(|p| &p.body));
    let mut received: BTreeMap<i64, Value> = BTreeMap::new();
    let mut answered: BTreeSet<i64> = BTreeSet::new();
    // Per message: event ids in the order they first arrived.
    let mut arrival: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for post in posts.iter() {
        for e in post.body["events"].as_array().unwrap() {
            let id = e["id"].as_i64().unwrap();
            if let Some(before) = received.get(&id) {
                assert_eq!(before, e, "a duplicate differs");
                assert!(
                    !answered.contains(&id),
                    "event {id} again after it was accepted"
                );
            } else {
                arrival
                    .entry(e["message_id"].as_i64().unwrap())
                    .or_default()
                    .push(id);
                received.insert(id, e.clone());
            }
            if post.accepted {
                answered.insert(id);
            }
        }
    }
    assert_eq!(
        received.keys().collect::<Vec<_>>(),
        recorded.keys().collect::<Vec<_>>()
    );
    for (id, e) in &received {
        let db = &recorded[id];
        for field in [
            "message_id",
            "recipient",
            "state",
            "smtp_code",
            "enhanced_status",
            "text",
        ] {
            assert_eq!(e[field], db[field], "event {id} field {field}");
        }
        let same_time = |a: &Value, b: &Value| match (a.as_str(), b.as_str()) {
            (Some(a), Some(b)) => {
                chrono::DateTime::parse_from_rfc3339(a).unwrap()
                    == chrono::DateTime::parse_from_rfc3339(b).unwrap()
            }
            _ => a == b,
        };
        assert!(
            same_time(&e["attempted_at"], &db["attempted_at"]),
            "event {id}"
        );
    }

    // And what each message went through, in order, ending in its state.
    let states: BTreeMap<i64, String> = c
        .query("SELECT id, state FROM mailrun.messages", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(states.len(), 1000);
    for (message, state) in &states {
        let ids = &arrival[message];
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "message {message} out of order"
        );
        let seen: Vec<String> = ids
            .iter()
            .map(|id| {
                let e = &received[id];
                match e["recipient"].as_str() {
                    Some(r) => format!("{}:{}", e["state"].as_str().unwrap(), &r[..1]),
                    None => e["state"].as_str().unwrap().to_string(),
                }
            })
            .collect();
        let expected: &[&str] = match message % 4 {
            0 => &["queued", "sent:a", "sent:b", "sent"],
            1 => &["queued", "failed:a", "failed:b", "failed"],
            2 if message % 40 == 2 => &["queued", "deferred", "cancelled"],
            2 => &["queued", "deferred", "sent:a", "sent:b", "sent"],
            _ => &["queued", "sent:a", "failed:b", "sent"],
        };
        assert_eq!(seen, expected, "message {message}");
        assert_eq!(seen.last().unwrap(), state);
    }
    // Per-recipient answers carry the recipient's own code.
    let split = received
        .values()
        .find(|e| e["message_id"] == 3 && e["recipient"] == "b3@example.org")
        .unwrap();
    assert_eq!(split["smtp_code"], 550);
    assert_eq!(split["enhanced_status"], "5.1.1");
}

#[test]
fn a_hanging_endpoint_holds_the_tick_no_longer_than_its_budget() {
    let url = common::initialised_db("webhooks_hang");
    let mut c = connect(&url);
    c.batch_execute(
        "INSERT INTO mailrun.smtp_accounts (name, host, port, security)
         VALUES ('main', '127.0.0.1', 2525, 'none')",
    )
    .unwrap();
    let hanging_listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let healthy_listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let (hanging, hanging_secret) =
        add_webhook(&url, hanging_listener.local_addr().unwrap().port());
    let (healthy, healthy_secret) =
        add_webhook(&url, healthy_listener.local_addr().unwrap().port());
    let stuck = Receiver::start(hanging_listener, hanging_secret.clone());
    stuck.set(HANG);
    let fine = Receiver::start(healthy_listener, healthy_secret.clone());
    c.batch_execute(
        "SELECT mailrun.enqueue(jsonb_build_object('from', 'sender@example.org',
             'to', jsonb_build_array('r' || g || '@example.org'), 'subject', 's',
             'text', 't', 'account', 'main'))
         FROM generate_series(1, 120) g",
    )
    .unwrap();

    // Posts could wait 60 s; the budget cuts them at 4.
    let (summary, stderr) = tick_json(
        &url,
        &[
            "--webhook-budget",
            "4",
            "--timeout",
            "60",
            "--webhook-batch",
            "50",
        ],
    );
    let report: BTreeMap<i64, &Value> = summary["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["id"].as_i64().unwrap(), w))
        .collect();
    assert_eq!(report[&hanging]["delivered"], 0, "{summary}");
    assert_eq!(report[&hanging]["posts"], 1, "{summary}");
    assert_eq!(report[&hanging]["pending"], 120, "{summary}");
    assert!(report[&hanging]["error"]
        .as_str()
        .unwrap()
        .contains("timed out"));
    // The other endpoint got all its events meanwhile.
    assert_eq!(report[&healthy]["delivered"], 120, "{summary}");
    assert_eq!(report[&healthy]["pending"], 0, "{summary}");
    assert_eq!(
        fine.posts
            .lock()
            .unwrap()
            .iter()
            .map(|p| p.body["events"].as_array().unwrap().len())
            .sum::<usize>(),
        120
    );
    for secret in [&hanging_secret, &healthy_secret] {
        assert!(
            !stderr.contains(secret.as_str()) && !summary.to_string().contains(secret.as_str())
        );
    }

    // The healthy endpoint is free for the next tick; the hanging one backs off.
    let free: Vec<bool> = c
        .query(
            "SELECT next_attempt_at <= now() FROM mailrun.webhook_endpoints ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(free, [hanging > healthy, hanging < healthy]);

    // test posts to the endpoint now; remove drops it and its backlog.
    let out = admin(&url, &["webhook", "test", &healthy.to_string()]);
    assert_status(&out, 0);
    assert!(fine.posts.lock().unwrap().last().unwrap().body["test"] == true);
    assert_conform(fine.posts.lock().unwrap().iter().map(|p| &p.body));
    assert_status(
        &admin(&url, &["webhook", "remove", &hanging.to_string()]),
        0,
    );
    assert_eq!(pending(&mut c), 0);
    let out = admin(&url, &["webhook", "remove", &hanging.to_string()]);
    assert!(common::stderr(&out).contains("no webhook"));

    // Delivered events go once older than the retention of sent mail (30 days).
    c.batch_execute(
        "UPDATE mailrun.webhook_events SET created_at = now() - interval '31 days'
         WHERE id <= 100",
    )
    .unwrap();
    let (summary, _) = tick_json(&url, &[]);
    assert_eq!(summary["webhook_events_purged"], 100, "{summary}");
    let left: i64 = c
        .query_one("SELECT count(*) FROM mailrun.webhook_events", &[])
        .unwrap()
        .get(0);
    assert_eq!(left, 20);
    let out = admin(
        &url,
        &[
            "webhook",
            "add",
            "http://example.org/hook",
            "--events",
            "sent",
        ],
    );
    assert!(
        common::stderr(&out).contains("refusing plain http://"),
        "{}",
        common::stderr(&out)
    );
    let out = admin(
        &url,
        &[
            "webhook",
            "add",
            "https://example.org/hook",
            "--events",
            "leased",
        ],
    );
    assert!(common::stderr(&out).contains("unknown event"));
}

#[test]
fn overlapping_ticks_do_not_post_to_the_same_endpoint_at_once() {
    let url = common::initialised_db("webhooks_overlap");
    let mut c = connect(&url);
    c.batch_execute(
        "INSERT INTO mailrun.smtp_accounts (name, host, port, security)
         VALUES ('main', '127.0.0.1', 2525, 'none')",
    )
    .unwrap();
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let (_, secret) = add_webhook(&url, listener.local_addr().unwrap().port());
    let receiver = Receiver::start(listener, secret);
    receiver.set(HANG);
    c.batch_execute(
        "SELECT mailrun.enqueue(jsonb_build_object('from', 'sender@example.org',
             'to', jsonb_build_array('r@example.org'), 'subject', 's', 'text', 't',
             'account', 'main'))",
    )
    .unwrap();
    let first = {
        let url = url.clone();
        thread::spawn(move || tick_json(&url, &["--webhook-budget", "10"]))
    };
    crate::common::pipeline::wait_until(Duration::from_secs(30), "the first post", || {
        !receiver.posts.lock().unwrap().is_empty()
    });
    // The first tick is still waiting for its answer: the endpoint is its own.
    let (second, _) = tick_json(&url, &[]);
    assert_eq!(second["webhooks"], json!([]), "{second}");
    let (first, _) = first.join().unwrap();
    assert_eq!(first["webhooks"][0]["posts"], 1, "{first}");
    assert_eq!(receiver.posts.lock().unwrap().len(), 1);
}

/// The same through the whole pipeline: dispatch-cgi, a runner (runner-admin cycle) and
/// a real SMTP server that refuses some recipients (550) and defers the first messages
/// (451 at DATA). The receiver fails, then accepts; in the end it holds every event
/// mailrun.webhook_events records, each message's history matches its attempts and
/// final state, and each recipient's outcome matches what the message row says.
#[test]
fn a_real_runner_and_smtp_server_produce_every_event() {
    use crate::common::pipeline::{Db, Listening, RunnerNode};
    use crate::common::smtp::{SmtpServer, SmtpServerOptions};

    let refused: Vec<String> = (1..=1000)
        .filter(|g| g % 5 == 0)
        .map(|g| format!("b{g}@example.org"))
        .collect();
    let smtp = SmtpServer::start(SmtpServerOptions {
        reject: refused,
        data_reply: Some("451 4.3.0 try later".into()),
        data_reply_count: Some(100),
        ..Default::default()
    });
    let db = Db::new(common::cluster().fresh_db("webhooks_pipeline"), smtp.port);
    db.fast_retries();
    let listening = Listening::start(&db.url, common::free_port(), 120);
    let runner = RunnerNode::init("r1", &listening.url());
    db.add_runner(&runner, "http://127.0.0.1:9/r1", 500);
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let (_, secret) = add_webhook(&db.url, listener.local_addr().unwrap().port());
    let receiver = Receiver::start(listener, secret);
    receiver.set(FAIL);
    let mut c = db.client();
    c.batch_execute(
        "SELECT mailrun.enqueue(jsonb_build_object(
             'from', 'sender@example.org',
             'to', jsonb_build_array('a' || g || '@example.org', 'b' || g || '@example.org'),
             'subject', 'm' || g, 'text', 'hello', 'account', 'local'))
         FROM generate_series(1, 1000) g",
    )
    .unwrap();

    // Cycles until nothing is left to send; the receiver refuses meanwhile.
    crate::common::pipeline::wait_until(Duration::from_secs(300), "every message finished", || {
        common::assert_status(&runner.cycle(120), 0);
        due_now(&mut c);
        let (summary, _) = tick_json(&db.url, &["--webhook-budget", "1"]);
        assert!(summary["webhooks"][0]["error"].is_string(), "{summary}");
        db.count("SELECT count(*) FROM mailrun.messages WHERE state NOT IN ('sent', 'failed')") == 0
    });
    assert!(
        db.count("SELECT count(*) FROM mailrun.delivery_attempts WHERE outcome = 'deferred'") > 0
    );

    receiver.set(ACCEPT);
    for _ in 0..100 {
        if pending(&mut c) == 0 {
            break;
        }
        due_now(&mut c);
        tick_json(&db.url, &[]);
    }
    assert_eq!(pending(&mut c), 0, "the backlog never drained");
    assert!(receiver.bad_signatures.lock().unwrap().is_empty());

    let recorded: BTreeMap<i64, Value> = c
        .query("SELECT id, to_jsonb(e) FROM mailrun.webhook_events e", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let posts = receiver.posts.lock().unwrap();
    assert_conform(posts.iter().map(|p| &p.body));
    let mut received: BTreeMap<i64, Value> = BTreeMap::new();
    let mut arrival: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for e in posts
        .iter()
        .flat_map(|p| p.body["events"].as_array().unwrap())
    {
        let id = e["id"].as_i64().unwrap();
        if received.insert(id, e.clone()).is_none() {
            arrival
                .entry(e["message_id"].as_i64().unwrap())
                .or_default()
                .push(id);
        }
    }
    assert_eq!(received.len(), recorded.len());
    for (id, e) in &received {
        for field in [
            "message_id",
            "recipient",
            "state",
            "smtp_code",
            "enhanced_status",
            "text",
        ] {
            assert_eq!(e[field], recorded[id][field], "event {id} field {field}");
        }
    }
    let messages = c
        .query(
            "SELECT m.id, m.state, m.recipients_sent, m.recipients_failed,
                    array(SELECT a.outcome FROM mailrun.delivery_attempts a
                          WHERE a.message_id = m.id ORDER BY a.id)
             FROM mailrun.messages m",
            &[],
        )
        .unwrap();
    assert_eq!(messages.len(), 1000);
    for m in &messages {
        let id: i64 = m.get(0);
        let state: String = m.get(1);
        let sent: Vec<String> = m.get(2);
        let failed: Vec<String> = m.get(3);
        let attempts: Vec<String> = m.get(4);
        let ids = &arrival[&id];
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "message {id} out of order"
        );
        let events: Vec<&Value> = ids.iter().map(|i| &received[i]).collect();
        let history: Vec<&str> = events
            .iter()
            .filter(|e| e["recipient"].is_null())
            .map(|e| e["state"].as_str().unwrap())
            .collect();
        // Queued, one state per attempt (deferred until the last), the final state.
        let mut expected = vec!["queued"];
        expected.extend(attempts.iter().skip(1).map(|_| "deferred"));
        expected.push(&state);
        assert_eq!(history, expected, "message {id}: attempts {attempts:?}");
        let mut outcomes: Vec<(String, String)> = events
            .iter()
            .filter_map(|e| {
                let r = e["recipient"].as_str()?;
                Some((e["state"].as_str().unwrap().to_string(), r.to_string()))
            })
            .collect();
        outcomes.sort();
        let mut expected: Vec<(String, String)> = sent
            .iter()
            .map(|r| ("sent".to_string(), r.clone()))
            .chain(failed.iter().map(|r| ("failed".to_string(), r.clone())))
            .collect();
        expected.sort();
        assert_eq!(outcomes, expected, "message {id}");
        if id % 5 == 0 {
            assert!(failed.iter().any(|r| r.starts_with('b')), "message {id}");
        }
    }
    let refusal = received
        .values()
        .find(|e| e["state"] == "failed" && !e["recipient"].is_null())
        .unwrap();
    assert_eq!(refusal["smtp_code"], 550, "{refusal}");
}
