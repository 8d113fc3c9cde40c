//! Reply bodies: what follows a [`ReplyHeader`] whose `err` is 0.
//!
//! An error reply is the bare header (multi excepted: a failed multi still has
//! err 0 and carries its per-op results). Which body follows depends on the
//! request's opcode, which the client must remember by xid.

use bytes::{Bytes, BytesMut};

use crate::codec::{Decode, DecodeError, Encode, JuteWrite, Reader};
use crate::consts::{ErrorCode, OpCode};
use crate::records::*;
use crate::request::MULTI_END;

/// The result of one operation inside a multi or multiRead reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiResult {
    /// A plain create (opcode 1): the path only.
    Create(String),
    /// create2, createContainer and createTTL: path and Stat.
    Create2(String, Stat),
    SetData(Stat),
    Delete,
    Check,
    GetData(Option<Bytes>, Stat),
    GetChildren(Vec<String>),
    /// A failed op, or (code 0) an op that succeeded before another one failed.
    Error(ErrorCode),
}

impl MultiResult {
    fn header(&self) -> MultiHeader {
        let (opcode, err) = match self {
            MultiResult::Create(_) => (OpCode::Create, 0),
            MultiResult::Create2(..) => (OpCode::Create2, 0),
            MultiResult::SetData(_) => (OpCode::SetData, 0),
            MultiResult::Delete => (OpCode::Delete, 0),
            MultiResult::Check => (OpCode::Check, 0),
            MultiResult::GetData(..) => (OpCode::GetData, 0),
            MultiResult::GetChildren(_) => (OpCode::GetChildren, 0),
            MultiResult::Error(code) => (OpCode::Error, code.code()),
        };
        MultiHeader {
            opcode: opcode.code(),
            done: false,
            err,
        }
    }

    fn encode(&self, out: &mut BytesMut) {
        self.header().encode(out);
        match self {
            MultiResult::Create(path) => out.put_jute_str(path),
            MultiResult::Create2(path, stat) => {
                out.put_jute_str(path);
                stat.encode(out);
            }
            MultiResult::SetData(stat) => stat.encode(out),
            MultiResult::Delete | MultiResult::Check => {}
            MultiResult::GetData(data, stat) => {
                data.encode(out);
                stat.encode(out);
            }
            MultiResult::GetChildren(children) => children.encode(out),
            MultiResult::Error(code) => out.put_jute_i32(code.code()),
        }
    }

    /// Bytes `encode` writes.
    fn encoded_len(&self) -> usize {
        MULTI_HEADER_BYTES
            + match self {
                MultiResult::Create(path) => str_len(path),
                MultiResult::Create2(path, _) => str_len(path) + STAT_BYTES,
                MultiResult::SetData(_) => STAT_BYTES,
                MultiResult::Delete | MultiResult::Check => 0,
                MultiResult::GetData(data, _) => buffer_len(data) + STAT_BYTES,
                MultiResult::GetChildren(children) => strings_len(children),
                MultiResult::Error(_) => 4,
            }
    }

    fn decode(header: &MultiHeader, r: &mut Reader) -> Result<Self, DecodeError> {
        let op = OpCode::from_code(header.opcode).ok_or(DecodeError::InvalidValue {
            field: "MultiHeader.type",
            value: header.opcode.into(),
        })?;
        Ok(match op {
            OpCode::Create => MultiResult::Create(r.read_ustring()?),
            OpCode::Create2 | OpCode::CreateContainer | OpCode::CreateTtl => {
                MultiResult::Create2(r.read_ustring()?, Stat::decode(r)?)
            }
            OpCode::SetData => MultiResult::SetData(Stat::decode(r)?),
            OpCode::Delete => MultiResult::Delete,
            OpCode::Check => MultiResult::Check,
            OpCode::GetData => MultiResult::GetData(r.read_buffer_opt()?, Stat::decode(r)?),
            OpCode::GetChildren => MultiResult::GetChildren(Vec::<String>::decode(r)?),
            OpCode::Error => {
                let code = r.read_i32()?;
                MultiResult::Error(ErrorCode::from_code(code).ok_or(DecodeError::InvalidValue {
                    field: "ErrorResponse.err",
                    value: code.into(),
                })?)
            }
            _ => {
                return Err(DecodeError::InvalidValue {
                    field: "MultiHeader.type",
                    value: header.opcode.into(),
                })
            }
        })
    }
}

/// A successful reply's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Nothing after the header: delete, setWatches, checkWatches, removeWatches,
    /// closeSession, auth, ping, and every error.
    Empty,
    /// create (opcode 1).
    Create(String),
    /// create2, createContainer, createTTL.
    Create2(String, Stat),
    /// exists, setData, setACL.
    Stat(Stat),
    /// Data (`None` when the node holds null data) and Stat.
    GetData(Option<Bytes>, Stat),
    /// getChildren.
    Children(Vec<String>),
    Children2(Vec<String>, Stat),
    GetAcl(Vec<Acl>, Stat),
    Sync(String),
    Multi(Vec<MultiResult>),
    /// addWatch answers a 4-byte `ErrorResponse(0)`.
    AddWatch,
    Ephemerals(Vec<String>),
    AllChildrenNumber(i32),
    WhoAmI(Vec<ClientInfo>),
    Sasl(Option<Bytes>),
}

/// A Stat on the wire: six longs and five ints.
const STAT_BYTES: usize = 68;
/// A MultiHeader: type, done, err.
const MULTI_HEADER_BYTES: usize = 9;

fn str_len(s: &str) -> usize {
    4 + s.len()
}

