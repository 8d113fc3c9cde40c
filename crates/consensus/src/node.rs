//! One replica: the raft node, its log and state machine, the peer listener,
//! and the proposal pump that turns a stream of client writes into batches.
//!
//! The pump is where group commit happens: while one batch is being made
//! durable, the next accumulates; at most `in_flight_batches_max` raft
//! entries are outstanding, and each carries up to `batch_entries_max`
//! client writes. On a follower the pump forwards each batch to the leader
//! instead, one at a time, so a session's writes keep their order. Writes are
//! refused before they reach the log when the disk is full, after every
//! earlier batch has finished, so each connection still gets its replies in
//! order. A standalone server is a one-voter cluster on the same path.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use openraft::{BasicNode, ServerState};
use roost_core::{Entry, StateConfig, Txn};
use roost_proto::ErrorCode;
use roost_storage::{FileSystem, StorageError as DiskError, WalOptions};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::bounds::Bounds;
use crate::join::{Joiner, PeerStatus, Stage, VoteGate};
use crate::log_store::LogStore;
use crate::membership::{self, MembershipTarget, Reconfigurer, Refusal};
use crate::network::NoNetwork;
use crate::peer::{
    self, BoxFuture, PeerClient, PeerError, PeerNetwork, PeerRequest, PeerResponse, PeerService,
};
use crate::state_machine::{
    AppliedMark, Housekeeping, SnapshotPolicy, SnapshotStore, StateMachine, StateMachineHost,
};
use crate::types::{Batch, BatchBuilder, NodeId, Pushed, Raft};

/// A server of the ensemble as configured (`server.N=host:peerPort:electionPort`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// `host:peerPort`.
    pub address: String,
    /// Observers are raft learners: they replicate and serve reads, never vote.
    pub observer: bool,
}

/// How a replica is set up.
#[derive(Debug, Clone)]
pub struct ConsensusConfig {
    pub node_id: NodeId,
    /// Every server of the ensemble, this one included; empty when standalone.
    pub members: BTreeMap<NodeId, Member>,
    pub log_dir: PathBuf,
    pub snapshot_dir: PathBuf,
    pub wal: WalOptions,
    /// Client entries between snapshots (randomised per snapshot like ZooKeeper).
    pub snap_count: u64,
    /// Log bytes between snapshots (`snapSizeLimitInKb`, randomised likewise; 0: no limit).
    pub snap_bytes: u64,
    /// Snapshots kept on disk (`autopurge.snapRetainCount`).
    pub snap_retain: usize,
    pub state: StateConfig,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: (u64, u64),
    /// Client writes per raft entry (bytes are bounded by `bounds`).
    pub batch_entries_max: usize,
    /// The byte bounds of the write path.
    pub bounds: Bounds,
    /// Raft entries proposed and not yet applied.
    pub in_flight_batches_max: usize,
}

impl ConsensusConfig {
    pub fn standalone(data_dir: PathBuf, log_dir: PathBuf, state: StateConfig) -> Self {
        ConsensusConfig {
            node_id: 1,
            members: BTreeMap::new(),
            log_dir: log_dir.join("log"),
            snapshot_dir: data_dir.join("snapshots"),
            wal: WalOptions::default(),
            snap_count: 100_000,
            snap_bytes: 4 << 30,
            snap_retain: 3,
            state,
            // openraft starts an election only after a follower has heard
            // nothing for its lease (the maximum) plus its random timeout,
            // so a dead leader is replaced within 400-550 ms on loopback.
            // openraft also gives each AppendEntries one heartbeat interval,
            // the follower's fsync included: 60 ms leaves room for a full
            // batch on a busy disk (see `Bounds`).
            heartbeat_ms: 60,
            election_timeout_ms: (150, 250),
            batch_entries_max: 1024,
            bounds: Bounds::default(),
            in_flight_batches_max: 2,
        }
    }

