//! The data tree: znodes in a compact arena, with ZooKeeper's exact Stat semantics.
//!
//! # Layout
//! Nodes live in an arena of fixed-size chunks addressed by a `u32` id. A node
//! stores only its last path segment; its parent, first child and siblings are
//! ids (children form a doubly linked list, so a create or delete under a
//! parent with a million children is O(1)). One hash index maps
//! `(parent id, segment)` to an id, so a path lookup is one probe per segment.
//! Chunks sit behind an `Arc`: cloning the tree (a snapshot, taken at one log
//! index) copies the chunk pointers and the index, and a later write copies
//! only the chunk it touches (copy-on-write, [`CHUNK_SLOTS`] nodes at a time).
//!
//! # Budget per znode (64-bit), beyond its name segment and data
//! - arena slot: 112 bytes ([`Node`]: stat 64, links and counts 20, ACL
//!   pointer 8, name+data pointer 16, lengths and flags);
//! - name and data share one heap block: 16 bytes of reference counts plus
//!   the allocator's header and rounding (~16);
//! - index: an id and its key's 32-bit hash (8 bytes) and a control byte
//!   per entry, at 44–87% load (~14); the stored hash lets the table grow
//!   without reading a node;
//! - per child link: nothing beyond the child's own slot (the list is
//!   threaded through the children);
//! - ACLs: shared by `Arc`; [`crate::State`] interns equal lists, so a node
//!   with a common ACL pays only its pointer.
//!
//! - per watch: see [`crate::watch`] (the path is stored once, shared).
//!
//! So about 155 bytes plus the segment and the data. Freed slots are reused
//! (last freed first); the arena does not shrink.
//!
//! The tree does no validation; [`crate::State`] checks versions, ACLs and
//! sessions first and then calls the mutators here, which record the watch
//! triggers a change causes. While a multi runs, every change is journaled
//! and [`Tree::rollback`] undoes them in reverse order.
//!
//! Stat quirks kept on purpose (they are visible to clients):
//! - the stored child version counts *creates* only; clients see
//!   `cversion = 2 * creates - numChildren` (ZooKeeper's `DataNode.copyStat`),
//!   and the sequential suffix of a new child is the stored count;
//! - deleting a child moves the parent's pzxid but not its stored cversion;
//! - container and TTL nodes report `ephemeralOwner` 0.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use bytes::Bytes;
use hashbrown::HashTable;
use imbl::OrdSet;
use roost_proto::{Acl, EventType, Stat};

use crate::path;

/// Nodes per copy-on-write chunk: small enough that the first write to a
/// chunk after a snapshot copies ~57 KB, large enough that a snapshot of a
/// million nodes clones ~2,000 pointers.
pub const CHUNK_SLOTS: usize = 512;

/// No node (an absent parent, child or sibling).
const NIL: u32 = u32::MAX;
const ROOT: u32 = 0;

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

impl NodeKind {
    fn pack(self) -> (u8, i64) {
        match self {
            NodeKind::Persistent => (0, 0),
            NodeKind::Ephemeral(owner) => (1, owner),
            NodeKind::Container => (2, 0),
            NodeKind::Ttl(ms) => (3, ms),
        }
    }

    fn unpack(tag: u8, value: i64) -> NodeKind {
        match tag & KIND_MASK {
            0 => NodeKind::Persistent,
            1 => NodeKind::Ephemeral(value),
            2 => NodeKind::Container,
            _ => NodeKind::Ttl(value),
        }
    }
}

const KIND_MASK: u8 = 0b11;
/// The client stored null data (ZooKeeper returns it as null, not empty).
const DATA_NULL: u8 = 0b100;

/// A sorted set of names (a session's ephemerals) that allocates nothing
/// while empty: most sessions own no ephemerals, and an `imbl` set allocates a
/// whole B-tree node up front.
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

/// One znode as the arena holds it.
#[derive(Debug, Clone)]
pub struct Node {
    /// The last path segment, then the data; `None` when both are empty.
    blob: Option<Arc<[u8]>>,
    name_len: u32,
    /// Kind tag and [`DATA_NULL`].
    flags: u8,
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
    /// The ephemeral owner or the TTL, by kind.
    kind_value: i64,
    parent: u32,
    first_child: u32,
    next_sibling: u32,
    prev_sibling: u32,
    num_children: u32,
}

/// What a node is made from when a snapshot is loaded.
#[derive(Debug, Clone)]
pub struct NodeInit<'a> {
    pub data: Option<&'a [u8]>,
    /// Interned by the builder.
    pub acl: Arc<Vec<Acl>>,
    pub czxid: i64,
    pub mzxid: i64,
    pub pzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub aversion: i32,
    pub child_creates: i32,
    pub kind: NodeKind,
}

