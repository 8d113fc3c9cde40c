//! One client connection (mini-redis's `Handler`): the handshake, then
//! requests in, replies and watch events out.
//!
//! This module ties a connection to the server: it creates or re-attaches
//! the session, proposes writes, runs reads against the state, authenticates
//! and counts. The order requests run and answers go out in, and the
//! per-connection bounds, are the [`Scheduler`]'s; frames come off the wire
//! through [`FrameReader`].
//!
//! The one ordering rule that needs the shared state: a read runs under the
//! state read lock after this connection's inbox has been drained, so a watch
//! event is always written before the reply to any read that can see the
//! change that fired it.
//!
//! Bounds besides the scheduler's: the handshake frame and its time, watches
//! held (`maxWatchesPerConnection`, setWatches included), identities (see
//! `roost_core::IDENTITIES_MAX`), the inbox's bytes, and the server-wide
//! request budget. A malformed frame closes this connection and nothing else.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use roost_consensus::{MembershipTarget, Refusal};
use roost_core::{acl, Caller, Entry, Txn};
use roost_proto::{
    AuthPacket, ConnectRequest, ConnectResponse, Decode, DecodeError, Encode, ErrorCode, Id,
    OpCode, Reader, ReconfigRequest, Request, RequestDecodeError, RequestHeader, Response,
    SetWatches2,
};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::framing::{First, FrameReader, ReadError};
use crate::scheduler::{Incoming, Job, Limits, Scheduler, Ticket};
use crate::shared::{wall_clock_ms, ConnEntry, ConnId, ConnMsg, Mailbox, Shared};
use crate::stats::{last_op_name, ConnStats};

/// Stop reading requests while this many reply bytes wait to be written.
const OUT_PAUSE_BYTES: usize = 4 << 20;
/// Bytes of requests one connection may have in flight: several 1 MB writes.
const REQUEST_BYTES_IN_FLIGHT_MAX: usize = 8 << 20;
/// The largest reply sent (a multiRead of many large nodes could ask for more).
const REPLY_BYTES_MAX: usize = 64 << 20;
/// A ConnectRequest is some 50 bytes; this leaves room for any client's.
const HANDSHAKE_BYTES_MAX: usize = 64 << 10;
/// How long a closing connection may take to flush its last replies.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Read(#[from] ReadError),
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

/// Serves one accepted TCP connection until it closes.
pub(crate) async fn serve(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let mut reader = FrameReader::new(rd, shared.config.max_frame_bytes);
    let mut conn = Handler::new(shared, peer);
    match conn.run(&mut reader, &mut wr).await {
        Ok(()) => debug!(conn = conn.id, %peer, "connection closed"),
        Err(ConnError::Io(e)) => debug!(conn = conn.id, %peer, "connection ended: {e}"),
        Err(ConnError::Read(ReadError::Io(e))) => {
            debug!(conn = conn.id, %peer, "connection ended: {e}")
        }
        Err(e) => info!(
            "closing connection from {peer} (session 0x{:x}): {e}",
            conn.session_id
        ),
    }
    match conn.scheduler.closing() {
        Some(reason @ "session closed by the client") | Some(reason @ "unimplemented request") => {
            debug!(conn = conn.id, %peer, "closed: {reason}")
        }
        Some(reason) => info!(
            "closed the connection from {peer} (session 0x{:x}): {reason}",
            conn.session_id
        ),
        None => {}
    }
    let _ = wr.shutdown().await;
    conn.unregister();
}

struct Handler {
    shared: Arc<Shared>,
    id: ConnId,
    peer: SocketAddr,
    session_id: i64,
    /// Shared with every entry this connection proposes.
    identities: Arc<[Id]>,
    inbox: mpsc::UnboundedReceiver<ConnMsg>,
    mailbox: Mailbox,
    stats: Arc<ConnStats>,
    scheduler: Scheduler,
    /// A read-only session (see [`Handler::attach_read_only`]).
    read_only: bool,
}

