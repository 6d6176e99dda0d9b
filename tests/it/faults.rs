//! Faults of the assembled system (real dispatch-cgi behind lighttpd or `--listen`, real
//! runner commands, PostgreSQL, aiosmtpd). Each test ends with the same invariant:
//! nothing lost (every queued message reached the SMTP server and is recorded sent with
//! its attempt), duplicates at most the messages in flight at the fault.
use crate::common;
use crate::common::pipeline;

use std::process::Stdio;
use std::time::Duration;

use common::smtp::{SmtpServer, SmtpServerOptions};
use pipeline::{Db, Listening, RunnerNode};

/// Runs `runner-admin cycle --force` until every message is sent (the cron fallback),
/// within a safety bound.
fn cycle_until_all_sent(db: &Db, runner: &RunnerNode, n: i64, bound: Duration) {
    pipeline::wait_until(bound, "every message sent", || {
        if db.count("SELECT count(*) FROM mailrun.messages WHERE state = 'sent'") == n {
            return true;
        }
        let out = runner.cycle(30);
        assert!(
            matches!(out.status.code(), Some(0) | Some(3)),
            "cycle of {}: {}",
            runner.id,
            common::stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(500));
        false
    });
}

fn leased(db: &Db) -> i64 {
    db.count("SELECT count(*) FROM mailrun.messages WHERE state = 'leased'")
}

/// A runner takes a batch and vanishes: its messages come back when the lease expires and
/// the other runner delivers them; nobody delivers them twice.
#[test]
fn a_runner_that_vanishes_with_a_batch_loses_nothing() {
    let smtp = SmtpServer::start(SmtpServerOptions::default());
    let db = Db::new(common::cluster().fresh_db("faults_vanish"), smtp.port);
    let dispatcher = pipeline::serve_dispatcher(&db.url, &[("MAILRUN_LEASE_SECONDS", "45")]);
    let url = dispatcher.url("dispatch-cgi");
    let ghost = RunnerNode::init("ghost", &url);
    let other = RunnerNode::init("other", &url);
    // A short lease keeps the test short; the margin must leave time to send within it.
    for runner in [&ghost, &other] {
        runner.set_setting("lease_safety_margin_seconds", "10");
    }
    db.add_runner(&ghost, "http://127.0.0.1:9/ghost", 5);
    db.add_runner(&other, "http://127.0.0.1:9/other", 50);
    db.enqueue(20);

    let out = ghost.run(pipeline::RUNNER_POLL, &["--force"]);
    common::assert_status(&out, 0);
    assert_eq!(leased(&db), 5);
    let taken: Vec<i64> = db
        .client()
        .query(
            "SELECT id FROM mailrun.messages WHERE lease_runner = 'ghost' ORDER BY id",
            &[],
        )
        .expect("leased ids")
        .iter()
        .map(|r| r.get(0))
        .collect();
    drop(ghost); // its state folder, spooled batch and all, is gone

    // The other runner delivers the rest now, and the ghost's five once the lease ends.
    cycle_until_all_sent(&db, &other, 20, Duration::from_secs(180));
    pipeline::assert_all_delivered(&db, &smtp, 0);
    let by_other: i64 = db
        .client()
        .query_one(
            "SELECT count(*) FROM mailrun.delivery_attempts
              WHERE runner_id = 'other' AND outcome = 'sent' AND message_id = ANY($1)",
            &[&taken],
        )
        .expect("attempts")
        .get(0);
    assert_eq!(
        by_other, 5,
        "the vanished runner's messages went to the other one"
    );
}

