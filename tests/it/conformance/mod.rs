//! Runner conformance: one suite, two runners. Every case takes the runner under test as
//! a parameter and runs on both the Rust runner (`runner-cgi --listen`, cycles started
//! by JobRunnerReady) and the PHP runner (`mailrun-runner.php` uploaded into a user
//! folder under Apache 2.4 + mod_php as `www-data`, set up through its page). The cases
//! drive the runner only through the contract (protocol/, docs/signing.md): signed SOAP
//! requests built with mailrun's codec, the real dispatcher and a real SMTP server.
use crate::common;
use crate::common::php::{PhpHost, PhpUpload};
use crate::common::pipeline::{self, Db, Listening};

use std::process::{Child, Stdio};
use std::time::Duration;

use mailrun::protocol::sign::SigningKey;

mod cases;

/// Which runner a case runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Rust,
    Php,
}

/// A runner set up and registered at a dispatcher (database + dispatch-cgi).
pub struct RunnerUnderTest {
    pub kind: Kind,
    pub id: String,
    pub key: SigningKey,
    /// The endpoint URL (JobRunnerReady, JobRunnerConfigUpdate).
    pub url: String,
    /// The URL path the requests are signed over.
    pub path: String,
    pub db: Db,
    pub listening: Listening,
    rust: Option<(pipeline::RunnerNode, Child)>,
    php: Option<PhpUpload>,
}

impl RunnerUnderTest {
    /// A runner of `kind`, its dispatcher on a fresh database whose SMTP account
    /// `local` points at `smtp_port`, registered with `batch_size`.
    pub fn start(kind: Kind, test: &str, smtp_port: u16, batch_size: i32) -> RunnerUnderTest {
        let db = Db::new(
            common::cluster().fresh_db(&format!("conf_{test}_{kind:?}").to_lowercase()),
            smtp_port,
        );
        let listening = Listening::start(&db.url, common::free_port(), 120);
        let id = format!("conf-{}", format!("{kind:?}").to_lowercase());
        let key = SigningKey::generate(format!("key-{id}"));
        let (url, path, rust, php) = match kind {
            Kind::Rust => {
                let node = pipeline::RunnerNode::init(&id, &listening.url());
                let key_file = node.dir().join("runner.toml");
                assert!(key_file.exists());
                let port = common::free_port();
                let addr = format!("127.0.0.1:{port}");
                let mut child = common::command(pipeline::RUNNER_CGI)
                    .arg("--state-dir")
                    .arg(node.dir())
                    .args(["--listen", &addr])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("runner-cgi --listen");
                common::wait_for_listener(
                    &addr,
                    "runner-cgi --listen",
                    Some(&mut child),
                    String::new,
                );
                let path = "/cgi-bin/runner-cgi".to_string();
                (
                    format!("http://{addr}{path}"),
                    path,
                    Some((node, child)),
                    None,
                )
            }
            Kind::Php => {
                let php = PhpUpload::start(PhpHost {
                    home_writable: true,
                    allow_override: false,
                });
                php.set_up(&listening.url(), &id, &key);
                (php.url.clone(), php.path.clone(), None, Some(php))
            }
        };
        // The Rust node made its own key: use that one.
        let key = match &rust {
            Some((node, _)) => node.key.clone(),
            None => key,
        };
        db.client()
            .execute(
                "INSERT INTO mailrun.runners (id, endpoint, batch_size, key_id, secret)
                 VALUES ($1, $2, $3, $4, $5)",
                &[&id, &url, &batch_size, &key.key_id, &key.secret.to_vec()],
            )
            .expect("register the runner");
        RunnerUnderTest {
            kind,
            id,
            key,
            url,
            path,
            db,
            listening,
            rust,
            php,
        }
    }

    /// dispatch-tick every second until `done` (JobRunnerReady is the only trigger).
    pub fn tick_until(&self, bound: Duration, what: &str, mut done: impl FnMut() -> bool) {
        pipeline::wait_until(bound, what, || {
            if done() {
                return true;
            }
            let out = pipeline::tick(&self.db.url, &[]);
            assert!(
                out.status.code().is_some_and(|c| c == 0 || c == 3),
                "dispatch-tick: {}",
                common::stderr(&out)
            );
            std::thread::sleep(Duration::from_millis(700));
            false
        });
    }

