//! Applying committed entries on this server and telling its clients.
//!
//! For each entry, in log order: `State::apply`, then the watch events it
//! fired go to the connections watching (filtered by READ permission, as in
//! ZooKeeper 3.9), then the reply goes to the connection that proposed it.
//! Everything happens under the state write lock, so an event is always
//! queued before the reply to any request that could observe its change.

use std::sync::atomic::Ordering;

use roost_core::{acl, Entry, Txn};
use roost_proto::perms;

use crate::shared::{ConnMsg, Shared, CONN_BACKLOG_MAX};

/// Applies a batch of committed entries, in order.
pub fn apply_committed(shared: &Shared, entries: &[Entry]) {
    let mut state = shared.state_mut();
    let mut watches = shared.watches();
    let registry = shared.registry();
    for entry in entries {
        let applied = state.apply(entry);
        for trigger in &applied.triggers {
            for watcher in watches.trigger(&trigger.path, trigger.event) {
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
                conn.send(
                    ConnMsg::Notify {
                        zxid: applied.zxid,
                        event: trigger.event,
                        path: trigger.path.clone(),
                    },
                    CONN_BACKLOG_MAX,
                );
            }
        }
        if let Some(conn) = registry.conns.get(&entry.origin) {
            conn.send(
                ConnMsg::Completed {
                    cxid: entry.cxid,
                    zxid: applied.zxid,
                    result: applied.result,
                },
                CONN_BACKLOG_MAX,
            );
        }
        match &entry.txn {
            Txn::CreateSession { timeout_ms, .. } => {
                shared.tracker().add(entry.session_id, *timeout_ms);
            }
            Txn::CloseSession => {
                shared.tracker().remove(entry.session_id);
                // The holder of an expired or closed session is disconnected,
                // after any reply queued above.
                registry.send_to_session(
                    entry.session_id,
                    ConnMsg::Close("session closed"),
                    CONN_BACKLOG_MAX,
                );
            }
            _ => {}
        }
    }
}
