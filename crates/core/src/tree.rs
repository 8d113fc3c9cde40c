//! The data tree: znodes by path, with ZooKeeper's exact Stat semantics.
//!
//! Nodes live in persistent maps (`imbl`), so cloning the whole tree is O(1):
//! that is how snapshots are taken off the apply path and how a failed multi
//! is rolled back. The tree itself does no validation; [`crate::State`] checks
//! versions, ACLs and sessions first and then calls the mutators here, which
//! record the watch triggers a change causes.
//!
//! Stat quirks kept on purpose (they are visible to clients):
//! - the stored child version counts *creates* only; clients see
//!   `cversion = 2 * creates - numChildren` (ZooKeeper's `DataNode.copyStat`),
//!   and the sequential suffix of a new child is the stored count;
//! - deleting a child moves the parent's pzxid but not its stored cversion;
//! - container and TTL nodes report `ephemeralOwner` 0.

use std::sync::Arc;

use bytes::Bytes;
use imbl::{HashMap, OrdSet};
use roost_proto::{Acl, EventType, Stat};

use crate::path;

/// What kind of node this is; decides ephemeral cleanup and reaping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Persistent,
    /// Owned by a session; deleted when the session ends.
    Ephemeral(i64),
    /// Deleted by the reaper once its last child is gone.
    Container,
    /// Deleted by the reaper when childless and unmodified for `ttl_ms`.
    Ttl(i64),
}

/// A sorted set of names (a node's children, a session's ephemerals) that
/// allocates nothing while empty: most nodes are leaves and most sessions
/// own no ephemerals, and an `imbl` set allocates a whole B-tree node up front.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameSet(Option<OrdSet<Arc<str>>>);

impl NameSet {
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, OrdSet::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<str>> {
        self.0.iter().flat_map(OrdSet::iter)
    }

    pub fn insert(&mut self, name: Arc<str>) {
        self.0.get_or_insert_with(OrdSet::new).insert(name);
    }

    pub fn remove(&mut self, name: &str) {
        if let Some(set) = &mut self.0 {
            set.remove(name);
            if set.is_empty() {
                self.0 = None;
            }
        }
    }
}

impl FromIterator<Arc<str>> for NameSet {
    fn from_iter<I: IntoIterator<Item = Arc<str>>>(iter: I) -> Self {
        let set: OrdSet<Arc<str>> = iter.into_iter().collect();
        NameSet((!set.is_empty()).then_some(set))
    }
}

/// One znode.
#[derive(Debug, Clone)]
pub struct Node {
    /// `None` when a client stored null data (ZooKeeper returns it as null).
    pub data: Option<Bytes>,
    pub acl: Arc<Vec<Acl>>,
    pub czxid: i64,
    pub mzxid: i64,
    pub pzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub aversion: i32,
    /// Children ever created under this node (ZooKeeper's stored cversion).
    pub child_creates: i32,
    pub kind: NodeKind,
    pub children: NameSet,
}

impl Node {
    fn new(
        data: Option<Bytes>,
        acl: Arc<Vec<Acl>>,
        kind: NodeKind,
        zxid: i64,
        time_ms: i64,
    ) -> Self {
        Node {
            data,
            acl,
            czxid: zxid,
            mzxid: zxid,
            pzxid: zxid,
            ctime: time_ms,
            mtime: time_ms,
            version: 0,
            aversion: 0,
            child_creates: 0,
            kind,
            children: NameSet::default(),
        }
    }

    pub fn data_len(&self) -> usize {
        self.data.as_ref().map_or(0, |d| d.len())
    }

    /// The Stat clients see.
    pub fn stat(&self) -> Stat {
        let num_children = self.children.len() as i32;
        Stat {
            czxid: self.czxid,
            mzxid: self.mzxid,
            ctime: self.ctime,
            mtime: self.mtime,
            version: self.version,
            cversion: self
                .child_creates
                .wrapping_mul(2)
                .wrapping_sub(num_children),
            aversion: self.aversion,
            ephemeral_owner: match self.kind {
                NodeKind::Ephemeral(owner) => owner,
                _ => 0,
            },
            data_length: self.data_len() as i32,
            num_children,
            pzxid: self.pzxid,
        }
    }
}

