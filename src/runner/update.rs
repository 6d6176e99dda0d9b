//! Runner self-update: install the runner build the dispatcher announced in a
//! JobRunnerConfigUpdate (`software`: version, URL, SHA-256).
//!
//! The download is the tar.gz that `packaging/shared-hosting/build-bundle.sh` writes
//! next to the bundle: the four runner binaries at the top level. Steps, each of which
//! leaves the installed binaries untouched when it fails:
//! 1. download over https (or http to loopback) with timeouts and a size cap, hashing
//!    as it streams; an interrupted or oversize download is refused;
//! 2. compare the SHA-256 with the announced one;
//! 3. unpack into a staging folder next to the binaries (same filesystem), accepting
//!    only the known binary names as plain files, and check the new `runner-admin`
//!    runs on this machine (`--version`);
//! 4. replace each binary with one atomic `rename`, keeping a hard link to the old one;
//!    if any rename fails, the ones already done are rolled back.
//!
//! Running processes keep the binary they started with (rename does not touch their
//! inode), so an update never interrupts a delivery in progress.
//!
//! Distribution packages build without the `self-update` feature; then `apply` refuses
//! and says to use the package manager (like rustup).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;

use crate::cli::{CliError, EXIT_USAGE};
use crate::protocol::SoftwareUpdate;

/// The binaries a runner update carries and replaces.
pub const RUNNER_BINARIES: [&str; 4] = ["runner-admin", "runner-cgi", "runner-poll", "runner-send"];

/// Records which download is installed (`version sha256`), so an announcement whose
/// version string differs from the binaries' own is not downloaded again and again.
pub const INSTALLED_MARKER: &str = ".mailrun-update";

/// Download limits.
#[derive(Debug, Clone)]
pub struct UpdateOptions {
    pub connect_timeout: Duration,
    /// Limit on the whole download.
    pub timeout: Duration,
    /// Largest download accepted, in bytes.
    pub max_bytes: u64,
    /// Allow plain http:// to a non-loopback host (the checksum still protects it).
    pub allow_plain_http: bool,
}

impl Default for UpdateOptions {
    fn default() -> Self {
        UpdateOptions {
            connect_timeout: Duration::from_secs(20),
            timeout: Duration::from_secs(600),
            max_bytes: 512 * 1024 * 1024,
            allow_plain_http: false,
        }
    }
}

/// What `apply` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// The announced build is the one installed.
    UpToDate { version: String },
    /// The binaries in `bin_dir` were replaced.
    Updated { from: String, to: String },
}

/// Whether self-update is compiled in (off in distribution packages).
pub const ENABLED: bool = cfg!(feature = "self-update");

/// The folder holding the running binary (where the runner's binaries live).
pub fn current_bin_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| {
        CliError::new(
            crate::cli::EXIT_SOFTWARE,
            format!("cannot find this program's path: {e}"),
        )
    })?;
    let exe = std::fs::canonicalize(&exe).unwrap_or(exe);
    exe.parent().map(Path::to_path_buf).ok_or_else(|| {
        CliError::new(crate::cli::EXIT_SOFTWARE, "this program has no folder").into()
    })
}

/// Checks the announcement itself: a version, a https (or loopback http) URL without
/// credentials, and a SHA-256 written as 64 lowercase hex characters.
pub fn validate(update: &SoftwareUpdate, allow_plain_http: bool) -> Result<(), String> {
    if update.version.trim().is_empty() || update.version.len() > 64 {
        return Err("software version must be 1 to 64 characters".into());
    }
    if update.sha256.len() != 64
        || !update
            .sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err("software sha256 must be 64 lowercase hex characters".into());
    }
    let uri: ureq::http::Uri = update
        .url
        .parse()
        .map_err(|_| format!("software url {:?} is not a URL", update.url))?;
    let authority = uri
        .authority()
        .ok_or_else(|| "software url has no host".to_string())?;
    if authority.as_str().contains('@') {
        return Err("software url must not contain user:password@".into());
    }
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if allow_plain_http || crate::web::is_loopback_host(authority.host()) => {
            Ok(())
        }
        Some("http") => Err(format!(
            "refusing plain http:// download from non-loopback host {}",
            authority.host()
        )),
        _ => Err("software url must be https://".into()),
    }
}

