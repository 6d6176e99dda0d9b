//! The status page rendered from the private PostgreSQL cluster, served over real HTTP
//! on loopback, and opened in headless Chromium (Debian's `chromium`): the page renders,
//! its numbers match the database, and a phone-sized screenshot is written to
//! `target/status-page.png`.
use crate::common;
use crate::common::admin;
use mailrun::dispatcher::queue::MessageState;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::assert_status;
use mailrun::dispatcher::status_page::{self, Allow, StatusPageConfig};
use mailrun::dispatcher::{queue, recurring, runners};
use postgres::{Client, NoTls};
use serde_json::json;

fn db(url: &str) -> Client {
    Client::connect(url, NoTls).expect("connect")
}

fn count(url: &str, sql: &str) -> i64 {
    db(url).query_one(sql, &[]).unwrap().get(0)
}

const HOSTILE: &str = "<script>alert('x')</script> & \"quotes\"";

/// A queue with something in every section: delivered, failed and deferred messages,
/// two scheduled ones (one with a hostile subject), a recurring job, two runners.
fn populated(name: &str) -> String {
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
    for id in ["r1", "r2"] {
        assert_status(
            &admin(
                &url,
                &["runner", "add", id, "--endpoint", "http://127.0.0.1:9/"],
            ),
            0,
        );
    }
    let mut c = db(&url);
    let mut ids = Vec::new();
    for to in [
        "one@example.org",
        "gone@example.org",
        "slow@example.org",
        "x@example.org",
    ] {
        let m = json!({"from": "a@example.com", "to": to, "subject": "s", "text": "t"});
        ids.push(queue::enqueue(&mut c, &m).unwrap());
    }
    let rows = c
        .query(
            "SELECT message_id, lease_token::text FROM mailrun.claim_batch('r1', 3, 300)
             ORDER BY message_id",
            &[],
        )
        .unwrap();
    let answers = [
        (250, "2.0.0", "OK", "sent"),
        (550, "5.1.1", "<gone@example.org>: user unknown", "failed"),
        (451, "4.7.1", "greylisted, try again", "deferred"),
    ];
    for (row, (code, enhanced, text, outcome)) in rows.iter().zip(answers) {
        let r = json!({"message_id": row.get::<_, i64>(0), "lease_token": row.get::<_, String>(1),
                       "outcome": outcome, "smtp_code": code, "enhanced_status": enhanced,
                       "text": text});
        c.query_one("SELECT mailrun.apply_result('r1', $1)", &[&r])
            .unwrap();
    }
    for (hours, subject) in [(5, "later one"), (2, HOSTILE)] {
        let m = json!({"from": "a@example.com", "to": "s@example.org", "subject": subject,
                       "text": "t"});
        let id = queue::enqueue(&mut c, &m).unwrap();
        c.execute(
            "UPDATE mailrun.messages SET send_at = now() + make_interval(hours => $2),
                 next_attempt_at = now() + make_interval(hours => $2) WHERE id = $1",
            &[&id, &hours],
        )
        .unwrap();
    }
    let spec = mailrun::schedule::CronSpec::parse_in(
        "0 9 * * MON",
        mailrun::schedule::Zone::named("Europe/Berlin").unwrap(),
    )
    .unwrap();
    recurring::add(
        &mut c,
        &recurring::NewJob {
            name: Some("weekly"),
            spec: &spec,
            template: &json!({"from": "a@example.com", "to": "r@example.org",
                              "subject": "Weekly digest", "text": "t"}),
            max_lateness: chrono::Duration::hours(24),
        },
    )
    .unwrap();
    c.execute(
        "INSERT INTO mailrun.config_versions (version, settings) VALUES (3, '{}')",
        &[],
    )
    .unwrap();
    runners::record_contact(&mut c, "r1", "polled", Some("mailrun 0.1.0"), Some(3)).unwrap();
    runners::set_enabled(&mut c, "r2", false).unwrap();
    url
}

/// Serves the status page on a free loopback port (a thread for the test's lifetime).
fn serve(url: &str, config: StatusPageConfig) -> String {
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let db_url = url.to_string();
    let bind = addr.clone();
    std::thread::spawn(move || {
        let handler = move |req: mailrun::web::Request| {
            status_page::respond(&req, &config, || {
                let mut c = Client::connect(&db_url, NoTls)?;
                let now = c.query_one("SELECT now()", &[])?.get(0);
                status_page::render(&mut c, now)
            })
        };
        mailrun::web::listen::serve(
            &bind,
            handler,
            mailrun::web::RequestError::to_response,
            1 << 20,
        )
        .expect("serve");
    });
    common::wait_for_listener(&addr, "the status page server", None, String::new);
    format!("http://{addr}/")
}