/// Shares a node's data with a reply without copying it.
struct DataSlice {
    blob: Arc<[u8]>,
    start: usize,
}

impl AsRef<[u8]> for DataSlice {
    fn as_ref(&self) -> &[u8] {
        &self.blob[self.start..]
    }
}

fn blob(name: &[u8], data: Option<&[u8]>) -> Option<Arc<[u8]>> {
    let data = data.unwrap_or_default();
    if name.is_empty() && data.is_empty() {
        return None;
    }
    let mut bytes = Vec::with_capacity(name.len() + data.len());
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(data);
    Some(Arc::from(bytes))
}

impl Node {
    fn new(name: &str, init: NodeInit<'_>) -> Node {
        let (tag, kind_value) = init.kind.pack();
        Node {
            blob: blob(name.as_bytes(), init.data),
            name_len: name.len() as u32,
            flags: tag | if init.data.is_none() { DATA_NULL } else { 0 },
            acl: init.acl,
            czxid: init.czxid,
            mzxid: init.mzxid,
            pzxid: init.pzxid,
            ctime: init.ctime,
            mtime: init.mtime,
            version: init.version,
            aversion: init.aversion,
            child_creates: init.child_creates,
            kind_value,
            parent: NIL,
            first_child: NIL,
            next_sibling: NIL,
            prev_sibling: NIL,
            num_children: 0,
        }
    }

    pub fn name_bytes(&self) -> &[u8] {
        self.blob
            .as_ref()
            .map_or(&[][..], |b| &b[..self.name_len as usize])
    }

    /// The last path segment (empty for the root).
    pub fn name(&self) -> &str {
        // Names are only ever stored from `&str`.
        std::str::from_utf8(self.name_bytes()).unwrap_or_default()
    }

    /// The data as stored; `None` when a client stored null.
    pub fn data_slice(&self) -> Option<&[u8]> {
        if self.flags & DATA_NULL != 0 {
            return None;
        }
        Some(
            self.blob
                .as_ref()
                .map_or(&[][..], |b| &b[self.name_len as usize..]),
        )
    }

    /// The data for a reply, sharing the node's memory.
    pub fn data(&self) -> Option<Bytes> {
        let len = self.data_slice()?.len();
        Some(match &self.blob {
            Some(blob) if len > 0 => Bytes::from_owner(DataSlice {
                blob: blob.clone(),
                start: self.name_len as usize,
            }),
            _ => Bytes::new(),
        })
    }

    fn set_data(&mut self, data: Option<&[u8]>) {
        self.blob = blob(self.name_bytes(), data);
        self.flags = (self.flags & KIND_MASK) | if data.is_none() { DATA_NULL } else { 0 };
    }

    pub fn data_len(&self) -> usize {
        self.data_slice().map_or(0, <[u8]>::len)
    }

    pub fn kind(&self) -> NodeKind {
        NodeKind::unpack(self.flags, self.kind_value)
    }

    pub fn num_children(&self) -> usize {
        self.num_children as usize
    }

    pub fn has_children(&self) -> bool {
        self.num_children > 0
    }

    /// The Stat clients see.
    pub fn stat(&self) -> Stat {
        let num_children = self.num_children as i32;
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
            ephemeral_owner: match self.kind() {
                NodeKind::Ephemeral(owner) => owner,
                _ => 0,
            },
            data_length: self.data_len() as i32,
            num_children,
            pzxid: self.pzxid,
        }
    }
}

/// A node's place in a tree, for building one (snapshot loading).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeId(u32);

impl NodeId {
    pub const ROOT: NodeId = NodeId(ROOT);
}

/// A change that may fire watches: the event, where, and the ACL that decides
/// who may see it (the node's own ACL; the parent's for NodeChildrenChanged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub event: EventType,
    /// The path is `full[..len]`: a parent's trigger shares the allocation
    /// of its child's path, so a create or delete allocates one path, not two.
    full: Arc<str>,
    len: usize,
    pub acl: Arc<Vec<Acl>>,
}

impl Trigger {
    fn at(event: EventType, path: Arc<str>, acl: Arc<Vec<Acl>>) -> Trigger {
        let len = path.len();
        Trigger {
            event,
            full: path,
            len,
            acl,
        }
    }

    /// The trigger for `parent`, a prefix of `child`'s path.
    fn at_parent(event: EventType, child: &Arc<str>, parent: &str, acl: Arc<Vec<Acl>>) -> Trigger {
        debug_assert!(child.starts_with(parent));
        Trigger {
            event,
            full: child.clone(),
            len: parent.len(),
            acl,
        }
    }

