//! The runner's replay cache: one empty file per request nonce in `nonces/`.
//!
//! The file is created with `create_new`, so of two requests carrying the same nonce
//! exactly one succeeds, even when two CGI processes race. Files older than the
//! signature window (plus slack) are purged: a replay that old fails the timestamp check.

use std::fs::{self, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, SystemTime};

use anyhow::Result;

use crate::runner::state::{write_failed, StateDir};

/// How long a nonce is remembered (the ±300 s window, doubled).
pub const NONCE_TTL: Duration = Duration::from_secs(600);

/// Records a nonce; `Ok(false)` when it was seen before (a replay).
pub fn remember(state: &StateDir, key_id: &str, nonce: &str) -> Result<bool> {
    let safe = |s: &str| {
        !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
            && !s.starts_with('.')
    };
    if !safe(key_id) || !safe(nonce) {
        anyhow::bail!("key id or nonce is not a safe file name");
    }
    let dir = state.nonces_dir();
    fs::create_dir_all(&dir)
        .map_err(|e| write_failed(format!("cannot create {}", dir.display()), e))?;
    purge(state);
    let path = dir.join(format!("{key_id}-{nonce}"));
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(write_failed(
            format!("cannot record nonce in {}", dir.display()),
            e,
        )),
    }
}

/// Removes nonce files older than [`NONCE_TTL`]; best effort (a leftover only costs space).
pub fn purge(state: &StateDir) {
    let Ok(entries) = fs::read_dir(state.nonces_dir()) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > NONCE_TTL);
        if old {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_use_is_a_replay() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::at(dir.path());
        assert!(remember(&state, "k1", "00ff").unwrap());
        assert!(!remember(&state, "k1", "00ff").unwrap());
        assert!(remember(&state, "k2", "00ff").unwrap());
        assert!(remember(&state, "k1", "../x").is_err());
    }
}
