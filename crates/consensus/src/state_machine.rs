//! openraft's state machine over `roost-core`, and the snapshot files.
//!
//! The state itself lives with the server (its connections must be told of
//! every change as it is applied); this adapter reaches it through
//! [`StateMachineHost`]. The host applies a batch and records the raft
//! position (`AppliedMark`) under one lock, so a snapshot taken from
//! `host.snapshot()` is exact: its state is precisely the effect of the log up
//! to its mark — never a fuzzy snapshot.
//!
//! Snapshots are files `snapshot-<index>-<term>.snap` in the snapshot
//! directory; the newest `retain` are kept. Writing one happens off the apply
//! path (the state clone is O(1)).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use roost_core::{Entry, State, StateConfig};
use roost_proto::ErrorCode;
use roost_storage::{snapshot, FileSystem, StorageError as DiskError};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::types::{
    LogId, NodeId, RaftEntry, SnapshotFile, SnapshotMeta, StorageError, StoredMembership,
    TypeConfig,
};

/// Where the applied state stands in the raft log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppliedMark {
    pub(crate) last_applied: Option<LogId>,
    pub(crate) membership: StoredMembership,
}

impl AppliedMark {
    /// Index of the last applied raft entry.
    pub fn last_applied_index(&self) -> Option<u64> {
        self.last_applied.map(|l| l.index)
    }
}

/// The server side of the state machine.
pub trait StateMachineHost: Send + Sync + 'static {
    /// Applies entries, in order, and records `mark` atomically with them.
    fn apply(&self, entries: &[Entry], mark: &AppliedMark);
    /// A consistent copy of the state and the mark it corresponds to.
    fn snapshot(&self) -> (State, AppliedMark);
    /// Replaces the state (startup, or a snapshot from the leader).
    fn install(&self, state: State, mark: AppliedMark);
    fn mark(&self) -> AppliedMark;
    /// Tells the proposers of `entries` their writes were refused with `code`.
    fn refuse(&self, entries: &[Entry], code: ErrorCode);
    /// The outcome of `entries` is unknown (the leader that took them may
    /// have failed): their connections are closed, as ZooKeeper's are, so
    /// clients see ConnectionLoss rather than a wrong answer.
    fn abandon(&self, entries: &[Entry]) {
        self.refuse(entries, ErrorCode::ConnectionLoss);
    }
    /// Sessions another server saw alive (the leader keeps the deadlines).
    fn touch_sessions(&self, _sessions: &[i64]) {}
    /// Whether a write not yet delivered to any leader is still awaited
    /// (its client is connected, or the server itself made it): one that is
    /// not is dropped rather than retried, so a write whose client saw
    /// ConnectionLoss does not take effect long after.
    fn still_awaited(&self, _entry: &Entry) -> bool {
        true
    }
    /// The membership the applied state names (`None`: standalone).
    fn membership_target(&self) -> Option<crate::MembershipTarget> {
        None
    }
}

/// Requests from the state machine to the node that owns the raft handle.
#[derive(Debug)]
pub(crate) enum Housekeeping {
    /// Enough entries were applied since the last snapshot.
    TakeSnapshot,
    /// Snapshots older than this index were deleted; the log up to it may go.
    PurgeUpTo(u64),
    /// A snapshot covers the log up to this index: the entries up to it
    /// leave the in-memory cache (the WAL still has them for followers).
    TrimCacheThrough(u64),
}

/// The snapshot directory and the current snapshot.
pub(crate) struct SnapshotStore {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    config: StateConfig,
    retain: usize,
    current: Mutex<Option<(SnapshotMeta, SnapshotFile)>>,
    /// Size in bytes of the current snapshot's file.
    current_bytes: AtomicU64,
    receiving: AtomicU64,
}

/// A snapshot is taken only once the log written since the last one is at
/// least this fraction of that snapshot's size. Without it, snapCount alone
/// rewrote a 1M-znode tree (180 MB) every ~75,000 creates (17 MB of log):
/// ten bytes of snapshot per byte of log, a third of a create load's CPU.
/// ZooKeeper's snapCount is likewise the count *before* a snapshot can be
/// taken, not a promise of one. A quarter bounds the log replayed at
/// restart to a quarter of the snapshot's size.
const SNAPSHOT_BYTES_PER_LOG_BYTE_MAX: u64 = 4;

fn snapshot_name(meta: &SnapshotMeta) -> String {
    let (index, term) = meta
        .last_log_id
        .map_or((0, 0), |l| (l.index, l.leader_id.term));
    format!("snapshot-{index:020}-{term:020}.snap")
}

fn snapshot_index(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let rest = name.strip_prefix("snapshot-")?.strip_suffix(".snap")?;
    rest.split('-').next()?.parse().ok()
}

