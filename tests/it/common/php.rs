//! The PHP runner as shared hosting runs it: `packaging/php/mailrun-runner.php` copied (as
//! an FTP upload would) into a user's `public_html` served by a private Apache 2.4 with
//! mod_php under prefork, its children running as `www-data` (when the tests run as
//! root), reached at `/~alice/mailrun-runner.php`. No cron, no binaries.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use mailrun::protocol::sign::SigningKey;

use super::apache::{self, Apache, ApacheConfig, Mpm};

/// The file operators upload.
pub fn php_runner_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/php/mailrun-runner.php")
}

/// Where the user's folders sit, and whether the server honours `.htaccess` there.
pub struct PhpHost {
    /// The user's home is writable by the web server's user (the state folder goes
    /// beside `public_html`); otherwise only `public_html` is, and the state folder must
    /// go inside the web root.
    pub home_writable: bool,
    pub allow_override: bool,
}

/// One uploaded PHP runner behind its own Apache.
pub struct PhpUpload {
    pub apache: Apache,
    home: tempfile::TempDir,
    /// The runner's endpoint (also the setup page).
    pub url: String,
    pub path: String,
}

impl PhpUpload {
    pub fn start(host: PhpHost) -> PhpUpload {
        let home = tempfile::Builder::new()
            .prefix("mailrun-home-")
            .tempdir()
            .expect("temp home");
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let user = home.path().join("alice");
        let public = user.join("public_html");
        std::fs::create_dir_all(&public).expect("mkdir public_html");
        std::fs::copy(php_runner_source(), public.join("mailrun-runner.php")).expect("upload");
        std::fs::set_permissions(&user, std::fs::Permissions::from_mode(0o755)).unwrap();
        if host.home_writable {
            apache::give_to_server(&user);
        } else {
            apache::give_to_server(&public);
        }
        let extra = format!(
            "Alias /~alice/ \"{public}/\"\n<Directory \"{public}\">\n    AllowOverride {ov}\n    Require all granted\n    <FilesMatch \"\\.php$\">\n        SetHandler application/x-httpd-php\n    </FilesMatch>\n</Directory>\n",
            public = public.display(),
            ov = if host.allow_override { "All" } else { "None" },
        );
        let apache = Apache::start(ApacheConfig {
            mpm: Mpm::Prefork,
            modules: &["php"],
            extra,
        });
        let path = "/~alice/mailrun-runner.php".to_string();
        let url = apache.url_of(&path);
        PhpUpload {
            apache,
            home,
            url,
            path,
        }
    }

    pub fn public_html(&self) -> PathBuf {
        self.home.path().join("alice/public_html")
    }

    /// The state folder the runner picks: beside `public_html` when it can.
    pub fn state(&self) -> PathBuf {
        let outside = self.home.path().join("alice/mailrun-runner-php");
        if outside.exists() {
            outside
        } else {
            self.public_html().join(".mailrun-runner-php")
        }
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into()
    }

    /// GET of the URL: status and page.
    pub fn get(&self, url: &str) -> (u16, String) {
        let mut resp = Self::agent().get(url).call().expect("GET");
        let status = resp.status().as_u16();
        (status, resp.body_mut().read_to_string().unwrap_or_default())
    }

    /// POST of the setup form (text/plain, one `name=value` per line).
    pub fn post_setup(&self, form: &str) -> (u16, String) {
        let mut resp = Self::agent()
            .post(format!("{}?setup", self.url))
            .header("Content-Type", "text/plain")
            .send(form)
            .expect("POST ?setup");
        let status = resp.status().as_u16();
        (status, resp.body_mut().read_to_string().unwrap_or_default())
    }

    /// Opens the setup page, takes the one-time token and sends the form, as an
    /// operator would; panics (with the error log) if any step fails.
    pub fn set_up(&self, dispatcher_url: &str, runner_id: &str, key: &SigningKey) {
        let (status, page) = self.get(&self.url);
        assert_eq!(status, 200, "{page}\n{}", self.apache.error_log());
        let token = page
            .split("<code id=\"token\">")
            .nth(1)
            .and_then(|rest| rest.split("</code>").next())
            .unwrap_or_else(|| panic!("no setup token on the page: {page}"))
            .to_string();
        let form = format!(
            "token={token}\ndispatcher_url={dispatcher_url}\nrunner_id={runner_id}\nkey_id={}\nkey={}\n",
            key.key_id,
            key.secret_hex()
        );
        let (status, page) = self.post_setup(&form);
        assert_eq!(status, 200, "{page}\n{}", self.apache.error_log());
        assert!(page.contains("configured"), "{page}");
    }

    /// `php mailrun-runner.php ARGS` as the web server's user (the crontab line).
    pub fn cli(&self, args: &[&str]) -> Command {
        let file = self.public_html().join("mailrun-runner.php");
        let mut cmd = if super::is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", apache::SERVER_USER, "--", "php"]);
            c
        } else {
            Command::new("php")
        };
        cmd.arg(file).args(args);
        cmd
    }

    /// The pid of the request running a delivery cycle (it holds the lock), if any.
    pub fn cycle_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.state().join("lock"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}
