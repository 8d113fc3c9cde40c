//! Peer traffic between the servers of an ensemble, on their peer port.
//!
//! Frames are a 4-byte little-endian length and a postcard-encoded message;
//! each connection carries one request at a time and its response. Besides
//! raft's own RPCs (append, vote, whole-snapshot transfer) peers send Roost's:
//! writes forwarded from a follower to the leader, the sessions a follower
//! saw alive, the read index a follower needs for `sync`, and the status a
//! blank server asks for before it joins.
//!
//! Bounds: a frame is at most `Bounds::peer_frame_bytes_max` (an AppendEntries
//! carries at most `replication_bytes_max` of entries: the prefix that fits, with a
//! partial success reported to openraft, which sends the rest next), and its
//! buffer grows only as its bytes arrive; a snapshot streams in chunks after
//! its header, and is refused unless the disk has room for it. At most
//! `PEER_CONNECTIONS_MAX` peer connections are served at once, and one that
//! does not complete a frame (or a snapshot chunk) within `PEER_IDLE_TIMEOUT`
//! is closed (clients drop idle ones sooner, so a request never meets a
//! connection closing under it). Garbage, an oversized frame or a stranger's
//! connection closes that connection only. Every server of an ensemble must
//! use the same `jute.maxbuffer`: the bounds derive from it. (Authenticating
//! peers comes with TLS; until then a stranger can hold connection slots.)

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend, Snapshot};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use crate::bounds::Bounds;
use crate::join::PeerStatus;
use crate::membership::{MembershipTarget, Refusal};
use crate::types::{
    entry_wire_bytes, Batch, NodeId, Raft, RaftEntry, SnapshotMeta, TypeConfig, Vote,
};

/// Snapshot bytes per chunk on the wire.
const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Peer connections served at once: each server opens a handful to each
/// other (replication, votes, forwarded writes, syncs), so this leaves room
/// for large ensembles and reconnects while bounding what strangers can hold.
const PEER_CONNECTIONS_MAX: usize = 64;
/// A served connection that starts no request for this long is closed.
const PEER_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A client connection unused for this long is replaced before its next request.
const PEER_CLIENT_IDLE_MAX: Duration = Duration::from_secs(30);

/// A request from one server to another.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum PeerRequest {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    /// A whole snapshot: `size` raw bytes follow this frame.
    Snapshot {
        vote: Vote,
        meta: SnapshotMeta,
        size: u64,
    },
    /// Client writes for the leader to propose, in the order received.
    Forward(Batch),
    /// Sessions with live connections on the sender since its last report.
    Touch(Vec<i64>),
    /// The index a follower must have applied before answering `sync`.
    ReadIndex,
    /// What the server holds, for a blank peer deciding how to join.
    Status,
    /// Ready a membership change (to the leader).
    PrepareReconfig(MembershipTarget),
}

/// The answer to a [`PeerRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum PeerResponse {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(Result<SnapshotResponse<NodeId>, Fatal<NodeId>>),
    /// `Err` names why the writes were not accepted (e.g. not the leader).
    Forwarded(Result<(), String>),
    Touched,
    ReadIndex(Result<u64, String>),
    Status(PeerStatus),
    Prepared(Result<(), Refusal>),
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum PeerError {
    /// Nothing was sent: the connection could not be made.
    #[error("cannot connect to peer: {0}")]
    Connect(std::io::Error),
    #[error("peer i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("peer frame of {0} bytes is over the limit")]
    FrameTooLarge(usize),
    #[error("undecodable peer message: {0}")]
    Decode(#[from] postcard::Error),
    #[error("unexpected peer response")]
    Unexpected,
    #[error("a snapshot of {size} bytes does not fit in the {available} bytes free")]
    NoRoom { size: u64, available: u64 },
}

async fn write_frame<T: Serialize>(stream: &mut TcpStream, message: &T) -> Result<(), PeerError> {
    let bytes = postcard::to_allocvec(message)?;
    let len = u32::try_from(bytes.len()).map_err(|_| PeerError::FrameTooLarge(bytes.len()))?;
    let mut frame = Vec::with_capacity(4 + bytes.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&bytes);
    stream.write_all(&frame).await?;
    Ok(())
}

/// Reads one frame of at most `bytes_max`; its buffer grows as bytes
/// arrive, so a length claimed by garbage costs nothing up front.
async fn read_frame<T: for<'de> Deserialize<'de>>(
    stream: &mut TcpStream,
    bytes_max: usize,
) -> Result<T, PeerError> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len > bytes_max {
        return Err(PeerError::FrameTooLarge(len));
    }
    let mut bytes = Vec::with_capacity(len.min(SNAPSHOT_CHUNK_BYTES));
    let read = (&mut *stream)
        .take(len as u64)
        .read_to_end(&mut bytes)
        .await?;
    if read < len {
        return Err(PeerError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(postcard::from_bytes(&bytes)?)
}

/// Serves peers: answers raft RPCs with `raft` and Roost's own requests with
/// `roost`.
pub(crate) async fn serve(
    listener: TcpListener,
    raft: Raft,
    roost: Arc<dyn PeerService>,
    bounds: Bounds,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(PEER_CONNECTIONS_MAX));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!("peer accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            warn!(
                "refusing a peer connection from {peer}: {PEER_CONNECTIONS_MAX} peer connections are open"
            );
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let raft = raft.clone();
        let roost = roost.clone();
        tokio::spawn(async move {
            match serve_connection(stream, raft, roost, bounds).await {
                Err(e @ (PeerError::FrameTooLarge(_) | PeerError::Decode(_))) => {
                    warn!("closing the peer connection from {peer}: {e}")
                }
                Err(e) => debug!("peer connection from {peer} ended: {e}"),
                Ok(()) => debug!("peer connection from {peer} idle; closed"),
            }
            drop(slot);
        });
    }
}

