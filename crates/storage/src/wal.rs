//! The write-ahead log: records in preallocated segment files.
//!
//! Layout: `dir/wal-<first index, 20 digits>.log`, each starting with a
//! 16-byte header (`RWAL`, version, first index), then records:
//! `[payload length u32][crc32c u32][index u64][term u64][payload]`, little
//! endian, the checksum covering index, term and payload. Segments are filled
//! with zeros in advance (spare files), so appending never allocates blocks and
//! a zero length marks the end of the data.
//!
//! Invariants:
//! - record indexes are consecutive across the whole log (no holes);
//! - a record holds at most `record_bytes_max` payload bytes, and at most
//!   `batch_bytes_max` bytes are written between two syncs: a larger
//!   `append` is split into parts, each synced before the next is written,
//!   so a torn write never reaches further than one batch;
//! - every record of one part lands in one segment, written by one call;
//!   `sync` makes everything appended so far durable with one `sync_data`
//!   per touched segment (group commit happens in the caller, which batches);
//!   [`Wal::take_unsynced`] lets the caller run those syncs without holding
//!   the log, so readers are not kept waiting behind a slow disk;
//! - a failed `sync_data` is never retried: the error is returned and the
//!   log must not be used again.
//!
//! Recovery (`open`): a bad record in the last segment whose following bytes
//! are zero beyond one batch is a torn write of the unsynced last batch: it is
//! cut off and logged. A bad record anywhere else is corruption: `open` fails
//! naming the file and offset. Recovery checks every record but hands back
//! only the newest ones, up to `recovered_bytes_max`; older ones are read
//! with [`Wal::read`] when needed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tracing::{info, warn};

use crate::error::StorageError;
use crate::fs::{FileSystem, StorageFile};

const SEGMENT_MAGIC: &[u8; 4] = b"RWAL";
const SEGMENT_VERSION: u32 = 1;
const SEGMENT_HEADER_BYTES: u64 = 16;
const RECORD_HEADER_BYTES: u64 = 24;
/// Zeros written per call while preallocating.
const ZERO_CHUNK_BYTES: usize = 1 << 20;

/// Sizes and policies of a log.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// Bytes per segment file.
    pub segment_bytes: u64,
    /// Largest payload accepted in one record by `append`. Recovery accepts
    /// any record that fits its segment, so lowering this bound never turns
    /// an existing log into a corrupt one.
    pub record_bytes_max: u32,
    /// Most bytes written between two syncs; bounds how far a torn write
    /// reaches. At least one record's worth (`record_bytes_max` plus header).
    pub batch_bytes_max: u64,
    /// Payload bytes of the newest records `open` returns (at least the last one).
    pub recovered_bytes_max: u64,
    /// `forceSync`: when false, `sync` does nothing (acknowledged writes may be lost).
    pub force_sync: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: 64 << 20,
            record_bytes_max: 16 << 20,
            batch_bytes_max: 32 << 20,
            recovered_bytes_max: 64 << 20,
            force_sync: true,
        }
    }
}

/// A segment written since its last sync, to be synced by the caller with
/// the log released ([`Wal::take_unsynced`]).
pub struct UnsyncedSegment {
    path: PathBuf,
    file: Arc<dyn StorageFile>,
    force_sync: bool,
}

impl UnsyncedSegment {
    /// Makes the segment's writes durable. An error is fatal for the log.
    pub fn sync(&self) -> Result<(), StorageError> {
        if !self.force_sync {
            return Ok(());
        }
        self.file.sync_data().map_err(|e| StorageError::SyncFailed {
            path: self.path.clone(),
            source: e,
        })
    }
}

/// One record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub index: u64,
    pub term: u64,
    pub payload: Bytes,
}

struct Segment {
    path: PathBuf,
    file: Arc<dyn StorageFile>,
    first_index: u64,
    /// Offset of each record; record `k` has index `first_index + k`.
    offsets: Vec<u64>,
    /// Where the next record goes.
    end: u64,
    capacity: u64,
    /// Written since the last sync.
    dirty: bool,
}

impl Segment {
    fn last_index(&self) -> Option<u64> {
        (!self.offsets.is_empty()).then(|| self.first_index + self.offsets.len() as u64 - 1)
    }
}

