//! `roost-server`: the tokio shell around `roost-core`.
//!
//! [`Server::start`] recovers the replica (snapshot + log, through
//! `roost-consensus`), then binds the client port and runs: the accept loop
//! ([`listener`], with the per-IP connection limit), one task per connection
//! ([`connection`]: frames off the wire through [`framing`], requests
//! ordered and bounded by a per-session [`scheduler`]), the apply path that
//! tells connections what changed ([`apply`]), session expiry and the
//! container/TTL reaper ([`housekeeping`]). Configuration comes from
//! `zoo.cfg` ([`config`]).
//!
//! The public surface is [`Server`] and its [`Config`]; everything else is
//! private to the crate.

// Items are crate-private unless the crate root re-exports them.
#![warn(unreachable_pub)]

mod apply;
pub mod config;
mod connection;
mod fourlw;
mod framing;
mod housekeeping;
pub mod import;
mod listener;
mod scheduler;
mod shared;
mod stats;
mod tracker;
mod whoami;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use roost_consensus::{Bounds, Consensus, ConsensusConfig, ConsensusError, Member};
use roost_core::{State, StateConfig};
use roost_storage::{FileSystem, StdFs, WalOptions};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

pub use config::{Config, ConfigError};
use shared::Shared;

/// Proposals waiting for the log; a full queue slows connections down.
const PROPOSAL_QUEUE_MAX: usize = 16 * 1024;

/// How long recovery may take to replay the log before the server gives up.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(600);

/// A running server.
pub struct Server {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    consensus: Consensus,
    tasks: JoinSet<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot recover the data in {dir}: {source}")]
    Recovery {
        dir: std::path::PathBuf,
        source: ConsensusError,
    },
    #[error("recovery did not finish replaying the log within {0:?}")]
    RecoveryTimeout(Duration),
    #[error(transparent)]
    Config(ConfigError),
}

/// The server stopped because something it depends on failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Fatal(pub String);

impl Server {
    /// Starts a standalone server on the real file system.
    pub async fn start(config: Config) -> Result<Server, StartError> {
        Server::start_with_fs(config, Arc::new(StdFs)).await
    }

