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

/// An answer lost on the way: the dispatcher leased a batch to the runner, which never got
/// it. The runner's next JobRunRequest lists the batches it holds; the missing one's
/// messages go back to the queue at once and come in the answer to that same request,
/// instead of after the lease (10 minutes). Batches the runner does hold stay leased.
#[test]
fn a_batch_whose_answer_was_lost_is_handed_out_again_on_the_next_request() {
    let url = common::initialised_db("lost_answer");
    let mut db = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    db.batch_execute(
        "INSERT INTO mailrun.smtp_accounts (name, host, port, security)
         VALUES ('test', '127.0.0.1', 2525, 'none')",
    )
    .expect("account");
    let key = SigningKey::generate("key-lost");
    let server = web::Lighttpd::start_cgi(
        &[("dispatch-cgi", Path::new(CGI))],
        &[("MAILRUN_DATABASE_URL", url.as_str())],
    );
    let state = common::temp_dir();
    common::runner_init(state.path(), &server.url("dispatch-cgi"), "lost", &key);
    db.execute(
        "INSERT INTO mailrun.runners (id, endpoint, batch_size, key_id, secret)
         VALUES ('lost', 'http://127.0.0.1:9/unused', 2, $1, $2)",
        &[&key.key_id, &key.secret.to_vec()],
    )
    .expect("runner");
    for i in 0..4 {
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
    let poll = || {
        let out = common::run(
            common::command(RUNNER_POLL)
                .arg("--state-dir")
                .arg(state.path())
                .arg("--force"),
        );
        common::assert_status(&out, 0);
    };
    let leases = |db: &mut postgres::Client| -> Vec<(i64, String)> {
        db.query(
            "SELECT id, job_run_id::text FROM mailrun.messages WHERE state = 'leased' ORDER BY id",
            &[],
        )
        .expect("leases")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    };

    // A batch the runner really received (and still holds: spooled, not delivered).
    poll();
    let held = leases(&mut db);
    assert_eq!(held.len(), 2, "{held:?}");
    // The next two are claimed for the runner, but the answer never reaches it.
    let lost: Vec<String> = db
        .query(
            "SELECT DISTINCT job_run_id::text FROM mailrun.claim_batch('lost', 2, 600)",
            &[],
        )
        .expect("claim")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(lost.len(), 1);
    assert_eq!(leases(&mut db).len(), 4);

    // The runner asks again: the lost batch's two messages come back in a new batch at
    // once; the batch it holds keeps its leases.
    poll();
    let now = leases(&mut db);
    assert_eq!(now.len(), 4, "{now:?}");
    for (id, job_run) in &now {
        assert_ne!(
            job_run, &lost[0],
            "message {id} is still leased in the lost batch"
        );
    }
    for (id, job_run) in &held {
        assert!(
            now.contains(&(*id, job_run.clone())),
            "message {id} of the held batch {job_run} was released: {now:?}"
        );
    }
    let spooled = std::fs::read_dir(state.path().join("spool"))
        .expect("spool")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "xml"))
        })
        .count();
    assert_eq!(
        spooled, 2,
        "the runner holds the first batch and the re-issued one"
    );
}
