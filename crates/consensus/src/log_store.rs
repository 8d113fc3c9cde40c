//! openraft's log store over the write-ahead log of `roost-storage`.
//!
//! Every write — appends (one `sync_data` per append, i.e. per batch of
//! client writes), truncations, purges and the vote file — runs under one
//! lock, in the order openraft asks (it requires vote and log IO to be
//! serialized), on the calling task's thread via `block_in_place`: openraft
//! waits for each append to be durable anyway, so handing the write to
//! another thread would only add two thread wake-ups per batch. Entries not
//! yet purged are also kept in memory, so reads (for applying and for
//! replication) never touch the disk.
//!
//! Obligations (openraft's `RaftLogStorage`): entries are readable when
//! `append` returns and durable when its callback fires; there is never a
//! hole; the vote is durable before `save_vote` returns; `last_purged_log_id`
//! is persisted before purged segments are deleted.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError};
use roost_storage::{
    meta, preallocate_spare, FileSystem, StorageError as DiskError, Wal, WalOptions,
};
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use crate::types::{LogId, RaftEntry, StorageError, TypeConfig, Vote};

const VOTE_FILE: &str = "raft-vote";
const LOG_META_FILE: &str = "raft-log";
/// Spare segments kept ready so appends never allocate.
const SPARES_WANTED: usize = 2;

/// What the log remembers besides entries.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct LogMeta {
    last_purged: Option<LogId>,
}

/// A log entry in memory. Entries recovered from disk stay encoded until
/// read: after a restart most of them sit below the snapshot and are never
/// needed again, so decoding them all would only slow recovery down.
#[derive(Clone)]
enum Cached {
    Decoded(RaftEntry),
    Encoded(LogId, Bytes),
}

/// The leading `log_id` field of an encoded `openraft::Entry`.
#[derive(Deserialize)]
struct LogIdPrefix {
    log_id: LogId,
}

impl Cached {
    fn log_id(&self) -> LogId {
        match self {
            Cached::Decoded(entry) => entry.log_id,
            Cached::Encoded(log_id, _) => *log_id,
        }
    }

    fn entry(&self) -> Result<RaftEntry, StorageError> {
        match self {
            Cached::Decoded(entry) => Ok(entry.clone()),
            Cached::Encoded(log_id, bytes) => postcard::from_bytes(bytes).map_err(|e| {
                StorageIOError::read_log_at_index(
                    log_id.index,
                    openraft::AnyError::error(e.to_string()),
                )
                .into()
            }),
        }
    }
}

struct Cache {
    /// Index of `entries[0]` (meaningful only when non-empty).
    first_index: u64,
    entries: VecDeque<Cached>,
    meta: LogMeta,
    vote: Option<Vote>,
}

impl Cache {
    fn last_log_id(&self) -> Option<LogId> {
        self.entries
            .back()
            .map(Cached::log_id)
            .or(self.meta.last_purged)
    }
}

struct Inner {
    cache: Mutex<Cache>,
    wal: Mutex<Wal>,
    fs: Arc<dyn FileSystem>,
    /// Bytes appendable without allocating (active segment + spares).
    room_bytes: AtomicU64,
    spares: AtomicUsize,
    disk_full: AtomicBool,
    /// Set once a write failed: the log refuses to go on.
    failed: AtomicBool,
}

/// The log store handed to openraft (cheap to clone).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

fn io_error(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_logs(openraft::AnyError::error(e.to_string())).into()
}

impl LogStore {
    /// Opens the log in `dir`: recovers the WAL, the vote and the purge point,
    /// and starts the writer and preallocator threads.
    pub fn open(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        options: WalOptions,
    ) -> Result<LogStore, DiskError> {
        let segment_bytes = options.segment_bytes;
        let (wal, records) = Wal::open(fs.clone(), dir, options)?;
        let vote = match meta::read_checked(&*fs, &dir.join(VOTE_FILE))? {
            Some(bytes) => Some(
                postcard::from_bytes::<Vote>(&bytes)
                    .map_err(|e| DiskError::corrupt(&dir.join(VOTE_FILE), 0, e.to_string()))?,
            ),
            None => None,
        };
        let log_meta = match meta::read_checked(&*fs, &dir.join(LOG_META_FILE))? {
            Some(bytes) => postcard::from_bytes::<LogMeta>(&bytes)
                .map_err(|e| DiskError::corrupt(&dir.join(LOG_META_FILE), 0, e.to_string()))?,
            None => LogMeta::default(),
        };
        let purged_index = log_meta.last_purged.map(|l| l.index);
        let mut entries = VecDeque::with_capacity(records.len());
        for record in records {
            if purged_index.is_some_and(|p| record.index <= p) {
                continue;
            }
            let (prefix, _) =
                postcard::take_from_bytes::<LogIdPrefix>(&record.payload).map_err(|e| {
                    DiskError::corrupt(dir, record.index, format!("undecodable log entry: {e}"))
                })?;
            if prefix.log_id.index != record.index {
                return Err(DiskError::corrupt(
                    dir,
                    record.index,
                    "entry index mismatch",
                ));
            }
            entries.push_back(Cached::Encoded(prefix.log_id, record.payload));
        }
        let first_index = entries.front().map_or(0, |e: &Cached| e.log_id().index);
        let room_bytes = wal.room_bytes();
        let spares = wal.spare_count();
        let inner = Arc::new(Inner {
            cache: Mutex::new(Cache {
                first_index,
                entries,
                meta: log_meta,
                vote,
            }),
            wal: Mutex::new(wal),
            fs: fs.clone(),
            room_bytes: AtomicU64::new(room_bytes),
            spares: AtomicUsize::new(spares),
            disk_full: AtomicBool::new(false),
            failed: AtomicBool::new(false),
        });
        let prealloc_inner = Arc::downgrade(&inner);
        let prealloc_dir = dir.to_path_buf();
        std::thread::Builder::new()
            .name("roost-prealloc".into())
            .spawn(move || run_preallocator(prealloc_inner, fs, prealloc_dir, segment_bytes))
            .map_err(|e| DiskError::io("starting the preallocator", dir, e))?;
        Ok(LogStore { inner })
    }

