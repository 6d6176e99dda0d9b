//! The assembled system for end-to-end and fault tests: a dispatcher database, dispatch-cgi
//! behind lighttpd (or `--listen`), runners made with `runner-admin init` and served by
//! their own lighttpd, and the exactly-once accounting between the SMTP server's record
//! and the database. Include with `mod common;`, `#[path = "common/web.rs"] mod web;`
//! and `#[path = "common/pipeline.rs"] mod pipeline;`.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use mailrun::protocol::sign::SigningKey;

use crate::common;
use crate::common::smtp::SmtpServer;
use crate::common::web::Lighttpd;

pub const DISPATCH_CGI: &str = env!("CARGO_BIN_EXE_dispatch-cgi");
pub const DISPATCH_TICK: &str = env!("CARGO_BIN_EXE_dispatch-tick");
pub const PUSH_CONFIG: &str = env!("CARGO_BIN_EXE_push-config");
pub const RUNNER_ADMIN: &str = env!("CARGO_BIN_EXE_runner-admin");
pub const RUNNER_CGI: &str = env!("CARGO_BIN_EXE_runner-cgi");
pub const RUNNER_POLL: &str = env!("CARGO_BIN_EXE_runner-poll");
pub const RUNNER_SEND: &str = env!("CARGO_BIN_EXE_runner-send");

/// The dispatcher's database, migrated, with one SMTP account named `local`.
pub struct Db {
    pub url: String,
}

impl Db {
    pub fn new(url: String, smtp_port: u16) -> Db {
        let db = Db { url };
        mailrun::dispatcher::schema::migrate(&mut db.client()).expect("migrate");
        db.client()
            .execute(
                "INSERT INTO mailrun.smtp_accounts (name, host, port, security)
                 VALUES ('local', '127.0.0.1', $1, 'none')",
                &[&i32::from(smtp_port)],
            )
            .expect("insert account");
        db
    }

    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).expect("connect to test database")
    }

    pub fn add_runner(&self, runner: &RunnerNode, endpoint: &str, batch_size: i32) {
        self.client()
            .execute(
                "INSERT INTO mailrun.runners (id, endpoint, batch_size, key_id, secret)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &runner.id,
                    &endpoint,
                    &batch_size,
                    &runner.key.key_id,
                    &runner.key.secret.to_vec(),
                ],
            )
            .expect("insert runner");
    }

    /// Enqueues `n` messages (one recipient each) through the queue's stored procedure.
    pub fn enqueue(&self, n: i64) {
        let count: i64 = self
            .client()
            .query_one(
                "SELECT count(mailrun.enqueue(jsonb_build_object(
                     'from', 'sender@example.org',
                     'to', jsonb_build_array('rcpt' || g || '@example.org'),
                     'subject', 'e2e ' || g,
                     'text', 'hello ' || g,
                     'account', 'local')))
                   FROM generate_series(1, $1::bigint) g",
                &[&n],
            )
            .expect("enqueue")
            .get(0);
        assert_eq!(count, n);
    }

    /// Number of messages per state.
    pub fn states(&self) -> BTreeMap<String, i64> {
        self.client()
            .query(
                "SELECT state, count(*) FROM mailrun.messages GROUP BY state",
                &[],
            )
            .expect("states")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.client().query_one(sql, &[]).expect(sql).get(0)
    }

    pub fn message_ids(&self) -> BTreeSet<String> {
        self.client()
            .query("SELECT message_id_header FROM mailrun.messages", &[])
            .expect("message ids")
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// Makes deferred mail due again after one or two seconds instead of Postfix's five
    /// minutes (the retry policy is configuration, not code).
    pub fn fast_retries(&self) {
        self.client()
            .batch_execute(
                "UPDATE mailrun.policy SET backoff_min_seconds = 1, backoff_max_seconds = 2",
            )
            .expect("policy");
    }
}

/// One runner: a state folder made by `runner-admin init`, and its key.
pub struct RunnerNode {
    pub id: String,
    pub key: SigningKey,
    pub state: tempfile::TempDir,
}

impl RunnerNode {
    pub fn init(id: &str, dispatcher_url: &str) -> RunnerNode {
        let node = RunnerNode {
            id: id.to_string(),
            key: SigningKey::generate(format!("key-{id}")),
            state: common::temp_dir(),
        };
        common::runner_init(node.state.path(), dispatcher_url, id, &node.key);
        node
    }

    pub fn dir(&self) -> &Path {
        self.state.path()
    }