    /// The process delivering for this runner right now, if any: the request running
    /// the PHP cycle (its pid is in the lock file), or the `runner-admin cycle` that
    /// runner-cgi started on this state folder.
    pub fn delivering_pid(&self) -> Option<i32> {
        let alive = |pid: i32| std::path::Path::new(&format!("/proc/{pid}")).exists();
        match (&self.php, &self.rust) {
            (Some(php), _) => php.cycle_pid().filter(|p| alive(*p)),
            (None, Some((node, _))) => {
                let admin = std::path::Path::new(pipeline::RUNNER_ADMIN)
                    .canonicalize()
                    .ok()?;
                let state = node.dir().as_os_str().as_encoded_bytes().to_vec();
                std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
                    let pid: i32 = e.file_name().to_string_lossy().parse().ok()?;
                    let exe = std::fs::read_link(e.path().join("exe")).ok()?;
                    let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
                    (exe == admin && cmdline.split(|b| *b == 0).any(|a| a == state.as_slice()))
                        .then_some(pid)
                })
            }
            _ => None,
        }
    }

    /// Trusts `ca_pem` for SMTP as well as the public roots (`smtp_ca_file`): written into
    /// the state folder, readable by the runner's user.
    pub fn trust_smtp_ca(&self, ca_pem: &[u8]) {
        match (&self.php, &self.rust) {
            (Some(php), _) => {
                let state = php.state();
                let ca = state.join("relay-ca.pem");
                std::fs::write(&ca, ca_pem).unwrap();
                crate::common::apache::give_to_server(&ca);
                let path = state.join("runner.json");
                let mut config: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                config["smtp_ca_file"] = serde_json::Value::String(ca.display().to_string());
                // Written in place: owner and mode (www-data, 0600) stay.
                std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
            }
            (None, Some((node, _))) => {
                let ca = node.dir().join("relay-ca.pem");
                std::fs::write(&ca, ca_pem).unwrap();
                let path = node.dir().join("runner.toml");
                let text = std::fs::read_to_string(&path).unwrap();
                let line = format!("smtp_ca_file = \"{}\"\n", ca.display());
                std::fs::write(&path, format!("{line}{text}")).unwrap();
            }
            _ => unreachable!(),
        }
    }

    /// The runner's configuration file (runner.toml, or the PHP runner's runner.json).
    pub fn config_file(&self) -> std::path::PathBuf {
        match (&self.php, &self.rust) {
            (Some(php), _) => php.state().join("runner.json"),
            (None, Some((node, _))) => node.dir().join("runner.toml"),
            _ => unreachable!(),
        }
    }

    /// The web server's log, for failure messages.
    pub fn server_log(&self) -> String {
        match &self.php {
            Some(php) => format!(
                "{:?} runner, Apache error log:\n{}",
                self.kind,
                php.apache.error_log()
            ),
            None => format!("{:?} runner", self.kind),
        }
    }
}

impl Drop for RunnerUnderTest {
    fn drop(&mut self) {
        if let Some((_, child)) = &mut self.rust {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One `#[test]` per runner for a case `fn(Kind)`.
macro_rules! for_both_runners {
    ($($case:ident),* $(,)?) => {
        mod rust {
            $(#[test] fn $case() { super::cases::$case(super::Kind::Rust) })*
        }
        mod php {
            $(#[test] fn $case() { super::cases::$case(super::Kind::Php) })*
        }
    };
}

for_both_runners!(
    handshake_delivers_queued_mail_on_job_runner_ready,
    config_push_applies_increasing_versions_only,
    signatures_are_checked_and_answers_signed,
    replayed_nonce_is_refused,
    every_runner_fault_of_the_fault_table,
    oversize_and_hostile_input_is_refused,
    per_recipient_outcomes_are_reported,
    smtp_4xx_and_5xx_defer_and_fail,
    reply_policy_sets_a_throttled_account_aside,
    no_answer_after_the_final_dot_is_unknown,
    starttls_required_but_not_offered_sends_nothing,
    starttls_with_an_untrusted_certificate_sends_nothing,
    kill_during_delivery_loses_nothing,
    wire_format_is_crlf_only_with_short_lines,
    tls_with_a_private_ca_delivers_and_logs_in_only_encrypted,
    a_runner_that_lost_its_configuration_answers_internal,
);