/// A boxed future, for the async methods of [`PeerService`].
pub(crate) type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a server does with Roost's peer requests.
pub(crate) trait PeerService: Send + Sync + 'static {
    /// Proposes forwarded writes (on the leader), in order.
    fn forward(&self, batch: Batch) -> BoxFuture<'_, Result<(), String>>;
    /// Sessions a follower saw alive.
    fn touch(&self, sessions: &[i64]);
    /// The committed index a follower must reach before answering `sync`.
    fn read_index(&self) -> BoxFuture<'_, Result<u64, String>>;
    /// What this server holds (see [`crate::join`]).
    fn status(&self) -> PeerStatus;
    /// False while this server has not caught up after starting blank: its
    /// empty log must not elect anyone.
    fn grants_votes(&self) -> bool;
    /// A leader's AppendEntries was accepted here.
    fn heard_from_leader(&self);
    /// Readies a membership change (see [`crate::membership`]).
    fn prepare_reconfig<'a>(
        &'a self,
        target: &'a MembershipTarget,
    ) -> BoxFuture<'a, Result<(), Refusal>>;
}

async fn serve_connection(
    mut stream: TcpStream,
    raft: Raft,
    roost: Arc<dyn PeerService>,
    bounds: Bounds,
) -> Result<(), PeerError> {
    loop {
        let next = read_frame(&mut stream, bounds.peer_frame_bytes_max);
        let Ok(request) = tokio::time::timeout(PEER_IDLE_TIMEOUT, next).await else {
            return Ok(());
        };
        let request: PeerRequest = request?;
        let response = match request {
            PeerRequest::AppendEntries(rpc) => {
                let response = raft.append_entries(rpc).await;
                if matches!(&response, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_)))
                {
                    roost.heard_from_leader();
                }
                PeerResponse::AppendEntries(response)
            }
            PeerRequest::Vote(rpc) if !roost.grants_votes() => {
                debug!("refusing a vote to {}: still joining", rpc.vote.leader_id);
                PeerResponse::Vote(Ok(VoteResponse {
                    vote: raft.metrics().borrow().vote,
                    vote_granted: false,
                    last_log_id: None,
                }))
            }
            PeerRequest::Vote(rpc) => PeerResponse::Vote(raft.vote(rpc).await),
            PeerRequest::Snapshot { vote, meta, size } => PeerResponse::Snapshot(
                receive_snapshot(&mut stream, &raft, vote, meta, size).await?,
            ),
            PeerRequest::Forward(batch) => PeerResponse::Forwarded(roost.forward(batch).await),
            PeerRequest::Touch(sessions) => {
                roost.touch(&sessions);
                PeerResponse::Touched
            }
            PeerRequest::ReadIndex => PeerResponse::ReadIndex(roost.read_index().await),
            PeerRequest::Status => PeerResponse::Status(roost.status()),
            PeerRequest::PrepareReconfig(target) => {
                PeerResponse::Prepared(roost.prepare_reconfig(&target).await)
            }
        };
        write_frame(&mut stream, &response).await?;
    }
}

