//! Background work of the leader: session expiry and the container/TTL
//! reaper. Each is a task that proposes entries; none changes state directly.
//! Followers run them too but propose nothing while they are not leader.

use std::sync::Arc;
use std::time::{Duration, Instant};

use roost_core::{Entry, Txn};
use tracing::{debug, info, warn};

use crate::shared::{wall_clock_ms, ConnMsg, Shared};

/// An entry made by the server itself (no client connection waits for it).
pub(crate) fn server_entry(session_id: i64, txn: Txn) -> Entry {
    Entry {
        time_ms: 0,
        session_id,
        cxid: 0,
        identities: Arc::from(Vec::new()),
        origin: 0,
        txn,
    }
}

/// Session bookkeeping runs every half tick (20 ms to 1 s), so a session
/// outlives its timeout by at most half a tick.
fn half_tick_ticker(shared: &Shared) -> tokio::time::Interval {
    let period =
        (shared.config.tick() / 2).clamp(Duration::from_millis(20), Duration::from_secs(1));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker
}

/// Sessions expired in one pass; the rest wait for the next tick.
const EXPIRE_BATCH_MAX: usize = 10_000;

/// Proposes closeSession for every session whose client went silent. Only
/// the leader does: it alone hears of every session (followers report the
/// ones their clients keep alive); a follower's deadlines only cover its own
/// clients and would expire live sessions held elsewhere.
pub(crate) async fn expire_sessions(shared: Arc<Shared>) {
    let mut ticker = half_tick_ticker(&shared);
    loop {
        ticker.tick().await;
        if !shared.is_leader() {
            continue;
        }
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
pub(crate) async fn reap_containers(shared: Arc<Shared>) {
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

/// Reacts to leadership changes: a new leader gives every session a full
/// timeout; connections with writes in flight when the leader changes are
/// closed, since those writes may be lost (clients see ConnectionLoss and
/// retry, as with ZooKeeper). A server left without a leader for longer than
/// an election takes closes its clients' connections, so they move to a
/// server of the quorum instead of reading stale data here.
pub(crate) async fn follow_leadership(shared: Arc<Shared>) {
    let Some(handle) = shared.consensus.get() else {
        return;
    };
    let grace = shared.config.quorum_loss_grace();
    let mut leadership = handle.watch_leadership();
    let mut last = *leadership.borrow_and_update();
    let mut lost_since = (!last.serving).then(tokio::time::Instant::now);
    loop {
        let give_up = async {
            match lost_since {
                Some(since) => tokio::time::sleep_until(since + grace).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = leadership.changed() => if changed.is_err() { return },
            () = give_up => {
                warn!("no leader with a quorum for {grace:?}: closing client connections");
                let registry = shared.registry();
                for conn in registry.conns.values().filter(|c| !c.read_only) {
                    conn.send(ConnMsg::Close("this server lost contact with the quorum"));
                }
                lost_since = None;
                continue;
            }
        }
        let now = *leadership.borrow_and_update();
        if now.leading && !last.leading {
            info!("leading: every session gets a full timeout");
            shared.tracker().rearm_all();
        }
        if now.leader != last.leader || (last.leading && !now.leading) {
            info!("leader changed ({:?} -> {:?})", last.leader, now.leader);
            let registry = shared.registry();
            for conn in registry.conns.values() {
                if conn.stats.queued.load(std::sync::atomic::Ordering::Relaxed) > 0 {
                    conn.send(ConnMsg::Close("leader changed with writes in flight"));
                }
            }
        }
        if now.serving != last.serving {
            lost_since = (!now.serving).then(tokio::time::Instant::now);
        }
        last = now;
    }
}

/// Followers tell the leader which sessions their clients kept alive.
pub(crate) async fn report_sessions(shared: Arc<Shared>) {
    let Some(handle) = shared.consensus.get().cloned() else {
        return;
    };
    let mut ticker = half_tick_ticker(&shared);
    loop {
        ticker.tick().await;
        let touched = shared.tracker().take_touched();
        if !handle.is_leader() {
            handle.report_sessions(touched).await;
        }
    }
}

/// After a `reconfig`, writes the new membership beside zoo.cfg as
/// `zoo.cfg.dynamic.<version>` (server lines only, the version in the name),
/// the file ZooKeeper writes and its tools look for. zoo.cfg itself is left
/// as the operator wrote it: Roost keeps the membership in its log.
pub(crate) async fn write_dynamic_config(shared: Arc<Shared>) {
    // A server task never ends by itself (its end stops the server).
    let (Some(config_file), true) = (
        shared.config.config_file.clone(),
        shared.config.is_ensemble(),
    ) else {
        return std::future::pending().await;
    };
    let mut written = 0;
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    loop {
        ticker.tick().await;
        let Some(config) = shared.state().quorum_config() else {
            continue;
        };
        if config.version <= written {
            continue;
        }
        let mut name = config_file.clone().into_os_string();
        name.push(format!(".dynamic.{:x}", config.version));
        let path = std::path::PathBuf::from(name);
        let text = config.render_servers();
        let temporary = path.with_extension("tmp");
        let result =
            std::fs::write(&temporary, text).and_then(|()| std::fs::rename(&temporary, &path));
        match result {
            Ok(()) => info!(
                "membership version {:x} written to {}",
                config.version,
                path.display()
            ),
            Err(e) => warn!("cannot write {}: {e}", path.display()),
        }
        written = config.version;
    }
}

/// Closes read-only sessions once read-write clients are served again, as
/// ZooKeeper's read-only server shuts down when its server rejoins the
/// quorum: their clients reconnect read-write (kazoo and the Java client
/// look for a read-write server meanwhile, with `isro`).
pub(crate) async fn end_read_only_sessions(shared: Arc<Shared>) {
    if !shared.config.read_only_enabled {
        return std::future::pending().await;
    }
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    loop {
        ticker.tick().await;
        if !shared.serving() {
            continue;
        }
        let registry = shared.registry();
        for conn in registry.conns.values().filter(|c| c.read_only) {
            conn.send(ConnMsg::Close("the quorum is back: read-only session over"));
        }
    }
}
