//! Packaging, end to end:
//! - the shared-hosting bundle is built for real (static binaries), uploaded into the
//!   cgi-bin of a real lighttpd on 127.0.0.1 that runs CGI as an unprivileged user whose
//!   PATH holds only the few tools the stub needs (no compiler), then unpacked, set up
//!   and called as the runner's SOAP endpoint;
//! - the Debian package is built with cargo-deb, its contents and control data are
//!   inspected, and it is installed (on the machine when root, else into a throwaway
//!   root) and run;
//! - runner-cgi under Apache with Debian's stock suexec and mod_userdir, as a user of
//!   its own, laid out as docs/packaging.md says, delivers a batch.
use crate::common;

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mailrun::protocol::codec;
use mailrun::protocol::sign::SigningKey;
use mailrun::protocol::{Body, JobRunnerReady};
use mailrun::web::client::{Client, ClientOptions};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The commands the bundle's stub may use: the CGI user's whole PATH. No compiler.
const STUB_TOOLS: &[&str] = &[
    "sh", "cat", "cksum", "tail", "gzip", "tar", "mkdir", "mv", "rm", "chmod", "dd", "sed", "tr",
    "od", "id", "cut", "dirname", "find", "getent",
];

/// Cargo.toml's unoptimised profile for packaging tests (one build per test run, shared
/// between the bundle and the .deb).
const PACKAGING_PROFILE: &str = "packaging-test";

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

