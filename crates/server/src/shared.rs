//! What every task of one server shares: the replicated state, this server's
//! watches and connections, liveness tracking, counters, and the way in to
//! the write path.
//!
//! Lock order (never take an earlier lock while holding a later one):
//! `state` -> `watches` -> `registry` -> `tracker`. Whoever applies entries holds
//! `state` for writing while it queues watch events and replies on the
//! connections, so a reader holding `state` for reading sees, in its
//! connection's inbox, every event of every entry its read can observe.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use roost_core::{Entry, State, WatchTable};
use roost_proto::{ErrorCode, EventType, Id, Response};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::stats::{ConnStats, ServerStats};
use crate::tracker::SessionTracker;

/// A connection's id on this server; also its watcher id and the `origin`
/// of the entries it proposes. The top 16 bits hold the server id.
pub type ConnId = u64;

/// Messages queued on a connection by the apply path and by other connections.
#[derive(Debug)]
pub enum ConnMsg {
    /// A watch fired.
    Notify {
        zxid: i64,
        event: EventType,
        path: Arc<str>,
    },
    /// A write this connection proposed was applied.
    Completed {
        cxid: i32,
        zxid: i64,
        result: Result<Response, ErrorCode>,
    },
    /// Close now: the session ended, moved to another connection, or the
    /// connection fell too far behind.
    Close(&'static str),
}

/// A connection as the rest of the server sees it.
pub struct ConnEntry {
    pub tx: mpsc::UnboundedSender<ConnMsg>,
    /// Messages queued but not yet taken by the connection (bounded).
    pub backlog: Arc<AtomicUsize>,
    pub identities: Arc<Vec<Id>>,
    pub session_id: i64,
    pub peer: SocketAddr,
    pub stats: Arc<ConnStats>,
}

impl ConnEntry {
    /// Queues a message; a connection over its backlog bound is told to close
    /// instead (a client that does not read its events cannot stall the server).
    pub fn send(&self, msg: ConnMsg, backlog_max: usize) {
        let queued = self.backlog.fetch_add(1, Ordering::Relaxed);
        let msg = if queued >= backlog_max {
            ConnMsg::Close("too many undelivered messages")
        } else {
            msg
        };
        // A closed receiver means the connection is already gone: nothing to do.
        let _ = self.tx.send(msg);
    }
}

/// This server's client connections and which one holds each session.
#[derive(Default)]
pub struct Registry {
    pub conns: HashMap<ConnId, ConnEntry>,
    pub by_session: HashMap<i64, ConnId>,
}

impl Registry {
    /// Sends to the connection holding `session_id`, if any.
    pub fn send_to_session(&self, session_id: i64, msg: ConnMsg, backlog_max: usize) {
        if let Some(entry) = self
            .by_session
            .get(&session_id)
            .and_then(|c| self.conns.get(c))
        {
            entry.send(msg, backlog_max);
        }
    }
}

/// A write on its way into the log.
pub type Proposal = Entry;

/// Messages a connection may leave unread before it is closed.
pub const CONN_BACKLOG_MAX: usize = 100_000;

pub struct Shared {
    pub config: Config,
    pub server_id: u64,
    state: RwLock<State>,
    watches: Mutex<WatchTable>,
    registry: Mutex<Registry>,
    tracker: Mutex<SessionTracker>,
    pub stats: ServerStats,
    pub proposals: mpsc::Sender<Proposal>,
    next_conn: AtomicU64,
    next_session: AtomicU64,
    pub started: Instant,
}

impl Shared {
    pub fn new(
        config: Config,
        server_id: u64,
        state: State,
        proposals: mpsc::Sender<Proposal>,
    ) -> Self {
        let now_ms = wall_clock_ms();
        let mut tracker = SessionTracker::default();
        // Sessions recovered from disk get a full timeout from now.
        for (id, session) in state.sessions().iter() {
            tracker.add(*id, session.timeout_ms);
        }
        Shared {
            config,
            server_id,
            state: RwLock::new(state),
            watches: Mutex::new(WatchTable::new()),
            registry: Mutex::new(Registry::default()),
            tracker: Mutex::new(tracker),
            stats: ServerStats::default(),
            proposals,
            next_conn: AtomicU64::new(1),
            next_session: AtomicU64::new(initial_session_id(server_id, now_ms)),
            started: Instant::now(),
        }
    }

    pub fn state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().expect("state lock poisoned")
    }

    pub fn state_mut(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().expect("state lock poisoned")
    }

    pub fn watches(&self) -> MutexGuard<'_, WatchTable> {
        self.watches.lock().expect("watch lock poisoned")
    }

    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().expect("registry lock poisoned")
    }

    pub fn tracker(&self) -> MutexGuard<'_, SessionTracker> {
        self.tracker.lock().expect("tracker lock poisoned")
    }

    pub fn next_conn_id(&self) -> ConnId {
        (self.server_id << 48) | self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// A fresh session id: ZooKeeper's layout, server id in the top byte and
    /// the start time below it, counting up.
    pub fn next_session_id(&self) -> i64 {
        self.next_session.fetch_add(1, Ordering::Relaxed) as i64
    }
}

/// ZooKeeper's `SessionTrackerImpl.initializeNextSessionId`.
fn initial_session_id(server_id: u64, now_ms: u64) -> u64 {
    let time_bits = (now_ms << 24) >> 8;
    (server_id << 56) | time_bits
}

/// Milliseconds since the epoch, as ZooKeeper stamps ctime/mtime.
pub fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_carry_the_server_id_in_the_top_byte() {
        let id = initial_session_id(1, 1_795_261_323_000);
        assert_eq!(id >> 56, 1);
        assert_ne!(id & 0x00ff_ffff_ffff_ffff, 0);
    }
}
