//! Spooled batches, their journals, and the outbox of results awaiting acknowledgement.
//!
//! A batch is spooled as `spool/<id>.meta` (receipt time and lease, JSON) and then
//! `spool/<id>.xml` (the JobRun exactly as received), each written atomically; the batch
//! exists once the `.xml` is in place. While it is delivered, `spool/<id>.journal` gets
//! one JSON line per finished message, written at once (a killed process loses none)
//! and fsynced on a helper thread while the next message's MAIL, RCPT and DATA are
//! exchanged; the next final dot waits for that fsync, so at most one delivered message
//! at a time lacks a durable record, and a restart skips what is already done. When every message has an outcome the results go
//! to `outbox/<id>.results` (atomic) and the spool files are removed; `runner-poll`
//! sends the outbox and deletes a results file once the dispatcher acknowledged all of it.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::protocol::limits::MAX_HELD_JOB_RUNS;
use crate::protocol::{Acknowledgement, MessageResult, RecipientResult};
use crate::runner::state::{remove_if_exists, sync_dir, write_atomic, StateDir};

/// Batch ids become file names: only a safe alphabet is accepted.
pub fn valid_batch_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// When a batch arrived (runner clock) and for how long its lease runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchMeta {
    pub received_at: i64,
    pub lease_seconds: u32,
}

impl BatchMeta {
    /// No message may start at or after this unix time.
    pub fn deadline(&self, safety_margin_seconds: u32) -> i64 {
        self.received_at + i64::from(self.lease_seconds) - i64::from(safety_margin_seconds)
    }
}

/// Paths of one spooled batch.
#[derive(Debug, Clone)]
pub struct SpooledBatch {
    pub id: String,
    pub xml: PathBuf,
    pub meta: PathBuf,
    pub journal: PathBuf,
}

impl SpooledBatch {
    pub fn new(state: &StateDir, id: &str) -> SpooledBatch {
        let dir = state.spool_dir();
        SpooledBatch {
            id: id.to_string(),
            xml: dir.join(format!("{id}.xml")),
            meta: dir.join(format!("{id}.meta")),
            journal: dir.join(format!("{id}.journal")),
        }
    }