    /// Bytes that can be appended now without allocating disk space.
    pub fn room_bytes(&self) -> u64 {
        self.inner.room_bytes.load(Ordering::Relaxed)
    }

    /// True while spare segments cannot be preallocated for lack of space.
    pub fn disk_full(&self) -> bool {
        self.inner.disk_full.load(Ordering::Relaxed)
    }

    /// True once a write to the log failed; the server must stop.
    pub fn failed(&self) -> bool {
        self.inner.failed.load(Ordering::Relaxed)
    }

    /// Runs one write against the WAL, in order with every other write. A
    /// failure other than a full disk marks the log failed for good.
    fn with_wal<T>(
        &self,
        write: impl FnOnce(&mut Wal, &dyn FileSystem) -> Result<T, DiskError>,
    ) -> Result<T, DiskError> {
        let inner = &self.inner;
        if inner.failed.load(Ordering::Relaxed) {
            return Err(DiskError::Invariant("the log failed earlier".into()));
        }
        let run = || {
            let mut wal = inner.wal.lock().expect("wal lock poisoned");
            let result = write(&mut wal, &*inner.fs);
            inner.room_bytes.store(wal.room_bytes(), Ordering::Relaxed);
            inner.spares.store(wal.spare_count(), Ordering::Relaxed);
            result
        };
        let on_multi_thread_runtime = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let result = if on_multi_thread_runtime {
            tokio::task::block_in_place(run)
        } else {
            run()
        };
        if let Err(e) = &result {
            if !e.is_disk_full() {
                error!("log write failed: {e}");
                inner.failed.store(true, Ordering::Relaxed);
            }
        }
        result
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.inner.cache.lock().expect("log cache lock poisoned")
    }

    fn write_meta(&self, meta: &LogMeta) -> Result<(), StorageError> {
        let bytes = postcard::to_allocvec(meta).map_err(io_error)?;
        let dir = self.dir();
        self.with_wal(|_, fs| meta::write_atomic(fs, &dir, LOG_META_FILE, &bytes))
            .map_err(io_error)
    }

    fn dir(&self) -> PathBuf {
        self.inner
            .wal
            .lock()
            .expect("wal lock poisoned")
            .dir()
            .to_path_buf()
    }

    /// Makes `entries` readable at once and durable before returning.
    fn push_entries(&self, entries: Vec<RaftEntry>) -> Result<(), DiskError> {
        let mut records = Vec::with_capacity(entries.len());
        for entry in &entries {
            let payload = postcard::to_allocvec(entry)
                .map_err(|e| DiskError::Invariant(format!("encoding a log entry: {e}")))?;
            records.push((entry.log_id.index, entry.log_id.leader_id.term, payload));
        }
        {
            let mut cache = self.cache();
            for entry in entries {
                if cache.entries.is_empty() {
                    cache.first_index = entry.log_id.index;
                }
                cache.entries.push_back(Cached::Decoded(entry));
            }
        }
        let refs: Vec<(u64, u64, &[u8])> = records
            .iter()
            .map(|(i, t, p)| (*i, *t, p.as_slice()))
            .collect();
        self.with_wal(|wal, _| {
            wal.append(&refs)?;
            wal.sync()
        })
    }
}