/// `runner-admin self-update`: install the runner build announced in the last
/// JobRunnerConfigUpdate (settings `software_version`, `software_url`,
/// `software_sha256` in runner.toml).
#[derive(Debug, clap::Parser)]
pub struct SelfUpdateArgs {
    /// Seconds the download may take.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub timeout: u64,
    /// Say what was done (on stderr).
    #[arg(long, short)]
    pub verbose: bool,
}

/// Runs `runner-admin self-update`: 0 updated, 3 nothing announced or already
/// installed, 64 this build has self-update turned off (a distribution package).
pub fn main(state: &crate::runner::state::StateDir, args: SelfUpdateArgs) -> Result<u8> {
    if !ENABLED {
        return Err(disabled().into());
    }
    let config = crate::runner::config::RunnerConfig::load(state)?;
    let s = &config.settings;
    let (Some(version), Some(url), Some(sha256)) = (
        s.software_version.clone(),
        s.software_url.clone(),
        s.software_sha256.clone(),
    ) else {
        if args.verbose {
            eprintln!("runner-admin: no runner build announced by the dispatcher");
        }
        return Ok(crate::cli::EXIT_NO_WORK);
    };
    let update = SoftwareUpdate {
        version,
        url,
        sha256,
    };
    let options = UpdateOptions {
        timeout: Duration::from_secs(args.timeout.max(1)),
        allow_plain_http: config.allow_plain_http,
        ..UpdateOptions::default()
    };
    match apply(&update, &current_bin_dir()?, &options)? {
        UpdateOutcome::UpToDate { version } => {
            if args.verbose {
                eprintln!("runner-admin: {version} is installed; nothing to do");
            }
            Ok(crate::cli::EXIT_NO_WORK)
        }
        UpdateOutcome::Updated { from, to } => {
            if args.verbose {
                eprintln!("runner-admin: updated from {from} to {to}");
            }
            Ok(crate::cli::EXIT_OK)
        }
    }
}

/// Installs `update` into `bin_dir` unless it is already installed there.
#[cfg(not(feature = "self-update"))]
pub fn apply(
    _update: &SoftwareUpdate,
    _bin_dir: &Path,
    _options: &UpdateOptions,
) -> Result<UpdateOutcome> {
    Err(disabled().into())
}

/// The error a build without self-update gives.
pub fn disabled() -> CliError {
    CliError::new(
        EXIT_USAGE,
        "self-update is turned off in this build: it was installed from a package, so use apt (or your package manager) to update it",
    )
}

#[cfg(feature = "self-update")]
pub use imp::apply;

