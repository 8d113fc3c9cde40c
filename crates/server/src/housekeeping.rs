//! Background work of the leader: session expiry and the container/TTL
//! reaper. Each is a task that proposes entries; none changes state directly.
//! Followers run them too but propose nothing while they are not leader.

use std::sync::Arc;
use std::time::{Duration, Instant};

use roost_core::{Entry, Txn};
use tracing::{debug, info};

use crate::shared::{wall_clock_ms, Shared};

/// An entry made by the server itself (no client connection waits for it).
pub fn server_entry(session_id: i64, txn: Txn) -> Entry {
    Entry {
        time_ms: 0,
        session_id,
        cxid: 0,
        identities: Arc::from(Vec::new()),
        origin: 0,
        txn,
    }
}

/// Sessions expired in one pass; the rest wait for the next tick.
const EXPIRE_BATCH_MAX: usize = 10_000;

/// Proposes closeSession for every session whose client went silent.
pub async fn expire_sessions(shared: Arc<Shared>) {
    let period =
        (shared.config.tick() / 2).clamp(Duration::from_millis(20), Duration::from_secs(1));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let expired = shared
            .tracker()
            .take_expired(Instant::now(), EXPIRE_BATCH_MAX);
        for session_id in expired {
            info!("expiring session 0x{session_id:x}: timeout exceeded");
            if shared
                .proposals
                .send(server_entry(session_id, Txn::CloseSession))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// Deletes empty containers and expired TTL nodes, at most
/// `znode.container.maxPerMinute` a minute, checking every
/// `znode.container.checkIntervalMs`.
pub async fn reap_containers(shared: Arc<Shared>) {
    let interval = Duration::from_millis(shared.config.container_check_interval_ms.max(10));
    let per_pass = (shared.config.container_max_per_minute as u128 * interval.as_millis() / 60_000)
        .clamp(1, usize::MAX as u128) as usize;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        if !shared.is_leader() {
            continue;
        }
        let candidates = shared
            .state()
            .reap_candidates(wall_clock_ms() as i64, per_pass);
        for path in candidates {
            debug!("reaping {path}");
            if shared
                .proposals
                .send(server_entry(0, Txn::DeleteContainer(path)))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}
