//! The session task: owns the connection, reconnects to any server with the
//! same session (id, password, lastZxidSeen), re-registers watches with
//! setWatches2 and re-sends credentials, pings while idle, matches replies to
//! requests in order and routes notifications.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rand::seq::SliceRandom;
use roost_proto::frame::split_frame;
use roost_proto::{
    xid, AuthPacket, ConnectRequest, ConnectResponse, Decode, Encode, ErrorCode, EventType,
    KeeperState, OpCode, Reader, ReplyHeader, Request, Response, WatcherEvent,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::{sleep_until, timeout, Instant};
use tracing::{debug, warn};

use crate::connect_string::ConnectString;
use crate::watches::{Registration, WatchedEvent, Watches};
use crate::Error;

/// The session as the application sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Looking for a server (first connection or after a drop).
    Connecting,
    Connected,
    /// The connection dropped; the session may still be alive.
    Disconnected,
    /// The server ended the session: its ephemerals and watches are gone.
    Expired,
    /// Credentials were refused; the server closed the connection.
    AuthFailed,
    /// Closed by the application.
    Closed,
}

impl SessionState {
    /// No request will ever succeed again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            SessionState::Expired | SessionState::AuthFailed | SessionState::Closed
        )
    }
}

/// A reply as the session task hands it back.
pub(crate) struct Reply {
    pub err: ErrorCode,
    pub body: Option<Response>,
}

pub(crate) struct Call {
    pub request: Request,
    /// The server path a watch registration applies to.
    pub watch: Option<(String, Registration)>,
    pub reply: oneshot::Sender<Result<Reply, Error>>,
}

pub(crate) enum Command {
    Call(Call),
    Close(oneshot::Sender<()>),
}

/// What the client handles share with the session task.
pub(crate) struct Shared {
    pub connect: ConnectString,
    pub session_id: AtomicI64,
    pub negotiated_timeout_ms: AtomicI64,
    pub state: watch::Sender<SessionState>,
    pub transitions: broadcast::Sender<SessionState>,
}

impl Shared {
    fn set_state(&self, state: SessionState) {
        if *self.state.borrow() != state {
            debug!("session state: {state:?}");
            self.state.send_replace(state);
            let _ = self.transitions.send(state);
        }
    }
}

pub(crate) struct Settings {
    pub session_timeout_ms: i32,
    /// Largest frame accepted from a server (jute.maxbuffer plus headers).
    pub max_frame_bytes: usize,
}

struct Pending {
    xid: i32,
    opcode: OpCode,
    watch: Option<(String, Registration)>,
    reply: oneshot::Sender<Result<Reply, Error>>,
}

/// Why a connection ended.
enum Ended {
    Lost,
    Expired,
    AuthFailed,
    Closed(Option<oneshot::Sender<()>>),
}

pub(crate) struct Session {
    shared: Arc<Shared>,
    settings: Settings,
    commands: mpsc::Receiver<Command>,
    hosts: Vec<String>,
    next_host: usize,
    session_id: i64,
    password: Bytes,
    timeout_ms: i32,
    last_zxid: i64,
    next_xid: i32,
    watches: Watches,
    /// Credentials added with addAuth, re-sent on every new connection.
    auths: Vec<(String, Bytes)>,
    /// Calls made while no connection was up, sent once one is.
    waiting: VecDeque<Call>,
}

impl Session {
    pub fn new(shared: Arc<Shared>, settings: Settings, commands: mpsc::Receiver<Command>) -> Self {
        let mut hosts = shared.connect.hosts.clone();
        // Spread clients over the servers, as ZooKeeper's HostProvider does.
        hosts.shuffle(&mut rand::thread_rng());
        Session {
            timeout_ms: settings.session_timeout_ms,
            shared,
            settings,
            commands,
            hosts,
            next_host: 0,
            session_id: 0,
            password: Bytes::from_static(&[0; 16]),
            last_zxid: 0,
            next_xid: 1,
            watches: Watches::default(),
            auths: Vec::new(),
            waiting: VecDeque::new(),
        }
    }