fn require_tool(name: &str) -> PathBuf {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .env(
            "PATH",
            format!(
                "{}:/usr/sbin:/sbin",
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .output()
        .expect("sh");
    let found = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && !found.is_empty(),
        "{name} not found: run scripts/test-setup.sh"
    );
    PathBuf::from(found)
}

fn run_ok(cmd: &mut Command) -> String {
    let out = common::run(cmd);
    common::assert_status(&out, 0);
    common::stdout(&out)
}

// --- the shared-hosting bundle ---------------------------------------------------------

struct Bundle {
    cgi: PathBuf,
    archive: PathBuf,
}

/// Builds the bundle once per test binary, as an operator would.
fn bundle() -> &'static Bundle {
    static BUNDLE: OnceLock<Bundle> = OnceLock::new();
    BUNDLE.get_or_init(|| {
        let out_dir = Path::new(ROOT).join("target/bundle-test");
        let out = common::run(
            Command::new(Path::new(ROOT).join("packaging/shared-hosting/build-bundle.sh"))
                .arg("--out-dir")
                .arg(&out_dir)
                .args(["--profile", PACKAGING_PROFILE])
                .env("CARGO", cargo()),
        );
        common::assert_status(&out, 0);
        let archive = std::fs::read_dir(&out_dir)
            .expect("bundle out dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.to_string_lossy().ends_with("-x86_64.tar.gz"))
            .expect("self-update archive");
        Bundle {
            cgi: out_dir.join("mailrun-runner.cgi"),
            archive,
        }
    })
}

/// An unprivileged web user (created with useradd when root, removed on drop), its home
/// with a web root inside, and a PATH folder holding only STUB_TOOLS.
struct Site {
    _dir: tempfile::TempDir,
    user: Option<String>,
    home: PathBuf,
    www: PathBuf,
    tools: PathBuf,
    lighttpd: Option<Child>,
    port: u16,
    error_log: PathBuf,
}

static USER_COUNTER: AtomicU32 = AtomicU32::new(0);

impl Site {
    /// `home_writable`: whether the user may write its home and the web root's parent
    /// (false forces the stub's last-resort state folder next to the script).
    fn new(home_writable: bool) -> Site {
        let dir = common::temp_dir();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let home = dir.path().join("home");
        let www = home.join("public_html");
        std::fs::create_dir_all(www.join("cgi-bin")).unwrap();
        let tools = dir.path().join("tools");
        std::fs::create_dir_all(&tools).unwrap();
        for tool in STUB_TOOLS {
            let target = require_tool(tool);
            std::os::unix::fs::symlink(&target, tools.join(tool)).unwrap();
        }
        let user = if common::is_root() {
            let name = format!(
                "mrweb{}x{}",
                std::process::id() % 100_000,
                USER_COUNTER.fetch_add(1, Ordering::SeqCst)
            );
            run_ok(
                Command::new(require_tool("useradd"))
                    .args(["-M", "-U", "-s", "/usr/sbin/nologin", "-d"])
                    .arg(&home)
                    .arg(&name),
            );
            let owner = if home_writable {
                format!("{name}:{name}")
            } else {
                "root:root".to_string()
            };
            run_ok(Command::new("chown").arg(&owner).arg(&home));
            run_ok(
                Command::new("chown")
                    .arg("-R")
                    .arg(format!("{name}:{name}"))
                    .arg(&www),
            );
            Some(name)
        } else {
            None
        };
        for d in [&home, &www] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        if user.is_none() && !home_writable {
            // Not root: a home we cannot write ourselves (root would ignore the mode).
            std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o555)).unwrap();
        }
        // lighttpd opens its log after dropping to the web user.
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        if let Some(user) = &user {
            run_ok(
                Command::new("chown")
                    .arg(format!("{user}:{user}"))
                    .arg(&logs),
            );
        }
        let error_log = logs.join("lighttpd-error.log");
        Site {
            _dir: dir,
            user,
            home,
            www,
            tools,
            lighttpd: None,
            port: 0,
            error_log,
        }
    }

    fn script(&self) -> PathBuf {
        self.www.join("cgi-bin/mailrun.cgi")
    }

    /// "FTP upload": copy the file into cgi-bin as the user, mode 0755.
    fn upload(&self, file: &Path) {
        let dest = self.script();
        let tmp = dest.with_extension("uploading");
        std::fs::copy(file, &tmp).expect("upload bundle");
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
        if let Some(user) = &self.user {
            run_ok(
                Command::new("chown")
                    .arg(format!("{user}:{user}"))
                    .arg(&tmp),
            );
        }
        std::fs::rename(&tmp, &dest).unwrap();
    }

    fn start(&mut self) {
        let lighttpd = require_tool("lighttpd");
        self.port = common::free_port();
        let conf = self._dir.path().join("lighttpd.conf");
        let mut text = format!(
            r#"server.document-root = "{www}"
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = "{log}"
server.modules = ( "mod_cgi", "mod_setenv" )
cgi.assign = ( ".cgi" => "" )
setenv.add-environment = ( "PATH" => "{tools}" )
"#,
            www = self.www.display(),
            port = self.port,
            log = self.error_log.display(),
            tools = self.tools.display(),
        );
        if let Some(user) = &self.user {
            text.push_str(&format!(
                "server.username = \"{user}\"\nserver.groupname = \"{user}\"\n"
            ));
        } else {
            // Not root: CGI runs as us; point HOME at the site's home instead of ours.
            text = text.replace(
                "( \"PATH\" =>",
                &format!("( \"HOME\" => \"{}\", \"PATH\" =>", self.home.display()),
            );
        }
        std::fs::write(&conf, text).unwrap();
        let child = Command::new(lighttpd)
            .arg("-D")
            .arg("-f")
            .arg(&conf)
            .env_clear()
            .env("PATH", &self.tools)
            .stdin(Stdio::null())
            .stderr(
                std::fs::File::create(self._dir.path().join("lighttpd.stderr"))
                    .expect("lighttpd stderr file"),
            )
            .spawn()
            .expect("start lighttpd");
        self.lighttpd = Some(child);
        let child = self.lighttpd.as_mut();
        common::wait_for_listener(
            &format!("127.0.0.1:{}", self.port),
            "lighttpd",
            child,
            || {
                format!(
                    "{}{}",
                    std::fs::read_to_string(&self.error_log).unwrap_or_default(),
                    std::fs::read_to_string(self._dir.path().join("lighttpd.stderr"))
                        .unwrap_or_default()
                )
            },
        );
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/cgi-bin/mailrun.cgi", self.port)
    }

    /// Runs a command line as the web user with only the stub's tools on PATH, the way
    /// the hosting's cron would.
    fn as_user(&self, argv: &[&str]) -> std::process::Output {
        let mut cmd = match &self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]);
                c.arg(require_tool("env"));
                c
            }
            None => Command::new(require_tool("env")),
        };
        cmd.arg("-i")
            .arg(format!("PATH={}", self.tools.display()))
            .arg(format!("HOME={}", self.home.display()))
            .args(argv);
        common::run(&mut cmd)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Some(mut child) = self.lighttpd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(user) = &self.user {
            // userdel refuses while a CGI child (a cycle runner-cgi started) still runs
            // as the user; those end on their own, so wait for them a little.
            let deadline = Instant::now() + Duration::from_secs(30);
            while !Command::new("userdel")
                .arg(user)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        // The temp dir holds files the web user made; make sure we can remove them.
        let _ = std::fs::set_permissions(&self.home, std::fs::Permissions::from_mode(0o755));
    }
}