/// A change that may fire watches: the event, where, and the ACL that decides
/// who may see it (the node's own ACL; the parent's for NodeChildrenChanged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub event: EventType,
    pub path: Arc<str>,
    pub acl: Arc<Vec<Acl>>,
}

/// The tree of znodes.
#[derive(Debug, Clone)]
pub struct Tree {
    /// Nodes behind an `Arc`: while a snapshot shares the map, an update
    /// copies map chunks of pointers, not of whole nodes.
    nodes: HashMap<Arc<str>, Arc<Node>>,
    containers: OrdSet<Arc<str>>,
    ttls: OrdSet<Arc<str>>,
    /// Sum of path lengths and data sizes (`zk_approximate_data_size`).
    data_bytes: u64,
    /// While a multi runs: how to undo it.
    journal: Option<Journal>,
}

/// What a multi changed, to put it back if a later op fails: the prior value
/// of every node touched (once each, found through `recorded` so a multi of
/// n ops costs O(n)) and the small indexes wholesale.
#[derive(Debug, Clone)]
struct Journal {
    nodes: Vec<(Arc<str>, Option<Arc<Node>>)>,
    recorded: std::collections::HashSet<Arc<str>>,
    containers: OrdSet<Arc<str>>,
    ttls: OrdSet<Arc<str>>,
    data_bytes: u64,
}

impl Default for Tree {
    fn default() -> Self {
        Self::new()
    }
}

impl Tree {
    /// A fresh tree: `/`, `/zookeeper`, `/zookeeper/quota` and `/zookeeper/config`,
    /// all with zeroed stats like ZooKeeper's; the config node is read-only with aversion -1.
    pub fn new() -> Self {
        let open = Arc::new(crate::acl::open_acl());
        let system = |children: &[&str]| {
            let mut node = Node::new(Some(Bytes::new()), open.clone(), NodeKind::Persistent, 0, 0);
            node.children = children.iter().map(|c| Arc::from(*c)).collect();
            node
        };
        let mut config = system(&[]);
        config.acl = Arc::new(crate::acl::read_acl());
        config.aversion = -1;
        let mut tree = Tree {
            nodes: HashMap::new(),
            containers: OrdSet::new(),
            ttls: OrdSet::new(),
            data_bytes: 0,
            journal: None,
        };
        for (p, node) in [
            ("/", system(&["zookeeper"])),
            (path::ZOOKEEPER, system(&["quota", "config"])),
            (path::QUOTA, system(&[])),
            (path::CONFIG, config),
        ] {
            tree.data_bytes += p.len() as u64;
            tree.nodes.insert(Arc::from(p), Arc::new(node));
        }
        tree
    }

    /// Rebuilds a tree from its nodes (snapshot loading). Each node's
    /// `children` must already list its children; the container, TTL and size
    /// indexes are recomputed here.
    pub fn from_nodes(nodes: impl IntoIterator<Item = (Arc<str>, Node)>) -> Tree {
        let mut containers = Vec::new();
        let mut ttls = Vec::new();
        let mut data_bytes = 0u64;
        let nodes: HashMap<Arc<str>, Arc<Node>> = nodes
            .into_iter()
            .map(|(path, node)| {
                data_bytes += (path.len() + node.data_len()) as u64;
                match node.kind {
                    NodeKind::Container => containers.push(path.clone()),
                    NodeKind::Ttl(_) => ttls.push(path.clone()),
                    _ => {}
                }
                (path, Arc::new(node))
            })
            .collect();
        Tree {
            nodes,
            containers: containers.into_iter().collect(),
            ttls: ttls.into_iter().collect(),
            data_bytes,
            journal: None,
        }
    }

    /// Starts recording changes so [`Tree::rollback`] can undo them.
    pub fn begin(&mut self) {
        assert!(self.journal.is_none(), "tree invariant: nested journal");
        self.journal = Some(Journal {
            nodes: Vec::new(),
            recorded: Default::default(),
            containers: self.containers.clone(),
            ttls: self.ttls.clone(),
            data_bytes: self.data_bytes,
        });
    }

