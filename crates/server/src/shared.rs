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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use roost_consensus::AppliedMark;
use roost_core::{Entry, State, WatchTable};
use roost_proto::{ErrorCode, EventType, Id, Response};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::stats::{ConnStats, ServerStats};
use crate::tracker::SessionTracker;

/// A connection's id on this server; also its watcher id and the `origin`
/// of the entries it proposes (see [`Shared::next_conn_id`]).
pub(crate) type ConnId = u64;

/// Messages queued on a connection by the apply path and by other connections.
#[derive(Debug)]
pub(crate) enum ConnMsg {
    /// A watch fired.
    Notify {
        zxid: i64,
        event: EventType,
        path: Arc<str>,
    },
    /// A write this connection proposed was applied. (The reply is boxed:
    /// it keeps every message, and so every connection's queue, small.)
    Completed {
        cxid: i32,
        zxid: i64,
        result: Result<Box<Response>, ErrorCode>,
    },
    /// Close now: the session ended, moved to another connection, or the
    /// connection fell too far behind.
    Close(&'static str),
}

impl ConnMsg {
    /// Memory the message holds while queued (close enough to bound a backlog).
    pub(crate) fn bytes(&self) -> usize {
        const OVERHEAD_BYTES: usize = 64;
        OVERHEAD_BYTES
            + match self {
                ConnMsg::Notify { path, .. } => path.len(),
                ConnMsg::Completed { result, .. } => result.as_ref().map_or(0, |r| r.encoded_len()),
                ConnMsg::Close(_) => 0,
            }
    }
}

/// The way into a connection's inbox, with the bytes that bound it.
#[derive(Clone)]
pub(crate) struct Mailbox {
    tx: mpsc::UnboundedSender<ConnMsg>,
    /// Bytes of messages queued but not yet taken by the connection.
    backlog_bytes: Arc<AtomicUsize>,
    backlog_bytes_max: usize,
}

impl Mailbox {
    /// A mailbox that holds at most `backlog_bytes_max` of messages.
    pub(crate) fn new(backlog_bytes_max: usize) -> (Mailbox, mpsc::UnboundedReceiver<ConnMsg>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Mailbox {
                tx,
                backlog_bytes: Arc::default(),
                backlog_bytes_max,
            },
            rx,
        )
    }

    /// Queues a message; a connection whose backlog is over its bound is told
    /// to close instead (a connection that falls behind cannot make the
    /// server hold more).
    pub(crate) fn send(&self, msg: ConnMsg) {
        let bytes = msg.bytes();
        let queued = self.backlog_bytes.fetch_add(bytes, Ordering::Relaxed);
        let msg = if queued + bytes > self.backlog_bytes_max {
            self.backlog_bytes.fetch_sub(bytes, Ordering::Relaxed);
            let close = ConnMsg::Close("too many undelivered messages");
            self.backlog_bytes
                .fetch_add(close.bytes(), Ordering::Relaxed);
            close
        } else {
            msg
        };
        // A closed receiver means the connection is already gone: nothing to do.
        let _ = self.tx.send(msg);
    }

    /// Called by the connection for each message it takes.
    pub(crate) fn taken(&self, msg: &ConnMsg) {
        self.backlog_bytes.fetch_sub(msg.bytes(), Ordering::Relaxed);
    }
}

/// Requests received and not yet answered, server-wide, in count and bytes:
/// ZooKeeper's `globalOutstandingLimit`, and its equivalent in bytes. Past
/// either, connections that have requests in flight stop reading until their
/// replies go out (each connection may always have one request in), so a
/// crowd of clients queues in their sockets, not in the server.
#[derive(Debug)]
pub(crate) struct Budget {
    requests: AtomicUsize,
    bytes: AtomicUsize,
    requests_max: usize,
    bytes_max: usize,
}

impl Budget {
    pub(crate) fn new(requests_max: usize, bytes_max: usize) -> Self {
        Budget {
            requests: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            requests_max,
            bytes_max,
        }
    }

