//! The watch table of one server: which connection watches which path, how.
//!
//! Watches are not replicated: they live on the server holding the
//! connection, and a client re-registers them (setWatches) when it moves.
//! Like ZooKeeper, there are two tables: *data* watches (getData, exists,
//! persistent and persistent-recursive addWatch) and *child* watches
//! (getChildren, persistent addWatch). A one-shot watch is removed when it
//! fires; persistent ones stay. A recursive watch on `/a` also fires for
//! every descendant of `/a` — but only from the data table, so it never sees
//! NodeChildrenChanged.
//!
//! Invariants: `by_watcher` is the exact inverse of the two tables; a path
//! appears in a table only with at least one watcher holding a non-empty mode
//! set; `recursive` counts the (watcher, path) pairs with the recursive mode.
//!
//! A watched path is one shared string (`Arc<str>`): the tables and every
//! watcher holding it point at the same allocation, so a watch costs its map
//! entries (~50 bytes per watcher and path, ~65 more per distinct path) plus
//! the path once, not two copies of it per watcher.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use roost_proto::{EventType, WatcherType};

/// Identifies a watcher: one client connection on this server.
pub type WatcherId = u64;

/// The mode bits a watcher holds on one path in one table.
const STANDARD: u8 = 1;
const PERSISTENT: u8 = 2;
const RECURSIVE: u8 = 4;

/// Which of the two tables a watch lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WatchKind {
    /// getData and exists (one-shot), addWatch (persistent, recursive).
    Data,
    /// getChildren (one-shot), addWatch persistent.
    Child,
}

impl WatchKind {
    /// Where this kind's modes sit in [`Held::paths`].
    fn slot(self) -> usize {
        match self {
            WatchKind::Data => 0,
            WatchKind::Child => 1,
        }
    }
}

type Table = HashMap<Arc<str>, HashMap<WatcherId, u8>>;

/// The watches one connection holds.
#[derive(Debug, Default, Clone)]
struct Held {
    /// Path -> modes in the data and the child table; sorted for `wchc`.
    paths: BTreeMap<Arc<str>, [u8; 2]>,
    /// (path, table) pairs with a mode: the connection's watch count.
    count: usize,
}

#[derive(Debug, Default, Clone)]
pub struct WatchTable {
    data: Table,
    child: Table,
    by_watcher: HashMap<WatcherId, Held>,
    recursive: usize,
}

impl WatchTable {
    pub fn new() -> Self {
        Self::default()
    }

    fn table_mut(&mut self, kind: WatchKind) -> &mut Table {
        match kind {
            WatchKind::Data => &mut self.data,
            WatchKind::Child => &mut self.child,
        }
    }

    fn add(&mut self, watcher: WatcherId, path: &str, kind: WatchKind, mode: u8) {
        let old = self.modes_of(watcher, path, kind);
        if old & mode != mode {
            self.set_modes(watcher, path, kind, old | mode);
        }
    }

    /// The modes `watcher` holds on `path` in one table (0: none).
    fn modes_of(&self, watcher: WatcherId, path: &str, kind: WatchKind) -> u8 {
        self.by_watcher
            .get(&watcher)
            .and_then(|held| held.paths.get(path))
            .map_or(0, |modes| modes[kind.slot()])
    }

    /// The shared string for `path`: the one a table or the watcher already
    /// holds, or a new one.
    fn interned(&self, watcher: WatcherId, path: &str) -> Arc<str> {
        let held = self
            .by_watcher
            .get(&watcher)
            .and_then(|held| held.paths.get_key_value(path));
        let known = self
            .data
            .get_key_value(path)
            .or_else(|| self.child.get_key_value(path))
            .map(|(key, _)| key)
            .or(held.map(|(key, _)| key));
        known.cloned().unwrap_or_else(|| Arc::from(path))
    }

    /// A one-shot watch from getData/exists (`Data`) or getChildren (`Child`).
    pub fn add_one_shot(&mut self, watcher: WatcherId, path: &str, kind: WatchKind) {
        self.add(watcher, path, kind, STANDARD);
    }

