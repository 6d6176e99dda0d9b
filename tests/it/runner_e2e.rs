//! Delivery end to end with only mailrun's own commands and real services: messages
//! queued in PostgreSQL, `dispatch-cgi --listen` handing out batches, `runner-admin cycle`
//! polling and delivering over SMTP to aiosmtpd, and the outcomes (per recipient, too)
//! recorded back in the queue.
use crate::common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::smtp::{SmtpServer, SmtpServerOptions};
use mailrun::protocol::sign::SigningKey;

const DISPATCH_CGI: &str = env!("CARGO_BIN_EXE_dispatch-cgi");
const RUNNER_ADMIN: &str = env!("CARGO_BIN_EXE_runner-admin");

/// (to_addrs, state, recipients_sent, recipients_failed) of one queued message.
type MessageRow = (Vec<String>, String, Vec<String>, Vec<String>);

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn dispatch_cgi_listen(database_url: &str) -> (Killed, String) {
    let port = common::free_port();
    let child = common::command(DISPATCH_CGI)
        .args(["--database-url", database_url])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("dispatch-cgi --listen");
    let mut child = Killed(child);
    common::wait_for_listener(
        &format!("127.0.0.1:{port}"),
        "dispatch-cgi --listen",
        Some(&mut child.0),
        String::new,
    );
    (
        child,
        format!("http://127.0.0.1:{port}/cgi-bin/dispatch-cgi"),
    )
}

#[test]
fn queued_messages_are_delivered_and_their_outcomes_recorded() {
    let url = common::initialised_db("runner_e2e");
    let mut db = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    let smtp = SmtpServer::start(SmtpServerOptions {
        reject: vec!["nobody@example.org".into()],
        defer: vec!["later@example.org".into()],
        ..Default::default()
    });
    db.execute(
        "INSERT INTO mailrun.smtp_accounts (name, host, port, security)
         VALUES ('local', '127.0.0.1', $1, 'none')",
        &[&i32::from(smtp.port)],
    )
    .expect("account");
    let key = SigningKey::generate("key-e2e");
    db.execute(
        "INSERT INTO mailrun.runners (id, endpoint, batch_size, key_id, secret)
         VALUES ('e2e', 'http://127.0.0.1:9/cgi-bin/runner-cgi', 2, $1, $2)",
        &[&key.key_id, &key.secret.to_vec()],
    )
    .expect("runner");
    let recipients: [&[&str]; 4] = [
        &["alice@example.org"],
        &["bob@example.org", "nobody@example.org"],
        &["later@example.org"],
        &["carol@example.org"],
    ];
    for (i, to) in recipients.iter().enumerate() {
        let message = serde_json::json!({
            "from": "sender@example.org",
            "to": to,
            "subject": format!("e2e {i}"),
            "text": "hello",
            "account": "local",
        });
        db.execute("SELECT mailrun.enqueue($1::jsonb)", &[&message])
            .expect("enqueue");
    }

    let (_dispatcher, dispatcher_url) = dispatch_cgi_listen(&url);
    let state = common::temp_dir();
    common::runner_init(state.path(), &dispatcher_url, "e2e", &key);
    let out = common::run(
        common::command(RUNNER_ADMIN)
            .arg("--state-dir")
            .arg(state.path())
            .args(["cycle", "--force", "--max-seconds", "120", "--verbose"]),
    );
    common::assert_status(&out, 0);

    // Batch size 2: two batches, then an empty answer that acknowledged the last results.
    let received = smtp.messages();
    assert_eq!(received.len(), 3, "{received:?}");
    let rows = db
        .query(
            "SELECT to_addrs, state, recipients_sent, recipients_failed
               FROM mailrun.messages ORDER BY id",
            &[],
        )
        .expect("messages");
    let states: Vec<MessageRow> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(states[0].1, "sent", "{states:?}");
    assert_eq!(states[1].1, "sent", "{states:?}");
    assert!(
        states[1].3.contains(&"nobody@example.org".to_string()),
        "{states:?}"
    );
    assert_eq!(states[2].1, "deferred", "{states:?}");
    assert_eq!(states[3].1, "sent", "{states:?}");
    // The Message-ID the server saw is the dispatcher's.
    let ids: Vec<String> = db
        .query(
            "SELECT message_id_header FROM mailrun.messages ORDER BY id",
            &[],
        )
        .expect("ids")
        .iter()
        .map(|r| r.get(0))
        .collect();
    for m in &received {
        assert!(
            ids.contains(m.message_id.as_ref().expect("Message-ID")),
            "{m:?}"
        );
    }
    // Nothing left in the runner's outbox or spool: every result was acknowledged.
    let leftovers = |sub: &str| {
        std::fs::read_dir(state.path().join(sub))
            .expect("dir")
            .count()
    };
    assert_eq!(leftovers("outbox"), 0);
    assert_eq!(leftovers("spool"), 0);
    let attempts: i64 = db
        .query_one("SELECT count(*) FROM mailrun.delivery_attempts", &[])
        .expect("attempts")
        .get(0);
    assert_eq!(attempts, 4);
}

use crate::common::{apache, web};

#[test]
fn runner_cgi_behind_lighttpd_answers_ready_and_config_updates() {
    runner_cgi_answers_ready_and_config_updates(|programs, env| {
        let server = web::Lighttpd::start_cgi(programs, env);
        let url = server.url("runner-cgi");
        (Box::new(server) as Box<dyn ErrorLog>, url)
    });
}

