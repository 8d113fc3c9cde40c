//! The openraft type configuration: what a raft log entry carries.
//!
//! One raft entry carries a *batch* of Roost entries. openraft 0.9 appends
//! (and fsyncs) each client write separately, so batching before the log is
//! what turns many concurrent writes into one fsync (group commit). Batches
//! are stored as the jute encoding of each entry, the same bytes a client
//! sent, prefixed with a count.

// openraft's `declare_raft_types!` makes the type configuration `pub`, and
// with it every type it names.
#![allow(unreachable_pub)]

use std::path::PathBuf;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use roost_core::Entry;
use roost_proto::codec::JuteWrite;
use roost_proto::{Decode, Encode, Reader};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Roost entries proposed together as one raft entry, with their encoding:
/// made once, when the batch is built or received, and reused for the log
/// and for peers.
#[derive(Clone, Default)]
pub struct Batch {
    entries: Arc<Vec<Entry>>,
    encoded: Bytes,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Batch({} entries, {} bytes)",
            self.entries.len(),
            self.encoded.len()
        )
    }
}

impl PartialEq for Batch {
    fn eq(&self, other: &Self) -> bool {
        self.encoded == other.encoded
    }
}

impl Eq for Batch {}

impl Batch {
    /// Encodes `entries` as one batch, however large.
    pub fn from_entries(entries: Vec<Entry>) -> Batch {
        let mut builder = BatchBuilder::new(usize::MAX);
        for entry in entries {
            builder.push_unchecked(entry);
        }
        builder.finish()
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The encoding the log and peers carry.
    pub fn encoded(&self) -> &Bytes {
        &self.encoded
    }

    /// Memory the batch holds: its encoding, and its decoded entries, which
    /// hold about twice as much again (the request's frame, which their data
    /// slices keep alive, and their own copies of paths and ACLs), plus their
    /// structs and allocator overhead (measured: within 20% on small writes).
    pub fn memory_bytes(&self) -> usize {
        const ENTRY_OVERHEAD_BYTES: usize = 256;
        3 * self.encoded.len() + self.entries.len() * ENTRY_OVERHEAD_BYTES
    }

    pub fn decode(bytes: Bytes) -> Result<Batch, roost_proto::DecodeError> {
        let mut r = Reader::new(bytes.clone());
        let count = r.read_count(4)?.unwrap_or(0);
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let len = r.read_i32()?;
            if len < 0 {
                return Err(roost_proto::DecodeError::BadLength(len));
            }
            let body = r.read_bytes(len as usize)?;
            entries.push(Entry::from_bytes(body)?);
        }
        r.finish()?;
        Ok(Batch {
            entries: Arc::new(entries),
            encoded: bytes,
        })
    }
}

/// Builds a batch up to a byte bound, encoding each entry as it is added.
pub struct BatchBuilder {
    entries: Vec<Entry>,
    out: BytesMut,
    bytes_max: usize,
}

/// What [`BatchBuilder::push`] did with an entry.
#[derive(Debug)]
pub enum Pushed {
    Added,
    /// The batch is full: the entry goes into the next one.
    Full(Entry),
    /// The entry alone is over the bound: no batch can carry it.
    TooLarge(Entry),
}

/// The batch's entry count, before its entries.
const COUNT_BYTES: usize = 4;

impl BatchBuilder {
    pub fn new(bytes_max: usize) -> Self {
        let mut out = BytesMut::new();
        out.put_jute_i32(0);
        BatchBuilder {
            entries: Vec::new(),
            out,
            bytes_max,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Adds `entry` if the batch stays within its bound.
    pub fn push(&mut self, entry: Entry) -> Pushed {
        let start = self.out.len();
        self.encode(&entry);
        if self.out.len() <= self.bytes_max {
            self.entries.push(entry);
            return Pushed::Added;
        }
        let alone = self.out.len() - start + COUNT_BYTES;
        self.out.truncate(start);
        if alone > self.bytes_max {
            Pushed::TooLarge(entry)
        } else {
            Pushed::Full(entry)
        }
    }

    fn push_unchecked(&mut self, entry: Entry) {
        self.encode(&entry);
        self.entries.push(entry);
    }

    fn encode(&mut self, entry: &Entry) {
        let start = self.out.len();
        self.out.put_jute_i32(0);
        entry.encode(&mut self.out);
        let len = (self.out.len() - start - 4) as i32;
        self.out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// The batch built so far; the builder starts afresh.
    pub fn finish(&mut self) -> Batch {
        let count = self.entries.len() as i32;
        self.out[..COUNT_BYTES].copy_from_slice(&count.to_be_bytes());
        let encoded = std::mem::take(&mut self.out).freeze();
        self.out.put_jute_i32(0);
        Batch {
            entries: Arc::new(std::mem::take(&mut self.entries)),
            encoded,
        }
    }
}

impl Serialize for Batch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.encoded)
    }
}

