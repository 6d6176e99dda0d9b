//! A real Apache 2.4 for tests that must see what operators run: a private instance of
//! Debian's `apache2` on a free loopback port, with its own config file (the system's
//! /etc/apache2 is neither read nor changed), the MPM and modules the test names, and
//! a document root the server's user can read. As root, children run as `www-data`
//! (Apache refuses to serve as root), so files the server must write belong to it.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The multi-processing module: `Event` is Debian's default (CGI through mod_cgid, the
/// one that cuts off early answers); `Prefork` is what mod_php needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mpm {
    Event,
    Prefork,
}

/// The user the server's children run as when the tests run as root.
pub const SERVER_USER: &str = "www-data";

const MODULES_DIR: &str = "/usr/lib/apache2/modules";

/// A running Apache; stopped when dropped.
pub struct Apache {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// What a test asks for: the MPM, modules beyond the base set (`"cgid"`, `"php"`,
/// `"suexec"`, `"userdir"`…) and config lines appended after the base config.
pub struct ApacheConfig<'a> {
    pub mpm: Mpm,
    pub modules: &'a [&'a str],
    pub extra: String,
}

fn module_line(name: &str) -> String {
    let file = match name {
        "php" => "libphp8.2.so".to_string(),
        other => format!("mod_{other}.so"),
    };
    let id = match name {
        "php" => "php_module".to_string(),
        other => format!("{other}_module"),
    };
    let path = Path::new(MODULES_DIR).join(&file);
    assert!(
        path.exists(),
        "Apache module {path:?} missing: run scripts/test-setup.sh"
    );
    format!("LoadModule {id} {}\n", path.display())
}

fn running_as_root() -> bool {
    super::is_root()
}

/// Makes `path` and every folder above it up to /tmp traversable by the server's user.
fn open_to_server(path: &Path) {
    let mut p = Some(path);
    while let Some(dir) = p {
        if dir == Path::new("/") || dir == std::env::temp_dir() {
            break;
        }
        if let Ok(meta) = std::fs::metadata(dir) {
            let mode = meta.permissions().mode();
            if mode & 0o005 != 0o005 {
                let _ =
                    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o005));
            }
        }
        p = dir.parent();
    }
}

/// Gives `path` (recursively) to the server's user when running as root, so the server
/// can write there (a runner's state folder, say).
pub fn give_to_server(path: &Path) {
    if !running_as_root() {
        return;
    }
    let status = Command::new("chown")
        .args(["-R", &format!("{SERVER_USER}:{SERVER_USER}")])
        .arg(path)
        .status()
        .expect("chown");
    assert!(status.success(), "chown {path:?} to {SERVER_USER} failed");
}