    pub fn path(&self) -> &str {
        &self.full[..self.len]
    }

    /// The path as a shared string (allocated only for a parent's trigger).
    pub fn shared_path(&self) -> Arc<str> {
        if self.len == self.full.len() {
            self.full.clone()
        } else {
            Arc::from(self.path())
        }
    }
}

type Chunk = Vec<Option<Node>>;

/// Equal ACL lists shared by one `Arc` (ZooKeeper's reference-counted ACL
/// cache): a node with a common ACL costs a pointer, not four allocations.
/// Lists no node holds any more are swept when the table has doubled.
#[derive(Debug, Clone, Default)]
struct AclTable {
    lists: HashTable<Arc<Vec<Acl>>>,
    hasher: foldhash::fast::RandomState,
    sweep_at: usize,
}

fn acl_hash(hasher: &foldhash::fast::RandomState, acl: &[Acl]) -> u64 {
    let mut h = hasher.build_hasher();
    for entry in acl {
        h.write_i32(entry.perms);
        h.write(entry.id.scheme.as_bytes());
        h.write_u8(0xff);
        h.write(entry.id.id.as_bytes());
        h.write_u8(0xff);
    }
    h.finish()
}

impl AclTable {
    /// The shared list equal to `acl` (a list already shared, from a snapshot).
    fn intern_shared(&mut self, acl: Arc<Vec<Acl>>) -> Arc<Vec<Acl>> {
        let hash = acl_hash(&self.hasher, &acl);
        if let Some(shared) = self.lists.find(hash, |known| **known == *acl) {
            return shared.clone();
        }
        self.insert(hash, acl)
    }

    fn insert(&mut self, hash: u64, acl: Arc<Vec<Acl>>) -> Arc<Vec<Acl>> {
        let hasher = &self.hasher;
        self.lists
            .insert_unique(hash, acl.clone(), |list| acl_hash(hasher, list));
        acl
    }

    /// The shared list equal to `acl`, made from it if there is none yet.
    /// The shared list equal to `acl`; allocates only for a list not seen yet.
    fn intern(&mut self, acl: &[Acl]) -> Arc<Vec<Acl>> {
        let hash = acl_hash(&self.hasher, acl);
        if let Some(shared) = self.lists.find(hash, |known| known.as_slice() == acl) {
            return shared.clone();
        }
        if self.lists.len() >= self.sweep_at {
            // Only the table holds these: no node (nor snapshot) uses them.
            self.lists.retain(|list| Arc::strong_count(list) > 1);
            self.sweep_at = (self.lists.len() * 2).max(64);
        }
        self.insert(hash, Arc::new(acl.to_vec()))
    }
}

/// The tree of znodes.
#[derive(Debug, Clone)]
pub struct Tree {
    chunks: Vec<Arc<Chunk>>,
    /// Ids in use or free; slots past it do not exist yet.
    slots: u32,
    /// Free slots below `slots`, the last freed on top.
    free: Vec<u32>,
    /// Ids by `(parent id, segment)`, hashed with `hasher`.
    index: HashTable<Indexed>,
    hasher: foldhash::fast::RandomState,
    acls: AclTable,
    len: usize,
    containers: OrdSet<Arc<str>>,
    ttls: OrdSet<Arc<str>>,
    /// Sum of path lengths and data sizes (`zk_approximate_data_size`).
    data_bytes: u64,
    /// While a multi runs: how to undo it.
    journal: Option<Journal>,
}

/// One step of a multi, undone in reverse order.
#[derive(Debug, Clone)]
enum Undo {
    /// The node had this value.
    Changed(u32, Node),
    /// The slot was empty; `fresh` if it was new at the end of the arena.
    Allocated { id: u32, fresh: bool },
    /// The node was removed from this slot (and the slot freed).
    Freed(u32, Node),
    /// The id entered the index.
    Indexed(u32),
    /// The id left the index.
    Unindexed(u32),
}

#[derive(Debug, Clone)]
struct Journal {
    undo: Vec<Undo>,
    containers: OrdSet<Arc<str>>,
    ttls: OrdSet<Arc<str>>,
    data_bytes: u64,
    len: usize,
}

impl Default for Tree {
    fn default() -> Self {
        Self::new()
    }
}

fn slot(chunks: &[Arc<Chunk>], id: u32) -> Option<&Node> {
    let id = id as usize;
    chunks
        .get(id / CHUNK_SLOTS)?
        .get(id % CHUNK_SLOTS)?
        .as_ref()
}