    fn is_ensemble(&self) -> bool {
        self.members.len() > 1
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConsensusError {
    #[error(transparent)]
    Storage(#[from] DiskError),
    #[error("raft: {0}")]
    Raft(String),
    #[error("cannot listen for peers on {addr}: {source}")]
    PeerBind {
        addr: String,
        source: std::io::Error,
    },
}

/// Space kept free in the log for raft's own entries (blank, membership).
const LOG_RESERVE_BYTES: u64 = 1 << 20;
/// How long a call to the leader may take (a stalled leader must not stall
/// this server's writes or syncs forever).
const LEADER_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a follower's `sync` waits to catch up with the leader.
const READ_BARRIER_TIMEOUT: Duration = Duration::from_secs(10);

/// Who leads, as this replica last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Leadership {
    pub leader: Option<NodeId>,
    /// This replica leads and a quorum acknowledged it recently: only then
    /// does it accept writes (a leader cut off from its quorum does not).
    pub leading: bool,
    /// This replica is a learner (an observer).
    pub observer: bool,
    /// A leader that accepts writes is known: this one leading, or another
    /// that this one hears from. Otherwise, as a ZooKeeper server outside
    /// the quorum, this replica should not serve clients.
    pub serving: bool,
}

/// A running replica.
pub struct Consensus {
    raft: Raft,
    log: LogStore,
    leadership: watch::Receiver<Leadership>,
    leader_link: LeaderLink,
    /// False while a blank voter is joining (see `join`).
    joined: watch::Receiver<bool>,
    reconfigurer: Reconfigurer,
    tasks: Vec<JoinHandle<()>>,
}

/// What the rest of the server needs from the replica: cheap to clone.
#[derive(Clone)]
pub struct Handle {
    raft: Raft,
    log: LogStore,
    leadership: watch::Receiver<Leadership>,
    leader_link: LeaderLink,
    reconfigurer: Reconfigurer,
    /// False while a blank voter is joining (see `join`).
    joined: watch::Receiver<bool>,
}

/// One connection to the current leader, shared by a replica's `sync`s and
/// session reports, and redialled when the leader changes.
#[derive(Clone)]
struct LeaderLink {
    raft: Raft,
    network: PeerNetwork,
    client: Arc<tokio::sync::Mutex<Option<PeerClient>>>,
}

impl LeaderLink {
    fn new(raft: Raft, network: PeerNetwork) -> Self {
        LeaderLink {
            raft,
            network,
            client: Default::default(),
        }
    }

    /// The current leader and where to reach it.
    fn leader(&self) -> Option<(NodeId, String)> {
        let metrics = self.raft.metrics().borrow().clone();
        let id = metrics.current_leader?;
        let recorded = metrics
            .membership_config
            .membership()
            .get_node(&id)
            .map(|node| node.addr.clone())
            .unwrap_or_default();
        Some((id, self.network.address_of(id, &recorded)))
    }

    /// Sends `request` to the current leader; `Ok(None)` if there is none.
    async fn call(&self, request: &PeerRequest) -> Result<Option<PeerResponse>, PeerError> {
        let Some((leader_id, address)) = self.leader() else {
            return Ok(None);
        };
        let mut client = self.client.lock().await;
        let client = match client.as_mut() {
            Some(c) if c.target() == leader_id => c,
            _ => client.insert(self.network.client(leader_id, address)),
        };
        call_within(client, request, LEADER_CALL_TIMEOUT).await
    }

    /// As [`LeaderLink::call`], on a connection of its own: for a request
    /// that may take long, so the shared one is not held meanwhile.
    async fn call_alone(
        &self,
        request: &PeerRequest,
        timeout: Duration,
    ) -> Result<Option<PeerResponse>, PeerError> {
        let Some((leader_id, address)) = self.leader() else {
            return Ok(None);
        };
        let mut client = self.network.client(leader_id, address);
        call_within(&mut client, request, timeout).await
    }
}

async fn call_within(
    client: &mut PeerClient,
    request: &PeerRequest,
    timeout: Duration,
) -> Result<Option<PeerResponse>, PeerError> {
    match tokio::time::timeout(timeout, client.call(request)).await {
        Ok(result) => result.map(Some),
        Err(_) => Err(PeerError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the leader did not answer",
        ))),
    }
}

impl Handle {
    /// Waits until the state machine has applied every entry in the log
    /// (after a restart: the log written before the crash).
    pub async fn wait_caught_up(&self, timeout: Duration) -> bool {
        let last = self.log.last_index();
        self.raft
            .wait(Some(timeout))
            .applied_index_at_least(last, "catching up")
            .await
            .is_ok()
    }

    /// Waits until this replica can serve clients (or gives up after
    /// `timeout`). Judged from the same leadership view the pump uses, so
    /// the first client write is not forwarded to a leader that is this very
    /// server.
    pub async fn wait_for_leader(&self, timeout: Duration) -> bool {
        let mut leadership = self.leadership.clone();
        let mut joined = self.joined.clone();
        // A server that rejoins serves once it has caught up (see `join`).
        let ready = async {
            joined.wait_for(|j| *j).await.is_ok()
                && leadership.wait_for(|l| l.serving).await.is_ok()
        };
        tokio::time::timeout(timeout, ready).await.unwrap_or(false)
    }

