//! Client requests: the record that follows a [`RequestHeader`], chosen by opcode.
//!
//! Invariant: `Request::decode(op, bytes)` followed by `encode` gives back the same
//! bytes for every request a real client sends (checked against the wire corpus).
//! A multi whose operations cannot be read is still a request: ZooKeeper answers
//! it with MarshallingError rather than dropping the connection, so the
//! decoding error is kept in [`MultiOps`].

use bytes::{Bytes, BytesMut};

use crate::codec::{Decode, DecodeError, Encode, JuteWrite, Reader};
use crate::consts::{CreateMode, OpCode};
use crate::records::*;

/// One operation inside a multi or multiRead request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiOp {
    /// A create; `opcode` is Create, Create2, CreateContainer or CreateTtl.
    Create {
        opcode: OpCode,
        request: CreateRequest,
    },
    Delete(DeleteRequest),
    SetData(SetDataRequest),
    Check(CheckVersionRequest),
    /// getData inside multiRead; the watch flag on the wire is ignored, as in ZooKeeper.
    GetData(PathWatchRequest),
    GetChildren(PathWatchRequest),
}

impl MultiOp {
    pub fn opcode(&self) -> OpCode {
        match self {
            MultiOp::Create { opcode, .. } => *opcode,
            MultiOp::Delete(_) => OpCode::Delete,
            MultiOp::SetData(_) => OpCode::SetData,
            MultiOp::Check(_) => OpCode::Check,
            MultiOp::GetData(_) => OpCode::GetData,
            MultiOp::GetChildren(_) => OpCode::GetChildren,
        }
    }

    pub fn is_read(&self) -> bool {
        matches!(self, MultiOp::GetData(_) | MultiOp::GetChildren(_))
    }

    pub fn path(&self) -> &str {
        match self {
            MultiOp::Create { request, .. } => &request.path,
            MultiOp::Delete(r) => &r.path,
            MultiOp::SetData(r) => &r.path,
            MultiOp::Check(r) => &r.path,
            MultiOp::GetData(r) | MultiOp::GetChildren(r) => &r.path,
        }
    }

    fn encode(&self, out: &mut BytesMut) {
        match self {
            MultiOp::Create { opcode, request } => {
                request.encode_with_ttl(*opcode == OpCode::CreateTtl, out)
            }
            MultiOp::Delete(r) => r.encode(out),
            MultiOp::SetData(r) => r.encode(out),
            MultiOp::Check(r) => r.encode(out),
            MultiOp::GetData(r) | MultiOp::GetChildren(r) => r.encode(out),
        }
    }
}

/// The operations of a multi, or why they could not be read.
pub type MultiOps = Result<Vec<MultiOp>, MultiDecodeError>;

/// Why a multi's operations were refused while reading them; ZooKeeper answers
/// all of these with MarshallingError.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultiDecodeError {
    #[error("invalid type of op {0}")]
    InvalidOpType(i32),
    #[error("invalid flag {0} for create mode")]
    InvalidCreateFlag(i32),
    #[error("mixing read and write ops in one multi")]
    MixedKinds,
    #[error("malformed multi: {0}")]
    Malformed(DecodeError),
}

fn decode_multi_ops(r: &mut Reader) -> MultiOps {
    let mut ops = Vec::new();
    loop {
        let header = MultiHeader::decode(r).map_err(MultiDecodeError::Malformed)?;
        if header.done {
            break;
        }
        let malformed = MultiDecodeError::Malformed;
        let op = match OpCode::from_code(header.opcode) {
            Some(opcode @ (OpCode::Create | OpCode::Create2 | OpCode::CreateContainer)) => {
                let request = CreateRequest::decode_with_ttl(false, r).map_err(malformed)?;
                if CreateMode::from_code(request.flags).is_none() {
                    return Err(MultiDecodeError::InvalidCreateFlag(request.flags));
                }
                MultiOp::Create { opcode, request }
            }
            Some(OpCode::CreateTtl) => MultiOp::Create {
                opcode: OpCode::CreateTtl,
                request: CreateRequest::decode_with_ttl(true, r).map_err(malformed)?,
            },
            Some(OpCode::Delete) => MultiOp::Delete(Decode::decode(r).map_err(malformed)?),
            Some(OpCode::SetData) => MultiOp::SetData(Decode::decode(r).map_err(malformed)?),
            Some(OpCode::Check) => MultiOp::Check(Decode::decode(r).map_err(malformed)?),
            Some(OpCode::GetData) => MultiOp::GetData(Decode::decode(r).map_err(malformed)?),
            Some(OpCode::GetChildren) => {
                MultiOp::GetChildren(Decode::decode(r).map_err(malformed)?)
            }
            _ => return Err(MultiDecodeError::InvalidOpType(header.opcode)),
        };
        if let Some(first) = ops.first() {
            if MultiOp::is_read(first) != op.is_read() {
                return Err(MultiDecodeError::MixedKinds);
            }
        }
        ops.push(op);
    }
    Ok(ops)
}