/// An index entry: a node and the hash of its key. Keeping the hash lets the
/// table grow without visiting a single node: rehashing two million entries
/// by reading their nodes stalled writes for a third of a second.
#[derive(Debug, Clone, Copy)]
struct Indexed {
    id: u32,
    hash: u32,
}

impl Indexed {
    /// The table's hash: the 32 stored bits in both halves, so that both the
    /// bucket (low bits) and the tag (top bits) come from them.
    fn table_hash(self) -> u64 {
        spread(self.hash)
    }
}

fn spread(hash: u32) -> u64 {
    u64::from(hash) << 32 | u64::from(hash)
}

fn key_hash(hasher: &foldhash::fast::RandomState, parent: u32, name: &[u8]) -> u32 {
    let mut h = hasher.build_hasher();
    h.write_u32(parent);
    h.write(name);
    let full = h.finish();
    (full ^ (full >> 32)) as u32
}

impl Tree {
    fn empty(mut root: Node) -> Tree {
        let data_bytes = 1 + root.data_len() as u64;
        let mut acls = AclTable::default();
        root.acl = acls.intern_shared(root.acl);
        let mut tree = Tree {
            chunks: Vec::new(),
            slots: 0,
            free: Vec::new(),
            index: HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
            acls,
            len: 1,
            containers: OrdSet::new(),
            ttls: OrdSet::new(),
            data_bytes,
            journal: None,
        };
        let id = tree.allocate(root);
        debug_assert_eq!(id, ROOT);
        tree
    }

    /// A fresh tree: `/`, `/zookeeper`, `/zookeeper/quota` and `/zookeeper/config`,
    /// all with zeroed stats like ZooKeeper's; the config node is read-only with aversion -1.
    pub fn new() -> Self {
        let open = Arc::new(crate::acl::open_acl());
        let system = |acl: &Arc<Vec<Acl>>, aversion| NodeInit {
            data: Some(&[]),
            acl: acl.clone(),
            czxid: 0,
            mzxid: 0,
            pzxid: 0,
            ctime: 0,
            mtime: 0,
            version: 0,
            aversion,
            child_creates: 0,
            kind: NodeKind::Persistent,
        };
        let mut builder = TreeBuilder::new(system(&open, 0));
        let add = |b: &mut TreeBuilder, parent, name, init| {
            b.add(parent, name, init)
                .expect("system nodes have distinct names")
        };
        let zookeeper = add(&mut builder, NodeId::ROOT, "zookeeper", system(&open, 0));
        add(&mut builder, zookeeper, "quota", system(&open, 0));
        let read_only = Arc::new(crate::acl::read_acl());
        add(&mut builder, zookeeper, "config", system(&read_only, -1));
        builder.finish()
    }

    fn node(&self, id: u32) -> &Node {
        slot(&self.chunks, id).unwrap_or_else(|| panic!("tree invariant: node {id} exists"))
    }

    /// A node to modify; its chunk is copied first if a snapshot shares it.
    fn node_mut_unjournaled(&mut self, id: u32) -> &mut Node {
        let index = id as usize;
        Arc::make_mut(&mut self.chunks[index / CHUNK_SLOTS])[index % CHUNK_SLOTS]
            .as_mut()
            .unwrap_or_else(|| panic!("tree invariant: node {id} exists"))
    }

    /// A node to modify, its prior value journaled.
    fn node_mut(&mut self, id: u32) -> &mut Node {
        if self.journal.is_some() {
            let old = self.node(id).clone();
            self.journal_push(Undo::Changed(id, old));
        }
        self.node_mut_unjournaled(id)
    }

    fn journal_push(&mut self, undo: Undo) {
        if let Some(journal) = &mut self.journal {
            journal.undo.push(undo);
        }
    }

    fn slot_mut(&mut self, id: u32) -> &mut Option<Node> {
        let index = id as usize;
        &mut Arc::make_mut(&mut self.chunks[index / CHUNK_SLOTS])[index % CHUNK_SLOTS]
    }

    /// Puts a node in a free slot (the last freed) or a new one.
    fn allocate(&mut self, node: Node) -> u32 {
        let (id, fresh) = match self.free.pop() {
            Some(id) => (id, false),
            None => {
                let id = self.slots;
                assert!(id < NIL, "tree invariant: fewer than 2^32 - 1 nodes");
                self.slots += 1;
                if (id as usize).is_multiple_of(CHUNK_SLOTS) {
                    self.chunks.push(Arc::new(Vec::with_capacity(CHUNK_SLOTS)));
                }
                let chunk = Arc::make_mut(self.chunks.last_mut().expect("pushed above"));
                chunk.push(None);
                (id, true)
            }
        };
        *self.slot_mut(id) = Some(node);
        self.journal_push(Undo::Allocated { id, fresh });
        id
    }