    /// Waits until this replica has applied everything the leader had
    /// committed when called (ZooKeeper's `sync`).
    pub async fn read_barrier(&self) -> Result<(), ErrorCode> {
        let index = match self.raft.ensure_linearizable().await {
            Ok(log_id) => log_id.map_or(0, |l| l.index),
            Err(_) => {
                // Not the leader: ask it for its commit point, then catch up.
                match self.leader_link.call(&PeerRequest::ReadIndex).await {
                    Ok(Some(PeerResponse::ReadIndex(Ok(index)))) => index,
                    _ => return Err(ErrorCode::ConnectionLoss),
                }
            }
        };
        self.raft
            .wait(Some(READ_BARRIER_TIMEOUT))
            .applied_index_at_least(Some(index), "sync")
            .await
            .map(|_| ())
            .map_err(|_| ErrorCode::OperationTimeout)
    }

    pub fn is_leader(&self) -> bool {
        self.leadership.borrow().leading
    }

    /// Whether clients should be served here (see [`Leadership::serving`]).
    pub fn serving(&self) -> bool {
        self.leadership.borrow().serving
    }

    pub fn leadership(&self) -> Leadership {
        *self.leadership.borrow()
    }

    /// Changes of leadership, for tasks that react to them.
    pub fn watch_leadership(&self) -> watch::Receiver<Leadership> {
        self.leadership.clone()
    }

    /// Followers (voters and observers) the leader replicates to, and how
    /// many of them are caught up to within `lag_max` entries.
    pub fn followers(&self, lag_max: u64) -> (usize, usize) {
        let metrics = self.raft.metrics().borrow().clone();
        let Some(replication) = metrics.replication else {
            return (0, 0);
        };
        let last = metrics.last_log_index.unwrap_or(0);
        let followers: Vec<_> = replication
            .iter()
            .filter(|(id, _)| **id != metrics.id)
            .collect();
        let synced = followers
            .iter()
            .filter(|(_, matched)| matched.is_some_and(|m| last.saturating_sub(m.index) <= lag_max))
            .count();
        (followers.len(), synced)
    }

    /// Readies the change to `target` on the leader, wherever the
    /// `reconfig` arrived (see [`crate::membership`]).
    pub async fn prepare_reconfig(&self, target: MembershipTarget) -> Result<(), Refusal> {
        if self.raft.metrics().borrow().state == ServerState::Leader {
            return self.reconfigurer.prepare(&target).await;
        }
        let request = PeerRequest::PrepareReconfig(target);
        match self
            .leader_link
            .call_alone(&request, membership::PREPARE_TIMEOUT)
            .await
        {
            Ok(Some(PeerResponse::Prepared(result))) => result,
            _ => Err(Refusal::NoLeader),
        }
    }

    /// Reports sessions seen alive here to the leader (followers).
    pub async fn report_sessions(&self, sessions: Vec<i64>) {
        if sessions.is_empty() || self.is_leader() {
            return;
        }
        let _ = self.leader_link.call(&PeerRequest::Touch(sessions)).await;
    }

    /// True while writes are refused for lack of disk space.
    pub fn disk_full(&self) -> bool {
        self.log.disk_full()
    }

    /// Set once storage failed; the server must stop.
    pub fn failed(&self) -> bool {
        self.log.failed() || self.raft.metrics().borrow().running_state.is_err()
    }
}

/// Roost's peer requests, served by this replica.
struct Service {
    raft: Raft,
    host: Arc<dyn StateMachineHost>,
    proposals: mpsc::Sender<Entry>,
    leadership: watch::Receiver<Leadership>,
    gate: VoteGate,
    reconfigurer: Reconfigurer,
    heard: LeaderContact,
}

