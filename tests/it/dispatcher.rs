//! dispatch-cgi, dispatch-tick and push-config, run as real binaries against the private
//! PostgreSQL cluster: dispatch-cgi behind a real lighttpd (CGI) and under `--listen`;
//! the tick and config pushes against signed runner endpoints served by the library's
//! own HTTP server and codec.
use crate::common;
use crate::common::web;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailrun::dispatcher::endpoint::JOB_RUN_REQUEST_ACTION;
use mailrun::protocol::codec;
use mailrun::protocol::sign::{self, SigningKey};
use mailrun::protocol::{
    Body, Fault, FaultReason, JobRun, JobRunRequest, JobRunnerConfigUpdateResponse,
    JobRunnerReadyResponse, MessageResult, Outcome, ReadyStatus,
};
use mailrun::web::client::{Client, ClientOptions};
use mailrun::web::{Request, Response};

const CGI: &str = env!("CARGO_BIN_EXE_dispatch-cgi");
const TICK: &str = env!("CARGO_BIN_EXE_dispatch-tick");
const PUSH: &str = env!("CARGO_BIN_EXE_push-config");

// ---------------------------------------------------------------------------------------
// Database fixture
// ---------------------------------------------------------------------------------------

struct Db {
    url: String,
}

impl Db {
    fn new(test: &str) -> Db {
        let url = common::cluster().fresh_db(test);
        let db = Db { url };
        mailrun::dispatcher::schema::migrate(&mut db.client()).expect("migrate");
        db.client()
            .batch_execute(
                "INSERT INTO mailrun.smtp_accounts (name, host, port, security)
                 VALUES ('test', '127.0.0.1', 2525, 'none')",
            )
            .expect("insert account");
        db
    }

    fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).expect("connect")
    }

    /// Adds a runner with a fresh key; returns the key.
    fn add_runner(&self, id: &str, endpoint: &str, batch_size: i32) -> SigningKey {
        let key = SigningKey::generate(format!("key-{id}"));
        self.client()
            .execute(
                "INSERT INTO mailrun.runners (id, endpoint, batch_size, key_id, secret)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &id,
                    &endpoint,
                    &batch_size,
                    &key.key_id,
                    &key.secret.to_vec(),
                ],
            )
            .expect("insert runner");
        key
    }

    fn set_enabled(&self, id: &str, enabled: bool) {
        self.client()
            .execute(
                "UPDATE mailrun.runners SET enabled = $2 WHERE id = $1",
                &[&id, &enabled],
            )
            .expect("update runner");
    }

    fn enqueue(&self, n: usize) -> Vec<i64> {
        let mut client = self.client();
        (0..n)
            .map(|i| {
                let message = serde_json::json!({
                    "from": "sender@example.org",
                    "to": [format!("rcpt{i}@example.org")],
                    "subject": format!("message {i}"),
                    "text": "hello",
                    "account": "test",
                });
                client
                    .query_one("SELECT mailrun.enqueue($1::jsonb)", &[&message])
                    .expect("enqueue")
                    .get(0)
            })
            .collect()
    }

    /// Everything a request could change, as text, to prove a refusal changed nothing.
    fn snapshot(&self) -> String {
        let mut client = self.client();
        let mut out = String::new();
        for sql in [
            "SELECT id::text || ' ' || state || ' ' || coalesce(lease_token::text, '-') || ' '
                    || attempts::text FROM mailrun.messages ORDER BY id",
            "SELECT count(*)::text FROM mailrun.nonces",
            "SELECT count(*)::text FROM mailrun.job_runs",
            "SELECT count(*)::text FROM mailrun.delivery_attempts",
            "SELECT id || ' ' || coalesce(last_seen::text, '-') || ' ' || coalesce(last_status, '-')
                    || ' ' || coalesce(config_version_applied::text, '-')
               FROM mailrun.runners ORDER BY id",
            "SELECT count(*)::text FROM mailrun.config_versions",
        ] {
            for row in client.query(sql, &[]).expect("snapshot query") {
                out.push_str(&row.get::<_, String>(0));
                out.push('\n');
            }
            out.push_str("--\n");
        }
        out
    }

    fn states(&self) -> Vec<(i64, String)> {
        self.client()
            .query("SELECT id, state FROM mailrun.messages ORDER BY id", &[])
            .expect("states")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// dispatch-cgi served by lighttpd or --listen
// ---------------------------------------------------------------------------------------

/// `dispatch-cgi --listen` as a child; killed on drop.
struct Listen {
    child: Child,
    port: u16,
}

impl Listen {
    fn start(database_url: &str, extra: &[&str]) -> Listen {
        let port = common::free_port();
        let child = common::command(CGI)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--database-url", database_url])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start dispatch-cgi --listen");
        let mut listen = Listen { child, port };
        common::wait_for_listener(
            &format!("127.0.0.1:{port}"),
            "dispatch-cgi --listen",
            Some(&mut listen.child),
            String::new,
        );
        listen
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/dispatch", self.port)
    }
}