    /// addWatch: persistent (data and child tables) or persistent-recursive (data table).
    pub fn add_persistent(&mut self, watcher: WatcherId, path: &str, recursive: bool) {
        if recursive {
            self.add(watcher, path, WatchKind::Data, RECURSIVE);
        } else {
            self.add(watcher, path, WatchKind::Data, PERSISTENT);
            self.add(watcher, path, WatchKind::Child, PERSISTENT);
        }
    }

    /// Sets a watcher's modes on one path to `modes` (0 removes it), keeping
    /// every index in step. Returns the previous modes.
    fn set_modes(&mut self, watcher: WatcherId, path: &str, kind: WatchKind, modes: u8) -> u8 {
        let old = self.modes_of(watcher, path, kind);
        if old == modes {
            return old;
        }
        if old & RECURSIVE != 0 && modes & RECURSIVE == 0 {
            self.recursive -= 1;
        }
        if modes & RECURSIVE != 0 && old & RECURSIVE == 0 {
            self.recursive += 1;
        }
        let table = self.table_mut(kind);
        if modes == 0 {
            if let Some(watchers) = table.get_mut(path) {
                watchers.remove(&watcher);
                if watchers.is_empty() {
                    table.remove(path);
                }
            }
            if let Some(held) = self.by_watcher.get_mut(&watcher) {
                if let Some(both) = held.paths.get_mut(path) {
                    both[kind.slot()] = 0;
                    held.count -= 1;
                    if *both == [0, 0] {
                        held.paths.remove(path);
                    }
                }
                if held.paths.is_empty() {
                    self.by_watcher.remove(&watcher);
                }
            }
        } else {
            let key = self.interned(watcher, path);
            self.table_mut(kind)
                .entry(key.clone())
                .or_default()
                .insert(watcher, modes);
            let held = self.by_watcher.entry(watcher).or_default();
            let both = held.paths.entry(key).or_insert([0, 0]);
            if both[kind.slot()] == 0 {
                held.count += 1;
            }
            both[kind.slot()] = modes;
        }
        old
    }

    /// Fires one table for a change at `path`: watchers on `path` itself (one-shot
    /// ones are consumed) and recursive watchers on its ancestors.
    fn fire(&mut self, kind: WatchKind, path: &str, out: &mut Vec<WatcherId>) {
        let mut consumed = Vec::new();
        if let Some(watchers) = self.table_mut(kind).get(path) {
            for (&watcher, &modes) in watchers {
                out.push(watcher);
                if modes & STANDARD != 0 {
                    consumed.push((watcher, modes & !STANDARD));
                }
            }
        }
        for (watcher, remaining) in consumed {
            self.set_modes(watcher, path, kind, remaining);
        }
        if kind == WatchKind::Data && self.recursive > 0 {
            for ancestor in crate::path::self_and_ancestors(path).skip(1) {
                if let Some(watchers) = self.data.get(ancestor) {
                    out.extend(
                        watchers
                            .iter()
                            .filter(|(_, &m)| m & RECURSIVE != 0)
                            .map(|(&w, _)| w),
                    );
                }
            }
        }
    }

    /// The watchers to notify of `event` at `path`, each once, sorted; one-shot
    /// watches that fire are removed.
    pub fn trigger(&mut self, path: &str, event: EventType) -> Vec<WatcherId> {
        let mut fired = Vec::new();
        match event {
            EventType::NodeCreated | EventType::NodeDataChanged => {
                self.fire(WatchKind::Data, path, &mut fired)
            }
            EventType::NodeChildrenChanged => self.fire(WatchKind::Child, path, &mut fired),
            EventType::NodeDeleted => {
                // One NodeDeleted per watcher even when it held both a data and a child watch.
                self.fire(WatchKind::Data, path, &mut fired);
                self.fire(WatchKind::Child, path, &mut fired);
            }
            _ => {}
        }
        fired.sort_unstable();
        fired.dedup();
        fired
    }