struct Reply {
    status: u16,
    body: String,
}

fn http(method: &str, url: &str, body: Option<&str>) -> Reply {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let result = match (method, body) {
        ("GET", _) => agent.get(url).call(),
        (_, Some(b)) => agent
            .post(url)
            .header("Content-Type", "text/plain")
            .send(b.as_bytes()),
        _ => agent.post(url).send_empty(),
    };
    let mut resp = result.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    Reply { status, body }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn token_in(page: &str) -> Option<String> {
    let start = page.find("<code id=\"token\">")? + "<code id=\"token\">".len();
    let end = page[start..].find("</code>")? + start;
    Some(page[start..end].to_string())
}

fn setup_form(token: &str, key: &SigningKey, dispatcher_port: u16) -> String {
    format!(
        "token={token}\r\ndispatcher_url=http://127.0.0.1:{dispatcher_port}/cgi-bin/dispatch-cgi\r\nrunner_id=shared-1\r\nkey_id={}\r\nkey={}\r\n",
        key.key_id,
        key.secret_hex()
    )
}

#[test]
fn bundle_is_one_static_file() {
    let bundle = bundle();
    let bytes = std::fs::read(&bundle.cgi).unwrap();
    assert!(
        bytes.starts_with(b"#!/bin/sh\n"),
        "the bundle is a sh script"
    );
    let marker = b"\n__MAILRUN_PAYLOAD__\n";
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("payload marker");
    // gzip magic right after the marker: the payload is appended, not encoded.
    assert_eq!(
        &bytes[at + marker.len()..at + marker.len() + 2],
        &[0x1f, 0x8b]
    );
    assert_eq!(mode(&bundle.cgi) & 0o111, 0o111, "executable");
    let listing = run_ok(Command::new("tar").arg("-tzf").arg(&bundle.archive));
    let mut names: Vec<&str> = listing.lines().collect();
    names.sort();
    assert_eq!(
        names,
        ["runner-admin", "runner-cgi", "runner-poll", "runner-send"]
    );
    // Static: no program interpreter, so no dependency on the host's libc version.
    let dir = common::temp_dir();
    run_ok(
        Command::new("tar")
            .arg("-xzf")
            .arg(&bundle.archive)
            .arg("-C")
            .arg(dir.path()),
    );
    let out = common::run(Command::new("ldd").arg(dir.path().join("runner-cgi")));
    let text = format!("{}{}", common::stdout(&out), common::stderr(&out));
    assert!(
        text.contains("not a dynamic executable") || text.contains("statically linked"),
        "runner-cgi is not static: {text}"
    );
}

#[test]
fn bundle_unpacks_on_first_request_then_is_runner_cgi() {
    let bundle = bundle();
    let mut site = Site::new(true);
    site.upload(&bundle.cgi);
    site.start();
    let state = site.home.join("mailrun-runner");

    // First request: unpack into ~/mailrun-runner (outside the web root), show the
    // one-time token and the crontab line.
    let first = http("GET", &site.url(), None);
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(
        first.body.contains("ready: mailrun runner"),
        "{}",
        first.body
    );
    let token = token_in(&first.body).expect("token on the first page");
    assert_eq!(token.len(), 32);
    let cron = format!(
        "* * * * * {}/bin/runner-admin --state-dir {} cycle --max-seconds 55",
        state.display(),
        state.display()
    );
    assert!(
        first.body.contains(&cron),
        "crontab line missing: {}",
        first.body
    );
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("bin")), 0o700);
    assert_eq!(mode(&state.join("setup-token")), 0o600);
    for b in ["runner-admin", "runner-cgi", "runner-poll", "runner-send"] {
        assert_eq!(mode(&state.join("bin").join(b)), 0o700, "{b}");
    }
    if let Some(user) = &site.user {
        let uid: u32 = run_ok(Command::new("id").args(["-u", user]))
            .trim()
            .parse()
            .unwrap();
        let meta = std::fs::metadata(state.join("bin/runner-cgi")).unwrap();
        assert_eq!(meta.uid(), uid, "unpacked as the web user");
    }
    assert!(!state.join(".htaccess").exists(), "outside the web root");
    let web_files: Vec<_> = std::fs::read_dir(site.www.join("cgi-bin"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        web_files,
        ["mailrun.cgi"],
        "nothing else lands in the web root"
    );

    // The token is shown once.
    let second = http("GET", &site.url(), None);
    assert_eq!(second.status, 200);
    assert_eq!(token_in(&second.body), None, "{}", second.body);

    // Bad setups change nothing.
    let key = SigningKey::generate("shared-1-k1");
    let dispatcher_port = common::free_port();
    let wrong = http(
        "POST",
        &format!("{}?setup", site.url()),
        Some(&setup_form("0".repeat(32).as_str(), &key, dispatcher_port)),
    );
    assert_eq!(wrong.status, 403, "{}", wrong.body);
    let bad_key = setup_form(&token, &key, dispatcher_port).replace(&key.secret_hex(), "abc");
    let bad = http("POST", &format!("{}?setup", site.url()), Some(&bad_key));
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(!state.join("runner.toml").exists());
    assert!(state.join("setup-token").exists());

    // The real setup.
    let ok = http(
        "POST",
        &format!("{}?setup", site.url()),
        Some(&setup_form(&token, &key, dispatcher_port)),
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.body.contains("configured"), "{}", ok.body);
    assert!(
        !ok.body.contains(&key.secret_hex()),
        "the key is never echoed"
    );
    assert_eq!(mode(&state.join("runner.toml")), 0o600);
    assert!(!state.join("setup-token").exists(), "the token is spent");
    let leftovers: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".setup-key"))
        .collect();
    assert!(leftovers.is_empty(), "key file left behind: {leftovers:?}");
    let again = http(
        "POST",
        &format!("{}?setup", site.url()),
        Some(&setup_form(&token, &key, dispatcher_port)),
    );
    assert_eq!(again.status, 403, "{}", again.body);

    // Now the same URL is runner-cgi: a signed JobRunnerReady gets a signed answer.
    let client = Client::new(ClientOptions {
        connect_timeout: Duration::from_secs(10),
        timeout: Duration::from_secs(60),
        allow_plain_http: false,
        max_response_bytes: 1 << 20,
    });
    let body = Body::JobRunnerReady(JobRunnerReady {
        runner_id: "shared-1".into(),
        queued: 1,
    });
    let reply = client
        .post_signed(
            &site.url(),
            &key,
            codec::soap_action(&body),
            &codec::encode(&body),
        )
        .expect("runner-cgi answers");
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(reply.authenticated);
    match codec::decode(&reply.body) {
        Ok(Body::JobRunnerReadyResponse(_)) => {}
        other => panic!("expected JobRunnerReadyResponse, got {other:?}"),
    }

    // The crontab line's program runs as the web user with the bare PATH.
    let status = site.as_user(&[
        &format!("{}/bin/runner-admin", state.display()),
        "--state-dir",
        &state.to_string_lossy(),
        "status",
        "--json",
    ]);
    common::assert_status(&status, 0);
    assert!(common::stdout(&status).contains("shared-1"));
    assert!(!common::stdout(&status).contains(&key.secret_hex()));

    // A newer bundle uploaded over the old one is unpacked on the next request; the
    // runner's configuration stays.
    let config_before = std::fs::read(state.join("runner.toml")).unwrap();
    let newer = newer_bundle(bundle);
    site.upload(&newer.join("mailrun-runner.cgi"));
    let reply = client
        .post_signed(
            &site.url(),
            &key,
            codec::soap_action(&body),
            &codec::encode(&body),
        )
        .expect("runner-cgi answers after the re-upload");
    assert_eq!(reply.status, 200);
    let installed = std::fs::read(state.join("bin/runner-cgi")).unwrap();
    assert!(
        installed.ends_with(NEWER_MARKER),
        "the newer bundle was not unpacked"
    );
    assert_eq!(
        std::fs::read(state.join("runner.toml")).unwrap(),
        config_before
    );
}

