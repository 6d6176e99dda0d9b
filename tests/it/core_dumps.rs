//! Core dumps of the commands would hold the SMTP passwords, runner keys and database
//! URL they work with: every command turns them off at start (core size limit 0, not
//! dumpable, which also stops ptrace by the same user). Checked on the real binaries
//! while they run, through /proc.
use crate::common;

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mailrun::protocol::sign::SigningKey;

/// nobody/nogroup on Debian.
const NOBODY: u32 = 65534;

/// Runs `bin` as nobody with the core size limit raised (`prlimit` execs it, so the pid
/// is the command's): left alone, such a process could dump core, and its /proc files
/// belong to nobody.
fn spawn_as_nobody(bin: &str, args: &[&str]) -> Child {
    Command::new("prlimit")
        .args(["--core=unlimited", "--", bin])
        .args(args)
        .env_clear()
        .env("HOME", "/nonexistent")
        .env("NO_COLOR", "1")
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prlimit (util-linux)")
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_port(port: u16, child: &mut Child) {
    common::wait_for_listener(
        &format!("127.0.0.1:{port}"),
        "the command",
        Some(child),
        String::new,
    );
}

/// The soft and hard core size limits, and the owner of /proc/PID/status: root (0) for a
/// process that is not dumpable, else the process's own user (proc(5)).
fn core_state(pid: u32) -> (String, u32) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap()
        .split_whitespace()
        .skip(4)
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let owner = std::fs::metadata(format!("/proc/{pid}/status"))
        .unwrap()
        .uid();
    (core, owner)
}

#[test]
fn commands_holding_secrets_cannot_dump_core_or_be_traced() {
    assert!(
        common::is_root(),
        "this test runs the commands as nobody and must run as root"
    );
    // The baseline: the same spawn of a program that does nothing about it can dump.
    let sleeper = Running(spawn_as_nobody("/bin/sleep", &["30"]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(format!("/proc/{}/comm", sleeper.0.id()))
        .is_ok_and(|c| c.trim() != "sleep")
    {
        assert!(Instant::now() < deadline, "prlimit did not exec sleep");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        core_state(sleeper.0.id()),
        ("unlimited unlimited".to_string(), NOBODY)
    );
    drop(sleeper);

    // dispatch-cgi --listen: holds the database URL (it connects per request).
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut dispatcher = Running(spawn_as_nobody(
        env!("CARGO_BIN_EXE_dispatch-cgi"),
        &[
            "--listen",
            &addr,
            "--database-url",
            "postgres://mailrun:s3cret@127.0.0.1:9/mailrun",
        ],
    ));
    wait_for_port(port, &mut dispatcher.0);
    assert_eq!(
        core_state(dispatcher.0.id()),
        ("0 0".to_string(), 0),
        "dispatch-cgi"
    );

    // runner-cgi --listen: holds the runner's key.
    let dir = common::temp_dir();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let state = dir.path().join("state");
    common::runner_init(
        &state,
        "http://127.0.0.1:9/dispatch",
        "r1",
        &SigningKey::generate("k1"),
    );
    chown_nobody(&state);
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut runner = Running(spawn_as_nobody(
        env!("CARGO_BIN_EXE_runner-cgi"),
        &[
            "--listen",
            &addr,
            "--no-start",
            "--state-dir",
            state.to_str().unwrap(),
        ],
    ));
    wait_for_port(port, &mut runner.0);
    assert_eq!(
        core_state(runner.0.id()),
        ("0 0".to_string(), 0),
        "runner-cgi"
    );
}

fn chown_nobody(path: &Path) {
    let status = Command::new("chown")
        .args(["-R", "nobody:nogroup"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Every command goes through `cli::run`, which turns core dumps off before anything
/// else; a new command that did not would escape the test above.
#[test]
fn every_command_starts_through_cli_run() {
    let bins = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin");
    let mut n = 0;
    for entry in std::fs::read_dir(&bins).unwrap() {
        let path = entry.unwrap().path();
        let source = std::fs::read_to_string(&path).unwrap();
        assert!(
            source.contains("mailrun::cli::run("),
            "{} does not start through mailrun::cli::run",
            path.display()
        );
        n += 1;
    }
    assert_eq!(n, 8, "commands in src/bin");
}