impl PeerService for Service {
    fn forward(&self, batch: Batch) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            if !self.leadership.borrow().leading {
                return Err("not the leader".into());
            }
            for entry in batch.entries() {
                self.proposals
                    .send(entry.clone())
                    .await
                    .map_err(|_| "shutting down".to_string())?;
            }
            Ok(())
        })
    }

    fn touch(&self, sessions: &[i64]) {
        self.host.touch_sessions(sessions);
    }

    fn read_index(&self) -> BoxFuture<'_, Result<u64, String>> {
        Box::pin(async move {
            self.raft
                .ensure_linearizable()
                .await
                .map(|log_id| log_id.map_or(0, |l| l.index))
                .map_err(|e| e.to_string())
        })
    }

    fn status(&self) -> PeerStatus {
        PeerStatus::of(&self.raft, &self.gate)
    }

    fn grants_votes(&self) -> bool {
        self.gate.stage() == Stage::Voting
    }

    fn prepare_reconfig<'a>(
        &'a self,
        target: &'a MembershipTarget,
    ) -> BoxFuture<'a, Result<(), Refusal>> {
        Box::pin(self.reconfigurer.prepare(target))
    }

    fn heard_from_leader(&self) {
        self.heard.touch();
    }
}

impl Consensus {
    /// Recovers storage (snapshot + log), starts raft (and, in an ensemble,
    /// the peer listener), and starts the pump that proposes what arrives on
    /// `proposals`. `proposer` is the sending side of the same channel, used
    /// for writes forwarded by followers.
    pub async fn start(
        config: ConsensusConfig,
        fs: Arc<dyn FileSystem>,
        host: Arc<dyn StateMachineHost>,
        proposer: mpsc::Sender<Entry>,
        proposals: mpsc::Receiver<Entry>,
    ) -> Result<Consensus, ConsensusError> {
        let started = std::time::Instant::now();
        let bounds = config.bounds;
        let wal_options = WalOptions {
            record_bytes_max: u32::try_from(bounds.record_bytes_max).unwrap_or(u32::MAX),
            batch_bytes_max: bounds.append_bytes_max as u64,
            ..config.wal.clone()
        };
        let log = LogStore::open(fs.clone(), &config.log_dir, wal_options, &bounds)?;
        info!("log opened in {:?}", started.elapsed());
        let (snapshots, loaded) = SnapshotStore::open(
            fs,
            &config.snapshot_dir,
            config.state.clone(),
            config.snap_retain,
        )?;
        info!("snapshot loaded after {:?}", started.elapsed());
        let snapshot_index = loaded
            .as_ref()
            .and_then(|(_, mark)| mark.last_applied_index());
        // Nothing raft wrote survives here: a founder, or a replaced disk.
        let blank = log.last_index().is_none() && !log.has_vote() && snapshot_index.is_none();
        if let Some(purged) = log.purged_index() {
            if snapshot_index.is_none_or(|s| s < purged) {
                return Err(ConsensusError::Storage(DiskError::Invariant(format!(
                    "the log was purged up to index {purged} but no snapshot covers it; \
                     restore this server's data from a replica or a backup"
                ))));
            }
        }
        if let Some((state, mark)) = loaded {
            host.install(state, mark);
        }
        let replayed = if config.is_ensemble() {
            (0, 0)
        } else {
            let replayed = replay_log(&log, host.mark(), |writes, mark| host.apply(writes, mark))?;
            info!(
                "{} writes ({} bytes) replayed from the log after {:?}",
                replayed.0,
                replayed.1,
                started.elapsed()
            );
            replayed
        };
        let (housekeeping_tx, housekeeping_rx) = mpsc::unbounded_channel();
        let state_machine = StateMachine::new(
            host.clone(),
            Arc::new(snapshots),
            housekeeping_tx,
            SnapshotPolicy {
                entries: config.snap_count,
                bytes: config.snap_bytes,
            },
            replayed,
        );
        let raft_config = openraft::Config {
            cluster_name: "roost".into(),
            heartbeat_interval: config.heartbeat_ms,
            election_timeout_min: config.election_timeout_ms.0,
            election_timeout_max: config.election_timeout_ms.1,
            install_snapshot_timeout: 120_000,
            max_payload_entries: 64,
            snapshot_policy: openraft::SnapshotPolicy::Never,
            // Roost purges the log itself, behind the oldest retained snapshot.
            max_in_snapshot_log_to_keep: u64::MAX,
            purge_batch_size: 1,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ConsensusError::Raft(e.to_string()))?;
        let raft_config = Arc::new(raft_config);
        let network = PeerNetwork::new(
            config
                .members
                .iter()
                .map(|(id, m)| (*id, m.address.clone()))
                .collect(),
            bounds,
        );
        let raft = if config.is_ensemble() {
            Raft::new(
                config.node_id,
                raft_config,
                network.clone(),
                log.clone(),
                state_machine,
            )
            .await
        } else {
            Raft::new(
                config.node_id,
                raft_config,
                NoNetwork,
                log.clone(),
                state_machine,
            )
            .await
        }
        .map_err(|e| ConsensusError::Raft(e.to_string()))?;
        let (leadership_tx, leadership) = watch::channel(Leadership::default());
        // A leader that heard from no quorum for twice the election timeout
        // steps back from accepting writes, as ZooKeeper's leader does.
        let lease_ms = config.election_timeout_ms.1 * 2;
        let heard = LeaderContact::default();
        let mut tasks = vec![tokio::spawn(track_leadership(
            raft.clone(),
            leadership_tx,
            lease_ms,
            heard.clone(),
        ))];
        let reconfigurer = Reconfigurer::new(raft.clone(), host.clone());
        let gate = VoteGate::default();
        // A blank voter joining (see `join`): it serves once it has joined.
        let mut joiner = None;
        if config.is_ensemble() {
            let own = config.members.get(&config.node_id).ok_or_else(|| {
                ConsensusError::Raft(format!(
                    "server.{} is not in the configuration",
                    config.node_id
                ))
            })?;
            let bind =
                peer::bind_address(&own.address).ok_or_else(|| ConsensusError::PeerBind {
                    addr: own.address.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "unresolvable address",
                    ),
                })?;
            let listener = bind_peer(bind)
                .await
                .map_err(|source| ConsensusError::PeerBind {
                    addr: own.address.clone(),
                    source,
                })?;
            if !own.observer {
                // Decided before peers can reach raft: a blank voter must not
                // grant a vote before it knows whether the ensemble exists.
                let candidate = Joiner {
                    raft: raft.clone(),
                    network: network.clone(),
                    node_id: config.node_id,
                    voters: config
                        .members
                        .iter()
                        .filter(|(_, m)| !m.observer)
                        .map(|(id, m)| (*id, BasicNode::new(m.address.clone())))
                        .collect(),
                    log_dir: config.log_dir.clone(),
                    gate: gate.clone(),
                };
                joiner = Some(candidate).filter(|j| j.must_ask_peers(blank));
            }
            let service = Arc::new(Service {
                raft: raft.clone(),
                host: host.clone(),
                proposals: proposer,
                leadership: leadership.clone(),
                gate,
                reconfigurer: reconfigurer.clone(),
                heard: heard.clone(),
            });
            tasks.push(tokio::spawn(peer::serve(
                listener,
                raft.clone(),
                service,
                bounds,
            )));
        } else {
            let initialized = raft
                .is_initialized()
                .await
                .map_err(|e| ConsensusError::Raft(e.to_string()))?;
            if !initialized {
                let voters = BTreeMap::from([(config.node_id, BasicNode::new(""))]);
                match raft.initialize(voters).await {
                    Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                    Err(e) => return Err(ConsensusError::Raft(e.to_string())),
                }
            }
            // A single voter need not wait out an election timeout.
            let _ = raft.trigger().elect().await;
        }
        let (joined_tx, joined) = watch::channel(joiner.is_none());
        if let Some(joiner) = joiner {
            tasks.push(tokio::spawn(joiner.run(blank, joined_tx)));
        }
        tasks.push(tokio::spawn(membership::reconcile(
            reconfigurer.clone(),
            leadership.clone(),
        )));
        tasks.push(tokio::spawn(run_housekeeping(
            raft.clone(),
            log.clone(),
            housekeeping_rx,
        )));
        let pump = Pump {
            raft: raft.clone(),
            log: log.clone(),
            host,
            leadership: leadership.clone(),
            leader: LeaderLink::new(raft.clone(), network.clone()),
            batch_entries_max: config.batch_entries_max,
            bounds: config.bounds,
            in_flight_max: config.in_flight_batches_max.max(1),
        };
        tasks.push(tokio::spawn(pump.run(proposals)));
        info!(
            "replica {} recovered in {:?}",
            config.node_id,
            started.elapsed()
        );
        Ok(Consensus {
            leader_link: LeaderLink::new(raft.clone(), network),
            reconfigurer,
            raft,
            log,
            leadership,
            joined,
            tasks,
        })
    }

    pub fn handle(&self) -> Handle {
        Handle {
            raft: self.raft.clone(),
            log: self.log.clone(),
            leadership: self.leadership.clone(),
            leader_link: self.leader_link.clone(),
            reconfigurer: self.reconfigurer.clone(),
            joined: self.joined.clone(),
        }
    }

    pub async fn shutdown(&self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Err(e) = self.raft.shutdown().await {
            warn!("raft shutdown: {e}");
        }
    }
}