    pub fn read_meta(&self) -> Result<BatchMeta> {
        let text =
            fs::read(&self.meta).with_context(|| format!("cannot read {}", self.meta.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("{} is invalid", self.meta.display()))
    }

    pub fn read_xml(&self) -> Result<Vec<u8>> {
        fs::read(&self.xml).with_context(|| format!("cannot read {}", self.xml.display()))
    }
}

/// Stores a received batch: meta first, then the exact bytes; both atomic.
pub fn spool_batch(
    state: &StateDir,
    id: &str,
    xml: &[u8],
    meta: BatchMeta,
) -> Result<SpooledBatch> {
    if !valid_batch_id(id) {
        bail!("batch id {id:?} is not a safe file name");
    }
    let batch = SpooledBatch::new(state, id);
    let meta_json = serde_json::to_vec(&meta).context("cannot serialise batch meta")?;
    write_atomic(&batch.meta, &meta_json, 0o600)?;
    write_atomic(&batch.xml, xml, 0o600)?;
    Ok(batch)
}

/// How long a received batch id is remembered. Far beyond the signature window (300 s),
/// within which alone a recorded answer could be replayed.
pub const RECEIVED_MEMORY_SECONDS: i64 = 3600;

/// The record of batch ids received lately (`received`, one "unix-time id" line each).
fn received_path(state: &StateDir) -> PathBuf {
    state.root().join("received")
}

/// Whether this runner has had batch `id` before: still spooled or set aside, its
/// results in the outbox, or listed in the record of recent batches. A batch seen again
/// is never spooled again (its messages would be sent twice).
pub fn batch_received_before(state: &StateDir, id: &str) -> Result<bool> {
    let batch = SpooledBatch::new(state, id);
    if batch.xml.exists()
        || batch.xml.with_extension("xml.rejected").exists()
        || state.outbox_dir().join(format!("{id}.results")).exists()
    {
        return Ok(true);
    }
    Ok(read_received(state)?.iter().any(|(_, seen)| seen == id))
}

/// Adds `id` to the record of received batches (atomic), forgetting entries older than
/// [`RECEIVED_MEMORY_SECONDS`].
pub fn remember_received(state: &StateDir, id: &str, now: i64) -> Result<()> {
    let mut entries = read_received(state)?;
    entries.retain(|(at, _)| now.saturating_sub(*at) <= RECEIVED_MEMORY_SECONDS);
    entries.push((now, id.to_string()));
    let mut text = String::new();
    for (at, seen) in &entries {
        text.push_str(&format!("{at} {seen}\n"));
    }
    write_atomic(&received_path(state), text.as_bytes(), 0o600)
}

fn read_received(state: &StateDir) -> Result<Vec<(i64, String)>> {
    let path = received_path(state);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    // A line that does not parse is dropped: the record is a second line of defence
    // behind the response signature, not a source of truth.
    Ok(text
        .lines()
        .filter_map(|l| {
            let (at, id) = l.split_once(' ')?;
            Some((at.parse().ok()?, id.to_string()))
        })
        .collect())
}

/// Spooled batches in arrival order (file name order on ties).
/// Every batch this runner holds, for `heldJobRuns`: received in the last hour (recorded
/// before a batch is spooled), spooled, or with results in the outbox. None when there
/// are more than the protocol carries: then the dispatcher releases nothing early.
pub fn held_batches(state: &StateDir) -> Result<Option<Vec<String>>> {
    let mut held: std::collections::BTreeSet<String> = read_received(state)?
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    held.extend(
        files_with_suffix(&state.spool_dir(), ".xml")?
            .into_iter()
            .map(|(id, _)| id),
    );
    held.extend(
        files_with_suffix(&state.outbox_dir(), ".results")?
            .into_iter()
            .map(|(id, _)| id),
    );
    Ok((held.len() <= MAX_HELD_JOB_RUNS).then(|| held.into_iter().collect()))
}

pub fn list_batches(state: &StateDir) -> Result<Vec<SpooledBatch>> {
    let mut found = Vec::new();
    for (id, path) in files_with_suffix(&state.spool_dir(), ".xml")? {
        let modified = fs::metadata(&path).and_then(|m| m.modified()).ok();
        found.push((modified, id));
    }
    found.sort();
    Ok(found
        .into_iter()
        .map(|(_, id)| SpooledBatch::new(state, &id))
        .collect())
}

/// Removes journals and metas whose batch is gone (a crash between removals), and
/// metas whose `.xml` never arrived (a crash while spooling).
pub fn remove_orphans(state: &StateDir) -> Result<()> {
    let dir = state.spool_dir();
    for suffix in [".journal", ".meta"] {
        for (id, path) in files_with_suffix(&dir, suffix)? {
            if !dir.join(format!("{id}.xml")).exists() {
                remove_if_exists(&path)?;
            }
        }
    }
    Ok(())
}

fn files_with_suffix(dir: &Path, suffix: &str) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') {
            continue; // temp files of atomic writes
        }
        if let Some(id) = name.strip_suffix(suffix) {
            if valid_batch_id(id) {
                out.push((id.to_string(), entry.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The serialised form of a result, in journals and outbox files.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ResultRecord {
    job_run_id: String,
    message_id: i64,
    lease_token: String,
    outcome: String,
    #[serde(default)]
    smtp_code: Option<u16>,
    #[serde(default)]
    enhanced_status: Option<String>,
    #[serde(default)]
    text: Option<String>,
    attempted_at: DateTime<Utc>,
    #[serde(default)]
    recipients: Vec<RecipientRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RecipientRecord {
    address: String,
    outcome: String,
    #[serde(default)]
    smtp_code: Option<u16>,
    #[serde(default)]
    enhanced_status: Option<String>,
    #[serde(default)]
    text: Option<String>,
}

impl From<&MessageResult> for ResultRecord {
    fn from(r: &MessageResult) -> Self {
        ResultRecord {
            job_run_id: r.job_run_id.clone(),
            message_id: r.message_id,
            lease_token: r.lease_token.clone(),
            outcome: r.outcome.as_str().into(),
            smtp_code: r.smtp_code,
            enhanced_status: r.enhanced_status.clone(),
            text: r.text.clone(),
            attempted_at: r.attempted_at,
            recipients: r
                .recipients
                .iter()
                .map(|x| RecipientRecord {
                    address: x.address.clone(),
                    outcome: x.outcome.as_str().into(),
                    smtp_code: x.smtp_code,
                    enhanced_status: x.enhanced_status.clone(),
                    text: x.text.clone(),
                })
                .collect(),
        }
    }
}

impl ResultRecord {
    fn into_result(self) -> Result<MessageResult> {
        Ok(MessageResult {
            job_run_id: self.job_run_id,
            message_id: self.message_id,
            lease_token: self.lease_token,
            outcome: self.outcome.parse().map_err(anyhow::Error::msg)?,
            smtp_code: self.smtp_code,
            enhanced_status: self.enhanced_status,
            text: self.text,
            attempted_at: self.attempted_at,
            recipients: self
                .recipients
                .into_iter()
                .map(|x| {
                    Ok(RecipientResult {
                        address: x.address,
                        outcome: x.outcome.parse().map_err(anyhow::Error::msg)?,
                        smtp_code: x.smtp_code,
                        enhanced_status: x.enhanced_status,
                        text: x.text,
                    })
                })
                .collect::<Result<_>>()?,
        })
    }
}

/// The append-only outcome log of one batch, shared by the sessions delivering it.
///
/// An append writes the line at once (a killed process keeps it in the page cache) and
/// wakes the journal's fsync thread; [`Journal::synced`] waits until every line appended
/// before the call is on disk. One fdatasync covers every line appended while the
/// previous one ran (group commit), so many sessions cost few fsyncs, and the fsync of
/// one message's outcome overlaps the next message's MAIL, RCPT and DATA.
pub struct Journal {
    path: PathBuf,
    shared: std::sync::Arc<JournalShared>,
    /// Started by the first append: a journal opened only to be read needs no thread.
    syncer: std::sync::Mutex<Option<JoinHandle<()>>>,
}

struct JournalShared {
    state: std::sync::Mutex<JournalState>,
    /// The fsync thread waits here for appended lines (or closing, or a failure).
    appended: std::sync::Condvar,
    /// Sessions in [`Journal::synced`] wait here for an fsync (or a failure). Apart from
    /// `appended` so that an append wakes only the fsync thread, not every waiting session.
    durable: std::sync::Condvar,
}

struct JournalState {
    file: File,
    entries: Vec<MessageResult>,
    /// File length and entry count written so far, and covered by the last fsync that
    /// succeeded.
    written_len: u64,
    durable_len: u64,
    durable_entries: usize,
    /// An fsync failed: what is not durable was cut off, nothing more is accepted.
    failed: Option<String>,
    closing: bool,
}

impl JournalState {
    /// Back to what is certainly on disk, with no partial line for the next reader to
    /// trip over: an outcome that may be lost is not claimed done.
    fn truncate_to_durable(&mut self) {
        let _ = self
            .file
            .set_len(self.durable_len)
            .and_then(|()| self.file.sync_all());
        self.written_len = self.durable_len;
        self.entries.truncate(self.durable_entries);
    }
}

impl Journal {
    /// Opens (or creates) the journal and reads what it holds. A torn last line (a crash
    /// in the middle of an append, before its fsync returned) is cut off: that message
    /// counts as not done.
    pub fn open(path: &Path) -> Result<Journal> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode_0600()
            .open(path)
            .with_context(|| format!("cannot open journal {}", path.display()))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .with_context(|| format!("cannot read journal {}", path.display()))?;
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if complete < bytes.len() {
            file.set_len(complete as u64)
                .and_then(|()| file.sync_all())
                .with_context(|| format!("cannot repair journal {}", path.display()))?;
        }
        let mut entries = Vec::new();
        for (n, line) in bytes[..complete].split(|&b| b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let record: ResultRecord = serde_json::from_slice(line)
                .with_context(|| format!("journal {} line {} is corrupt", path.display(), n + 1))?;
            entries.push(record.into_result()?);
        }
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        let durable_entries = entries.len();
        let state = JournalState {
            file,
            entries,
            written_len: complete as u64,
            durable_len: complete as u64,
            durable_entries,
            failed: None,
            closing: false,
        };
        Ok(Journal {
            path: path.to_path_buf(),
            shared: std::sync::Arc::new(JournalShared {
                state: std::sync::Mutex::new(state),
                appended: std::sync::Condvar::new(),
                durable: std::sync::Condvar::new(),
            }),
            syncer: std::sync::Mutex::new(None),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, JournalState> {
        // A panic in another session cannot leave the state half-changed: every change
        // is one assignment after the I/O. Go on with it.
        self.shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every outcome recorded so far (a copy: other sessions may append meanwhile).
    pub fn entries(&self) -> Vec<MessageResult> {
        self.lock().entries.clone()
    }

    /// Message ids with a recorded outcome.
    pub fn done(&self) -> HashSet<i64> {
        self.lock().entries.iter().map(|r| r.message_id).collect()
    }

    /// Appends one outcome and wakes the fsync thread; [`Journal::synced`] waits for it.
    /// Call `synced` before the next final dot on any session.
    pub fn append(&self, result: MessageResult) -> Result<()> {
        let mut line =
            serde_json::to_vec(&ResultRecord::from(&result)).context("cannot serialise result")?;
        line.push(b'\n');
        self.start_syncer()?;
        let mut st = self.lock();
        if let Some(e) = &st.failed {
            anyhow::bail!("cannot write journal {}: {e}", self.path.display());
        }
        if let Err(e) = st.file.write_all(&line) {
            // A partial line would make the journal unreadable: cut back to what is
            // certainly there (what was synced).
            st.failed = Some(e.to_string());
            st.truncate_to_durable();
            self.shared.appended.notify_all();
            self.shared.durable.notify_all();
            return Err(e).with_context(|| {
                format!("cannot write journal {} (disk full?)", self.path.display())
            });
        }
        st.written_len += line.len() as u64;
        st.entries.push(result);
        self.shared.appended.notify_one();
        Ok(())
    }

    /// Waits until every outcome appended before this call is on disk.
    pub fn synced(&self) -> Result<()> {
        let mut st = self.lock();
        let target = st.entries.len();
        loop {
            if let Some(e) = &st.failed {
                anyhow::bail!(
                    "cannot write journal {} (disk full?): {e}",
                    self.path.display()
                );
            }
            if st.durable_entries >= target {
                return Ok(());
            }
            st = self
                .shared
                .durable
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    fn start_syncer(&self) -> Result<()> {
        let mut syncer = self
            .syncer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if syncer.is_some() {
            return Ok(());
        }
        let file = self
            .lock()
            .file
            .try_clone()
            .with_context(|| format!("cannot open journal {}", self.path.display()))?;
        let shared = self.shared.clone();
        let thread = std::thread::Builder::new()
            .name("journal-fsync".into())
            .stack_size(64 * 1024)
            .spawn(move || sync_loop(&shared, &file))
            .with_context(|| format!("cannot start the fsync of {}", self.path.display()))?;
        *syncer = Some(thread);
        Ok(())
    }
}

/// The fsync thread: whenever lines were appended beyond what is durable, one
/// fdatasync for all of them.
fn sync_loop(shared: &JournalShared, file: &File) {
    let lock = || {
        shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let mut st = lock();
    loop {
        if st.failed.is_some() {
            return;
        }
        if st.entries.len() > st.durable_entries {
            let (len, count) = (st.written_len, st.entries.len());
            drop(st);
            let result = file.sync_data();
            st = lock();
            match result {
                Ok(()) => {
                    if count > st.durable_entries {
                        st.durable_entries = count;
                        st.durable_len = len;
                    }
                }
                Err(e) => {
                    st.failed = Some(e.to_string());
                    st.truncate_to_durable();
                }
            }
            shared.durable.notify_all();
            continue;
        }
        if st.closing {
            return;
        }
        st = shared
            .appended
            .wait(st)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.lock().closing = true;
        self.shared.appended.notify_all();
        let thread = self
            .syncer
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o600)
    }
}

/// Moves a finished batch's results to the outbox and removes its spool files.
pub fn finish_batch(
    state: &StateDir,
    batch: &SpooledBatch,
    results: &[MessageResult],
) -> Result<()> {
    write_results(
        &state.outbox_dir().join(format!("{}.results", batch.id)),
        results,
    )?;
    // Order matters for crash recovery: without .xml the rest are orphans.
    remove_if_exists(&batch.xml)?;
    remove_if_exists(&batch.meta)?;
    remove_if_exists(&batch.journal)?;
    sync_dir(&state.spool_dir())
}

fn write_results(path: &Path, results: &[MessageResult]) -> Result<()> {
    let records: Vec<ResultRecord> = results.iter().map(ResultRecord::from).collect();
    let json = serde_json::to_vec_pretty(&records).context("cannot serialise results")?;
    write_atomic(path, &json, 0o600)
}

/// One outbox file and the results it holds.
pub struct OutboxFile {
    pub path: PathBuf,
    pub results: Vec<MessageResult>,
}

/// Every results file in the outbox.
pub fn read_outbox(state: &StateDir) -> Result<Vec<OutboxFile>> {
    let mut out = Vec::new();
    for (_, path) in files_with_suffix(&state.outbox_dir(), ".results")? {
        let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let records: Vec<ResultRecord> = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is corrupt", path.display()))?;
        let results = records
            .into_iter()
            .map(ResultRecord::into_result)
            .collect::<Result<_>>()
            .with_context(|| format!("{} is corrupt", path.display()))?;
        out.push(OutboxFile { path, results });
    }
    Ok(out)
}

/// Drops acknowledged results: a file whose results are all acknowledged is removed, a
/// partly acknowledged one is rewritten with the rest.
pub fn acknowledge(files: Vec<OutboxFile>, acks: &[Acknowledgement]) -> Result<usize> {
    let acked: HashSet<(i64, &str)> = acks
        .iter()
        .map(|a| (a.message_id, a.lease_token.as_str()))
        .collect();
    let mut removed = 0;
    for file in files {
        let before = file.results.len();
        let rest: Vec<MessageResult> = file
            .results
            .into_iter()
            .filter(|r| !acked.contains(&(r.message_id, r.lease_token.as_str())))
            .collect();
        removed += before - rest.len();
        if rest.is_empty() {
            remove_if_exists(&file.path)?;
        } else if rest.len() < before {
            write_results(&file.path, &rest)?;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Outcome;

    fn result(id: i64) -> MessageResult {
        MessageResult {
            job_run_id: "b1".into(),
            message_id: id,
            lease_token: format!("t{id}"),
            outcome: Outcome::Sent,
            smtp_code: Some(250),
            enhanced_status: None,
            text: Some("ok".into()),
            attempted_at: Utc::now(),
            recipients: vec![],
        }
    }

    #[test]
    fn journal_survives_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b1.journal");
        let j = Journal::open(&path).unwrap();
        j.append(result(1)).unwrap();
        j.append(result(2)).unwrap();
        drop(j);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"job_run_id\":\"b1\",\"mess").unwrap();
        drop(f);
        let j = Journal::open(&path).unwrap();
        assert_eq!(j.done(), HashSet::from([1, 2]));
        j.append(result(3)).unwrap();
        drop(j);
        let j = Journal::open(&path).unwrap();
        assert_eq!(j.entries().len(), 3);
    }

    #[test]
    fn appended_outcomes_are_on_disk_after_synced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b2.journal");
        let j = Journal::open(&path).unwrap();
        for id in 1..=50 {
            j.append(result(id)).unwrap();
            if id % 7 == 0 {
                j.synced().unwrap();
            }
        }
        j.synced().unwrap();
        assert_eq!(j.entries().len(), 50);
        drop(j);
        let j = Journal::open(&path).unwrap();
        assert_eq!(j.done(), (1..=50).collect::<HashSet<i64>>());
    }

    #[test]
    fn outbox_acknowledgement_removes_only_acked() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::at(dir.path());
        state.create().unwrap();
        let batch = SpooledBatch::new(&state, "b1");
        finish_batch(&state, &batch, &[result(1), result(2)]).unwrap();
        let files = read_outbox(&state).unwrap();
        assert_eq!(files[0].results.len(), 2);
        let n = acknowledge(
            files,
            &[Acknowledgement {
                message_id: 1,
                lease_token: "t1".into(),
            }],
        )
        .unwrap();
        assert_eq!(n, 1);
        let files = read_outbox(&state).unwrap();
        assert_eq!(files[0].results.len(), 1);
        acknowledge(
            files,
            &[Acknowledgement {
                message_id: 2,
                lease_token: "t2".into(),
            }],
        )
        .unwrap();
        assert!(read_outbox(&state).unwrap().is_empty());
    }

    #[test]
    fn received_batches_are_remembered_for_a_while() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::at(dir.path());
        state.create().unwrap();
        assert!(!batch_received_before(&state, "b1").unwrap());
        remember_received(&state, "b1", 1_000).unwrap();
        remember_received(&state, "b2", 1_000 + RECEIVED_MEMORY_SECONDS).unwrap();
        assert!(batch_received_before(&state, "b1").unwrap());
        // Older entries are forgotten as new ones arrive.
        remember_received(&state, "b3", 1_001 + RECEIVED_MEMORY_SECONDS).unwrap();
        assert!(!batch_received_before(&state, "b1").unwrap());
        assert!(batch_received_before(&state, "b2").unwrap());
        // Results in the outbox count as received too.
        finish_batch(&state, &SpooledBatch::new(&state, "b4"), &[result(1)]).unwrap();
        assert!(batch_received_before(&state, "b4").unwrap());
    }

    #[test]
    fn batch_ids_are_safe_names() {
        assert!(valid_batch_id("jr-123_abc.1"));
        assert!(!valid_batch_id("../x"));
        assert!(!valid_batch_id(".hidden"));
        assert!(!valid_batch_id(""));
        assert!(!valid_batch_id("a/b"));
    }
}