impl<'de> Deserialize<'de> for Batch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes: serde_bytes_compat::ByteBuf = Deserialize::deserialize(deserializer)?;
        Batch::decode(Bytes::from(bytes.0)).map_err(serde::de::Error::custom)
    }
}

/// A minimal owned byte buffer that deserializes from serde bytes.
mod serde_bytes_compat {
    use serde::de::{Deserialize, Deserializer, Error, SeqAccess, Visitor};

    pub struct ByteBuf(pub Vec<u8>);

    impl<'de> Deserialize<'de> for ByteBuf {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct BytesVisitor;
            impl<'de> Visitor<'de> for BytesVisitor {
                type Value = ByteBuf;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
                    Ok(ByteBuf(v.to_vec()))
                }
                fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
                    Ok(ByteBuf(v))
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ByteBuf, A::Error> {
                    let mut out = Vec::new();
                    while let Some(b) = seq.next_element::<u8>()? {
                        out.push(b);
                    }
                    Ok(ByteBuf(out))
                }
            }
            deserializer.deserialize_byte_buf(BytesVisitor)
        }
    }
}

/// Bytes a raft entry takes in an AppendEntries (close enough to bound one).
pub(crate) fn entry_wire_bytes(entry: &RaftEntry) -> usize {
    match &entry.payload {
        openraft::EntryPayload::Normal(batch) => batch.encoded().len() + 64,
        _ => 1024,
    }
}

/// A snapshot as openraft passes it around: a file on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotFile {
    pub path: PathBuf,
}

pub type NodeId = u64;

openraft::declare_raft_types!(
    /// Roost's raft types: batches of entries in, nothing out (replies go to
    /// connections directly from the apply path).
    pub TypeConfig:
        D = Batch,
        R = (),
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = SnapshotFile,
        AsyncRuntime = openraft::TokioRuntime,
        Responder = openraft::impls::OneshotResponder<TypeConfig>,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type RaftEntry = openraft::Entry<TypeConfig>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
pub type StorageError = openraft::StorageError<NodeId>;

#[cfg(test)]
mod tests {
    use super::*;
    use roost_core::Txn;

    fn write_of(bytes: usize) -> Entry {
        Entry {
            time_ms: 1,
            session_id: 2,
            cxid: 3,
            identities: vec![].into(),
            origin: 4,
            txn: Txn::Request(roost_proto::Request::SetData(roost_proto::SetDataRequest {
                path: "/v".into(),
                data: Some(Bytes::from(vec![7u8; bytes])),
                version: -1,
            })),
        }
    }

    #[test]
    fn batches_are_cut_by_bytes_and_oversized_entries_are_refused() {
        let mut builder = BatchBuilder::new(4096);
        assert!(matches!(builder.push(write_of(1500)), Pushed::Added));
        assert!(matches!(builder.push(write_of(1500)), Pushed::Added));
        let Pushed::Full(third) = builder.push(write_of(1500)) else {
            panic!("a third 1500-byte write does not fit in 4096 bytes");
        };
        assert!(matches!(builder.push(write_of(5000)), Pushed::TooLarge(_)));
        let batch = builder.finish();
        assert_eq!(batch.entries().len(), 2);
        assert!(batch.encoded().len() <= 4096);
        assert_eq!(Batch::decode(batch.encoded().clone()).unwrap(), batch);
        // The builder starts afresh, and the entry that did not fit goes first.
        assert!(matches!(builder.push(third), Pushed::Added));
        assert_eq!(builder.finish().entries().len(), 1);
    }

    #[test]
    fn batches_round_trip_through_serde() {
        let batch = Batch::from_entries(vec![
            Entry {
                time_ms: 5,
                session_id: 1,
                cxid: 2,
                identities: vec![].into(),
                origin: 3,
                txn: Txn::CloseSession,
            },
            Entry {
                time_ms: 6,
                session_id: 7,
                cxid: 8,
                identities: vec![roost_proto::Id::new("ip", "::1")].into(),
                origin: 0,
                txn: Txn::DeleteContainer("/c".into()),
            },
        ]);
        let bytes = postcard::to_allocvec(&batch).unwrap();
        let back: Batch = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, batch);
    }
}
