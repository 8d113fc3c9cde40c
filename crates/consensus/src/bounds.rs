//! The byte bounds of the write path, all derived from one number: the
//! largest entry a client can cause (its request is at most `jute.maxbuffer`).
//!
//! Each bound admits whatever the one before it produces, so no legal
//! request, alone or in any mix, can exceed one of them:
//!
//! ```text
//! entry <= batch (one raft entry) < record (a WAL record: batch + envelope)
//!       <= replication (the entries of one AppendEntries)
//!       <  peer frame (an AppendEntries or a forwarded batch, with its envelope)
//! record <= append (one WAL write between syncs)
//! ```
//!
//! One AppendEntries carries at most one full batch: openraft gives the whole
//! RPC, the follower's fsync included, one heartbeat interval, so a message
//! must stay small enough to be made durable within it.
//!
//! Batches bigger than a bound are split where they are made (the pump cuts
//! batches by bytes; an AppendEntries carries the prefix that fits and
//! reports partial success; a WAL append is written in synced parts). The
//! in-memory log cache keeps at most `log_cache_bytes_max` of recent entries;
//! older ones are read back from the WAL.

/// A batch of small writes still amortises one fsync over a thousand writes
/// at this size (the count bound comes first), and two 1 MB values fit; a
/// follower makes one such batch durable well within a heartbeat interval.
const BATCH_BYTES_MIN: usize = 2 << 20;
/// What openraft wraps around a batch in a log record (log id, payload tag),
/// with room to spare.
const RECORD_ENVELOPE_BYTES: usize = 4 << 10;
/// Raft entries written with one sync and sent in one AppendEntries.
const APPEND_BYTES_MIN: usize = 32 << 20;
/// A WAL record's header (and any per-record framing around it), with room to spare.
const RECORD_HEADER_BYTES: usize = 4 << 10;
/// The rest of an AppendEntries (vote, previous log id, commit) and of the
/// other peer messages, with room to spare.
const PEER_ENVELOPE_BYTES: usize = 64 << 10;
/// Enough recent entries to apply and replicate from memory in steady state
/// (a few batches are in flight at any time); older ones come from the WAL.
const LOG_CACHE_BYTES_MIN: usize = 32 << 20;
/// Full batches the cache holds at least.
const LOG_CACHE_BATCHES_MIN: usize = 8;

/// The byte bounds of one replica's write path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// The largest Roost entry a client can cause (request, identities, header).
    pub entry_bytes_max: usize,
    /// One raft entry's payload: a batch of Roost entries.
    pub batch_bytes_max: usize,
    /// One WAL record: a batch in openraft's envelope.
    pub record_bytes_max: usize,
    /// Raft entries in one WAL write between syncs.
    pub append_bytes_max: usize,
    /// Raft entries in one AppendEntries.
    pub replication_bytes_max: usize,
    /// The largest message a peer may send.
    pub peer_frame_bytes_max: usize,
    /// Recent raft entries kept in memory.
    pub log_cache_bytes_max: usize,
}

impl Bounds {
    /// The bounds for entries of at most `entry_bytes_max` bytes.
    pub fn for_entries(entry_bytes_max: usize) -> Bounds {
        let batch_bytes_max = entry_bytes_max.max(BATCH_BYTES_MIN);
        let record_bytes_max = batch_bytes_max + RECORD_ENVELOPE_BYTES;
        let append_bytes_max = (record_bytes_max + RECORD_HEADER_BYTES).max(APPEND_BYTES_MIN);
        Bounds {
            entry_bytes_max,
            batch_bytes_max,
            record_bytes_max,
            append_bytes_max,
            replication_bytes_max: record_bytes_max,
            peer_frame_bytes_max: record_bytes_max + PEER_ENVELOPE_BYTES,
            log_cache_bytes_max: (LOG_CACHE_BATCHES_MIN * record_bytes_max)
                .max(LOG_CACHE_BYTES_MIN),
        }
    }
}

impl Default for Bounds {
    /// The bounds for ZooKeeper's default `jute.maxbuffer`.
    fn default() -> Self {
        Bounds::for_entries(roost_core::entry_bytes_max(
            roost_proto::frame::DEFAULT_MAX_FRAME_BYTES,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bound_admits_what_the_one_before_produces() {
        for request_bytes in [1 << 10, 0xfffff, 16 << 20, 1 << 30] {
            let b = Bounds::for_entries(roost_core::entry_bytes_max(request_bytes));
            assert!(b.entry_bytes_max <= b.batch_bytes_max, "{b:?}");
            assert!(b.batch_bytes_max + RECORD_ENVELOPE_BYTES <= b.record_bytes_max);
            // A WAL part holds at least one whole record with its header.
            assert!(b.record_bytes_max + RECORD_HEADER_BYTES <= b.append_bytes_max);
            assert!(b.record_bytes_max <= b.replication_bytes_max);
            assert!(b.replication_bytes_max < b.peer_frame_bytes_max);
            assert!(
                b.batch_bytes_max < b.peer_frame_bytes_max,
                "forwarded batches fit"
            );
            assert!(b.log_cache_bytes_max >= LOG_CACHE_BATCHES_MIN * b.record_bytes_max);
            assert!(u32::try_from(b.record_bytes_max).is_ok());
        }
    }
}
