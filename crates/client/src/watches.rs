//! The client's side of watches: who waits for which path, how a
//! notification is routed (ZooKeeper's ZKWatchManager rules), and the
//! re-registration set sent with setWatches2 after a reconnect.

use std::collections::HashMap;

use roost_proto::{EventType, KeeperState, SetWatches2, WatcherType};
use tokio::sync::{mpsc, oneshot};

/// One event delivered to a watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedEvent {
    /// `EventType::None` for session events (expiry, close).
    pub event_type: EventType,
    pub state: KeeperState,
    /// The client-side path (chroot removed); empty for session events.
    pub path: String,
    /// The zxid that fired it (3.9 servers; -1 from older ones).
    pub zxid: i64,
}

/// A one-shot watch: resolves once, with the event that fired it.
pub struct Watch(pub(crate) oneshot::Receiver<WatchedEvent>);

impl Watch {
    /// Waits for the event. `Err` if the client was closed first.
    pub async fn wait(self) -> Result<WatchedEvent, crate::Error> {
        self.0.await.map_err(|_| crate::Error::Closed)
    }
}

/// A persistent (or persistent recursive) watch: every event until removed.
pub struct WatchStream(pub(crate) mpsc::UnboundedReceiver<WatchedEvent>);

impl WatchStream {
    /// The next event; `None` once the watch is gone (removed, session expired
    /// or client closed).
    pub async fn next(&mut self) -> Option<WatchedEvent> {
        self.0.recv().await
    }
}

/// What a request asks to watch, resolved when its reply arrives.
pub(crate) enum Registration {
    /// getData: a data watch if the node exists.
    Data(oneshot::Sender<WatchedEvent>),
    /// exists: a data watch if it exists, an exist watch if not.
    Exists(oneshot::Sender<WatchedEvent>),
    /// getChildren: a child watch if the node exists.
    Children(oneshot::Sender<WatchedEvent>),
    /// addWatch.
    Persistent {
        recursive: bool,
        events: mpsc::UnboundedSender<WatchedEvent>,
    },
    /// removeWatches: forget the local watchers the server removed.
    Forget(WatcherType),
}

/// Registered watches, by server-side path.
#[derive(Default)]
pub(crate) struct Watches {
    data: HashMap<String, Vec<oneshot::Sender<WatchedEvent>>>,
    exist: HashMap<String, Vec<oneshot::Sender<WatchedEvent>>>,
    child: HashMap<String, Vec<oneshot::Sender<WatchedEvent>>>,
    persistent: HashMap<String, Vec<mpsc::UnboundedSender<WatchedEvent>>>,
    recursive: HashMap<String, Vec<mpsc::UnboundedSender<WatchedEvent>>>,
}

impl Watches {
    /// Records a registration after a successful (or NoNode, for exists) reply.
    pub fn register(&mut self, path: &str, registration: Registration, node_exists: bool) {
        let path = path.to_string();
        match registration {
            Registration::Data(tx) => self.data.entry(path).or_default().push(tx),
            Registration::Exists(tx) if node_exists => self.data.entry(path).or_default().push(tx),
            Registration::Exists(tx) => self.exist.entry(path).or_default().push(tx),
            Registration::Children(tx) => self.child.entry(path).or_default().push(tx),
            Registration::Persistent { recursive, events } => {
                let table = if recursive {
                    &mut self.recursive
                } else {
                    &mut self.persistent
                };
                table.entry(path).or_default().push(events);
            }
            Registration::Forget(kind) => {
                let (data, child, persistent) = match kind {
                    WatcherType::Data => (true, false, false),
                    WatcherType::Children => (false, true, false),
                    WatcherType::Persistent | WatcherType::PersistentRecursive => {
                        (false, false, true)
                    }
                    WatcherType::Any => (true, true, true),
                };
                self.remove(&path, data, child, persistent);
            }
        }
    }