/// The log. Not thread-safe: one writer owns it.
pub struct Wal {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    options: WalOptions,
    segments: Vec<Segment>,
    /// Preallocated zero-filled files waiting to become segments.
    spares: Vec<PathBuf>,
    /// Bytes written since the last sync (at most `batch_bytes_max`).
    unsynced_bytes: u64,
}

fn segment_name(first_index: u64) -> String {
    format!("wal-{first_index:020}.log")
}

fn parse_segment_name(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    name.strip_prefix("wal-")?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

fn is_spare(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("spare-") && n.ends_with(".log"))
}

fn encode_header(first_index: u64) -> [u8; SEGMENT_HEADER_BYTES as usize] {
    let mut header = [0u8; SEGMENT_HEADER_BYTES as usize];
    header[..4].copy_from_slice(SEGMENT_MAGIC);
    header[4..8].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    header[8..16].copy_from_slice(&first_index.to_le_bytes());
    header
}

fn record_crc(index: u64, term: u64, payload: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&index.to_le_bytes());
    let crc = crc32c::crc32c_append(crc, &term.to_le_bytes());
    crc32c::crc32c_append(crc, payload)
}

/// The newest records seen while recovering, within a byte budget.
struct RecoveredTail {
    records: std::collections::VecDeque<Record>,
    payload_bytes: u64,
    bytes_max: u64,
    last_index: Option<u64>,
    count: u64,
}

impl RecoveredTail {
    fn new(bytes_max: u64) -> Self {
        RecoveredTail {
            records: Default::default(),
            payload_bytes: 0,
            bytes_max,
            last_index: None,
            count: 0,
        }
    }

    /// Keeps `record`, dropping the oldest kept ones beyond the budget (the
    /// newest is always kept).
    fn push(&mut self, record: Record) {
        self.last_index = Some(record.index);
        self.count += 1;
        self.payload_bytes += record.payload.len() as u64;
        self.records.push_back(record);
        while self.payload_bytes > self.bytes_max && self.records.len() > 1 {
            if let Some(old) = self.records.pop_front() {
                self.payload_bytes -= old.payload.len() as u64;
            }
        }
    }
}