fn disk_error(e: DiskError) -> StorageError {
    StorageIOError::write_snapshot(None, openraft::AnyError::error(e.to_string())).into()
}

impl SnapshotStore {
    /// Opens the snapshot directory and loads the newest valid snapshot.
    pub(crate) fn open(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        config: StateConfig,
        retain: usize,
    ) -> Result<(SnapshotStore, Option<(State, AppliedMark)>), DiskError> {
        fs.create_dir_all(dir)
            .map_err(|e| DiskError::io("creating the snapshot directory", dir, e))?;
        let files = fs
            .list(dir)
            .map_err(|e| DiskError::io("listing snapshots", dir, e))?;
        for tmp in files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "tmp"))
        {
            let _ = fs.remove(tmp);
        }
        let mut snapshots: Vec<(u64, PathBuf)> = files
            .iter()
            .filter_map(|p| snapshot_index(p).map(|i| (i, p.clone())))
            .collect();
        snapshots.sort();
        let store = SnapshotStore {
            fs,
            dir: dir.to_path_buf(),
            config,
            retain: retain.max(1),
            current: Mutex::new(None),
            current_bytes: AtomicU64::new(0),
            receiving: AtomicU64::new(0),
        };
        for (_, path) in snapshots.iter().rev() {
            match store.load(path) {
                Ok((meta, state)) => {
                    info!(
                        "loaded snapshot {} ({} znodes, zxid 0x{:x})",
                        path.display(),
                        state.tree().len(),
                        state.last_zxid()
                    );
                    let mark = AppliedMark {
                        last_applied: meta.last_log_id,
                        membership: meta.last_membership.clone(),
                    };
                    store.set_current(meta, SnapshotFile { path: path.clone() }, None);
                    return Ok((store, Some((state, mark))));
                }
                Err(e) => warn!("skipping unreadable snapshot: {e}"),
            }
        }
        Ok((store, None))
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Option<(SnapshotMeta, SnapshotFile)>> {
        self.current.lock().expect("snapshot lock poisoned")
    }

    /// Makes `file` the current snapshot; `bytes` is its size if known.
    fn set_current(&self, meta: SnapshotMeta, file: SnapshotFile, bytes: Option<u64>) {
        let bytes =
            bytes.unwrap_or_else(|| self.fs.open(&file.path).and_then(|f| f.size()).unwrap_or(0));
        self.current_bytes.store(bytes, Ordering::Relaxed);
        *self.current() = Some((meta, file));
    }

    /// The log bytes to write before the next snapshot is worth taking.
    fn log_bytes_before_next(&self) -> u64 {
        self.current_bytes.load(Ordering::Relaxed) / SNAPSHOT_BYTES_PER_LOG_BYTE_MAX
    }

    fn load(&self, path: &Path) -> Result<(SnapshotMeta, State), DiskError> {
        let (meta_bytes, state) = snapshot::read_snapshot(&*self.fs, path, self.config.clone())?;
        let meta: SnapshotMeta = postcard::from_bytes(&meta_bytes)
            .map_err(|e| DiskError::corrupt(path, 0, format!("snapshot metadata: {e}")))?;
        Ok((meta, state))
    }

    /// Writes a snapshot of `state` at `mark`, makes it current, and deletes
    /// all but the newest `retain`. Returns the index below which the log is
    /// no longer needed (the oldest kept snapshot).
    fn write(
        &self,
        state: &State,
        mark: &AppliedMark,
    ) -> Result<(SnapshotMeta, SnapshotFile, u64), DiskError> {
        let meta = SnapshotMeta {
            last_log_id: mark.last_applied,
            last_membership: mark.membership.clone(),
            snapshot_id: format!(
                "{}-{:x}",
                mark.last_applied.map_or(0, |l| l.index),
                state.last_zxid()
            ),
        };
        let meta_bytes = postcard::to_allocvec(&meta)
            .map_err(|e| DiskError::Invariant(format!("snapshot meta: {e}")))?;
        let started = std::time::Instant::now();
        let (path, size) = snapshot::write_snapshot(
            &*self.fs,
            &self.dir,
            &snapshot_name(&meta),
            &meta_bytes,
            state,
        )?;
        info!(
            "wrote snapshot {} ({} znodes, {} bytes) in {:?}",
            path.display(),
            state.tree().len(),
            size,
            started.elapsed()
        );
        let file = SnapshotFile { path };
        self.set_current(meta.clone(), file.clone(), Some(size));
        let oldest = self.retain_newest()?;
        Ok((meta, file, oldest))
    }

    /// Deletes snapshots beyond the newest `retain`; returns the oldest kept index.
    fn retain_newest(&self) -> Result<u64, DiskError> {
        let files = self
            .fs
            .list(&self.dir)
            .map_err(|e| DiskError::io("listing snapshots", &self.dir, e))?;
        let mut snapshots: Vec<(u64, PathBuf)> = files
            .iter()
            .filter_map(|p| snapshot_index(p).map(|i| (i, p.clone())))
            .collect();
        snapshots.sort();
        let excess = snapshots.len().saturating_sub(self.retain);
        for (_, path) in snapshots.drain(..excess) {
            let _ = self.fs.remove(&path);
        }
        Ok(snapshots.first().map_or(0, |(i, _)| *i))
    }
}

