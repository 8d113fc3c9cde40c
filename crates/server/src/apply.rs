//! Applying committed entries on this server and telling its clients.
//!
//! For each entry, in log order: `State::apply`, then the watch events it
//! fired go to the connections watching (filtered by READ permission, as in
//! ZooKeeper 3.9), then the reply goes to the connection that proposed it.
//! Everything happens under the state write lock, and the raft position is
//! recorded under the same lock, so an event is always queued before the
//! reply to any request that could observe its change, and a snapshot always
//! matches its position exactly.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use roost_consensus::{AppliedMark, MembershipTarget, StateMachineHost};
use roost_core::{acl, Entry, State, Txn};
use roost_proto::{perms, ErrorCode};

use crate::shared::{ConnMsg, Shared};

/// The server as the replica's state machine host.
pub(crate) struct Host(pub Arc<Shared>);

impl StateMachineHost for Host {
    fn abandon(&self, entries: &[Entry]) {
        let registry = self.0.registry();
        for entry in entries {
            if let Some(conn) = registry.conns.get(&entry.origin) {
                conn.send(ConnMsg::Close("write outcome unknown (leader lost)"));
            }
        }
    }

    fn still_awaited(&self, entry: &Entry) -> bool {
        entry.origin == 0 || self.0.registry().conns.contains_key(&entry.origin)
    }

    fn touch_sessions(&self, sessions: &[i64]) {
        let mut tracker = self.0.tracker();
        for id in sessions {
            tracker.touch(*id);
        }
    }

    fn apply(&self, entries: &[Entry], mark: &AppliedMark) {
        apply_committed(&self.0, entries, mark);
    }

    fn snapshot(&self) -> (State, AppliedMark) {
        let state = self.0.state();
        let mark = self.0.mark();
        (state.clone(), mark)
    }

    fn install(&self, new_state: State, mark: AppliedMark) {
        let mut state = self.0.state_mut();
        *state = new_state;
        self.0.set_mark(mark);
        // Every session in the new state gets a full timeout from now.
        let mut tracker = self.0.tracker();
        tracker.clear();
        for (id, session) in state.sessions().iter() {
            tracker.add(*id, session.timeout_ms);
        }
    }

    fn mark(&self) -> AppliedMark {
        self.0.mark()
    }

    fn membership_target(&self) -> Option<MembershipTarget> {
        let config = self.0.state().quorum_config()?;
        Some(MembershipTarget::of(&config))
    }

    fn refuse(&self, entries: &[Entry], code: ErrorCode) {
        let zxid = self.0.state().last_zxid();
        let registry = self.0.registry();
        for entry in entries {
            if let Some(conn) = registry.conns.get(&entry.origin) {
                conn.send(ConnMsg::Completed {
                    cxid: entry.cxid,
                    zxid,
                    result: Err(code),
                });
            }
        }
    }
}

/// Applies a batch of committed entries, in order, and records `mark`.
pub(crate) fn apply_committed(shared: &Shared, entries: &[Entry], mark: &AppliedMark) {
    let mut state = shared.state_mut();
    if entries.is_empty() {
        shared.set_mark(mark.clone());
        return;
    }
    let mut watches = shared.watches();
    let registry = shared.registry();
    for entry in entries {
        let applied = state.apply(entry);
        for trigger in &applied.triggers {
            for watcher in watches.trigger(trigger.path(), trigger.event) {
                let Some(conn) = registry.conns.get(&watcher) else {
                    continue;
                };
                if !acl::is_allowed(&trigger.acl, perms::READ, &conn.identities) {
                    continue;
                }
                shared
                    .stats
                    .watch_events_sent
                    .fetch_add(1, Ordering::Relaxed);
                conn.send(ConnMsg::Notify {
                    zxid: applied.zxid,
                    event: trigger.event,
                    path: trigger.shared_path(),
                });
            }
        }
        let succeeded = applied.result.is_ok();
        if let Some(conn) = registry.conns.get(&entry.origin) {
            conn.send(ConnMsg::Completed {
                cxid: entry.cxid,
                zxid: applied.zxid,
                result: applied.result.map(Box::new),
            });
        }
        if !succeeded {
            continue;
        }
        match &entry.txn {
            Txn::CreateSession { timeout_ms, .. } => {
                shared.tracker().add(entry.session_id, *timeout_ms);
            }
            Txn::CloseSession => {
                shared.tracker().remove(entry.session_id);
                // The holder of an expired or closed session is disconnected,
                // after any reply queued above.
                registry.send_to_session(entry.session_id, ConnMsg::Close("session closed"));
            }
            _ => {}
        }
    }
    shared.set_mark(mark.clone());
}
