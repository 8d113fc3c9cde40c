//! The client port's accept loop (mini-redis's `Listener`): one task per
//! connection ([`crate::connection`]), at most `maxClientCnxns` per client IP.
//! Beyond that, connections are bounded by the server-wide request budget
//! (a connection costs a few KiB while idle) and the process's descriptors:
//! an accept that fails for want of them is retried after a pause.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::warn;

use crate::connection;
use crate::shared::Shared;

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

pub(crate) async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
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