async fn receive_snapshot(
    stream: &mut TcpStream,
    raft: &Raft,
    vote: Vote,
    meta: SnapshotMeta,
    size: u64,
) -> Result<Result<SnapshotResponse<NodeId>, Fatal<NodeId>>, PeerError> {
    let file = match raft.begin_receiving_snapshot().await {
        Ok(file) => file,
        Err(RaftError::Fatal(fatal)) => {
            // Drain the bytes so the connection stays usable, then refuse.
            let mut left = size;
            let mut chunk = vec![0u8; SNAPSHOT_CHUNK_BYTES];
            while left > 0 {
                let n = (left as usize).min(chunk.len());
                stream.read_exact(&mut chunk[..n]).await?;
                left -= n as u64;
            }
            return Ok(Err(fatal));
        }
        Err(RaftError::APIError(never)) => match never {},
    };
    if let Some(available) = file.path.parent().and_then(available_bytes) {
        if size > available {
            // The connection closes: what is left of the snapshot is never read.
            return Err(PeerError::NoRoom { size, available });
        }
    }
    if let Err(e) = receive_file(stream, &file.path, size).await {
        let _ = tokio::fs::remove_file(&file.path).await;
        return Err(e);
    }
    info!("received snapshot {:?} ({size} bytes)", meta.last_log_id);
    Ok(raft
        .install_full_snapshot(
            vote,
            Snapshot {
                meta,
                snapshot: file,
            },
        )
        .await)
}

/// Streams `size` bytes from a peer into a new file at `path`, synced.
async fn receive_file(stream: &mut TcpStream, path: &Path, size: u64) -> Result<(), PeerError> {
    let mut out = tokio::fs::File::create(path).await?;
    let mut left = size;
    let mut chunk = vec![0u8; SNAPSHOT_CHUNK_BYTES];
    while left > 0 {
        let n = (left as usize).min(chunk.len());
        // A sender that stalls mid-snapshot gives up its connection.
        tokio::time::timeout(PEER_IDLE_TIMEOUT, stream.read_exact(&mut chunk[..n]))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "snapshot stalled"))??;
        out.write_all(&chunk[..n]).await?;
        left -= n as u64;
    }
    out.sync_all().await?;
    Ok(())
}

/// Bytes free for an unprivileged writer on the file system holding `dir`.
fn available_bytes(dir: &Path) -> Option<u64> {
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a valid NUL-terminated string and `stats` is written
    // by statvfs before it is read, only when statvfs succeeds.
    let stats = unsafe {
        if libc::statvfs(path.as_ptr(), stats.as_mut_ptr()) != 0 {
            return None;
        }
        stats.assume_init()
    };
    Some((stats.f_bavail as u64).saturating_mul(stats.f_frsize as u64))
}

/// One connection to one peer, opened on demand and dropped on any error.
pub(crate) struct PeerClient {
    target: NodeId,
    addr: String,
    bounds: Bounds,
    /// The open connection and when it was last used.
    stream: Option<(TcpStream, std::time::Instant)>,
}

impl PeerClient {
    pub(crate) fn new(target: NodeId, addr: String, bounds: Bounds) -> Self {
        PeerClient {
            target,
            addr,
            bounds,
            stream: None,
        }
    }

    pub(crate) fn target(&self) -> NodeId {
        self.target
    }

    /// The open connection, taken out of the client while in use: if a call
    /// is cancelled midway (raft times RPCs out by dropping them), the
    /// connection goes with it, so no later call can read a stale response.
    async fn take_stream(&mut self) -> Result<TcpStream, PeerError> {
        if let Some((stream, used)) = self.stream.take() {
            // An idle connection may be closing at the other end: replace it
            // rather than risk a request whose delivery is then unknown.
            if used.elapsed() < PEER_CLIENT_IDLE_MAX {
                return Ok(stream);
            }
        }
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| {
                PeerError::Connect(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "peer connect timed out",
                ))
            })?
            .map_err(PeerError::Connect)?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// Sends a request and waits for its response; drops the connection on error.
    pub(crate) async fn call(&mut self, request: &PeerRequest) -> Result<PeerResponse, PeerError> {
        let mut stream = self.take_stream().await?;
        write_frame(&mut stream, request).await?;
        let response = read_frame(&mut stream, self.bounds.peer_frame_bytes_max).await?;
        self.stream = Some((stream, std::time::Instant::now()));
        Ok(response)
    }

    async fn send_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot<TypeConfig>,
    ) -> Result<PeerResponse, PeerError> {
        let mut file = tokio::fs::File::open(&snapshot.snapshot.path).await?;
        let size = file.metadata().await?.len();
        let mut stream = self.take_stream().await?;
        write_frame(
            &mut stream,
            &PeerRequest::Snapshot {
                vote,
                meta: snapshot.meta.clone(),
                size,
            },
        )
        .await?;
        let mut chunk = vec![0u8; SNAPSHOT_CHUNK_BYTES];
        let mut left = size;
        while left > 0 {
            let n = (left as usize).min(chunk.len());
            file.read_exact(&mut chunk[..n]).await?;
            stream.write_all(&chunk[..n]).await?;
            left -= n as u64;
        }
        let response = read_frame(&mut stream, self.bounds.peer_frame_bytes_max).await?;
        self.stream = Some((stream, std::time::Instant::now()));
        Ok(response)
    }
}

