//! A real web server for CGI tests: lighttpd from Debian, started on 127.0.0.1 with
//! `mod_cgi`, serving the given programs under `/cgi-bin/`. Self-contained (std and
//! tempfile only) so any test binary can include it with `#[path = "common/web.rs"]`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running lighttpd; killed when dropped.
pub struct Lighttpd {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// Finds lighttpd in PATH or /usr/sbin (not in a non-root PATH on Debian).
fn lighttpd_bin() -> PathBuf {
    let candidates = ["/usr/sbin/lighttpd", "/usr/local/sbin/lighttpd"];
    if let Ok(out) = Command::new("sh")
        .arg("-c")
        .arg("command -v lighttpd")
        .output()
    {
        let found = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !found.is_empty() {
            return PathBuf::from(found);
        }
    }
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("lighttpd not found: run scripts/test-setup.sh"))
}

/// Quotes a value for a lighttpd config string literal.
fn quoted(value: &str) -> String {
    assert!(
        !value.contains('"') && !value.contains('\\') && !value.contains('\n'),
        "value not representable in a lighttpd config string: {value:?}"
    );
    format!("\"{value}\"")
}

impl Lighttpd {
    /// Starts lighttpd serving each `(name, binary)` as `/cgi-bin/<name>` with `env` added
    /// to every CGI's environment (the way an operator sets `MAILRUN_DATABASE_URL`).
    pub fn start_cgi(programs: &[(&str, &Path)], env: &[(&str, &str)]) -> Lighttpd {
        let dir = tempfile::Builder::new()
            .prefix("mailrun-lighttpd-")
            .tempdir()
            .expect("temp dir");
        let root = dir.path().join("www");
        let cgi_bin = root.join("cgi-bin");
        std::fs::create_dir_all(&cgi_bin).expect("mkdir cgi-bin");
        for (name, binary) in programs {
            // Installed into the web server's cgi-bin as an operator would: a hard link
            // when possible (debug binaries are ~100 MB each), else a copy.
            let target = cgi_bin.join(name);
            if std::fs::hard_link(binary, &target).is_err() {
                std::fs::copy(binary, &target)
                    .unwrap_or_else(|e| panic!("copy {binary:?} into cgi-bin: {e}"));
            }
        }
        let env_list: Vec<String> = env
            .iter()
            .map(|(k, v)| format!("{} => {}", quoted(k), quoted(v)))
            .collect();
        let port = free_port();
        let conf = format!(
            r#"server.document-root = {root}
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = {errorlog}
server.breakagelog = {breakagelog}
server.pid-file = {pidfile}
server.modules = ("mod_cgi", "mod_setenv")
server.max-request-size = 65536
setenv.add-environment = ({env})
$HTTP["url"] =~ "^/cgi-bin/" {{
    cgi.assign = ("" => "")
}}
"#,
            root = quoted(&root.display().to_string()),
            errorlog = quoted(&dir.path().join("error.log").display().to_string()),
            breakagelog = quoted(&dir.path().join("cgi-stderr.log").display().to_string()),
            pidfile = quoted(&dir.path().join("lighttpd.pid").display().to_string()),
            env = env_list.join(", "),
        );
        let conf_path = dir.path().join("lighttpd.conf");
        std::fs::write(&conf_path, conf).expect("write lighttpd.conf");
        let child = Command::new(lighttpd_bin())
            .arg("-D")
            .arg("-f")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start lighttpd: run scripts/test-setup.sh");
        let mut server = Lighttpd { child, port, dir };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let dir = self.dir.path().to_path_buf();
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        super::wait_for_listener(
            &format!("127.0.0.1:{}", self.port),
            "lighttpd",
            Some(&mut self.child),
            || format!("{}{}", read("error.log"), read("cgi-stderr.log")),
        );
    }

    /// `http://127.0.0.1:PORT/cgi-bin/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/cgi-bin/{name}", self.port)
    }

    /// Where the copy of a program served as `/cgi-bin/<name>` lives (to find its
    /// processes, e.g. to kill one mid-request).
    pub fn program_path(&self, name: &str) -> PathBuf {
        self.dir.path().join("www").join("cgi-bin").join(name)
    }

    /// The server's error log followed by what the CGI programs wrote to stderr
    /// (`server.breakagelog`).
    pub fn error_log(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}{}", read("error.log"), read("cgi-stderr.log"))
    }
}

impl Drop for Lighttpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}
