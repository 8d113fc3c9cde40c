//! openraft's log store over the write-ahead log of `roost-storage`.
//!
//! Every disk write — appends, truncations, purges and the vote file — goes
//! to one writer thread, in the order openraft makes them (openraft requires
//! vote and log IO to be serialized). `append` returns at once: the entries
//! are readable from memory, and the writer calls back once they are durable.
//! The writer syncs everything it wrote since its last sync together (group
//! commit across appends), with the log released, so a slow disk delays
//! durability but never raft's core task, heartbeats or readers.
//! `save_vote` and `truncate` wait for their write to be done.
//!
//! Recent entries are kept in memory up to `log_cache_bytes_max`; older ones
//! (and, after a restart, all but the newest) are read back from the WAL.
//! Only entries the writer has written are ever dropped from memory.
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
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{EntryPayload, OptionalSend, RaftLogReader, StorageIOError};
use roost_storage::{
    meta, preallocate_spare, FileSystem, StorageError as DiskError, Wal, WalOptions,
};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use crate::bounds::Bounds;
use crate::types::{entry_wire_bytes, LogId, RaftEntry, StorageError, TypeConfig, Vote};

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

/// Memory an entry without a batch (blank, membership) is counted as.
const SMALL_ENTRY_BYTES: usize = 256;

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
            Cached::Encoded(log_id, bytes) => decode_entry(log_id.index, bytes),
        }
    }

    /// Memory held, as counted against the cache's bound.
    fn bytes(&self) -> usize {
        match self {
            Cached::Decoded(entry) => match &entry.payload {
                EntryPayload::Normal(batch) => batch.memory_bytes() + SMALL_ENTRY_BYTES,
                _ => SMALL_ENTRY_BYTES,
            },
            Cached::Encoded(_, bytes) => bytes.len() + SMALL_ENTRY_BYTES,
        }
    }
}

fn decode_entry(index: u64, bytes: &[u8]) -> Result<RaftEntry, StorageError> {
    postcard::from_bytes(bytes).map_err(|e| {
        StorageIOError::read_log_at_index(index, openraft::AnyError::error(e.to_string())).into()
    })
}

struct Cache {
    /// Index of `entries[0]` (meaningful only when non-empty).
    first_index: u64,
    entries: VecDeque<Cached>,
    /// Sum of `Cached::bytes` over `entries`.
    bytes: usize,
    bytes_max: usize,
    meta: LogMeta,
    vote: Option<Vote>,
}

impl Cache {
    /// The last entry is always cached while the log holds any.
    fn last_log_id(&self) -> Option<LogId> {
        self.entries
            .back()
            .map(Cached::log_id)
            .or(self.meta.last_purged)
    }

    fn push(&mut self, entry: Cached) {
        if self.entries.is_empty() {
            self.first_index = entry.log_id().index;
        }
        self.bytes += entry.bytes();
        self.entries.push_back(entry);
    }

    fn pop_front(&mut self) {
        if let Some(old) = self.entries.pop_front() {
            self.bytes -= old.bytes();
            self.first_index += 1;
        }
    }

    /// Drops the oldest entries beyond the bound, if the WAL holds them.
    fn evict(&mut self, written_index: Option<u64>) {
        while self.bytes > self.bytes_max
            && self.entries.len() > 1
            && written_index.is_some_and(|w| self.first_index <= w)
        {
            self.pop_front();
        }
    }

    /// Drops the entries up to `index` that the WAL holds, keeping the last.
    fn trim_through(&mut self, index: u64, written_index: Option<u64>) {
        while self.entries.len() > 1
            && self.first_index <= index
            && written_index.is_some_and(|w| self.first_index <= w)
        {
            self.pop_front();
        }
    }

    /// Drops entries from index `from` on.
    fn truncate(&mut self, from: u64) {
        while self
            .entries
            .back()
            .is_some_and(|e| e.log_id().index >= from)
        {
            if let Some(old) = self.entries.pop_back() {
                self.bytes -= old.bytes();
            }
        }
    }
}