#[cfg(feature = "self-update")]
mod imp {
    use std::fs::{self, File, OpenOptions, TryLockError};
    use std::io::{self, Read, Write};
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    use std::path::{Component, Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use anyhow::{Context, Result};
    use sha2::{Digest, Sha256};

    use super::{validate, UpdateOptions, UpdateOutcome, INSTALLED_MARKER, RUNNER_BINARIES};
    use crate::cli::{
        CliError, EXIT_DATA, EXIT_NO_WORK, EXIT_TEMPFAIL, EXIT_UNAVAILABLE, EXIT_USAGE,
    };
    use crate::protocol::{SoftwareUpdate, SOFTWARE_VERSION};

    /// Largest single binary accepted from the archive.
    const MAX_ENTRY_BYTES: u64 = 256 * 1024 * 1024;

    pub fn apply(
        update: &SoftwareUpdate,
        bin_dir: &Path,
        options: &UpdateOptions,
    ) -> Result<UpdateOutcome> {
        validate(update, options.allow_plain_http).map_err(|e| CliError::new(EXIT_DATA, e))?;
        let installed = installed_version(bin_dir);
        if update.version == SOFTWARE_VERSION
            || installed_sha(bin_dir).as_deref() == Some(&update.sha256)
        {
            return Ok(UpdateOutcome::UpToDate { version: installed });
        }
        for name in RUNNER_BINARIES {
            let path = bin_dir.join(name);
            if !path.is_file() {
                return Err(CliError::new(
                    EXIT_USAGE,
                    format!(
                        "{} is not a runner installation ({name} missing); self-update replaces the binaries of an unpacked runner bundle",
                        bin_dir.display()
                    ),
                )
                .into());
            }
        }
        let _lock = match lock(bin_dir)? {
            Some(lock) => lock,
            None => {
                return Err(CliError::new(EXIT_NO_WORK, "another self-update is running").into())
            }
        };
        clean_stale_staging(bin_dir);
        let staging = Staging::create(bin_dir)?;
        let archive = staging.path.join("download.tar.gz");
        download(update, &archive, options)?;
        unpack(&archive, &staging.path)?;
        check_runs(&staging.path.join("runner-admin"))?;
        replace(bin_dir, &staging.path)?;
        write_marker(bin_dir, update)?;
        Ok(UpdateOutcome::Updated {
            from: installed,
            to: update.version.clone(),
        })
    }

    fn installed_version(bin_dir: &Path) -> String {
        fs::read_to_string(bin_dir.join(INSTALLED_MARKER))
            .ok()
            .and_then(|s| s.split_whitespace().next().map(str::to_string))
            .unwrap_or_else(|| SOFTWARE_VERSION.to_string())
    }

    fn installed_sha(bin_dir: &Path) -> Option<String> {
        fs::read_to_string(bin_dir.join(INSTALLED_MARKER))
            .ok()
            .and_then(|s| s.split_whitespace().nth(1).map(str::to_string))
    }

    fn lock(bin_dir: &Path) -> Result<Option<File>> {
        let path = bin_dir.join(".update.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }

    /// A staging folder in `bin_dir`, removed when dropped (success or not).
    struct Staging {
        path: PathBuf,
    }

    const STAGING_PREFIX: &str = ".update-staging-";

    impl Staging {
        fn create(bin_dir: &Path) -> Result<Staging> {
            let path = bin_dir.join(format!("{STAGING_PREFIX}{}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            Ok(Staging { path })
        }
    }

    impl Drop for Staging {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.path);
        }
    }

    use std::os::unix::fs::DirBuilderExt;

    /// Staging folders of updates that crashed (we hold the update lock, so none is live).
    fn clean_stale_staging(bin_dir: &Path) {
        if let Ok(entries) = fs::read_dir(bin_dir) {
            for entry in entries.flatten() {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(STAGING_PREFIX)
                {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
    }

    fn download(update: &SoftwareUpdate, dest: &Path, options: &UpdateOptions) -> Result<()> {
        let unavailable = |reason: String| CliError::new(EXIT_UNAVAILABLE, reason);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(options.connect_timeout))
            .timeout_global(Some(options.timeout))
            .http_status_as_error(false)
            // The URL came in a signed message; do not let a redirect take us elsewhere.
            .max_redirects(0)
            .max_redirects_will_error(false)
            .user_agent(format!("mailrun-runner/{SOFTWARE_VERSION}"))
            .build()
            .into();
        let mut response = agent
            .get(&update.url)
            .call()
            .map_err(|e| unavailable(format!("cannot download {}: {e}", update.url)))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(unavailable(format!("{}: HTTP status {status}", update.url)).into());
        }
        let expected_len = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if expected_len.is_some_and(|n| n > options.max_bytes) {
            return Err(unavailable(format!(
                "{}: the download exceeds the limit of {} bytes",
                update.url, options.max_bytes
            ))
            .into());
        }
        let mut file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(dest)
            .with_context(|| format!("cannot create {}", dest.display()))?;
        let mut reader = response
            .body_mut()
            .with_config()
            .limit(options.max_bytes.saturating_add(1))
            .reader();
        let mut hasher = Sha256::new();
        let mut total: u64 = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(CliError::new(
                        EXIT_TEMPFAIL,
                        format!(
                        "{}: download interrupted after {total} bytes: {e}; nothing was replaced",
                        update.url
                    ),
                    )
                    .into())
                }
            };
            total += n as u64;
            if total > options.max_bytes {
                return Err(unavailable(format!(
                    "{}: the download exceeds the limit of {} bytes",
                    update.url, options.max_bytes
                ))
                .into());
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n])
                .with_context(|| format!("cannot write {}", dest.display()))?;
        }
        if let Some(len) = expected_len {
            if total != len {
                return Err(CliError::new(
                    EXIT_TEMPFAIL,
                    format!(
                        "{}: download interrupted ({total} of {len} bytes); nothing was replaced",
                        update.url
                    ),
                )
                .into());
            }
        }
        file.sync_all()
            .with_context(|| format!("cannot write {}", dest.display()))?;
        let got = hex::encode(hasher.finalize());
        if got != update.sha256 {
            return Err(CliError::new(
                EXIT_DATA,
                format!(
                    "{}: SHA-256 mismatch (got {got}, announced {}); nothing was replaced",
                    update.url, update.sha256
                ),
            )
            .into());
        }
        Ok(())
    }