/// Keeps `SPARES_WANTED` zero-filled segments ready. When the disk is full it
/// says so (writes are then refused before they reach the log) and retries
/// until space is back.
fn run_preallocator(
    inner: std::sync::Weak<Inner>,
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    segment_bytes: u64,
) {
    let mut seq = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    loop {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if inner.failed.load(Ordering::Relaxed) {
            return;
        }
        let wanted = inner.spares.load(Ordering::Relaxed) < SPARES_WANTED;
        let mut pause = Duration::from_millis(100);
        if wanted {
            seq += 1;
            match preallocate_spare(&*fs, &dir, seq, segment_bytes) {
                Ok(path) => {
                    if inner.disk_full.swap(false, Ordering::Relaxed) {
                        info!("disk space is back: writes are accepted again");
                    }
                    let mut wal = inner.wal.lock().expect("wal lock poisoned");
                    wal.add_spare(path);
                    inner.room_bytes.store(wal.room_bytes(), Ordering::Relaxed);
                    inner.spares.store(wal.spare_count(), Ordering::Relaxed);
                    pause = Duration::ZERO;
                }
                Err(e) if e.is_disk_full() => {
                    if !inner.disk_full.swap(true, Ordering::Relaxed) {
                        warn!("disk full: cannot preallocate log space ({e}); writes will be refused until space is freed");
                    }
                    pause = Duration::from_secs(1);
                }
                Err(e) => {
                    warn!("cannot preallocate log space: {e}");
                    pause = Duration::from_secs(1);
                }
            }
        }
        drop(inner);
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<RaftEntry>, StorageError> {
        let cache = self.cache();
        if cache.entries.is_empty() {
            return Ok(Vec::new());
        }
        let first = cache.first_index;
        let last = first + cache.entries.len() as u64 - 1;
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s.saturating_add(1),
            Bound::Unbounded => first,
        }
        .max(first);
        let end = match range.end_bound() {
            Bound::Included(e) => *e,
            Bound::Excluded(e) => match e.checked_sub(1) {
                Some(e) => e,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => last,
        }
        .min(last);
        if start > end {
            return Ok(Vec::new());
        }
        let from = (start - first) as usize;
        let to = (end - first) as usize;
        cache.entries.range(from..=to).map(Cached::entry).collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let cache = self.cache();
        Ok(LogState {
            last_purged_log_id: cache.meta.last_purged,
            last_log_id: cache.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let bytes = postcard::to_allocvec(vote).map_err(io_error)?;
        let dir = self.dir();
        self.with_wal(|_, fs| meta::write_atomic(fs, &dir, VOTE_FILE, &bytes))
            .map_err(|e| StorageIOError::write_vote(openraft::AnyError::error(e.to_string())))?;
        self.cache().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.cache().vote)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = RaftEntry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let result = self.push_entries(entries.into_iter().collect());
        callback.log_io_completed(result.map_err(std::io::Error::other));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        {
            let mut cache = self.cache();
            if !cache.entries.is_empty() && log_id.index >= cache.first_index {
                let keep = (log_id.index - cache.first_index) as usize;
                cache.entries.truncate(keep);
            } else if log_id.index < cache.first_index {
                cache.entries.clear();
            }
        }
        self.with_wal(|wal, _| wal.truncate_from(log_id.index))
            .map_err(io_error)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let new_meta = {
            let mut cache = self.cache();
            while cache
                .entries
                .front()
                .is_some_and(|e| e.log_id().index <= log_id.index)
            {
                cache.entries.pop_front();
                cache.first_index += 1;
            }
            if cache
                .meta
                .last_purged
                .is_some_and(|p| p.index >= log_id.index)
            {
                None
            } else {
                cache.meta.last_purged = Some(log_id);
                Some(cache.meta.clone())
            }
        };
        // The purge point is durable before any segment goes.
        if let Some(meta) = new_meta {
            self.write_meta(&meta)?;
        }
        self.with_wal(|wal, _| {
            if wal.last_index().is_some_and(|last| last <= log_id.index) {
                wal.clear()
            } else {
                wal.purge_through(log_id.index)
            }
        })
        .map_err(io_error)
    }
}

impl LogStore {
    /// Drops the whole log (a snapshot from the leader replaces it).
    pub async fn clear(&self) -> Result<(), StorageError> {
        self.cache().entries.clear();
        self.with_wal(|wal, _| wal.clear()).map_err(io_error)
    }

    /// Reads entries (tests and tools).
    pub fn entries_in(
        &self,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Vec<RaftEntry>, StorageError> {
        let cache = self.cache();
        cache
            .entries
            .iter()
            .filter(|e| range.contains(&e.log_id().index))
            .map(Cached::entry)
            .collect()
    }

    /// Index up to which the log was purged (covered by a snapshot).
    pub fn purged_index(&self) -> Option<u64> {
        self.cache().meta.last_purged.map(|l| l.index)
    }

    /// Index of the last entry (or of the purge point when the log is empty).
    pub fn last_index(&self) -> Option<u64> {
        self.cache().last_log_id().map(|l| l.index)
    }
}
