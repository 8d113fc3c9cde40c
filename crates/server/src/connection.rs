//! One client connection: handshake, then requests in, replies and watch
//! events out.
//!
//! Ordering (ZooKeeper's guarantees, kept here):
//! - replies leave in the order requests arrived (FIFO per session);
//! - writes are proposed as soon as they arrive (pipelined); a read waits
//!   until every earlier write of this connection has been applied, so a
//!   client always reads its own writes;
//! - a read runs under the state read lock after draining this connection's
//!   inbox, so a watch event is always written before the reply to any read
//!   that can see the change that fired it.
//!
//! Bounds: frame size (`jute.maxbuffer`), requests in flight
//! (`maxOutstandingPerConnection`), bytes waiting to be written, watches held,
//! handshake time. A malformed frame closes this connection and nothing else.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use roost_core::{acl, Caller, Entry, Txn};
use roost_proto::frame::{four_letter_word, split_frame, FrameError};
use roost_proto::{
    encode_notification, encode_reply, AuthPacket, ClientInfo, ConnectRequest, ConnectResponse,
    Decode, DecodeError, Encode, ErrorCode, EventType, Id, KeeperState, OpCode, Reader,
    ReplyHeader, Request, RequestDecodeError, RequestHeader, Response, SetWatches2, WatcherEvent,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::shared::{wall_clock_ms, ConnEntry, ConnId, ConnMsg, Mailbox, Shared};
use crate::stats::ConnStats;

/// Stop reading requests while this many reply bytes wait to be written.
const OUT_BYTES_HIGH_WATER: usize = 4 << 20;
/// How long a closing connection may take to flush its last replies.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("no handshake within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("server shutting down")]
    ShuttingDown,
    #[error("session not created: {0}")]
    Refused(ErrorCode),
}

impl From<DecodeError> for ConnError {
    fn from(e: DecodeError) -> Self {
        ConnError::Malformed(e.to_string())
    }
}

/// A request received and not yet started.
struct Queued {
    xid: i32,
    incoming: Incoming,
    received: Instant,
}

enum Incoming {
    Request(Request),
    /// An unknown opcode or a lone `check`: ZooKeeper 3.9 answers
    /// Unimplemented and closes the connection.
    Unimplemented,
}

/// How a request is scheduled on its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Write,
    Read,
    Sync,
}

/// A write proposed and not yet applied (or a sync waiting for its barrier).
struct Pending {
    xid: i32,
    opcode: OpCode,
    received: Instant,
}

/// Serves one accepted TCP connection until it closes.
pub async fn serve(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let (mailbox, inbox) = Mailbox::new();
    let mut conn = Connection::new(shared, peer, mailbox, inbox);
    let (mut rd, mut wr) = stream.into_split();
    match conn.run(&mut rd, &mut wr).await {
        Ok(()) => debug!(conn = conn.id, %peer, "connection closed"),
        Err(ConnError::Io(e)) => debug!(conn = conn.id, %peer, "connection ended: {e}"),
        Err(e) => info!(
            "closing connection from {peer} (session 0x{:x}): {e}",
            conn.session_id
        ),
    }
    let _ = wr.shutdown().await;
    conn.unregister();
}

struct Connection {
    shared: Arc<Shared>,
    id: ConnId,
    peer: SocketAddr,
    session_id: i64,
    /// Shared with every entry this connection proposes.
    identities: Arc<[Id]>,
    inbox: mpsc::UnboundedReceiver<ConnMsg>,
    mailbox: Mailbox,
    stats: Arc<ConnStats>,
    inbuf: BytesMut,
    out: BytesMut,
    queue: VecDeque<Queued>,
    pending: VecDeque<Pending>,
    /// A `sync` is waiting for its read barrier: nothing after it starts.
    sync_pending: bool,
    closing: Option<&'static str>,
}