impl Apache {
    /// Starts Apache with `config`; the document root is `root()` (empty, readable by the
    /// server) and `{root}` in `config.extra` is replaced by its path.
    pub fn start(config: ApacheConfig<'_>) -> Apache {
        let dir = tempfile::Builder::new()
            .prefix("mailrun-apache-")
            .tempdir()
            .expect("temp dir");
        let root = dir.path().join("www");
        std::fs::create_dir_all(&root).expect("mkdir www");
        open_to_server(&root);
        let port = super::free_port();
        let mut conf = String::new();
        conf.push_str(&module_line(match config.mpm {
            Mpm::Event => "mpm_event",
            Mpm::Prefork => "mpm_prefork",
        }));
        // core, log_config, unixd and so are built into Debian's apache2.
        for base in ["authz_core", "authz_host", "mime", "dir", "alias", "env"] {
            conf.push_str(&module_line(base));
        }
        for module in config.modules {
            conf.push_str(&module_line(module));
        }
        let d = dir.path().display();
        conf.push_str(&format!(
            r#"ServerName 127.0.0.1
ServerRoot "{d}"
Listen 127.0.0.1:{port}
PidFile "{d}/apache.pid"
ErrorLog "{d}/error.log"
LogLevel info
DefaultRuntimeDir "{d}"
Mutex file:{d} default
TypesConfig /etc/mime.types
DocumentRoot "{root}"
LogFormat "%h %r %>s %b" short
CustomLog "{d}/access.log" short
<Directory />
    AllowOverride None
    Require all denied
</Directory>
<Directory "{root}">
    Require all granted
</Directory>
"#,
            root = root.display()
        ));
        if config.modules.contains(&"cgid") {
            conf.push_str(&format!("ScriptSock \"{d}/cgid.sock\"\n"));
        }
        if running_as_root() {
            conf.push_str(&format!("User {SERVER_USER}\nGroup {SERVER_USER}\n"));
        }
        conf.push_str(&config.extra.replace("{root}", &root.display().to_string()));
        let conf_path = dir.path().join("apache2.conf");
        std::fs::write(&conf_path, conf).expect("write apache2.conf");
        // Apache's children (as www-data) write their logs through the parent's open
        // files, but mod_cgid's socket and PHP's sessions need a folder they can enter.
        open_to_server(dir.path());
        // Its own process group: prefork signals its whole group when it stops, which
        // would otherwise include the test process.
        let child = Command::new("/usr/sbin/apache2")
            .process_group(0)
            .arg("-f")
            .arg(&conf_path)
            .arg("-DFOREGROUND")
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LANG", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start apache2: run scripts/test-setup.sh");
        let mut server = Apache { child, port, dir };
        let dir_path = server.dir.path().to_path_buf();
        super::wait_for_listener(
            &format!("127.0.0.1:{port}"),
            "apache2",
            Some(&mut server.child),
            || std::fs::read_to_string(dir_path.join("error.log")).unwrap_or_default(),
        );
        server
    }

    /// Serves each `(name, program)` as `/cgi-bin/<name>` through mod_cgid under the
    /// event MPM (Debian's default), with `env` set by `SetEnv` for every CGI.
    pub fn start_cgi(programs: &[(&str, &Path)], env: &[(&str, &str)]) -> Apache {
        let mut extra = String::from(
            "ScriptAlias /cgi-bin/ \"{root}/cgi-bin/\"\n<Directory \"{root}/cgi-bin\">\n    Options +ExecCGI\n    Require all granted\n</Directory>\n",
        );
        for (key, value) in env {
            assert!(
                !value.contains('"') && !value.contains('\n'),
                "value not representable in SetEnv: {value:?}"
            );
            extra.push_str(&format!("SetEnv {key} \"{value}\"\n"));
        }
        let server = Apache::start(ApacheConfig {
            mpm: Mpm::Event,
            modules: &["cgid"],
            extra,
        });
        let cgi_bin = server.root().join("cgi-bin");
        std::fs::create_dir_all(&cgi_bin).expect("mkdir cgi-bin");
        open_to_server(&cgi_bin);
        for (name, program) in programs {
            server.install(&cgi_bin.join(name), program);
        }
        server
    }

    /// Puts `program` at `target` as an operator would: a hard link when possible (debug
    /// binaries are large), else a copy; readable and executable by the server.
    pub fn install(&self, target: &Path, program: &Path) {
        if std::fs::hard_link(program, target).is_err() {
            std::fs::copy(program, target)
                .unwrap_or_else(|e| panic!("copy {program:?} to {target:?}: {e}"));
        }
        let mode = std::fs::metadata(target)
            .expect("stat")
            .permissions()
            .mode();
        std::fs::set_permissions(target, std::fs::Permissions::from_mode(mode | 0o555))
            .expect("chmod");
    }

    /// The document root.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("www")
    }

    /// `http://127.0.0.1:PORT/cgi-bin/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/cgi-bin/{name}", self.port)
    }

    /// `http://127.0.0.1:PORT<path>`.
    pub fn url_of(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The error log (where CGI programs' stderr lands too).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// The access log: one `client request status bytes` line per request.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }
}

impl Drop for Apache {
    fn drop(&mut self) {
        // SIGTERM stops the children too; SIGKILL of the parent would orphan them.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