    /// Recovers the data, then serves clients; returns once it accepts
    /// connections. `fs` lets tests inject disk faults.
    pub async fn start_with_fs(
        config: Config,
        fs: Arc<dyn FileSystem>,
    ) -> Result<Server, StartError> {
        let state_config = StateConfig {
            extended_types: config.extended_types_enabled,
            reconfig_enabled: config.reconfig_enabled,
            membership: config.membership_text().into(),
        };
        if !config.force_sync {
            warn!("forceSync=no: writes are acknowledged before they reach the disk; a crash or power loss CAN LOSE ACKNOWLEDGED WRITES");
        }
        let my_id = config.my_id().map_err(StartError::Config)?;
        let mut config = config;
        if let Some(id) = my_id {
            config.adopt_own_client_address(id);
        }
        let members: BTreeMap<u64, Member> = config
            .servers
            .iter()
            .map(|peer| {
                (
                    peer.id,
                    Member {
                        address: format!("{}:{}", peer.host, peer.peer_port),
                        observer: peer.observer,
                    },
                )
            })
            .collect();
        let consensus_config = ConsensusConfig {
            node_id: my_id.unwrap_or(1),
            members,
            wal: WalOptions {
                segment_bytes: config.prealloc_bytes,
                force_sync: config.force_sync,
                ..WalOptions::default()
            },
            snap_count: config.snap_count,
            snap_bytes: config.snap_size_limit_bytes,
            snap_retain: config.snap_retain_count,
            bounds: Bounds::for_entries(roost_core::entry_bytes_max(config.max_frame_bytes)),
            ..ConsensusConfig::standalone(
                config.data_dir.clone(),
                config.log_dir().to_path_buf(),
                state_config.clone(),
            )
        };
        let data_dir = config.data_dir.clone();
        let election_port = my_id
            .filter(|_| config.is_ensemble())
            .and_then(|id| config.servers.iter().find(|s| s.id == id))
            .map(|own| (own.host.clone(), own.election_port));
        let (proposals, proposal_rx) = tokio::sync::mpsc::channel(PROPOSAL_QUEUE_MAX);
        let shared = Arc::new(Shared::new(
            config,
            my_id.unwrap_or(1),
            State::new(state_config),
            proposals.clone(),
        ));
        let host = Arc::new(apply::Host(shared.clone()));
        let consensus = Consensus::start(consensus_config, fs, host, proposals, proposal_rx)
            .await
            .map_err(|source| StartError::Recovery {
                dir: data_dir,
                source,
            })?;
        let _ = shared.consensus.set(consensus.handle());
        let mut tasks = JoinSet::new();
        if let Some((host, port)) = election_port {
            // ZooKeeper's election port: accepted (so existing firewalls and
            // checks pass) but unused — raft elects over the peer port.
            tasks.spawn(accept_and_drop(host, port));
        }
        if my_id.is_some() {
            info!("waiting for a quorum to elect a leader");
        }
        if shared.read_only_mode() {
            // Clients that allow read-only sessions are served meanwhile.
            info!("readonlymode.enabled: serving read-only clients until a quorum is found");
            tasks.spawn(catch_up_in_background(shared.clone(), consensus.handle()));
        } else {
            if let Err(e) = catch_up_with_leader(&consensus.handle()).await {
                consensus.shutdown().await;
                return Err(e);
            }
            shared.caught_up.store(true, Ordering::Release);
        }
        let addr = SocketAddr::new(shared.config.client_port_address, shared.config.client_port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        tasks.spawn(housekeeping::expire_sessions(shared.clone()));
        tasks.spawn(housekeeping::follow_leadership(shared.clone()));
        tasks.spawn(housekeeping::report_sessions(shared.clone()));
        tasks.spawn(housekeeping::reap_containers(shared.clone()));
        tasks.spawn(housekeeping::write_dynamic_config(shared.clone()));
        tasks.spawn(housekeeping::end_read_only_sessions(shared.clone()));
        tasks.spawn(watch_health(shared.clone()));
        tasks.spawn(listener::accept_loop(shared.clone(), listener));
        {
            let state = shared.state();
            info!(
                "serving clients on {local_addr} ({}): {} znodes, {} sessions, zxid 0x{:x}",
                fourlw::server_state(&shared),
                state.tree().len(),
                state.sessions().len(),
                state.last_zxid()
            );
        }
        Ok(Server {
            local_addr,
            shared,
            consensus,
            tasks,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The last applied zxid (for tests and tools).
    pub fn last_zxid(&self) -> i64 {
        self.shared.state().last_zxid()
    }

    /// Runs until a fatal error stops the server.
    pub async fn wait(&mut self) -> Fatal {
        match self.tasks.join_next().await {
            Some(Err(e)) => Fatal(format!("server task failed: {e}")),
            _ => Fatal("storage failed; see the log above".into()),
        }
    }

    /// Stops accepting, drops every connection, stops the replica.
    pub async fn shutdown(mut self) {
        self.tasks.shutdown().await;
        self.consensus.shutdown().await;
    }
}

/// Waits for a leader (however long) and then until the log recovered at
/// start is applied, so that no client reads state older than its own log.
async fn catch_up_with_leader(replica: &roost_consensus::Handle) -> Result<(), StartError> {
    while !replica.wait_for_leader(Duration::from_secs(5)).await {
        info!("still no leader: waiting for a quorum of servers");
    }
    if !replica.wait_caught_up(RECOVERY_TIMEOUT).await {
        return Err(StartError::RecoveryTimeout(RECOVERY_TIMEOUT));
    }
    Ok(())
}

/// [`catch_up_with_leader`] while read-only clients are served; read-write
/// clients are served from its end on. A failure stops the server.
async fn catch_up_in_background(shared: Arc<Shared>, replica: roost_consensus::Handle) {
    match catch_up_with_leader(&replica).await {
        Ok(()) => {
            shared.caught_up.store(true, Ordering::Release);
            info!("a leader with a quorum is known: serving read-write clients");
            std::future::pending::<()>().await
        }
        Err(e) => error!("{e}"),
    }
}

/// Accepts connections on a port and closes them at once.
async fn accept_and_drop(host: String, port: u16) {
    let listener = match TcpListener::bind((host.as_str(), port)).await {
        Ok(listener) => listener,
        Err(e) => {
            warn!("cannot listen on the election port {host}:{port}: {e}");
            std::future::pending::<()>().await;
            return;
        }
    };
    loop {
        if let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    }
}

/// Ends (and so stops the server) once storage has failed: after a failed
/// fsync nothing written since can be trusted, so serving on would risk
/// acknowledging writes that are not durable.
async fn watch_health(shared: Arc<Shared>) {
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    loop {
        ticker.tick().await;
        if shared.consensus.get().is_some_and(|c| c.failed()) {
            error!("storage failed: stopping the server");
            return;
        }
    }
}
