//! Runner self-update against a real HTTP server on loopback: a newer build is
//! installed; a corrupted download, an interrupted one and a hostile archive replace
//! nothing. The "newer build" is the real runner binaries with a marker appended (an
//! ELF file still runs with trailing bytes).
#![cfg(feature = "self-update")]
use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mailrun::cli::exit_code_of;
use mailrun::protocol::SoftwareUpdate;
use mailrun::runner::update::{self, UpdateOptions, UpdateOutcome, RUNNER_BINARIES};
use sha2::{Digest, Sha256};

const MARKER: &[u8] = b"\nMAILRUN-SELF-UPDATE-TEST-0.2.0\n";

fn bin_path(name: &str) -> &'static str {
    match name {
        "runner-admin" => env!("CARGO_BIN_EXE_runner-admin"),
        "runner-cgi" => env!("CARGO_BIN_EXE_runner-cgi"),
        "runner-poll" => env!("CARGO_BIN_EXE_runner-poll"),
        "runner-send" => env!("CARGO_BIN_EXE_runner-send"),
        _ => unreachable!("not a runner binary: {name}"),
    }
}

/// The current runner binaries, stripped (debug builds are ~100 MB each; stripping keeps
/// the archive, hashing and unpacking quick), made once per test run.
fn current(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = scratch("current");
        for b in RUNNER_BINARIES {
            let status = Command::new("strip")
                .arg("-o")
                .arg(dir.join(b))
                .arg(bin_path(b))
                .status()
                .expect("strip not found (binutils): run scripts/test-setup.sh");
            assert!(status.success(), "strip {b}");
        }
        dir
    });
    dir.join(name)
}

/// A folder under target/ for files shared by the tests of one run (a static TempDir
/// would never be dropped, leaking hundreds of MB per run); emptied at first use.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/self-update-test")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// tar.gz archives made with the system's tar, as build-bundle.sh does.
struct Archives {
    newer: Vec<u8>,
    hostile: Vec<u8>,
}

fn archives() -> &'static Archives {
    static ARCHIVES: OnceLock<Archives> = OnceLock::new();
    ARCHIVES.get_or_init(|| {
        let dir = scratch("archives");
        let payload = dir.join("payload");
        std::fs::create_dir(&payload).unwrap();
        for name in RUNNER_BINARIES {
            let mut bytes = std::fs::read(current(name)).unwrap();
            bytes.extend_from_slice(MARKER);
            std::fs::write(payload.join(name), bytes).unwrap();
        }
        let tar = |out: &Path, dir: &Path, names: &[&str]| {
            let status = Command::new("tar")
                .arg("-czf")
                .arg(out)
                .arg("-C")
                .arg(dir)
                .args(names)
                .status()
                .expect("tar (run scripts/test-setup.sh)");
            assert!(status.success());
        };
        let newer = dir.join("newer.tar.gz");
        tar(&newer, &payload, &RUNNER_BINARIES);
        // A well-formed archive with a path that escapes the folder.
        let hostile_dir = dir.join("hostile/inner");
        std::fs::create_dir_all(&hostile_dir).unwrap();
        std::fs::write(dir.join("hostile/evil"), b"#!/bin/sh\n").unwrap();
        let hostile = dir.join("hostile.tar.gz");
        tar(&hostile, &hostile_dir, &["../evil"]);
        Archives {
            newer: std::fs::read(&newer).unwrap(),
            hostile: std::fs::read(&hostile).unwrap(),
        }
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A loopback HTTP/1.1 server: `/newer` serves the archive, `/corrupt` the archive
/// with one byte flipped, `/interrupted` half of it under a full Content-Length,
/// `/hostile` the hostile archive. Counts requests.
struct Server {
    port: u16,
    requests: Arc<AtomicUsize>,
}

fn serve() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if line == "\r\n" => break,
                    Ok(_) => {}
                }
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or("/");
            let archives = archives();
            let (body, send): (Vec<u8>, usize) = match path {
                "/newer" => (archives.newer.clone(), archives.newer.len()),
                "/corrupt" => {
                    let mut b = archives.newer.clone();
                    let mid = b.len() / 2;
                    b[mid] ^= 0xff;
                    let n = b.len();
                    (b, n)
                }
                "/interrupted" => (archives.newer.clone(), archives.newer.len() / 2),
                "/hostile" => (archives.hostile.clone(), archives.hostile.len()),
                _ => {
                    let _ = stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    continue;
                }
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body[..send]);
            let _ = stream.flush();
            // Dropping the stream closes it: for /interrupted, mid-body.
        }
    });
    Server { port, requests }
}

/// A runner installation: the four current binaries in a bin folder.
fn install() -> (tempfile::TempDir, PathBuf) {
    // Next to the stripped binaries: hard links need the same filesystem.
    let parent = current("runner-admin")
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let dir = tempfile::Builder::new()
        .prefix("install-")
        .tempdir_in(parent)
        .unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for name in RUNNER_BINARIES {
        // A hard link is safe: an update renames over the name, never writes the file.
        std::fs::hard_link(current(name), bin.join(name)).unwrap();
    }
    (dir, bin)
}

fn options() -> UpdateOptions {
    UpdateOptions {
        connect_timeout: Duration::from_secs(10),
        timeout: Duration::from_secs(120),
        max_bytes: 1 << 30,
        allow_plain_http: false,
    }
}

fn announce(server: &Server, path: &str) -> SoftwareUpdate {
    SoftwareUpdate {
        version: "0.2.0-test".into(),
        url: format!("http://127.0.0.1:{}{path}", server.port),
        sha256: sha256_hex(&archives().newer),
    }
}