const NEWER_MARKER: &[u8] = b"\nMAILRUN-NEWER-BUNDLE-TEST\n";

/// A second bundle whose binaries carry a marker (an ELF file runs with trailing bytes).
fn newer_bundle(bundle: &Bundle) -> PathBuf {
    let work = Path::new(ROOT).join("target/bundle-test-newer");
    let bins = work.join("bin");
    std::fs::create_dir_all(&bins).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xzf")
            .arg(&bundle.archive)
            .arg("-C")
            .arg(&bins),
    );
    for b in ["runner-admin", "runner-cgi", "runner-poll", "runner-send"] {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(bins.join(b))
            .unwrap();
        f.write_all(NEWER_MARKER).unwrap();
    }
    let out = work.join("out");
    run_ok(
        Command::new(Path::new(ROOT).join("packaging/shared-hosting/build-bundle.sh"))
            .arg("--bin-dir")
            .arg(&bins)
            .arg("--out-dir")
            .arg(&out),
    );
    out
}

#[test]
fn bundle_without_a_private_folder_fences_its_state_with_htaccess() {
    let bundle = bundle();
    let mut site = Site::new(false);
    site.upload(&bundle.cgi);
    site.start();
    let page = http("GET", &site.url(), None);
    assert_eq!(page.status, 200, "{}", page.body);
    let state = site.www.join("cgi-bin/.mailrun-runner");
    assert!(page.body.contains("Warning:"), "{}", page.body);
    assert!(state.join("bin/runner-cgi").exists());
    let htaccess = std::fs::read_to_string(state.join(".htaccess")).unwrap();
    assert!(htaccess.contains("Require all denied"));
    assert!(!site.home.join("mailrun-runner").exists());
}