    /// A request of `bytes` arrived.
    pub(crate) fn take(&self, bytes: usize) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// `count` requests of `bytes` in all were answered (or dropped).
    pub(crate) fn give_back(&self, count: usize, bytes: usize) {
        self.requests.fetch_sub(count, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    pub(crate) fn exhausted(&self) -> bool {
        self.requests.load(Ordering::Relaxed) > self.requests_max
            || self.bytes.load(Ordering::Relaxed) > self.bytes_max
    }

    /// Requests in flight (`zk_outstanding_requests`).
    pub(crate) fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }
}

/// A connection as the rest of the server sees it.
pub(crate) struct ConnEntry {
    pub mailbox: Mailbox,
    pub identities: Arc<[Id]>,
    pub session_id: i64,
    pub peer: SocketAddr,
    pub stats: Arc<ConnStats>,
    /// A read-only session (made while outside the quorum): closed when
    /// the quorum returns, so its client moves to a read-write session.
    pub read_only: bool,
}

impl ConnEntry {
    pub(crate) fn send(&self, msg: ConnMsg) {
        self.mailbox.send(msg);
    }
}

/// This server's client connections and which one holds each session.
#[derive(Default)]
pub(crate) struct Registry {
    pub conns: HashMap<ConnId, ConnEntry>,
    pub by_session: HashMap<i64, ConnId>,
}

impl Registry {
    /// Sends to the connection holding `session_id`, if any.
    pub(crate) fn send_to_session(&self, session_id: i64, msg: ConnMsg) {
        if let Some(entry) = self
            .by_session
            .get(&session_id)
            .and_then(|c| self.conns.get(c))
        {
            entry.send(msg);
        }
    }
}

/// A write on its way into the log.
pub(crate) type Proposal = Entry;

/// Bytes of requests in flight server-wide (see [`Budget`]): a few hundred
/// 1 MB writes, far more small ones than `globalOutstandingLimit` admits.
pub(crate) const GLOBAL_REQUEST_BYTES_MAX: usize = 256 << 20;

pub(crate) struct Shared {
    pub config: Config,
    pub server_id: u64,
    state: RwLock<State>,
    /// Where `state` stands in the replicated log; changed only with `state`
    /// write-locked, so the pair is always consistent.
    mark: Mutex<AppliedMark>,
    watches: Mutex<WatchTable>,
    registry: Mutex<Registry>,
    tracker: Mutex<SessionTracker>,
    pub stats: ServerStats,
    pub budget: Budget,
    pub proposals: mpsc::Sender<Proposal>,
    /// The replica, once started (read barriers, leadership, health).
    pub consensus: OnceLock<roost_consensus::Handle>,
    /// Set once the replica found a leader and applied its log at start:
    /// only then are read-write clients served (a read-only server takes
    /// read-only ones before).
    pub caught_up: AtomicBool,
    /// Distinguishes this process's connection ids from an earlier run's,
    /// whose entries may be replayed from the log.
    incarnation: u64,
    next_conn: AtomicU64,
    next_session: AtomicU64,
    pub started: Instant,
}

impl Shared {
    pub(crate) fn new(
        config: Config,
        server_id: u64,
        state: State,
        proposals: mpsc::Sender<Proposal>,
    ) -> Self {
        let now_ms = wall_clock_ms();
        let budget = Budget::new(config.global_outstanding_limit(), GLOBAL_REQUEST_BYTES_MAX);
        Shared {
            config,
            server_id,
            state: RwLock::new(state),
            mark: Mutex::new(AppliedMark::default()),
            watches: Mutex::new(WatchTable::new()),
            registry: Mutex::new(Registry::default()),
            tracker: Mutex::new(SessionTracker::default()),
            stats: ServerStats::default(),
            budget,
            proposals,
            consensus: OnceLock::new(),
            caught_up: AtomicBool::new(false),
            incarnation: rand::random::<u64>() & 0xffff,
            next_conn: AtomicU64::new(1),
            next_session: AtomicU64::new(initial_session_id(server_id, now_ms)),
            started: Instant::now(),
        }
    }

    pub(crate) fn state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().expect("state lock poisoned")
    }

    pub(crate) fn state_mut(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().expect("state lock poisoned")
    }

    pub(crate) fn mark(&self) -> AppliedMark {
        self.mark.lock().expect("mark lock poisoned").clone()
    }

    /// Records the raft position; call only while holding `state_mut()`.
    pub(crate) fn set_mark(&self, mark: AppliedMark) {
        *self.mark.lock().expect("mark lock poisoned") = mark;
    }

    pub(crate) fn watches(&self) -> MutexGuard<'_, WatchTable> {
        self.watches.lock().expect("watch lock poisoned")
    }

    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().expect("registry lock poisoned")
    }

    pub(crate) fn tracker(&self) -> MutexGuard<'_, SessionTracker> {
        self.tracker.lock().expect("tracker lock poisoned")
    }

    /// Server id (16 bits), incarnation (16 bits), then a counter.
    pub(crate) fn next_conn_id(&self) -> ConnId {
        (self.server_id << roost_core::ORIGIN_SERVER_SHIFT)
            | (self.incarnation << 32)
            | (self.next_conn.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff)
    }

    /// Whether read-write clients are served: standalone, or in an ensemble
    /// with a leader that has a quorum (otherwise, as a ZooKeeper server
    /// outside the quorum, it refuses them).
    pub(crate) fn serving(&self) -> bool {
        self.caught_up.load(Ordering::Acquire) && self.consensus.get().is_none_or(|c| c.serving())
    }

    /// Outside the quorum with `readonlymode.enabled`: read-only clients
    /// are served reads (ZooKeeper's ReadOnlyZooKeeperServer).
    pub(crate) fn read_only_mode(&self) -> bool {
        self.config.read_only_enabled && self.config.is_ensemble() && !self.serving()
    }

    /// Whether this server leads (and so expires sessions and reaps nodes).
    pub(crate) fn is_leader(&self) -> bool {
        self.consensus.get().is_some_and(|c| c.is_leader())
    }

    /// A fresh session id: ZooKeeper's layout, server id in the top byte and
    /// the start time below it, counting up.
    pub(crate) fn next_session_id(&self) -> i64 {
        self.next_session.fetch_add(1, Ordering::Relaxed) as i64
    }
}

/// ZooKeeper's `SessionTrackerImpl.initializeNextSessionId`.
fn initial_session_id(server_id: u64, now_ms: u64) -> u64 {
    let time_bits = (now_ms << 24) >> 8;
    (server_id << 56) | time_bits
}

/// Milliseconds since the epoch, as ZooKeeper stamps ctime/mtime.
pub(crate) fn wall_clock_ms() -> u64 {
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