#[track_caller]
fn assert_unchanged(bin: &Path) {
    for name in RUNNER_BINARIES {
        let installed = std::fs::read(bin.join(name)).unwrap();
        let original = std::fs::read(current(name)).unwrap();
        assert!(installed == original, "{name} was modified");
        let ino = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
        assert_eq!(
            ino(&bin.join(name)),
            ino(&current(name)),
            "{name} was replaced"
        );
    }
    let leftovers: Vec<String> = std::fs::read_dir(bin)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".update-staging"))
        .collect();
    assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");
    assert!(!bin.join(update::INSTALLED_MARKER).exists());
}

#[test]
fn newer_build_is_installed_atomically_and_only_once() {
    let server = serve();
    let (_dir, bin) = install();
    let announced = announce(&server, "/newer");
    let outcome = update::apply(&announced, &bin, &options()).expect("update");
    assert_eq!(
        outcome,
        UpdateOutcome::Updated {
            from: mailrun::protocol::SOFTWARE_VERSION.to_string(),
            to: "0.2.0-test".into()
        }
    );
    for name in RUNNER_BINARIES {
        let bytes = std::fs::read(bin.join(name)).unwrap();
        assert!(bytes.ends_with(MARKER), "{name} not replaced");
    }
    let out =
        common::run(common::command(&bin.join("runner-admin").to_string_lossy()).arg("--version"));
    common::assert_status(&out, 0);

    // Announced again: nothing is downloaded.
    let before = server.requests.load(Ordering::SeqCst);
    let again = update::apply(&announced, &bin, &options()).expect("second run");
    assert_eq!(
        again,
        UpdateOutcome::UpToDate {
            version: "0.2.0-test".into()
        }
    );
    assert_eq!(server.requests.load(Ordering::SeqCst), before);
}

#[test]
fn corrupted_download_replaces_nothing() {
    let server = serve();
    let (_dir, bin) = install();
    let err = update::apply(&announce(&server, "/corrupt"), &bin, &options()).unwrap_err();
    assert!(format!("{err:#}").contains("SHA-256 mismatch"), "{err:#}");
    assert_eq!(exit_code_of(&err), 65);
    assert_unchanged(&bin);
}

#[test]
fn interrupted_download_replaces_nothing() {
    let server = serve();
    let (_dir, bin) = install();
    let err = update::apply(&announce(&server, "/interrupted"), &bin, &options()).unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("interrupted") || text.contains("cannot download"),
        "{text}"
    );
    assert!(matches!(exit_code_of(&err), 69 | 75), "{text}");
    assert_unchanged(&bin);
}

#[test]
fn archive_escaping_its_folder_is_refused() {
    let server = serve();
    let (_dir, bin) = install();
    let mut announced = announce(&server, "/hostile");
    announced.sha256 = sha256_hex(&archives().hostile);
    let err = update::apply(&announced, &bin, &options()).unwrap_err();
    assert!(format!("{err:#}").contains("bad update archive"), "{err:#}");
    assert_unchanged(&bin);
    assert!(!bin.parent().unwrap().join("evil").exists());
}

#[test]
fn announcements_are_checked_before_any_download() {
    let server = serve();
    let (_dir, bin) = install();
    let mut plain = announce(&server, "/newer");
    plain.url = "http://mail.example.com/runner.tar.gz".into();
    let err = update::apply(&plain, &bin, &options()).unwrap_err();
    assert!(format!("{err:#}").contains("plain http"), "{err:#}");
    let mut short = announce(&server, "/newer");
    short.sha256 = "abc".into();
    assert!(update::apply(&short, &bin, &options()).is_err());
    assert_eq!(server.requests.load(Ordering::SeqCst), 0);
    assert_unchanged(&bin);
}

/// `runner-admin self-update` end to end: the announcement comes from runner.toml (as
/// runner-cgi stores a JobRunnerConfigUpdate), the binaries replaced are the ones next
/// to the running runner-admin.
#[test]
fn runner_admin_self_update_installs_the_announced_build() {
    let server = serve();
    let (dir, bin) = install();
    let state = dir.path().join("state");
    let admin = bin.join("runner-admin").to_string_lossy().into_owned();

    // Nothing announced yet: no work.
    let init = common::run(
        common::command(&admin)
            .arg("--state-dir")
            .arg(&state)
            .args([
                "init",
                "--dispatcher-url",
                "http://127.0.0.1:9/cgi-bin/dispatch-cgi",
                "--runner-id",
                "r1",
                "--key-id",
                "r1-k1",
                "--key",
                &"ab".repeat(32),
            ]),
    );
    common::assert_status(&init, 0);
    let idle = common::run(
        common::command(&admin)
            .arg("--state-dir")
            .arg(&state)
            .arg("self-update"),
    );
    common::assert_status(&idle, 3);

    // Announce the newer build the way a pushed config is stored.
    let path = state.join("runner.toml");
    let mut config: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    let announced = announce(&server, "/newer");
    let settings = config
        .entry("settings")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .unwrap();
    settings.insert("software_version".into(), announced.version.clone().into());
    settings.insert("software_url".into(), announced.url.clone().into());
    settings.insert("software_sha256".into(), announced.sha256.clone().into());
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();

    let out = common::run(
        common::command(&admin)
            .arg("--state-dir")
            .arg(&state)
            .arg("self-update"),
    );
    common::assert_status(&out, 0);
    assert!(common::stdout(&out).is_empty() && common::stderr(&out).is_empty());
    for name in RUNNER_BINARIES {
        assert!(std::fs::read(bin.join(name)).unwrap().ends_with(MARKER));
    }
    // The replaced runner-admin runs, and finds nothing more to do.
    let again = common::run(
        common::command(&admin)
            .arg("--state-dir")
            .arg(&state)
            .arg("self-update"),
    );
    common::assert_status(&again, 3);
}