/// A raw HTTP/1.0 GET: (status, body).
fn get(url: &str, path_and_query: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("GET {path_and_query} HTTP/1.0\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad response: {resp}"));
    let body = resp
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (status, body)
}

fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser"] {
        if let Ok(out) = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {name}"))
            .output()
        {
            let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() && !path.is_empty() {
                return PathBuf::from(path);
            }
        }
    }
    panic!("chromium not found: run scripts/test-setup.sh (apt package chromium)");
}

/// Runs headless Chromium with `extra` args on `url`; its stdout. Bounded at 180 s.
fn headless(extra: &[&str], url: &str) -> String {
    let profile = common::temp_dir();
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = reader.join().unwrap();
            if !status.success() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("chromium failed ({status}): {err}");
            }
            return out;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 180 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The text of the element with `id` in a DOM dump (`<b id="x">TEXT</b>`).
fn by_id(dom: &str, id: &str) -> String {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the page"));
    let rest = &dom[start..];
    let open = rest.find('>').unwrap() + 1;
    let close = rest[open..].find('<').unwrap();
    rest[open..open + close].to_string()
}

/// `data-id` values of rows with `class`, in page order.
fn row_ids(dom: &str, class: &str) -> Vec<String> {
    let marker = format!("class=\"{class}\" data-id=\"");
    dom.match_indices(&marker)
        .map(|(i, _)| {
            let rest = &dom[i + marker.len()..];
            rest[..rest.find('"').unwrap()].to_string()
        })
        .collect()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

#[test]
fn page_renders_in_chromium_with_the_database_numbers() {
    let url = populated("status_page_chromium");
    let page = serve(&url, StatusPageConfig::default());
    let dom = headless(&["--dump-dom"], &page);
    assert!(dom.contains("<title>mailrun status</title>"), "{dom}");

    for state in MessageState::ALL.map(MessageState::as_str) {
        let expected = count(
            &url,
            &format!("SELECT count(*) FROM mailrun.messages WHERE state = '{state}'"),
        );
        assert_eq!(
            by_id(&dom, &format!("count-{state}")),
            expected.to_string(),
            "{state}"
        );
    }
    assert_eq!(
        by_id(&dom, "count-due-now"),
        count(&url, "SELECT mailrun.count_due()").to_string()
    );
    assert_eq!(by_id(&dom, "count-held-for-review"), "0");
    assert_eq!(by_id(&dom, "count-sent"), "1");
    assert_eq!(by_id(&dom, "count-failed"), "1");
    assert_eq!(by_id(&dom, "count-deferred"), "1");

    // Scheduled: soonest first.
    let expected: Vec<String> = db(&url)
        .query(
            "SELECT id FROM mailrun.messages WHERE send_at > now() ORDER BY send_at",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get::<_, i64>(0).to_string())
        .collect();
    assert_eq!(expected.len(), 2);
    assert_eq!(row_ids(&dom, "scheduled"), expected);
    assert_eq!(by_id(&dom, "scheduled-total"), "2");
    // The hostile subject is text, not markup.
    assert!(
        !dom.contains("<script"),
        "a script element got into the page"
    );
    assert!(
        dom.contains("&lt;script&gt;alert('x')&lt;/script&gt; &amp; \"quotes\""),
        "{dom}"
    );

    // Recurring job with its next run (a Monday, 09:00 in Berlin).
    assert_eq!(by_id(&dom, "recurring-total"), "1");
    assert_eq!(row_ids(&dom, "recurring").len(), 1);
    assert!(
        dom.contains("weekly") && dom.contains("0 9 * * MON"),
        "{dom}"
    );
    let next = recurring::list(&mut db(&url)).unwrap()[0]
        .next_run()
        .unwrap();
    assert!(
        dom.contains(&next.to_rfc3339()),
        "next run {next} not shown"
    );

    // Runners: health, version, config version.
    assert_eq!(row_ids(&dom, "runner"), ["r1", "r2"]);
    assert!(dom.contains("mailrun 0.1.0"), "{dom}");
    assert!(dom.contains(">disabled<"), "{dom}");
    assert!(dom.contains("class=\"ok\">ok<"), "{dom}");

    // Recent failures with their SMTP answers.
    assert!(
        dom.contains("550 5.1.1 &lt;gone@example.org&gt;: user unknown"),
        "{dom}"
    );
    assert!(dom.contains("451 4.7.1 greylisted, try again"), "{dom}");
    // What was sent, when, by which runner, and what the server said.
    let sent_id = db(&url)
        .query_one("SELECT id FROM mailrun.messages WHERE state = 'sent'", &[])
        .unwrap()
        .get::<_, i64>(0);
    assert!(
        dom.contains(&format!("class=\"delivery\" data-message=\"{sent_id}\""))
            && dom.contains("250 2.0.0 OK"),
        "{dom}"
    );

    // A phone-sized screenshot.
    let shot = target_dir().join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    headless(
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=390,844",
        ],
        &page,
    );
    let png = std::fs::read(&shot).expect("no screenshot written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(png.len() > 10_000, "screenshot is only {} bytes", png.len());
}

#[test]
fn page_is_plain_html_without_external_assets() {
    let url = populated("status_page_html");
    let mut c = db(&url);
    let now = c.query_one("SELECT now()", &[]).unwrap().get(0);
    let html = status_page::render(&mut c, now).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("name=\"viewport\""));
    for external in [
        "<script", "<link", "<img", "src=", "http://", "https://", "@import",
    ] {
        assert!(!html.contains(external), "page contains {external:?}");
    }
    // An empty database renders too.
    let empty = common::cluster().fresh_db("status_page_empty");
    assert_status(&admin(&empty, &["init"]), 0);
    let mut c = db(&empty);
    let html = status_page::render(&mut c, now).unwrap();
    assert!(html.contains("No runners registered"), "{html}");
    assert!(html.contains("id=\"count-queued\">0<"), "{html}");
}