    /// checkWatches: whether `watcher` holds a watch of `watch_type` on `path`.
    pub fn contains(&self, watcher: WatcherId, path: &str, watch_type: WatcherType) -> bool {
        let modes = |kind| self.modes_of(watcher, path, kind);
        match watch_type {
            WatcherType::Children => modes(WatchKind::Child) & STANDARD != 0,
            WatcherType::Data => modes(WatchKind::Data) & STANDARD != 0,
            WatcherType::Persistent => modes(WatchKind::Data) & PERSISTENT != 0,
            WatcherType::PersistentRecursive => modes(WatchKind::Data) & RECURSIVE != 0,
            WatcherType::Any => modes(WatchKind::Child) != 0 || modes(WatchKind::Data) != 0,
        }
    }

    /// removeWatches: drops `watcher`'s watches of `watch_type` on `path`;
    /// whether anything was removed.
    pub fn remove(&mut self, watcher: WatcherId, path: &str, watch_type: WatcherType) -> bool {
        let clear = |table: &mut Self, kind: WatchKind, bits: u8| {
            let old = table.modes_of(watcher, path, kind);
            old & bits != 0 && table.set_modes(watcher, path, kind, old & !bits) != 0
        };
        match watch_type {
            WatcherType::Children => clear(self, WatchKind::Child, STANDARD),
            WatcherType::Data => clear(self, WatchKind::Data, STANDARD),
            WatcherType::Persistent => {
                let child = clear(self, WatchKind::Child, PERSISTENT);
                clear(self, WatchKind::Data, PERSISTENT) || child
            }
            WatcherType::PersistentRecursive => clear(self, WatchKind::Data, RECURSIVE),
            WatcherType::Any => {
                let all = STANDARD | PERSISTENT | RECURSIVE;
                let child = clear(self, WatchKind::Child, all);
                clear(self, WatchKind::Data, all) || child
            }
        }
    }

    /// Forgets every watch of a connection that closed.
    pub fn remove_watcher(&mut self, watcher: WatcherId) {
        let Some(held) = self.by_watcher.remove(&watcher) else {
            return;
        };
        for (path, both) in held.paths {
            for kind in [WatchKind::Data, WatchKind::Child] {
                let modes = both[kind.slot()];
                if modes == 0 {
                    continue;
                }
                if modes & RECURSIVE != 0 {
                    self.recursive -= 1;
                }
                let table = self.table_mut(kind);
                if let Some(watchers) = table.get_mut(&*path) {
                    watchers.remove(&watcher);
                    if watchers.is_empty() {
                        table.remove(&*path);
                    }
                }
            }
        }
    }

    /// Number of (watcher, path) watches held by one connection.
    pub fn count_for(&self, watcher: WatcherId) -> usize {
        self.by_watcher.get(&watcher).map_or(0, |held| held.count)
    }

    /// `wchs`: connections watching, distinct watched paths, total watches.
    pub fn summary(&self) -> (usize, usize, usize) {
        let mut paths: Vec<&Arc<str>> = self.data.keys().chain(self.child.keys()).collect();
        paths.sort_unstable();
        paths.dedup();
        let total = self.by_watcher.values().map(|held| held.count).sum();
        (self.by_watcher.len(), paths.len(), total)
    }

