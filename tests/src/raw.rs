//! A deliberately simple, blocking client speaking raw frames: tests use it to
//! send exact bytes and to see every frame the server sends back, in order.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::{Buf, Bytes, BytesMut};
use roost_proto::frame::split_frame;
use roost_proto::{
    xid, ConnectRequest, ConnectResponse, Decode, Encode, ErrorCode, EventType, OpCode, Reader,
    ReplyHeader, Request, Response, WatcherEvent,
};

/// One frame from the server, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Reply {
        xid: i32,
        zxid: i64,
        err: i32,
        body: Option<Response>,
    },
    Notification {
        zxid: i64,
        event: EventType,
        path: String,
    },
}

impl Frame {
    pub fn err(&self) -> Option<ErrorCode> {
        match self {
            Frame::Reply { err, .. } => ErrorCode::from_code(*err),
            Frame::Notification { .. } => None,
        }
    }
}

pub struct RawClient {
    stream: TcpStream,
    buf: BytesMut,
    next_xid: i32,
    /// Opcode of each request awaiting its reply, to decode the body.
    pending: HashMap<i32, OpCode>,
    pub session_id: i64,
    pub password: Bytes,
    pub timeout_ms: i32,
    /// Every notification received so far, in order.
    pub events: Vec<Frame>,
}

/// How long a test waits for any one frame before calling it lost.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

