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

/// The dispatcher's self-update offers the PHP file to PHP runners only (they report a
/// `-php` version), and the runner installs it at its next cycle after checking its
/// SHA-256 against the signed announcement: a wrong checksum changes nothing.
#[test]
fn push_config_offers_the_php_file_which_the_runner_checks_and_installs() {
    let smtp = SmtpServer::start(SmtpServerOptions::default());
    let system = php_system(&smtp, "php_update", 120, 10);
    let php = &system.php;
    // A Rust runner beside it, to see what it is offered.
    let rust = pipeline::RunnerNode::init("rust1", &system.listening.url());
    let port = common::free_port();
    let mut rust_cgi = common::command(pipeline::RUNNER_CGI)
        .arg("--state-dir")
        .arg(rust.dir())
        .args(["--listen", &format!("127.0.0.1:{port}"), "--no-start"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("runner-cgi --listen");
    common::wait_for_listener(
        &format!("127.0.0.1:{port}"),
        "runner-cgi",
        Some(&mut rust_cgi),
        String::new,
    );
    system.db.add_runner(
        &rust,
        &format!("http://127.0.0.1:{port}/cgi-bin/runner-cgi"),
        10,
    );

    // One JobRunnerReady: the dispatcher learns the PHP runner's version.
    system.db.enqueue(1);
    tick_until(
        &system,
        Duration::from_secs(120),
        "the message sent",
        || sent(&system.db) == 1,
    );
    let reported: Option<String> = system
        .db
        .client()
        .query_one(
            "SELECT software_version FROM mailrun.runners WHERE id = 'php1'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        reported.as_deref(),
        Some(concat!(env!("CARGO_PKG_VERSION"), "-php"))
    );

    let installed = php.public_html().join("mailrun-runner.php");
    let original = std::fs::read(&installed).unwrap();
    let newer = String::from_utf8(original.clone()).unwrap().replace(
        &format!("const MR_VERSION = '{}';", env!("CARGO_PKG_VERSION")),
        "const MR_VERSION = '9.9.9';",
    );
    assert!(newer.contains("'9.9.9'"));
    std::fs::write(php.apache.root().join("mailrun-runner-9.9.9.php"), &newer).unwrap();
    let sha = |bytes: &[u8]| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(bytes))
    };
    let php_url = php.apache.url_of("/mailrun-runner-9.9.9.php");
    let push = |php_sha: &str| {
        let out = common::run(common::command(pipeline::PUSH_CONFIG).args([
            "--database-url",
            &system.db.url,
            "set",
            &format!("dispatcher_url={}", system.listening.url()),
            "software_version=9.9.9",
            "software_url=http://127.0.0.1:9/mailrun-runner-9.9.9-x86_64.tar.gz",
            &format!("software_sha256={}", "ab".repeat(32)),
            &format!("php_software_url={php_url}"),
            &format!("php_software_sha256={php_sha}"),
        ]));
        common::assert_status(&out, 0);
    };
    let cycle = || common::run(&mut php.cli(&["cycle", "--verbose", "--max-seconds", "10"]));

    // A checksum that does not match: refused, nothing changes.
    push(&"cd".repeat(32));
    let toml = std::fs::read_to_string(rust.dir().join("runner.toml")).unwrap();
    assert!(
        toml.contains("x86_64.tar.gz") && !toml.contains(".php"),
        "the Rust runner is offered the tar.gz: {toml}"
    );
    let json = std::fs::read_to_string(php.state().join("runner.json")).unwrap();
    assert!(
        json.contains("mailrun-runner-9.9.9.php") && json.contains("9.9.9-php"),
        "{json}"
    );
    let out = cycle();
    assert!(
        common::stderr(&out).contains("self-update refused")
            && common::stderr(&out).contains("SHA-256"),
        "{}",
        common::stderr(&out)
    );
    assert_eq!(std::fs::read(&installed).unwrap(), original);

    // The right checksum: installed, and the next request runs the new file.
    push(&sha(newer.as_bytes()));
    let out = cycle();
    assert!(
        common::stderr(&out).contains("installed PHP runner 9.9.9-php"),
        "{}",
        common::stderr(&out)
    );
    assert_eq!(std::fs::read(&installed).unwrap(), newer.as_bytes());
    // Apache's OPcache notices the new file within its revalidation period (2 s).
    pipeline::wait_until(Duration::from_secs(20), "the new file answers", || {
        php.get(&php.url).1.contains("9.9.9-php")
    });
    let _ = rust_cgi.kill();
    let _ = rust_cgi.wait();
}

/// The PHP runner reports the Rust runner's version (with `-php`): the release build
/// keeps them in step.
#[test]
fn php_runner_version_is_the_crate_version() {
    let source = std::fs::read_to_string(php_runner_source()).unwrap();
    assert!(
        source.contains(&format!(
            "const MR_VERSION = '{}';",
            env!("CARGO_PKG_VERSION")
        )),
        "packaging/php/mailrun-runner.php: MR_VERSION differs from Cargo.toml"
    );
}

/// The release build (build-bundle.sh) writes the PHP file beside the binary bundle,
/// stamped with the crate version, with its SHA-256 for the self-update announcement.
#[test]
fn release_build_puts_the_php_runner_beside_the_bundle() {
    let out_dir = common::temp_dir();
    // Stand-ins for the four binaries: this test is about the PHP file, and packing the
    // real (debug) binaries takes minutes; packaging:: covers the bundle itself.
    let bins = common::temp_dir();
    let bin_dir = bins.path().to_path_buf();
    for name in ["runner-admin", "runner-cgi", "runner-poll", "runner-send"] {
        let path = bin_dir.join(name);
        common::write(&path, "#!/bin/sh\n");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = common::run(
        std::process::Command::new("sh")
            .arg(pipeline::manifest_path(
                "packaging/shared-hosting/build-bundle.sh",
            ))
            .arg("--bin-dir")
            .arg(&bin_dir)
            .arg("--out-dir")
            .arg(out_dir.path()),
    );
    common::assert_status(&out, 0);
    let php = out_dir.path().join("mailrun-runner.php");
    let bytes = std::fs::read(&php).expect("mailrun-runner.php in the release output");
    assert!(String::from_utf8_lossy(&bytes).contains(&format!(
        "const MR_VERSION = '{}';",
        env!("CARGO_PKG_VERSION")
    )));
    let sums = std::fs::read_to_string(out_dir.path().join("mailrun-runner.php.sha256")).unwrap();
    use sha2::Digest;
    assert_eq!(
        sums,
        format!(
            "{}  mailrun-runner.php\n",
            hex::encode(sha2::Sha256::digest(&bytes))
        )
    );
    assert!(out_dir.path().join("mailrun-runner.cgi").exists());
    common::assert_status(
        &common::run(std::process::Command::new("php").arg("-l").arg(&php)),
        0,
    );
}