fn encode_multi_ops(ops: &[MultiOp], out: &mut BytesMut) {
    for op in ops {
        MultiHeader {
            opcode: op.opcode().code(),
            done: false,
            err: -1,
        }
        .encode(out);
        op.encode(out);
    }
    MULTI_END.encode(out);
}

/// The header that closes every multi request and response.
pub const MULTI_END: MultiHeader = MultiHeader {
    opcode: -1,
    done: true,
    err: -1,
};

/// A decoded client request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// create, create2, createContainer or createTTL (`opcode` says which).
    Create {
        opcode: OpCode,
        request: CreateRequest,
    },
    Delete(DeleteRequest),
    Exists(PathWatchRequest),
    GetData(PathWatchRequest),
    SetData(SetDataRequest),
    GetAcl(PathRequest),
    SetAcl(SetAclRequest),
    GetChildren(PathWatchRequest),
    GetChildren2(PathWatchRequest),
    Sync(PathRequest),
    Ping,
    Check(CheckVersionRequest),
    Multi(MultiOps),
    MultiRead(MultiOps),
    Reconfig(ReconfigRequest),
    CheckWatches(WatchesRequest),
    RemoveWatches(WatchesRequest),
    DeleteContainer(PathRequest),
    Auth(AuthPacket),
    SetWatches(SetWatches),
    SetWatches2(SetWatches2),
    Sasl(SaslToken),
    GetEphemerals(PathRequest),
    GetAllChildrenNumber(PathRequest),
    AddWatch(AddWatchRequest),
    WhoAmI,
    CloseSession,
}

/// Why a request frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestDecodeError {
    #[error("unknown opcode {0}")]
    UnknownOpcode(i32),
    #[error("malformed {op} request: {err}")]
    Malformed { op: &'static str, err: DecodeError },
}

impl Request {
    pub fn opcode(&self) -> OpCode {
        match self {
            Request::Create { opcode, .. } => *opcode,
            Request::Delete(_) => OpCode::Delete,
            Request::Exists(_) => OpCode::Exists,
            Request::GetData(_) => OpCode::GetData,
            Request::SetData(_) => OpCode::SetData,
            Request::GetAcl(_) => OpCode::GetAcl,
            Request::SetAcl(_) => OpCode::SetAcl,
            Request::GetChildren(_) => OpCode::GetChildren,
            Request::GetChildren2(_) => OpCode::GetChildren2,
            Request::Sync(_) => OpCode::Sync,
            Request::Ping => OpCode::Ping,
            Request::Check(_) => OpCode::Check,
            Request::Multi(_) => OpCode::Multi,
            Request::MultiRead(_) => OpCode::MultiRead,
            Request::Reconfig(_) => OpCode::Reconfig,
            Request::CheckWatches(_) => OpCode::CheckWatches,
            Request::RemoveWatches(_) => OpCode::RemoveWatches,
            Request::DeleteContainer(_) => OpCode::DeleteContainer,
            Request::Auth(_) => OpCode::Auth,
            Request::SetWatches(_) => OpCode::SetWatches,
            Request::SetWatches2(_) => OpCode::SetWatches2,
            Request::Sasl(_) => OpCode::Sasl,
            Request::GetEphemerals(_) => OpCode::GetEphemerals,
            Request::GetAllChildrenNumber(_) => OpCode::GetAllChildrenNumber,
            Request::AddWatch(_) => OpCode::AddWatch,
            Request::WhoAmI => OpCode::WhoAmI,
            Request::CloseSession => OpCode::CloseSession,
        }
    }

