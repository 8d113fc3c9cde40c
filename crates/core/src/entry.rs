//! Log entries: the only way the replicated state changes.
//!
//! An entry carries everything `apply` needs and nothing it must not depend
//! on: the leader's clock reading, the session and xid of the request, the
//! caller's identities (decided where the connection lives) and the
//! transaction itself. Client write requests are carried as their jute
//! encoding, so the log stores exactly what the client sent.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use roost_proto::codec::JuteWrite;
use roost_proto::{
    Decode, DecodeError, Encode, ErrorCode, Id, OpCode, PathRequest, Reader, Request,
};

/// What an entry does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Txn {
    /// Opens session `Entry::session_id` with an id and password the leader chose.
    CreateSession { timeout_ms: i32, password: Bytes },
    /// Ends session `Entry::session_id`, deleting its ephemerals.
    CloseSession,
    /// The session re-attached through another server, which now owns it:
    /// writes still arriving through the old server get SessionMoved (what
    /// ZooKeeper's leader does on a follower's session revalidation).
    MoveSession,
    /// A client write: create*, delete, setData, setACL, multi, reconfig.
    Request(Request),
    /// The reaper's delete of an empty container or expired TTL node.
    DeleteContainer(String),
    /// A write refused before it could be read (e.g. an unreadable multi):
    /// it still consumes a zxid and answers this code, as in ZooKeeper.
    Fail(ErrorCode),
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The leader's wall clock when it accepted the request (ms since the epoch).
    pub time_ms: i64,
    pub session_id: i64,
    /// The client's xid, for replying.
    pub cxid: i32,
    /// The caller's identities, for ACL checks and `auth` ACL expansion
    /// (shared with the connection: no copy per request).
    pub identities: Arc<[Id]>,
    /// The connection that sent the request (server id in the top 16 bits,
    /// see [`origin_server`]), so only that connection receives the reply; 0
    /// for server-made entries. `apply` reads only its server id, to tell
    /// which server a session's writes come through.
    pub origin: u64,
    pub txn: Txn,
}

/// Identities one caller may hold: its address and one per successful
/// addAuth. Entries carry them, so they are bounded like requests are.
pub const IDENTITIES_MAX: usize = 32;
/// Bytes of those identities' schemes and ids, together.
pub const IDENTITY_BYTES_MAX: usize = 16 << 10;
/// An entry's fields besides its request and identities, with room to spare.
const ENTRY_HEADER_BYTES_MAX: usize = 256;

/// The largest encoding of an entry whose request arrived in a frame of at
/// most `request_bytes_max` bytes from a caller within the identity bounds.
/// (A request re-encodes to the bytes it arrived as, except that invalid
/// UTF-8 in its strings is replaced, which can make it longer: whoever
/// batches entries must still measure them.)
pub fn entry_bytes_max(request_bytes_max: usize) -> usize {
    request_bytes_max + IDENTITY_BYTES_MAX + IDENTITIES_MAX * 8 + ENTRY_HEADER_BYTES_MAX
}

/// Whether `identities` stay within [`IDENTITIES_MAX`] and [`IDENTITY_BYTES_MAX`].
pub fn identities_within_bounds(identities: &[Id]) -> bool {
    let bytes: usize = identities
        .iter()
        .map(|id| id.scheme.len() + id.id.len())
        .sum();
    identities.len() <= IDENTITIES_MAX && bytes <= IDENTITY_BYTES_MAX
}

/// Bits of a connection id below the server id.
pub const ORIGIN_SERVER_SHIFT: u32 = 48;

/// The server that holds connection `origin` (0 for server-made entries).
pub fn origin_server(origin: u64) -> u64 {
    origin >> ORIGIN_SERVER_SHIFT
}

/// Opcodes used in the log for transactions that are not client requests.
const OP_FAIL: i32 = OpCode::Error as i32;
/// Not a ZooKeeper opcode: ZooKeeper keeps session owners out of its log.
const OP_MOVE_SESSION: i32 = -1000;