impl Handler {
    fn new(shared: Arc<Shared>, peer: SocketAddr) -> Self {
        let config = &shared.config;
        let limits = Limits {
            requests_max: config.max_outstanding_per_connection,
            request_bytes_max: REQUEST_BYTES_IN_FLIGHT_MAX.max(config.max_frame_bytes),
            out_pause_bytes: OUT_PAUSE_BYTES,
            out_bytes_max: config.max_pending_bytes_per_connection,
            reply_bytes_max: REPLY_BYTES_MAX,
        };
        let (mailbox, inbox) = Mailbox::new(config.max_pending_bytes_per_connection);
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
                read_only: false,
            },
        );
        Handler {
            shared,
            id,
            peer,
            session_id: 0,
            identities,
            inbox,
            mailbox,
            stats,
            scheduler: Scheduler::new(limits),
            read_only: false,
        }
    }

    fn unregister(&mut self) {
        self.record_sent();
        self.shared.watches().remove_watcher(self.id);
        let mut registry = self.shared.registry();
        registry.conns.remove(&self.id);
        if registry.by_session.get(&self.session_id) == Some(&self.id) {
            registry.by_session.remove(&self.session_id);
        }
        drop(registry);
        self.shared
            .budget
            .give_back(self.scheduler.in_flight(), self.scheduler.request_bytes());
    }

    async fn run(
        &mut self,
        reader: &mut FrameReader,
        wr: &mut OwnedWriteHalf,
    ) -> Result<(), ConnError> {
        let (_, max_timeout_ms) = self.shared.config.session_timeout_bounds_ms();
        let handshake_limit = Duration::from_millis(max_timeout_ms.max(1000));
        let first = tokio::time::timeout(handshake_limit, reader.first(HANDSHAKE_BYTES_MAX))
            .await
            .map_err(|_| ConnError::HandshakeTimeout(handshake_limit))??;
        let request = match first {
            First::FourLetterWord(word) => {
                let text = crate::fourlw::respond(word, &self.shared);
                wr.write_all(text.as_bytes()).await?;
                return Ok(());
            }
            First::Frame(frame) => ConnectRequest::from_bytes(frame)?,
        };
        if !self.handshake(request).await? {
            wr.write_all(self.scheduler.out()).await?;
            return Ok(());
        }
        self.main_loop(reader, wr).await
    }

    /// Creates or re-attaches the session. False when refused (the refusal, if
    /// any, is queued for the client).
    async fn handshake(&mut self, request: ConnectRequest) -> Result<bool, ConnError> {
        let legacy = request.read_only.is_none();
        if !self.shared.serving() {
            if self.shared.read_only_mode() && request.read_only == Some(true) {
                return Ok(self.attach_read_only(&request));
            }
            // As a ZooKeeper server outside the quorum: the client tries
            // another server.
            info!(
                "refusing session request from {}: no leader with a quorum",
                self.peer
            );
            return Ok(false);
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
                    ConnectResponse::refused(legacy).encode_framed(self.scheduler.out());
                    return Ok(false);
                }
            }
        };
        self.accept_session(
            session_id,
            password,
            timeout_ms,
            if legacy { None } else { Some(false) },
        );
        Ok(true)
    }

    /// A read-only session, as ZooKeeper's read-only server gives one: made
    /// here and known only here (nothing can be logged without a quorum),
    /// or a session this server knows, re-attached read-only. It lasts as
    /// long as its connection; the connection closes when the quorum returns.
    fn attach_read_only(&mut self, request: &ConnectRequest) -> bool {
        let timeout_ms = self.shared.config.negotiate_timeout_ms(request.timeout_ms);
        let (session_id, password) = if request.session_id == 0 {
            (self.shared.next_session_id(), new_password())
        } else {
            match self.shared.state().session(request.session_id) {
                Some(s) if s.password == request.passwd => (request.session_id, s.password.clone()),
                _ => {
                    ConnectResponse::refused(false).encode_framed(self.scheduler.out());
                    return false;
                }
            }
        };
        info!(
            "read-only session 0x{session_id:x} for {} (no quorum)",
            self.peer
        );
        self.read_only = true;
        self.accept_session(session_id, password, timeout_ms, Some(true));
        true
    }

    /// Makes `session_id` this connection's and answers the handshake.
    fn accept_session(
        &mut self,
        session_id: i64,
        password: Bytes,
        timeout_ms: i32,
        read_only: Option<bool>,
    ) {
        ConnectResponse {
            protocol_version: 0,
            timeout_ms,
            session_id,
            passwd: password,
            read_only,
        }
        .encode_framed(self.scheduler.out());
        self.session_id = session_id;
        self.stats
            .timeout_ms
            .store(timeout_ms.into(), Ordering::Relaxed);
        let mut registry = self.shared.registry();
        registry.by_session.insert(session_id, self.id);
        if let Some(entry) = registry.conns.get_mut(&self.id) {
            entry.session_id = session_id;
            entry.read_only = self.read_only;
        }
    }

    async fn create_session(&mut self, timeout_ms: i32) -> Result<(i64, Bytes), ConnError> {
        let session_id = self.shared.next_session_id();
        let password = new_password();
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
            let Some(msg) = self.inbox.recv().await else {
                return Err(ConnError::ShuttingDown);
            };
            self.mailbox.taken(&msg);
            match msg {
                ConnMsg::Completed { result, .. } => return Ok(result.map(|_| ())),
                ConnMsg::Close(_) => return Err(ConnError::ShuttingDown),
                ConnMsg::Notify { .. } => {}
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

    /// Whether another request may be taken: within this connection's
    /// bounds and, past the server-wide request budget, only with none in
    /// flight (so every connection can always get one request in).
    fn accepting(&self) -> bool {
        self.scheduler.accepting()
            && (self.scheduler.in_flight() == 0 || !self.shared.budget.exhausted())
    }

    async fn main_loop(
        &mut self,
        reader: &mut FrameReader,
        wr: &mut OwnedWriteHalf,
    ) -> Result<(), ConnError> {
        let mut close_deadline: Option<tokio::time::Instant> = None;
        loop {
            if self.scheduler.closing().is_some() {
                if self.scheduler.out().is_empty() {
                    return Ok(());
                }
                close_deadline
                    .get_or_insert_with(|| tokio::time::Instant::now() + CLOSE_FLUSH_TIMEOUT);
            }
            // Take the requests already received, one at a time while the
            // bounds allow: past them, the rest wait in the socket.
            let mut took = false;
            while self.accepting() {
                let Some(frame) = reader.next_frame()? else {
                    break;
                };
                self.on_frame(frame)?;
                took = true;
            }
            if took {
                self.pump().await?;
                continue;
            }
            let accepting = self.accepting();
            let writing = !self.scheduler.out().is_empty();
            tokio::select! {
                msg = self.inbox.recv() => {
                    let Some(msg) = msg else {
                        return Err(ConnError::ShuttingDown);
                    };
                    self.on_message(msg);
                    // Take everything already queued so its replies go out in one write.
                    self.drain_inbox();
                    self.pump().await?;
                }
                written = wr.write_buf(self.scheduler.out()), if writing => {
                    written?;
                    self.scheduler.release_written_buffer();
                    // Reads held back while replies waited may start now.
                    self.pump().await?;
                }
                read = reader.fill(), if accepting => {
                    if read? == 0 {
                        return Ok(());
                    }
                }
                _ = tokio::time::sleep_until(close_deadline.unwrap_or_else(tokio::time::Instant::now)), if close_deadline.is_some() => {
                    return Ok(());
                }
            }
        }
    }

    fn on_frame(&mut self, payload: Bytes) -> Result<(), ConnError> {
        let bytes = 4 + payload.len();
        let mut r = Reader::new(payload);
        let header = RequestHeader::decode(&mut r)?;
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
        self.shared.budget.take(bytes);
        self.scheduler
            .receive(header.xid, incoming, bytes, Instant::now());
        Ok(())
    }

    /// Starts every request the scheduler lets start.
    async fn pump(&mut self) -> Result<(), ConnError> {
        while let Some(job) = self.scheduler.next_job() {
            match job {
                // Nothing is logged without a quorum, as in ZooKeeper's
                // read-only server; closing the session closes the connection.
                Job::Write(ticket, Request::CloseSession) if self.read_only => {
                    self.scheduler.resolve(ticket, 0, Ok(Response::Empty))
                }
                Job::Write(ticket, _) | Job::Reconfig(ticket, _) | Job::Sync(ticket, _)
                    if self.read_only =>
                {
                    self.scheduler
                        .resolve(ticket, 0, Err(ErrorCode::NotReadOnly))
                }
                Job::Write(ticket, request) => self.submit(ticket, request).await?,
                Job::Sync(ticket, path) => self.start_sync(ticket, path),
                Job::Reconfig(ticket, request) => self.start_reconfig(ticket, request),
                Job::Read(ticket, request) => self.execute(ticket, request),
                Job::Unimplemented(ticket) => {
                    self.scheduler
                        .answer(ticket, -1, Err(ErrorCode::Unimplemented))
                }
            }
        }
        self.record_sent();
        Ok(())
    }

    /// `sync`: answered once this server has applied everything the leader
    /// had committed (a read barrier), after every earlier request.
    fn start_sync(&mut self, ticket: Ticket, path: String) {
        let shared = self.shared.clone();
        let mailbox = self.mailbox.clone();
        tokio::spawn(async move {
            let barrier = match shared.consensus.get() {
                Some(handle) => handle.read_barrier().await,
                None => Ok(()),
            };
            let zxid = shared.state().last_zxid();
            mailbox.send(ConnMsg::Completed {
                cxid: ticket.xid,
                zxid,
                result: barrier.map(|()| Box::new(Response::Sync(path))),
            });
        });
    }

    /// `reconfig`: the leader readies the change (new servers join as
    /// learners and catch up), then the request is logged like a write; if
    /// the leader refuses, the refusal is logged instead, as ZooKeeper logs
    /// an error transaction. Either way the reply comes from applying it.
    fn start_reconfig(&mut self, ticket: Ticket, request: ReconfigRequest) {
        let shared = self.shared.clone();
        let mut entry = Entry {
            time_ms: 0,
            session_id: self.session_id,
            cxid: ticket.xid,
            identities: self.identities.clone(),
            origin: self.id,
            txn: Txn::Fail(ErrorCode::SystemError),
        };
        tokio::spawn(async move {
            entry.txn = match ready_reconfig(&shared, &request, &entry.identities).await {
                Ok(()) => Txn::Request(Request::Reconfig(request)),
                Err(code) => Txn::Fail(code),
            };
            // Sent from a task: if the server is shutting down the
            // connection closes, and the client sees ConnectionLoss.
            let _ = shared.proposals.send(entry).await;
        });
    }

    async fn submit(&mut self, ticket: Ticket, request: Request) -> Result<(), ConnError> {
        if self.shared.config.eager_acl_check {
            if let Err(code) = self.eager_acl_check(&request) {
                // Refused without a transaction (reply zxid 0), in turn.
                self.scheduler.resolve(ticket, 0, Err(code));
                return Ok(());
            }
        }
        let txn = match request {
            Request::CloseSession => Txn::CloseSession,
            Request::Multi(Err(e)) => {
                debug!("session 0x{:x}: unreadable multi: {e}", self.session_id);
                Txn::Fail(ErrorCode::MarshallingError)
            }
            other => Txn::Request(other),
        };
        self.propose(Entry {
            time_ms: 0,
            session_id: self.session_id,
            cxid: ticket.xid,
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
    /// see is not permitted, without a transaction.
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
    fn execute(&mut self, ticket: Ticket, request: Request) {
        match request {
            Request::Auth(packet) => self.authenticate(ticket, packet),
            // No SASL here: an empty challenge, as ZooKeeper without SASL answers.
            Request::Sasl(_) => self.scheduler.answer(ticket, 0, Ok(Response::Sasl(None))),
            Request::SetWatches(w) => self.set_watches(
                ticket,
                SetWatches2 {
                    relative_zxid: w.relative_zxid,
                    data_watches: w.data_watches,
                    exist_watches: w.exist_watches,
                    child_watches: w.child_watches,
                    persistent_watches: Vec::new(),
                    persistent_recursive_watches: Vec::new(),
                },
            ),
            Request::SetWatches2(w) => self.set_watches(ticket, w),
            request => {
                let shared = self.shared.clone();
                let state = shared.state();
                self.drain_inbox();
                let zxid = state.last_zxid();
                let result = match &request {
                    Request::Ping => Ok(Response::Empty),
                    Request::WhoAmI => Ok(Response::WhoAmI(crate::whoami::client_infos(
                        &self.identities,
                    ))),
                    _ => {
                        let mut watches = shared.watches();
                        if sets_watch(&request) && !self.may_add_watches(&watches, 1) {
                            // The connection is closing: this answer is
                            // dropped, but the request is finished with it.
                            Err(ErrorCode::MarshallingError)
                        } else {
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
                    }
                };
                drop(state);
                self.scheduler.answer(ticket, zxid, result);
            }
        }
    }

    /// Whether this connection may hold `more` watches beyond its current
    /// ones; if not, it is closed (`maxWatchesPerConnection`).
    fn may_add_watches(&mut self, watches: &roost_core::WatchTable, more: usize) -> bool {
        let max = self.shared.config.max_watches_per_connection;
        if watches.count_for(self.id).saturating_add(more) <= max {
            return true;
        }
        warn!(
            "session 0x{:x} would hold more than {max} watches (maxWatchesPerConnection); closing its connection",
            self.session_id
        );
        self.scheduler.close("too many watches");
        false
    }

    fn set_watches(&mut self, ticket: Ticket, request: SetWatches2) {
        let shared = self.shared.clone();
        let state = shared.state();
        self.drain_inbox();
        let mut watches = shared.watches();
        let requested = request.data_watches.len()
            + request.exist_watches.len()
            + request.child_watches.len()
            + request.persistent_watches.len()
            + request.persistent_recursive_watches.len();
        if !self.may_add_watches(&watches, requested) {
            // Closing: the answer is dropped, but the request is finished.
            self.scheduler
                .answer(ticket, 0, Err(ErrorCode::MarshallingError));
            return;
        }
        let fired = state.set_watches(&request, self.id, &mut watches);
        drop(watches);
        let zxid = state.last_zxid();
        drop(state);
        for (event, path) in fired {
            // Catch-up events carry zxid -1, even in 3.9.
            self.scheduler.notify(-1, event, &path);
        }
        self.scheduler.answer(ticket, zxid, Ok(Response::Empty));
    }

    fn authenticate(&mut self, ticket: Ticket, packet: AuthPacket) {
        if packet.scheme != "digest" {
            warn!(
                "session 0x{:x}: no authentication provider for scheme {:?}",
                self.session_id, packet.scheme
            );
            self.shared
                .stats
                .auth_failed
                .fetch_add(1, Ordering::Relaxed);
            self.scheduler.answer(ticket, 0, Err(ErrorCode::AuthFailed));
            self.scheduler.close("authentication failed");
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
            self.scheduler.answer(ticket, 0, Err(ErrorCode::AuthFailed));
            self.scheduler.close("too many identities");
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
        self.scheduler.answer(ticket, 0, Ok(Response::Empty));
    }

    /// Handles everything queued for this connection so far. Called with the
    /// state read lock held, so no entry is applied meanwhile.
    fn drain_inbox(&mut self) {
        while let Ok(msg) = self.inbox.try_recv() {
            self.on_message(msg);
        }
    }

    fn on_message(&mut self, msg: ConnMsg) {
        self.mailbox.taken(&msg);
        match msg {
            ConnMsg::Notify { zxid, event, path } => self.scheduler.notify(zxid, event, &path),
            ConnMsg::Completed { cxid, zxid, result } => {
                self.scheduler.completed(cxid, zxid, result.map(|r| *r));
                if let Some(reason @ "reply out of order") = self.scheduler.closing() {
                    warn!(
                        "session 0x{:x}: outcome for xid {cxid} out of order; closing ({reason})",
                        self.session_id
                    );
                }
            }
            ConnMsg::Close(reason) => self.scheduler.close(reason),
        }
    }

    /// Counts what the scheduler finished and sent, and gives finished
    /// requests back to the server's budget.
    fn record_sent(&mut self) {
        let stats = &self.shared.stats;
        for sent in self.scheduler.take_sent() {
            if sent.request.is_some() {
                self.shared.budget.give_back(1, sent.request_bytes);
            }
            if sent.bytes == 0 {
                continue;
            }
            stats.packets_sent.fetch_add(1, Ordering::Relaxed);
            self.stats.sent.fetch_add(1, Ordering::Relaxed);
            let Some((opcode, received)) = sent.request else {
                continue;
            };
            stats.record_response_size(sent.bytes);
            if opcode != OpCode::Ping && opcode != OpCode::Auth {
                stats.latency.record(received);
            }
            self.stats.latency.record(received);
            self.stats
                .last_cxid
                .store(sent.xid.into(), Ordering::Relaxed);
            self.stats.last_zxid.store(sent.zxid, Ordering::Relaxed);
            self.stats
                .last_response_ms
                .store(wall_clock_ms(), Ordering::Relaxed);
            if let Ok(mut op) = self.stats.last_op.lock() {
                *op = last_op_name(opcode);
            }
        }
        self.stats
            .queued
            .store(self.scheduler.pending() as i64, Ordering::Relaxed);
    }
}

/// Whether a read registers a watch.
/// A session's password: 16 random bytes, as ZooKeeper's.
fn new_password() -> Bytes {
    Bytes::from(rand::random::<[u8; 16]>().to_vec())
}

/// Readies a `reconfig` on the leader. A request that fails ZooKeeper's
/// other checks is not readied: applying it answers the same error.
async fn ready_reconfig(
    shared: &Shared,
    request: &ReconfigRequest,
    identities: &[Id],
) -> Result<(), ErrorCode> {
    let Some(handle) = shared.consensus.get() else {
        return Ok(());
    };
    // Planned on what the leader has committed, as the leader plans it.
    if handle.read_barrier().await.is_err() {
        return Err(ErrorCode::ConnectionLoss);
    }
    let next = match shared.state().reconfigured(request, identities) {
        Ok(next) => next,
        Err(_) => return Ok(()),
    };
    handle
        .prepare_reconfig(MembershipTarget::of(&next))
        .await
        .map_err(|refusal| match refusal {
            Refusal::InProgress => ErrorCode::ReconfigInProgress,
            Refusal::NoQuorum => ErrorCode::NewConfigNoQuorum,
            Refusal::NoLeader => ErrorCode::ConnectionLoss,
        })
}

fn sets_watch(request: &Request) -> bool {
    match request {
        Request::Exists(r)
        | Request::GetData(r)
        | Request::GetChildren(r)
        | Request::GetChildren2(r) => r.watch,
        Request::AddWatch(_) => true,
        _ => false,
    }
}