#[test]
fn runner_cgi_behind_apache_mod_cgid_answers_ready_and_config_updates() {
    runner_cgi_answers_ready_and_config_updates(|programs, env| {
        let server = apache::Apache::start_cgi(programs, env);
        let url = server.url("runner-cgi");
        (Box::new(server) as Box<dyn ErrorLog>, url)
    });
}

/// What a failing assertion shows of the web server in front of the CGI.
trait ErrorLog {
    fn error_log(&self) -> String;
}

impl ErrorLog for web::Lighttpd {
    fn error_log(&self) -> String {
        web::Lighttpd::error_log(self)
    }
}

impl ErrorLog for apache::Apache {
    fn error_log(&self) -> String {
        apache::Apache::error_log(self)
    }
}

type StartServer = fn(&[(&str, &Path)], &[(&str, &str)]) -> (Box<dyn ErrorLog>, String);

fn runner_cgi_answers_ready_and_config_updates(start: StartServer) {
    use mailrun::protocol::codec;
    use mailrun::protocol::{
        Body, FaultReason, JobRunnerConfigUpdate, JobRunnerReady, ReadyStatus, RunnerSettings,
    };
    use mailrun::web::client::{Client, ClientOptions};

    let state = common::temp_dir();
    let key = SigningKey::generate("key-cgi");
    common::runner_init(
        state.path(),
        "http://127.0.0.1:9/cgi-bin/dispatch-cgi",
        "e2e",
        &key,
    );
    let state_dir = state.path().display().to_string();
    // Under Apache the CGI runs as the server's user, who must own the state folder.
    apache::give_to_server(state.path());
    let (server, url) = start(
        &[("runner-cgi", Path::new(env!("CARGO_BIN_EXE_runner-cgi")))],
        &[("MAILRUN_RUNNER_DIR", state_dir.as_str())],
    );
    let client = Client::new(ClientOptions {
        connect_timeout: Duration::from_secs(5),
        timeout: Duration::from_secs(30),
        allow_plain_http: false,
        max_response_bytes: 1024 * 1024,
    });
    let call = |body: &Body| {
        let bytes = codec::encode(body);
        let resp = client
            .post_signed(&url, &key, codec::soap_action(body), &bytes)
            .unwrap_or_else(|e| panic!("{e}\n{}", server.error_log()));
        (
            resp.status,
            codec::decode(&resp.body).expect("SOAP answer"),
            resp.authenticated,
        )
    };

    let (status, answer, authenticated) = call(&Body::JobRunnerReady(JobRunnerReady {
        runner_id: "e2e".into(),
        queued: 5,
    }));
    assert_eq!(status, 200, "{answer:?}\n{}", server.error_log());
    assert!(authenticated);
    assert!(
        matches!(answer, Body::JobRunnerReadyResponse(ref r) if r.status == ReadyStatus::Accepted),
        "{answer:?}"
    );
    assert!(state.path().join("ready").exists());

    let update = |version| {
        Body::JobRunnerConfigUpdate(JobRunnerConfigUpdate {
            runner_id: "e2e".into(),
            version,
            settings: RunnerSettings {
                batch_size: 7,
                send_rate_per_second: 0.0,
                smtp_connect_timeout_seconds: 30,
                smtp_command_timeout_seconds: 300,
                smtp_data_timeout_seconds: 600,
                poll_interval_seconds: 60,
                lease_safety_margin_seconds: 30,
                dispatcher_url: "http://127.0.0.1:9/cgi-bin/dispatch-cgi".into(),
                software: None,
                reply_policy: None,
                max_sessions: None,
                max_sessions_per_account: None,
            },
        })
    };
    let (status, answer, _) = call(&update(1));
    assert_eq!(status, 200, "{answer:?}");
    assert!(matches!(answer, Body::JobRunnerConfigUpdateResponse(ref r) if r.applied_version == 1));
    let (status, answer, _) = call(&update(1));
    assert_eq!(status, 500);
    assert!(matches!(answer, Body::Fault(ref f) if f.reason == FaultReason::VersionNotIncreasing));
    let toml = std::fs::read_to_string(state.path().join("runner.toml")).expect("runner.toml");
    assert!(toml.contains("batch_size = 7"), "{toml}");
}

/// The Apache harness as PHP-only shared hosting runs scripts: mod_php under prefork, the
/// script executed by the server's user, not by the tester.
#[test]
fn apache_harness_runs_php_as_the_server_user() {
    let server = apache::Apache::start(apache::ApacheConfig {
        mpm: apache::Mpm::Prefork,
        modules: &["php"],
        extra: "<FilesMatch \"\\.php$\">\n    SetHandler application/x-httpd-php\n</FilesMatch>\n"
            .into(),
    });
    std::fs::write(
        server.root().join("who.php"),
        "<?php echo posix_getpwuid(posix_geteuid())['name'], ' ', PHP_MAJOR_VERSION;",
    )
    .expect("write who.php");
    let body = ureq::get(&server.url_of("/who.php"))
        .call()
        .unwrap_or_else(|e| panic!("{e}\n{}", server.error_log()))
        .into_body()
        .read_to_string()
        .expect("body");
    let expected_user = if common::is_root() {
        apache::SERVER_USER.to_string()
    } else {
        String::from_utf8_lossy(
            &std::process::Command::new("id")
                .arg("-un")
                .output()
                .unwrap()
                .stdout,
        )
        .trim()
        .to_string()
    };
    assert_eq!(body, format!("{expected_user} 8"), "{}", server.error_log());
}
