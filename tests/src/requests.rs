//! Request builders and reply readers shared by the tests.

use std::time::{Duration, Instant};

use bytes::Bytes;
use roost_proto::*;

use crate::raw::Frame;

/// A world-open create (opcode `create`).
pub fn create(path: &str, data: impl AsRef<[u8]>, mode: CreateMode) -> Request {
    Request::Create {
        opcode: OpCode::Create,
        request: CreateRequest {
            path: path.into(),
            data: Some(Bytes::copy_from_slice(data.as_ref())),
            acl: vec![Acl::new(perms::ALL, "world", "anyone")],
            flags: mode.code(),
            ttl: -1,
        },
    }
}

pub fn get(path: &str, watch: bool) -> Request {
    Request::GetData(PathWatchRequest {
        path: path.into(),
        watch,
    })
}

pub fn exists(path: &str, watch: bool) -> Request {
    Request::Exists(PathWatchRequest {
        path: path.into(),
        watch,
    })
}

pub fn children(path: &str) -> Request {
    Request::GetChildren(PathWatchRequest {
        path: path.into(),
        watch: false,
    })
}

/// setData; `version` -1 for any.
pub fn set(path: &str, data: &[u8], version: i32) -> Request {
    Request::SetData(SetDataRequest {
        path: path.into(),
        data: Some(Bytes::copy_from_slice(data)),
        version,
    })
}

pub fn sync(path: &str) -> Request {
    Request::Sync(PathRequest { path: path.into() })
}

/// The data of a successful getData reply.
pub fn data_of(frame: Frame) -> Option<Bytes> {
    match frame {
        Frame::Reply {
            err: 0,
            body: Some(Response::GetData(data, _)),
            ..
        } => data,
        _ => None,
    }
}

/// The stat of a successful exists/setData/getData reply.
pub fn stat_of(frame: &Frame) -> Option<Stat> {
    match frame {
        Frame::Reply {
            err: 0,
            body: Some(Response::Stat(stat) | Response::GetData(_, stat)),
            ..
        } => Some(stat.clone()),
        _ => None,
    }
}

/// The body of a successful reply; panics (failing the test) otherwise.
pub fn ok_body(frame: Frame) -> Response {
    match frame {
        Frame::Reply {
            err: 0,
            body: Some(body),
            ..
        } => body,
        Frame::Reply { err: 0, .. } => Response::Empty,
        other => panic!("expected success, got {other:?}"),
    }
}

/// The zxid in a reply's or notification's header.
pub fn reply_zxid(frame: &Frame) -> i64 {
    match frame {
        Frame::Reply { zxid, .. } | Frame::Notification { zxid, .. } => *zxid,
    }
}

/// Polls `check` until it holds or `limit` passes (for work done by background timers).
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}
