//! The PHP runner (`packaging/php/mailrun-runner.php`, issue 20) as shared hosting runs
//! it: one file copied into a user's `public_html` under a real Apache 2.4 with mod_php
//! (prefork, children as `www-data`), no cron and no binaries; the real dispatcher
//! (`dispatch-cgi`, `dispatch-tick`) on PostgreSQL and a real SMTP server. The contract
//! cases it shares with the Rust runner are in `conformance/`.
use crate::common;
use crate::common::php::{php_runner_source, PhpHost, PhpUpload};
use crate::common::pipeline::{self, Db, Listening};

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::smtp::{SmtpServer, SmtpServerOptions};
use mailrun::protocol::sign::SigningKey;

#[test]
fn php_runner_passes_php_lint() {
    let out = common::run(
        std::process::Command::new("php")
            .arg("-l")
            .arg(php_runner_source()),
    );
    common::assert_status(&out, 0);
}

/// docs/signing.md's worked example, computed by the PHP runner's own functions.
#[test]
fn php_signing_matches_the_known_answer_of_docs_signing() {
    let dir = common::temp_dir();
    let script = dir.path().join("kat.php");
    common::write(
        &script,
        format!(
            r#"<?php
define('MAILRUN_RUNNER_LIBRARY', true);
require '{}';
$secret = hex2bin('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f');
$request = mr_string_to_sign('POST', '/cgi-bin/dispatch-cgi', '"urn:mailrun:soap:v1#JobRunRequest"', 1767225600, '00112233445566778899aabbccddeeff', '<soap:Envelope/>');
$response = mr_string_to_sign('RESPONSE', '/cgi-bin/dispatch-cgi', 'urn:mailrun:soap:v1#JobRun', 1767225601, 'ffeeddccbbaa99887766554433221100', '<soap:Envelope/>', '00112233445566778899aabbccddeeff');
echo hash('sha256', '<soap:Envelope/>'), "\n", hash_hmac('sha256', $request, $secret), "\n", hash_hmac('sha256', $response, $secret), "\n";
"#,
            php_runner_source().display()
        ),
    );
    let out = common::run(std::process::Command::new("php").arg(&script));
    common::assert_status(&out, 0);
    let lines: Vec<String> = common::stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(
        lines,
        [
            "2c42650fd9218164e0824e081ea5c845df5fc066f4595f9519eefa91211af312",
            "c3c725b33a0b1eacbaa3ff9b2e0bb697b599ba4f550f1bc659c57365d91ab0ed",
            "5661d84cc8a59f1220c14fcde905d3964cf68d9eb807025cb7d4e6c66b319668",
        ]
    );
}

/// A PHP runner with its dispatcher: database, SMTP account, dispatch-cgi, the upload
/// set up through its setup page and registered with its URL.
struct PhpSystem {
    db: Db,
    listening: Listening,
    php: PhpUpload,
}

fn php_system(smtp: &SmtpServer, test: &str, lease_seconds: u32, batch_size: i32) -> PhpSystem {
    let db = Db::new(common::cluster().fresh_db(test), smtp.port);
    let listening = Listening::start(&db.url, common::free_port(), lease_seconds);
    let php = PhpUpload::start(PhpHost {
        home_writable: true,
        allow_override: false,
    });
    let key = SigningKey::generate("key-php");
    php.set_up(&listening.url(), "php1", &key);
    db.client()
        .execute(
            "INSERT INTO mailrun.runners (id, endpoint, batch_size, key_id, secret)
             VALUES ('php1', $1, $2, $3, $4)",
            &[&php.url, &batch_size, &key.key_id, &key.secret.to_vec()],
        )
        .expect("register the PHP runner");
    PhpSystem { db, listening, php }
}

/// Plays cron for the dispatcher only: dispatch-tick every second until `done`.
fn tick_until(system: &PhpSystem, bound: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let bound = std::env::var("MAILRUN_PHP_BOUND")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(bound);
    let _diagnose = Diagnose(system);
    pipeline::wait_until(bound, what, || {
        if done() {
            return true;
        }
        let out = pipeline::tick(&system.db.url, &[]);
        assert!(
            out.status.code().is_some_and(|c| c == 0 || c == 3),
            "dispatch-tick: {}",
            common::stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(800));
        false
    });
}

/// On a failed wait: what the runner and the dispatcher say.
struct Diagnose<'a>(&'a PhpSystem);

impl Drop for Diagnose<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let state = self.0.php.state();
            eprintln!(
                "states {:?}\ncycle.log:\n{}\nerror.log:\n{}\nrunners: {:?}",
                self.0.db.states(),
                std::fs::read_to_string(state.join("cycle.log")).unwrap_or_default(),
                self.0.php.apache.error_log(),
                self.0
                    .db
                    .client()
                    .query("SELECT id, last_status FROM mailrun.runners", &[])
                    .unwrap()
                    .iter()
                    .map(|r| format!(
                        "{}: {:?}",
                        r.get::<_, String>(0),
                        r.get::<_, Option<String>>(1)
                    ))
                    .collect::<Vec<_>>()
            );
        }
    }
}