    /// Empties a slot; returns what it held.
    fn release(&mut self, id: u32) -> Node {
        let node = self
            .slot_mut(id)
            .take()
            .unwrap_or_else(|| panic!("tree invariant: node {id} exists"));
        self.free.push(id);
        if self.journal.is_some() {
            self.journal_push(Undo::Freed(id, node.clone()));
        }
        node
    }

    fn index_insert(&mut self, id: u32) {
        let node = self.node(id);
        let hash = key_hash(&self.hasher, node.parent, node.name_bytes());
        self.index
            .insert_unique(spread(hash), Indexed { id, hash }, |e| e.table_hash());
        self.journal_push(Undo::Indexed(id));
    }

    fn index_remove(&mut self, id: u32) {
        let node = self.node(id);
        let hash = key_hash(&self.hasher, node.parent, node.name_bytes());
        if let Ok(entry) = self.index.find_entry(spread(hash), |e| e.id == id) {
            entry.remove();
        }
        self.journal_push(Undo::Unindexed(id));
    }

    /// The child of `parent` named `name`.
    fn child_id(&self, parent: u32, name: &str) -> Option<u32> {
        let hash = key_hash(&self.hasher, parent, name.as_bytes());
        let chunks = &self.chunks;
        self.index
            .find(spread(hash), |e| {
                e.hash == hash
                    && slot(chunks, e.id)
                        .is_some_and(|n| n.parent == parent && n.name_bytes() == name.as_bytes())
            })
            .map(|e| e.id)
    }

    /// The id of the node at `path`. `""` is the root, as in ZooKeeper.
    fn id_of(&self, path: &str) -> Option<u32> {
        if path.is_empty() || path == "/" {
            return Some(ROOT);
        }
        let rest = path.strip_prefix('/')?;
        let mut id = ROOT;
        for segment in rest.split('/') {
            id = self.child_id(id, segment)?;
        }
        Some(id)
    }