/// The state of a stopped standalone server's data (`roost export`): its
/// newest snapshot and every write logged after it. Opening the log may
/// finish what a crash left (a torn tail), as a restart would.
pub fn read_standalone_state(
    data_dir: PathBuf,
    log_dir: PathBuf,
    state: StateConfig,
) -> Result<roost_core::State, ConsensusError> {
    let config = ConsensusConfig::standalone(data_dir, log_dir, state);
    let fs: Arc<dyn FileSystem> = Arc::new(roost_storage::StdFs);
    let log = LogStore::open(
        fs.clone(),
        &config.log_dir,
        config.wal.clone(),
        &config.bounds,
    )?;
    let (_, loaded) = SnapshotStore::open(
        fs,
        &config.snapshot_dir,
        config.state.clone(),
        config.snap_retain,
    )?;
    let (mut state, mark) = loaded.unwrap_or_else(|| {
        (
            roost_core::State::new(config.state.clone()),
            AppliedMark::default(),
        )
    });
    replay_log(&log, mark, |writes, _| {
        for write in writes {
            state.apply(write);
        }
    })?;
    Ok(state)
}

/// Feeds every log entry after `mark` to `apply` (the writes it carries,
/// none for raft's own entries, and the mark after it), in order, one entry
/// at a time. Only for a standalone server's log, every entry of which is
/// committed: a standalone server applies its log this way before raft starts
/// (openraft would commit it all at once on election and read the whole tail
/// into memory to apply it).
///
/// Returns the client writes and log bytes replayed, which count towards the
/// next snapshot as if just applied.
fn replay_log(
    log: &LogStore,
    mut mark: AppliedMark,
    mut apply: impl FnMut(&[Entry], &AppliedMark),
) -> Result<(u64, u64), ConsensusError> {
    let mut replayed = (0, 0);
    let from = mark.last_applied_index().map_or(0, |i| i + 1);
    let Some(last) = log.last_index() else {
        return Ok(replayed);
    };
    let from = from.max(log.purged_index().map_or(0, |p| p + 1));
    for index in from..=last {
        let entry = log.entry_at(index)?.ok_or_else(|| {
            DiskError::Invariant(format!(
                "the log has no entry {index} before its last ({last})"
            ))
        })?;
        mark.last_applied = Some(entry.log_id);
        match entry.payload {
            openraft::EntryPayload::Blank => apply(&[], &mark),
            openraft::EntryPayload::Normal(batch) => {
                apply(batch.entries(), &mark);
                replayed.0 += batch.entries().len() as u64;
                replayed.1 += batch.encoded().len() as u64;
            }
            openraft::EntryPayload::Membership(membership) => {
                mark.membership =
                    crate::types::StoredMembership::new(Some(entry.log_id), membership);
                apply(&[], &mark);
            }
        }
    }
    Ok(replayed)
}