/// A write for the writer thread, in openraft's order.
enum Write {
    Append {
        records: Vec<RaftEntry>,
        callback: LogFlushed<TypeConfig>,
    },
    Truncate {
        from: u64,
        done: oneshot::Sender<Result<(), DiskError>>,
    },
    Purge {
        upto: u64,
        meta: Option<Vec<u8>>,
    },
    Vote {
        bytes: Vec<u8>,
        done: oneshot::Sender<Result<(), DiskError>>,
    },
}

/// What the writer, the preallocator and the store share.
struct Disk {
    wal: Mutex<Wal>,
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    /// Bytes appendable without allocating (active segment + spares).
    room_bytes: AtomicU64,
    spares: AtomicUsize,
    disk_full: AtomicBool,
    /// Set once a write failed: the log refuses to go on.
    failed: AtomicBool,
    /// Index of the last entry written to the WAL (not necessarily synced),
    /// plus one; 0 for none.
    written_next: AtomicU64,
}

impl Disk {
    fn wal(&self) -> std::sync::MutexGuard<'_, Wal> {
        self.wal.lock().expect("wal lock poisoned")
    }

    fn written_index(&self) -> Option<u64> {
        self.written_next.load(Ordering::Acquire).checked_sub(1)
    }

    /// Runs one write against the WAL. A failure other than a full disk
    /// marks the log failed for good.
    fn write<T>(
        &self,
        write: impl FnOnce(&mut Wal) -> Result<T, DiskError>,
    ) -> Result<T, DiskError> {
        if self.failed.load(Ordering::Relaxed) {
            return Err(DiskError::Invariant("the log failed earlier".into()));
        }
        let result = {
            let mut wal = self.wal();
            let result = write(&mut wal);
            self.room_bytes.store(wal.room_bytes(), Ordering::Relaxed);
            self.spares.store(wal.spare_count(), Ordering::Relaxed);
            self.written_next
                .store(wal.last_index().map_or(0, |i| i + 1), Ordering::Release);
            result
        };
        self.note_failure(&result);
        result
    }

    fn note_failure<T>(&self, result: &Result<T, DiskError>) {
        if let Err(e) = result {
            if !e.is_disk_full() && !self.failed.swap(true, Ordering::Relaxed) {
                error!("log write failed: {e}");
            }
        }
    }

    /// Makes everything written so far durable, syncing with the WAL released.
    fn sync(&self) -> Result<(), DiskError> {
        if self.failed.load(Ordering::Relaxed) {
            return Err(DiskError::Invariant("the log failed earlier".into()));
        }
        let unsynced = self.wal().take_unsynced();
        let result = unsynced.iter().try_for_each(|segment| segment.sync());
        self.note_failure(&result);
        result
    }
}

/// The log store handed to openraft (cheap to clone).
#[derive(Clone)]
pub(crate) struct LogStore {
    inner: Arc<Inner>,
}

struct Inner {
    cache: Mutex<Cache>,
    disk: Arc<Disk>,
    writer: Mutex<mpsc::Sender<Write>>,
    /// Entries one AppendEntries carries at most.
    replication_bytes_max: usize,
}

fn io_error(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_logs(openraft::AnyError::error(e.to_string())).into()
}