    /// A runner command with `--state-dir` set.
    pub fn command(&self, bin: &str) -> Command {
        let mut cmd = common::command(bin);
        cmd.arg("--state-dir").arg(self.state.path());
        cmd
    }

    pub fn run(&self, bin: &str, args: &[&str]) -> Output {
        common::run(self.command(bin).args(args))
    }

    /// `runner-admin cycle --force` (the cron fallback: poll without a JobRunnerReady).
    pub fn cycle(&self, max_seconds: u64) -> Output {
        self.run(
            RUNNER_ADMIN,
            &[
                "cycle",
                "--force",
                "--verbose",
                "--timeout",
                "20",
                "--max-seconds",
                &max_seconds.to_string(),
            ],
        )
    }

    /// runner-cgi (with runner-admin next to it, which JobRunnerReady starts) behind its
    /// own lighttpd, pointed at this state folder the way an operator would.
    pub fn serve(&self) -> Lighttpd {
        let state = self.state.path().display().to_string();
        Lighttpd::start_cgi(
            &[
                ("runner-cgi", Path::new(RUNNER_CGI)),
                ("runner-admin", Path::new(RUNNER_ADMIN)),
            ],
            &[("MAILRUN_RUNNER_DIR", state.as_str())],
        )
    }

    /// Files left in `spool/` and `outbox/`.
    pub fn leftovers(&self) -> Vec<String> {
        let mut files = Vec::new();
        for sub in ["spool", "outbox"] {
            if let Ok(rd) = std::fs::read_dir(self.state.path().join(sub)) {
                for e in rd.flatten() {
                    files.push(format!("{sub}/{}", e.file_name().to_string_lossy()));
                }
            }
        }
        files
    }