    /// Routes a notification for server path `path`; `event.path` is already
    /// the client path.
    pub fn dispatch(&mut self, path: &str, event: WatchedEvent) {
        let fire = |table: &mut HashMap<String, Vec<oneshot::Sender<WatchedEvent>>>| {
            for tx in table.remove(path).unwrap_or_default() {
                let _ = tx.send(event.clone());
            }
        };
        match event.event_type {
            EventType::NodeCreated | EventType::NodeDataChanged => {
                fire(&mut self.data);
                fire(&mut self.exist);
            }
            EventType::NodeDeleted => {
                fire(&mut self.data);
                fire(&mut self.exist);
                fire(&mut self.child);
            }
            EventType::NodeChildrenChanged => fire(&mut self.child),
            _ => {}
        }
        if let Some(streams) = self.persistent.get_mut(path) {
            streams.retain(|tx| tx.send(event.clone()).is_ok());
        }
        // Recursive watches see every change below them, but not child-list changes.
        if event.event_type != EventType::NodeChildrenChanged {
            let mut ancestor = Some(path);
            while let Some(p) = ancestor {
                if let Some(streams) = self.recursive.get_mut(p) {
                    streams.retain(|tx| tx.send(event.clone()).is_ok());
                }
                ancestor = match p {
                    "/" => None,
                    _ => Some(crate::path::parent(p)),
                };
            }
        }
    }

    /// Forgets watches the server removed (removeWatches).
    fn remove(&mut self, path: &str, data: bool, child: bool, persistent: bool) {
        if data {
            self.data.remove(path);
            self.exist.remove(path);
        }
        if child {
            self.child.remove(path);
        }
        if persistent {
            self.persistent.remove(path);
            self.recursive.remove(path);
        }
    }

    /// The set to re-register on a new connection, relative to `last_zxid`.
    pub fn prune_and_collect(&mut self, last_zxid: i64) -> Option<SetWatches2> {
        // Drop watches whose waiter has gone away.
        for table in [&mut self.data, &mut self.exist, &mut self.child] {
            table.retain(|_, txs| {
                txs.retain(|tx| !tx.is_closed());
                !txs.is_empty()
            });
        }
        for table in [&mut self.persistent, &mut self.recursive] {
            table.retain(|_, txs| {
                txs.retain(|tx| !tx.is_closed());
                !txs.is_empty()
            });
        }
        let keys = |t: &HashMap<String, Vec<oneshot::Sender<WatchedEvent>>>| {
            t.keys().cloned().collect::<Vec<_>>()
        };
        let stream_keys = |t: &HashMap<String, Vec<mpsc::UnboundedSender<WatchedEvent>>>| {
            t.keys().cloned().collect::<Vec<_>>()
        };
        let set = SetWatches2 {
            relative_zxid: last_zxid,
            data_watches: keys(&self.data),
            exist_watches: keys(&self.exist),
            child_watches: keys(&self.child),
            persistent_watches: stream_keys(&self.persistent),
            persistent_recursive_watches: stream_keys(&self.recursive),
        };
        let empty = set.data_watches.is_empty()
            && set.exist_watches.is_empty()
            && set.child_watches.is_empty()
            && set.persistent_watches.is_empty()
            && set.persistent_recursive_watches.is_empty();
        (!empty).then_some(set)
    }

    /// Tells every watcher the session is over and forgets them all.
    pub fn end_all(&mut self, state: KeeperState) {
        let event = WatchedEvent {
            event_type: EventType::None,
            state,
            path: String::new(),
            zxid: -1,
        };
        for table in [&mut self.data, &mut self.exist, &mut self.child] {
            for (_, txs) in table.drain() {
                for tx in txs {
                    let _ = tx.send(event.clone());
                }
            }
        }
        for table in [&mut self.persistent, &mut self.recursive] {
            for (_, txs) in table.drain() {
                for tx in txs {
                    let _ = tx.send(event.clone());
                }
            }
        }
    }
}