    pub async fn run(mut self) {
        self.shared.set_state(SessionState::Connecting);
        let mut failed_rounds = 0u32;
        loop {
            let host = self.hosts[self.next_host].clone();
            self.next_host = (self.next_host + 1) % self.hosts.len();
            let request = ConnectRequest {
                protocol_version: 0,
                last_zxid_seen: self.last_zxid,
                timeout_ms: self.timeout_ms,
                session_id: self.session_id,
                passwd: self.password.clone(),
                read_only: Some(false),
            };
            let attempt = tokio::select! {
                attempt = handshake(host.clone(), request) => attempt,
                command = self.commands.recv() => {
                    match command {
                        Some(Command::Call(call)) => {
                            self.waiting.push_back(call);
                            continue;
                        }
                        Some(Command::Close(done)) => return self.finish(SessionState::Closed, Some(done)),
                        None => return self.finish(SessionState::Closed, None),
                    }
                }
            };
            let stream = match attempt {
                Ok(Some((stream, response))) => {
                    self.adopt(&host, response);
                    stream
                }
                Ok(None) => return self.finish(SessionState::Expired, None),
                Err(e) => {
                    debug!("connecting: {e}");
                    if self.next_host == 0 {
                        // A whole round failed: back off a little, with jitter.
                        failed_rounds += 1;
                        let base = 50u64 << failed_rounds.min(5);
                        let jitter = rand::random::<u64>() % base;
                        tokio::time::sleep(Duration::from_millis(base.min(1000) + jitter)).await;
                    }
                    continue;
                }
            };
            failed_rounds = 0;
            self.shared.set_state(SessionState::Connected);
            match self.serve(stream).await {
                Ended::Lost => self.shared.set_state(SessionState::Disconnected),
                Ended::Expired => return self.finish(SessionState::Expired, None),
                Ended::AuthFailed => return self.finish(SessionState::AuthFailed, None),
                Ended::Closed(done) => return self.finish(SessionState::Closed, done),
            }
        }
    }

    /// Takes on the session the server granted.
    fn adopt(&mut self, host: &str, response: ConnectResponse) {
        self.session_id = response.session_id;
        self.password = response.passwd;
        self.timeout_ms = response.timeout_ms;
        self.shared
            .session_id
            .store(self.session_id, Ordering::Relaxed);
        self.shared
            .negotiated_timeout_ms
            .store(self.timeout_ms as i64, Ordering::Relaxed);
        debug!(
            "session 0x{:x} connected to {host} (timeout {} ms)",
            self.session_id, self.timeout_ms
        );
    }

    async fn serve(&mut self, stream: TcpStream) -> Ended {
        let (read_half, mut writer) = stream.into_split();
        let (frames_tx, mut frames) = mpsc::channel(1024);
        let reader = tokio::spawn(read_frames(
            read_half,
            frames_tx,
            self.settings.max_frame_bytes,
        ));
        let ended = self.serve_connection(&mut writer, &mut frames).await;
        reader.abort();
        ended
    }

