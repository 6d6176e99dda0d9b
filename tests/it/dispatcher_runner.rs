//! The dispatcher's commands against the real runner commands: dispatch-tick wakes a
//! `runner-cgi --listen`, push-config updates its runner.toml, and `runner-poll` fetches
//! a batch from dispatch-cgi behind lighttpd. Both sides use only their own binaries.
use crate::common;
use crate::common::web;

use std::path::Path;
use std::process::{Child, Stdio};

use mailrun::protocol::sign::SigningKey;

const CGI: &str = env!("CARGO_BIN_EXE_dispatch-cgi");
const TICK: &str = env!("CARGO_BIN_EXE_dispatch-tick");
const PUSH: &str = env!("CARGO_BIN_EXE_push-config");
const RUNNER_CGI: &str = env!("CARGO_BIN_EXE_runner-cgi");
const RUNNER_POLL: &str = env!("CARGO_BIN_EXE_runner-poll");

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn runner_cgi_listen(state: &Path) -> (Killed, String) {
    let port = common::free_port();
    let child = common::command(RUNNER_CGI)
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

#[test]
fn tick_push_and_poll_with_the_real_runner_commands() {
    let url = common::initialised_db("dispatcher_runner");
    let mut db = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    db.batch_execute(
        "INSERT INTO mailrun.smtp_accounts (name, host, port, security)
         VALUES ('test', '127.0.0.1', 2525, 'none')",
    )
    .expect("account");
    let key = SigningKey::generate("key-e2e");

    let server = web::Lighttpd::start_cgi(
        &[("dispatch-cgi", Path::new(CGI))],
        &[("MAILRUN_DATABASE_URL", url.as_str())],
    );
    let dispatcher_url = server.url("dispatch-cgi");
    let state = common::temp_dir();
    common::runner_init(state.path(), &dispatcher_url, "e2e", &key);
    let (_runner, runner_url) = runner_cgi_listen(state.path());
    db.execute(
        "INSERT INTO mailrun.runners (id, endpoint, batch_size, key_id, secret)
         VALUES ('e2e', $1, 10, $2, $3)",
        &[&runner_url, &key.key_id, &key.secret.to_vec()],
    )
    .expect("runner");
    for i in 0..3 {
        let message = serde_json::json!({
            "from": "sender@example.org",
            "to": [format!("rcpt{i}@example.org")],
            "subject": "hello",
            "text": "hello",
            "account": "test",
        });
        db.execute("SELECT mailrun.enqueue($1::jsonb)", &[&message])
            .expect("enqueue");
    }

    // The tick wakes the runner, which answers and is recorded.
    let out = common::run(common::command(TICK).args(["--database-url", &url, "--json"]));
    common::assert_status(&out, 0);
    let summary: serde_json::Value = serde_json::from_str(&common::stdout(&out)).expect("json");
    assert_eq!(summary["runners"][0]["status"], "accepted", "{summary}");
    let status: Option<String> = db
        .query_one(
            "SELECT last_status FROM mailrun.runners WHERE id = 'e2e'",
            &[],
        )
        .expect("row")
        .get(0);
    assert_eq!(status.as_deref(), Some("accepted"));

    // push-config: the runner validates and applies version 1.
    let out = common::run(common::command(PUSH).args([
        "--database-url",
        &url,
        "set",
        &format!("dispatcher_url={dispatcher_url}"),
        "batch_size=2",
    ]));
    common::assert_status(&out, 0);
    let applied: Option<i64> = db
        .query_one(
            "SELECT config_version_applied FROM mailrun.runners WHERE id = 'e2e'",
            &[],
        )
        .expect("row")
        .get(0);
    assert_eq!(applied, Some(1));
    // Pushing the same version again with --force: the runner says it is current.
    let out = common::run(common::command(PUSH).args([
        "--database-url",
        &url,
        "--all",
        "--force",
        "--json",
    ]));
    common::assert_status(&out, 0);
    let summary: serde_json::Value = serde_json::from_str(&common::stdout(&out)).expect("json");
    assert_eq!(summary["runners"][0]["status"], "current", "{summary}");

    // runner-poll fetches a batch from dispatch-cgi behind lighttpd.
    let out = common::run(
        common::command(RUNNER_POLL)
            .arg("--state-dir")
            .arg(state.path()),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "runner-poll\n{}\n{}\n{}",
        common::stdout(&out),
        common::stderr(&out),
        server.error_log()
    );
    let leased: i64 = db
        .query_one(
            "SELECT count(*) FROM mailrun.messages WHERE state = 'leased' AND lease_runner = 'e2e'",
            &[],
        )
        .expect("count")
        .get(0);
    assert!(leased >= 1, "runner-poll leased nothing");
}