/// Binds the peer port, retrying briefly (a restarted server may find its
/// old socket still in TIME_WAIT).
async fn bind_peer(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let mut attempt = 0;
    loop {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(addr).and_then(|()| socket.listen(128)) {
            Ok(listener) => return Ok(listener),
            Err(e) if attempt < 50 => {
                attempt += 1;
                warn!("cannot listen for peers on {addr} yet: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// How long a learner may hear nothing from its leader and still serve.
/// Generous: replication to a learner under load may pause that long.
const LEARNER_SILENCE_MAX: Duration = Duration::from_secs(4);

/// When this replica last accepted a leader's AppendEntries.
#[derive(Clone)]
struct LeaderContact {
    since: std::time::Instant,
    /// Milliseconds after `since`; 0: never.
    last_ms: Arc<std::sync::atomic::AtomicU64>,
}

impl Default for LeaderContact {
    fn default() -> Self {
        LeaderContact {
            since: std::time::Instant::now(),
            last_ms: Default::default(),
        }
    }
}

impl LeaderContact {
    fn touch(&self) {
        let ms = self.since.elapsed().as_millis() as u64 + 1;
        self.last_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    fn within(&self, limit: Duration) -> bool {
        let last = self.last_ms.load(std::sync::atomic::Ordering::Relaxed);
        last > 0
            && (self.since.elapsed().as_millis() as u64 + 1).saturating_sub(last)
                <= limit.as_millis() as u64
    }
}

/// Publishes leadership changes seen in raft's metrics, and notices a leader
/// that stopped hearing from its quorum (checked on a timer, since silence
/// changes no metric). Such a leader also stops sending heartbeats, so that
/// followers still hearing it elect anew instead of following a leader that
/// cannot commit (openraft 0.9 leaders never step down by themselves).
async fn track_leadership(
    raft: Raft,
    tx: watch::Sender<Leadership>,
    lease_ms: u64,
    heard: LeaderContact,
) {
    let mut metrics = raft.metrics();
    let mut ticker = tokio::time::interval(Duration::from_millis((lease_ms / 4).max(10)));
    let mut heartbeats = true;
    // When this replica last became leader: a new leader has a full lease
    // before its first quorum acknowledgement.
    let mut leader_since: Option<std::time::Instant> = None;
    loop {
        let (current, cut_off) = {
            let m = metrics.borrow_and_update();
            let is_leader = m.state == ServerState::Leader;
            leader_since = is_leader.then(|| leader_since.unwrap_or_else(std::time::Instant::now));
            let quorum_recent = match (m.millis_since_quorum_ack, leader_since) {
                (Some(ms), _) => ms <= lease_ms,
                (None, Some(elected)) => elected.elapsed() <= Duration::from_millis(lease_ms),
                (None, None) => false,
            } || m.membership_config.membership().voter_ids().count() <= 1;
            // An openraft leader made an observer (a learner) by `reconfig`
            // would go on leading; ZooKeeper's leader steps down instead.
            let voter = m
                .membership_config
                .membership()
                .voter_ids()
                .any(|id| id == m.id);
            let leading = is_leader && quorum_recent && voter;
            let learner = m.state == ServerState::Learner;
            let current = Leadership {
                leader: m.current_leader,
                leading,
                observer: learner
                    && m.membership_config
                        .membership()
                        .learner_ids()
                        .any(|id| id == m.id),
                serving: match m.current_leader {
                    Some(id) if id == m.id => leading,
                    // A learner never stands for election, so its leader
                    // stays "known" however long it has been silent: an
                    // observer cut off (or a server removed from the
                    // ensemble) must stop serving, as ZooKeeper's does.
                    Some(_) if learner => heard.within(LEARNER_SILENCE_MAX),
                    Some(_) => true,
                    None => false,
                },
            };
            (current, is_leader && !leading)
        };
        if heartbeats == cut_off {
            heartbeats = !cut_off;
            if cut_off {
                warn!("this leader is no longer a voter, or no quorum acknowledged it for {lease_ms} ms: it stops accepting writes");
            }
            raft.runtime_config().heartbeat(heartbeats);
        }
        tx.send_if_modified(|old| {
            let changed = *old != current;
            *old = current;
            changed
        });
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            _ = ticker.tick() => {}
        }
    }
}

async fn run_housekeeping(
    raft: Raft,
    log: LogStore,
    mut requests: mpsc::UnboundedReceiver<Housekeeping>,
) {
    while let Some(request) = requests.recv().await {
        let result = match request {
            Housekeeping::TakeSnapshot => raft.trigger().snapshot().await,
            Housekeeping::PurgeUpTo(index) if index > 0 => raft.trigger().purge_log(index).await,
            Housekeeping::PurgeUpTo(_) => Ok(()),
            Housekeeping::TrimCacheThrough(index) => {
                log.trim_cache_through(index);
                Ok(())
            }
        };
        if let Err(e) = result {
            warn!("raft housekeeping stopped: {e}");
            return;
        }
    }
}

/// How long a follower holds writes while no leader will take them (an
/// election in progress) before giving up on them.
const FORWARD_PATIENCE: Duration = Duration::from_secs(3);

/// Turns the stream of client writes into raft entries (on the leader) or
/// forwards them to the leader (elsewhere).
struct Pump {
    raft: Raft,
    log: LogStore,
    host: Arc<dyn StateMachineHost>,
    leadership: watch::Receiver<Leadership>,
    /// Its own link: forwarded writes do not queue behind `sync`s.
    leader: LeaderLink,
    batch_entries_max: usize,
    bounds: Bounds,
    in_flight_max: usize,
}

impl Pump {
    /// Stamps proposals with the leader's clock (never going backwards),
    /// batches them by count and bytes, and proposes the batches in order.
    async fn run(self, mut proposals: mpsc::Receiver<Entry>) {
        let permits = Arc::new(Semaphore::new(self.in_flight_max));
        let mut last_time = 0;
        let mut received = Vec::with_capacity(self.batch_entries_max);
        // Entries taken from the channel and not yet in a batch, in order.
        let mut waiting: VecDeque<Entry> = VecDeque::new();
        let mut builder = BatchBuilder::new(self.bounds.batch_bytes_max);
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            if waiting.is_empty() {
                if proposals
                    .recv_many(&mut received, self.batch_entries_max)
                    .await
                    == 0
                {
                    return;
                }
                waiting.extend(received.drain(..));
            }
            while waiting.len() < self.batch_entries_max {
                match proposals.try_recv() {
                    Ok(entry) => waiting.push_back(entry),
                    Err(_) => break,
                }
            }
            let leading = self.leadership.borrow().leading;
            if leading {
                last_time = wall_clock_ms().max(last_time);
            }
            while builder.len() < self.batch_entries_max {
                let Some(mut entry) = waiting.pop_front() else {
                    break;
                };
                if leading {
                    entry.time_ms = last_time;
                }
                match builder.push(entry) {
                    Pushed::Added => {}
                    Pushed::Full(entry) => {
                        waiting.push_front(entry);
                        break;
                    }
                    Pushed::TooLarge(entry) => {
                        // Only a request whose strings grew when re-encoded
                        // (invalid UTF-8 replaced) can get here: it fails in
                        // order, as a write ZooKeeper could not read would.
                        warn!(
                            "a write of session 0x{:x} is too large for the log; it fails",
                            entry.session_id
                        );
                        waiting.push_front(Entry {
                            identities: Arc::from(Vec::new()),
                            txn: Txn::Fail(ErrorCode::MarshallingError),
                            ..entry
                        });
                    }
                }
            }
            let batch = builder.finish();
            if !leading {
                drop(permit);
                self.forward(batch).await;
                continue;
            }
            let needed = batch.encoded().len() as u64 + LOG_RESERVE_BYTES;
            let log = &self.log;
            if log.failed() || (log.disk_full() && log.room_bytes() < needed) {
                drop(permit);
                // Earlier batches finish first: each connection's replies stay in order.
                let Ok(all) = permits.acquire_many(self.in_flight_max as u32).await else {
                    return;
                };
                warn!(
                    "refusing {} writes: disk full or log failed",
                    batch.entries().len()
                );
                self.host.refuse(batch.entries(), ErrorCode::SystemError);
                drop(all);
                continue;
            }
            match self.raft.client_write_ff(batch.clone()).await {
                Ok(done) => {
                    let host = self.host.clone();
                    tokio::spawn(async move {
                        let outcome = done.await;
                        drop(permit);
                        if !matches!(outcome, Ok(Ok(_))) {
                            warn!(
                                "a batch of {} writes was not committed: {outcome:?}",
                                batch.entries().len()
                            );
                            host.abandon(batch.entries());
                        }
                    });
                }
                Err(fatal) => {
                    error!("raft stopped: {fatal}");
                    self.host.refuse(batch.entries(), ErrorCode::SystemError);
                    return;
                }
            }
        }
    }

    /// Hands a batch to the leader. While it surely was not delivered (no
    /// leader known, the leader unreachable, or the peer no longer leading)
    /// it is retried until `FORWARD_PATIENCE` runs out; once it may have been
    /// delivered its outcome is unknown and the writers' connections are closed.
    async fn forward(&self, mut batch: Batch) {
        let deadline = tokio::time::Instant::now() + FORWARD_PATIENCE;
        loop {
            if !batch.entries().iter().all(|e| self.host.still_awaited(e)) {
                let awaited: Vec<Entry> = batch
                    .entries()
                    .iter()
                    .filter(|e| self.host.still_awaited(e))
                    .cloned()
                    .collect();
                if awaited.is_empty() {
                    return;
                }
                batch = Batch::from_entries(awaited);
            }
            let count = batch.entries().len();
            let refusal = match self.leader.call(&PeerRequest::Forward(batch.clone())).await {
                Ok(Some(PeerResponse::Forwarded(Ok(())))) => return,
                Ok(None) => "no leader".to_string(),
                Ok(Some(PeerResponse::Forwarded(Err(refusal)))) => refusal,
                Err(e @ PeerError::Connect(_)) => e.to_string(),
                outcome => {
                    warn!("forwarding {count} writes to the leader: outcome unknown ({outcome:?})");
                    self.host.abandon(batch.entries());
                    return;
                }
            };
            if tokio::time::Instant::now() >= deadline {
                warn!("no leader took {count} writes within {FORWARD_PATIENCE:?} ({refusal}); abandoned");
                self.host.abandon(batch.entries());
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