impl LogStore {
    /// Opens the log in `dir`: recovers the WAL, the vote and the purge point,
    /// keeps the newest entries (up to `cache_bytes_max`) in memory, and
    /// starts the writer and preallocator threads.
    pub(crate) fn open(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        options: WalOptions,
        bounds: &Bounds,
    ) -> Result<LogStore, DiskError> {
        let segment_bytes = options.segment_bytes;
        let cache_bytes_max = bounds.log_cache_bytes_max;
        let options = WalOptions {
            recovered_bytes_max: cache_bytes_max as u64,
            ..options
        };
        let (mut wal, records) = Wal::open(fs.clone(), dir, options)?;
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
        if let (Some(purged), Some(last)) = (purged_index, wal.last_index()) {
            if last <= purged {
                // A crash between persisting the purge point and clearing the
                // log (a snapshot replaced it): finish the clear, or the next
                // append, at purged + 1, would leave a hole after `last`.
                wal.clear()?;
            }
        }
        let mut cache = Cache {
            first_index: 0,
            entries: VecDeque::with_capacity(records.len()),
            bytes: 0,
            bytes_max: cache_bytes_max,
            meta: log_meta,
            vote,
        };
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
            cache.push(Cached::Encoded(prefix.log_id, record.payload));
        }
        let disk = Arc::new(Disk {
            room_bytes: AtomicU64::new(wal.room_bytes()),
            spares: AtomicUsize::new(wal.spare_count()),
            written_next: AtomicU64::new(wal.last_index().map_or(0, |i| i + 1)),
            wal: Mutex::new(wal),
            fs: fs.clone(),
            dir: dir.to_path_buf(),
            disk_full: AtomicBool::new(false),
            failed: AtomicBool::new(false),
        });
        let (writer, writes) = mpsc::channel();
        let writer_disk = disk.clone();
        std::thread::Builder::new()
            .name("roost-log-writer".into())
            .spawn(move || run_writer(&writer_disk, writes))
            .map_err(|e| DiskError::io("starting the log writer", dir, e))?;
        let prealloc_disk = Arc::downgrade(&disk);
        let prealloc_dir = dir.to_path_buf();
        std::thread::Builder::new()
            .name("roost-prealloc".into())
            .spawn(move || run_preallocator(prealloc_disk, fs, prealloc_dir, segment_bytes))
            .map_err(|e| DiskError::io("starting the preallocator", dir, e))?;
        Ok(LogStore {
            inner: Arc::new(Inner {
                cache: Mutex::new(cache),
                disk,
                writer: Mutex::new(writer),
                replication_bytes_max: bounds.replication_bytes_max,
            }),
        })
    }

    /// Bytes that can be appended now without allocating disk space.
    pub(crate) fn room_bytes(&self) -> u64 {
        self.inner.disk.room_bytes.load(Ordering::Relaxed)
    }

    /// True while spare segments cannot be preallocated for lack of space.
    pub(crate) fn disk_full(&self) -> bool {
        self.inner.disk.disk_full.load(Ordering::Relaxed)
    }

    /// True once a write to the log failed; the server must stop.
    pub(crate) fn failed(&self) -> bool {
        self.inner.disk.failed.load(Ordering::Relaxed)
    }

    /// Lets the entries a snapshot covers (up to `index`) leave memory: only
    /// a lagging follower still needs them, and it reads them from the WAL.
    pub(crate) fn trim_cache_through(&self, index: u64) {
        let written = self.inner.disk.written_index();
        self.cache().trim_through(index, written);
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.inner.cache.lock().expect("log cache lock poisoned")
    }

    fn send(&self, write: Write) -> Result<(), DiskError> {
        self.inner
            .writer
            .lock()
            .expect("writer lock poisoned")
            .send(write)
            .map_err(|_| DiskError::Invariant("the log writer stopped".into()))
    }

    /// Sends a write and waits until the writer has done it.
    async fn send_and_wait(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), DiskError>>) -> Write,
    ) -> Result<(), DiskError> {
        let (done, outcome) = oneshot::channel();
        self.send(make(done))?;
        outcome
            .await
            .unwrap_or_else(|_| Err(DiskError::Invariant("the log writer stopped".into())))
    }

    /// The entry at `index`, from memory or the WAL; `None` if the log does
    /// not hold it (purged, or beyond its end).
    pub(crate) fn entry_at(&self, index: u64) -> Result<Option<RaftEntry>, DiskError> {
        let cache = self.cache();
        if !cache.entries.is_empty() && index >= cache.first_index {
            return cache
                .entries
                .get((index - cache.first_index) as usize)
                .map(|cached| {
                    cached
                        .entry()
                        .map_err(|e| DiskError::corrupt(&self.inner.disk.dir, index, e.to_string()))
                })
                .transpose();
        }
        drop(cache);
        let wal = self.inner.disk.wal();
        let Some(first) = wal.first_index() else {
            return Ok(None);
        };
        if index < first || wal.last_index().is_none_or(|last| index > last) {
            return Ok(None);
        }
        let record = wal.read(index)?;
        decode_entry(index, &record.payload)
            .map(Some)
            .map_err(|e| DiskError::corrupt(&self.inner.disk.dir, index, e.to_string()))
    }

    /// Index up to which the log was purged (covered by a snapshot).
    pub(crate) fn purged_index(&self) -> Option<u64> {
        self.cache().meta.last_purged.map(|l| l.index)
    }

    /// Whether raft ever saved a vote here.
    pub(crate) fn has_vote(&self) -> bool {
        self.cache().vote.is_some()
    }

    /// Index of the last entry (or of the purge point when the log is empty).
    pub(crate) fn last_index(&self) -> Option<u64> {
        self.cache().last_log_id().map(|l| l.index)
    }
}

