//! The whole handshake on real parts: dispatch-cgi and two runner-cgi instances, each
//! behind its own lighttpd on loopback, PostgreSQL, and a real SMTP server (aiosmtpd,
//! recording every Message-ID). push-config sends JobRunnerConfigUpdate to both runners;
//! dispatch-tick sends JobRunnerReady; each runner-cgi starts `runner-admin cycle`, which
//! polls dispatch-cgi (JobRunRequest carrying the previous results), delivers over SMTP,
//! and stops at the empty JobRun. Every message must reach the SMTP server exactly once
//! and have exactly one recorded attempt.
//!
//! 10 000 messages by default; `MAILRUN_SOAK=1` runs 100 000 (set `MAILRUN_E2E_MESSAGES`
//! for any other count).
use crate::common;
use crate::common::pipeline;
use crate::common::web;

use std::time::Duration;

use common::smtp::{SmtpServer, SmtpServerOptions};
use pipeline::{Db, RunnerNode};

fn message_count() -> i64 {
    if let Ok(n) = std::env::var("MAILRUN_E2E_MESSAGES") {
        return n.parse().expect("MAILRUN_E2E_MESSAGES is a number");
    }
    if mailrun::cli::env_switch("MAILRUN_SOAK").unwrap_or_else(|e| panic!("{e}")) {
        100_000
    } else {
        10_000
    }
}