#[test]
fn token_mode_needs_the_token() {
    let url = populated("status_page_token");
    let token = "0123456789abcdef0123456789abcdef";
    let page = serve(
        &url,
        StatusPageConfig {
            allow: Allow::Token,
            token: Some(token.into()),
        },
    );
    let (status, body) = get(&page, "/", &[]);
    assert_eq!(status, 401, "{body}");
    assert!(!body.contains(token));
    assert_eq!(get(&page, "/?token=wrong-token-0123456789", &[]).0, 401);
    let (status, body) = get(&page, &format!("/?token={token}"), &[]);
    assert_eq!(status, 200);
    assert!(body.contains("mailrun status"));
    assert_eq!(get(&page, "/", &[("X-Mailrun-Status-Token", token)]).0, 200);
}

/// `dispatch-cgi --listen` as a child; killed on drop.
struct Listen {
    child: std::process::Child,
    url: String,
}

impl Drop for Listen {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dispatch_cgi(db_url: &str, config: Option<&Path>) -> Listen {
    let port = common::free_port();
    let mut cmd = common::command(env!("CARGO_BIN_EXE_dispatch-cgi"));
    cmd.arg("--database-url")
        .arg(db_url)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    let child = cmd.spawn().expect("start dispatch-cgi --listen");
    let mut listen = Listen {
        child,
        url: format!("http://127.0.0.1:{port}/"),
    };
    common::wait_for_listener(
        &format!("127.0.0.1:{port}"),
        "dispatch-cgi --listen",
        Some(&mut listen.child),
        String::new,
    );
    listen
}

#[test]
fn dispatch_cgi_serves_the_page_to_chromium_and_guards_it_with_a_token() {
    let url = populated("status_page_dispatch_cgi");
    let cgi = dispatch_cgi(&url, None);
    let dom = headless(&["--dump-dom"], &cgi.url);
    assert_eq!(
        by_id(&dom, "count-queued"),
        count(
            &url,
            "SELECT count(*) FROM mailrun.messages WHERE state = 'queued'"
        )
        .to_string()
    );
    assert_eq!(row_ids(&dom, "runner"), ["r1", "r2"]);
    let (status, body) = get(&cgi.url, "/?health", &[]);
    assert_eq!((status, body.as_str()), (200, "mailrun dispatcher OK\n"));
    drop(cgi);

    let dir = common::temp_dir();
    let config = dir.path().join("dispatcher.toml");
    let token = "fedcba9876543210fedcba9876543210";
    std::fs::write(
        &config,
        format!("[status_page]\nallow = \"token\"\ntoken = \"{token}\"\n"),
    )
    .unwrap();
    let cgi = dispatch_cgi(&url, Some(&config));
    assert_eq!(get(&cgi.url, "/", &[]).0, 401);
    let dom = headless(&["--dump-dom"], &format!("{}?token={token}", cgi.url));
    assert!(dom.contains("id=\"count-sent\">1<"), "{dom}");
}