/// Writes `state` as the only snapshot of a new standalone server `node_id`
/// in `snapshot_dir`, as if that server had been initialized and had applied
/// it (`roost import`). Refuses a directory that already holds snapshots.
pub fn write_initial_snapshot(
    fs: &dyn FileSystem,
    snapshot_dir: &Path,
    node_id: NodeId,
    state: &State,
) -> Result<PathBuf, DiskError> {
    fs.create_dir_all(snapshot_dir)
        .map_err(|e| DiskError::io("creating the snapshot directory", snapshot_dir, e))?;
    let existing = fs
        .list(snapshot_dir)
        .map_err(|e| DiskError::io("listing snapshots", snapshot_dir, e))?;
    if existing.iter().any(|p| snapshot_index(p).is_some()) {
        return Err(DiskError::Invariant(format!(
            "{} already holds snapshots: import into an empty data directory",
            snapshot_dir.display()
        )));
    }
    // The log position and membership `initialize` gives a new server.
    let log_id = LogId::new(openraft::CommittedLeaderId::new(0, node_id), 0);
    let membership =
        openraft::Membership::from(BTreeMap::from([(node_id, openraft::BasicNode::new(""))]));
    let meta = SnapshotMeta {
        last_log_id: Some(log_id),
        last_membership: StoredMembership::new(Some(log_id), membership),
        snapshot_id: format!("0-{:x}", state.last_zxid()),
    };
    let meta_bytes = postcard::to_allocvec(&meta)
        .map_err(|e| DiskError::Invariant(format!("snapshot meta: {e}")))?;
    let (path, _) =
        snapshot::write_snapshot(fs, snapshot_dir, &snapshot_name(&meta), &meta_bytes, state)?;
    Ok(path)
}

/// When to take a snapshot: after `entries` client writes or `bytes` of
/// log, whichever comes first (ZooKeeper's snapCount and snapSizeLimitInKb;
/// 0 turns either off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SnapshotPolicy {
    pub entries: u64,
    pub bytes: u64,
}

/// The state machine handed to openraft.
pub(crate) struct StateMachine {
    host: Arc<dyn StateMachineHost>,
    snapshots: Arc<SnapshotStore>,
    housekeeping: mpsc::UnboundedSender<Housekeeping>,
    policy: SnapshotPolicy,
    /// Client entries and log bytes applied since the last snapshot, and the
    /// randomised thresholds for the next one (ZooKeeper's
    /// `snapCount/2 + rand(snapCount/2)`, and likewise for bytes).
    since_snapshot: (u64, u64),
    thresholds: (u64, u64),
}

/// `limit/2 + rand(limit/2)`; `u64::MAX` (never) for a limit of 0.
fn randomised_threshold(limit: u64) -> u64 {
    if limit == 0 {
        return u64::MAX;
    }
    let half = (limit / 2).max(1);
    half + rand::random::<u64>() % half
}

impl SnapshotPolicy {
    fn thresholds(&self) -> (u64, u64) {
        (
            randomised_threshold(self.entries),
            randomised_threshold(self.bytes),
        )
    }
}

impl StateMachine {
    pub(crate) fn new(
        host: Arc<dyn StateMachineHost>,
        snapshots: Arc<SnapshotStore>,
        housekeeping: mpsc::UnboundedSender<Housekeeping>,
        policy: SnapshotPolicy,
        since_snapshot: (u64, u64),
    ) -> Self {
        StateMachine {
            host,
            snapshots,
            housekeeping,
            policy,
            since_snapshot,
            thresholds: policy.thresholds(),
        }
    }
}