/// Why a record could not be read at some offset.
enum BadRecord {
    /// Zero length: the end of the written data.
    End,
    Invalid(String),
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

/// Parses the record at `pos` of a segment's bytes. Any length that fits the
/// segment is accepted: the checksum decides.
fn parse_record(buf: &[u8], pos: usize) -> Result<(Record, usize), BadRecord> {
    let header_end = pos + RECORD_HEADER_BYTES as usize;
    if header_end > buf.len() {
        return if buf[pos..].iter().all(|b| *b == 0) {
            Err(BadRecord::End)
        } else {
            Err(BadRecord::Invalid("record header cut short".into()))
        };
    }
    let len = u32_at(buf, pos);
    if len == 0 {
        return if buf[pos..header_end].iter().all(|b| *b == 0) {
            Err(BadRecord::End)
        } else {
            Err(BadRecord::Invalid(
                "zero length with a non-zero header".into(),
            ))
        };
    }
    let end = header_end.saturating_add(len as usize);
    if end > buf.len() {
        return Err(BadRecord::Invalid(
            "record runs past the end of the file".into(),
        ));
    }
    let crc = u32_at(buf, pos + 4);
    let index = u64_at(buf, pos + 8);
    let term = u64_at(buf, pos + 16);
    let payload = &buf[header_end..end];
    if record_crc(index, term, payload) != crc {
        return Err(BadRecord::Invalid("checksum mismatch".into()));
    }
    Ok((
        Record {
            index,
            term,
            payload: Bytes::copy_from_slice(payload),
        },
        end,
    ))
}

impl Wal {
    /// Opens (or creates) the log in `dir`, recovering every valid record.
    pub fn open(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        options: WalOptions,
    ) -> Result<(Wal, Vec<Record>), StorageError> {
        fs.create_dir_all(dir)
            .map_err(|e| StorageError::io("creating the log directory", dir, e))?;
        let files = fs
            .list(dir)
            .map_err(|e| StorageError::io("listing the log directory", dir, e))?;
        let mut wal = Wal {
            fs,
            dir: dir.to_path_buf(),
            options,
            segments: Vec::new(),
            spares: Vec::new(),
            unsynced_bytes: 0,
        };
        let segment_paths: Vec<(u64, PathBuf)> = files
            .iter()
            .filter_map(|p| parse_segment_name(p).map(|i| (i, p.clone())))
            .collect();
        wal.spares = files.iter().filter(|p| is_spare(p)).cloned().collect();
        for path in files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "tmp"))
        {
            // An interrupted preallocation: never part of the log.
            let _ = wal.fs.remove(path);
        }
        let mut tail = RecoveredTail::new(wal.options.recovered_bytes_max);
        let count = segment_paths.len();
        for (position, (first_index, path)) in segment_paths.into_iter().enumerate() {
            let is_last = position + 1 == count;
            let segment = wal.recover_segment(first_index, &path, is_last, &mut tail)?;
            match segment {
                Some(segment) => wal.segments.push(segment),
                None => {
                    // An activated spare whose header never became durable: empty, drop it.
                    wal.fs
                        .remove(&path)
                        .map_err(|e| StorageError::io("removing an empty segment", &path, e))?;
                }
            }
        }
        info!(
            "log recovered: {} records in {} segments ({} kept in memory), {} spare files",
            tail.count,
            wal.segments.len(),
            tail.records.len(),
            wal.spares.len()
        );
        Ok((wal, tail.records.into()))
    }

    fn recover_segment(
        &mut self,
        first_index: u64,
        path: &Path,
        is_last: bool,
        tail: &mut RecoveredTail,
    ) -> Result<Option<Segment>, StorageError> {
        let file: Arc<dyn StorageFile> = Arc::from(
            self.fs
                .open(path)
                .map_err(|e| StorageError::io("opening a segment", path, e))?,
        );
        let len = file
            .size()
            .map_err(|e| StorageError::io("reading a segment's size", path, e))?;
        let mut buf = vec![0u8; len as usize];
        file.read_at(0, &mut buf)
            .map_err(|e| StorageError::io("reading a segment", path, e))?;
        if buf.len() < SEGMENT_HEADER_BYTES as usize
            || buf[..SEGMENT_HEADER_BYTES as usize].iter().all(|b| *b == 0)
        {
            if is_last && buf.iter().all(|b| *b == 0) {
                return Ok(None);
            }
            return Err(StorageError::corrupt(path, 0, "missing segment header"));
        }
        if &buf[..4] != SEGMENT_MAGIC
            || u32_at(&buf, 4) != SEGMENT_VERSION
            || u64_at(&buf, 8) != first_index
        {
            return Err(StorageError::corrupt(path, 0, "bad segment header"));
        }
        let mut segment = Segment {
            path: path.to_path_buf(),
            file,
            first_index,
            offsets: Vec::new(),
            end: SEGMENT_HEADER_BYTES,
            capacity: len,
            dirty: false,
        };
        let mut pos = SEGMENT_HEADER_BYTES as usize;
        loop {
            match parse_record(&buf, pos) {
                Ok((record, next)) => {
                    let expected = tail.last_index.map(|i| i + 1);
                    let in_segment = first_index + segment.offsets.len() as u64;
                    if record.index != in_segment || expected.is_some_and(|e| e != record.index) {
                        return Err(StorageError::corrupt(
                            path,
                            pos as u64,
                            format!(
                                "record index {} breaks the sequence (expected {})",
                                record.index,
                                expected.unwrap_or(in_segment)
                            ),
                        ));
                    }
                    segment.offsets.push(pos as u64);
                    tail.push(record);
                    pos = next;
                }
                Err(BadRecord::End) => break,
                Err(BadRecord::Invalid(reason)) => {
                    let reach = pos.saturating_add(self.options.batch_bytes_max as usize);
                    let torn = is_last
                        && buf
                            .get(reach..)
                            .is_none_or(|rest| rest.iter().all(|b| *b == 0));
                    if !torn {
                        return Err(StorageError::corrupt(path, pos as u64, reason));
                    }
                    warn!(
                        "{}: torn write at offset {pos} ({reason}); discarding the unsynced tail",
                        path.display()
                    );
                    let zeros = vec![0u8; buf.len().min(reach) - pos];
                    segment
                        .file
                        .write_at(pos as u64, &zeros)
                        .and_then(|()| segment.file.sync_data())
                        .map_err(|e| StorageError::io("cutting a torn tail", path, e))?;
                    break;
                }
            }
        }
        segment.end = pos as u64;
        Ok(Some(segment))
    }

    /// Index of the first record, if any.
    pub fn first_index(&self) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| !s.offsets.is_empty())
            .map(|s| s.first_index)
    }

    /// Index of the last record, if any.
    pub fn last_index(&self) -> Option<u64> {
        self.segments.iter().rev().find_map(Segment::last_index)
    }

    /// Bytes that can be appended without creating a file: what is left in the
    /// active segment plus every spare.
    pub fn room_bytes(&self) -> u64 {
        let active = self
            .segments
            .last()
            .map_or(0, |s| s.capacity.saturating_sub(s.end));
        active + self.spares.len() as u64 * self.options.segment_bytes
    }

    pub fn spare_count(&self) -> usize {
        self.spares.len()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> &WalOptions {
        &self.options
    }

    /// Adds a preallocated file made by [`preallocate_spare`].
    pub fn add_spare(&mut self, path: PathBuf) {
        self.spares.push(path);
    }

    /// Appends records (consecutive, following the last one). Records that
    /// fit in `batch_bytes_max` are written without syncing; a larger append
    /// is written in parts, each synced before the next one starts.
    pub fn append(&mut self, records: &[(u64, u64, &[u8])]) -> Result<(), StorageError> {
        let Some(&(first, _, _)) = records.first() else {
            return Ok(());
        };
        if let Some(last) = self.last_index() {
            if first != last + 1 {
                return Err(StorageError::Invariant(format!(
                    "append at index {first} after {last} would leave a hole"
                )));
            }
        }
        for (k, (index, _, payload)) in records.iter().enumerate() {
            if *index != first + k as u64 {
                return Err(StorageError::Invariant(
                    "records of one append must be consecutive".into(),
                ));
            }
            if payload.is_empty() || payload.len() > self.options.record_bytes_max as usize {
                return Err(StorageError::Invariant(format!(
                    "record of {} bytes (at most {} allowed)",
                    payload.len(),
                    self.options.record_bytes_max
                )));
            }
        }
        let mut start = 0;
        while start < records.len() {
            let mut end = start + 1;
            let mut bytes = RECORD_HEADER_BYTES + records[start].2.len() as u64;
            while let Some((_, _, payload)) = records.get(end) {
                bytes += RECORD_HEADER_BYTES + payload.len() as u64;
                if bytes > self.options.batch_bytes_max {
                    break;
                }
                end += 1;
            }
            self.append_part(&records[start..end])?;
            start = end;
        }
        Ok(())
    }

    /// Writes records (checked by `append`) with one call into one segment.
    fn append_part(&mut self, records: &[(u64, u64, &[u8])]) -> Result<(), StorageError> {
        let first = records[0].0;
        let mut buf = Vec::with_capacity(
            records
                .iter()
                .map(|(_, _, p)| RECORD_HEADER_BYTES as usize + p.len())
                .sum(),
        );
        for (index, term, payload) in records {
            buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            buf.extend_from_slice(&record_crc(*index, *term, payload).to_le_bytes());
            buf.extend_from_slice(&index.to_le_bytes());
            buf.extend_from_slice(&term.to_le_bytes());
            buf.extend_from_slice(payload);
        }
        let needed = buf.len() as u64;
        if self.unsynced_bytes > 0 && self.unsynced_bytes + needed > self.options.batch_bytes_max {
            // Keep what a crash can tear within one batch.
            self.sync()?;
        }
        if self
            .segments
            .last()
            .is_some_and(|s| s.offsets.is_empty() && s.first_index != first)
        {
            // An emptied segment named for another index: start afresh.
            let stale = self.segments.pop().expect("checked above");
            self.fs
                .remove(&stale.path)
                .map_err(|e| StorageError::io("removing an empty segment", &stale.path, e))?;
        }
        let fits = self
            .segments
            .last()
            .is_some_and(|s| s.capacity - s.end >= needed);
        if !fits {
            self.roll_segment(first, needed)?;
        }
        let segment = self.segments.last_mut().expect("a segment after rolling");
        segment
            .file
            .write_at(segment.end, &buf)
            .map_err(|e| StorageError::io("appending to the log", &segment.path, e))?;
        let mut offset = segment.end;
        for (_, _, payload) in records {
            segment.offsets.push(offset);
            offset += RECORD_HEADER_BYTES + payload.len() as u64;
        }
        segment.end = offset;
        segment.dirty = true;
        self.unsynced_bytes += needed;
        Ok(())
    }

    /// Starts a new segment for records from `first_index` on, from a spare
    /// file if one is ready, else by preallocating one now.
    fn roll_segment(&mut self, first_index: u64, needed: u64) -> Result<(), StorageError> {
        self.sync()?;
        let capacity_needed = needed + SEGMENT_HEADER_BYTES;
        let path = self.dir.join(segment_name(first_index));
        let spare = self.spares.pop();
        match spare {
            Some(spare) if self.options.segment_bytes >= capacity_needed => {
                self.fs
                    .rename(&spare, &path)
                    .map_err(|e| StorageError::io("activating a spare segment", &spare, e))?;
            }
            spare => {
                if let Some(spare) = spare {
                    self.spares.push(spare);
                }
                let size = self.options.segment_bytes.max(capacity_needed);
                fill_zeros(&*self.fs, &path, size)?;
            }
        }
        // The name must be durable before data written under it counts.
        self.fs
            .sync_dir(&self.dir)
            .map_err(|e| StorageError::io("syncing the log directory", &self.dir, e))?;
        let file: Arc<dyn StorageFile> = Arc::from(
            self.fs
                .open(&path)
                .map_err(|e| StorageError::io("opening a new segment", &path, e))?,
        );
        let capacity = file
            .size()
            .map_err(|e| StorageError::io("reading a segment's size", &path, e))?;
        file.write_at(0, &encode_header(first_index))
            .map_err(|e| StorageError::io("writing a segment header", &path, e))?;
        self.segments.push(Segment {
            path,
            file,
            first_index,
            offsets: Vec::new(),
            end: SEGMENT_HEADER_BYTES,
            capacity,
            dirty: true,
        });
        Ok(())
    }

    /// The segments written since their last sync, now counted as synced:
    /// the caller must sync every one (and stop using the log if one fails)
    /// before it treats those writes as durable.
    pub fn take_unsynced(&mut self) -> Vec<UnsyncedSegment> {
        self.unsynced_bytes = 0;
        let force_sync = self.options.force_sync;
        self.segments
            .iter_mut()
            .filter(|s| s.dirty)
            .map(|segment| {
                segment.dirty = false;
                UnsyncedSegment {
                    path: segment.path.clone(),
                    file: segment.file.clone(),
                    force_sync,
                }
            })
            .collect()
    }

    /// Reads the record at `index` back from disk, checking it.
    pub fn read(&self, index: u64) -> Result<Record, StorageError> {
        let at = self.segments.partition_point(|s| s.first_index <= index);
        let segment = at
            .checked_sub(1)
            .map(|k| &self.segments[k])
            .filter(|s| s.last_index().is_some_and(|last| index <= last))
            .ok_or_else(|| StorageError::Invariant(format!("no record {index} in the log")))?;
        let offset = segment.offsets[(index - segment.first_index) as usize];
        let mut header = [0u8; RECORD_HEADER_BYTES as usize];
        read_exact_at(&*segment.file, offset, &mut header)
            .map_err(|e| StorageError::io("reading the log", &segment.path, e))?;
        let len = u32_at(&header, 0) as usize;
        let mut payload = vec![0u8; len];
        read_exact_at(&*segment.file, offset + RECORD_HEADER_BYTES, &mut payload)
            .map_err(|e| StorageError::io("reading the log", &segment.path, e))?;
        let (crc, stored_index, term) =
            (u32_at(&header, 4), u64_at(&header, 8), u64_at(&header, 16));
        if stored_index != index || record_crc(stored_index, term, &payload) != crc {
            return Err(StorageError::corrupt(
                &segment.path,
                offset,
                format!("record {index} does not read back"),
            ));
        }
        Ok(Record {
            index,
            term,
            payload: Bytes::from(payload),
        })
    }

    /// Makes every appended record durable. An error here is fatal: the
    /// caller must stop using the log (fsync is never retried).
    pub fn sync(&mut self) -> Result<(), StorageError> {
        self.unsynced_bytes = 0;
        for segment in self.segments.iter_mut().filter(|s| s.dirty) {
            if self.options.force_sync {
                segment
                    .file
                    .sync_data()
                    .map_err(|e| StorageError::SyncFailed {
                        path: segment.path.clone(),
                        source: e,
                    })?;
            }
            segment.dirty = false;
        }
        Ok(())
    }

    /// Removes every record with index `from` or higher, durably.
    pub fn truncate_from(&mut self, from: u64) -> Result<(), StorageError> {
        while let Some(segment) = self.segments.last() {
            if segment.first_index < from
                || (segment.first_index == from && self.segments.len() == 1)
            {
                break;
            }
            let segment = self.segments.pop().expect("checked above");
            self.fs
                .remove(&segment.path)
                .map_err(|e| StorageError::io("removing a truncated segment", &segment.path, e))?;
        }
        self.fs
            .sync_dir(&self.dir)
            .map_err(|e| StorageError::io("syncing the log directory", &self.dir, e))?;
        let Some(segment) = self.segments.last_mut() else {
            return Ok(());
        };
        let keep = from.saturating_sub(segment.first_index) as usize;
        if keep >= segment.offsets.len() {
            return Ok(());
        }
        let cut = segment.offsets[keep];
        let zeros = vec![0u8; (segment.end - cut) as usize];
        segment
            .file
            .write_at(cut, &zeros)
            .map_err(|e| StorageError::io("truncating the log", &segment.path, e))?;
        segment.offsets.truncate(keep);
        segment.end = cut;
        if segment.offsets.is_empty() {
            segment.first_index = from;
            segment
                .file
                .write_at(0, &encode_header(from))
                .map_err(|e| StorageError::io("rewriting a segment header", &segment.path, e))?;
            let path = self.dir.join(segment_name(from));
            if path != segment.path {
                self.fs
                    .rename(&segment.path, &path)
                    .map_err(|e| StorageError::io("renaming a segment", &segment.path, e))?;
                segment.path = path;
                self.fs
                    .sync_dir(&self.dir)
                    .map_err(|e| StorageError::io("syncing the log directory", &self.dir, e))?;
            }
        }
        segment.dirty = true;
        self.sync()
    }

    /// Deletes segments whose records all have index `upto` or lower. The
    /// active segment is kept, so records up to `upto` may remain.
    pub fn purge_through(&mut self, upto: u64) -> Result<(), StorageError> {
        let mut removed = false;
        while self.segments.len() > 1 {
            let last = self.segments[0].last_index();
            if last.is_some_and(|l| l > upto) {
                break;
            }
            let segment = self.segments.remove(0);
            self.fs
                .remove(&segment.path)
                .map_err(|e| StorageError::io("removing a purged segment", &segment.path, e))?;
            removed = true;
        }
        if removed {
            self.fs
                .sync_dir(&self.dir)
                .map_err(|e| StorageError::io("syncing the log directory", &self.dir, e))?;
        }
        Ok(())
    }

    /// Drops every record and segment (used when a snapshot replaces the log).
    pub fn clear(&mut self) -> Result<(), StorageError> {
        for segment in self.segments.drain(..) {
            self.fs
                .remove(&segment.path)
                .map_err(|e| StorageError::io("removing a segment", &segment.path, e))?;
        }
        self.fs
            .sync_dir(&self.dir)
            .map_err(|e| StorageError::io("syncing the log directory", &self.dir, e))
    }
}

