//! One replica: the raft node, its log and state machine, and the proposal
//! pump that turns a stream of client writes into batches.
//!
//! The pump is where group commit happens: while one batch is being made
//! durable, the next accumulates; at most `in_flight_batches_max` raft
//! entries are outstanding, and each carries up to `batch_entries_max`
//! client writes. Writes are refused before they reach the log when the disk
//! is full, after every earlier batch has finished, so each connection still
//! gets its replies in order.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use openraft::{BasicNode, SnapshotPolicy};
use roost_core::{Entry, StateConfig};
use roost_proto::ErrorCode;
use roost_storage::{FileSystem, StorageError as DiskError, WalOptions};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::log_store::LogStore;
use crate::network::NoNetwork;
use crate::state_machine::{Housekeeping, SnapshotStore, StateMachine, StateMachineHost};
use crate::types::{Batch, NodeId, Raft};

/// How a replica is set up.
#[derive(Debug, Clone)]
pub struct ConsensusConfig {
    pub node_id: NodeId,
    /// This node's address for peers (unused standalone).
    pub address: String,
    pub log_dir: PathBuf,
    pub snapshot_dir: PathBuf,
    pub wal: WalOptions,
    /// Client entries between snapshots (randomised per snapshot like ZooKeeper).
    pub snap_count: u64,
    /// Snapshots kept on disk (`autopurge.snapRetainCount`).
    pub snap_retain: usize,
    pub state: StateConfig,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: (u64, u64),
    /// Client writes per raft entry.
    pub batch_entries_max: usize,
    /// Raft entries proposed and not yet applied.
    pub in_flight_batches_max: usize,
}