fn sent(db: &Db) -> i64 {
    db.count("SELECT count(*) FROM mailrun.messages WHERE state = 'sent'")
}

/// The issue's acceptance test: uploaded as one file, set up through its page, with no
/// cron and no binaries, the runner delivers 1,000 messages fed by dispatch-tick's
/// JobRunnerReady alone; each exactly once.
#[test]
fn uploaded_php_runner_delivers_1000_messages_on_job_runner_ready_alone() {
    let smtp = SmtpServer::start(SmtpServerOptions::default());
    let system = php_system(&smtp, "php_1000", 120, 100);
    let php = &system.php;

    // The setup page is closed once configured, and shows no secret.
    let (status, page) = php.post_setup("token=x\n");
    assert_eq!(status, 403, "{page}");
    let (status, page) = php.get(&php.url);
    assert_eq!(status, 200);
    assert!(
        page.contains("configured") && !page.contains("token"),
        "{page}"
    );
    // The state folder is outside the web root, private, and the key file is 0600.
    let state = php.state();
    assert!(
        !state.starts_with(php.public_html()),
        "state folder {state:?} is inside the web root"
    );
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("runner.json")), 0o600);

    system.db.enqueue(1000);
    tick_until(
        &system,
        Duration::from_secs(600),
        "1,000 messages sent",
        || sent(&system.db) == 1000,
    );
    pipeline::assert_all_delivered(&system.db, &smtp, 0);
    // The cycles ran in the requests that carried JobRunnerReady (no cron, no CLI).
    let log = std::fs::read_to_string(state.join("cycle.log")).unwrap_or_default();
    assert!(log.contains("cycle started after JobRunnerReady"), "{log}");
    assert!(
        !php.apache.error_log().contains("PHP Fatal"),
        "{}",
        php.apache.error_log()
    );
    // Nothing left behind: every batch reported and acknowledged.
    let leftovers: Vec<_> = ["spool", "outbox"]
        .iter()
        .flat_map(|d| std::fs::read_dir(state.join(d)).unwrap().flatten())
        .map(|e| e.path())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// The request delivering a batch is killed (SIGKILL of the Apache child, as a host's
/// process reaper would) mid-batch, twice: nothing is lost, and each kill resends at
/// most the one message in flight, counted by Message-ID at the SMTP server.
#[test]
fn a_php_request_killed_mid_batch_loses_nothing() {
    // Slow answers to the final dot keep a batch in flight long enough to be killed.
    let smtp = SmtpServer::start(SmtpServerOptions {
        delay: 0.05,
        ..Default::default()
    });
    let system = php_system(&smtp, "php_kill", 120, 40);
    system.db.enqueue(300);
    let mut kills = 0;
    let mut killed = std::collections::BTreeSet::new();
    tick_until(
        &system,
        Duration::from_secs(600),
        "300 messages sent",
        || {
            if kills < 2 {
                let delivered = smtp.messages().len();
                let journalled = std::fs::read_dir(system.php.state().join("spool"))
                    .map(|rd| {
                        rd.flatten()
                            .any(|e| e.file_name().to_string_lossy().ends_with(".journal"))
                    })
                    .unwrap_or(false);
                if let Some(pid) = system.php.cycle_pid() {
                    let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
                    if alive && journalled && delivered > kills * 60 && killed.insert(pid) {
                        pipeline::kill_9(pid);
                        kills += 1;
                    }
                }
            }
            sent(&system.db) == 300
        },
    );
    assert_eq!(kills, 2, "the test killed a delivering request twice");
    let delivered = pipeline::assert_all_delivered(&system.db, &smtp, kills);
    eprintln!(
        "killed {kills} requests mid-batch: {} duplicates",
        delivered.duplicates()
    );
    drop(system.listening);
}

/// Without a writable folder outside the web root the state goes inside it, fenced off
/// by `.htaccess`: refused when the server does not honour it (the probe file was
/// served), accepted with a warning when it does.
#[test]
fn state_inside_the_web_root_is_refused_unless_htaccess_is_honoured() {
    let ignored = PhpUpload::start(PhpHost {
        home_writable: false,
        allow_override: false,
    });
    let (status, page) = ignored.get(&ignored.url);
    assert_eq!(status, 500, "{page}");
    assert!(page.contains("not honoured"), "{page}");
    assert!(!page.contains("token"), "{page}");

    let honoured = PhpUpload::start(PhpHost {
        home_writable: false,
        allow_override: true,
    });
    let (status, page) = honoured.get(&honoured.url);
    assert_eq!(status, 200, "{page}\n{}", honoured.apache.error_log());
    assert!(
        page.contains("id=\"token\"") && page.contains("Warning"),
        "{page}"
    );
    let state = honoured.state();
    assert!(state.starts_with(honoured.public_html()));
    // The token file itself is not served.
    let (status, _) = honoured.get(
        &honoured
            .apache
            .url_of("/~alice/.mailrun-runner-php/setup-token"),
    );
    assert_eq!(status, 403);
    // The token is shown once only.
    let (_, again) = honoured.get(&honoured.url);
    assert!(!again.contains("id=\"token\""), "{again}");
}