impl Encode for Entry {
    fn encode(&self, out: &mut BytesMut) {
        out.put_jute_i64(self.time_ms);
        out.put_jute_i64(self.session_id);
        out.put_jute_i32(self.cxid);
        out.put_jute_i32(self.identities.len() as i32);
        for id in self.identities.iter() {
            id.encode(out);
        }
        out.put_jute_i64(self.origin as i64);
        match &self.txn {
            Txn::CreateSession {
                timeout_ms,
                password,
            } => {
                out.put_jute_i32(OpCode::CreateSession.code());
                out.put_jute_i32(*timeout_ms);
                out.put_jute_buffer(password);
            }
            Txn::CloseSession => out.put_jute_i32(OpCode::CloseSession.code()),
            Txn::MoveSession => out.put_jute_i32(OP_MOVE_SESSION),
            Txn::Request(request) => {
                out.put_jute_i32(request.opcode().code());
                request.encode(out);
            }
            Txn::DeleteContainer(path) => {
                out.put_jute_i32(OpCode::DeleteContainer.code());
                out.put_jute_str(path);
            }
            Txn::Fail(code) => {
                out.put_jute_i32(OP_FAIL);
                out.put_jute_i32(code.code());
            }
        }
    }
}

impl Decode for Entry {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let time_ms = r.read_i64()?;
        let session_id = r.read_i64()?;
        let cxid = r.read_i32()?;
        let identities: Arc<[Id]> = Vec::<Id>::decode(r)?.into();
        let origin = r.read_i64()? as u64;
        let opcode = r.read_i32()?;
        let invalid = |value: i64| DecodeError::InvalidValue {
            field: "Entry.opcode",
            value,
        };
        let txn = match opcode {
            op if op == OpCode::CreateSession.code() => Txn::CreateSession {
                timeout_ms: r.read_i32()?,
                password: r.read_buffer()?,
            },
            op if op == OpCode::CloseSession.code() => Txn::CloseSession,
            OP_MOVE_SESSION => Txn::MoveSession,
            op if op == OpCode::DeleteContainer.code() => {
                Txn::DeleteContainer(PathRequest::decode(r)?.path)
            }
            OP_FAIL => {
                let code = r.read_i32()?;
                Txn::Fail(ErrorCode::from_code(code).ok_or(invalid(code.into()))?)
            }
            op => {
                let request = Request::decode(op, r.read_rest()).map_err(|_| invalid(op.into()))?;
                Txn::Request(request)
            }
        };
        Ok(Entry {
            time_ms,
            session_id,
            cxid,
            identities,
            origin,
            txn,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roost_proto::{CreateRequest, SetDataRequest};

    #[test]
    fn entries_round_trip() {
        let txns = vec![
            Txn::CreateSession {
                timeout_ms: 30000,
                password: Bytes::from_static(&[7; 16]),
            },
            Txn::CloseSession,
            Txn::MoveSession,
            Txn::Request(Request::Create {
                opcode: OpCode::CreateTtl,
                request: CreateRequest {
                    path: "/a".into(),
                    data: Some(Bytes::from_static(b"x")),
                    acl: crate::acl::open_acl(),
                    flags: 5,
                    ttl: 100,
                },
            }),
            Txn::Request(Request::SetData(SetDataRequest {
                path: "/a".into(),
                data: Some(Bytes::new()),
                version: -1,
            })),
            Txn::DeleteContainer("/c".into()),
            Txn::Fail(ErrorCode::MarshallingError),
        ];
        for txn in txns {
            let entry = Entry {
                time_ms: 1_700_000_000_000,
                session_id: 0x0100_0000_0000_0001,
                cxid: 42,
                identities: vec![Id::new("ip", "127.0.0.1")].into(),
                origin: 0x0001_0000_0000_0007,
                txn,
            };
            assert_eq!(Entry::from_bytes(entry.to_bytes()).unwrap(), entry);
        }
    }
}
