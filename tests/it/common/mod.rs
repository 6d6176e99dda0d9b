//! Test harness shared by the integration tests: a private PostgreSQL cluster made with
//! the system's `initdb` (started once per test run), a
//! fresh database per test, and a clean environment for the commands under test.
#![allow(dead_code)]

pub mod apache;
pub mod delay_smtp;
pub mod pgbouncer;
pub mod php;
pub mod pipeline;
pub mod smtp;
pub mod smtp_sink;
pub mod web;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// Environment variables that could leak the developer's setup into a test.
const LEAKY_ENV: &[&str] = &[
    "MAILRUN_DATABASE_URL",
    "MAILRUN_CONFIG",
    "MAILRUN_RUNNER_DIR",
    "PGHOST",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
];

/// A command for one of the crate's binaries with the user's environment scrubbed.
pub fn command(bin: &str) -> Command {
    let mut cmd = Command::new(bin);
    for var in LEAKY_ENV {
        cmd.env_remove(var);
    }
    cmd.env("NO_COLOR", "1");
    cmd
}

/// Runs a command and returns its output, with stdout and stderr shown on failure.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Waits until something accepts connections on `addr` ("127.0.0.1:PORT"), for at most
/// 30 s (a safety bound: servers listen within a second). Panics naming `what` when it
/// does not, or at once when `child`, the process that should listen, has exited;
/// `detail` adds what to show then (a log).
#[track_caller]
pub fn wait_for_listener(
    addr: &str,
    what: &str,
    mut child: Option<&mut std::process::Child>,
    detail: impl Fn() -> String,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        if let Some(Ok(Some(status))) = child.as_mut().map(|c| c.try_wait()) {
            panic!(
                "{what} exited with {status} before listening on {addr}\n{}",
                detail()
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not listen on {addr}\n{}",
            detail()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A fresh database for one test with the mailrun schema in place (`dispatch-admin
/// init` without a config file); its URL.
pub fn initialised_db(test: &str) -> String {
    let url = cluster().fresh_db(test);
    let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    mailrun::dispatcher::schema::migrate(&mut c).expect("migrate");
    url
}

/// Runs `dispatch-admin --database-url URL ARGS...`.
pub fn admin(url: &str, args: &[&str]) -> Output {
    run(command(env!("CARGO_BIN_EXE_dispatch-admin"))
        .arg("--database-url")
        .arg(url)
        .args(args))
}

/// A command's standard output read as one JSON value.
#[track_caller]
pub fn json_out(out: &Output) -> serde_json::Value {
    serde_json::from_str(stdout(out).trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(out), stderr(out)))
}

/// Asserts a command's exit status, printing its output when it differs.
#[track_caller]
pub fn assert_status(out: &Output, expected: i32) {
    assert_eq!(
        out.status.code(),
        Some(expected),
        "unexpected exit status\n--- stdout\n{}\n--- stderr\n{}",
        stdout(out),
        stderr(out)
    );
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The private cluster every test binary of this run shares.
pub struct PgCluster {
    pub port: u16,
    pub data_dir: PathBuf,
}

static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
static DB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Where the cluster of this checkout lives: outside the checkout (PostgreSQL may run as
/// another user who cannot enter the tester's home) and unique per checkout and user.
fn cluster_root() -> PathBuf {
    if let Ok(dir) = std::env::var("MAILRUN_TEST_PG_DIR") {
        return PathBuf::from(dir);
    }
    let manifest = env!("CARGO_MANIFEST_DIR");
    let mut hash: u64 = 0xcbf29ce484222325;
    for b in manifest.bytes() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    std::env::temp_dir().join(format!("mailrun-test-pg-{hash:016x}"))
}

/// Finds a PostgreSQL server program: PATH first, then Debian's versioned folders.
pub fn pg_bin(name: &str) -> PathBuf {
    if let Ok(out) = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
    {
        let found = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !found.is_empty() {
            return PathBuf::from(found);
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    versions.sort();
    versions
        .into_iter()
        .rev()
        .map(|v| v.join("bin").join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("PostgreSQL's {name} not found: run scripts/test-setup.sh"))
}

/// PgBouncer's program (Debian puts it in /usr/sbin, often not on a user's PATH).
pub fn pgbouncer_bin() -> PathBuf {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin"])
    {
        let path = Path::new(dir).join("pgbouncer");
        if path.exists() {
            return path;
        }
    }
    panic!("pgbouncer not found: run scripts/test-setup.sh")
}

/// Runs a PostgreSQL program, as the `postgres` user when we are root (PostgreSQL refuses
/// to run as root).
pub fn pg_command(program: &str) -> Command {
    let bin = pg_bin(program);
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(bin);
        cmd
    } else {
        Command::new(bin)
    }
}

fn pg_ready(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        && postgres::Client::connect(
            &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"),
            postgres::NoTls,
        )
        .is_ok()
}

/// Starts (or reuses) the private cluster. Left running for the next test binary;
/// `scripts/test.sh` stops it at the end of the run.
pub fn cluster() -> &'static PgCluster {
    CLUSTER.get_or_init(|| {
        let root = cluster_root();
        let data_dir = root.join("data");
        let port_file = root.join("port");
        std::fs::create_dir_all(&root).expect("create cluster root");
        if let Ok(port) = std::fs::read_to_string(&port_file) {
            if let Ok(port) = port.trim().parse::<u16>() {
                if pg_ready(port) {
                    return PgCluster { port, data_dir };
                }
            }
        }
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&root)
                .status()
                .expect("chown");
            assert!(status.success(), "chown of {root:?} failed");
        }
        if !data_dir.join("PG_VERSION").exists() {
            let out = pg_command("initdb")
                .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync", "-D"])
                .arg(&data_dir)
                .output()
                .expect("initdb");
            assert!(
                out.status.success(),
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let port = free_port();
        let log = root.join("postgres.log");
        let options = format!(
            "-p {port} -h 127.0.0.1 -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            data_dir.display()
        );
        let out = pg_command("pg_ctl")
            .arg("-D")
            .arg(&data_dir)
            .arg("-l")
            .arg(&log)
            .args(["-o", &options, "-w", "-t", "60", "start"])
            .output()
            .expect("pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::fs::write(&port_file, port.to_string()).expect("write port file");
        PgCluster { port, data_dir }
    })
}

impl PgCluster {
    pub fn url(&self, dbname: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{dbname}", self.port)
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.parent().unwrap().join("postgres.log")
    }

    /// Sets server parameters (`ALTER SYSTEM`) and reloads the configuration.
    pub fn configure(&self, settings: &[(&str, &str)]) {
        let mut admin = postgres::Client::connect(&self.url("postgres"), postgres::NoTls)
            .expect("connect to private cluster");
        for (name, value) in settings {
            admin
                .batch_execute(&format!("ALTER SYSTEM SET {name} = '{value}'"))
                .unwrap_or_else(|e| panic!("set {name}: {e}"));
        }
        admin
            .batch_execute("SELECT pg_reload_conf()")
            .expect("reload");
    }

    /// A fresh, empty database for one test; its URL.
    pub fn fresh_db(&self, test: &str) -> String {
        let n = DB_COUNTER.fetch_add(1, Ordering::SeqCst);
        let name: String = format!("t_{}_{}_{n}", test, std::process::id())
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(60)
            .collect();
        let mut admin = postgres::Client::connect(&self.url("postgres"), postgres::NoTls)
            .expect("connect to private cluster");
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
            .expect("drop stale test database");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create test database");
        self.url(&name)
    }

    /// Stops the server (for fault tests); `start` brings it back on the same port.
    pub fn stop(&self) {
        let out = pg_command("pg_ctl")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-m", "fast", "-w", "stop"])
            .output()
            .expect("pg_ctl stop");
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn start(&self) {
        let options = format!(
            "-p {} -h 127.0.0.1 -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            self.port,
            self.data_dir.display()
        );
        let log = self.data_dir.parent().unwrap().join("postgres.log");
        let out = pg_command("pg_ctl")
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&log)
            .args(["-o", &options, "-w", "-t", "60", "start"])
            .output()
            .expect("pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A temporary directory for one test, removed when dropped.
/// The lines of a record file a test server appends to while the test reads it. A last
/// line without its newline is still being written: it is left for the next read rather
/// than taken for a corrupt or truncated record.
pub fn complete_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let end = text.rfind('\n').map_or(0, |last| last + 1);
    text[..end].lines().map(str::to_string).collect()
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("mailrun-test-")
        .tempdir()
        .expect("temp dir")
}

pub fn write(path: &Path, contents: impl AsRef<[u8]>) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, contents).expect("write");
}

/// A PostgreSQL cluster of one test's own (for tests that stop and start the server,
/// which would disturb every other test on the shared cluster). Stopped and removed
/// when dropped.
pub struct PrivateCluster {
    pub cluster: PgCluster,
    _root: tempfile::TempDir,
}

impl PrivateCluster {
    pub fn start() -> PrivateCluster {
        let root = tempfile::Builder::new()
            .prefix("mailrun-test-pg-own-")
            .tempdir()
            .expect("temp dir");
        let data_dir = root.path().join("data");
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(root.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown of {:?} failed", root.path());
        }
        let out = pg_command("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data_dir)
            .output()
            .expect("initdb: run scripts/test-setup.sh");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = PgCluster {
            port: free_port(),
            data_dir,
        };
        cluster.start();
        PrivateCluster {
            cluster,
            _root: root,
        }
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = pg_command("pg_ctl")
            .arg("-D")
            .arg(&self.cluster.data_dir)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// `runner-admin init` of a state folder for `runner_id`, the key given on stdin (never
/// on the command line).
pub fn runner_init(
    state: &Path,
    dispatcher_url: &str,
    runner_id: &str,
    key: &mailrun::protocol::sign::SigningKey,
) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = command(env!("CARGO_BIN_EXE_runner-admin"))
        .arg("--state-dir")
        .arg(state)
        .args([
            "init",
            "--dispatcher-url",
            dispatcher_url,
            "--runner-id",
            runner_id,
        ])
        .args(["--key-id", &key.key_id, "--key-file", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runner-admin init");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{}\n", key.secret_hex()).as_bytes())
        .expect("write key");
    let out = child.wait_with_output().expect("runner-admin init");
    assert_status(&out, 0);
}