    /// Starts recording changes so [`Tree::rollback`] can undo them.
    pub fn begin(&mut self) {
        assert!(self.journal.is_none(), "tree invariant: nested journal");
        self.journal = Some(Journal {
            undo: Vec::new(),
            containers: self.containers.clone(),
            ttls: self.ttls.clone(),
            data_bytes: self.data_bytes,
            len: self.len,
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
        for undo in journal.undo.into_iter().rev() {
            match undo {
                Undo::Changed(id, node) => *self.node_mut_unjournaled(id) = node,
                Undo::Allocated { id, fresh } => {
                    *self.slot_mut(id) = None;
                    if fresh {
                        // The newest slot: the arena shrinks back by one.
                        let chunk = Arc::make_mut(self.chunks.last_mut().expect("allocated"));
                        chunk.pop();
                        if chunk.is_empty() {
                            self.chunks.pop();
                        }
                        self.slots -= 1;
                    } else {
                        self.free.push(id);
                    }
                }
                Undo::Freed(id, node) => {
                    let reused = self.free.pop();
                    debug_assert_eq!(reused, Some(id));
                    *self.slot_mut(id) = Some(node);
                }
                // Journaling is off, so these record nothing.
                Undo::Indexed(id) => self.index_remove(id),
                Undo::Unindexed(id) => self.index_insert(id),
            }
        }
        self.containers = journal.containers;
        self.ttls = journal.ttls;
        self.data_bytes = journal.data_bytes;
        self.len = journal.len;
    }

    /// Looks a node up. `""` is the root, as in ZooKeeper.
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.id_of(path).map(|id| self.node(id))
    }

    /// Looks a node up with its id, to create under it.
    pub fn get_with_id(&self, path: &str) -> Option<(NodeId, &Node)> {
        self.id_of(path).map(|id| (NodeId(id), self.node(id)))
    }

    /// Whether `parent` has a child named `name`.
    pub fn has_child(&self, parent: NodeId, name: &str) -> bool {
        self.child_id(parent.0, name).is_some()
    }

    pub fn contains(&self, path: &str) -> bool {
        self.id_of(path).is_some()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn approximate_data_bytes(&self) -> u64 {
        self.data_bytes
    }

    /// A node's children, in no particular order.
    pub fn children<'a>(&'a self, node: &'a Node) -> impl Iterator<Item = &'a Node> + 'a {
        let mut next = node.first_child;
        std::iter::from_fn(move || {
            let child = slot(&self.chunks, next)?;
            next = child.next_sibling;
            Some(child)
        })
    }

    /// A node's child names, sorted (as clients see them).
    pub fn child_names(&self, node: &Node) -> Vec<String> {
        let mut names: Vec<&str> = self.children(node).map(Node::name).collect();
        names.sort_unstable();
        names.into_iter().map(str::to_string).collect()
    }

    /// Every node with its path, parents before children (for snapshots):
    /// `visit` sees each node once, its path built in one reused buffer.
    pub fn visit_preorder<'a, E>(
        &'a self,
        mut visit: impl FnMut(&str, &'a Node) -> Result<(), E>,
    ) -> Result<(), E> {
        let root = self.node(ROOT);
        visit("/", root)?;
        let mut path = String::from("/");
        // (length of the parent's path, the next child to visit)
        let mut stack: Vec<(usize, u32)> = vec![(1, root.first_child)];
        while let Some((base_len, next)) = stack.last_mut() {
            let Some(node) = slot(&self.chunks, *next) else {
                stack.pop();
                continue;
            };
            *next = node.next_sibling;
            path.truncate(*base_len);
            if *base_len > 1 {
                path.push('/');
            }
            path.push_str(node.name());
            visit(&path, node)?;
            if node.first_child != NIL {
                stack.push((path.len(), node.first_child));
            }
        }
        Ok(())
    }

    /// Every node once, parents before children, with the visit number of
    /// its parent (`None` for the root, which is visit 0): enough to rebuild
    /// the tree with [`TreeBuilder`] without a single path.
    pub fn visit_records<'a, E>(
        &'a self,
        mut visit: impl FnMut(Option<u32>, &'a Node) -> Result<(), E>,
    ) -> Result<(), E> {
        let root = self.node(ROOT);
        visit(None, root)?;
        let mut visited = 1u32;
        // (the parent's visit number, the next child to visit)
        let mut stack: Vec<(u32, u32)> = vec![(0, root.first_child)];
        while let Some((parent, next)) = stack.last_mut() {
            let Some(node) = slot(&self.chunks, *next) else {
                stack.pop();
                continue;
            };
            *next = node.next_sibling;
            visit(Some(*parent), node)?;
            if node.first_child != NIL {
                stack.push((visited, node.first_child));
            }
            visited += 1;
        }
        Ok(())
    }

    /// The distinct ACL lists nodes hold (and perhaps a few no node holds).
    pub fn acl_lists(&self) -> impl Iterator<Item = &Arc<Vec<Acl>>> {
        self.acls.lists.iter()
    }

    /// The path of the node with id `id`.
    fn path_of(&self, id: u32) -> String {
        let mut names = Vec::new();
        let mut at = id;
        while at != ROOT {
            let node = self.node(at);
            names.push(node.name());
            at = node.parent;
        }
        if names.is_empty() {
            return "/".to_string();
        }
        let mut path = String::new();
        for name in names.iter().rev() {
            path.push('/');
            path.push_str(name);
        }
        path
    }

    /// Every node with its path, parents before children.
    pub fn iter(&self) -> impl Iterator<Item = (String, &Node)> {
        let mut all = Vec::with_capacity(self.len);
        let _ = self.visit_preorder(|path, node| {
            all.push((path.to_string(), node));
            Ok::<(), ()>(())
        });
        all.into_iter()
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
        let Some(start) = self.get(path) else {
            return 0;
        };
        let mut count = 0;
        let mut stack = vec![start];
        while let Some(node) = stack.pop() {
            count += node.num_children();
            stack.extend(self.children(node).filter(|c| c.has_children()));
        }
        count
    }

    /// Adds a node named by `path`'s last segment under `parent` (checked by
    /// the caller: it exists and has no child of that name).
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        &mut self,
        parent: NodeId,
        path: &str,
        data: Option<&[u8]>,
        acl: &[Acl],
        kind: NodeKind,
        zxid: i64,
        time_ms: i64,
        triggers: &mut Vec<Trigger>,
    ) -> Stat {
        let (parent_path, name) = path::split(path).expect("caller validated the path");
        let acl = self.acls.intern(acl);
        let node = Node::new(
            name,
            NodeInit {
                data,
                acl: acl.clone(),
                czxid: zxid,
                mzxid: zxid,
                pzxid: zxid,
                ctime: time_ms,
                mtime: time_ms,
                version: 0,
                aversion: 0,
                child_creates: 0,
                kind,
            },
        );
        let stat = node.stat();
        self.link(parent.0, node);
        let parent = self.node_mut(parent.0);
        parent.child_creates = parent.child_creates.wrapping_add(1);
        parent.pzxid = zxid;
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
        self.data_bytes += (path.len() + data.map_or(0, <[u8]>::len)) as u64;
        let parent_trigger = Trigger::at_parent(
            EventType::NodeChildrenChanged,
            &key,
            parent_path,
            parent_acl,
        );
        triggers.push(Trigger::at(EventType::NodeCreated, key, acl));
        triggers.push(parent_trigger);
        stat
    }