#[test]
fn damaged_bundle_is_refused_and_installs_nothing() {
    let bundle = bundle();
    let mut bytes = std::fs::read(&bundle.cgi).unwrap();
    // What an ASCII-mode FTP upload does: CRLF for LF, here in the payload.
    let last = bytes.len() - 100;
    bytes.splice(last..last, *b"\r");
    let dir = common::temp_dir();
    let damaged = dir.path().join("damaged.cgi");
    std::fs::File::create(&damaged)
        .and_then(|mut f| f.write_all(&bytes))
        .unwrap();
    let mut site = Site::new(true);
    site.upload(&damaged);
    site.start();
    let page = http("GET", &site.url(), None);
    assert_eq!(page.status, 500, "{}", page.body);
    assert!(page.body.contains("binary mode"), "{}", page.body);
    assert!(!site.home.join("mailrun-runner/bin").exists());
}

// --- the Debian package ------------------------------------------------------------------

fn deb() -> &'static PathBuf {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        let probe = Command::new(cargo()).args(["deb", "--version"]).output();
        assert!(
            probe.map(|o| o.status.success()).unwrap_or(false),
            "cargo-deb not found: run scripts/test-setup.sh"
        );
        let out_dir = Path::new(ROOT).join("target/deb-test");
        let _ = std::fs::remove_dir_all(&out_dir);
        std::fs::create_dir_all(&out_dir).unwrap();
        let out = common::run(
            Command::new(cargo())
                .current_dir(ROOT)
                .args(["deb", "--locked", "--profile", PACKAGING_PROFILE])
                // The bundle's target and flags: the dependencies built for it are reused.
                .args(["--target", "x86_64-unknown-linux-gnu", "--output"])
                .arg(&out_dir)
                .env("RUSTFLAGS", "-C target-feature=+crt-static"),
        );
        common::assert_status(&out, 0);
        std::fs::read_dir(&out_dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .expect("a .deb")
    })
}