/// Appends written before their sync: the pump keeps two batches in flight,
/// and waiting for more would only delay the first one's callback.
const APPENDS_PER_SYNC_MAX: usize = 2;

/// The writer thread: does writes in order; after each run of appends, one
/// sync makes them all durable, then their callbacks fire.
fn run_writer(disk: &Disk, writes: mpsc::Receiver<Write>) {
    let mut flushed: Vec<LogFlushed<TypeConfig>> = Vec::new();
    let flush = |flushed: &mut Vec<LogFlushed<TypeConfig>>| {
        if flushed.is_empty() {
            return;
        }
        let result = disk.sync();
        for callback in flushed.drain(..) {
            callback.log_io_completed(
                result
                    .as_ref()
                    .map(|_| ())
                    .map_err(|e| std::io::Error::other(e.to_string())),
            );
        }
    };
    while let Ok(first) = writes.recv() {
        let mut next = Some(first);
        while let Some(write) = next.take() {
            match write {
                Write::Append { records, callback } => match append_entries(disk, &records) {
                    Ok(()) => flushed.push(callback),
                    Err(e) => {
                        flush(&mut flushed);
                        callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                    }
                },
                Write::Truncate { from, done } => {
                    flush(&mut flushed);
                    let _ = done.send(disk.write(|wal| wal.truncate_from(from)));
                }
                Write::Purge { upto, meta } => {
                    flush(&mut flushed);
                    let purged = meta
                        .map_or(Ok(()), |bytes| {
                            disk.write(|_| {
                                meta::write_atomic(&*disk.fs, &disk.dir, LOG_META_FILE, &bytes)
                            })
                        })
                        .and_then(|()| {
                            disk.write(|wal| {
                                if wal.last_index().is_some_and(|last| last <= upto) {
                                    wal.clear()
                                } else {
                                    wal.purge_through(upto)
                                }
                            })
                        });
                    if let Err(e) = purged {
                        warn!("purging the log up to {upto} failed: {e}");
                    }
                }
                Write::Vote { bytes, done } => {
                    flush(&mut flushed);
                    let _ =
                        done.send(disk.write(|_| {
                            meta::write_atomic(&*disk.fs, &disk.dir, VOTE_FILE, &bytes)
                        }));
                }
            }
            // Take whatever else is already queued before syncing.
            if flushed.len() < APPENDS_PER_SYNC_MAX {
                next = writes.try_recv().ok();
            }
        }
        flush(&mut flushed);
    }
}

/// Encodes and writes entries (not yet synced).
fn append_entries(disk: &Disk, entries: &[RaftEntry]) -> Result<(), DiskError> {
    let mut records = Vec::with_capacity(entries.len());
    for entry in entries {
        let payload = postcard::to_allocvec(entry)
            .map_err(|e| DiskError::Invariant(format!("encoding a log entry: {e}")))?;
        records.push((entry.log_id.index, entry.log_id.leader_id.term, payload));
    }
    let refs: Vec<(u64, u64, &[u8])> = records
        .iter()
        .map(|(i, t, p)| (*i, *t, p.as_slice()))
        .collect();
    disk.write(|wal| wal.append(&refs))
}