#[test]
fn ten_thousand_messages_through_two_runners_behind_lighttpd_delivered_exactly_once() {
    let n = message_count();
    let smtp = SmtpServer::start(SmtpServerOptions::default());
    let db = Db::new(common::cluster().fresh_db("e2e_handshake"), smtp.port);
    let dispatcher = pipeline::serve_dispatcher(&db.url, &[]);
    let dispatcher_url = dispatcher.url("dispatch-cgi");

    let runners: Vec<RunnerNode> = ["east", "west"]
        .iter()
        .map(|id| RunnerNode::init(id, &dispatcher_url))
        .collect();
    let servers: Vec<web::Lighttpd> = runners.iter().map(RunnerNode::serve).collect();
    for (runner, server) in runners.iter().zip(&servers) {
        db.add_runner(runner, &server.url("runner-cgi"), 500);
    }

    // JobRunnerConfigUpdate to both: big batches, and a cycle budget long enough that
    // one JobRunnerReady normally empties the queue (later ticks cover the rest).
    let out = common::run(common::command(pipeline::PUSH_CONFIG).args([
        "--database-url",
        &db.url,
        "set",
        &format!("dispatcher_url={dispatcher_url}"),
        "batch_size=500",
        "poll_interval_seconds=600",
    ]));
    common::assert_status(&out, 0);
    let applied = db.count("SELECT count(*) FROM mailrun.runners WHERE config_version_applied = 1");
    assert_eq!(applied, 2, "both runners applied version 1");
    for runner in &runners {
        let toml = std::fs::read_to_string(runner.dir().join("runner.toml")).expect("toml");
        assert!(toml.contains("batch_size = 500"), "{toml}");
    }

    // Nothing due: the tick contacts nobody.
    common::assert_status(&pipeline::tick(&db.url, &[]), 3);

    db.enqueue(n);

    let watch =
        pipeline::InterruptionWatch::start(runners.iter().map(|r| r.dir().to_path_buf()).collect());

    // The first tick wakes both runners (JobRunnerReady → accepted, cycle started).
    let out = pipeline::tick(&db.url, &["--json"]);
    common::assert_status(&out, 0);
    let summary: serde_json::Value =
        serde_json::from_str(&common::stdout(&out)).expect("tick --json");
    let statuses: Vec<&str> = summary["runners"]
        .as_array()
        .expect("runners")
        .iter()
        .map(|r| r["status"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(statuses, ["accepted", "accepted"], "{summary}");

    // Cron goes on ticking until every message is sent; a busy runner answers "busy".
    // Each runner's cron line (`runner-admin cycle`, the documented fallback that resumes
    // a batch left by an interrupted cycle) runs every few ticks too, as in production.
    let logs = common::temp_dir();
    let mut cron: Vec<Option<std::process::Child>> = runners.iter().map(|_| None).collect();
    let bound = Duration::from_secs(if n > 20_000 { 3600 } else { 900 });
    let mut ticks = 1;
    pipeline::wait_until(bound, "every message sent", || {
        if db.count("SELECT count(*) FROM mailrun.messages WHERE state = 'sent'") == n {
            return true;
        }
        std::thread::sleep(Duration::from_secs(2));
        ticks += 1;
        if ticks % 5 == 0 {
            for (runner, slot) in runners.iter().zip(cron.iter_mut()) {
                if slot
                    .as_mut()
                    .is_some_and(|c| c.try_wait().ok().flatten().is_none())
                {
                    continue; // the previous cron run is still going
                }
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(logs.path().join(format!("cron-{}.log", runner.id)))
                    .expect("cron log");
                *slot = Some(
                    runner
                        .command(pipeline::RUNNER_ADMIN)
                        .args(["cycle", "--verbose", "--max-seconds", "55"])
                        .stdin(std::process::Stdio::null())
                        .stdout(std::process::Stdio::null())
                        .stderr(log)
                        .spawn()
                        .expect("runner-admin cycle"),
                );
            }
        }
        let out = pipeline::tick(&db.url, &[]);
        assert!(
            matches!(out.status.code(), Some(0) | Some(3)),
            "dispatch-tick: {}\n{}\n{}",
            common::stderr(&out),
            dispatcher.error_log(),
            servers[0].error_log()
        );
        false
    });

    // The cycles end at the empty JobRun, which acknowledged the last results. An answer
    // lost on the way back (the results applied, the acknowledgement not received) leaves
    // results in an outbox until the next cron run reports them again: cron goes on.
    for child in cron.iter_mut().flatten() {
        let _ = child.wait();
    }
    let mut waited = 0;
    pipeline::wait_until(Duration::from_secs(180), "runners idle", || {
        if runners.iter().all(|r| r.leftovers().is_empty()) {
            return true;
        }
        waited += 1;
        if waited % 25 == 0 {
            for runner in runners.iter().filter(|r| !r.leftovers().is_empty()) {
                let out = runner.cycle(30);
                eprintln!(
                    "cron run of {} for {:?}: {}",
                    runner.id,
                    runner.leftovers(),
                    common::stderr(&out)
                );
            }
        }
        false
    });
    for runner in &runners {
        let log = std::fs::read_to_string(logs.path().join(format!("cron-{}.log", runner.id)))
            .unwrap_or_default();
        // Per-message lines left out: what matters is leftovers resumed and errors.
        let notable: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("leftover") || l.contains("error"))
            .collect();
        if !notable.is_empty() {
            eprintln!("cron runs of {}:\n{}", runner.id, notable.join("\n"));
        }
    }

    // No duplicates, unless a cycle died mid-batch (on this shared machine: a full disk
    // failing the journal write); each such batch may resend its one in-flight message.
    let interrupted = watch.finish();
    if !interrupted.is_empty() {
        eprintln!("batches resumed after an interrupted cycle: {interrupted:?}");
    }
    let delivered = pipeline::assert_all_delivered(&db, &smtp, interrupted.len());
    assert_eq!(delivered.total() - delivered.duplicates(), n as usize);
    assert_eq!(
        db.count("SELECT count(*) FROM mailrun.delivery_attempts"),
        n,
        "exactly one attempt recorded per message"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM mailrun.delivery_attempts WHERE outcome <> 'sent' OR late"),
        0
    );
    // Both runners did part of the work (when there is more than one batch for each),
    // under batches no larger than configured.
    for runner in runners.iter().filter(|_| n > 1000) {
        let mut c = db.client();
        let row = c
            .query_one(
                "SELECT count(*), coalesce(max(message_count), 0) FROM mailrun.job_runs
                  WHERE runner_id = $1 AND message_count > 0",
                &[&runner.id],
            )
            .expect("job runs");
        let (batches, largest): (i64, i32) = (row.get(0), row.get(1));
        assert!(batches > 0, "runner {} got no batch", runner.id);
        assert!(largest <= 500, "batch of {largest}");
        let attempts: i64 = c
            .query_one(
                "SELECT count(*) FROM mailrun.delivery_attempts WHERE runner_id = $1",
                &[&runner.id],
            )
            .expect("attempts")
            .get(0);
        assert!(attempts > 0, "runner {} delivered nothing", runner.id);
    }
    // Afterwards the queue is empty again: the tick contacts nobody.
    common::assert_status(&pipeline::tick(&db.url, &[]), 3);
    eprintln!("{n} messages delivered exactly once after {ticks} tick(s)");
}

// ---------------------------------------------------------------------------------------
// Interop: zeep, driven only by protocol/'s WSDL and the signing rule
// ---------------------------------------------------------------------------------------

/// Runs tests/support/zeep_interop.py with python3 from the test-setup virtualenv (or
/// MAILRUN_TEST_PYTHON, or PATH); returns its JSON output.
fn zeep(args: &[&str]) -> serde_json::Value {
    let venv = pipeline::manifest_path(".venv-test/bin/python3");
    let python = std::env::var("MAILRUN_TEST_PYTHON").unwrap_or_else(|_| {
        if venv.exists() {
            venv.display().to_string()
        } else {
            "python3".to_string()
        }
    });
    let out = std::process::Command::new(&python)
        .arg(pipeline::manifest_path("tests/support/zeep_interop.py"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}: run scripts/test-setup.sh"));
    assert!(
        out.status.success(),
        "zeep failed (run scripts/test-setup.sh if zeep is missing):\n{}\n{}",
        common::stdout(&out),
        common::stderr(&out)
    );
    serde_json::from_slice(&out.stdout).expect("zeep JSON output")
}

#[test]
fn zeep_plays_a_runner_against_dispatch_cgi_gets_a_batch_and_reports_results() {
    let db = Db::new(common::cluster().fresh_db("e2e_zeep_runner"), 9);
    let dispatcher = pipeline::serve_dispatcher(&db.url, &[]);
    let runner = RunnerNode::init("zeep-runner", &dispatcher.url("dispatch-cgi"));
    db.add_runner(&runner, "http://127.0.0.1:9/unused", 10);
    db.enqueue(3);
    let wsdl = pipeline::manifest_path("protocol/dispatcher.wsdl");
    let got = zeep(&[
        "runner",
        &wsdl.display().to_string(),
        &dispatcher.url("dispatch-cgi"),
        &runner.id,
        &runner.key.key_id,
        &runner.key.secret_hex(),
    ]);
    let ids = |v: &serde_json::Value| -> Vec<i64> {
        let mut ids: Vec<i64> = v
            .as_array()
            .expect("ids")
            .iter()
            .filter_map(|x| x.as_i64())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&got["batch"]).len(), 3, "{got}");
    assert_eq!(ids(&got["acknowledged"]), ids(&got["batch"]), "{got}");
    assert_eq!(got["final_messages"], 0, "{got}");
    // The dispatcher recorded zeep's results like any runner's.
    assert_eq!(
        db.count("SELECT count(*) FROM mailrun.messages WHERE state = 'sent'"),
        3
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM mailrun.delivery_attempts
              WHERE runner_id = 'zeep-runner' AND outcome = 'sent' AND smtp_code = 250"
        ),
        3
    );
}