#[test]
fn deb_contains_binaries_pages_units_and_conffiles() {
    let deb = deb();
    let listing = run_ok(Command::new("dpkg-deb").arg("-c").arg(deb));
    let expected = [
        "./usr/bin/dispatch-admin",
        "./usr/bin/dispatch-cgi",
        "./usr/bin/dispatch-tick",
        "./usr/bin/push-config",
        "./usr/bin/runner-admin",
        "./usr/bin/runner-cgi",
        "./usr/bin/runner-poll",
        "./usr/bin/runner-send",
        "./usr/share/man/man7/mailrun.7",
        "./usr/share/man/man1/dispatch-tick.1",
        "./usr/share/man/man1/runner-admin.1",
        "./usr/share/bash-completion/completions/dispatch-tick",
        "./usr/share/zsh/vendor-completions/_runner-admin",
        "./usr/share/fish/vendor_completions.d/push-config.fish",
        "./etc/mailrun/dispatcher.toml",
        "./etc/default/mailrun",
        "./etc/cron.d/mailrun",
        "./usr/lib/systemd/system/mailrun-dispatch-tick.service",
        "./usr/lib/systemd/system/mailrun-dispatch-tick.timer",
        "./usr/lib/systemd/system/mailrun-runner-cycle.service",
        "./usr/lib/systemd/system/mailrun-runner-cycle.timer",
    ];
    for path in expected {
        assert!(
            listing
                .lines()
                .any(|l| l.ends_with(path) || l.contains(&format!("{path}.gz"))),
            "{path} not in the package:\n{listing}"
        );
    }
    for line in listing
        .lines()
        .filter(|l| l.contains("./usr/bin/") && !l.ends_with('/'))
    {
        // Executable by all, owned by root (uid/gid 0).
        assert!(
            line.starts_with("-rwxr-xr-x 0/0") || line.starts_with("-rwxr-xr-x root/root"),
            "{line}"
        );
    }

    let dir = common::temp_dir();
    run_ok(
        Command::new("dpkg-deb")
            .arg("-e")
            .arg(deb)
            .arg(dir.path().join("DEBIAN")),
    );
    let control = std::fs::read_to_string(dir.path().join("DEBIAN/control")).unwrap();
    assert!(control.contains("Package: mailrun"), "{control}");
    assert!(control.contains("adduser"), "Depends on adduser: {control}");
    let conffiles = std::fs::read_to_string(dir.path().join("DEBIAN/conffiles")).unwrap();
    for f in [
        "/etc/mailrun/dispatcher.toml",
        "/etc/default/mailrun",
        "/etc/cron.d/mailrun",
    ] {
        assert!(
            conffiles.lines().any(|l| l == f),
            "{f} not a conffile: {conffiles}"
        );
    }
    let postinst = std::fs::read_to_string(dir.path().join("DEBIAN/postinst")).unwrap();
    assert!(postinst.contains("adduser --system"), "{postinst}");
    for script in ["postinst", "prerm", "postrm"] {
        run_ok(
            Command::new("sh")
                .arg("-n")
                .arg(dir.path().join("DEBIAN").join(script)),
        );
    }
    // The cron.d sample must not run anything until the admin uncomments a line.
    let cron = std::fs::read_to_string(Path::new(ROOT).join("packaging/debian/cron.d")).unwrap();
    assert!(cron
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .all(|l| l.starts_with("MAILRUN_")));
}

#[test]
fn deb_installs_and_runs() {
    let deb = deb();
    if common::is_root() {
        install_on_this_machine(deb);
    } else {
        // Not root: unpack into a throwaway root and run from there.
        let root = common::temp_dir();
        run_ok(Command::new("dpkg-deb").arg("-x").arg(deb).arg(root.path()));
        check_installed_binaries(&root.path().join("usr/bin"));
    }
}