fn buffer_len(data: &Option<Bytes>) -> usize {
    4 + data.as_ref().map_or(0, |d| d.len())
}

fn strings_len(items: &[String]) -> usize {
    4 + items.iter().map(|s| str_len(s)).sum::<usize>()
}

impl Response {
    /// Bytes `encode` writes, computed without encoding (so a reply too large
    /// to send can be refused before it is built).
    pub fn encoded_len(&self) -> usize {
        match self {
            Response::Empty => 0,
            Response::Create(path) | Response::Sync(path) => str_len(path),
            Response::Create2(path, _) => str_len(path) + STAT_BYTES,
            Response::Stat(_) => STAT_BYTES,
            Response::GetData(data, _) => buffer_len(data) + STAT_BYTES,
            Response::Children(items) | Response::Ephemerals(items) => strings_len(items),
            Response::Children2(children, _) => strings_len(children) + STAT_BYTES,
            Response::GetAcl(acl, _) => {
                4 + acl
                    .iter()
                    .map(|a| 4 + str_len(&a.id.scheme) + str_len(&a.id.id))
                    .sum::<usize>()
                    + STAT_BYTES
            }
            Response::Multi(results) => {
                results.iter().map(MultiResult::encoded_len).sum::<usize>() + MULTI_HEADER_BYTES
            }
            Response::AddWatch | Response::AllChildrenNumber(_) => 4,
            Response::WhoAmI(infos) => {
                4 + infos
                    .iter()
                    .map(|i| str_len(&i.auth_scheme) + str_len(&i.user))
                    .sum::<usize>()
            }
            Response::Sasl(token) => buffer_len(token),
        }
    }

    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Response::Empty => {}
            Response::Create(path) | Response::Sync(path) => out.put_jute_str(path),
            Response::Create2(path, stat) => {
                out.put_jute_str(path);
                stat.encode(out);
            }
            Response::Stat(stat) => stat.encode(out),
            Response::GetData(data, stat) => {
                data.encode(out);
                stat.encode(out);
            }
            Response::Children(items) | Response::Ephemerals(items) => items.encode(out),
            Response::Children2(children, stat) => {
                children.encode(out);
                stat.encode(out);
            }
            Response::GetAcl(acl, stat) => {
                acl.encode(out);
                stat.encode(out);
            }
            Response::Multi(results) => {
                for result in results {
                    result.encode(out);
                }
                MULTI_END.encode(out);
            }
            Response::AddWatch => out.put_jute_i32(0),
            Response::AllChildrenNumber(n) => out.put_jute_i32(*n),
            Response::WhoAmI(infos) => infos.encode(out),
            Response::Sasl(token) => token.encode(out),
        }
    }

    /// Decodes the body of a successful reply to a request with `opcode`.
    pub fn decode(opcode: OpCode, body: Bytes) -> Result<Response, DecodeError> {
        let mut r = Reader::new(body);
        let response = match opcode {
            OpCode::Create => Response::Create(r.read_ustring()?),
            OpCode::Create2 | OpCode::CreateContainer | OpCode::CreateTtl => {
                Response::Create2(r.read_ustring()?, Stat::decode(&mut r)?)
            }
            OpCode::Exists | OpCode::SetData | OpCode::SetAcl => {
                Response::Stat(Stat::decode(&mut r)?)
            }
            OpCode::GetData | OpCode::Reconfig => {
                Response::GetData(r.read_buffer_opt()?, Stat::decode(&mut r)?)
            }
            OpCode::GetChildren => Response::Children(Vec::<String>::decode(&mut r)?),
            OpCode::GetChildren2 => {
                Response::Children2(Vec::<String>::decode(&mut r)?, Stat::decode(&mut r)?)
            }
            OpCode::GetAcl => Response::GetAcl(Vec::<Acl>::decode(&mut r)?, Stat::decode(&mut r)?),
            OpCode::Sync => Response::Sync(r.read_ustring()?),
            OpCode::Multi | OpCode::MultiRead => {
                let mut results = Vec::new();
                loop {
                    let header = MultiHeader::decode(&mut r)?;
                    if header.done {
                        break;
                    }
                    results.push(MultiResult::decode(&header, &mut r)?);
                }
                Response::Multi(results)
            }
            OpCode::AddWatch => {
                r.read_i32()?;
                Response::AddWatch
            }
            OpCode::GetEphemerals => Response::Ephemerals(Vec::<String>::decode(&mut r)?),
            OpCode::GetAllChildrenNumber => Response::AllChildrenNumber(r.read_i32()?),
            OpCode::WhoAmI => Response::WhoAmI(Vec::<ClientInfo>::decode(&mut r)?),
            OpCode::Sasl => Response::Sasl(r.read_buffer_opt()?),
            _ => Response::Empty,
        };
        r.finish()?;
        Ok(response)
    }
}

/// Encodes a whole reply frame (length prefix, header, body) into `out`.
pub fn encode_reply(header: &ReplyHeader, body: &Response, out: &mut BytesMut) {
    let start = out.len();
    out.put_jute_i32(0);
    header.encode(out);
    body.encode(out);
    crate::frame::patch_length(out, start);
}

/// Encodes a whole notification frame: xid -1, the given zxid, err 0, WatcherEvent.
pub fn encode_notification(zxid: i64, event: &WatcherEvent, out: &mut BytesMut) {
    let start = out.len();
    out.put_jute_i32(0);
    ReplyHeader {
        xid: crate::consts::xid::NOTIFICATION,
        zxid,
        err: 0,
    }
    .encode(out);
    event.encode(out);
    crate::frame::patch_length(out, start);
}
