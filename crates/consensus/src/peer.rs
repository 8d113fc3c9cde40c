//! Peer traffic between the servers of an ensemble, on their peer port.
//!
//! Frames are a 4-byte little-endian length and a postcard-encoded message;
//! each connection carries one request at a time and its response. Besides
//! raft's own RPCs (append, vote, whole-snapshot transfer) peers send Roost's:
//! writes forwarded from a follower to the leader, the sessions a follower
//! saw alive, and the read index a follower needs for `sync`.
//!
//! Bounds: a frame is at most `FRAME_BYTES_MAX`; a snapshot streams in chunks
//! after its header, so its size is bounded only by the disk.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
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

use crate::types::{Batch, NodeId, Raft, SnapshotMeta, TypeConfig, Vote};

/// Largest frame a peer may send (raft batches are bounded well below it).
const FRAME_BYTES_MAX: usize = 256 << 20;
/// Snapshot bytes per chunk on the wire.
const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A request from one server to another.
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerRequest {
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
}

/// The answer to a [`PeerRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerResponse {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(Result<SnapshotResponse<NodeId>, Fatal<NodeId>>),
    /// `Err` names why the writes were not accepted (e.g. not the leader).
    Forwarded(Result<(), String>),
    Touched,
    ReadIndex(Result<u64, String>),
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
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

async fn read_frame<T: for<'de> Deserialize<'de>>(stream: &mut TcpStream) -> Result<T, PeerError> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len > FRAME_BYTES_MAX {
        return Err(PeerError::FrameTooLarge(len));
    }
    let mut bytes = vec![0u8; len];
    stream.read_exact(&mut bytes).await?;
    Ok(postcard::from_bytes(&bytes)?)
}

/// Serves peers: answers raft RPCs with `raft` and Roost's own requests with
/// `roost`.
pub async fn serve(listener: TcpListener, raft: Raft, roost: Arc<dyn PeerService>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!("peer accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let raft = raft.clone();
        let roost = roost.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_connection(stream, raft, roost).await {
                debug!("peer connection from {peer} ended: {e}");
            }
        });
    }
}

/// A boxed future, for the async methods of [`PeerService`].
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a server does with Roost's peer requests.
pub trait PeerService: Send + Sync + 'static {
    /// Proposes forwarded writes (on the leader), in order.
    fn forward(&self, batch: Batch) -> BoxFuture<'_, Result<(), String>>;
    /// Sessions a follower saw alive.
    fn touch(&self, sessions: &[i64]);
    /// The committed index a follower must reach before answering `sync`.
    fn read_index(&self) -> BoxFuture<'_, Result<u64, String>>;
}

async fn serve_connection(
    mut stream: TcpStream,
    raft: Raft,
    roost: Arc<dyn PeerService>,
) -> Result<(), PeerError> {
    loop {
        let request: PeerRequest = read_frame(&mut stream).await?;
        let response = match request {
            PeerRequest::AppendEntries(rpc) => {
                PeerResponse::AppendEntries(raft.append_entries(rpc).await)
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
    let mut out = tokio::fs::File::create(&file.path).await?;
    let mut left = size;
    let mut chunk = vec![0u8; SNAPSHOT_CHUNK_BYTES];
    while left > 0 {
        let n = (left as usize).min(chunk.len());
        stream.read_exact(&mut chunk[..n]).await?;
        out.write_all(&chunk[..n]).await?;
        left -= n as u64;
    }
    out.sync_all().await?;
    drop(out);
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

/// One connection to one peer, opened on demand and dropped on any error.
pub struct PeerClient {
    target: NodeId,
    addr: String,
    stream: Option<TcpStream>,
}

impl PeerClient {
    pub fn new(target: NodeId, addr: String) -> Self {
        PeerClient {
            target,
            addr,
            stream: None,
        }
    }

    pub fn target(&self) -> NodeId {
        self.target
    }

    /// The open connection, taken out of the client while in use: if a call
    /// is cancelled midway (raft times RPCs out by dropping them), the
    /// connection goes with it, so no later call can read a stale response.
    async fn take_stream(&mut self) -> Result<TcpStream, PeerError> {
        if let Some(stream) = self.stream.take() {
            return Ok(stream);
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
    pub async fn call(&mut self, request: &PeerRequest) -> Result<PeerResponse, PeerError> {
        let mut stream = self.take_stream().await?;
        write_frame(&mut stream, request).await?;
        let response = read_frame(&mut stream).await?;
        self.stream = Some(stream);
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
        let response = read_frame(&mut stream).await?;
        self.stream = Some(stream);
        Ok(response)
    }
}

/// Where each peer is reached, from this server's own configuration (as in
/// ZooKeeper, each server's zoo.cfg says how it reaches the others). The
/// address recorded in raft's membership is only a fallback.
#[derive(Clone, Default)]
pub struct PeerNetwork {
    addresses: Arc<BTreeMap<NodeId, String>>,
}

impl PeerNetwork {
    pub fn new(addresses: BTreeMap<NodeId, String>) -> Self {
        PeerNetwork {
            addresses: Arc::new(addresses),
        }
    }

    pub fn address_of(&self, id: NodeId, recorded: &str) -> String {
        self.addresses
            .get(&id)
            .cloned()
            .unwrap_or_else(|| recorded.to_string())
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        PeerClient::new(target, self.address_of(target, &node.addr))
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
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(&PeerRequest::AppendEntries(rpc)).await {
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

/// Parses `host:port` for binding.
pub fn bind_address(addr: &str) -> Option<SocketAddr> {
    use std::net::ToSocketAddrs;
    addr.to_socket_addrs().ok()?.next()
}