/// Where each peer is reached, from this server's own configuration (as in
/// ZooKeeper, each server's zoo.cfg says how it reaches the others). The
/// address recorded in raft's membership is only a fallback.
#[derive(Clone, Default)]
pub(crate) struct PeerNetwork {
    addresses: Arc<BTreeMap<NodeId, String>>,
    bounds: Bounds,
}

impl PeerNetwork {
    pub(crate) fn new(addresses: BTreeMap<NodeId, String>, bounds: Bounds) -> Self {
        PeerNetwork {
            addresses: Arc::new(addresses),
            bounds,
        }
    }

    /// A client for the peer `target` at `address`.
    pub(crate) fn client(&self, target: NodeId, address: String) -> PeerClient {
        PeerClient::new(target, address, self.bounds)
    }

    pub(crate) fn address_of(&self, id: NodeId, recorded: &str) -> String {
        self.addresses
            .get(&id)
            .cloned()
            .unwrap_or_else(|| recorded.to_string())
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        self.client(target, self.address_of(target, &node.addr))
    }
}

fn unreachable<E: std::error::Error>(e: &PeerError) -> RPCError<NodeId, BasicNode, E> {
    match e {
        PeerError::Io(io) | PeerError::Connect(io) => RPCError::Unreachable(Unreachable::new(io)),
        other => RPCError::Network(NetworkError::new(other)),
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let sent = keep_prefix_within(&mut rpc.entries, self.bounds.replication_bytes_max);
        match self.call(&PeerRequest::AppendEntries(rpc)).await {
            Ok(PeerResponse::AppendEntries(Ok(AppendEntriesResponse::Success))) => Ok(match sent {
                Some(last) => AppendEntriesResponse::PartialSuccess(Some(last)),
                None => AppendEntriesResponse::Success,
            }),
            Ok(PeerResponse::AppendEntries(Ok(response))) => Ok(response),
            Ok(PeerResponse::AppendEntries(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(unreachable(&PeerError::Unexpected)),
            Err(e) => Err(unreachable(&e)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(&PeerRequest::Vote(rpc)).await {
            Ok(PeerResponse::Vote(Ok(response))) => Ok(response),
            Ok(PeerResponse::Vote(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(unreachable(&PeerError::Unexpected)),
            Err(e) => Err(unreachable(&e)),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot<TypeConfig>,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        match self.send_snapshot(vote, snapshot).await {
            Ok(PeerResponse::Snapshot(Ok(response))) => Ok(response),
            Ok(PeerResponse::Snapshot(Err(fatal))) => Err(StreamingError::RemoteError(
                RemoteError::new(self.target, fatal),
            )),
            Ok(_) => Err(StreamingError::Network(NetworkError::new(
                &PeerError::Unexpected,
            ))),
            Err(PeerError::Io(io) | PeerError::Connect(io)) => {
                Err(StreamingError::Unreachable(Unreachable::new(&io)))
            }
            Err(e) => Err(StreamingError::Network(NetworkError::new(&e))),
        }
    }
}

/// Cuts `entries` to the longest prefix within `bytes_max` (at least one
/// entry). Returns the last entry kept if any were cut off: openraft is then
/// told of a partial success and sends the rest next.
fn keep_prefix_within(
    entries: &mut Vec<RaftEntry>,
    bytes_max: usize,
) -> Option<crate::types::LogId> {
    let mut bytes = 0;
    let keep = entries
        .iter()
        .position(|entry| {
            bytes += entry_wire_bytes(entry);
            bytes > bytes_max
        })?
        .max(1);
    if keep >= entries.len() {
        return None;
    }
    entries.truncate(keep);
    entries.last().map(|e| e.log_id)
}

/// Parses `host:port` for binding.
pub(crate) fn bind_address(addr: &str) -> Option<SocketAddr> {
    use std::net::ToSocketAddrs;
    addr.to_socket_addrs().ok()?.next()
}
