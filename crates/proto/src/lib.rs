//! `roost-proto`: the ZooKeeper 3.9 client protocol (jute) as Rust types.
//!
//! - [`codec`]: jute primitives and the [`Encode`]/[`Decode`] traits;
//! - [`records`]: every client-facing record of `zookeeper.jute`;
//! - [`Request`] / [`Response`]: request and reply bodies chosen by opcode;
//! - [`consts`]: opcodes, error codes, permissions, create modes, event types;
//! - [`frame`]: length-prefixed framing with a bounded frame size and
//!   four-letter-word sniffing.
//!
//! No I/O and no async: the server and the client build on these types.

pub mod codec;
pub mod consts;
pub mod frame;
pub mod records;
pub mod request;
pub mod response;

pub use codec::{Decode, DecodeError, Encode, Reader};
pub use consts::{
    perms, xid, AddWatchMode, CreateMode, ErrorCode, EventType, KeeperState, OpCode, WatcherType,
};
pub use records::*;
pub use request::{MultiDecodeError, MultiOp, MultiOps, Request, RequestDecodeError, MULTI_END};
pub use response::{encode_notification, encode_reply, MultiResult, Response};