    /// Decodes the record after the header. The whole payload must be consumed,
    /// except for closeSession, ping and whoAmI, whose bodies are ignored.
    pub fn decode(opcode: i32, body: Bytes) -> Result<Request, RequestDecodeError> {
        let op = OpCode::from_code(opcode).ok_or(RequestDecodeError::UnknownOpcode(opcode))?;
        let mut r = Reader::new(body);
        let malformed = |err| RequestDecodeError::Malformed {
            op: op.zk_name(),
            err,
        };
        let request = match op {
            OpCode::Create | OpCode::Create2 | OpCode::CreateContainer | OpCode::CreateTtl => {
                Request::Create {
                    opcode: op,
                    request: CreateRequest::decode_with_ttl(op == OpCode::CreateTtl, &mut r)
                        .map_err(malformed)?,
                }
            }
            OpCode::Delete => Request::Delete(Decode::decode(&mut r).map_err(malformed)?),
            OpCode::Exists => Request::Exists(Decode::decode(&mut r).map_err(malformed)?),
            OpCode::GetData => Request::GetData(Decode::decode(&mut r).map_err(malformed)?),
            OpCode::SetData => Request::SetData(Decode::decode(&mut r).map_err(malformed)?),
            OpCode::GetAcl => Request::GetAcl(Decode::decode(&mut r).map_err(malformed)?),
            OpCode::SetAcl => Request::SetAcl(Decode::decode(&mut r).map_err(malformed)?),
            OpCode::GetChildren => Request::GetChildren(Decode::decode(&mut r).map_err(malformed)?),
            OpCode::GetChildren2 => {
                Request::GetChildren2(Decode::decode(&mut r).map_err(malformed)?)
            }
            OpCode::Sync => Request::Sync(Decode::decode(&mut r).map_err(malformed)?),
            OpCode::Check => Request::Check(Decode::decode(&mut r).map_err(malformed)?),
            OpCode::Multi => return Ok(Request::Multi(decode_multi_ops(&mut r))),
            OpCode::MultiRead => return Ok(Request::MultiRead(decode_multi_ops(&mut r))),
            OpCode::Reconfig => Request::Reconfig(Decode::decode(&mut r).map_err(malformed)?),
            OpCode::CheckWatches => {
                Request::CheckWatches(Decode::decode(&mut r).map_err(malformed)?)
            }
            OpCode::RemoveWatches => {
                Request::RemoveWatches(Decode::decode(&mut r).map_err(malformed)?)
            }
            OpCode::DeleteContainer => {
                Request::DeleteContainer(Decode::decode(&mut r).map_err(malformed)?)
            }
            OpCode::Auth => Request::Auth(Decode::decode(&mut r).map_err(malformed)?),
            OpCode::SetWatches => Request::SetWatches(Decode::decode(&mut r).map_err(malformed)?),
            OpCode::SetWatches2 => Request::SetWatches2(Decode::decode(&mut r).map_err(malformed)?),
            OpCode::Sasl => Request::Sasl(Decode::decode(&mut r).map_err(malformed)?),
            OpCode::GetEphemerals => {
                Request::GetEphemerals(Decode::decode(&mut r).map_err(malformed)?)
            }
            OpCode::GetAllChildrenNumber => {
                Request::GetAllChildrenNumber(Decode::decode(&mut r).map_err(malformed)?)
            }
            OpCode::AddWatch => Request::AddWatch(Decode::decode(&mut r).map_err(malformed)?),
            OpCode::Ping => return Ok(Request::Ping),
            OpCode::WhoAmI => return Ok(Request::WhoAmI),
            OpCode::CloseSession => return Ok(Request::CloseSession),
            OpCode::Notification | OpCode::CreateSession | OpCode::Error => {
                return Err(RequestDecodeError::UnknownOpcode(opcode))
            }
        };
        r.finish().map_err(malformed)?;
        Ok(request)
    }

    /// Encodes the record after the header.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Request::Create { opcode, request } => {
                request.encode_with_ttl(*opcode == OpCode::CreateTtl, out)
            }
            Request::Delete(r) => r.encode(out),
            Request::Exists(r)
            | Request::GetData(r)
            | Request::GetChildren(r)
            | Request::GetChildren2(r) => r.encode(out),
            Request::SetData(r) => r.encode(out),
            Request::GetAcl(r)
            | Request::Sync(r)
            | Request::DeleteContainer(r)
            | Request::GetEphemerals(r)
            | Request::GetAllChildrenNumber(r) => r.encode(out),
            Request::SetAcl(r) => r.encode(out),
            Request::Check(r) => r.encode(out),
            Request::Multi(ops) | Request::MultiRead(ops) => {
                // A request we could not read is never re-encoded; encode what we have.
                encode_multi_ops(ops.as_deref().unwrap_or_default(), out)
            }
            Request::Reconfig(r) => r.encode(out),
            Request::CheckWatches(r) | Request::RemoveWatches(r) => r.encode(out),
            Request::Auth(r) => r.encode(out),
            Request::SetWatches(r) => r.encode(out),
            Request::SetWatches2(r) => r.encode(out),
            Request::Sasl(r) => r.encode(out),
            Request::AddWatch(r) => r.encode(out),
            Request::Ping | Request::WhoAmI | Request::CloseSession => {}
        }
    }

    /// A whole frame: length prefix, header and record.
    pub fn encode_frame(&self, xid: i32, out: &mut BytesMut) {
        let start = out.len();
        out.put_jute_i32(0);
        RequestHeader {
            xid,
            opcode: self.opcode().code(),
        }
        .encode(out);
        self.encode(out);
        crate::frame::patch_length(out, start);
    }

    /// Whether this request changes state and so becomes a log entry.
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Request::Create { .. }
                | Request::Delete(_)
                | Request::SetData(_)
                | Request::SetAcl(_)
                | Request::Check(_)
                | Request::Multi(_)
                | Request::Reconfig(_)
                | Request::DeleteContainer(_)
                | Request::CloseSession
        )
    }
}
