//! The HTTP JSON API (`/api/v1/`, docs/api.md) as an application uses it: curl with only
//! an API key, against dispatch-cgi behind lighttpd (CGI) and under `--listen`. Every
//! exchange is recorded and checked against protocol/openapi.yaml by openapi-core
//! (tests/it/api/validate.py), a validator mailrun did not write.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use chrono::{Datelike, Timelike};
use serde_json::{json, Value};

use crate::common::pipeline::{self, DISPATCH_CGI};
use crate::common::{self, admin, assert_status, initialised_db, json_out};

/// A recorded API client: curl for every request, each exchange appended to a log.
struct Api {
    base: String,
    log: PathBuf,
    dir: tempfile::TempDir,
}

/// One answer.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
    raw: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[track_caller]
    fn expect(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "unexpected answer: {}", self.raw);
        &self.body
    }

    /// The pointer of the first field at fault in a problem.
    fn pointer(&self) -> &str {
        self.body["errors"][0]["pointer"].as_str().unwrap_or("")
    }
}

/// Whether the recorded request must satisfy the document (Some(true)), must not
/// (Some(false)), or is for the server alone to judge (None).
type Conformance = Option<bool>;

impl Api {
    fn new(base: String) -> Api {
        let dir = common::temp_dir();
        let log = dir.path().join("exchanges.jsonl");
        Api { base, log, dir }
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        extra: &[(&str, &str)],
        body: Option<&str>,
        conformance: Conformance,
    ) -> Answer {
        let url = format!("{}/api/v1{path}", self.base);
        let mut headers: Vec<(String, String)> = Vec::new();
        if let Some(k) = key {
            headers.push(("Authorization".into(), format!("Bearer {k}")));
        }
        if body.is_some_and(|b| !b.is_empty())
            && !extra
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        {
            headers.push(("Content-Type".into(), "application/json".into()));
        }
        headers.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        let head_file = self.dir.path().join("head");
        let body_file = self.dir.path().join("body");
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-X", method, "-D"])
            .arg(&head_file)
            .arg("-o")
            .arg(&body_file)
            .args(["-w", "%{http_code}"]);
        for (n, v) in &headers {
            cmd.arg("-H").arg(format!("{n}: {v}"));
        }
        if body.is_some() {
            cmd.args(["--data-binary", "@-"]);
        }
        let mut child = cmd
            .arg(&url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("curl (apt-get install curl)");
        {
            let mut stdin = child.stdin.take().unwrap();
            if let Some(b) = body {
                stdin.write_all(b.as_bytes()).unwrap();
            }
        }
        let out = child.wait_with_output().unwrap();
        let code: u16 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        assert!(
            code != 0,
            "curl {method} {url} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let head = std::fs::read_to_string(&head_file).unwrap_or_default();
        let resp_headers: Vec<(String, String)> = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        let raw = std::fs::read_to_string(&body_file).unwrap_or_default();
        let parsed = serde_json::from_str(&raw).unwrap_or(Value::Null);
        let record = json!({
            "method": method, "url": url,
            "headers": headers.iter()
                .map(|(n, v)| (n.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "body": body.unwrap_or(""), "status": code,
            "response_headers": resp_headers.iter()
                .map(|(n, v)| (n.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "response_body": raw, "request": conformance,
        });
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        writeln!(f, "{record}").unwrap();
        Answer {
            status: code,
            headers: resp_headers,
            body: parsed,
            raw,
        }
    }

    fn post(&self, path: &str, key: &str, body: &Value) -> Answer {
        self.call(
            "POST",
            path,
            Some(key),
            &[],
            Some(&body.to_string()),
            Some(true),
        )
    }

    /// A POST without content, as curl -d '' sends it (Content-Length: 0: CGI servers
    /// refuse a POST without a length).
    fn post_empty(&self, path: &str, key: &str) -> Answer {
        self.call("POST", path, Some(key), &[], Some(""), Some(true))
    }

    fn get(&self, path: &str, key: &str) -> Answer {
        self.call("GET", path, Some(key), &[], None, Some(true))
    }

    /// Every recorded exchange against protocol/openapi.yaml.
    #[track_caller]
    fn assert_conforms(&self) {
        let python = pipeline::manifest_path(".venv-test/bin/python3");
        let out = common::run(
            Command::new(python)
                .arg(pipeline::manifest_path("tests/it/api/validate.py"))
                .arg(pipeline::manifest_path("protocol/openapi.yaml"))
                .arg(&self.log),
        );
        assert!(
            out.status.success(),
            "exchanges do not conform to protocol/openapi.yaml:\n{}{}",
            common::stdout(&out),
            common::stderr(&out)
        );
    }
}

/// A database with one SMTP account and a key of each scope: (url, send, read, admin).
fn setup(test: &str) -> (String, String, String, String) {
    let url = initialised_db(test);
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
    let key = |scope: &str| {
        let out = admin(
            &url,
            &["--json", "api-key", "add", "--scope", scope, "--note", test],
        );
        assert_status(&out, 0);
        json_out(&out)["key"].as_str().unwrap().to_string()
    };
    let (send, read, adm) = (key("send"), key("read"), key("admin"));
    (url, send, read, adm)
}

/// `dispatch-cgi --listen` with stderr kept (to check no key is logged).
struct Listen {
    child: Child,
    port: u16,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Listen {
    fn start(url: &str, env: &[(&str, &str)]) -> Listen {
        let dir = common::temp_dir();
        let stderr = dir.path().join("stderr");
        let port = common::free_port();
        let mut child = common::command(DISPATCH_CGI)
            .args(["--database-url", url, "--verbose", "--max-body", "65536"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("dispatch-cgi --listen");
        common::wait_for_listener(
            &format!("127.0.0.1:{port}"),
            "dispatch-cgi --listen",
            Some(&mut child),
            String::new,
        );
        Listen {
            child,
            port,
            stderr,
            _dir: dir,
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}/mailrun", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Listen {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn count(url: &str, sql: &str) -> i64 {
    let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
    c.query_one(sql, &[]).unwrap().get(0)
}

fn message(to: &str, subject: &str) -> Value {
    json!({"from": "App <app@example.com>", "to": [to], "subject": subject, "text": "hello"})
}

/// What an application does, through one server: queue, schedule in a time zone, page
/// through the schedule, cancel, follow, recurring jobs, and every refusal.
fn application_scenario(api: &Api, url: &str, send: &str, read: &str, adm: &str) {
    // Queue one now and one "next monday 9am" in Berlin.
    let now = api.post("/messages", send, &message("a@example.org", "now"));
    let first = now.expect(201)["id"].as_i64().unwrap();
    let sched = api.post(
        "/messages",
        send,
        &json!({"from": "app@example.com", "to": "b@example.org", "subject": "monday",
                "text": "x", "send_at": "next monday 9am", "time_zone": "Europe/Berlin"}),
    );
    let body = sched.expect(201);
    let monday = body["id"].as_i64().unwrap();
    let at: chrono::DateTime<chrono::Utc> = body["send_at"].as_str().unwrap().parse().unwrap();
    let local = at.with_timezone(&mailrun::schedule::Zone::named("Europe/Berlin").unwrap());
    assert_eq!(local.weekday(), chrono::Weekday::Mon, "{body}");
    assert_eq!((local.hour(), local.minute()), (9, 0), "{body}");
    assert!(at > chrono::Utc::now(), "{body}");
    assert!(body["send_at_read_as"]
        .as_str()
        .unwrap()
        .contains("Europe/Berlin"));

    // A batch of three later ones, all or nothing.
    let later: Vec<Value> = (0..3)
        .map(|i| {
            let mut m = message(&format!("c{i}@example.net"), &format!("later {i}"));
            m["send_at"] = json!("in 15 days");
            m
        })
        .collect();
    let batch = api.post("/messages/batch", send, &json!({"messages": later}));
    let ids: Vec<i64> = batch.expect(201)["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    let before = count(url, "SELECT count(*) FROM mailrun.messages");
    let mut bad = later.clone();
    bad[1]["to"] = json!(["not an address"]);
    bad[2]["subject"] = json!("two\r\nlines");
    let refused = api.call(
        "POST",
        "/messages/batch",
        Some(send),
        &[],
        Some(&json!({"messages": bad}).to_string()),
        None,
    );
    refused.expect(422);
    assert_eq!(refused.pointer(), "/messages/1/to", "{}", refused.raw);
    assert_eq!(refused.body["errors"][1]["pointer"], "/messages/2/subject");
    assert_eq!(count(url, "SELECT count(*) FROM mailrun.messages"), before);

    // Page through the schedule one at a time: the four later messages, in send order.
    let mut seen = Vec::new();
    let mut path = "/messages?state=scheduled&limit=1".to_string();
    loop {
        let page = api.get(&path, read);
        let b = page.expect(200);
        seen.extend(
            b["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_i64().unwrap()),
        );
        match b["next_cursor"].as_str() {
            Some(c) => path = format!("/messages?state=scheduled&limit=1&cursor={c}"),
            None => break,
        }
        assert!(seen.len() <= 10, "paging does not end: {seen:?}");
    }
    let mut expected = ids.clone();
    expected.insert(0, monday);
    assert_eq!(seen, expected, "next monday comes before 'in 15 days'");
    let by_domain = api.get("/messages?domain=EXAMPLE.net&limit=10", read);
    assert_eq!(
        by_domain.expect(200)["messages"].as_array().unwrap().len(),
        3
    );
    let bad_cursor = api.call(
        "GET",
        "/messages?cursor=zzz",
        Some(read),
        &[],
        None,
        Some(true),
    );
    bad_cursor.expect(422);
    assert_eq!(bad_cursor.pointer(), "query:cursor");

    // Follow one, cancel one.
    let got = api.get(&format!("/messages/{first}"), read);
    let b = got.expect(200);
    assert_eq!(b["message"]["state"], "queued");
    assert_eq!(b["attempts"], json!([]));
    let cancel = api.post_empty(&format!("/messages/{monday}/cancel"), send);
    assert_eq!(cancel.expect(200)["was"], "queued");
    let again = api.post_empty(&format!("/messages/{monday}/cancel"), send);
    again.expect(409);
    assert_eq!(
        api.get(&format!("/messages/{monday}"), read).expect(200)["message"]["state"],
        "cancelled"
    );
    api.get("/messages/999999999", read).expect(404);

    // Idempotency: a retry answers the first answer and queues nothing more.
    let idem = [("Idempotency-Key", "order-4711")];
    let body = message("d@example.org", "idempotent").to_string();
    let one = api.call(
        "POST",
        "/messages",
        Some(send),
        &idem,
        Some(&body),
        Some(true),
    );
    let id = one.expect(201)["id"].as_i64().unwrap();
    let n = count(url, "SELECT count(*) FROM mailrun.messages");
    let two = api.call(
        "POST",
        "/messages",
        Some(send),
        &idem,
        Some(&body),
        Some(true),
    );
    assert_eq!(two.expect(201)["id"].as_i64(), Some(id));
    assert_eq!(two.header("Idempotent-Replayed"), Some("true"));
    assert_eq!(count(url, "SELECT count(*) FROM mailrun.messages"), n);
    let other = message("e@example.org", "other").to_string();
    let reused = api.call(
        "POST",
        "/messages",
        Some(send),
        &idem,
        Some(&other),
        Some(true),
    );
    assert_eq!(
        reused.expect(422)["type"],
        "urn:mailrun:problem:idempotency-key-reused"
    );
    assert_eq!(count(url, "SELECT count(*) FROM mailrun.messages"), n);

    // Recurring jobs (admin scope).
    let job = json!({"cron": "0 9 * * MON", "time_zone": "Europe/Berlin", "name": "weekly",
                     "count": 3, "until": "in 300 days",
                     "template": {"from": "app@example.com", "to": "f@example.org",
                                  "subject": "weekly", "text": "x"}});
    let denied = api.post("/recurring", send, &job);
    assert_eq!(
        denied.expect(403)["type"],
        "urn:mailrun:problem:insufficient-scope"
    );
    let added = api.post("/recurring", adm, &job);
    let j = added.expect(201);
    assert_eq!(j["name"], "weekly");
    assert_eq!(
        (j["max_runs"].as_i64(), j["runs"].as_i64()),
        (Some(3), Some(0)),
        "{j}"
    );
    assert!(j["until"].is_string() && j["finished"] == false, "{j}");
    assert!(j["next_run"].is_string());
    let listed = api.get("/recurring", read);
    assert_eq!(listed.expect(200)["jobs"].as_array().unwrap().len(), 1);
    let paused = api.post_empty("/recurring/weekly/pause", adm);
    assert_eq!(paused.expect(200)["paused"], true);
    assert!(paused.body["next_run"].is_null());
    let resumed = api.post_empty("/recurring/weekly/resume", adm);
    assert_eq!(resumed.expect(200)["paused"], false);
    let mut bad_job = job.clone();
    bad_job["name"] = json!("other");
    bad_job["template"]["send_at"] = json!("tomorrow");
    let r = api.call(
        "POST",
        "/recurring",
        Some(adm),
        &[],
        Some(&bad_job.to_string()),
        None,
    );
    r.expect(422);
    assert_eq!(r.pointer(), "/template/send_at");
    bad_job["template"] = job["template"].clone();
    bad_job["cron"] = json!("61 * * * *");
    let r = api.post("/recurring", adm, &bad_job);
    assert_eq!((r.status, r.pointer()), (422, "/cron"), "{}", r.raw);
    let removed = api.call(
        "DELETE",
        "/recurring/weekly",
        Some(adm),
        &[],
        None,
        Some(true),
    );
    assert_eq!(removed.expect(200)["removed"], true);
    api.get("/recurring/weekly", read).expect(404);

    // Refusals: each a problem naming what is wrong, nothing queued.
    let n = count(url, "SELECT count(*) FROM mailrun.messages");
    let m = message("g@example.org", "x").to_string();
    let no_key = api.call("POST", "/messages", None, &[], Some(&m), Some(false));
    no_key.expect(401);
    assert!(no_key
        .header("WWW-Authenticate")
        .is_some_and(|v| v.starts_with("Bearer")));
    let wrong = format!("{}x", &send[..send.len() - 1]);
    api.call("POST", "/messages", Some(&wrong), &[], Some(&m), Some(true))
        .expect(401);
    api.call(
        "POST",
        "/messages",
        Some("nonsense"),
        &[],
        Some(&m),
        Some(true),
    )
    .expect(401);
    api.post("/messages", read, &message("g@example.org", "x"))
        .expect(403);
    let malformed = api.call(
        "POST",
        "/messages",
        Some(send),
        &[],
        Some("{\"from\": "),
        None,
    );
    assert_eq!(
        malformed.expect(400)["type"],
        "urn:mailrun:problem:bad-request"
    );
    api.call(
        "POST",
        "/messages",
        Some(send),
        &[("Content-Type", "text/plain")],
        Some(&m),
        Some(false),
    )
    .expect(415);
    let unknown = api.call(
        "POST",
        "/messages",
        Some(send),
        &[],
        Some(
            &json!({"from": "app@example.com", "to": "x@example.org", "colour": "red"}).to_string(),
        ),
        Some(false),
    );
    unknown.expect(422);
    let crlf = api.post("/messages", send, &json!({"from": "app@example.com", "to": "x@example.org", "subject": "a\nBcc: victim@example.org"}));
    assert_eq!(
        (crlf.status, crlf.pointer()),
        (422, "/subject"),
        "{}",
        crlf.raw
    );
    let addr = api.post(
        "/messages",
        send,
        &json!({"from": "app@example.com", "to": "x@@example.org"}),
    );
    assert_eq!((addr.status, addr.pointer()), (422, "/to"), "{}", addr.raw);
    let past = api.post("/messages", send, &json!({"from": "app@example.com", "to": "x@example.org", "send_at": "2001-01-01T00:00:00Z"}));
    assert_eq!(
        (past.status, past.pointer()),
        (422, "/send_at"),
        "{}",
        past.raw
    );
    let tz = api.post("/messages", send, &json!({"from": "app@example.com", "to": "x@example.org", "send_at": "tomorrow 9am", "time_zone": "Mars/Olympus"}));
    assert_eq!((tz.status, tz.pointer()), (422, "/time_zone"), "{}", tz.raw);
    let huge =
        json!({"from": "app@example.com", "to": "x@example.org", "text": "x".repeat(70_000)});
    let big = api.call(
        "POST",
        "/messages",
        Some(send),
        &[],
        Some(&huge.to_string()),
        Some(true),
    );
    assert_eq!(big.status, 413, "{}", big.raw);
    api.call("PUT", "/messages", Some(send), &[], None, None)
        .expect(405);
    api.call("GET", "/nowhere", Some(read), &[], None, None)
        .expect(404);
    assert_eq!(count(url, "SELECT count(*) FROM mailrun.messages"), n);

    // A revoked key is refused from then on.
    let out = admin(url, &["--json", "api-key", "revoke", &read[4..16]]);
    assert_status(&out, 0);
    assert_eq!(json_out(&out)["revoked"], true);
    let revoked = api.get("/messages", read);
    assert_eq!(revoked.expect(401)["detail"], "the API key was revoked");

    api.assert_conforms();
}

#[test]
fn an_application_uses_the_api_over_cgi_with_curl() {
    let (url, send, read, adm) = setup("api_cgi");
    let web = pipeline::serve_dispatcher(
        &url,
        &[("MAILRUN_MAX_BODY", "65536"), ("MAILRUN_VERBOSE", "1")],
    );
    let api = Api::new(web.url("dispatch-cgi"));
    application_scenario(&api, &url, &send, &read, &adm);
    let log = web.error_log();
    for secret in [&send, &read, &adm] {
        assert!(
            !log.contains(&secret[17..]),
            "a key's secret is in the log:\n{log}"
        );
    }
    // The keys list shows their last use, never the keys.
    let out = admin(&url, &["--json", "api-key", "list"]);
    let keys = json_out(&out);
    assert!(keys
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["last_used_at"].is_string()));
    assert!(!common::stdout(&out).contains(&send[17..]));
}

#[test]
fn an_application_uses_the_api_over_listen_with_curl() {
    let (url, send, read, adm) = setup("api_listen");
    let server = Listen::start(&url, &[]);
    let api = Api::new(server.base());
    application_scenario(&api, &url, &send, &read, &adm);
    let log = server.log();
    assert!(log.contains("POST /mailrun/api/v1/messages"), "{log}");
    for secret in [&send, &read, &adm] {
        assert!(
            !log.contains(&secret[17..]),
            "a key's secret is in the log:\n{log}"
        );
    }
}

/// kill -9 of dispatch-cgi after the commit and before the answer: the client sees no
/// answer, retries with the same Idempotency-Key, and gets the committed answer; one
/// message in all.
#[test]
fn a_retry_after_kill_9_between_commit_and_answer_never_queues_twice() {
    let (url, send, _read, _adm) = setup("api_kill9");
    let body = message("h@example.org", "exactly once").to_string();
    let idem: [(&str, &str); 1] = [("Idempotency-Key", "kill-9-listen")];

    // --listen: the whole server dies.
    let mut crashing = Listen::start(&url, &[("MAILRUN_FAULT", "api-after-commit")]);
    let api = Api::new(crashing.base());
    let out = common::run(
        Command::new("curl")
            .args([
                "-sS",
                "-X",
                "POST",
                "-H",
                &format!("Authorization: Bearer {send}"),
            ])
            .args([
                "-H",
                "Content-Type: application/json",
                "-H",
                "Idempotency-Key: kill-9-listen",
            ])
            .args(["--data-binary", &body])
            .arg(format!("{}/api/v1/messages", crashing.base())),
    );
    assert!(!out.status.success(), "the answer should have been lost");
    let status = crashing.child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "dispatch-cgi was not killed: {status}"
    );
    assert_eq!(count(&url, "SELECT count(*) FROM mailrun.messages"), 1);
    let committed = count(&url, "SELECT max(id) FROM mailrun.messages");
    let server = Listen::start(&url, &[]);
    let api2 = Api {
        base: server.base(),
        ..api
    };
    let retry = api2.call(
        "POST",
        "/messages",
        Some(&send),
        &idem,
        Some(&body),
        Some(true),
    );
    assert_eq!(retry.expect(201)["id"].as_i64(), Some(committed));
    assert_eq!(count(&url, "SELECT count(*) FROM mailrun.messages"), 1);

    // CGI: the web server's child dies; lighttpd answers an error of its own.
    let idem: [(&str, &str); 1] = [("Idempotency-Key", "kill-9-cgi")];
    let web = pipeline::serve_dispatcher(&url, &[("MAILRUN_FAULT", "api-after-commit")]);
    let cgi = Api::new(web.url("dispatch-cgi"));
    let lost = cgi.call("POST", "/messages", Some(&send), &idem, Some(&body), None);
    assert!(
        lost.status >= 500,
        "the answer should have been lost: {} {}",
        lost.status,
        lost.raw
    );
    assert_eq!(count(&url, "SELECT count(*) FROM mailrun.messages"), 2);
    let committed = count(&url, "SELECT max(id) FROM mailrun.messages");
    drop(web);
    let web = pipeline::serve_dispatcher(&url, &[]);
    let cgi2 = Api {
        base: web.url("dispatch-cgi"),
        ..cgi
    };
    let retry = cgi2.call(
        "POST",
        "/messages",
        Some(&send),
        &idem,
        Some(&body),
        Some(true),
    );
    assert_eq!(retry.expect(201)["id"].as_i64(), Some(committed));
    assert_eq!(retry.header("Idempotent-Replayed"), Some("true"));
    assert_eq!(count(&url, "SELECT count(*) FROM mailrun.messages"), 2);
    api2.assert_conforms();
}

/// Two requests with one Idempotency-Key at the same moment queue one message.
#[test]
fn concurrent_requests_with_one_idempotency_key_queue_once() {
    let (url, send, _read, _adm) = setup("api_idem_race");
    let server = Listen::start(&url, &[]);
    let base = server.base();
    let body = message("i@example.org", "race").to_string();
    let answers: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let out = common::run(
                        Command::new("curl")
                            .args([
                                "-sS",
                                "-X",
                                "POST",
                                "-H",
                                &format!("Authorization: Bearer {send}"),
                            ])
                            .args([
                                "-H",
                                "Content-Type: application/json",
                                "-H",
                                "Idempotency-Key: race",
                            ])
                            .args(["--data-binary", &body])
                            .arg(format!("{base}/api/v1/messages")),
                    );
                    common::stdout(&out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(count(&url, "SELECT count(*) FROM mailrun.messages"), 1);
    let id = count(&url, "SELECT max(id) FROM mailrun.messages");
    for a in answers {
        let v: Value = serde_json::from_str(&a).unwrap_or_else(|_| panic!("{a}"));
        assert_eq!(v["id"].as_i64(), Some(id), "{a}");
    }
}

/// The key is printed once, only a digest is stored, and the CLI refuses bad input.
#[test]
fn api_keys_are_shown_once_and_stored_hashed() {
    let url = initialised_db("api_keys_cli");
    let out = admin(&url, &["api-key", "add", "--scope", "send"]);
    assert_status(&out, 0);
    let key = common::stdout(&out).trim().to_string();
    assert!(key.starts_with("mrk_") && key.len() > 50, "{key}");
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let dump: String = c
        .query_one(
            "SELECT string_agg(t::text, ' ') FROM mailrun.api_keys t",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        !dump.contains(&key[17..]),
        "the secret is stored in clear: {dump}"
    );
    let list = admin(&url, &["api-key", "list"]);
    assert_status(&list, 0);
    assert!(!common::stdout(&list).contains(&key[17..]));
    assert_status(&admin(&url, &["api-key", "add", "--scope", "root"]), 64);
    assert_status(&admin(&url, &["api-key", "revoke", "nosuchkey"]), 65);
}