    /// Sets one of runner.toml's pushed `[settings]` (as a JobRunnerConfigUpdate would).
    pub fn set_setting(&self, name: &str, value: &str) {
        let path = self.state.path().join("runner.toml");
        let text = std::fs::read_to_string(&path).expect("runner.toml");
        let prefix = format!("{name} =");
        assert!(text.contains(&prefix), "runner.toml has no {name}:\n{text}");
        let text: String = text
            .lines()
            .map(|l| {
                if l.starts_with(&prefix) {
                    format!("{name} = {value}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        std::fs::write(&path, text).expect("write runner.toml");
    }

    /// Writes `dispatcher_url` into runner.toml (as an operator or a config push would).
    pub fn set_dispatcher_url(&self, url: &str) {
        let path = self.state.path().join("runner.toml");
        let text = std::fs::read_to_string(&path).expect("runner.toml");
        let text: String = text
            .lines()
            .map(|l| {
                if l.starts_with("dispatcher_url") {
                    format!("dispatcher_url = \"{url}\"\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        std::fs::write(&path, text).expect("write runner.toml");
    }
}

/// dispatch-cgi behind lighttpd on the given database, with extra CGI environment.
pub fn serve_dispatcher(url: &str, extra_env: &[(&str, &str)]) -> Lighttpd {
    let mut env = vec![("MAILRUN_DATABASE_URL", url)];
    env.extend_from_slice(extra_env);
    Lighttpd::start_cgi(&[("dispatch-cgi", Path::new(DISPATCH_CGI))], &env)
}

/// `dispatch-cgi --listen` on a chosen port; killed (SIGKILL) on drop.
pub struct Listening {
    pub child: Child,
    pub port: u16,
}

impl Listening {
    pub fn start(database_url: &str, port: u16, lease_seconds: u32) -> Listening {
        let child = common::command(DISPATCH_CGI)
            .args(["--database-url", database_url])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--lease-seconds", &lease_seconds.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dispatch-cgi --listen");
        let mut listening = Listening { child, port };
        common::wait_for_listener(
            &format!("127.0.0.1:{port}"),
            "dispatch-cgi --listen",
            Some(&mut listening.child),
            String::new,
        );
        listening
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/cgi-bin/dispatch-cgi", self.port)
    }

    /// SIGKILL, as `kill -9` would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `dispatch-tick` on the database.
pub fn tick(url: &str, extra: &[&str]) -> Output {
    common::run(
        common::command(DISPATCH_TICK)
            .args(["--database-url", url, "--timeout", "10"])
            .args(extra),
    )
}

/// Polls `done` every 200 ms until it holds; panics with `what` after `bound` (a safety
/// bound, never an assertion about speed).
pub fn wait_until(bound: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < bound, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What the SMTP server received, counted by Message-ID.
pub struct Delivered {
    pub per_id: BTreeMap<String, usize>,
}

impl Delivered {
    pub fn of(smtp: &SmtpServer) -> Delivered {
        let mut per_id = BTreeMap::new();
        for m in smtp.messages() {
            let id = m
                .message_id
                .expect("every delivered message has a Message-ID");
            *per_id.entry(id).or_insert(0) += 1;
        }
        Delivered { per_id }
    }

    pub fn total(&self) -> usize {
        self.per_id.values().sum()
    }

    /// Deliveries beyond the first of each Message-ID.
    pub fn duplicates(&self) -> usize {
        self.per_id.values().map(|n| n - 1).sum()
    }
}

/// The invariant of every fault test: nothing lost (every queued message reached the SMTP
/// server, and nothing else did), the database says every message is sent with its
/// successful attempt recorded, and duplicates are at most `max_duplicates` (the
/// messages in flight at the fault). Returns the delivery record.
#[track_caller]
pub fn assert_all_delivered(db: &Db, smtp: &SmtpServer, max_duplicates: usize) -> Delivered {
    let delivered = Delivered::of(smtp);
    let ids = db.message_ids();
    let received: BTreeSet<String> = delivered.per_id.keys().cloned().collect();
    let missing: Vec<&String> = ids.difference(&received).take(5).collect();
    let unknown: Vec<&String> = received.difference(&ids).take(5).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "lost (first 5): {missing:?}; not from the queue: {unknown:?}"
    );
    assert!(
        delivered.duplicates() <= max_duplicates,
        "{} duplicate deliveries, at most {max_duplicates} allowed",
        delivered.duplicates()
    );
    let states = db.states();
    assert_eq!(
        states.get("sent").copied().unwrap_or(0),
        ids.len() as i64,
        "every message sent: {states:?}"
    );
    // Every sent message has its successful attempt recorded (applied, not late).
    let without = db.count(
        "SELECT count(*) FROM mailrun.messages m WHERE NOT EXISTS (
             SELECT 1 FROM mailrun.delivery_attempts a
              WHERE a.message_id = m.id AND a.outcome = 'sent' AND NOT a.late)",
    );
    assert_eq!(without, 0, "sent messages without a recorded attempt");
    delivered
}

/// The pids of the processes running the copy of `program` in a server's cgi-bin
/// (matched by the exact executable path, so only this test's processes).
pub fn pids_running(program: &Path) -> Vec<i32> {
    let Ok(want) = program.canonicalize() else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if std::fs::read_link(e.path().join("exe")).ok().as_deref() == Some(want.as_path()) {
                pids.push(pid);
            }
        }
    }
    pids
}

pub fn kill_9(pid: i32) {
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -9 {pid}");
}

pub fn manifest_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Is a `runner-admin` (or other runner command) working on this state folder right now?
fn runner_process_alive(state: &Path) -> bool {
    let want = state.as_os_str().as_encoded_bytes();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return false;
    };
    rd.flatten().any(|e| {
        e.file_name().to_string_lossy().parse::<u32>().is_ok()
            && std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|arg| arg == want))
    })
}

/// Watches runner state folders for batches left behind by a cycle that ended without
/// finishing them (a crash, a kill, a full disk): a spooled batch with no runner process
/// alive on the folder. Each such interruption may resend at most the one message in
/// flight between the SMTP server's 250 and the journal, so their number bounds the
/// duplicates a run may show.
pub struct InterruptionWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<BTreeSet<String>>,
}

impl InterruptionWatch {
    pub fn start(states: Vec<PathBuf>) -> InterruptionWatch {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut interrupted = BTreeSet::new();
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                for state in &states {
                    let spooled: Vec<String> = std::fs::read_dir(state.join("spool"))
                        .map(|rd| {
                            rd.flatten()
                                .filter_map(|e| {
                                    let name = e.file_name().to_string_lossy().into_owned();
                                    name.strip_suffix(".xml").map(str::to_string)
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    // Spool first, then processes: a batch whose cycle is still alive
                    // is never counted.
                    if !spooled.is_empty() && !runner_process_alive(state) {
                        interrupted.extend(spooled);
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            interrupted
        });
        InterruptionWatch { stop, handle }
    }

    /// Stops watching; the ids of the interrupted batches seen.
    pub fn finish(self) -> BTreeSet<String> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.handle.join().expect("watch thread")
    }
}