/// Builds snapshots from a consistent view taken at call time.
pub(crate) struct SnapshotBuilder {
    host: Arc<dyn StateMachineHost>,
    snapshots: Arc<SnapshotStore>,
    housekeeping: mpsc::UnboundedSender<Housekeeping>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (state, mark) = self.host.snapshot();
        let snapshots = self.snapshots.clone();
        let written = tokio::task::spawn_blocking(move || snapshots.write(&state, &mark))
            .await
            .map_err(|e| disk_error(DiskError::Invariant(e.to_string())))?;
        match written {
            Ok((meta, file, oldest)) => {
                if let Some(last) = meta.last_log_id {
                    let _ = self
                        .housekeeping
                        .send(Housekeeping::TrimCacheThrough(last.index));
                }
                let _ = self.housekeeping.send(Housekeeping::PurgeUpTo(oldest));
                Ok(Snapshot {
                    meta,
                    snapshot: Box::new(file),
                })
            }
            Err(e) => {
                // A failed snapshot must not stop the server (the disk may be
                // full): keep serving from the previous one, if there is one.
                warn!("snapshot failed: {e}");
                match self.snapshots.current().clone() {
                    Some((meta, file)) => Ok(Snapshot {
                        meta,
                        snapshot: Box::new(file),
                    }),
                    None => Err(disk_error(e)),
                }
            }
        }
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let mark = self.host.mark();
        Ok((mark.last_applied, mark.membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError>
    where
        I: IntoIterator<Item = RaftEntry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut mark = self.host.mark();
        let mut replies = Vec::new();
        for entry in entries {
            mark.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => self.host.apply(&[], &mark),
                EntryPayload::Normal(batch) => {
                    self.host.apply(batch.entries(), &mark);
                    self.since_snapshot.0 += batch.entries().len() as u64;
                    self.since_snapshot.1 += batch.encoded().len() as u64;
                }
                EntryPayload::Membership(membership) => {
                    mark.membership = StoredMembership::new(Some(entry.log_id), membership);
                    self.host.apply(&[], &mark);
                }
            }
            replies.push(());
        }
        let (entries, bytes) = self.since_snapshot;
        if (entries >= self.thresholds.0 || bytes >= self.thresholds.1)
            && bytes >= self.snapshots.log_bytes_before_next()
        {
            self.since_snapshot = (0, 0);
            self.thresholds = self.policy.thresholds();
            let _ = self.housekeeping.send(Housekeeping::TakeSnapshot);
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            host: self.host.clone(),
            snapshots: self.snapshots.clone(),
            housekeeping: self.housekeeping.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError> {
        let n = self.snapshots.receiving.fetch_add(1, Ordering::Relaxed);
        Ok(Box::new(SnapshotFile {
            path: self.snapshots.dir.join(format!("receiving-{n}.tmp")),
        }))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError> {
        let snapshots = self.snapshots.clone();
        let received = snapshot.path.clone();
        let meta_for_load = meta.clone();
        let loaded = tokio::task::spawn_blocking(move || -> Result<(State, PathBuf), DiskError> {
            let (_, state) =
                snapshot::read_snapshot(&*snapshots.fs, &received, snapshots.config.clone())?;
            let path = snapshots.dir.join(snapshot_name(&meta_for_load));
            if received != path {
                snapshots
                    .fs
                    .rename(&received, &path)
                    .map_err(|e| DiskError::io("keeping a received snapshot", &received, e))?;
                snapshots.fs.sync_dir(&snapshots.dir).map_err(|e| {
                    DiskError::io("syncing the snapshot directory", &snapshots.dir, e)
                })?;
            }
            Ok((state, path))
        })
        .await
        .map_err(|e| disk_error(DiskError::Invariant(e.to_string())))?
        .map_err(disk_error)?;
        let (state, path) = loaded;
        info!(
            "installed snapshot at {:?} ({} znodes)",
            meta.last_log_id,
            state.tree().len()
        );
        self.host.install(
            state,
            AppliedMark {
                last_applied: meta.last_log_id,
                membership: meta.last_membership.clone(),
            },
        );
        self.snapshots
            .set_current(meta.clone(), SnapshotFile { path }, None);
        self.since_snapshot = (0, 0);
        let _ = self.snapshots.retain_newest();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self
            .snapshots
            .current()
            .clone()
            .map(|(meta, file)| Snapshot {
                meta,
                snapshot: Box::new(file),
            }))
    }
}

/// A host that only keeps the state (tests without connections).
#[cfg(test)]
pub(crate) struct MemoryHost {
    inner: Mutex<(State, AppliedMark)>,
}

#[cfg(test)]
impl MemoryHost {
    pub(crate) fn new(config: StateConfig) -> Self {
        MemoryHost {
            inner: Mutex::new((State::new(config), AppliedMark::default())),
        }
    }
}

#[cfg(test)]
impl StateMachineHost for MemoryHost {
    fn apply(&self, entries: &[Entry], mark: &AppliedMark) {
        let mut inner = self.inner.lock().expect("host lock poisoned");
        for entry in entries {
            inner.0.apply(entry);
        }
        inner.1 = mark.clone();
    }
    fn snapshot(&self) -> (State, AppliedMark) {
        self.inner.lock().expect("host lock poisoned").clone()
    }
    fn install(&self, state: State, mark: AppliedMark) {
        *self.inner.lock().expect("host lock poisoned") = (state, mark);
    }
    fn mark(&self) -> AppliedMark {
        self.inner.lock().expect("host lock poisoned").1.clone()
    }
    fn refuse(&self, _entries: &[Entry], _code: ErrorCode) {}
}