fn read_exact_at(file: &dyn StorageFile, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(offset + done as u64, &mut buf[done..])? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => done += n,
        }
    }
    Ok(())
}

/// Creates a zero-filled file of `bytes` at `path` and syncs it.
fn fill_zeros(fs: &dyn FileSystem, path: &Path, bytes: u64) -> Result<(), StorageError> {
    let file = fs
        .open(path)
        .map_err(|e| StorageError::io("creating a segment", path, e))?;
    let zeros = vec![0u8; ZERO_CHUNK_BYTES];
    let mut written = 0u64;
    let result = (|| {
        while written < bytes {
            let n = (bytes - written).min(ZERO_CHUNK_BYTES as u64) as usize;
            file.write_at(written, &zeros[..n])?;
            written += n as u64;
        }
        file.sync_data()
    })();
    if let Err(e) = result {
        drop(file);
        let _ = fs.remove(path);
        return Err(StorageError::io("preallocating a segment", path, e));
    }
    Ok(())
}

/// Preallocates a spare segment file `spare-<seq>.log` in `dir` (zeros,
/// synced, then renamed into place). Runs off the writer's path; a full disk
/// fails here, before any write depends on the space.
pub fn preallocate_spare(
    fs: &dyn FileSystem,
    dir: &Path,
    seq: u64,
    bytes: u64,
) -> Result<PathBuf, StorageError> {
    let tmp = dir.join(format!("spare-{seq:020}.tmp"));
    let path = dir.join(format!("spare-{seq:020}.log"));
    fill_zeros(fs, &tmp, bytes)?;
    fs.rename(&tmp, &path)
        .map_err(|e| StorageError::io("naming a spare segment", &tmp, e))?;
    fs.sync_dir(dir)
        .map_err(|e| StorageError::io("syncing the log directory", dir, e))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{FaultyFs, StdFs};

    fn options() -> WalOptions {
        WalOptions {
            segment_bytes: 4096,
            record_bytes_max: 1024,
            batch_bytes_max: 2048,
            recovered_bytes_max: u64::MAX,
            force_sync: true,
        }
    }

    fn open(dir: &Path) -> Result<(Wal, Vec<Record>), StorageError> {
        Wal::open(Arc::new(StdFs), dir, options())
    }

    fn append_range(wal: &mut Wal, range: std::ops::Range<u64>) {
        let payloads: Vec<Vec<u8>> = range
            .clone()
            .map(|i| format!("entry-{i}").into_bytes())
            .collect();
        let records: Vec<(u64, u64, &[u8])> = range
            .zip(payloads.iter())
            .map(|(i, p)| (i, 1, p.as_slice()))
            .collect();
        wal.append(&records).unwrap();
        wal.sync().unwrap();
    }

    fn indexes(records: &[Record]) -> Vec<u64> {
        records.iter().map(|r| r.index).collect()
    }

    #[test]
    fn records_survive_reopen_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, records) = open(dir.path()).unwrap();
        assert!(records.is_empty());
        for batch in 0..50u64 {
            append_range(&mut wal, batch * 10..batch * 10 + 10);
        }
        drop(wal);
        let (wal, records) = open(dir.path()).unwrap();
        assert_eq!(indexes(&records), (0..500).collect::<Vec<_>>());
        assert_eq!(records[123].payload, Bytes::from("entry-123"));
        assert!(
            wal.segments.len() > 3,
            "small segments roll over: {}",
            wal.segments.len()
        );
        assert_eq!((wal.first_index(), wal.last_index()), (Some(0), Some(499)));
    }

    #[test]
    fn torn_tail_is_cut_and_appending_continues() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = open(dir.path()).unwrap();
        append_range(&mut wal, 1..6);
        let segment = wal.segments[0].path.clone();
        let cut = wal.segments[0].offsets[4] + 10;
        drop(wal);
        // Damage the last record as a crash mid-write would: half of it written.
        let bytes = std::fs::read(&segment).unwrap();
        let mut damaged = bytes.clone();
        for b in damaged[cut as usize..].iter_mut().take(40) {
            *b = 0xAB;
        }
        std::fs::write(&segment, &damaged).unwrap();
        let (mut wal, records) = open(dir.path()).unwrap();
        assert_eq!(indexes(&records), vec![1, 2, 3, 4]);
        append_range(&mut wal, 5..8);
        drop(wal);
        let (_, records) = open(dir.path()).unwrap();
        assert_eq!(indexes(&records), vec![1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn corruption_before_the_tail_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = open(dir.path()).unwrap();
        for batch in 0..30u64 {
            append_range(&mut wal, batch * 10 + 1..batch * 10 + 11);
        }
        let first = wal.segments[0].path.clone();
        let offset = wal.segments[0].offsets[2];
        drop(wal);
        let mut bytes = std::fs::read(&first).unwrap();
        bytes[offset as usize + 30] ^= 0xff;
        std::fs::write(&first, &bytes).unwrap();
        let err = open(dir.path()).err().expect("corruption must be refused");
        let message = err.to_string();
        assert!(message.contains(&first.display().to_string()), "{message}");
        assert!(message.contains(&format!("offset {offset}")), "{message}");
    }

    #[test]
    fn truncate_and_purge_keep_the_log_consecutive() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = open(dir.path()).unwrap();
        for batch in 0..60u64 {
            append_range(&mut wal, batch * 10 + 1..batch * 10 + 11);
        }
        wal.truncate_from(150).unwrap();
        assert_eq!(wal.last_index(), Some(149));
        append_range(&mut wal, 150..160);
        wal.purge_through(140).unwrap();
        let first = wal.first_index().unwrap();
        assert!(
            first > 1 && first <= 141,
            "whole segments up to 140 go: {first}"
        );
        drop(wal);
        let (wal, records) = open(dir.path()).unwrap();
        assert_eq!(records.first().map(|r| r.index), Some(first));
        assert_eq!(records.last().map(|r| r.index), Some(159));
        assert_eq!(wal.last_index(), Some(159));
        let (mut wal, _) = open(dir.path()).unwrap();
        wal.truncate_from(first).unwrap();
        assert_eq!(wal.last_index(), None);
        append_range(&mut wal, first..first + 3);
        drop(wal);
        let (_, records) = open(dir.path()).unwrap();
        assert_eq!(indexes(&records), vec![first, first + 1, first + 2]);
    }

    #[test]
    fn appends_beyond_one_batch_are_split_and_every_record_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = open(dir.path()).unwrap();
        // 10 records of 700 bytes: more than one 2048-byte batch, over segments.
        let payloads: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 700]).collect();
        let records: Vec<(u64, u64, &[u8])> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| (i as u64 + 1, 1, p.as_slice()))
            .collect();
        wal.append(&records).unwrap();
        wal.sync().unwrap();
        let too_big = vec![1u8; 1025];
        let err = wal.append(&[(11, 1, too_big.as_slice())]).unwrap_err();
        assert!(err.to_string().contains("1025 bytes"), "{err}");
        drop(wal);
        let small_memory = WalOptions {
            recovered_bytes_max: 64,
            ..options()
        };
        let (wal, recovered) = Wal::open(Arc::new(StdFs), dir.path(), small_memory).unwrap();
        // Only the newest records within recovered_bytes_max come back in memory.
        assert_eq!(indexes(&recovered), vec![10]);
        for (i, payload) in payloads.iter().enumerate() {
            let record = wal.read(i as u64 + 1).unwrap();
            assert_eq!(&record.payload[..], &payload[..]);
        }
        assert!(wal.read(11).is_err());
        assert!(wal.read(0).is_err());
    }

    #[test]
    fn unsynced_segments_are_handed_out_once() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = open(dir.path()).unwrap();
        wal.append(&[(1, 1, b"one".as_slice())]).unwrap();
        let unsynced = wal.take_unsynced();
        assert_eq!(unsynced.len(), 1);
        unsynced[0].sync().unwrap();
        assert!(wal.take_unsynced().is_empty());
    }

    #[test]
    fn holes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = open(dir.path()).unwrap();
        append_range(&mut wal, 1..3);
        assert!(wal.append(&[(5, 1, b"x".as_slice())]).is_err());
    }

    #[test]
    fn full_disk_fails_preallocation_without_touching_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultyFs::new(StdFs);
        let faults = fs.faults();
        let (mut wal, _) = Wal::open(Arc::new(fs.clone()), dir.path(), options()).unwrap();
        append_range(&mut wal, 1..4);
        faults.lock().unwrap().disk_full = true;
        let err = preallocate_spare(&fs, dir.path(), 1, 4096).unwrap_err();
        assert!(err.is_disk_full(), "{err}");
        assert_eq!(wal.spare_count(), 0);
        faults.lock().unwrap().disk_full = false;
        let spare = preallocate_spare(&fs, dir.path(), 1, 4096).unwrap();
        wal.add_spare(spare);
        assert!(wal.room_bytes() >= 4096);
        drop(wal);
        let (_, records) = Wal::open(Arc::new(fs), dir.path(), options()).unwrap();
        assert_eq!(indexes(&records), vec![1, 2, 3]);
    }

    #[test]
    fn failed_sync_is_reported_not_retried() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultyFs::new(StdFs);
        let faults = fs.faults();
        let (mut wal, _) = Wal::open(Arc::new(fs), dir.path(), options()).unwrap();
        append_range(&mut wal, 1..3);
        wal.append(&[(3, 1, b"x".as_slice())]).unwrap();
        faults.lock().unwrap().fail_next_sync_of = Some("wal-".into());
        let err = wal.sync().unwrap_err();
        assert!(matches!(err, StorageError::SyncFailed { .. }), "{err}");
    }
}