    /// Puts `node` first in `parent`'s child list and in the index.
    fn link(&mut self, parent: u32, mut node: Node) -> u32 {
        let head = self.node(parent).first_child;
        node.parent = parent;
        node.next_sibling = head;
        node.prev_sibling = NIL;
        let id = self.allocate(node);
        self.index_insert(id);
        if head != NIL {
            self.node_mut(head).prev_sibling = id;
        }
        let parent = self.node_mut(parent);
        parent.first_child = id;
        parent.num_children += 1;
        self.len += 1;
        id
    }

    /// Removes a childless node (checked by the caller); returns it.
    pub fn delete(&mut self, path: &str, zxid: i64, triggers: &mut Vec<Trigger>) -> Node {
        let (parent_path, _) = path::split(path).expect("caller validated the path");
        let id = self
            .id_of(path)
            .unwrap_or_else(|| panic!("tree invariant: deleting missing {path}"));
        let (parent, prev, next) = {
            let node = self.node(id);
            assert!(!node.has_children(), "tree invariant: {path} has children");
            (node.parent, node.prev_sibling, node.next_sibling)
        };
        self.index_remove(id);
        if prev != NIL {
            self.node_mut(prev).next_sibling = next;
        }
        if next != NIL {
            self.node_mut(next).prev_sibling = prev;
        }
        let parent_node = self.node_mut(parent);
        if parent_node.first_child == id {
            parent_node.first_child = next;
        }
        parent_node.num_children -= 1;
        if zxid > parent_node.pzxid {
            parent_node.pzxid = zxid;
        }
        let parent_acl = parent_node.acl.clone();
        let node = self.release(id);
        self.len -= 1;
        match node.kind() {
            NodeKind::Container => {
                self.containers.remove(path);
            }
            NodeKind::Ttl(_) => {
                self.ttls.remove(path);
            }
            _ => {}
        }
        self.data_bytes -= (path.len() + node.data_len()) as u64;
        let key: Arc<str> = Arc::from(path);
        let parent_trigger = Trigger::at_parent(
            EventType::NodeChildrenChanged,
            &key,
            parent_path,
            parent_acl,
        );
        triggers.push(Trigger::at(EventType::NodeDeleted, key, node.acl.clone()));
        triggers.push(parent_trigger);
        node
    }

    /// Replaces a node's data and bumps its version (checked by the caller).
    pub fn set_data(
        &mut self,
        path: &str,
        data: Option<&[u8]>,
        version: i32,
        zxid: i64,
        time_ms: i64,
        triggers: &mut Vec<Trigger>,
    ) -> Stat {
        let id = self
            .id_of(path)
            .unwrap_or_else(|| panic!("tree invariant: {path} must exist here"));
        let node = self.node_mut(id);
        let old_len = node.data_len() as u64;
        node.set_data(data);
        node.version = version;
        node.mzxid = zxid;
        node.mtime = time_ms;
        let stat = node.stat();
        let acl = node.acl.clone();
        self.data_bytes = self.data_bytes - old_len + data.map_or(0, <[u8]>::len) as u64;
        triggers.push(Trigger::at(
            EventType::NodeDataChanged,
            Arc::from(path),
            acl,
        ));
        stat
    }

    /// Replaces a node's ACL and sets its aversion (fires no watch, as in ZooKeeper).
    pub fn set_acl(&mut self, path: &str, acl: &[Acl], aversion: i32) -> Stat {
        let acl = self.acls.intern(acl);
        let id = self
            .id_of(path)
            .unwrap_or_else(|| panic!("tree invariant: {path} must exist here"));
        let node = self.node_mut(id);
        node.acl = acl;
        node.aversion = aversion;
        node.stat()
    }
}

/// Builds a tree from nodes given parents first (snapshot loading): no path
/// is parsed and no parent looked up, each node is linked to the id its
/// parent was given.
pub struct TreeBuilder {
    tree: Tree,
    /// Path length by id, for `zk_approximate_data_size`.
    path_lens: Vec<u32>,
}

/// A node added twice under one parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateChild;

impl TreeBuilder {
    pub fn new(root: NodeInit<'_>) -> TreeBuilder {
        TreeBuilder {
            tree: Tree::empty(Node::new("", root)),
            path_lens: vec![1],
        }
    }