/// kill -9 of dispatch-cgi (one CGI process under lighttpd) while it is inside its
/// transaction, after the runner's results were applied but before the commit: nothing
/// of that request stays; the runner still holds its results and reports them on the
/// next poll.
#[test]
fn kill_9_of_dispatch_cgi_mid_request_loses_nothing() {
    let smtp = SmtpServer::start(SmtpServerOptions::default());
    let db = Db::new(common::cluster().fresh_db("faults_kill_cgi"), smtp.port);
    let dispatcher = pipeline::serve_dispatcher(&db.url, &[]);
    let runner = RunnerNode::init("r1", &dispatcher.url("dispatch-cgi"));
    db.add_runner(&runner, "http://127.0.0.1:9/r1", 5);
    db.enqueue(10);

    common::assert_status(&runner.run(pipeline::RUNNER_POLL, &["--force"]), 0);
    common::assert_status(&runner.run(pipeline::RUNNER_SEND, &[]), 0);
    assert_eq!(smtp.messages().len(), 5);
    assert!(runner.leftovers().iter().any(|f| f.starts_with("outbox/")));

    // Hold the job_runs table so the next request stops at its claim, after applying
    // the results it carries, inside its uncommitted transaction.
    let mut blocker = db.client();
    let mut tx = blocker.transaction().expect("begin");
    tx.batch_execute("LOCK TABLE mailrun.job_runs IN EXCLUSIVE MODE")
        .expect("lock");
    let poll = runner
        .command(pipeline::RUNNER_POLL)
        .arg("--force")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runner-poll");
    pipeline::wait_until(
        Duration::from_secs(60),
        "dispatch-cgi waiting inside its transaction",
        || {
            db.count(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = current_database() AND wait_event_type = 'Lock'",
            ) > 0
        },
    );
    let pids = pipeline::pids_running(&dispatcher.program_path("dispatch-cgi"));
    assert_eq!(pids.len(), 1, "one dispatch-cgi process: {pids:?}");
    pipeline::kill_9(pids[0]);
    tx.rollback().expect("release the lock");
    drop(blocker);
    let out = poll.wait_with_output().expect("runner-poll");
    assert!(
        !out.status.success(),
        "the poll cannot have succeeded: {}",
        common::stderr(&out)
    );

    // The killed request changed nothing once its backend noticed: no attempt recorded,
    // the first batch still leased, the results still in the runner's outbox.
    pipeline::wait_until(
        Duration::from_secs(30),
        "the dead request's backend gone",
        || {
            db.count(
                "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND pid <> pg_backend_pid()
                AND backend_type = 'client backend'",
            ) == 0
        },
    );
    assert_eq!(
        db.count("SELECT count(*) FROM mailrun.delivery_attempts"),
        0
    );
    assert_eq!(leased(&db), 5);
    assert!(runner.leftovers().iter().any(|f| f.starts_with("outbox/")));

    cycle_until_all_sent(&db, &runner, 10, Duration::from_secs(120));
    pipeline::assert_all_delivered(&db, &smtp, 0);
    assert_eq!(
        db.count("SELECT count(*) FROM mailrun.delivery_attempts"),
        10
    );
    assert!(runner.leftovers().is_empty(), "{:?}", runner.leftovers());
}