impl ConsensusConfig {
    pub fn standalone(data_dir: PathBuf, log_dir: PathBuf, state: StateConfig) -> Self {
        ConsensusConfig {
            node_id: 1,
            address: String::new(),
            log_dir: log_dir.join("log"),
            snapshot_dir: data_dir.join("snapshots"),
            wal: WalOptions::default(),
            snap_count: 100_000,
            snap_retain: 3,
            state,
            heartbeat_ms: 100,
            election_timeout_ms: (300, 600),
            batch_entries_max: 1024,
            in_flight_batches_max: 2,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConsensusError {
    #[error(transparent)]
    Storage(#[from] DiskError),
    #[error("raft: {0}")]
    Raft(String),
}

/// Space kept free in the log for raft's own entries (blank, membership).
const LOG_RESERVE_BYTES: u64 = 1 << 20;

/// A running replica.
pub struct Consensus {
    raft: Raft,
    log: LogStore,
    tasks: Vec<JoinHandle<()>>,
}

/// What the rest of the server needs from the replica: cheap to clone.
#[derive(Clone)]
pub struct Handle {
    raft: Raft,
    log: LogStore,
}

impl Handle {
    /// Waits until this replica has applied everything the leader had
    /// committed when called (ZooKeeper's `sync`).
    pub async fn read_barrier(&self) -> Result<(), ErrorCode> {
        self.raft
            .ensure_linearizable()
            .await
            .map(|_| ())
            .map_err(|_| ErrorCode::ConnectionLoss)
    }

    pub fn is_leader(&self) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.current_leader == Some(m.id)
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

impl Consensus {
    /// Recovers storage (snapshot + log), starts raft, and starts the pump
    /// that proposes what arrives on `proposals`.
    pub async fn start(
        config: ConsensusConfig,
        fs: Arc<dyn FileSystem>,
        host: Arc<dyn StateMachineHost>,
        proposals: mpsc::Receiver<Entry>,
    ) -> Result<Consensus, ConsensusError> {
        let started = std::time::Instant::now();
        let log = LogStore::open(fs.clone(), &config.log_dir, config.wal.clone())?;
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
        let (housekeeping_tx, housekeeping_rx) = mpsc::unbounded_channel();
        let state_machine = StateMachine::new(
            host.clone(),
            Arc::new(snapshots),
            housekeeping_tx,
            config.snap_count,
        );
        let raft_config = openraft::Config {
            cluster_name: "roost".into(),
            heartbeat_interval: config.heartbeat_ms,
            election_timeout_min: config.election_timeout_ms.0,
            election_timeout_max: config.election_timeout_ms.1,
            install_snapshot_timeout: 120_000,
            max_payload_entries: 64,
            snapshot_policy: SnapshotPolicy::Never,
            // Roost purges the log itself, behind the oldest retained snapshot.
            max_in_snapshot_log_to_keep: u64::MAX,
            purge_batch_size: 1,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ConsensusError::Raft(e.to_string()))?;
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            NoNetwork,
            log.clone(),
            state_machine,
        )
        .await
        .map_err(|e| ConsensusError::Raft(e.to_string()))?;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| ConsensusError::Raft(e.to_string()))?;
        if !initialized {
            let members =
                BTreeMap::from([(config.node_id, BasicNode::new(config.address.clone()))]);
            match raft.initialize(members).await {
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(ConsensusError::Raft(e.to_string())),
            }
        }
        // A single voter need not wait out an election timeout.
        let _ = raft.trigger().elect().await;
        let tasks = vec![
            tokio::spawn(run_housekeeping(raft.clone(), housekeeping_rx)),
            tokio::spawn(run_pump(
                raft.clone(),
                log.clone(),
                host,
                proposals,
                config.batch_entries_max,
                config.in_flight_batches_max,
            )),
        ];
        info!(
            "replica {} recovered in {:?}",
            config.node_id,
            started.elapsed()
        );
        Ok(Consensus { raft, log, tasks })
    }

    pub fn handle(&self) -> Handle {
        Handle {
            raft: self.raft.clone(),
            log: self.log.clone(),
        }
    }

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

    pub async fn shutdown(&self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Err(e) = self.raft.shutdown().await {
            warn!("raft shutdown: {e}");
        }
    }
}

async fn run_housekeeping(raft: Raft, mut requests: mpsc::UnboundedReceiver<Housekeeping>) {
    while let Some(request) = requests.recv().await {
        let result = match request {
            Housekeeping::TakeSnapshot => raft.trigger().snapshot().await,
            Housekeeping::PurgeUpTo(index) if index > 0 => raft.trigger().purge_log(index).await,
            Housekeeping::PurgeUpTo(_) => Ok(()),
        };
        if let Err(e) = result {
            warn!("raft housekeeping stopped: {e}");
            return;
        }
    }
}

/// Stamps proposals with the leader's clock (never going backwards), batches
/// them, and proposes the batches in order.
async fn run_pump(
    raft: Raft,
    log: LogStore,
    host: Arc<dyn StateMachineHost>,
    mut proposals: mpsc::Receiver<Entry>,
    batch_entries_max: usize,
    in_flight_max: usize,
) {
    let in_flight_max = in_flight_max.max(1);
    let permits = Arc::new(Semaphore::new(in_flight_max));
    let last_time = Arc::new(AtomicI64::new(0));
    let mut buffer = Vec::with_capacity(batch_entries_max);
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        if proposals.recv_many(&mut buffer, batch_entries_max).await == 0 {
            return;
        }
        let now = wall_clock_ms().max(last_time.load(Ordering::Relaxed));
        last_time.store(now, Ordering::Relaxed);
        for entry in &mut buffer {
            entry.time_ms = now;
        }
        // An exact-size copy: the buffer's capacity is reused for the next batch.
        let batch = Batch(Arc::new(buffer.split_off(0)));
        let needed = batch.encoded_len_estimate() + LOG_RESERVE_BYTES;
        let refuse = log.failed() || (log.disk_full() && log.room_bytes() < needed);
        if refuse {
            drop(permit);
            // Earlier batches finish first: each connection's replies stay in order.
            let Ok(all) = permits.acquire_many(in_flight_max as u32).await else {
                return;
            };
            warn!("refusing {} writes: disk full or log failed", batch.0.len());
            host.refuse(&batch.0, ErrorCode::SystemError);
            drop(all);
            continue;
        }
        match raft.client_write_ff(batch.clone()).await {
            Ok(done) => {
                let host = host.clone();
                tokio::spawn(async move {
                    let outcome = done.await;
                    drop(permit);
                    if !matches!(outcome, Ok(Ok(_))) {
                        warn!(
                            "a batch of {} writes was not committed: {outcome:?}",
                            batch.0.len()
                        );
                        host.refuse(&batch.0, ErrorCode::ConnectionLoss);
                    }
                });
            }
            Err(fatal) => {
                error!("raft stopped: {fatal}");
                host.refuse(&batch.0, ErrorCode::SystemError);
                return;
            }
        }
    }
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