    /// Keeps the changes made since [`Tree::begin`].
    pub fn commit(&mut self) {
        self.journal = None;
    }

    /// Undoes every change made since [`Tree::begin`].
    pub fn rollback(&mut self) {
        let journal = self
            .journal
            .take()
            .expect("tree invariant: rollback without begin");
        for (path, old) in journal.nodes.into_iter().rev() {
            match old {
                Some(node) => {
                    self.nodes.insert(path, node);
                }
                None => {
                    self.nodes.remove(&path);
                }
            }
        }
        self.containers = journal.containers;
        self.ttls = journal.ttls;
        self.data_bytes = journal.data_bytes;
    }

    /// Remembers a node's current value before its first change in a journal.
    fn record(&mut self, path: &str) {
        let Some(journal) = &mut self.journal else {
            return;
        };
        if journal.recorded.contains(path) {
            return;
        }
        let path: Arc<str> = Arc::from(path);
        journal.recorded.insert(path.clone());
        journal
            .nodes
            .push((path.clone(), self.nodes.get(&path).cloned()));
    }

    /// Looks a node up. `""` is the root, as in ZooKeeper.
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes
            .get(if path.is_empty() { "/" } else { path })
            .map(|node| &**node)
    }

    pub fn contains(&self, path: &str) -> bool {
        self.get(path).is_some()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn approximate_data_bytes(&self) -> u64 {
        self.data_bytes
    }

    /// Every node, in no particular order (for snapshots and `dump`).
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Node)> {
        self.nodes.iter().map(|(path, node)| (path, &**node))
    }

    /// Container nodes and TTL nodes, for the reaper.
    pub fn containers(&self) -> impl Iterator<Item = &Arc<str>> {
        self.containers.iter()
    }

    pub fn ttls(&self) -> impl Iterator<Item = &Arc<str>> {
        self.ttls.iter()
    }

    /// Number of descendants of `path` (getAllChildrenNumber).
    pub fn descendant_count(&self, path: &str) -> usize {
        let mut count = 0;
        let mut stack = vec![path.to_string()];
        while let Some(p) = stack.pop() {
            if let Some(node) = self.get(&p) {
                count += node.children.len();
                stack.extend(node.children.iter().map(|c| path::join(&p, c)));
            }
        }
        count
    }

    /// A node to modify; copied first only if a snapshot still shares it.
    fn node_mut(&mut self, path: &str) -> &mut Node {
        self.record(path);
        let node = self
            .nodes
            .get_mut(path)
            .unwrap_or_else(|| panic!("tree invariant: {path} must exist here"));
        Arc::make_mut(node)
    }

    /// Adds a node under an existing parent (checked by the caller).
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        &mut self,
        path: &str,
        data: Option<Bytes>,
        acl: Arc<Vec<Acl>>,
        kind: NodeKind,
        zxid: i64,
        time_ms: i64,
        triggers: &mut Vec<Trigger>,
    ) -> Stat {
        let (parent_path, name) = path::split(path).expect("caller validated the path");
        let parent = self.node_mut(parent_path);
        parent.child_creates = parent.child_creates.wrapping_add(1);
        parent.pzxid = zxid;
        parent.children.insert(Arc::from(name));
        let parent_acl = parent.acl.clone();
        let key: Arc<str> = Arc::from(path);
        match kind {
            NodeKind::Container => {
                self.containers.insert(key.clone());
            }
            NodeKind::Ttl(_) => {
                self.ttls.insert(key.clone());
            }
            _ => {}
        }
        self.data_bytes += (path.len() + data.as_ref().map_or(0, |d| d.len())) as u64;
        let node = Node::new(data, acl.clone(), kind, zxid, time_ms);
        let stat = node.stat();
        self.record(path);
        self.nodes.insert(key.clone(), Arc::new(node));
        triggers.push(Trigger {
            event: EventType::NodeCreated,
            path: key,
            acl,
        });
        triggers.push(Trigger {
            event: EventType::NodeChildrenChanged,
            path: Arc::from(parent_path),
            acl: parent_acl,
        });
        stat
    }

    /// Removes a childless node (checked by the caller); returns it.
    pub fn delete(&mut self, path: &str, zxid: i64, triggers: &mut Vec<Trigger>) -> Arc<Node> {
        let (parent_path, name) = path::split(path).expect("caller validated the path");
        self.record(path);
        let node = self
            .nodes
            .remove(path)
            .unwrap_or_else(|| panic!("tree invariant: deleting missing {path}"));
        assert!(
            node.children.is_empty(),
            "tree invariant: {path} has children"
        );
        let parent = self.node_mut(parent_path);
        parent.children.remove(name);
        if zxid > parent.pzxid {
            parent.pzxid = zxid;
        }
        let parent_acl = parent.acl.clone();
        match node.kind {
            NodeKind::Container => {
                self.containers.remove(path);
            }
            NodeKind::Ttl(_) => {
                self.ttls.remove(path);
            }
            _ => {}
        }
        self.data_bytes -= (path.len() + node.data_len()) as u64;
        triggers.push(Trigger {
            event: EventType::NodeDeleted,
            path: Arc::from(path),
            acl: node.acl.clone(),
        });
        triggers.push(Trigger {
            event: EventType::NodeChildrenChanged,
            path: Arc::from(parent_path),
            acl: parent_acl,
        });
        node
    }

    /// Replaces a node's data and bumps its version (checked by the caller).
    pub fn set_data(
        &mut self,
        path: &str,
        data: Option<Bytes>,
        version: i32,
        zxid: i64,
        time_ms: i64,
        triggers: &mut Vec<Trigger>,
    ) -> Stat {
        let node = self.node_mut(path);
        let old_len = node.data_len() as u64;
        let new_len = data.as_ref().map_or(0, |d| d.len()) as u64;
        node.data = data;
        node.version = version;
        node.mzxid = zxid;
        node.mtime = time_ms;
        let stat = node.stat();
        let acl = node.acl.clone();
        self.data_bytes = self.data_bytes - old_len + new_len;
        triggers.push(Trigger {
            event: EventType::NodeDataChanged,
            path: Arc::from(path),
            acl,
        });
        stat
    }

    /// Replaces a node's ACL and sets its aversion (fires no watch, as in ZooKeeper).
    pub fn set_acl(&mut self, path: &str, acl: Arc<Vec<Acl>>, aversion: i32) -> Stat {
        let node = self.node_mut(path);
        node.acl = acl;
        node.aversion = aversion;
        node.stat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_tree_matches_zookeeper_system_nodes() {
        let tree = Tree::new();
        let root = tree.get("/").unwrap().stat();
        // ZooKeeper 3.8 reports cversion -1 for a fresh root: 0 creates, 1 child.
        assert_eq!((root.num_children, root.cversion, root.pzxid), (1, -1, 0));
        let config = tree.get(path::CONFIG).unwrap();
        assert_eq!(config.aversion, -1);
        assert_eq!(config.acl[0].perms, roost_proto::perms::READ);
        assert_eq!(tree.get("").unwrap().stat(), root);
        assert_eq!(tree.descendant_count("/"), 3);
    }

    #[test]
    fn cversion_counts_creates_and_deletes_through_the_formula() {
        let mut tree = Tree::new();
        let acl = Arc::new(crate::acl::open_acl());
        let mut t = Vec::new();
        tree.create("/p", None, acl.clone(), NodeKind::Persistent, 1, 10, &mut t);
        tree.create(
            "/p/a",
            None,
            acl.clone(),
            NodeKind::Persistent,
            2,
            11,
            &mut t,
        );
        tree.create(
            "/p/b",
            None,
            acl.clone(),
            NodeKind::Persistent,
            3,
            12,
            &mut t,
        );
        tree.delete("/p/a", 4, &mut t);
        let stat = tree.get("/p").unwrap().stat();
        assert_eq!((stat.cversion, stat.num_children, stat.pzxid), (3, 1, 4));
        assert_eq!(tree.get("/p").unwrap().child_creates, 2);
    }
}