impl RawClient {
    /// Opens a TCP connection without a handshake.
    pub fn open(addr: SocketAddr) -> anyhow::Result<RawClient> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(RawClient {
            stream,
            buf: BytesMut::new(),
            next_xid: 1,
            pending: HashMap::new(),
            session_id: 0,
            password: Bytes::from_static(&[0; 16]),
            timeout_ms: 0,
            events: Vec::new(),
        })
    }

    /// Connects and creates a new session.
    pub fn connect(addr: SocketAddr) -> anyhow::Result<RawClient> {
        Self::connect_as(addr, 0, Bytes::from_static(&[0; 16]), 30_000)
    }

    /// Connects with the given session (0 for a new one); fails if refused.
    pub fn connect_as(
        addr: SocketAddr,
        session_id: i64,
        password: Bytes,
        timeout_ms: i32,
    ) -> anyhow::Result<RawClient> {
        let mut client = Self::open(addr)?;
        let response = client
            .handshake(&ConnectRequest {
                protocol_version: 0,
                last_zxid_seen: 0,
                timeout_ms,
                session_id,
                passwd: password,
                read_only: Some(false),
            })?
            .ok_or_else(|| anyhow!("server closed instead of answering the handshake"))?;
        if response.session_id == 0 {
            bail!("session refused");
        }
        Ok(client)
    }

    /// Sends a ConnectRequest; the response, or `None` if the server closed.
    pub fn handshake(
        &mut self,
        request: &ConnectRequest,
    ) -> anyhow::Result<Option<ConnectResponse>> {
        let mut out = BytesMut::new();
        request.encode_framed(&mut out);
        self.stream.write_all(&out)?;
        let Some(payload) = self.read_payload()? else {
            return Ok(None);
        };
        let response = ConnectResponse::from_bytes(payload)?;
        self.session_id = response.session_id;
        self.password = response.passwd.clone();
        self.timeout_ms = response.timeout_ms;
        Ok(Some(response))
    }

    /// Caps the socket's receive buffer (which also stops the kernel from
    /// growing it), so a client that does not read soon pushes back on the
    /// server: the way to play a slow consumer whatever the host's TCP tuning.
    pub fn set_receive_buffer(&self, bytes: usize) -> anyhow::Result<()> {
        use std::os::fd::AsRawFd;
        let value = libc::c_int::try_from(bytes)?;
        // SAFETY: a valid socket descriptor and a c_int option of the size given.
        let rc = unsafe {
            libc::setsockopt(
                self.stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            bail!("setsockopt(SO_RCVBUF): {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// How long any one read may wait (default [`READ_TIMEOUT`]).
    pub fn set_read_timeout(&self, limit: Duration) -> anyhow::Result<()> {
        self.stream.set_read_timeout(Some(limit))?;
        Ok(())
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.stream.write_all(bytes)?;
        Ok(())
    }

    /// Sends a request with an explicit xid without waiting.
    pub fn send_with_xid(&mut self, xid: i32, request: &Request) -> anyhow::Result<()> {
        let mut out = BytesMut::new();
        request.encode_frame(xid, &mut out);
        self.pending.insert(xid, request.opcode());
        self.send_bytes(&out)
    }

    /// Sends a request with the next xid; returns the xid.
    pub fn send(&mut self, request: &Request) -> anyhow::Result<i32> {
        let xid = match request {
            Request::Ping => xid::PING,
            Request::Auth(_) => xid::AUTH,
            _ => {
                self.next_xid += 1;
                self.next_xid - 1
            }
        };
        self.send_with_xid(xid, request)?;
        Ok(xid)
    }

    /// Sends requests (next xids) in one write, so the server receives them
    /// together; returns their xids.
    pub fn send_together(&mut self, requests: &[Request]) -> anyhow::Result<Vec<i32>> {
        let mut out = BytesMut::new();
        let mut xids = Vec::with_capacity(requests.len());
        for request in requests {
            let xid = self.next_xid;
            self.next_xid += 1;
            request.encode_frame(xid, &mut out);
            self.pending.insert(xid, request.opcode());
            xids.push(xid);
        }
        self.send_bytes(&out)?;
        Ok(xids)
    }

    /// Sends a request and waits for its reply; notifications that arrive
    /// first are kept in `events`.
    pub fn call(&mut self, request: &Request) -> anyhow::Result<Frame> {
        let xid = self.send(request)?;
        self.reply_to(xid)
    }

    /// Waits for the reply with `xid`.
    pub fn reply_to(&mut self, xid: i32) -> anyhow::Result<Frame> {
        loop {
            match self.next_frame()? {
                Some(frame @ Frame::Reply { xid: got, .. }) if got == xid => return Ok(frame),
                Some(Frame::Reply { xid: got, .. }) => {
                    bail!("reply to xid {got} while waiting for {xid}")
                }
                Some(event) => self.events.push(event),
                None => bail!("connection closed while waiting for xid {xid}"),
            }
        }
    }

    /// Reads the next frame; `None` when the server closed the connection.
    pub fn next_frame(&mut self) -> anyhow::Result<Option<Frame>> {
        let Some(payload) = self.read_payload()? else {
            return Ok(None);
        };
        let mut r = Reader::new(payload);
        let header = ReplyHeader::decode(&mut r)?;
        if header.xid == xid::NOTIFICATION {
            let event = WatcherEvent::decode(&mut r)?;
            return Ok(Some(Frame::Notification {
                zxid: header.zxid,
                event: EventType::from_code(event.event_type)
                    .ok_or_else(|| anyhow!("bad event type {}", event.event_type))?,
                path: event.path,
            }));
        }
        let opcode = self.pending.remove(&header.xid);
        let rest = r.read_rest();
        let body = match opcode {
            _ if rest.is_empty() => None,
            Some(op) => Some(Response::decode(op, rest)?),
            None => bail!("reply to unknown xid {}", header.xid),
        };
        Ok(Some(Frame::Reply {
            xid: header.xid,
            zxid: header.zxid,
            err: header.err,
            body,
        }))
    }

    /// Waits for the next notification (one already received counts).
    pub fn next_event(&mut self) -> anyhow::Result<Frame> {
        if !self.events.is_empty() {
            return Ok(self.events.remove(0));
        }
        match self.next_frame()? {
            Some(event @ Frame::Notification { .. }) => Ok(event),
            other => bail!("expected a notification, got {other:?}"),
        }
    }

    /// True once the server has closed the connection (reads EOF or reset).
    pub fn is_closed_by_server(&mut self) -> bool {
        loop {
            match self.read_payload() {
                Ok(None) | Err(_) => return true,
                Ok(Some(_)) => continue,
            }
        }
    }

    fn read_payload(&mut self) -> anyhow::Result<Option<Bytes>> {
        loop {
            if let Some(frame) = split_frame(&mut self.buf, usize::MAX >> 1)? {
                return Ok(Some(frame));
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = match self.stream.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
                Err(e) => return Err(e).context("reading from server"),
            };
            if n == 0 {
                if self.buf.has_remaining() {
                    bail!("connection closed mid-frame");
                }
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads everything until the server closes (four-letter words).
    pub fn read_to_end(&mut self) -> anyhow::Result<String> {
        let mut text = Vec::new();
        text.extend_from_slice(&self.buf);
        self.stream.read_to_end(&mut text)?;
        Ok(String::from_utf8_lossy(&text).into_owned())
    }
}

/// Sends a four-letter word on a fresh connection and returns the answer.
pub fn four_letter_word(addr: SocketAddr, word: &str) -> anyhow::Result<String> {
    let mut client = RawClient::open(addr)?;
    client.send_bytes(word.as_bytes())?;
    client.read_to_end()
}