    /// Unpacks the known binaries as plain files into `staging`; anything else in the
    /// archive (other names, folders, links, devices) is refused.
    fn unpack(archive: &Path, staging: &Path) -> Result<()> {
        let bad =
            |reason: String| CliError::new(EXIT_DATA, format!("bad update archive: {reason}"));
        let file =
            File::open(archive).with_context(|| format!("cannot open {}", archive.display()))?;
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
        let mut seen: Vec<&str> = Vec::new();
        let entries = tar.entries().map_err(|e| bad(e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| bad(e.to_string()))?;
            let path = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
            let mut parts = path
                .components()
                .filter(|c| !matches!(c, Component::CurDir));
            let name = match (parts.next(), parts.next()) {
                (Some(Component::Normal(n)), None) => n.to_string_lossy().into_owned(),
                _ => return Err(bad(format!("unexpected entry {}", path.display())).into()),
            };
            let Some(&known) = RUNNER_BINARIES.iter().find(|b| **b == name) else {
                return Err(bad(format!("unexpected entry {name}")).into());
            };
            if !entry.header().entry_type().is_file() {
                return Err(bad(format!("{name} is not a plain file")).into());
            }
            if seen.contains(&known) {
                return Err(bad(format!("{name} appears twice")).into());
            }
            if entry.size() > MAX_ENTRY_BYTES {
                return Err(bad(format!("{name} is larger than {MAX_ENTRY_BYTES} bytes")).into());
            }
            let dest = staging.join(known);
            let mut out = OpenOptions::new()
                .create_new(true)
                .write(true)
                .mode(0o700)
                .open(&dest)
                .with_context(|| format!("cannot create {}", dest.display()))?;
            io::copy(&mut (&mut entry).take(MAX_ENTRY_BYTES), &mut out)
                .map_err(|e| bad(format!("{name}: {e}")))?;
            out.sync_all()
                .with_context(|| format!("cannot write {}", dest.display()))?;
            seen.push(known);
        }
        for name in RUNNER_BINARIES {
            if !seen.contains(&name) {
                return Err(bad(format!("{name} missing")).into());
            }
        }
        Ok(())
    }

    /// The new runner-admin must start on this machine (right architecture, not truncated).
    fn check_runs(admin: &Path) -> Result<()> {
        let bad = |reason: String| {
            CliError::new(
                EXIT_DATA,
                format!("the new runner-admin does not run here ({reason}); nothing was replaced"),
            )
        };
        let mut child = Command::new(admin)
            .arg("--version")
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| bad(e.to_string()))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(bad(format!("--version: {status}")).into()),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(bad("--version did not finish in 30 s".into()).into());
                }
                Err(e) => return Err(bad(e.to_string()).into()),
            }
        }
    }

    /// Renames each staged binary over the installed one. The old file stays reachable
    /// through a hard link in the staging folder until all renames succeeded.
    fn replace(bin_dir: &Path, staging: &Path) -> Result<()> {
        let backup = staging.join("previous");
        fs::create_dir(&backup).with_context(|| format!("cannot create {}", backup.display()))?;
        let mut done: Vec<&str> = Vec::new();
        for name in RUNNER_BINARIES {
            let dest = bin_dir.join(name);
            let src = staging.join(name);
            let result = (|| -> io::Result<()> {
                let mode = fs::metadata(&dest)?.permissions().mode() & 0o7777;
                fs::set_permissions(&src, fs::Permissions::from_mode(mode | 0o100))?;
                fs::hard_link(&dest, backup.join(name))?;
                fs::rename(&src, &dest)
            })();
            if let Err(e) = result {
                for restored in done.iter().rev() {
                    let _ = fs::rename(backup.join(restored), bin_dir.join(restored));
                }
                let _ = sync_dir(bin_dir);
                return Err(anyhow::Error::new(e)
                    .context(format!(
                        "cannot replace {}; the previous binaries were kept",
                        dest.display()
                    ))
                    .context(CliError::new(EXIT_TEMPFAIL, "self-update failed")));
            }
            done.push(name);
        }
        sync_dir(bin_dir).with_context(|| format!("cannot sync {}", bin_dir.display()))
    }

    fn write_marker(bin_dir: &Path, update: &SoftwareUpdate) -> Result<()> {
        let path = bin_dir.join(INSTALLED_MARKER);
        let tmp = bin_dir.join(format!("{INSTALLED_MARKER}.tmp"));
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        writeln!(f, "{} {}", update.version, update.sha256)?;
        f.sync_all()?;
        fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
        sync_dir(bin_dir)?;
        Ok(())
    }

    fn sync_dir(dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}