#[test]
fn zeep_plays_the_dispatcher_against_runner_cgi_ready_and_config_update() {
    let runner = RunnerNode::init("zeep-target", "http://127.0.0.1:9/cgi-bin/dispatch-cgi");
    let server = runner.serve();
    let wsdl = pipeline::manifest_path("protocol/runner.wsdl");
    let got = zeep(&[
        "dispatcher",
        &wsdl.display().to_string(),
        &server.url("runner-cgi"),
        &runner.id,
        &runner.key.key_id,
        &runner.key.secret_hex(),
        "http://127.0.0.1:9/cgi-bin/dispatch-cgi",
    ]);
    assert_eq!(got["ready"], "accepted", "{got}");
    assert_eq!(got["config_version"], 0, "{got}");
    assert_eq!(got["applied"], 1, "{got}");
    assert_eq!(got["again"], "VersionNotIncreasing", "{got}");
    assert!(runner.dir().join("ready").exists());
    let toml = std::fs::read_to_string(runner.dir().join("runner.toml")).expect("runner.toml");
    assert!(toml.contains("batch_size = 25"), "{toml}");
}

/// `dispatch-admin wsdl --url` and `runner-admin wsdl --url` print WSDLs zeep uses as
/// they are: one file each (schema inlined), the real address, no override (issue 18).
#[test]
fn zeep_uses_the_printed_wsdls_as_they_are() {
    let db = Db::new(common::cluster().fresh_db("e2e_zeep_wsdl"), 9);
    let dispatcher = pipeline::serve_dispatcher(&db.url, &[]);
    let runner = RunnerNode::init("zeep-wsdl", &dispatcher.url("dispatch-cgi"));
    db.add_runner(&runner, "http://127.0.0.1:9/unused", 10);
    db.enqueue(2);
    let dir = common::temp_dir();
    let print = |bin: &str, url: &str, file: &str| {
        let out = common::run(common::command(bin).args(["wsdl", "--url", url]));
        common::assert_status(&out, 0);
        let path = dir.path().join(file);
        std::fs::write(&path, &out.stdout).expect("write WSDL");
        path.display().to_string()
    };
    let wsdl = print(
        env!("CARGO_BIN_EXE_dispatch-admin"),
        &dispatcher.url("dispatch-cgi"),
        "dispatcher.wsdl",
    );
    let got = zeep(&[
        "runner",
        &wsdl,
        "-",
        &runner.id,
        &runner.key.key_id,
        &runner.key.secret_hex(),
    ]);
    assert_eq!(got["batch"].as_array().map(Vec::len), Some(2), "{got}");
    assert_eq!(got["final_messages"], 0, "{got}");

    let target = RunnerNode::init(
        "zeep-wsdl-target",
        "http://127.0.0.1:9/cgi-bin/dispatch-cgi",
    );
    let server = target.serve();
    let wsdl = print(
        pipeline::RUNNER_ADMIN,
        &server.url("runner-cgi"),
        "runner.wsdl",
    );
    let got = zeep(&[
        "dispatcher",
        &wsdl,
        "-",
        &target.id,
        &target.key.key_id,
        &target.key.secret_hex(),
        "http://127.0.0.1:9/cgi-bin/dispatch-cgi",
    ]);
    assert_eq!(got["ready"], "accepted", "{got}");
    assert_eq!(got["applied"], 1, "{got}");
}