impl Connection {
    fn new(
        shared: Arc<Shared>,
        peer: SocketAddr,
        mailbox: Mailbox,
        inbox: mpsc::UnboundedReceiver<ConnMsg>,
    ) -> Self {
        let id = shared.next_conn_id();
        let identities: Arc<[Id]> =
            vec![Id::new("ip", peer.ip().to_canonical().to_string())].into();
        let stats = Arc::new(ConnStats::new(wall_clock_ms()));
        shared.registry().conns.insert(
            id,
            ConnEntry {
                mailbox: mailbox.clone(),
                identities: identities.clone(),
                session_id: 0,
                peer,
                stats: stats.clone(),
            },
        );
        Connection {
            shared,
            id,
            peer,
            session_id: 0,
            identities,
            inbox,
            mailbox,
            stats,
            inbuf: BytesMut::with_capacity(8 * 1024),
            out: BytesMut::with_capacity(8 * 1024),
            queue: VecDeque::new(),
            pending: VecDeque::new(),
            sync_pending: false,
            closing: None,
        }
    }

    fn unregister(&mut self) {
        self.shared.watches().remove_watcher(self.id);
        let mut registry = self.shared.registry();
        registry.conns.remove(&self.id);
        if registry.by_session.get(&self.session_id) == Some(&self.id) {
            registry.by_session.remove(&self.session_id);
        }
        drop(registry);
        self.shared
            .stats
            .outstanding
            .fetch_sub(self.pending.len() as i64, Ordering::Relaxed);
    }

    async fn run(
        &mut self,
        rd: &mut OwnedReadHalf,
        wr: &mut OwnedWriteHalf,
    ) -> Result<(), ConnError> {
        let (_, max_timeout_ms) = self.shared.config.session_timeout_bounds_ms();
        let handshake_limit = Duration::from_millis(max_timeout_ms.max(1000));
        let first = tokio::time::timeout(handshake_limit, self.read_first_frame(rd))
            .await
            .map_err(|_| ConnError::HandshakeTimeout(handshake_limit))??;
        let Some(first) = first else {
            // A four-letter word: answer with plain text and close.
            wr.write_all(&self.out).await?;
            return Ok(());
        };
        let request = ConnectRequest::from_bytes(first)?;
        if !self.handshake(request).await? {
            wr.write_all(&self.out).await?;
            return Ok(());
        }
        self.main_loop(rd, wr).await
    }