    /// `wchc`: each watcher with the paths it watches, sorted.
    pub fn by_watcher(&self) -> Vec<(WatcherId, Vec<String>)> {
        let mut out: Vec<_> = self
            .by_watcher
            .iter()
            .map(|(w, held)| {
                // Data-table paths, then child-table ones, each sorted.
                let in_table = |kind: WatchKind| {
                    held.paths
                        .iter()
                        .filter(move |(_, both)| both[kind.slot()] != 0)
                        .map(|(p, _)| p.to_string())
                };
                let mut list: Vec<String> = in_table(WatchKind::Data)
                    .chain(in_table(WatchKind::Child))
                    .collect();
                list.dedup();
                (*w, list)
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// `wchp`: each watched path with its watchers, sorted.
    pub fn by_path(&self) -> Vec<(String, Vec<WatcherId>)> {
        let mut map: BTreeMap<&Arc<str>, Vec<WatcherId>> = BTreeMap::new();
        for (path, watchers) in self.data.iter().chain(self.child.iter()) {
            map.entry(path).or_default().extend(watchers.keys());
        }
        map.into_iter()
            .map(|(p, mut w)| {
                w.sort_unstable();
                w.dedup();
                (p.to_string(), w)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shot_watches_fire_once() {
        let mut t = WatchTable::new();
        t.add_one_shot(1, "/a", WatchKind::Data);
        assert_eq!(t.trigger("/a", EventType::NodeDataChanged), vec![1]);
        assert!(t.trigger("/a", EventType::NodeDataChanged).is_empty());
        assert_eq!(t.summary(), (0, 0, 0));
    }

    #[test]
    fn delete_notifies_a_watcher_once_for_data_and_child_watches() {
        let mut t = WatchTable::new();
        t.add_one_shot(1, "/a", WatchKind::Data);
        t.add_one_shot(1, "/a", WatchKind::Child);
        t.add_one_shot(2, "/a", WatchKind::Child);
        assert_eq!(t.trigger("/a", EventType::NodeDeleted), vec![1, 2]);
        assert_eq!(t.summary(), (0, 0, 0));
    }

    #[test]
    fn persistent_watches_stay_and_recursive_ones_see_descendants_but_not_child_events() {
        let mut t = WatchTable::new();
        t.add_persistent(1, "/p", false);
        t.add_persistent(2, "/r", true);
        for _ in 0..2 {
            assert_eq!(t.trigger("/p", EventType::NodeDataChanged), vec![1]);
            assert_eq!(t.trigger("/p", EventType::NodeChildrenChanged), vec![1]);
        }
        assert!(t.trigger("/p/kid", EventType::NodeCreated).is_empty());
        assert_eq!(t.trigger("/r/a/b", EventType::NodeCreated), vec![2]);
        assert_eq!(t.trigger("/r", EventType::NodeDataChanged), vec![2]);
        assert!(t.trigger("/r", EventType::NodeChildrenChanged).is_empty());
        assert!(t.contains(2, "/r", WatcherType::PersistentRecursive));
        assert!(!t.contains(2, "/r", WatcherType::Data));
        assert!(t.remove(2, "/r", WatcherType::PersistentRecursive));
        assert!(t.trigger("/r/a/b", EventType::NodeCreated).is_empty());
    }

    #[test]
    fn check_does_not_remove_and_remove_reports_absence() {
        let mut t = WatchTable::new();
        t.add_one_shot(7, "/w", WatchKind::Data);
        assert!(t.contains(7, "/w", WatcherType::Data));
        assert!(t.contains(7, "/w", WatcherType::Any));
        assert!(!t.contains(7, "/w", WatcherType::Children));
        assert!(!t.remove(7, "/w", WatcherType::Children));
        assert!(t.remove(7, "/w", WatcherType::Any));
        assert!(!t.remove(7, "/w", WatcherType::Any));
    }

    #[test]
    fn a_watched_path_is_stored_once() {
        let mut t = WatchTable::new();
        t.add_one_shot(1, "/a", WatchKind::Data);
        t.add_one_shot(2, "/a", WatchKind::Child);
        t.add_persistent(3, "/a", false);
        let (key, _) = t.data.get_key_value("/a").unwrap();
        let (child_key, _) = t.child.get_key_value("/a").unwrap();
        assert!(Arc::ptr_eq(key, child_key));
        for w in [1, 2, 3] {
            let (held_key, _) = t.by_watcher[&w].paths.get_key_value("/a").unwrap();
            assert!(Arc::ptr_eq(key, held_key));
        }
        assert_eq!((t.count_for(1), t.count_for(2), t.count_for(3)), (1, 1, 2));
        assert_eq!(t.summary(), (3, 1, 4));
        assert_eq!(t.trigger("/a", EventType::NodeDeleted), vec![1, 2, 3]);
        assert_eq!((t.count_for(1), t.count_for(3)), (0, 2));
    }

    #[test]
    fn closing_a_connection_drops_all_its_watches() {
        let mut t = WatchTable::new();
        t.add_one_shot(1, "/a", WatchKind::Data);
        t.add_persistent(1, "/b", true);
        t.add_one_shot(2, "/a", WatchKind::Data);
        t.remove_watcher(1);
        assert_eq!(
            t.trigger("/b/c", EventType::NodeCreated),
            Vec::<WatcherId>::new()
        );
        assert_eq!(t.trigger("/a", EventType::NodeCreated), vec![2]);
        assert_eq!(t.recursive, 0);
    }
}
