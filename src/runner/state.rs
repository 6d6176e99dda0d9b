//! The runner's state folder: where it is, its layout, atomic file writes and the lock.
//!
//! Layout (docs/runner.md):
//! ```text
//! runner.toml          identity, dispatcher URL, key, pushed settings (mode 0600)
//! ready                marker written by JobRunnerReady; runner-poll consumes it
//! spool/<id>.xml       a JobRun batch, the exact bytes received
//! spool/<id>.meta      when it was received and its lease (JSON)
//! spool/<id>.journal   one JSON line per finished message, fsynced
//! outbox/<id>.results  results not yet acknowledged by the dispatcher
//! nonces/              one empty file per request nonce seen (replay cache)
//! lock                 flock: one poll/send/cycle at a time
//! ```

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cli::{CliError, EXIT_CONFIG, EXIT_TEMPFAIL};

/// Environment variable naming the state folder (for CGI: set it in the web server).
pub const STATE_DIR_ENV: &str = "MAILRUN_RUNNER_DIR";

/// A write in the state folder failed (read-only file system, no permission, disk full):
/// exit 75, like a spool or journal write that fails (runner-poll, runner-send), since
/// the folder can become writable again without any change to the runner's settings.
pub fn write_failed(what: String, e: std::io::Error) -> anyhow::Error {
    CliError::new(
        EXIT_TEMPFAIL,
        format!(
            "{what}: {e}; the runner's state folder must be writable by the user running \
             it, on a file system mounted read-write"
        ),
    )
    .into()
}

/// The state folder and the paths inside it.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// The folder from `--state-dir`, else `MAILRUN_RUNNER_DIR`, else the per-user data
    /// folder (`~/.local/share/mailrun/runner` on Linux).
    pub fn locate(flag: Option<&Path>) -> Result<StateDir> {
        if let Some(dir) = flag {
            return Ok(StateDir::at(dir));
        }
        if let Some(dir) = std::env::var_os(STATE_DIR_ENV).filter(|d| !d.is_empty()) {
            return Ok(StateDir::at(Path::new(&dir)));
        }
        let dirs = directories::ProjectDirs::from("", "", "mailrun").ok_or_else(|| {
            CliError::new(
                EXIT_CONFIG,
                format!(
                    "no home folder to put the runner state in; use --state-dir or {STATE_DIR_ENV}"
                ),
            )
        })?;
        Ok(StateDir::at(&dirs.data_dir().join("runner")))
    }

    pub fn at(root: &Path) -> StateDir {
        StateDir {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn config_path(&self) -> PathBuf {
        self.root.join("runner.toml")
    }
    pub fn ready_path(&self) -> PathBuf {
        self.root.join("ready")
    }
    pub fn spool_dir(&self) -> PathBuf {
        self.root.join("spool")
    }
    pub fn outbox_dir(&self) -> PathBuf {
        self.root.join("outbox")
    }
    pub fn nonces_dir(&self) -> PathBuf {
        self.root.join("nonces")
    }
    pub fn lock_path(&self) -> PathBuf {
        self.root.join("lock")
    }

    /// Creates the folder and its subfolders (mode 0700), keeping what exists.
    pub fn create(&self) -> Result<()> {
        for dir in [
            self.root.clone(),
            self.spool_dir(),
            self.outbox_dir(),
            self.nonces_dir(),
        ] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| write_failed(format!("cannot create {}", dir.display()), e))?;
        }
        Ok(())
    }

    /// Takes the lock without waiting; `None` when another process holds it.
    pub fn try_lock(&self) -> Result<Option<StateLock>> {
        let path = self.lock_path();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| write_failed(format!("cannot open {}", path.display()), e))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(StateLock { _file: file })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }

    /// Whether some process holds the lock right now.
    pub fn is_locked(&self) -> Result<bool> {
        Ok(self.try_lock()?.is_none())
    }
}

/// Serialises read-modify-write of runner.toml (config updates, key rotation); blocks.
pub struct ConfigLock {
    _file: File,
}

impl ConfigLock {
    pub fn take(state: &StateDir) -> Result<ConfigLock> {
        let path = state.root().join("config.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| write_failed(format!("cannot open {}", path.display()), e))?;
        file.lock()
            .with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(ConfigLock { _file: file })
    }
}

/// Held while a poll, send or cycle runs; released when dropped (or the process dies).
pub struct StateLock {
    _file: File,
}

/// Writes a file so that readers see the old content or the new, never a mix: a temp
/// file in the same folder (created with `mode`), fsync, rename, fsync of the folder.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent folder", path.display()))?;
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    let mut suffix = [0u8; 6];
    getrandom::fill(&mut suffix).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        hex::encode(suffix)
    ));
    let result = (|| -> Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| write_failed(format!("cannot create {}", tmp.display()), e))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| write_failed(format!("cannot write {}", tmp.display()), e))?;
        fs::rename(&tmp, path)
            .map_err(|e| write_failed(format!("cannot rename into {}", path.display()), e))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Makes a rename or removal in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| write_failed(format!("cannot fsync folder {}", dir.display()), e))
}

/// Removes a file; a file that is already gone is fine.
pub fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(write_failed(format!("cannot remove {}", path.display()), e)),
    }
}

/// Current unix time in seconds on this runner's clock.
pub fn now_unix() -> i64 {
    crate::protocol::sign::now_unix()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn atomic_write_replaces_with_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"one", 0o600).unwrap();
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temp left");
    }

    #[test]
    fn lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::at(dir.path());
        let held = state.try_lock().unwrap();
        assert!(held.is_some());
        assert!(state.try_lock().unwrap().is_none());
        drop(held);
        assert!(state.try_lock().unwrap().is_some());
    }
}