impl Drop for Listen {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lighttpd(db: &Db, extra_env: &[(&str, &str)]) -> web::Lighttpd {
    let mut env = vec![("MAILRUN_DATABASE_URL", db.url.as_str())];
    env.extend_from_slice(extra_env);
    web::Lighttpd::start_cgi(&[("dispatch-cgi", Path::new(CGI))], &env)
}

fn client() -> Client {
    Client::new(ClientOptions {
        connect_timeout: Duration::from_secs(10),
        timeout: Duration::from_secs(30),
        allow_plain_http: false,
        max_response_bytes: 16 * 1024 * 1024,
    })
}

fn request(runner: &str, capacity: u32, results: Vec<MessageResult>) -> Vec<u8> {
    codec::encode(&Body::JobRunRequest(JobRunRequest {
        runner_id: runner.to_string(),
        capacity,
        software_version: "9.9.9".to_string(),
        config_version: 7,
        results,
        held_job_runs: None,
    }))
}

/// A runner's poll through the library's signing client (which checks the response
/// signature): the JobRun, or the fault.
fn poll(url: &str, key: &SigningKey, body: &[u8]) -> Result<JobRun, Fault> {
    let response = client()
        .post_signed(url, key, JOB_RUN_REQUEST_ACTION, body)
        .expect("transport");
    match codec::decode(&response.body).expect("decodable answer") {
        Body::JobRun(run) => {
            assert_eq!(response.status, 200);
            assert!(response.authenticated, "a JobRun must be signed");
            Ok(run)
        }
        Body::Fault(fault) => Err(fault),
        other => panic!("unexpected answer {other:?}"),
    }
}

/// A raw POST with exactly these headers (for forged, stale and replayed requests).
struct Raw {
    status: u16,
    body: Vec<u8>,
    signed: bool,
}

fn raw_post(url: &str, headers: &[(String, String)], body: &[u8]) -> Raw {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut req = agent
        .post(url)
        .header("Content-Type", "text/xml; charset=utf-8");
    for (name, value) in headers {
        req = req.header(name, value);
    }
    let mut response = req.send(body).expect("raw POST");
    let status = response.status().as_u16();
    let signed = response.headers().contains_key("x-mailrun-signature");
    let body = response
        .body_mut()
        .with_config()
        .limit(16 * 1024 * 1024)
        .read_to_vec()
        .expect("read body");
    Raw {
        status,
        body,
        signed,
    }
}

fn signed_headers(
    key: &SigningKey,
    path: &str,
    body: &[u8],
    timestamp: i64,
    nonce: &str,
) -> Vec<(String, String)> {
    let sig = sign::sign_at(
        key,
        "POST",
        path,
        JOB_RUN_REQUEST_ACTION,
        body,
        timestamp,
        nonce,
    );
    let mut headers = vec![(
        "SOAPAction".to_string(),
        format!("\"{JOB_RUN_REQUEST_ACTION}\""),
    )];
    headers.extend(
        sig.to_headers()
            .into_iter()
            .map(|(n, v)| (n.to_string(), v)),
    );
    headers
}

fn fault_of(raw: &Raw) -> Fault {
    match codec::decode(&raw.body) {
        Ok(Body::Fault(f)) => f,
        other => panic!(
            "expected a fault, got HTTP {} {:?}: {}",
            raw.status,
            other,
            String::from_utf8_lossy(&raw.body)
        ),
    }
}

fn url_path(url: &str) -> String {
    let after_scheme = url.split_once("://").map(|x| x.1).unwrap_or(url);
    after_scheme
        .find('/')
        .map(|i| after_scheme[i..].to_string())
        .unwrap_or_else(|| "/".to_string())
}

fn sent(run: &JobRun) -> Vec<MessageResult> {
    run.messages
        .iter()
        .map(|m| MessageResult {
            job_run_id: run.job_run_id.clone(),
            message_id: m.id,
            lease_token: m.lease_token.clone(),
            outcome: Outcome::Sent,
            smtp_code: Some(250),
            enhanced_status: Some("2.0.0".to_string()),
            text: Some("queued as 1234".to_string()),
            attempted_at: chrono::Utc::now(),
            recipients: Vec::new(),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// dispatch-cgi
// ---------------------------------------------------------------------------------------

#[test]
fn cgi_behind_lighttpd_serves_batches_acknowledges_results_and_ends_empty() {
    let db = Db::new("cgi_happy");
    let key = db.add_runner("r1", "https://runner.example/cgi-bin/runner-cgi", 2);
    let ids = db.enqueue(3);
    let server = lighttpd(&db, &[]);
    let url = server.url("dispatch-cgi");

    // Capacity 10, configured maximum 2: the smaller wins.
    let first = poll(&url, &key, &request("r1", 10, vec![]))
        .unwrap_or_else(|f| panic!("refused: {f}\n{}", server.error_log()));
    assert_eq!(first.messages.len(), 2);
    assert!(first.lease_seconds > 0);
    assert!(!first.job_run_id.is_empty());
    assert!(first.acknowledged.is_empty());
    let msg = &first.messages[0];
    assert_eq!(msg.account.name, "test");
    assert_eq!(msg.from, "sender@example.org");

    // Reporting the first batch: acknowledged, and the next batch is the rest.
    let results = sent(&first);
    let second = poll(&url, &key, &request("r1", 10, results.clone())).expect("second poll");
    let acked: BTreeSet<i64> = second.acknowledged.iter().map(|a| a.message_id).collect();
    assert_eq!(
        acked,
        results
            .iter()
            .map(|r| r.message_id)
            .collect::<BTreeSet<_>>()
    );
    assert_eq!(second.messages.len(), 1);

    // Capacity 1 with one left over already leased: the queue is empty now.
    let third = poll(&url, &key, &request("r1", 1, sent(&second))).expect("third poll");
    assert!(
        third.messages.is_empty(),
        "empty queue answers an empty JobRun"
    );
    assert_eq!(third.lease_seconds, 0, "an empty JobRun leases nothing");
    assert!(third.job_run_id.is_empty());
    assert_eq!(third.acknowledged.len(), 1);

    let states = db.states();
    assert_eq!(states.len(), ids.len());
    assert!(
        states.iter().all(|(_, s)| s == "sent"),
        "all delivered: {states:?}"
    );

    // The runner's contact is recorded.
    let row = db
        .client()
        .query_one(
            "SELECT last_seen IS NOT NULL, software_version FROM mailrun.runners WHERE id = 'r1'",
            &[],
        )
        .expect("runner row");
    assert!(row.get::<_, bool>(0));
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("9.9.9"));
}

#[test]
fn cgi_misconfigured_still_answers_a_fault() {
    let db = Db::new("cgi_misconfigured");
    let key = db.add_runner("r1", "https://runner.example/", 10);
    let body = request("r1", 1, vec![]);
    let bad_setting = lighttpd(&db, &[("MAILRUN_LEASE_SECONDS", "forever")]);
    // No MAILRUN_DATABASE_URL and no config file.
    let no_database = web::Lighttpd::start_cgi(
        &[("dispatch-cgi", Path::new(CGI))],
        &[("MAILRUN_CONFIG", "/nonexistent/dispatcher.toml")],
    );
    for (server, log_says) in [
        (&bad_setting, "MAILRUN_LEASE_SECONDS"),
        (&no_database, "dispatcher.toml"),
    ] {
        let url = server.url("dispatch-cgi");
        let headers = signed_headers(
            &key,
            &url_path(&url),
            &body,
            sign::now_unix(),
            &sign::new_nonce(),
        );
        let raw = raw_post(&url, &headers, &body);
        assert_eq!(raw.status, 500);
        let fault = fault_of(&raw);
        assert_eq!(fault.reason, FaultReason::Internal);
        assert!(fault.message.contains("not configured"), "{fault}");
        let log = server.error_log();
        assert!(
            log.contains(log_says),
            "error log lacks {log_says:?}:\n{log}"
        );
    }
}

/// Switches set in the environment take the usual spellings (1/0, yes/no, on/off,
/// true/false, any case; empty is off): MAILRUN_VERBOSE=1 used to take every CGI
/// request down (500, exit 78) because only "true" and "false" were accepted.
#[test]
fn cgi_verbose_switch_takes_the_usual_spellings() {
    let db = Db::new("cgi_verbose_spellings");
    let key = db.add_runner("r1", "https://runner.example/", 10);
    let body = request("r1", 1, vec![]);
    for (value, on) in [
        ("1", true),
        ("yes", true),
        ("On", true),
        ("TRUE", true),
        ("0", false),
        ("no", false),
        ("off", false),
        ("False", false),
        ("", false),
    ] {
        let server = lighttpd(&db, &[("MAILRUN_VERBOSE", value)]);
        let url = server.url("dispatch-cgi");
        let headers = signed_headers(
            &key,
            &url_path(&url),
            &body,
            sign::now_unix(),
            &sign::new_nonce(),
        );
        let raw = raw_post(&url, &headers, &body);
        assert_eq!(
            raw.status,
            200,
            "MAILRUN_VERBOSE={value:?}: {}\n{}",
            String::from_utf8_lossy(&raw.body),
            server.error_log()
        );
        assert!(matches!(codec::decode(&raw.body), Ok(Body::JobRun(_))));
        let logged = server.error_log().contains("runner=r1");
        assert_eq!(
            logged,
            on,
            "MAILRUN_VERBOSE={value:?}:\n{}",
            server.error_log()
        );
    }
    // Nonsense is a configuration error naming the variable and what it takes.
    let server = lighttpd(&db, &[("MAILRUN_VERBOSE", "maybe")]);
    let url = server.url("dispatch-cgi");
    let headers = signed_headers(
        &key,
        &url_path(&url),
        &body,
        sign::now_unix(),
        &sign::new_nonce(),
    );
    let raw = raw_post(&url, &headers, &body);
    assert_eq!(raw.status, 500);
    assert!(fault_of(&raw).message.contains("not configured"));
    let log = server.error_log();
    assert!(
        log.contains("MAILRUN_VERBOSE") && log.contains("maybe") && log.contains("yes/no"),
        "{log}"
    );
}

#[test]
fn cgi_get_is_a_health_line() {
    let db = Db::new("cgi_get");
    let server = lighttpd(&db, &[]);
    let health = format!("{}?health", server.url("dispatch-cgi"));
    let mut response = ureq::get(&health).call().expect("GET");
    assert_eq!(response.status().as_u16(), 200);
    let text = response.body_mut().read_to_string().expect("body");
    assert_eq!(text, "mailrun dispatcher OK\n");
    // Without ?health: the status page (tests/it/status_page.rs), shown to loopback.
    let mut response = ureq::get(&server.url("dispatch-cgi")).call().expect("GET");
    assert_eq!(response.status().as_u16(), 200);
    let text = response.body_mut().read_to_string().expect("body");
    assert!(text.contains("<title>mailrun status</title>"), "{text}");
}

/// (name, headers, body, expected fault reason, fault signed?)
type RefusalCase = (
    &'static str,
    Vec<(String, String)>,
    Vec<u8>,
    FaultReason,
    bool,
);

/// Every refusal: the right fault, the right HTTP status, and not one row changed.
fn check_refusals(url: &str, db: &Db) {
    let key = db.add_runner("good", "https://good.example/", 10);
    let disabled_key = db.add_runner("off", "https://off.example/", 10);
    db.set_enabled("off", false);
    db.enqueue(2);
    let path = url_path(url);
    let body = request("good", 5, vec![]);
    let now = sign::now_unix();

    let mut cases: Vec<RefusalCase> = Vec::new();

    // Wrong key: the key id is known but the secret is not the runner's.
    let mut wrong = SigningKey::generate("key-good");
    wrong.secret[0] ^= 0xff;
    cases.push((
        "wrong key",
        signed_headers(&wrong, &path, &body, now, &sign::new_nonce()),
        body.clone(),
        FaultReason::BadSignature,
        true,
    ));
    cases.push((
        "stale timestamp",
        signed_headers(&key, &path, &body, now - 3600, &sign::new_nonce()),
        body.clone(),
        FaultReason::StaleTimestamp,
        false,
    ));
    let mut tampered = body.clone();
    let at = tampered
        .windows(1)
        .position(|w| w == b"5")
        .expect("capacity digit in body");
    tampered[at] = b'9';
    cases.push((
        "tampered body",
        signed_headers(&key, &path, &body, now, &sign::new_nonce()),
        tampered,
        FaultReason::BadSignature,
        true,
    ));
    let stranger = SigningKey::generate("key-nobody");
    cases.push((
        "unknown runner",
        signed_headers(&stranger, &path, &body, now, &sign::new_nonce()),
        body.clone(),
        FaultReason::UnknownRunner,
        false,
    ));
    let off_body = request("off", 5, vec![]);
    cases.push((
        "disabled runner",
        signed_headers(&disabled_key, &path, &off_body, now, &sign::new_nonce()),
        off_body,
        FaultReason::RunnerDisabled,
        true,
    ));
    let garbage =
        b"<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body><oops"
            .to_vec();
    cases.push((
        "malformed SOAP",
        signed_headers(&key, &path, &garbage, now, &sign::new_nonce()),
        garbage,
        FaultReason::MalformedXml,
        true,
    ));
    let doctype = b"<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e \"boom\">]><x>&e;</x>".to_vec();
    cases.push((
        "DOCTYPE",
        signed_headers(&key, &path, &doctype, now, &sign::new_nonce()),
        doctype,
        FaultReason::DoctypeRefused,
        true,
    ));
    let other_runner_body = request("off", 5, vec![]);
    cases.push((
        "body names another runner",
        signed_headers(&key, &path, &other_runner_body, now, &sign::new_nonce()),
        other_runner_body,
        FaultReason::UnknownRunner,
        true,
    ));
    cases.push((
        "no signature",
        vec![(
            "SOAPAction".to_string(),
            format!("\"{JOB_RUN_REQUEST_ACTION}\""),
        )],
        body.clone(),
        FaultReason::MissingSignature,
        false,
    ));
    let mut wrong_action = signed_headers(&key, &path, &body, now, &sign::new_nonce());
    wrong_action[0].1 = "\"urn:mailrun:soap:v1#JobRunnerReady\"".to_string();
    cases.push((
        "wrong SOAPAction",
        wrong_action,
        body.clone(),
        FaultReason::UnknownOperation,
        false,
    ));

    for (name, headers, body, reason, signed) in cases {
        let before = db.snapshot();
        let raw = raw_post(url, &headers, &body);
        let fault = fault_of(&raw);
        assert_eq!(fault.reason, reason, "{name}: {fault}");
        assert_eq!(raw.status, 500, "{name}: HTTP status");
        assert_eq!(raw.signed, signed, "{name}: fault signed?");
        assert_eq!(db.snapshot(), before, "{name}: state changed");
    }

    // Over MAILRUN_MAX_BODY (set to 4096 by the callers): refused by the HTTP adapter
    // with 413 and the TooLarge fault (protocol/faults.md), unsigned.
    for extra in [5000, 20_000] {
        let before = db.snapshot();
        let mut huge = body.clone();
        huge.extend(std::iter::repeat_n(b' ', extra));
        let headers = signed_headers(&key, &path, &huge, now, &sign::new_nonce());
        let raw = raw_post(url, &headers, &huge);
        assert_eq!(raw.status, 413);
        assert_eq!(fault_of(&raw).reason, FaultReason::TooLarge);
        assert!(!raw.signed);
        assert_eq!(db.snapshot(), before, "huge body: state changed");
    }

    // Replay: the first use works (and changes state), the same bytes again do not.
    let headers = signed_headers(&key, &path, &body, now, &sign::new_nonce());
    let first = raw_post(url, &headers, &body);
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let before = db.snapshot();
    let replay = raw_post(url, &headers, &body);
    assert_eq!(fault_of(&replay).reason, FaultReason::ReplayedNonce);
    assert!(replay.signed);
    assert_eq!(db.snapshot(), before, "replay changed state");
}

#[test]
fn cgi_behind_lighttpd_refuses_bad_requests_without_changing_anything() {
    let db = Db::new("cgi_refusals");
    let server = lighttpd(&db, &[("MAILRUN_MAX_BODY", "4096")]);
    check_refusals(&server.url("dispatch-cgi"), &db);
}

#[test]
fn listen_refuses_bad_requests_without_changing_anything() {
    let db = Db::new("listen_refusals");
    let server = Listen::start(&db.url, &["--max-body", "4096"]);
    check_refusals(&server.url(), &db);
}

/// Four runners poll at once until the queue is empty: every message is handed out
/// exactly once.
fn check_disjoint_batches(db: &Db, url: &str) {
    let keys: Vec<(String, SigningKey)> = (0..4)
        .map(|i| {
            let id = format!("r{i}");
            let key = db.add_runner(&id, "https://runner.example/", 7);
            (id, key)
        })
        .collect();
    let ids = db.enqueue(40);

    let claimed: Arc<Mutex<Vec<i64>>> = Arc::default();
    std::thread::scope(|scope| {
        for (id, key) in &keys {
            let claimed = Arc::clone(&claimed);
            scope.spawn(move || loop {
                let run = poll(url, key, &request(id, 5, vec![])).expect("poll");
                if run.messages.is_empty() {
                    break;
                }
                assert!(run.messages.len() <= 5);
                claimed
                    .lock()
                    .unwrap()
                    .extend(run.messages.iter().map(|m| m.id));
            });
        }
    });
    let mut claimed = claimed.lock().unwrap().clone();
    let total = claimed.len();
    claimed.sort();
    claimed.dedup();
    assert_eq!(claimed.len(), total, "a message was handed out twice");
    assert_eq!(claimed, ids, "every message handed out exactly once");
}

#[test]
fn runners_polling_at_once_get_disjoint_batches_under_listen() {
    let db = Db::new("disjoint_listen");
    let server = Listen::start(&db.url, &[]);
    check_disjoint_batches(&db, &server.url());
}

#[test]
fn runners_polling_at_once_get_disjoint_batches_behind_lighttpd() {
    let db = Db::new("disjoint_cgi");
    let server = lighttpd(&db, &[]);
    check_disjoint_batches(&db, &server.url("dispatch-cgi"));
}

/// A `--listen` worker keeps its database connection from one request to the next (a new
/// backend costs every request its start and a first compile of each stored procedure),
/// and one the server ended while it was idle is replaced before the next request, which
/// is served as if nothing happened.
#[test]
fn listen_keeps_its_database_connection_and_replaces_one_the_server_ended() {
    let db = Db::new("listen_kept");
    let key = db.add_runner("r1", "https://runner.example/", 10);
    db.enqueue(40);
    let mut watcher = db.client();
    let mut backends = move || -> BTreeSet<i32> {
        watcher
            .query(
                "SELECT pid FROM pg_stat_activity
                  WHERE datname = current_database() AND backend_type = 'client backend'
                    AND pid <> pg_backend_pid()",
                &[],
            )
            .unwrap_or_else(|e| panic!("pg_stat_activity: {e:?}"))
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let before = backends();
    let mut others = move || -> BTreeSet<i32> { &backends() - &before };
    let server = Listen::start(&db.url, &[]);

    let mut seen = BTreeSet::new();
    for _ in 0..16 {
        let run = poll(&server.url(), &key, &request("r1", 1, vec![])).expect("served");
        assert_eq!(run.messages.len(), 1);
        seen.extend(others());
    }
    std::thread::sleep(Duration::from_millis(500));
    let kept = others();
    assert!(
        !kept.is_empty(),
        "no connection left open between requests (one per request, as before)"
    );
    assert!(
        seen.len() <= mailrun::web::listen::WORKERS,
        "{} backends for 16 requests: at most one per worker",
        seen.len()
    );

    db.client()
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = ANY($1)",
            &[&kept.iter().copied().collect::<Vec<i32>>()],
        )
        .expect("terminate the kept connections");
    common::pipeline::wait_until(Duration::from_secs(10), "kept backends to exit", || {
        others().is_empty()
    });
    // However the requests fall on the workers, each must replace its ended connection.
    for i in 0..2 * mailrun::web::listen::WORKERS {
        let run = poll(&server.url(), &key, &request("r1", 1, vec![]))
            .unwrap_or_else(|fault| panic!("request {i} after the restart: {fault:?}"));
        assert_eq!(run.messages.len(), 1);
    }
}

#[test]
fn both_keys_are_accepted_during_a_rotation() {
    let db = Db::new("rotation");
    let old = db.add_runner("r1", "https://runner.example/", 10);
    let new = SigningKey::generate("key-r1-2");
    db.client()
        .execute(
            "UPDATE mailrun.runners
                SET previous_key_id = key_id, previous_secret = secret, key_id = $2, secret = $3
              WHERE id = $1",
            &[&"r1", &new.key_id, &new.secret.to_vec()],
        )
        .expect("rotate");
    db.enqueue(2);
    let server = Listen::start(&db.url, &[]);
    // The signing client checks that each answer is signed with the key it used.
    let first = poll(&server.url(), &old, &request("r1", 1, vec![])).expect("old key");
    assert_eq!(first.messages.len(), 1);
    let second = poll(&server.url(), &new, &request("r1", 1, vec![])).expect("new key");
    assert_eq!(second.messages.len(), 1);
    assert_ne!(first.messages[0].id, second.messages[0].id);

    // Once the runner used the new key, the old one is no longer accepted.
    let body = request("r1", 1, vec![]);
    let headers = signed_headers(
        &old,
        "/dispatch",
        &body,
        sign::now_unix(),
        &sign::new_nonce(),
    );
    let raw = raw_post(&server.url(), &headers, &body);
    assert_eq!(fault_of(&raw).reason, FaultReason::UnknownRunner);
}

#[test]
fn unavailable_database_is_a_server_fault() {
    let port = common::free_port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/nothing?connect_timeout=5");
    let server = Listen::start(&url, &[]);
    let key = SigningKey::generate("key-x");
    let body = request("x", 1, vec![]);
    let headers = signed_headers(
        &key,
        "/dispatch",
        &body,
        sign::now_unix(),
        &sign::new_nonce(),
    );
    let raw = raw_post(&server.url(), &headers, &body);
    assert_eq!(raw.status, 503);
    let fault = fault_of(&raw);
    assert_eq!(fault.reason, FaultReason::Unavailable);
    assert!(!fault.message.contains("postgres://"), "no URL in faults");
}

#[test]
fn a_database_without_the_schema_is_unavailable_for_runners_and_a_config_error_for_commands() {
    let url = common::cluster().fresh_db("no_schema");
    let server = Listen::start(&url, &[]);
    let key = SigningKey::generate("key-x");
    let body = request("x", 1, vec![]);
    let headers = signed_headers(
        &key,
        "/dispatch",
        &body,
        sign::now_unix(),
        &sign::new_nonce(),
    );
    let raw = raw_post(&server.url(), &headers, &body);
    assert_eq!(raw.status, 503);
    assert_eq!(fault_of(&raw).reason, FaultReason::Unavailable);

    let out = common::run(common::command(TICK).args(["--database-url", &url]));
    common::assert_status(&out, 78);
    assert!(common::stderr(&out).contains("dispatch-admin init"));
    let out = common::run(common::command(PUSH).args(["--database-url", &url, "--all"]));
    common::assert_status(&out, 78);
}

#[test]
fn not_under_a_web_server_without_listen_is_a_usage_error() {
    let out = common::run(
        common::command(CGI)
            .arg("--database-url")
            .arg("postgres://x/y"),
    );
    common::assert_status(&out, 64);
    assert!(common::stderr(&out).contains("--listen"));
}

// ---------------------------------------------------------------------------------------
// A signed runner endpoint for the tick and config pushes
// ---------------------------------------------------------------------------------------

/// Answers JobRunnerReady and JobRunnerConfigUpdate like a runner: verifies the signature
/// with the runner's key, signs the answer. Served by the library's HTTP server.
struct FakeRunnerEndpoint {
    url: String,
    calls: Arc<AtomicUsize>,
    versions: Arc<Mutex<Vec<i64>>>,
}

fn runner_endpoint(key: SigningKey, runner_id: &str) -> FakeRunnerEndpoint {
    let listener = mailrun::web::listen::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/cgi-bin/runner-cgi", listener.local_addr());
    let calls = Arc::new(AtomicUsize::new(0));
    let versions: Arc<Mutex<Vec<i64>>> = Arc::default();
    let (c, v) = (Arc::clone(&calls), Arc::clone(&versions));
    let runner_id = runner_id.to_string();
    let handler = move |req: Request| -> Response {
        c.fetch_add(1, Ordering::SeqCst);
        let answer = match mailrun::web::verify_request(
            &req,
            std::slice::from_ref(&key),
            sign::now_unix(),
        ) {
            Err(e) => Body::Fault(Fault::new(e.fault_reason(), e.to_string())),
            Ok(_) => match codec::decode(&req.body) {
                Ok(Body::JobRunnerReady(ready)) if ready.runner_id == runner_id => {
                    Body::JobRunnerReadyResponse(JobRunnerReadyResponse {
                        status: ReadyStatus::Accepted,
                        software_version: "1.2.3".to_string(),
                        config_version: 4,
                    })
                }
                Ok(Body::JobRunnerConfigUpdate(update)) if update.runner_id == runner_id => {
                    let mut applied = v.lock().unwrap();
                    // Like a runner: versions only increase.
                    if applied.last().is_some_and(|last| update.version <= *last) {
                        Body::Fault(Fault::new(
                            FaultReason::VersionNotIncreasing,
                            "version does not increase",
                        ))
                    } else {
                        applied.push(update.version);
                        Body::JobRunnerConfigUpdateResponse(JobRunnerConfigUpdateResponse {
                            applied_version: update.version,
                        })
                    }
                }
                Ok(_) => Body::Fault(Fault::new(FaultReason::InvalidValue, "unexpected")),
                Err(fault) => Body::Fault(fault),
            },
        };
        let bytes = codec::encode(&answer);
        let status = if matches!(answer, Body::Fault(_)) {
            500
        } else {
            200
        };
        let headers = mailrun::web::sign_response(&key, &req, codec::soap_action(&answer), &bytes);
        Response::new(status, codec::CONTENT_TYPE, bytes).with_headers(headers)
    };
    std::thread::spawn(move || {
        listener.run(
            handler,
            mailrun::web::RequestError::to_response,
            1024 * 1024,
        )
    });
    FakeRunnerEndpoint {
        url,
        calls,
        versions,
    }
}

/// A loopback URL nobody listens on.
fn dead_url() -> String {
    format!(
        "http://127.0.0.1:{}/cgi-bin/runner-cgi",
        common::free_port()
    )
}

fn add_runner_with_endpoint(db: &Db, id: &str) -> FakeRunnerEndpoint {
    // Insert first with a placeholder, then point it at the endpoint that knows the key.
    let key = db.add_runner(id, "http://127.0.0.1:9/", 10);
    let endpoint = runner_endpoint(key, id);
    db.client()
        .execute(
            "UPDATE mailrun.runners SET endpoint = $2 WHERE id = $1",
            &[&id, &endpoint.url],
        )
        .expect("set endpoint");
    endpoint
}

// ---------------------------------------------------------------------------------------
// dispatch-tick
// ---------------------------------------------------------------------------------------

#[test]
fn tick_with_nothing_due_contacts_nobody_and_exits_3() {
    let db = Db::new("tick_idle");
    let endpoint = add_runner_with_endpoint(&db, "r1");
    let out = common::run(common::command(TICK).args(["--database-url", &db.url]));
    common::assert_status(&out, 3);
    assert_eq!(common::stdout(&out), "", "silent without --verbose/--json");
    assert_eq!(endpoint.calls.load(Ordering::SeqCst), 0);

    let out = common::run(common::command(TICK).args(["--database-url", &db.url, "--json"]));
    common::assert_status(&out, 3);
    let summary: serde_json::Value = serde_json::from_str(&common::stdout(&out)).expect("json");
    assert_eq!(summary["due"], 0);
    assert_eq!(summary["runners"].as_array().map(Vec::len), Some(0));
}

#[test]
fn tick_wakes_the_runners_the_work_needs_and_records_answers() {
    let db = Db::new("tick_wake");
    // Batch size 10 each: 3 due messages need one runner, 15 need two.
    let a = add_runner_with_endpoint(&db, "a");
    let b = add_runner_with_endpoint(&db, "b");
    let off = add_runner_with_endpoint(&db, "off");
    db.set_enabled("off", false);
    db.enqueue(3);

    let out = common::run(common::command(TICK).args(["--database-url", &db.url]));
    common::assert_status(&out, 0);
    assert_eq!(common::stdout(&out), "");
    let calls = |e: &FakeRunnerEndpoint| e.calls.load(Ordering::SeqCst);
    assert_eq!(calls(&a) + calls(&b), 1, "one runner covers 3 messages");
    // Never seen before, both: the first by id ("a"), now seen, goes behind "b".
    assert_eq!(calls(&a), 1);
    let out = common::run(common::command(TICK).args(["--database-url", &db.url]));
    common::assert_status(&out, 0);
    assert_eq!(
        (calls(&a), calls(&b)),
        (1, 1),
        "the next tick wakes the other one"
    );

    db.enqueue(12);
    let out = common::run(common::command(TICK).args(["--database-url", &db.url]));
    common::assert_status(&out, 0);
    assert_eq!((calls(&a), calls(&b)), (2, 2), "15 due need both");
    assert_eq!(calls(&off), 0, "disabled runners are left alone");

    for id in ["a", "b"] {
        let row = db
            .client()
            .query_one(
                "SELECT last_status, software_version, last_seen IS NOT NULL
                   FROM mailrun.runners WHERE id = $1",
                &[&id],
            )
            .expect("runner row");
        assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some("accepted"));
        assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("1.2.3"));
        assert!(row.get::<_, bool>(2));
    }
    // The tick only wakes runners; the queue is untouched.
    assert!(db.states().iter().all(|(_, s)| s == "queued"));
}

/// Fifty runners and twenty due messages: one tick sends at most two JobRunnerReady,
/// and counting due work stops at what the wake-up needs.
#[test]
fn a_tick_wakes_no_more_runners_than_the_work_needs() {
    let db = Db::new("tick_fanout");
    let endpoints: Vec<FakeRunnerEndpoint> = (0..50)
        .map(|i| add_runner_with_endpoint(&db, &format!("r{i:02}")))
        .collect();
    db.enqueue(20);
    let out = common::run(common::command(TICK).args(["--database-url", &db.url, "--json"]));
    common::assert_status(&out, 0);
    let woken: usize = endpoints
        .iter()
        .map(|e| e.calls.load(Ordering::SeqCst))
        .sum();
    assert_eq!(woken, 2, "20 messages, batches of 10");
    let summary: serde_json::Value = serde_json::from_str(&common::stdout(&out)).expect("json");
    assert_eq!(summary["due"], 20);
    assert_eq!(summary["due_capped"], false);
    assert_eq!(summary["runners"].as_array().map(Vec::len), Some(2));

    // --max-wake 3 with 500 due: three runners, and the count stops at 3 x 10.
    db.enqueue(480);
    let out = common::run(common::command(TICK).args([
        "--database-url",
        &db.url,
        "--json",
        "--max-wake",
        "3",
    ]));
    common::assert_status(&out, 0);
    let summary: serde_json::Value = serde_json::from_str(&common::stdout(&out)).expect("json");
    assert_eq!(summary["due"], 30, "{summary}");
    assert_eq!(summary["due_capped"], true);
    assert_eq!(summary["runners"].as_array().map(Vec::len), Some(3));
    let woken: usize = endpoints
        .iter()
        .map(|e| e.calls.load(Ordering::SeqCst))
        .sum();
    assert_eq!(woken, 5);
    // Spread over the fleet: the runners woken first are not woken again.
    assert!(endpoints
        .iter()
        .all(|e| e.calls.load(Ordering::SeqCst) <= 1));
}

#[test]
fn tick_reports_unreachable_runners() {
    let db = Db::new("tick_unreachable");
    db.enqueue(1);
    db.add_runner("dead", &dead_url(), 10);

    // Only an unreachable runner: 69.
    let out = common::run(common::command(TICK).args([
        "--database-url",
        &db.url,
        "--timeout",
        "5",
        "--json",
    ]));
    common::assert_status(&out, 69);
    let summary: serde_json::Value = serde_json::from_str(&common::stdout(&out)).expect("json");
    assert_eq!(summary["due"], 1);
    assert_eq!(summary["runners"][0]["status"], "unreachable");
    assert!(common::stderr(&out).contains("dead"));

    // With a live runner, the dead one (its last contact failed) waits its turn behind
    // it: one runner covers the work, so only the live one is woken.
    let live = add_runner_with_endpoint(&db, "live");
    let out = common::run(common::command(TICK).args([
        "--database-url",
        &db.url,
        "--timeout",
        "5",
        "--verbose",
    ]));
    common::assert_status(&out, 0);
    assert_eq!(live.calls.load(Ordering::SeqCst), 1);
    // The dead runner's status is recorded, but it was not "seen".
    let row = db
        .client()
        .query_one(
            "SELECT last_status, last_seen IS NULL FROM mailrun.runners WHERE id = 'dead'",
            &[],
        )
        .expect("runner row");
    let status: Option<String> = row.get(0);
    assert!(
        status
            .as_deref()
            .is_some_and(|s| s.starts_with("unreachable")),
        "{status:?}"
    );
    assert!(row.get::<_, bool>(1), "an unreachable runner is not seen");
    let err = common::stderr(&out);
    assert!(!err.contains("runner dead"), "{err}");
    assert!(err.contains("runner live: accepted"), "{err}");

    // The live runner gone too: the dead one is tried after it in the same tick.
    db.client()
        .execute(
            "UPDATE mailrun.runners SET endpoint = $1 WHERE id = 'live'",
            &[&dead_url()],
        )
        .expect("kill live");
    let out = common::run(common::command(TICK).args([
        "--database-url",
        &db.url,
        "--timeout",
        "5",
        "--verbose",
    ]));
    common::assert_status(&out, 69);
    let err = common::stderr(&out);
    assert!(err.contains("runner live: unreachable"), "{err}");
    assert!(err.contains("runner dead: unreachable"), "{err}");
}

#[test]
fn tick_refuses_plain_http_to_a_remote_runner_unless_allowed() {
    let db = Db::new("tick_plain");
    db.enqueue(1);
    // 192.0.2.1 (TEST-NET-1) is never contacted: the refusal comes first.
    db.add_runner("remote", "http://192.0.2.1/cgi-bin/runner-cgi", 10);
    let out = common::run(common::command(TICK).args(["--database-url", &db.url, "--json"]));
    common::assert_status(&out, 69);
    let summary: serde_json::Value = serde_json::from_str(&common::stdout(&out)).expect("json");
    let error = summary["runners"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("plain http"), "{summary}");

    // MAILRUN_ALLOW_PLAIN_HTTP in any usual spelling: on, the runner is contacted (and
    // is unreachable); off, still refused; nonsense, a usage error naming the variable.
    for (value, on) in [
        ("1", true),
        ("yes", true),
        ("ON", true),
        ("true", true),
        ("0", false),
        ("off", false),
        ("", false),
    ] {
        let out = common::run(
            common::command(TICK)
                .args(["--database-url", &db.url, "--json", "--timeout", "1"])
                .env("MAILRUN_ALLOW_PLAIN_HTTP", value),
        );
        common::assert_status(&out, 69);
        let summary: serde_json::Value = serde_json::from_str(&common::stdout(&out)).expect("json");
        let error = summary["runners"][0]["error"].as_str().unwrap_or_default();
        assert_eq!(
            !error.contains("plain http"),
            on,
            "MAILRUN_ALLOW_PLAIN_HTTP={value:?}: {summary}"
        );
    }
    for (program, args) in [(TICK, &[][..]), (PUSH, &["show"][..])] {
        let out = common::run(
            common::command(program)
                .args(args)
                .args(["--database-url", &db.url])
                .env("MAILRUN_ALLOW_PLAIN_HTTP", "perhaps"),
        );
        common::assert_status(&out, 64);
        let err = common::stderr(&out);
        assert!(
            err.contains("MAILRUN_ALLOW_PLAIN_HTTP") && err.contains("perhaps"),
            "{err}"
        );
    }
    let out = common::run(
        common::command(PUSH)
            .args(["show", "--database-url", &db.url])
            .env("MAILRUN_ALLOW_PLAIN_HTTP", "1"),
    );
    // Past the command line: it reads the database (which holds no version yet).
    common::assert_status(&out, 78);
    assert!(
        common::stderr(&out).contains("no config version"),
        "{}",
        common::stderr(&out)
    );
}

#[test]
fn tick_with_an_invalid_database_url_exits_78_without_echoing_it() {
    let out = common::run(
        common::command(TICK).args(["--database-url", "postgres://u:s3cret@host:port/db"]),
    );
    common::assert_status(&out, 78);
    assert!(!common::stderr(&out).contains("s3cret"));
}

#[test]
fn tick_with_database_down_exits_69() {
    let port = common::free_port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/nothing");
    let out = common::run(common::command(TICK).args(["--database-url", &url]));
    common::assert_status(&out, 69);
}

// ---------------------------------------------------------------------------------------
// push-config
// ---------------------------------------------------------------------------------------

#[test]
fn push_config_set_creates_versions_and_pushes_to_all() {
    let db = Db::new("push_all");
    let a = add_runner_with_endpoint(&db, "a");
    let b = add_runner_with_endpoint(&db, "b");

    // Without a version there is nothing to push.
    let out = common::run(common::command(PUSH).args(["--database-url", &db.url, "--all"]));
    common::assert_status(&out, 78);

    // A bad value creates nothing.
    let before = db.snapshot();
    for bad in [
        "batch_size=0",
        "dispatcher_url=ftp://x/",
        "software_sha256=xyz",
        "no_such_key=1",
        "send_rate_per_second=NaN",
    ] {
        let out = common::run(common::command(PUSH).args([
            "--database-url",
            &db.url,
            "set",
            "dispatcher_url=https://mail.example.org/cgi-bin/dispatch-cgi",
            bad,
        ]));
        common::assert_status(&out, 65);
    }
    assert_eq!(db.snapshot(), before);

    let out = common::run(common::command(PUSH).args([
        "--database-url",
        &db.url,
        "--json",
        "set",
        "dispatcher_url=https://mail.example.org/cgi-bin/dispatch-cgi",
        "batch_size=25",
    ]));
    common::assert_status(&out, 0);
    let summary: serde_json::Value = serde_json::from_str(&common::stdout(&out)).expect("json");
    assert_eq!(summary["version"], 1);
    assert_eq!(*a.versions.lock().unwrap(), vec![1]);
    assert_eq!(*b.versions.lock().unwrap(), vec![1]);
    let applied: Vec<Option<i64>> = db
        .client()
        .query(
            "SELECT config_version_applied FROM mailrun.runners ORDER BY id",
            &[],
        )
        .expect("query")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(applied, vec![Some(1), Some(1)]);

    // Pushing again skips runners already at the version; --force pushes anyway.
    let out = common::run(common::command(PUSH).args(["--database-url", &db.url, "--all"]));
    common::assert_status(&out, 0);
    assert_eq!(a.versions.lock().unwrap().len(), 1);
    let out = common::run(common::command(PUSH).args([
        "--database-url",
        &db.url,
        "--runner",
        "a",
        "--force",
    ]));
    common::assert_status(&out, 0);
    assert_eq!(a.calls.load(Ordering::SeqCst), 2, "--force pushed again");
    assert_eq!(b.calls.load(Ordering::SeqCst), 1);
    // The runner already holds version 1 and says so: current, not a failure.
    assert_eq!(*a.versions.lock().unwrap(), vec![1]);

    // A new version derives from the last one.
    let out = common::run(common::command(PUSH).args([
        "--database-url",
        &db.url,
        "set",
        "--no-push",
        "poll_interval_seconds=30",
    ]));
    common::assert_status(&out, 0);
    let out = common::run(common::command(PUSH).args(["--database-url", &db.url, "show"]));
    common::assert_status(&out, 0);
    let shown = common::stdout(&out);
    assert!(shown.contains("version=2"), "{shown}");
    assert!(shown.contains("batch_size=25"), "{shown}");
    assert!(shown.contains("poll_interval_seconds=30"), "{shown}");
}

#[test]
fn push_config_reports_unreachable_runner_and_still_pushes_the_others() {
    let db = Db::new("push_unreachable");
    let live = add_runner_with_endpoint(&db, "live");
    db.add_runner("dead", &dead_url(), 10);
    let out = common::run(common::command(PUSH).args([
        "--database-url",
        &db.url,
        "--timeout",
        "5",
        "--json",
        "set",
        "dispatcher_url=https://mail.example.org/cgi-bin/dispatch-cgi",
    ]));
    common::assert_status(&out, 69);
    assert_eq!(*live.versions.lock().unwrap(), vec![1]);
    let summary: serde_json::Value = serde_json::from_str(&common::stdout(&out)).expect("json");
    let statuses: Vec<(String, String)> = summary["runners"]
        .as_array()
        .expect("runners")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or_default().to_string(),
                r["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert!(statuses.contains(&("live".to_string(), "applied".to_string())));
    assert!(statuses.contains(&("dead".to_string(), "unreachable".to_string())));
    assert!(common::stderr(&out).contains("dead"));
}

#[test]
fn push_config_to_an_unknown_runner_is_refused() {
    let db = Db::new("push_unknown");
    let out = common::run(common::command(PUSH).args([
        "--database-url",
        &db.url,
        "set",
        "--no-push",
        "dispatcher_url=https://mail.example.org/cgi-bin/dispatch-cgi",
    ]));
    common::assert_status(&out, 0);
    let out =
        common::run(common::command(PUSH).args(["--database-url", &db.url, "--runner", "nobody"]));
    common::assert_status(&out, 65);
    let out = common::run(common::command(PUSH).args(["--database-url", &db.url]));
    common::assert_status(&out, 64);
}

// ---------------------------------------------------------------------------------------
// A SOAP client mailrun did not write
// ---------------------------------------------------------------------------------------

#[test]
fn zeep_with_only_the_wsdl_gets_a_job_run() {
    let db = Db::new("zeep");
    let key = db.add_runner("zeep-runner", "https://runner.example/", 10);
    let ids = db.enqueue(2);
    let server = lighttpd(&db, &[]);
    let wsdl = Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol/dispatcher.wsdl");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/zeep_runner.py");
    // The test-setup virtualenv first (it has zeep), then whatever python3 is on PATH.
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-test/bin/python3");
    let python = std::env::var("MAILRUN_TEST_PYTHON").unwrap_or_else(|_| {
        if venv.exists() {
            venv.display().to_string()
        } else {
            "python3".to_string()
        }
    });
    let out = Command::new(&python)
        .arg(&script)
        .arg(&wsdl)
        .arg(server.url("dispatch-cgi"))
        .arg("zeep-runner")
        .arg(&key.key_id)
        .arg(key.secret_hex())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}: run scripts/test-setup.sh"));
    assert!(
        out.status.success(),
        "zeep client failed (run scripts/test-setup.sh if zeep is missing):\n{}\n{}\n{}",
        common::stdout(&out),
        common::stderr(&out),
        server.error_log()
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).expect("zeep JSON output");
    let mut got_ids: Vec<i64> = got["message_ids"]
        .as_array()
        .expect("message_ids")
        .iter()
        .filter_map(|v| v.as_i64())
        .collect();
    got_ids.sort();
    assert_eq!(got_ids, ids);
    assert_eq!(got["from"], "sender@example.org");
}
