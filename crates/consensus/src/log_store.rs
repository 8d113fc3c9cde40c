//! openraft's log store over the write-ahead log of `roost-storage`.
//!
//! One writer thread owns the WAL and does every write in the order asked:
//! appends (one `sync_data` per append, i.e. per batch of client writes),
//! truncations, purges and the vote file — openraft requires vote and log IO
//! to be serialized. Entries not yet purged are also kept in memory, so reads
//! (for applying and for replication) never touch the disk.
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
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError};
use roost_storage::{
    meta, preallocate_spare, FileSystem, StorageError as DiskError, Wal, WalOptions,
};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
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

type Done = oneshot::Sender<Result<(), DiskError>>;

enum WriterCmd {
    Append {
        records: Vec<(u64, u64, Bytes)>,
        flushed: Flushed,
    },
    Truncate {
        from: u64,
        done: Done,
    },
    Purge {
        upto: u64,
        done: Done,
    },
    Clear {
        done: Done,
    },
    WriteMeta {
        name: &'static str,
        bytes: Vec<u8>,
        done: Done,
    },
    AddSpare(PathBuf),
}

/// Who to tell once an append is durable.
enum Flushed {
    Raft(LogFlushed<TypeConfig>),
}

impl Flushed {
    fn complete(self, result: Result<(), DiskError>) {
        match self {
            Flushed::Raft(cb) => cb.log_io_completed(result.map_err(std::io::Error::other)),
        }
    }
}

struct Cache {
    /// Index of `entries[0]` (meaningful only when non-empty).
    first_index: u64,
    entries: VecDeque<RaftEntry>,
    meta: LogMeta,
    vote: Option<Vote>,
}

impl Cache {
    fn last_log_id(&self) -> Option<LogId> {
        self.entries
            .back()
            .map(|e| e.log_id)
            .or(self.meta.last_purged)
    }
}

struct Inner {
    cache: Mutex<Cache>,
    writer: Mutex<std_mpsc::Sender<WriterCmd>>,
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
            let entry: RaftEntry = postcard::from_bytes(&record.payload).map_err(|e| {
                DiskError::corrupt(dir, record.index, format!("undecodable log entry: {e}"))
            })?;
            if entry.log_id.index != record.index {
                return Err(DiskError::corrupt(
                    dir,
                    record.index,
                    "entry index mismatch",
                ));
            }
            entries.push_back(entry);
        }
        let first_index = entries.front().map_or(0, |e| e.log_id.index);
        let (tx, rx) = std_mpsc::channel();
        let inner = Arc::new(Inner {
            cache: Mutex::new(Cache {
                first_index,
                entries,
                meta: log_meta,
                vote,
            }),
            writer: Mutex::new(tx),
            room_bytes: AtomicU64::new(wal.room_bytes()),
            spares: AtomicUsize::new(wal.spare_count()),
            disk_full: AtomicBool::new(false),
            failed: AtomicBool::new(false),
        });
        let writer_inner = inner.clone();
        std::thread::Builder::new()
            .name("roost-wal".into())
            .spawn({
                let fs = fs.clone();
                move || run_writer(wal, fs, rx, writer_inner)
            })
            .map_err(|e| DiskError::io("starting the log writer", dir, e))?;
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

    fn send(&self, cmd: WriterCmd) -> Result<(), StorageError> {
        self.inner
            .writer
            .lock()
            .map_err(|_| io_error("log writer lock poisoned"))?
            .send(cmd)
            .map_err(|_| io_error("log writer stopped"))
    }

    async fn ask(&self, make: impl FnOnce(Done) -> WriterCmd) -> Result<(), StorageError> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx))?;
        rx.await
            .map_err(|_| io_error("log writer stopped"))?
            .map_err(io_error)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.inner.cache.lock().expect("log cache lock poisoned")
    }

    async fn write_meta(&self, meta: &LogMeta) -> Result<(), StorageError> {
        let bytes = postcard::to_allocvec(meta).map_err(io_error)?;
        self.ask(|done| WriterCmd::WriteMeta {
            name: LOG_META_FILE,
            bytes,
            done,
        })
        .await
    }

    fn push_entries(&self, entries: Vec<RaftEntry>, flushed: Flushed) -> Result<(), StorageError> {
        let mut records = Vec::with_capacity(entries.len());
        for entry in &entries {
            let payload = postcard::to_allocvec(entry).map_err(io_error)?;
            records.push((
                entry.log_id.index,
                entry.log_id.leader_id.term,
                Bytes::from(payload),
            ));
        }
        {
            let mut cache = self.cache();
            for entry in entries {
                if cache.entries.is_empty() {
                    cache.first_index = entry.log_id.index;
                }
                cache.entries.push_back(entry);
            }
        }
        self.send(WriterCmd::Append { records, flushed })
    }
}