    /// Reads the first frame, or answers a four-letter word (then `None`).
    async fn read_first_frame(
        &mut self,
        rd: &mut OwnedReadHalf,
    ) -> Result<Option<Bytes>, ConnError> {
        loop {
            if self.inbuf.len() >= 4 {
                if let Some(word) = four_letter_word(&self.inbuf[..4]) {
                    let text = crate::fourlw::respond(word, &self.shared);
                    self.out.extend_from_slice(text.as_bytes());
                    return Ok(None);
                }
                if let Some(frame) =
                    split_frame(&mut self.inbuf, self.shared.config.max_frame_bytes)?
                {
                    return Ok(Some(frame));
                }
            }
            if rd.read_buf(&mut self.inbuf).await? == 0 {
                return Err(ConnError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// Creates or re-attaches the session. False when refused (the refusal, if
    /// any, is in `out`).
    async fn handshake(&mut self, request: ConnectRequest) -> Result<bool, ConnError> {
        let legacy = request.read_only.is_none();
        if let Some(consensus) = self.shared.consensus.get() {
            if !consensus.serving() {
                // As a ZooKeeper server outside the quorum: the client tries
                // another server.
                info!(
                    "refusing session request from {}: no leader with a quorum",
                    self.peer
                );
                return Ok(false);
            }
        }
        let last_zxid = self.shared.state().last_zxid();
        if request.last_zxid_seen > last_zxid {
            info!(
                "refusing session request from {}: client has seen zxid 0x{:x}, our last zxid is 0x{:x}; client must try another server",
                self.peer, request.last_zxid_seen, last_zxid
            );
            return Ok(false);
        }
        let timeout_ms = self.shared.config.negotiate_timeout_ms(request.timeout_ms);
        let (session_id, password) = if request.session_id == 0 {
            self.create_session(timeout_ms).await?
        } else {
            match self.reattach(&request, timeout_ms).await? {
                Some(password) => (request.session_id, password),
                None => {
                    ConnectResponse::refused(legacy).encode_framed(&mut self.out);
                    return Ok(false);
                }
            }
        };
        self.session_id = session_id;
        self.stats
            .timeout_ms
            .store(timeout_ms.into(), Ordering::Relaxed);
        {
            let mut registry = self.shared.registry();
            registry.by_session.insert(session_id, self.id);
            if let Some(entry) = registry.conns.get_mut(&self.id) {
                entry.session_id = session_id;
            }
        }
        ConnectResponse {
            protocol_version: 0,
            timeout_ms,
            session_id,
            passwd: password,
            read_only: if legacy { None } else { Some(false) },
        }
        .encode_framed(&mut self.out);
        Ok(true)
    }

    async fn create_session(&mut self, timeout_ms: i32) -> Result<(i64, Bytes), ConnError> {
        let session_id = self.shared.next_session_id();
        let password = Bytes::from(rand::random::<[u8; 16]>().to_vec());
        let txn = Txn::CreateSession {
            timeout_ms,
            password: password.clone(),
        };
        self.commit_session_txn(session_id, txn)
            .await?
            .map_err(ConnError::Refused)?;
        Ok((session_id, password))
    }

    /// Proposes a session transaction made during the handshake and waits
    /// for its outcome (nothing else is pending on this connection yet).
    async fn commit_session_txn(
        &mut self,
        session_id: i64,
        txn: Txn,
    ) -> Result<Result<(), ErrorCode>, ConnError> {
        self.propose(Entry {
            time_ms: 0,
            session_id,
            cxid: 0,
            identities: self.identities.clone(),
            origin: self.id,
            txn,
        })
        .await?;
        loop {
            let msg = self.inbox.recv().await;
            if msg.is_some() {
                self.mailbox.taken();
            }
            match msg {
                Some(ConnMsg::Completed { result, .. }) => return Ok(result.map(|_| ())),
                Some(ConnMsg::Close(_)) | None => return Err(ConnError::ShuttingDown),
                Some(ConnMsg::Notify { .. }) => {}
            }
        }
    }

    /// Re-attaches an existing session; `None` if it is unknown or the
    /// password is wrong. Like ZooKeeper, the connection currently holding the
    /// session on this server is closed first, whatever the outcome. A
    /// session arriving from another server of the ensemble is first caught
    /// up on (it may be younger than what this server applied) and then
    /// moved here, so writes still in flight through its old server fail.
    async fn reattach(
        &mut self,
        request: &ConnectRequest,
        timeout_ms: i32,
    ) -> Result<Option<Bytes>, ConnError> {
        let id = request.session_id;
        {
            let mut registry = self.shared.registry();
            if let Some(old) = registry.by_session.remove(&id) {
                if let Some(entry) = registry.conns.get(&old) {
                    entry.send(ConnMsg::Close("session moved to a new connection"));
                }
            }
        }
        let ensemble = self.shared.config.is_ensemble();
        let mut session = self.shared.state().session(id).cloned();
        if session.is_none() && ensemble {
            if let Some(consensus) = self.shared.consensus.get() {
                // An error leaves the session unknown: refused below.
                let _ = consensus.read_barrier().await;
            }
            session = self.shared.state().session(id).cloned();
        }
        let session = match session {
            Some(s) if s.password == request.passwd => s,
            Some(_) => {
                info!("session 0x{id:x} from {}: wrong password", self.peer);
                return Ok(None);
            }
            None => {
                info!("session 0x{id:x} from {}: expired or unknown", self.peer);
                return Ok(None);
            }
        };
        if ensemble && session.owner != self.shared.server_id {
            if let Err(code) = self.commit_session_txn(id, Txn::MoveSession).await? {
                info!(
                    "session 0x{id:x} from {}: not moved here ({code:?})",
                    self.peer
                );
                return Ok(None);
            }
        }
        let mut tracker = self.shared.tracker();
        if !tracker.touch(id) {
            tracker.add(id, timeout_ms);
        }
        Ok(Some(session.password))
    }

    async fn main_loop(
        &mut self,
        rd: &mut OwnedReadHalf,
        wr: &mut OwnedWriteHalf,
    ) -> Result<(), ConnError> {
        let max_in_flight = self.shared.config.max_outstanding_per_connection.max(1);
        let max_frame = self.shared.config.max_frame_bytes;
        let mut close_deadline: Option<tokio::time::Instant> = None;
        loop {
            if self.closing.is_some() {
                if self.out.is_empty() {
                    return Ok(());
                }
                close_deadline
                    .get_or_insert_with(|| tokio::time::Instant::now() + CLOSE_FLUSH_TIMEOUT);
            }
            let accepting = self.closing.is_none()
                && self.queue.len() + self.pending.len() < max_in_flight
                && self.out.len() < OUT_BYTES_HIGH_WATER;
            tokio::select! {
                msg = self.inbox.recv() => {
                    match msg {
                        Some(msg) => self.on_message(msg),
                        None => return Err(ConnError::ShuttingDown),
                    }
                    // Take everything already queued so its replies go out in one write.
                    while let Ok(msg) = self.inbox.try_recv() {
                        self.on_message(msg);
                    }
                    self.pump().await?;
                }
                written = wr.write_buf(&mut self.out), if !self.out.is_empty() => {
                    written?;
                }
                read = rd.read_buf(&mut self.inbuf), if accepting => {
                    if read? == 0 {
                        return Ok(());
                    }
                    while let Some(frame) = split_frame(&mut self.inbuf, max_frame)? {
                        self.on_frame(frame)?;
                    }
                    self.pump().await?;
                }
                _ = tokio::time::sleep_until(close_deadline.unwrap_or_else(tokio::time::Instant::now)), if close_deadline.is_some() => {
                    return Ok(());
                }
            }
        }
    }

    fn on_frame(&mut self, payload: Bytes) -> Result<(), ConnError> {
        let mut r = Reader::new(payload);
        let header = RequestHeader::decode(&mut r)?;
        let received = Instant::now();
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        self.shared
            .stats
            .packets_received
            .fetch_add(1, Ordering::Relaxed);
        self.shared.tracker().touch(self.session_id);
        let incoming = match Request::decode(header.opcode, r.read_rest()) {
            Ok(Request::Check(_)) | Err(RequestDecodeError::UnknownOpcode(_)) => {
                warn!(
                    "session 0x{:x}: unsupported request type {}",
                    self.session_id, header.opcode
                );
                Incoming::Unimplemented
            }
            Ok(request) => Incoming::Request(request),
            Err(e) => return Err(ConnError::Malformed(e.to_string())),
        };
        self.queue.push_back(Queued {
            xid: header.xid,
            incoming,
            received,
        });
        Ok(())
    }

    /// Starts queued requests in order: writes at once, reads only when no
    /// earlier write is still pending, a `sync` alone.
    async fn pump(&mut self) -> Result<(), ConnError> {
        while self.closing.is_none() && !self.sync_pending {
            let Some(front) = self.queue.front() else {
                break;
            };
            let kind = match &front.incoming {
                Incoming::Request(r) if r.is_write() => Kind::Write,
                Incoming::Request(Request::Sync(_)) => Kind::Sync,
                _ => Kind::Read,
            };
            if kind != Kind::Write && !self.pending.is_empty() {
                break;
            }
            let Some(queued) = self.queue.pop_front() else {
                break;
            };
            match (kind, queued.incoming) {
                (Kind::Write, Incoming::Request(request)) => {
                    self.submit(queued.xid, request, queued.received).await?
                }
                (Kind::Sync, Incoming::Request(Request::Sync(r))) => {
                    self.start_sync(queued.xid, r.path, queued.received)
                }
                (_, incoming) => self.execute(queued.xid, incoming, queued.received),
            }
        }
        Ok(())
    }

    /// `sync`: answered once this server has applied everything the leader
    /// had committed (a read barrier), after every earlier request.
    fn start_sync(&mut self, xid: i32, path: String, received: Instant) {
        self.pending.push_back(Pending {
            xid,
            opcode: OpCode::Sync,
            received,
        });
        self.sync_pending = true;
        let shared = self.shared.clone();
        let mailbox = self.mailbox.clone();
        tokio::spawn(async move {
            let barrier = match shared.consensus.get() {
                Some(handle) => handle.read_barrier().await,
                None => Ok(()),
            };
            let zxid = shared.state().last_zxid();
            mailbox.send(ConnMsg::Completed {
                cxid: xid,
                zxid,
                result: barrier.map(|()| Response::Sync(path)),
            });
        });
    }

    async fn submit(
        &mut self,
        xid: i32,
        request: Request,
        received: Instant,
    ) -> Result<(), ConnError> {
        if self.shared.config.eager_acl_check {
            if let Err(code) = self.eager_acl_check(&request) {
                self.reply(xid, 0, Err(code), received, OpCode::Error);
                return Ok(());
            }
        }
        let opcode = request.opcode();
        let txn = match request {
            Request::CloseSession => Txn::CloseSession,
            Request::Multi(Err(e)) => {
                debug!("session 0x{:x}: unreadable multi: {e}", self.session_id);
                Txn::Fail(ErrorCode::MarshallingError)
            }
            other => Txn::Request(other),
        };
        self.pending.push_back(Pending {
            xid,
            opcode,
            received,
        });
        self.shared
            .stats
            .outstanding
            .fetch_add(1, Ordering::Relaxed);
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        self.propose(Entry {
            time_ms: 0,
            session_id: self.session_id,
            cxid: xid,
            identities: self.identities.clone(),
            origin: self.id,
            txn,
        })
        .await
    }

    async fn propose(&self, entry: Entry) -> Result<(), ConnError> {
        self.shared
            .proposals
            .send(entry)
            .await
            .map_err(|_| ConnError::ShuttingDown)
    }

    /// `zookeeper.enableEagerACLCheck`: refuse a write this server can already
    /// see is not permitted, without a transaction (reply zxid 0).
    fn eager_acl_check(&self, request: &Request) -> Result<(), ErrorCode> {
        use roost_proto::perms;
        let (path, perm) = match request {
            Request::Create { request, .. } => (
                roost_core::path::split(&request.path).map(|(p, _)| p),
                perms::CREATE,
            ),
            Request::Delete(r) => (
                roost_core::path::split(&r.path).map(|(p, _)| p),
                perms::DELETE,
            ),
            Request::SetData(r) => (Some(r.path.as_str()), perms::WRITE),
            Request::SetAcl(r) => {
                acl::fixup(&r.acl, &self.identities)?;
                (Some(r.path.as_str()), perms::ADMIN)
            }
            _ => (None, 0),
        };
        let Some(path) = path else {
            return Ok(());
        };
        let state = self.shared.state();
        match state.tree().get(path) {
            Some(node) => acl::check(&node.acl, perm, &self.identities),
            None => Ok(()),
        }
    }

    /// Answers a read or a session-level request. Runs with no write of this
    /// connection pending.
    fn execute(&mut self, xid: i32, incoming: Incoming, received: Instant) {
        let request = match incoming {
            Incoming::Unimplemented => {
                self.reply(
                    xid,
                    -1,
                    Err(ErrorCode::Unimplemented),
                    received,
                    OpCode::Error,
                );
                self.closing = Some("unimplemented request");
                return;
            }
            Incoming::Request(request) => request,
        };
        let opcode = request.opcode();
        match request {
            Request::Auth(packet) => self.authenticate(xid, packet, received),
            // No SASL here: an empty challenge, as ZooKeeper without SASL answers.
            Request::Sasl(_) => self.reply(xid, 0, Ok(Response::Sasl(None)), received, opcode),
            Request::SetWatches(w) => self.set_watches(
                xid,
                SetWatches2 {
                    relative_zxid: w.relative_zxid,
                    data_watches: w.data_watches,
                    exist_watches: w.exist_watches,
                    child_watches: w.child_watches,
                    persistent_watches: Vec::new(),
                    persistent_recursive_watches: Vec::new(),
                },
                received,
                opcode,
            ),
            Request::SetWatches2(w) => self.set_watches(xid, w, received, opcode),
            request => {
                let shared = self.shared.clone();
                let state = shared.state();
                self.drain_inbox();
                let zxid = state.last_zxid();
                let result = match &request {
                    Request::Ping => Ok(Response::Empty),
                    Request::WhoAmI => Ok(Response::WhoAmI(client_infos(&self.identities))),
                    _ => {
                        let mut watches = shared.watches();
                        if watches.count_for(self.id)
                            >= self.shared.config.max_watches_per_connection
                        {
                            warn!(
                                "session 0x{:x} holds too many watches; closing its connection",
                                self.session_id
                            );
                            self.closing = Some("too many watches");
                            return;
                        }
                        state.read(
                            &request,
                            Caller {
                                session_id: self.session_id,
                                identities: &self.identities,
                                watcher: self.id,
                            },
                            &mut watches,
                        )
                    }
                };
                drop(state);
                self.reply(xid, zxid, result, received, opcode);
            }
        }
    }

    fn set_watches(&mut self, xid: i32, request: SetWatches2, received: Instant, opcode: OpCode) {
        let shared = self.shared.clone();
        let state = shared.state();
        self.drain_inbox();
        let fired = state.set_watches(&request, self.id, &mut shared.watches());
        let zxid = state.last_zxid();
        drop(state);
        for (event, path) in fired {
            // Catch-up events carry zxid -1, even in 3.9.
            self.notify(-1, event, &path);
        }
        self.reply(xid, zxid, Ok(Response::Empty), received, opcode);
    }

    fn authenticate(&mut self, xid: i32, packet: AuthPacket, received: Instant) {
        if packet.scheme != "digest" {
            warn!(
                "session 0x{:x}: no authentication provider for scheme {:?}",
                self.session_id, packet.scheme
            );
            self.shared
                .stats
                .auth_failed
                .fetch_add(1, Ordering::Relaxed);
            self.reply(xid, 0, Err(ErrorCode::AuthFailed), received, OpCode::Auth);
            self.closing = Some("authentication failed");
            return;
        }
        let super_digest = self.shared.config.super_digest.as_deref();
        let mut identities = self.identities.to_vec();
        for id in acl::digest_identities(&packet.auth, super_digest) {
            if !identities.contains(&id) {
                identities.push(id);
            }
        }
        if !roost_core::identities_within_bounds(&identities) {
            // Every write carries the caller's identities into the log, so
            // they are bounded like requests are.
            warn!(
                "session 0x{:x}: authentication refused: more than {} identities or {} bytes of them",
                self.session_id,
                roost_core::IDENTITIES_MAX,
                roost_core::IDENTITY_BYTES_MAX
            );
            self.reply(xid, 0, Err(ErrorCode::AuthFailed), received, OpCode::Auth);
            self.closing = Some("too many identities");
            return;
        }
        self.identities = identities.into();
        if let Some(entry) = self.shared.registry().conns.get_mut(&self.id) {
            entry.identities = self.identities.clone();
        }
        info!(
            "session 0x{:x}: auth success for scheme digest and address {}",
            self.session_id, self.peer
        );
        self.reply(xid, 0, Ok(Response::Empty), received, OpCode::Auth);
    }

    /// Handles everything queued for this connection so far. Called with the
    /// state read lock held, so no entry is applied meanwhile.
    fn drain_inbox(&mut self) {
        while let Ok(msg) = self.inbox.try_recv() {
            self.on_message(msg);
        }
    }

    fn on_message(&mut self, msg: ConnMsg) {
        self.mailbox.taken();
        match msg {
            ConnMsg::Notify { zxid, event, path } => self.notify(zxid, event, &path),
            ConnMsg::Completed { cxid, zxid, result } => {
                let Some(pending) = self.pending.pop_front() else {
                    warn!(
                        "session 0x{:x}: reply for xid {cxid} with nothing pending",
                        self.session_id
                    );
                    self.closing = Some("reply out of order");
                    return;
                };
                if pending.xid != cxid {
                    // A broken ordering invariant: never send a client a reply
                    // under the wrong xid.
                    warn!(
                        "session 0x{:x}: reply for xid {cxid} while xid {} was first; closing",
                        self.session_id, pending.xid
                    );
                    self.closing = Some("reply out of order");
                    return;
                }
                if pending.opcode == OpCode::Sync {
                    self.sync_pending = false;
                }
                if matches!(result, Err(ErrorCode::SessionMoved)) {
                    // As in ZooKeeper, a connection-level error: no reply, the
                    // client finds its session where it moved to.
                    self.closing = Some("session moved to another server");
                    return;
                }
                self.shared
                    .stats
                    .outstanding
                    .fetch_sub(1, Ordering::Relaxed);
                self.stats.queued.fetch_sub(1, Ordering::Relaxed);
                self.reply(pending.xid, zxid, result, pending.received, pending.opcode);
                if pending.opcode == OpCode::CloseSession {
                    self.closing = Some("session closed by the client");
                }
            }
            ConnMsg::Close(reason) => {
                if self.closing.is_none() {
                    self.closing = Some(reason);
                }
            }
        }
    }

    fn notify(&mut self, zxid: i64, event: EventType, path: &str) {
        encode_notification(
            zxid,
            &WatcherEvent {
                event_type: event.code(),
                state: KeeperState::SyncConnected.code(),
                path: path.to_string(),
            },
            &mut self.out,
        );
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        self.shared
            .stats
            .packets_sent
            .fetch_add(1, Ordering::Relaxed);
    }

    fn reply(
        &mut self,
        xid: i32,
        zxid: i64,
        result: Result<Response, ErrorCode>,
        received: Instant,
        opcode: OpCode,
    ) {
        let (err, body) = match result {
            Ok(body) => (0, body),
            Err(code) => (code.code(), Response::Empty),
        };
        let before = self.out.len();
        encode_reply(&ReplyHeader { xid, zxid, err }, &body, &mut self.out);
        let stats = &self.shared.stats;
        stats.packets_sent.fetch_add(1, Ordering::Relaxed);
        stats.record_response_size(self.out.len() - before);
        if opcode != OpCode::Ping && opcode != OpCode::Auth {
            stats.latency.record(received);
        }
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        self.stats.latency.record(received);
        self.stats.last_cxid.store(xid.into(), Ordering::Relaxed);
        self.stats.last_zxid.store(zxid, Ordering::Relaxed);
        self.stats
            .last_response_ms
            .store(wall_clock_ms(), Ordering::Relaxed);
        if let Ok(mut op) = self.stats.last_op.lock() {
            *op = last_op_name(opcode);
        }
    }
}

/// The four-letter op names `cons` shows (ZooKeeper's `lop`).
fn last_op_name(opcode: OpCode) -> &'static str {
    match opcode {
        OpCode::Ping => "PING",
        OpCode::Create | OpCode::Create2 | OpCode::CreateContainer | OpCode::CreateTtl => "CREA",
        OpCode::Delete => "DELE",
        OpCode::Exists => "EXIS",
        OpCode::GetData => "GETD",
        OpCode::SetData => "SETD",
        OpCode::GetAcl => "GETA",
        OpCode::SetAcl => "SETA",
        OpCode::GetChildren | OpCode::GetChildren2 => "GETC",
        OpCode::Sync => "SYNC",
        OpCode::Multi => "MULT",
        OpCode::MultiRead => "MLTR",
        OpCode::CloseSession => "CLOS",
        OpCode::SetWatches => "SETW",
        OpCode::SetWatches2 => "STW2",
        OpCode::AddWatch => "ADDW",
        OpCode::CheckWatches => "CHKW",
        OpCode::RemoveWatches => "REMW",
        OpCode::GetEphemerals => "GETE",
        OpCode::GetAllChildrenNumber => "GETACN",
        OpCode::WhoAmI => "HOMI",
        OpCode::Reconfig => "RECO",
        _ => "NA",
    }
}

/// whoAmI's list, in the order ZooKeeper iterates its identity set (a Java
/// `ConcurrentHashMap` of 16 bins keyed by `Id.hashCode`).
fn client_infos(identities: &[Id]) -> Vec<ClientInfo> {
    let mut ordered: Vec<(usize, usize, &Id)> = identities
        .iter()
        .enumerate()
        .map(|(i, id)| (java_set_bin(id), i, id))
        .collect();
    ordered.sort_by_key(|(bin, insertion, _)| (*bin, *insertion));
    ordered
        .into_iter()
        .map(|(_, _, id)| ClientInfo {
            auth_scheme: id.scheme.clone(),
            user: acl::user_name(id),
        })
        .collect()
}

fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(unit as i32))
}

fn java_set_bin(id: &Id) -> usize {
    let hash = 37i32
        .wrapping_mul(
            37i32
                .wrapping_mul(17)
                .wrapping_add(java_string_hash(&id.scheme)),
        )
        .wrapping_add(java_string_hash(&id.id));
    let spread = (hash ^ ((hash as u32) >> 16) as i32) & 0x7fff_ffff;
    (spread & 15) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whoami_order_matches_zookeeper() {
        // From the wire corpus: digest before ip for bob:pw from 127.0.0.1.
        let ids = vec![
            Id::new("ip", "127.0.0.1"),
            Id::new("digest", acl::digest_id(b"bob:pw")),
        ];
        let infos = client_infos(&ids);
        assert_eq!(infos[0].auth_scheme, "digest");
        assert_eq!(infos[0].user, "bob");
        assert_eq!(infos[1].user, "127.0.0.1");
        let ids = vec![
            Id::new("ip", "127.0.0.1"),
            Id::new("digest", acl::digest_id(b"no-colon-here")),
        ];
        assert_eq!(client_infos(&ids)[0].user, "no-colon-here");
    }

    #[test]
    fn java_string_hash_matches_known_values() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99_162_322);
    }
}