fn check_installed_binaries(bin: &Path) {
    let help = run_ok(common::command(&bin.join("dispatch-tick").to_string_lossy()).arg("--help"));
    assert!(help.contains("Exit status"), "{help}");
    // Self-update is off in the package: apt does it.
    let out = common::run(
        common::command(&bin.join("runner-admin").to_string_lossy()).args([
            "--state-dir",
            "/nonexistent/mailrun-test",
            "self-update",
        ]),
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(
        common::stderr(&out).contains("use apt"),
        "{}",
        common::stderr(&out)
    );
}

/// dpkg -i on this (CI) machine: maintainer scripts, the system user, the state folder;
/// then purge. Retries while another apt/dpkg holds the lock.
fn install_on_this_machine(deb: &Path) {
    let dpkg = |args: &[&str]| {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let out = common::run(
                Command::new("dpkg")
                    .args(args)
                    .env("DEBIAN_FRONTEND", "noninteractive"),
            );
            let err = common::stderr(&out);
            if !out.status.success() && err.contains("lock") && Instant::now() < deadline {
                std::thread::sleep(Duration::from_secs(2));
                continue;
            }
            common::assert_status(&out, 0);
            return;
        }
    };
    dpkg(&["-i", &deb.to_string_lossy()]);
    let result = std::panic::catch_unwind(|| {
        let passwd = run_ok(Command::new("getent").args(["passwd", "mailrun"]));
        assert!(passwd.contains("/var/lib/mailrun"), "{passwd}");
        assert_eq!(mode(Path::new("/var/lib/mailrun/runner")), 0o700);
        let meta = std::fs::metadata("/etc/mailrun/dispatcher.toml").unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
        let group = run_ok(Command::new("stat").args(["-c", "%G", "/etc/mailrun/dispatcher.toml"]));
        assert_eq!(group.trim(), "mailrun");
        check_installed_binaries(Path::new("/usr/bin"));
        assert!(
            Path::new("/usr/share/man/man7/mailrun.7.gz").exists()
                || Path::new("/usr/share/man/man7/mailrun.7").exists()
        );
    });
    dpkg(&["--purge", "mailrun"]);
    assert!(!Path::new("/usr/bin/dispatch-tick").exists());
    assert!(
        !Path::new("/var/lib/mailrun").exists(),
        "purge removes the state"
    );
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// A dedicated user for the suexec test (unique name, home in a temp folder), removed on
/// drop once the cycle its runner-cgi started has ended.
struct SuexecUser {
    name: String,
    home: PathBuf,
    _dir: tempfile::TempDir,
}

impl SuexecUser {
    fn create() -> SuexecUser {
        let dir = common::temp_dir();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let name = format!(
            "mrsx{}x{}",
            std::process::id() % 100_000,
            USER_COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        run_ok(
            Command::new(require_tool("useradd"))
                .args(["-M", "-U", "-s", "/usr/sbin/nologin", "-d"])
                .arg(&home)
                .arg(&name),
        );
        let user = SuexecUser {
            name,
            home,
            _dir: dir,
        };
        user.chown(&user.home);
        std::fs::set_permissions(&user.home, std::fs::Permissions::from_mode(0o755)).unwrap();
        user
    }

    fn chown(&self, path: &Path) {
        run_ok(
            Command::new("chown")
                .arg("-R")
                .arg(format!("{0}:{0}", self.name))
                .arg(path),
        );
    }

    fn uid(&self) -> u32 {
        std::fs::metadata(&self.home).unwrap().uid()
    }
}

impl Drop for SuexecUser {
    fn drop(&mut self) {
        // userdel refuses while the cycle runner-cgi started still runs as the user.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !Command::new("userdel")
            .arg(&self.name)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = Command::new("rm").arg("-rf").arg(&self.home).status();
    }
}

/// runner-cgi behind Apache 2.4 with Debian's stock suexec and mod_userdir, as an
/// unprivileged user, laid out as docs/packaging.md says (binaries outside the web root,
/// a wrapper in ~/public_html/cgi-bin that sets the state folder, since suexec clears
/// the environment): dispatch-tick wakes it, the cycle it starts runs as that user and
/// delivers the batch.
#[test]
fn runner_cgi_under_suexec_userdir_delivers_a_batch() {
    use crate::common::apache::{Apache, ApacheConfig, Mpm};
    use crate::common::pipeline::{self, Db};
    use crate::common::smtp::{SmtpServer, SmtpServerOptions};

    if !common::is_root() {
        eprintln!("SKIPPED: suexec needs root (a user of its own and a setuid helper)");
        return;
    }
    let suexec = Path::new("/usr/lib/apache2/suexec");
    if !suexec.exists() {
        eprintln!(
            "SKIPPED: {} missing (apache2-suexec-pristine)",
            suexec.display()
        );
        return;
    }
    let smtp = SmtpServer::start(SmtpServerOptions::default());
    let db = Db::new(common::cluster().fresh_db("packaging_suexec"), smtp.port);
    let dispatcher = pipeline::serve_dispatcher(&db.url, &[]);
    let user = SuexecUser::create();
    let home = user.home.clone();

    // The binaries, side by side, outside the web root.
    let bin = home.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for (name, program) in [
        ("runner-cgi", pipeline::RUNNER_CGI),
        ("runner-admin", pipeline::RUNNER_ADMIN),
    ] {
        std::fs::copy(program, bin.join(name)).unwrap();
    }
    // The state folder, made by runner-admin init, owned by the user.
    let state = home.join(".local/share/mailrun/runner");
    let key = SigningKey::generate("key-suexec");
    common::runner_init(&state, &dispatcher.url("dispatch-cgi"), "suexec1", &key);
    // The wrapper suexec runs: it passes the state folder, which SetEnv could not.
    let cgi_bin = home.join("public_html/cgi-bin");
    std::fs::create_dir_all(&cgi_bin).unwrap();
    let wrapper = cgi_bin.join("runner-cgi");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nMAILRUN_RUNNER_DIR={}\nexport MAILRUN_RUNNER_DIR\nexec {}\n",
            state.display(),
            bin.join("runner-cgi").display()
        ),
    )
    .unwrap();
    user.chown(&home);
    for dir in [&home, &home.join("public_html"), &cgi_bin, &bin] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();

    let apache = Apache::start(ApacheConfig {
        mpm: Mpm::Event,
        modules: &["cgid", "suexec", "userdir"],
        extra: format!(
            "UserDir public_html\nUserDir disabled root\n\
             <Directory \"{home}/public_html\">\n    Require all granted\n</Directory>\n\
             <Directory \"{home}/public_html/cgi-bin\">\n    Options +ExecCGI\n    \
             SetHandler cgi-script\n    Require all granted\n</Directory>\n\
             SetEnv MAILRUN_RUNNER_DIR /nonexistent/suexec-clears-this\n",
            home = home.display()
        ),
    });
    assert!(
        apache.error_log().contains("suEXEC mechanism enabled"),
        "{}",
        apache.error_log()
    );
    let endpoint = apache.url_of(&format!("/~{}/cgi-bin/runner-cgi", user.name));
    let runner = pipeline::RunnerNode {
        id: "suexec1".into(),
        key,
        state: common::temp_dir(),
    };
    db.add_runner(&runner, &endpoint, 10);
    db.enqueue(3);

    let out = pipeline::tick(&db.url, &["--json"]);
    common::assert_status(&out, 0);
    pipeline::wait_until(Duration::from_secs(120), "the batch delivered", || {
        db.count("SELECT count(*) FROM mailrun.messages WHERE state = 'sent'") == 3
    });
    pipeline::assert_all_delivered(&db, &smtp, 0);
    // runner-cgi and the cycle it started ran as the user: their files are the user's.
    // (The cycle removes the `ready` marker; the nonce runner-cgi recorded stays.)
    let nonce = std::fs::read_dir(state.join("nonces"))
        .expect("nonces/")
        .flatten()
        .find(|e| e.path().is_file())
        .expect("runner-cgi recorded the request's nonce")
        .path();
    for file in [nonce, state.join("cycle.log")] {
        let meta = std::fs::metadata(&file)
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", file.display(), apache.error_log()));
        assert_eq!(
            meta.uid(),
            user.uid(),
            "{} belongs to the suexec user",
            file.display()
        );
    }
    // Wait for the cycle to finish before the user is removed.
    pipeline::wait_until(Duration::from_secs(60), "the cycle done", || {
        std::fs::read_dir(state.join("spool")).map_or(true, |d| d.count() == 0)
            && std::fs::read_dir(state.join("outbox")).map_or(true, |d| d.count() == 0)
    });
}