    async fn serve_connection(
        &mut self,
        writer: &mut OwnedWriteHalf,
        frames: &mut mpsc::Receiver<Result<Bytes, String>>,
    ) -> Ended {
        let mut pending: VecDeque<Pending> = VecDeque::new();
        let mut auth_pending: VecDeque<Option<oneshot::Sender<Result<Reply, Error>>>> =
            VecDeque::new();
        let ended = 'conn: {
            // Restore what the server must know about this session.
            let mut out = BytesMut::new();
            if let Some(set) = self.watches.prune_and_collect(self.last_zxid) {
                Request::SetWatches2(set).encode_frame(xid::SET_WATCHES, &mut out);
            }
            for (scheme, auth) in &self.auths {
                auth_packet(scheme, auth).encode_frame(xid::AUTH, &mut out);
                auth_pending.push_back(None);
            }
            while let Some(call) = self.waiting.pop_front() {
                self.encode_call(call, &mut out, &mut pending, &mut auth_pending);
            }
            if !out.is_empty() && writer.write_all(&out).await.is_err() {
                break 'conn Ended::Lost;
            }

            let timeout_ms = self.timeout_ms.max(100) as u64;
            let ping_every = Duration::from_millis(timeout_ms / 3);
            let silence_limit = Duration::from_millis(timeout_ms * 2 / 3);
            let mut last_sent = Instant::now();
            let mut last_heard = Instant::now();
            loop {
                tokio::select! {
                    frame = frames.recv() => {
                        let payload = match frame {
                            Some(Ok(payload)) => payload,
                            Some(Err(e)) => {
                                debug!("connection lost: {e}");
                                break 'conn Ended::Lost;
                            }
                            None => break 'conn Ended::Lost,
                        };
                        last_heard = Instant::now();
                        if let Some(ended) = self.on_frame(payload, &mut pending, &mut auth_pending) {
                            break 'conn ended;
                        }
                    }
                    command = self.commands.recv() => {
                        let mut out = BytesMut::new();
                        match command {
                            Some(Command::Call(call)) => {
                                self.encode_call(call, &mut out, &mut pending, &mut auth_pending);
                                // Send whatever else is queued in the same write.
                                while let Ok(Command::Call(call)) = self.commands.try_recv() {
                                    self.encode_call(call, &mut out, &mut pending, &mut auth_pending);
                                }
                            }
                            Some(Command::Close(done)) => {
                                self.close_session(writer, frames, &mut pending).await;
                                break 'conn Ended::Closed(Some(done));
                            }
                            None => {
                                self.close_session(writer, frames, &mut pending).await;
                                break 'conn Ended::Closed(None);
                            }
                        }
                        if writer.write_all(&out).await.is_err() {
                            break 'conn Ended::Lost;
                        }
                        last_sent = Instant::now();
                    }
                    _ = sleep_until(last_sent + ping_every) => {
                        let mut out = BytesMut::new();
                        Request::Ping.encode_frame(xid::PING, &mut out);
                        if writer.write_all(&out).await.is_err() {
                            break 'conn Ended::Lost;
                        }
                        last_sent = Instant::now();
                    }
                    _ = sleep_until(last_heard + silence_limit) => {
                        debug!("no word from the server for {silence_limit:?}");
                        break 'conn Ended::Lost;
                    }
                }
            }
        };
        let code = match ended {
            Ended::Expired => ErrorCode::SessionExpired,
            Ended::AuthFailed => ErrorCode::AuthFailed,
            Ended::Lost | Ended::Closed(_) => ErrorCode::ConnectionLoss,
        };
        for p in pending {
            let _ = p.reply.send(Err(Error::Zk(code)));
        }
        for tx in auth_pending.into_iter().flatten() {
            let _ = tx.send(Err(Error::Zk(code)));
        }
        ended
    }

    fn encode_call(
        &mut self,
        call: Call,
        out: &mut BytesMut,
        pending: &mut VecDeque<Pending>,
        auth_pending: &mut VecDeque<Option<oneshot::Sender<Result<Reply, Error>>>>,
    ) {
        if let Request::Auth(packet) = &call.request {
            self.auths
                .push((packet.scheme.clone(), packet.auth.clone()));
            call.request.encode_frame(xid::AUTH, out);
            auth_pending.push_back(Some(call.reply));
            return;
        }
        let xid = self.next_xid;
        // Positive xids only; the negative ones are reserved.
        self.next_xid = if self.next_xid == i32::MAX {
            1
        } else {
            self.next_xid + 1
        };
        call.request.encode_frame(xid, out);
        pending.push_back(Pending {
            xid,
            opcode: call.request.opcode(),
            watch: call.watch,
            reply: call.reply,
        });
    }

    /// Handles one frame; `Some` ends the connection.
    fn on_frame(
        &mut self,
        payload: Bytes,
        pending: &mut VecDeque<Pending>,
        auth_pending: &mut VecDeque<Option<oneshot::Sender<Result<Reply, Error>>>>,
    ) -> Option<Ended> {
        let mut r = Reader::new(payload);
        let Ok(header) = ReplyHeader::decode(&mut r) else {
            warn!("undecodable reply header; reconnecting");
            return Some(Ended::Lost);
        };
        let err = ErrorCode::from_code(header.err).unwrap_or(ErrorCode::SystemError);
        match header.xid {
            xid::NOTIFICATION => {
                let Ok(event) = WatcherEvent::decode(&mut r) else {
                    warn!("undecodable notification; reconnecting");
                    return Some(Ended::Lost);
                };
                // An event type this client does not know is ignored.
                let event_type = EventType::from_code(event.event_type)?;
                let client_path = self.shared.connect.client_path(&event.path);
                self.watches.dispatch(
                    &event.path,
                    WatchedEvent {
                        event_type,
                        state: KeeperState::SyncConnected,
                        path: client_path,
                        zxid: header.zxid,
                    },
                );
                None
            }
            xid::PING | xid::SET_WATCHES => None,
            xid::AUTH => {
                if let Some(Some(tx)) = auth_pending.pop_front() {
                    let result = match err {
                        ErrorCode::Ok => Ok(Reply { err, body: None }),
                        other => Err(Error::Zk(other)),
                    };
                    let _ = tx.send(result);
                }
                (err == ErrorCode::AuthFailed).then_some(Ended::AuthFailed)
            }
            got => {
                let Some(call) = pending.pop_front() else {
                    warn!("reply to xid {got} that was never sent; reconnecting");
                    return Some(Ended::Lost);
                };
                if call.xid != got {
                    warn!(
                        "reply to xid {got} while xid {} was next; reconnecting",
                        call.xid
                    );
                    let _ = call.reply.send(Err(Error::Zk(ErrorCode::ConnectionLoss)));
                    return Some(Ended::Lost);
                }
                if header.zxid > 0 {
                    self.last_zxid = header.zxid;
                }
                let rest = r.read_rest();
                let body = if rest.is_empty() {
                    None
                } else {
                    match Response::decode(call.opcode, rest) {
                        Ok(body) => Some(body),
                        Err(e) => {
                            warn!("undecodable {:?} reply: {e}", call.opcode);
                            let _ = call.reply.send(Err(Error::Zk(ErrorCode::MarshallingError)));
                            return None;
                        }
                    }
                };
                if let Some((path, registration)) = call.watch {
                    match (err, &registration) {
                        (ErrorCode::Ok, _) => self.watches.register(&path, registration, true),
                        (ErrorCode::NoNode, Registration::Exists(_)) => {
                            self.watches.register(&path, registration, false)
                        }
                        _ => {}
                    }
                }
                let _ = call.reply.send(Ok(Reply { err, body }));
                (err == ErrorCode::SessionExpired).then_some(Ended::Expired)
            }
        }
    }

    /// Sends closeSession and waits (briefly) for its reply.
    async fn close_session(
        &mut self,
        writer: &mut OwnedWriteHalf,
        frames: &mut mpsc::Receiver<Result<Bytes, String>>,
        pending: &mut VecDeque<Pending>,
    ) {
        let mut out = BytesMut::new();
        let xid = self.next_xid;
        Request::CloseSession.encode_frame(xid, &mut out);
        if writer.write_all(&out).await.is_err() {
            return;
        }
        let _ = timeout(Duration::from_secs(2), async {
            while let Some(Ok(payload)) = frames.recv().await {
                let mut r = Reader::new(payload);
                if let Ok(header) = ReplyHeader::decode(&mut r) {
                    if header.xid == xid {
                        return;
                    }
                    if let Some(p) = pending.front() {
                        if p.xid == header.xid {
                            if let Some(p) = pending.pop_front() {
                                let _ = p.reply.send(Err(Error::Zk(ErrorCode::ConnectionLoss)));
                            }
                        }
                    }
                }
            }
        })
        .await;
    }

    /// The session is over: tell watchers and every caller, then answer
    /// later calls with the terminal error until the last handle is dropped.
    fn finish(mut self, state: SessionState, done: Option<oneshot::Sender<()>>) {
        let keeper_state = match state {
            SessionState::Expired => KeeperState::Expired,
            SessionState::AuthFailed => KeeperState::AuthFailed,
            _ => KeeperState::Closed,
        };
        let error = match state {
            SessionState::Expired => Error::Zk(ErrorCode::SessionExpired),
            SessionState::AuthFailed => Error::Zk(ErrorCode::AuthFailed),
            _ => Error::Closed,
        };
        // State first: a watcher woken by the end of the session sees it ended.
        self.shared.set_state(state);
        self.watches.end_all(keeper_state);
        for call in self.waiting.drain(..) {
            let _ = call.reply.send(Err(error.clone()));
        }
        if let Some(done) = done {
            let _ = done.send(());
        }
        tokio::spawn(async move {
            while let Some(command) = self.commands.recv().await {
                match command {
                    Command::Call(call) => {
                        let _ = call.reply.send(Err(error.clone()));
                    }
                    Command::Close(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
    }
}

/// One handshake with `host`. `Ok(None)`: the session has expired.
async fn handshake(
    host: String,
    request: ConnectRequest,
) -> Result<Option<(TcpStream, ConnectResponse)>, String> {
    let limit = Duration::from_millis((request.timeout_ms.max(1000) as u64 / 3).min(3000));
    let mut stream = timeout(limit, TcpStream::connect(&host))
        .await
        .map_err(|_| format!("{host}: connect timed out"))?
        .map_err(|e| format!("{host}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let mut out = BytesMut::new();
    request.encode_framed(&mut out);
    stream
        .write_all(&out)
        .await
        .map_err(|e| format!("{host}: {e}"))?;
    let mut buf = BytesMut::new();
    let payload = timeout(limit, read_frame(&mut stream, &mut buf, 1024))
        .await
        .map_err(|_| format!("{host}: handshake timed out"))?
        .map_err(|e| format!("{host}: {e}"))?
        .ok_or_else(|| format!("{host} closed the connection during the handshake"))?;
    let response =
        ConnectResponse::from_bytes(payload).map_err(|e| format!("{host}: bad handshake: {e}"))?;
    if response.timeout_ms <= 0 || response.session_id == 0 {
        return Ok(None);
    }
    if !buf.is_empty() {
        return Err(format!("{host} sent data before the handshake finished"));
    }
    Ok(Some((stream, response)))
}

fn auth_packet(scheme: &str, auth: &Bytes) -> Request {
    Request::Auth(AuthPacket {
        auth_type: 0,
        scheme: scheme.to_string(),
        auth: auth.clone(),
    })
}

/// Reads one length-prefixed frame; `None` at a clean end of stream.
async fn read_frame(
    stream: &mut (impl AsyncReadExt + Unpin),
    buf: &mut BytesMut,
    max_frame_bytes: usize,
) -> Result<Option<Bytes>, String> {
    loop {
        if let Some(frame) = split_frame(buf, max_frame_bytes).map_err(|e| e.to_string())? {
            return Ok(Some(frame));
        }
        let n = stream.read_buf(buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err("connection closed mid-frame".into())
            };
        }
    }
}

/// Feeds frames to the session task until the connection ends.
async fn read_frames(
    mut stream: OwnedReadHalf,
    frames: mpsc::Sender<Result<Bytes, String>>,
    max_frame_bytes: usize,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        let frame = read_frame(&mut stream, &mut buf, max_frame_bytes).await;
        let end = !matches!(frame, Ok(Some(_)));
        let item = match frame {
            Ok(Some(payload)) => Ok(payload),
            Ok(None) => Err("server closed the connection".to_string()),
            Err(e) => Err(e),
        };
        if frames.send(item).await.is_err() || end {
            return;
        }
    }
}