    /// Makes room for `nodes` more nodes at once, so loading a large tree
    /// never rehashes the index or regrows the arena.
    pub fn reserve(&mut self, nodes: usize) {
        let tree = &mut self.tree;
        tree.index.reserve(nodes, |e| e.table_hash());
        tree.chunks.reserve(nodes.div_ceil(CHUNK_SLOTS));
        self.path_lens.reserve(nodes);
    }

    /// Adds `name` under `parent` (an id this builder returned).
    pub fn add(
        &mut self,
        parent: NodeId,
        name: &str,
        mut init: NodeInit<'_>,
    ) -> Result<NodeId, DuplicateChild> {
        if self.tree.child_id(parent.0, name).is_some() {
            return Err(DuplicateChild);
        }
        init.acl = self.tree.acls.intern_shared(init.acl);
        let kind = init.kind;
        let node = Node::new(name, init);
        let parent_len = self.path_lens.get(parent.0 as usize).copied().unwrap_or(1);
        let path_len = name.len() as u32
            + if parent == NodeId::ROOT {
                parent_len
            } else {
                parent_len + 1
            };
        self.tree.data_bytes += u64::from(path_len) + node.data_len() as u64;
        let id = self.tree.link(parent.0, node);
        let at = id as usize;
        if self.path_lens.len() <= at {
            self.path_lens.resize(at + 1, 0);
        }
        self.path_lens[at] = path_len;
        match kind {
            NodeKind::Container => {
                self.tree
                    .containers
                    .insert(Arc::from(self.tree.path_of(id)));
            }
            NodeKind::Ttl(_) => {
                self.tree.ttls.insert(Arc::from(self.tree.path_of(id)));
            }
            _ => {}
        }
        Ok(NodeId(id))
    }

    /// The path of a node added so far.
    pub fn path_of(&self, id: NodeId) -> String {
        self.tree.path_of(id.0)
    }

    pub fn finish(self) -> Tree {
        self.tree
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
        assert_eq!(
            tree.child_names(tree.get(path::ZOOKEEPER).unwrap()),
            ["config", "quota"]
        );
        assert_eq!(tree.approximate_data_bytes(), 1 + 10 + 16 + 17);
    }

    fn create(tree: &mut Tree, path: &str, zxid: i64) -> Stat {
        let (parent, _) = path::split(path).unwrap();
        let (parent, _) = tree.get_with_id(parent).unwrap();
        tree.create(
            parent,
            path,
            Some(b"v"),
            &crate::acl::open_acl(),
            NodeKind::Persistent,
            zxid,
            10,
            &mut Vec::new(),
        )
    }

    #[test]
    fn cversion_counts_creates_and_deletes_through_the_formula() {
        let mut tree = Tree::new();
        create(&mut tree, "/p", 1);
        create(&mut tree, "/p/a", 2);
        create(&mut tree, "/p/b", 3);
        tree.delete("/p/a", 4, &mut Vec::new());
        let stat = tree.get("/p").unwrap().stat();
        assert_eq!((stat.cversion, stat.num_children, stat.pzxid), (3, 1, 4));
        assert_eq!(tree.get("/p").unwrap().child_creates, 2);
    }

    #[test]
    fn a_snapshot_clone_keeps_its_state_while_the_tree_changes() {
        let mut tree = Tree::new();
        for i in 0..(CHUNK_SLOTS * 2) {
            create(&mut tree, &format!("/n{i}"), i as i64 + 1);
        }
        let snapshot = tree.clone();
        tree.set_data("/n7", Some(b"changed"), 1, 9999, 11, &mut Vec::new());
        tree.delete("/n8", 10000, &mut Vec::new());
        create(&mut tree, "/n8", 10001);
        assert_eq!(snapshot.get("/n7").unwrap().data_slice(), Some(&b"v"[..]));
        assert_eq!(snapshot.get("/n8").unwrap().czxid, 9);
        assert_eq!(tree.get("/n7").unwrap().data().unwrap(), &b"changed"[..]);
        assert_eq!(tree.get("/n8").unwrap().czxid, 10001);
        assert_eq!(snapshot.len(), tree.len());
    }

    #[test]
    fn null_and_empty_data_differ() {
        let mut tree = Tree::new();
        create(&mut tree, "/a", 1);
        tree.set_data("/a", None, 1, 2, 3, &mut Vec::new());
        assert_eq!(tree.get("/a").unwrap().data(), None);
        tree.set_data("/a", Some(b""), 2, 3, 4, &mut Vec::new());
        assert_eq!(tree.get("/a").unwrap().data(), Some(Bytes::new()));
        assert_eq!(tree.get("/a").unwrap().name(), "a");
    }
}
