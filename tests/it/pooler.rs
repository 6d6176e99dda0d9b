//! The dispatcher behind PgBouncer in transaction pooling (issue 19): each transaction may
//! run on another server connection, so no command may leave anything on a connection
//! for later (named prepared statements, SET, advisory locks held across transactions,
//! temporary tables, LISTEN).
//!
//! - Every statement the crate makes is unnamed: the source calls only the typed
//!   (`query_typed`, `execute_typed`) or simple-protocol (`batch_execute`) methods.
//! - The multi-endpoint run of the issue, scaled down: three dispatch-cgi endpoints (two
//!   CGI behind their own lighttpd, one `--listen`), six runners, dispatch-tick from two
//!   "hosts" at once, a recurring job, migrate, push-config and concurrent dispatch-admin
//!   calls, all through one PgBouncer in transaction mode. Checked: every message
//!   delivered exactly once, every command succeeded, no runner cycle refused, no outbox
//!   left, no ERROR in the server's log, and the server's log (log_statement = all) shows
//!   no named statement executed.
//!   `MAILRUN_POOLER_MESSAGES=10000` runs the full count (default 2000).
use crate::common;
use crate::common::pgbouncer::PgBouncer;
use crate::common::pipeline;
use crate::common::web;

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::smtp::{SmtpServer, SmtpServerOptions};
use pipeline::{Db, RunnerNode};

/// Client methods of `postgres` that prepare a named statement.
const NAMED_STATEMENT_METHODS: &[&str] = &[
    ".query(",
    ".query_one(",
    ".query_opt(",
    ".query_raw(",
    ".execute(",
    ".prepare(",
    ".prepare_typed(",
    ".copy_in(",
    ".copy_out(",
];