/// Keeps `SPARES_WANTED` zero-filled segments ready. When the disk is full it
/// says so (writes are then refused before they reach the log) and retries
/// until space is back.
fn run_preallocator(
    disk: std::sync::Weak<Disk>,
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    segment_bytes: u64,
) {
    let mut seq = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    loop {
        let Some(disk) = disk.upgrade() else {
            return;
        };
        if disk.failed.load(Ordering::Relaxed) {
            return;
        }
        let wanted = disk.spares.load(Ordering::Relaxed) < SPARES_WANTED;
        let mut pause = Duration::from_millis(100);
        if wanted {
            seq += 1;
            match preallocate_spare(&*fs, &dir, seq, segment_bytes) {
                Ok(path) => {
                    if disk.disk_full.swap(false, Ordering::Relaxed) {
                        info!("disk space is back: writes are accepted again");
                    }
                    let mut wal = disk.wal();
                    wal.add_spare(path);
                    disk.room_bytes.store(wal.room_bytes(), Ordering::Relaxed);
                    disk.spares.store(wal.spare_count(), Ordering::Relaxed);
                    pause = Duration::ZERO;
                }
                Err(e) if e.is_disk_full() => {
                    if !disk.disk_full.swap(true, Ordering::Relaxed) {
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
        drop(disk);
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
}

impl LogStore {
    /// Entries from `start` through `end` (clamped to the log), in order,
    /// stopping once they exceed `bytes_max` (at least one is returned). The
    /// ones still in memory are copied out first; the rest are read from the
    /// WAL with the cache released, so a slow disk never holds up `append`.
    fn entries_within(
        &self,
        start: Bound<&u64>,
        end: Bound<&u64>,
        bytes_max: usize,
    ) -> Result<Vec<RaftEntry>, StorageError> {
        let (on_disk, cached) = {
            let cache = self.cache();
            let Some(last) = cache.last_log_id().map(|l| l.index) else {
                return Ok(Vec::new());
            };
            let first = cache.meta.last_purged.map_or(0, |p| p.index + 1);
            let start = match start {
                Bound::Included(s) => *s,
                Bound::Excluded(s) => s.saturating_add(1),
                Bound::Unbounded => first,
            }
            .max(first);
            let end = match end {
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
            let cached_from = if cache.entries.is_empty() {
                end + 1
            } else {
                cache.first_index
            };
            let mut cached = Vec::new();
            if end >= cached_from {
                let from = (start.max(cached_from) - cached_from) as usize;
                let to = (end - cached_from) as usize;
                let mut bytes = 0;
                for entry in cache.entries.range(from..=to) {
                    if !cached.is_empty() && bytes > bytes_max {
                        break;
                    }
                    let entry = entry.entry()?;
                    bytes += entry_wire_bytes(&entry);
                    cached.push(entry);
                }
            }
            // The entries before memory come from the WAL.
            let on_disk = (start < cached_from).then(|| (start, end.min(cached_from - 1)));
            (on_disk, cached)
        };
        let mut entries = Vec::new();
        let mut bytes = 0;
        if let Some((from, to)) = on_disk {
            // The log may begin after `from` (it started later than index 0).
            let first = self.inner.disk.wal().first_index().unwrap_or(to + 1);
            for index in from.max(first)..=to {
                if !entries.is_empty() && bytes > bytes_max {
                    // The budget is spent before memory: stop here.
                    return Ok(entries);
                }
                let entry = self.read_from_disk(index)?;
                bytes += entry_wire_bytes(&entry);
                entries.push(entry);
            }
        }
        // Everything before memory was read: what memory held follows.
        for entry in cached {
            if !entries.is_empty() && bytes > bytes_max {
                break;
            }
            bytes += entry_wire_bytes(&entry);
            entries.push(entry);
        }
        Ok(entries)
    }

    /// Reads an entry no longer in memory back from the WAL. Every entry
    /// after the purge point and before memory is there: one missing is a
    /// broken invariant, reported rather than skipped (a gap would be worse).
    fn read_from_disk(&self, index: u64) -> Result<RaftEntry, StorageError> {
        let record = self.inner.disk.wal().read(index).map_err(|e| {
            StorageError::from(StorageIOError::read_log_at_index(
                index,
                openraft::AnyError::error(e.to_string()),
            ))
        })?;
        decode_entry(index, &record.payload)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<RaftEntry>, StorageError> {
        self.entries_within(range.start_bound(), range.end_bound(), usize::MAX)
    }

    /// What one AppendEntries carries: at most `replication_bytes_max` of
    /// entries, so replication never reads far more than it sends.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<RaftEntry>, StorageError> {
        let bytes_max = self.inner.replication_bytes_max;
        self.entries_within(Bound::Included(&start), Bound::Excluded(&end), bytes_max)
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
        self.send_and_wait(|done| Write::Vote { bytes, done })
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
        let entries: Vec<RaftEntry> = entries.into_iter().collect();
        {
            let mut cache = self.cache();
            for entry in &entries {
                cache.push(Cached::Decoded(entry.clone()));
            }
            cache.evict(self.inner.disk.written_index());
        }
        self.send(Write::Append {
            records: entries,
            callback,
        })
        .map_err(io_error)
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let from = log_id.index;
        let reload = {
            let mut cache = self.cache();
            cache.truncate(from);
            // The last entry must stay in memory: bring it back if only the
            // WAL still holds it.
            let purged = cache.meta.last_purged.map(|p| p.index);
            (cache.entries.is_empty() && from > 0 && purged.is_none_or(|p| p < from - 1))
                .then(|| from - 1)
        };
        self.send_and_wait(|done| Write::Truncate { from, done })
            .await
            .map_err(io_error)?;
        if let Some(index) = reload {
            let record = self.inner.disk.wal().read(index).map_err(io_error)?;
            let entry = decode_entry(index, &record.payload)?;
            let mut cache = self.cache();
            if cache.entries.is_empty() {
                cache.push(Cached::Decoded(entry));
            }
        }
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let meta = {
            let mut cache = self.cache();
            while cache
                .entries
                .front()
                .is_some_and(|e| e.log_id().index <= log_id.index)
            {
                cache.pop_front();
            }
            if cache
                .meta
                .last_purged
                .is_some_and(|p| p.index >= log_id.index)
            {
                None
            } else {
                cache.meta.last_purged = Some(log_id);
                Some(postcard::to_allocvec(&cache.meta).map_err(io_error)?)
            }
        };
        // The writer persists the purge point before any segment goes.
        self.send(Write::Purge {
            upto: log_id.index,
            meta,
        })
        .map_err(io_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::storage::RaftLogStorageExt;
    use openraft::testing::blank_ent;
    use roost_storage::StdFs;

    fn open(dir: &Path) -> LogStore {
        LogStore::open(
            Arc::new(StdFs),
            dir,
            WalOptions::default(),
            &Bounds::default(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_crash_between_the_purge_point_and_clearing_the_log_is_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        let entries: Vec<RaftEntry> = (1..=5).map(|i| blank_ent::<TypeConfig>(1, 1, i)).collect();
        log.blocking_append(entries).await.unwrap();
        drop(log);
        // A snapshot at index 10 replaced the log: the purge point became
        // durable, then the process died before the segments went.
        let purged = blank_ent::<TypeConfig>(1, 1, 10).log_id;
        let meta = postcard::to_allocvec(&LogMeta {
            last_purged: Some(purged),
        })
        .unwrap();
        meta::write_atomic(&StdFs, dir.path(), LOG_META_FILE, &meta).unwrap();
        let mut log = open(dir.path());
        assert_eq!(log.last_index(), Some(10));
        log.blocking_append([blank_ent::<TypeConfig>(1, 1, 11)])
            .await
            .unwrap();
        drop(log);
        let mut log = open(dir.path());
        assert_eq!(log.last_index(), Some(11));
        let read = log.try_get_log_entries(11..12).await.unwrap();
        assert_eq!(read[0].log_id.index, 11);
    }

    #[tokio::test]
    async fn entries_a_snapshot_covers_leave_the_cache_and_are_read_from_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        let entries: Vec<RaftEntry> = (1..=20).map(|i| blank_ent::<TypeConfig>(1, 1, i)).collect();
        log.blocking_append(entries).await.unwrap();
        assert_eq!(log.cache().entries.len(), 20);
        log.trim_cache_through(15);
        let cache_first = log.cache().first_index;
        assert_eq!((log.cache().entries.len(), cache_first), (5, 16));
        // Beyond the last entry: the last one stays, so the log's end is known.
        log.trim_cache_through(100);
        assert_eq!(log.cache().entries.len(), 1);
        assert_eq!(log.last_index(), Some(20));
        let read = log.try_get_log_entries(3..21).await.unwrap();
        let indexes: Vec<u64> = read.iter().map(|e| e.log_id.index).collect();
        assert_eq!(indexes, (3..=20).collect::<Vec<u64>>());
    }
}
