//! `roost-server`: the tokio shell around `roost-core`.
//!
//! [`Server::start`] binds the client port and runs: the accept loop (with
//! the per-IP connection limit), one task per connection
//! ([`connection`]), the write path that applies entries in log order
//! ([`apply`]), session expiry and the container/TTL reaper
//! ([`housekeeping`]). Configuration comes from `zoo.cfg` ([`config`]).

pub mod apply;
pub mod config;
pub mod connection;
pub mod fourlw;
pub mod housekeeping;
pub mod shared;
pub mod stats;
pub mod tracker;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use roost_core::{State, StateConfig};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::{info, warn};

pub use config::{Config, ConfigError};
use shared::Shared;

/// Proposals waiting for the log; a full queue slows connections down.
const PROPOSAL_QUEUE_MAX: usize = 16 * 1024;

/// A running server.
pub struct Server {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: JoinSet<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl Server {
    /// Starts a standalone server and returns once it accepts connections.
    pub async fn start(config: Config) -> Result<Server, StartError> {
        let addr = SocketAddr::new(config.client_port_address, config.client_port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        let state = State::new(StateConfig {
            extended_types: config.extended_types_enabled,
            reconfig_enabled: config.reconfig_enabled,
        });
        let (proposals, proposal_rx) = tokio::sync::mpsc::channel(PROPOSAL_QUEUE_MAX);
        let shared = Arc::new(Shared::new(config, 1, state, proposals));
        let mut tasks = JoinSet::new();
        tasks.spawn(housekeeping::run_standalone_log(
            shared.clone(),
            proposal_rx,
        ));
        tasks.spawn(housekeeping::expire_sessions(shared.clone()));
        tasks.spawn(housekeeping::reap_containers(shared.clone()));
        tasks.spawn(accept_loop(shared.clone(), listener));
        info!("serving clients on {local_addr} (standalone)");
        Ok(Server {
            local_addr,
            shared,
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

    /// Runs until one of the server's tasks ends (which only happens on a fatal error).
    pub async fn wait(&mut self) {
        if let Some(Err(e)) = self.tasks.join_next().await {
            warn!("server task failed: {e}");
        }
    }

    /// Stops accepting and drops every connection.
    pub async fn shutdown(mut self) {
        self.tasks.shutdown().await;
    }
}

/// Counts connections per client IP and releases a slot when dropped.
struct IpSlot {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.counts.lock() {
            if let Some(n) = counts.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&self.ip);
                }
            }
        }
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let per_ip: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let ip = peer.ip().to_canonical();
        let limit = shared.config.max_client_cnxns;
        let slot = {
            let mut counts = per_ip.lock().expect("per-ip lock poisoned");
            let count = counts.entry(ip).or_insert(0);
            if limit > 0 && *count >= limit {
                None
            } else {
                *count += 1;
                Some(IpSlot {
                    counts: per_ip.clone(),
                    ip,
                })
            }
        };
        let Some(slot) = slot else {
            warn!("too many connections from {ip} - max is {limit}; closing the new one");
            shared
                .stats
                .connections_rejected
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            drop(stream);
            continue;
        };
        let shared = shared.clone();
        connections.spawn(async move {
            connection::serve(shared, stream, peer).await;
            drop(slot);
        });
    }
}