fn rust_sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_source_makes_a_named_prepared_statement() {
    let mut files = Vec::new();
    rust_sources(&pipeline::manifest_path("src"), &mut files);
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read source");
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for method in NAMED_STATEMENT_METHODS {
                if line.contains(method) {
                    found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "these calls prepare named statements, which break behind PgBouncer's transaction \
         pooling; use query_typed/execute_typed with dispatcher::typed::params:\n{}",
        found.join("\n")
    );
}

fn message_count() -> i64 {
    std::env::var("MAILRUN_POOLER_MESSAGES")
        .map(|n| n.parse().expect("MAILRUN_POOLER_MESSAGES is a number"))
        .unwrap_or(2000)
}

/// Runs `args` of dispatch-admin over and over until `stop`, recording failures.
fn admin_loop(
    url: String,
    message: String,
    stop: Arc<AtomicBool>,
    failures: Arc<Mutex<Vec<String>>>,
) {
    let calls: &[&[&str]] = &[
        &["status"],
        &["runner", "list"],
        &["schedule", "list"],
        &["report", "--summary"],
        &["account", "list"],
        &["show", &message],
        &["status", "--json"],
    ];
    let mut i = 0;
    while !stop.load(Ordering::SeqCst) {
        let args = calls[i % calls.len()];
        i += 1;
        let out = common::admin(&url, args);
        if out.status.code() != Some(0) {
            failures.lock().unwrap().push(format!(
                "dispatch-admin {args:?} exited {:?}: {}",
                out.status.code(),
                common::stderr(&out)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One "host's" cron: dispatch-tick every second until `stop`.
fn tick_loop(url: String, stop: Arc<AtomicBool>, failures: Arc<Mutex<Vec<String>>>) {
    while !stop.load(Ordering::SeqCst) {
        let out = pipeline::tick(&url, &[]);
        if !matches!(out.status.code(), Some(0) | Some(3)) {
            failures.lock().unwrap().push(format!(
                "dispatch-tick exited {:?}: {}",
                out.status.code(),
                common::stderr(&out)
            ));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn three_endpoints_six_runners_two_ticks_through_pgbouncer_transaction_pooling() {
    let n = message_count();
    let own = common::PrivateCluster::start();
    let cluster = &own.cluster;
    cluster.configure(&[
        ("log_statement", "all"),
        ("log_parameter_max_length", "0"),
        ("log_line_prefix", "%m [%p] %a: "),
    ]);
    let smtp = SmtpServer::start(SmtpServerOptions::default());
    let direct = cluster.fresh_db("pooler");
    // The harness's own statements (set-up, checks) go direct and are told apart by name.
    let db = Db::new(format!("{direct}?application_name=harness"), smtp.port);
    let bouncer = PgBouncer::start(cluster.port, "transaction");
    let dbname = direct.rsplit('/').next().unwrap().to_string();
    let pooled = bouncer.url(&dbname);

    // Three endpoints on the pooled URL: two CGI, one --listen.
    let cgi: Vec<web::Lighttpd> = (0..2)
        .map(|_| pipeline::serve_dispatcher(&pooled, &[]))
        .collect();
    let logs = common::temp_dir();
    let listen_port = common::free_port();
    let listen_log = logs.path().join("listen.log");
    let mut listen = common::command(pipeline::DISPATCH_CGI)
        .args(["--database-url", &pooled])
        .args(["--listen", &format!("127.0.0.1:{listen_port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&listen_log).expect("listen log"))
        .spawn()
        .expect("dispatch-cgi --listen");
    common::wait_for_listener(
        &format!("127.0.0.1:{listen_port}"),
        "dispatch-cgi --listen",
        Some(&mut listen),
        String::new,
    );
    let endpoints = [
        cgi[0].url("dispatch-cgi"),
        cgi[1].url("dispatch-cgi"),
        format!("http://127.0.0.1:{listen_port}/cgi-bin/dispatch-cgi"),
    ];

    // Six runners, two per endpoint.
    let runners: Vec<RunnerNode> = (0..6)
        .map(|i| RunnerNode::init(&format!("r{i}"), &endpoints[i % 3]))
        .collect();
    let servers: Vec<web::Lighttpd> = runners.iter().map(RunnerNode::serve).collect();
    for (runner, server) in runners.iter().zip(&servers) {
        db.add_runner(runner, &server.url("runner-cgi"), 200);
    }
    for runner in &runners {
        runner.set_setting("poll_interval_seconds", "600");
    }

    // A recurring job every minute, added through the pooler.
    let template = logs.path().join("template.json");
    std::fs::write(
        &template,
        serde_json::json!({
            "from": "sender@example.org",
            "to": ["recurring@example.org"],
            "subject": "every minute",
            "text": "recurring",
            "account": "local"
        })
        .to_string(),
    )
    .unwrap();
    let out = common::admin(
        &pooled,
        &[
            "schedule",
            "add",
            "--name",
            "minutely",
            "--cron",
            "* * * * *",
            "--template",
            template.to_str().unwrap(),
        ],
    );
    common::assert_status(&out, 0);
    // migrate (its advisory lock lives only as long as its transaction) and push-config
    // through the pooler too.
    common::assert_status(&common::admin(&pooled, &["migrate"]), 0);
    let push = |args: &[&str]| {
        common::run(
            common::command(pipeline::PUSH_CONFIG)
                .args(["--database-url", &pooled])
                .args(args),
        )
    };
    let first_url = format!("dispatcher_url={}", endpoints[0]);
    common::assert_status(
        &push(&["set", "--no-push", &first_url, "batch_size=200"]),
        0,
    );
    common::assert_status(&push(&["show", "--json"]), 0);

    db.enqueue(n);
    let watch =
        pipeline::InterruptionWatch::start(runners.iter().map(|r| r.dir().to_path_buf()).collect());

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for _ in 0..2 {
        let (url, stop, failures) = (pooled.clone(), stop.clone(), failures.clone());
        threads.push(std::thread::spawn(move || tick_loop(url, stop, failures)));
    }
    let message = db.count("SELECT min(id) FROM mailrun.messages").to_string();
    for _ in 0..2 {
        let (url, stop, failures) = (pooled.clone(), stop.clone(), failures.clone());
        let message = message.clone();
        threads.push(std::thread::spawn(move || {
            admin_loop(url, message, stop, failures)
        }));
    }

    // Every message sent (the recurring job adds one a minute; it is paused once the
    // bulk is out, so the queue can drain). A failed command ends the wait at once.
    let no_failure = || {
        let failures = failures.lock().unwrap();
        assert!(
            failures.is_empty(),
            "commands failed:\n{}",
            failures.join("\n")
        );
    };
    let unsent = "SELECT count(*) FROM mailrun.messages WHERE state <> 'sent'";
    pipeline::wait_until(Duration::from_secs(900), "the bulk sent", || {
        no_failure();
        db.count("SELECT count(*) FROM mailrun.messages WHERE state = 'sent'") >= n
    });
    pipeline::wait_until(Duration::from_secs(150), "a recurring occurrence", || {
        no_failure();
        db.count("SELECT count(*) FROM mailrun.messages WHERE recurring_job_id IS NOT NULL") > 0
    });
    common::assert_status(
        &common::admin(&pooled, &["schedule", "pause", "minutely"]),
        0,
    );
    let mut waited = 0;
    pipeline::wait_until(Duration::from_secs(300), "everything sent", || {
        waited += 1;
        if waited % 50 == 0 {
            for runner in &runners {
                eprintln!(
                    "cron run of {}: {}",
                    runner.id,
                    common::stderr(&runner.cycle(30))
                );
            }
        }
        db.count(unsent) == 0
    });
    pipeline::wait_until(Duration::from_secs(300), "runners idle", || {
        runners.iter().all(|r| r.leftovers().is_empty())
    });
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().expect("thread");
    }
    let _ = listen.kill();
    let _ = listen.wait();

    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "commands failed:\n{}",
        failures.join("\n")
    );
    let interrupted = watch.finish();
    let delivered = pipeline::assert_all_delivered(&db, &smtp, interrupted.len());
    assert!(
        delivered.total() as i64 > n,
        "the recurring job's mail went out too"
    );
    for runner in &runners {
        assert!(
            runner.leftovers().is_empty(),
            "{}: {:?}",
            runner.id,
            runner.leftovers()
        );
    }
    let refused = db.count(
        "SELECT count(*) FROM mailrun.runners WHERE last_status IS NOT NULL
            AND last_status NOT IN ('accepted', 'busy', 'polled')",
    );
    assert_eq!(refused, 0, "a runner refused or failed a JobRunnerReady");
    for (i, server) in cgi.iter().enumerate() {
        let log = server.error_log();
        assert!(
            !log.contains("error") && !log.contains("fault"),
            "dispatch-cgi {i} logged:\n{log}"
        );
    }
    let log = std::fs::read_to_string(&listen_log).unwrap_or_default();
    assert!(
        !log.contains("error") && !log.contains("fault"),
        "dispatch-cgi --listen logged:\n{log}"
    );
    for server in &servers {
        let log = server.error_log();
        assert!(
            !log.contains("fault") && !log.contains("refused"),
            "a runner logged:\n{log}"
        );
    }

    let pg_log = std::fs::read_to_string(cluster.log_path()).expect("postgres log");
    let errors: Vec<&str> = pg_log
        .lines()
        .filter(|l| l.contains("ERROR:") || l.contains("FATAL:"))
        .take(10)
        .collect();
    assert!(
        errors.is_empty(),
        "PostgreSQL errors:\n{}",
        errors.join("\n")
    );
    let mailrun_lines = || pg_log.lines().filter(|l| !l.contains("] harness: "));
    let executed = mailrun_lines().filter(|l| l.contains(" execute ")).count();
    let named: Vec<&str> = mailrun_lines()
        .filter(|l| l.contains(" execute ") && !l.contains(" execute <unnamed>:"))
        .take(10)
        .collect();
    assert!(executed > 0, "log_statement = all logged no statement");
    assert!(
        named.is_empty(),
        "named statements executed:\n{}",
        named.join("\n")
    );
    let bouncer_log = bouncer.log();
    assert!(
        !bouncer_log.contains("prepared statement"),
        "PgBouncer:\n{bouncer_log}"
    );
    eprintln!(
        "{} messages ({} recurring) delivered once through PgBouncer (transaction pooling)",
        delivered.total(),
        delivered.total() as i64 - n
    );
}