fn run_writer(
    mut wal: Wal,
    fs: Arc<dyn FileSystem>,
    rx: std_mpsc::Receiver<WriterCmd>,
    inner: Arc<Inner>,
) {
    let dir = wal.dir().to_path_buf();
    while let Ok(cmd) = rx.recv() {
        if inner.failed.load(Ordering::Relaxed) {
            // After a failed write nothing more may reach the disk.
            match cmd {
                WriterCmd::Append { flushed, .. } => {
                    flushed.complete(Err(DiskError::Invariant("log failed earlier".into())))
                }
                WriterCmd::Truncate { done, .. }
                | WriterCmd::Purge { done, .. }
                | WriterCmd::Clear { done }
                | WriterCmd::WriteMeta { done, .. } => {
                    let _ = done.send(Err(DiskError::Invariant("log failed earlier".into())));
                }
                WriterCmd::AddSpare(_) => {}
            }
            continue;
        }
        match cmd {
            WriterCmd::Append { records, flushed } => {
                let refs: Vec<(u64, u64, &[u8])> = records
                    .iter()
                    .map(|(i, t, p)| (*i, *t, p.as_ref()))
                    .collect();
                let result = wal.append(&refs).and_then(|()| wal.sync());
                if let Err(e) = &result {
                    error!("log write failed: {e}");
                    inner.failed.store(true, Ordering::Relaxed);
                }
                flushed.complete(result);
            }
            WriterCmd::Truncate { from, done } => {
                let _ = done.send(fail_on_error(&inner, wal.truncate_from(from)));
            }
            WriterCmd::Purge { upto, done } => {
                let result = if wal.last_index().is_some_and(|last| last <= upto) {
                    wal.clear()
                } else {
                    wal.purge_through(upto)
                };
                let _ = done.send(fail_on_error(&inner, result));
            }
            WriterCmd::Clear { done } => {
                let _ = done.send(fail_on_error(&inner, wal.clear()));
            }
            WriterCmd::WriteMeta { name, bytes, done } => {
                let _ = done.send(fail_on_error(
                    &inner,
                    meta::write_atomic(&*fs, &dir, name, &bytes),
                ));
            }
            WriterCmd::AddSpare(path) => wal.add_spare(path),
        }
        inner.room_bytes.store(wal.room_bytes(), Ordering::Relaxed);
        inner.spares.store(wal.spare_count(), Ordering::Relaxed);
    }
}

fn fail_on_error(inner: &Inner, result: Result<(), DiskError>) -> Result<(), DiskError> {
    if let Err(e) = &result {
        if !e.is_disk_full() {
            error!("log write failed: {e}");
            inner.failed.store(true, Ordering::Relaxed);
        }
    }
    result
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
                    inner.spares.fetch_add(1, Ordering::Relaxed);
                    let sender = inner.writer.lock().ok().map(|w| w.clone());
                    if sender.is_none_or(|s| s.send(WriterCmd::AddSpare(path)).is_err()) {
                        return;
                    }
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
        Ok(cache.entries.range(from..=to).cloned().collect())
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
        self.ask(|done| WriterCmd::WriteMeta {
            name: VOTE_FILE,
            bytes,
            done,
        })
        .await
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
        self.push_entries(entries.into_iter().collect(), Flushed::Raft(callback))
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
        self.ask(|done| WriterCmd::Truncate {
            from: log_id.index,
            done,
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let new_meta = {
            let mut cache = self.cache();
            while cache
                .entries
                .front()
                .is_some_and(|e| e.log_id.index <= log_id.index)
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
            self.write_meta(&meta).await?;
        }
        self.ask(|done| WriterCmd::Purge {
            upto: log_id.index,
            done,
        })
        .await
    }
}

impl LogStore {
    /// Drops the whole log (a snapshot from the leader replaces it).
    pub async fn clear(&self) -> Result<(), StorageError> {
        self.cache().entries.clear();
        self.ask(|done| WriterCmd::Clear { done }).await
    }

    /// Reads entries (tests and tools).
    pub fn entries_in(
        &self,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Vec<RaftEntry>, StorageError> {
        let cache = self.cache();
        Ok(cache
            .entries
            .iter()
            .filter(|e| range.contains(&e.log_id.index))
            .cloned()
            .collect())
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