/// PostgreSQL stops while a runner is mid-batch and comes back: the runner's report is
/// refused as Unavailable (exit 69), it keeps its results, and the next cycle delivers
/// the rest. Runs on a cluster of its own (stopping the shared one would break other
/// tests).
#[test]
fn postgresql_stopped_and_restarted_during_a_run_loses_nothing() {
    let own = common::PrivateCluster::start();
    let smtp = SmtpServer::start(SmtpServerOptions {
        delay: 0.3,
        ..Default::default()
    });
    let db = Db::new(own.cluster.fresh_db("faults_pg_restart"), smtp.port);
    let dispatcher = pipeline::serve_dispatcher(&db.url, &[]);
    let runner = RunnerNode::init("r1", &dispatcher.url("dispatch-cgi"));
    db.add_runner(&runner, "http://127.0.0.1:9/r1", 5);
    db.enqueue(20);

    let cycle = runner
        .command(pipeline::RUNNER_ADMIN)
        .args([
            "cycle",
            "--force",
            "--max-seconds",
            "120",
            "--timeout",
            "20",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cycle");
    pipeline::wait_until(Duration::from_secs(60), "a first delivery", || {
        !smtp.messages().is_empty()
    });
    own.cluster.stop();
    let out = cycle.wait_with_output().expect("cycle");
    common::assert_status(&out, 69);
    assert!(
        common::stderr(&out).contains("Unavailable"),
        "{}",
        common::stderr(&out)
    );
    // The tick cannot reach the database either: unavailable, not a crash.
    common::assert_status(&pipeline::tick(&db.url, &[]), 69);

    own.cluster.start();
    cycle_until_all_sent(&db, &runner, 20, Duration::from_secs(180));
    pipeline::assert_all_delivered(&db, &smtp, 0);
    assert_eq!(
        db.count("SELECT count(*) FROM mailrun.delivery_attempts"),
        20
    );
}

/// The dispatcher goes away between a runner's delivery and its report: the runner says
/// so (exit 69) and keeps its results; when the dispatcher is back they are acknowledged
/// and the rest is delivered, nothing twice.
#[test]
fn dispatcher_unreachable_from_the_runner_loses_nothing() {
    let smtp = SmtpServer::start(SmtpServerOptions::default());
    let db = Db::new(
        common::cluster().fresh_db("faults_no_dispatcher"),
        smtp.port,
    );
    let port = common::free_port();
    let mut dispatcher = Listening::start(&db.url, port, 600);
    let runner = RunnerNode::init("r1", &dispatcher.url());
    db.add_runner(&runner, "http://127.0.0.1:9/r1", 5);
    db.enqueue(12);

    common::assert_status(&runner.run(pipeline::RUNNER_POLL, &["--force"]), 0);
    common::assert_status(&runner.run(pipeline::RUNNER_SEND, &[]), 0);
    dispatcher.kill();

    let out = runner.run(pipeline::RUNNER_POLL, &["--force"]);
    common::assert_status(&out, 69);
    assert!(
        common::stderr(&out).contains("dispatcher"),
        "{}",
        common::stderr(&out)
    );
    let out = runner.cycle(30);
    common::assert_status(&out, 69);
    assert!(runner.leftovers().iter().any(|f| f.starts_with("outbox/")));
    assert_eq!(leased(&db), 5);
    assert_eq!(
        db.count("SELECT count(*) FROM mailrun.delivery_attempts"),
        0
    );

    let _back = Listening::start(&db.url, port, 600);
    cycle_until_all_sent(&db, &runner, 12, Duration::from_secs(120));
    pipeline::assert_all_delivered(&db, &smtp, 0);
    assert_eq!(
        db.count("SELECT count(*) FROM mailrun.delivery_attempts"),
        12
    );
}

/// dispatch-tick cannot reach a runner: it says so (exit 69 when nobody can take the
/// work), records the runner as unreachable and changes nothing in the queue; a reachable
/// runner is still woken and delivers everything.
#[test]
fn runner_unreachable_from_dispatch_tick_loses_nothing() {
    let smtp = SmtpServer::start(SmtpServerOptions::default());
    let db = Db::new(common::cluster().fresh_db("faults_no_runner"), smtp.port);
    let dispatcher = pipeline::serve_dispatcher(&db.url, &[]);
    let url = dispatcher.url("dispatch-cgi");
    let away = RunnerNode::init("away", &url);
    let dead = format!(
        "http://127.0.0.1:{}/cgi-bin/runner-cgi",
        common::free_port()
    );
    db.add_runner(&away, &dead, 50);
    db.enqueue(8);

    let out = pipeline::tick(&db.url, &[]);
    common::assert_status(&out, 69);
    assert!(
        common::stderr(&out).contains("no runner could be reached"),
        "{}",
        common::stderr(&out)
    );
    let status: Option<String> = db
        .client()
        .query_one(
            "SELECT last_status FROM mailrun.runners WHERE id = 'away'",
            &[],
        )
        .expect("status")
        .get(0);
    assert!(
        status.as_deref().unwrap_or("").starts_with("unreachable"),
        "{status:?}"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM mailrun.messages WHERE state = 'queued'"),
        8
    );

    let here = RunnerNode::init("here", &url);
    let server = here.serve();
    db.add_runner(&here, &server.url("runner-cgi"), 50);
    let out = pipeline::tick(&db.url, &["--json"]);
    common::assert_status(&out, 0);
    let summary: serde_json::Value =
        serde_json::from_str(&common::stdout(&out)).expect("tick --json");
    assert_eq!(summary["available"], 1, "{summary}");
    // runner-cgi started a cycle on "here"; it delivers everything.
    pipeline::wait_until(Duration::from_secs(120), "every message sent", || {
        db.count("SELECT count(*) FROM mailrun.messages WHERE state = 'sent'") == 8
            && here.leftovers().is_empty()
    });
    pipeline::assert_all_delivered(&db, &smtp, 0);
}

/// faketime around one command, to skew its clock only.
fn skewed(offset: &str, bin: &str) -> std::process::Command {
    let faketime = ["/usr/bin/faketime", "/usr/local/bin/faketime"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or_else(|| panic!("faketime not found: run scripts/test-setup.sh"));
    let mut cmd = common::command(faketime);
    cmd.args(["-f", offset, bin]);
    cmd
}

/// Clocks skewed beyond the ±300 s window: a clear refusal both ways, nothing changed;
/// with the clocks agreeing again, everything is delivered.
#[test]
fn clocks_skewed_beyond_the_window_are_refused_clearly() {
    let smtp = SmtpServer::start(SmtpServerOptions::default());
    let db = Db::new(common::cluster().fresh_db("faults_skew"), smtp.port);
    let dispatcher = pipeline::serve_dispatcher(&db.url, &[]);
    let runner = RunnerNode::init("r1", &dispatcher.url("dispatch-cgi"));
    let server = runner.serve();
    db.add_runner(&runner, &server.url("runner-cgi"), 50);
    db.enqueue(4);

    // The runner's clock is 10 minutes ahead: the dispatcher refuses its request.
    let out = common::run(
        skewed("+10m", pipeline::RUNNER_POLL)
            .arg("--state-dir")
            .arg(runner.dir())
            .arg("--force"),
    );
    // The dispatcher's StaleTimestamp fault is unsigned (the runner could not verify a
    // signature made on the dispatcher's clock), so the runner reads the reason and
    // exits 78: a clock is a host's configuration.
    common::assert_status(&out, 78);
    assert!(
        common::stderr(&out).contains("outside the ±300 s window"),
        "{}",
        common::stderr(&out)
    );
    assert_eq!(db.count("SELECT count(*) FROM mailrun.nonces"), 0);
    assert_eq!(db.count("SELECT count(*) FROM mailrun.job_runs"), 0);
    assert_eq!(
        db.count("SELECT count(*) FROM mailrun.messages WHERE state = 'queued'"),
        4
    );

    // The dispatcher's clock is 10 minutes behind: the runner refuses JobRunnerReady
    // and the tick reports it.
    let out = common::run(skewed("-10m", pipeline::DISPATCH_TICK).args([
        "--database-url",
        &db.url,
        "--json",
    ]));
    common::assert_status(&out, 69);
    let summary: serde_json::Value =
        serde_json::from_str(&common::stdout(&out)).expect("tick --json");
    let text = summary.to_string();
    assert!(text.contains("StaleTimestamp"), "{text}");
    assert!(!runner.dir().join("ready").exists());
    assert!(smtp.messages().is_empty());

    cycle_until_all_sent(&db, &runner, 4, Duration::from_secs(60));
    pipeline::assert_all_delivered(&db, &smtp, 0);
}

/// The SMTP server answers 451 to the first messages, then accepts: they are deferred
/// with the 451 recorded, retried after the backoff and delivered once.
#[test]
fn smtp_4xx_then_accepting_defers_then_delivers_once() {
    let smtp = SmtpServer::start(SmtpServerOptions {
        // Not worded like a rate limit: that would also pause the account (docs/quotas.md).
        data_reply: Some("451 4.3.0 temporary local problem".into()),
        data_reply_count: Some(5),
        ..Default::default()
    });
    let db = Db::new(common::cluster().fresh_db("faults_4xx"), smtp.port);
    db.fast_retries();
    let dispatcher = pipeline::serve_dispatcher(&db.url, &[]);
    let runner = RunnerNode::init("r1", &dispatcher.url("dispatch-cgi"));
    db.add_runner(&runner, "http://127.0.0.1:9/r1", 5);
    db.enqueue(5);

    cycle_until_all_sent(&db, &runner, 5, Duration::from_secs(120));
    pipeline::assert_all_delivered(&db, &smtp, 0);
    assert_eq!(
        db.count(
            "SELECT count(*) FROM mailrun.delivery_attempts
              WHERE outcome = 'deferred' AND smtp_code = 451"
        ),
        5
    );
    assert_eq!(
        db.count("SELECT count(*) FROM mailrun.delivery_attempts WHERE outcome = 'sent'"),
        5
    );
    assert_eq!(
        db.count("SELECT count(*) FROM mailrun.messages WHERE attempts = 2"),
        5
    );
}

/// A dispatcher lease no longer than the runner's safety margin leaves no time to start
/// any message: the cycle reports them not attempted (they return to the queue at once)
/// and stops with a clear error instead of fetching the same batch again and again.
#[test]
fn a_lease_shorter_than_the_safety_margin_stops_the_cycle_clearly() {
    let smtp = SmtpServer::start(SmtpServerOptions::default());
    let db = Db::new(common::cluster().fresh_db("faults_short_lease"), smtp.port);
    // 30 s, the shortest lease dispatch-cgi grants, and the same margin on the runner.
    let dispatcher = pipeline::serve_dispatcher(&db.url, &[("MAILRUN_LEASE_SECONDS", "30")]);
    let runner = RunnerNode::init("r1", &dispatcher.url("dispatch-cgi"));
    runner.set_setting("lease_safety_margin_seconds", "30");
    db.add_runner(&runner, "http://127.0.0.1:9/r1", 5);
    db.enqueue(5);

    let out = runner.cycle(30);
    common::assert_status(&out, 75);
    assert!(
        common::stderr(&out).contains("lease_safety_margin_seconds = 30"),
        "{}",
        common::stderr(&out)
    );
    assert!(smtp.messages().is_empty());
    assert_eq!(db.count("SELECT count(*) FROM mailrun.job_runs"), 1);
    assert_eq!(
        db.count("SELECT count(*) FROM mailrun.delivery_attempts WHERE outcome = 'not_attempted'"),
        5
    );
    assert_eq!(leased(&db), 0, "reported, so back in the queue");
    assert!(runner.leftovers().is_empty(), "{:?}", runner.leftovers());
}
