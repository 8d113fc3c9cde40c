//! The openraft type configuration: what a raft log entry carries.
//!
//! One raft entry carries a *batch* of Roost entries. openraft 0.9 appends
//! (and fsyncs) each client write separately, so batching before the log is
//! what turns many concurrent writes into one fsync (group commit). Batches
//! are stored as the jute encoding of each entry, the same bytes a client
//! sent, prefixed with a count.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use roost_core::Entry;
use roost_proto::codec::JuteWrite;
use roost_proto::{Decode, Encode, Reader};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Roost entries proposed together as one raft entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch(pub Arc<Vec<Entry>>);

impl Batch {
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        out.put_jute_i32(self.0.len() as i32);
        for entry in self.0.iter() {
            let start = out.len();
            out.put_jute_i32(0);
            entry.encode(&mut out);
            let len = (out.len() - start - 4) as i32;
            out[start..start + 4].copy_from_slice(&len.to_be_bytes());
        }
        out.freeze()
    }

    pub fn decode(bytes: Bytes) -> Result<Batch, roost_proto::DecodeError> {
        let mut r = Reader::new(bytes);
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
        Ok(Batch(Arc::new(entries)))
    }

    /// Bytes this batch takes in the log (close enough to budget disk space).
    pub fn encoded_len_estimate(&self) -> u64 {
        self.0
            .iter()
            .map(|e| 64 + e.identities.len() as u64 * 48 + txn_len_estimate(e))
            .sum()
    }
}

fn txn_len_estimate(entry: &Entry) -> u64 {
    match &entry.txn {
        roost_core::Txn::Request(r) => {
            let mut out = BytesMut::new();
            r.encode(&mut out);
            out.len() as u64
        }
        _ => 32,
    }
}

impl Serialize for Batch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.encode())
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

    #[test]
    fn batches_round_trip_through_serde() {
        let batch = Batch(Arc::new(vec![
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
        ]));
        let bytes = postcard::to_allocvec(&batch).unwrap();
        let back: Batch = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, batch);
    }
}
