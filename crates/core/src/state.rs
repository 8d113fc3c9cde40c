//! The replicated state machine: tree + sessions + last zxid, changed only by
//! [`State::apply`], read by [`State::read`].
//!
//! `apply` is deterministic: its result depends only on the state and the
//! entry (time comes in the entry, identities too), never on a clock, random
//! numbers or map iteration order. Every entry consumes exactly one zxid,
//! failed writes included, so every replica numbers transactions alike.
//! Validation follows ZooKeeper's `PrepRequestProcessor` order, so the same
//! bad request yields the same error code.

use std::sync::Arc;

use bytes::Bytes;
use imbl::OrdMap;
use roost_proto::{
    perms, Acl, AddWatchMode, CheckVersionRequest, CreateMode, CreateRequest, DeleteRequest,
    ErrorCode, EventType, Id, MultiOp, MultiResult, OpCode, ReconfigRequest, Request, Response,
    SetAclRequest, SetDataRequest, SetWatches2, Stat, WatcherType,
};

use crate::acl;
use crate::entry::{origin_server, Entry, Txn};
use crate::path;
use crate::quorum::QuorumConfig;
use crate::tree::{NameSet, Node, NodeKind, Tree, Trigger};
use crate::watch::{WatchKind, WatchTable, WatcherId};

/// The largest TTL ZooKeeper accepts: 40 bits of milliseconds (~34 years).
pub const TTL_MS_MAX: i64 = (1 << 40) - 1;

/// Settings that change what `apply` does; every replica must use the same.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateConfig {
    /// `zookeeper.extendedTypesEnabled`: allow TTL nodes.
    pub extended_types: bool,
    /// `reconfigEnabled`.
    pub reconfig_enabled: bool,
    /// The ensemble's membership in ZooKeeper's dynamic-config format
    /// (`server.N=host:peer:election:participant` lines, then `version=0`),
    /// shown in `/zookeeper/config`; empty when standalone. Derived from
    /// zoo.cfg on every start, like ZooKeeper, not from the log.
    pub membership: Bytes,
}

/// A live session in the replicated table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub timeout_ms: i32,
    pub password: Bytes,
    /// Paths of the ephemeral nodes this session owns.
    pub ephemerals: NameSet,
    /// The server the session is attached through (0: not known, e.g. read
    /// from an older snapshot; the next write through any server is accepted).
    pub owner: u64,
}

/// What applying one entry did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The zxid this entry consumed.
    pub zxid: i64,
    /// The reply to the client that sent it (error code or body).
    pub result: Result<Response, ErrorCode>,
    /// Changes that may fire watches, in order.
    pub triggers: Vec<Trigger>,
}

/// The caller of a read: its session, identities and watcher (connection).
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub session_id: i64,
    pub identities: &'a [Id],
    pub watcher: WatcherId,
}

/// The whole replicated state.
#[derive(Debug, Clone)]
pub struct State {
    tree: Tree,
    sessions: OrdMap<i64, Session>,
    last_zxid: i64,
    config: StateConfig,
}

/// The effect of one write operation, before it is shaped into a reply.
enum OpOutcome {
    Created(String, Stat),
    Deleted,
    DataSet(Stat),
    AclSet(Stat),
    Checked,
}

impl State {
    pub fn new(config: StateConfig) -> Self {
        Self::from_parts(Tree::new(), OrdMap::new(), 0, config)
    }

    /// Rebuilds a state from its parts (snapshot loading).
    pub fn from_parts(
        tree: Tree,
        sessions: OrdMap<i64, Session>,
        last_zxid: i64,
        config: StateConfig,
    ) -> Self {
        let mut state = State {
            tree,
            sessions,
            last_zxid,
            config,
        };
        state.publish_membership();
        state
    }

    /// Writes the membership into `/zookeeper/config` as ZooKeeper does at
    /// start-up: version -1, mzxid 0 (static config), no watch fired. Once a
    /// `reconfig` has changed it (mzxid > 0), the node is the membership and
    /// zoo.cfg's server lines no longer count.
    fn publish_membership(&mut self) {
        let reconfigured = self.tree.get(path::CONFIG).is_some_and(|n| n.mzxid > 0);
        if self.config.membership.is_empty() || reconfigured {
            return;
        }
        let data = Some(&self.config.membership[..]);
        self.tree
            .set_data(path::CONFIG, data, -1, 0, 0, &mut Vec::new());
    }

    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    pub fn sessions(&self) -> &OrdMap<i64, Session> {
        &self.sessions
    }

    pub fn session(&self, id: i64) -> Option<&Session> {
        self.sessions.get(&id)
    }

    /// The zxid of the last applied entry.
    pub fn last_zxid(&self) -> i64 {
        self.last_zxid
    }

    pub fn config(&self) -> &StateConfig {
        &self.config
    }

    /// The membership `/zookeeper/config` holds (`None` when standalone).
    pub fn quorum_config(&self) -> Option<QuorumConfig> {
        if self.config.membership.is_empty() {
            return None;
        }
        let data = self.tree.get(path::CONFIG)?.data()?;
        QuorumConfig::parse(std::str::from_utf8(&data).ok()?)
    }

    /// The membership a `reconfig` from `identities` would make, with every
    /// check of ZooKeeper's but the quorum's (the leader's, before the
    /// request is logged), in ZooKeeper's order. The version is the current one.
    pub fn reconfigured(
        &self,
        request: &ReconfigRequest,
        identities: &[Id],
    ) -> Result<QuorumConfig, ErrorCode> {
        if !self.config.reconfig_enabled {
            return Err(ErrorCode::ReconfigDisabled);
        }
        // A standalone server cannot be reconfigured, as in ZooKeeper.
        let current = self.quorum_config().ok_or(ErrorCode::Unimplemented)?;
        let next = current.reconfigured(request)?;
        let node = self
            .tree
            .get(path::CONFIG)
            .ok_or(ErrorCode::Unimplemented)?;
        acl::check(&node.acl, perms::WRITE, identities)?;
        Ok(next)
    }

    /// Applies one committed entry.
    pub fn apply(&mut self, entry: &Entry) -> Applied {
        self.last_zxid += 1;
        let zxid = self.last_zxid;
        let mut triggers = Vec::new();
        let result = match &entry.txn {
            Txn::CreateSession {
                timeout_ms,
                password,
            } => {
                self.sessions
                    .entry(entry.session_id)
                    .or_insert_with(|| Session {
                        timeout_ms: *timeout_ms,
                        password: password.clone(),
                        ephemerals: NameSet::default(),
                        owner: origin_server(entry.origin),
                    });
                Ok(Response::Empty)
            }
            Txn::MoveSession => match self.sessions.get_mut(&entry.session_id) {
                Some(session) => {
                    session.owner = origin_server(entry.origin);
                    Ok(Response::Empty)
                }
                None => Err(ErrorCode::SessionExpired),
            },
            Txn::CloseSession => self.check_owner(entry).map(|()| {
                self.close_session(entry.session_id, zxid, &mut triggers);
                Response::Empty
            }),
            Txn::Fail(code) => Err(*code),
            Txn::DeleteContainer(p) => self
                .delete_container(p, entry.time_ms, zxid, &mut triggers)
                .map(|_| Response::Empty),
            Txn::Request(request) => {
                if self.sessions.contains_key(&entry.session_id) {
                    self.check_owner(entry)
                        .and_then(|()| self.apply_request(entry, request, zxid, &mut triggers))
                } else {
                    Err(ErrorCode::SessionExpired)
                }
            }
        };
        if result.is_err() {
            triggers.clear();
        }
        Applied {
            zxid,
            result,
            triggers,
        }
    }

    /// SessionMoved for a client's entry that came through a server its
    /// session has since left. Server-made entries (origin 0) always pass.
    fn check_owner(&self, entry: &Entry) -> Result<(), ErrorCode> {
        let from = origin_server(entry.origin);
        match self.sessions.get(&entry.session_id) {
            Some(session) if from != 0 && session.owner != 0 && session.owner != from => {
                Err(ErrorCode::SessionMoved)
            }
            _ => Ok(()),
        }
    }

    fn apply_request(
        &mut self,
        entry: &Entry,
        request: &Request,
        zxid: i64,
        triggers: &mut Vec<Trigger>,
    ) -> Result<Response, ErrorCode> {
        match request {
            Request::Create { opcode, request } => {
                match self.create(entry, *opcode, request, zxid, triggers)? {
                    OpOutcome::Created(p, _) if *opcode == OpCode::Create => {
                        Ok(Response::Create(p))
                    }
                    OpOutcome::Created(p, stat) => Ok(Response::Create2(p, stat)),
                    _ => unreachable!("create yields Created"),
                }
            }
            Request::Delete(r) => self
                .delete(entry, r, zxid, triggers)
                .map(|_| Response::Empty),
            Request::SetData(r) => match self.set_data(entry, r, zxid, triggers)? {
                OpOutcome::DataSet(stat) => Ok(Response::Stat(stat)),
                _ => unreachable!("setData yields DataSet"),
            },
            Request::SetAcl(r) => match self.set_acl(entry, r)? {
                OpOutcome::AclSet(stat) => Ok(Response::Stat(stat)),
                _ => unreachable!("setACL yields AclSet"),
            },
            Request::Multi(Ok(ops)) => self.multi(entry, ops, zxid, triggers),
            Request::Multi(Err(_)) => Err(ErrorCode::MarshallingError),
            Request::Reconfig(r) => {
                let next = QuorumConfig {
                    version: zxid,
                    ..self.reconfigured(r, &entry.identities)?
                };
                let text = Bytes::from(next.render());
                let stat = self.tree.set_data(
                    path::CONFIG,
                    Some(&text),
                    -1,
                    zxid,
                    entry.time_ms,
                    triggers,
                );
                Ok(Response::GetData(Some(text), stat))
            }
            // ZooKeeper 3.9 refuses a lone check before it becomes a transaction.
            Request::Check(_) => Err(ErrorCode::Unimplemented),
            _ => Err(ErrorCode::MarshallingError),
        }
    }

    /// All-or-nothing: ops run in order on the live state, journaled; if one
    /// fails, the journal undoes the others (sessions are restored from an
    /// O(1) clone) and the reply lists OK before the failure, its code, then
    /// RuntimeInconsistency.
    fn multi(
        &mut self,
        entry: &Entry,
        ops: &[MultiOp],
        zxid: i64,
        triggers: &mut Vec<Trigger>,
    ) -> Result<Response, ErrorCode> {
        if ops.iter().any(MultiOp::is_read) {
            // Read ops under the write opcode: ZooKeeper fails while shaping the reply.
            return Err(ErrorCode::MarshallingError);
        }
        let sessions_before = self.sessions.clone();
        self.tree.begin();
        let mut results = Vec::with_capacity(ops.len());
        for (index, op) in ops.iter().enumerate() {
            let outcome = match op {
                MultiOp::Create { opcode, request } => {
                    self.create(entry, *opcode, request, zxid, triggers)
                }
                MultiOp::Delete(r) => self.delete(entry, r, zxid, triggers),
                MultiOp::SetData(r) => self.set_data(entry, r, zxid, triggers),
                MultiOp::Check(r) => self.check_version(entry, r),
                MultiOp::GetData(_) | MultiOp::GetChildren(_) => unreachable!("rejected above"),
            };
            match outcome {
                Ok(OpOutcome::Created(p, stat)) => results.push(match op.opcode() {
                    OpCode::Create => MultiResult::Create(p),
                    _ => MultiResult::Create2(p, stat),
                }),
                Ok(OpOutcome::Deleted) => results.push(MultiResult::Delete),
                Ok(OpOutcome::DataSet(stat)) => results.push(MultiResult::SetData(stat)),
                Ok(OpOutcome::AclSet(_)) => unreachable!("setACL is not a multi op"),
                Ok(OpOutcome::Checked) => results.push(MultiResult::Check),
                Err(code) => {
                    self.tree.rollback();
                    self.sessions = sessions_before;
                    triggers.clear();
                    let failed = (0..ops.len())
                        .map(|i| {
                            MultiResult::Error(match i.cmp(&index) {
                                std::cmp::Ordering::Less => ErrorCode::Ok,
                                std::cmp::Ordering::Equal => code,
                                std::cmp::Ordering::Greater => ErrorCode::RuntimeInconsistency,
                            })
                        })
                        .collect();
                    return Ok(Response::Multi(failed));
                }
            }
        }
        self.tree.commit();
        Ok(Response::Multi(results))
    }

    fn create(
        &mut self,
        entry: &Entry,
        opcode: OpCode,
        request: &CreateRequest,
        zxid: i64,
        triggers: &mut Vec<Trigger>,
    ) -> Result<OpOutcome, ErrorCode> {
        let mode = CreateMode::from_code(request.flags).ok_or(ErrorCode::BadArguments)?;
        if mode.is_ttl() && !self.config.extended_types {
            return Err(ErrorCode::Unimplemented);
        }
        let ttl = if opcode == OpCode::CreateTtl {
            request.ttl
        } else {
            -1
        };
        let ttl_ok = if mode.is_ttl() {
            ttl > 0 && ttl <= TTL_MS_MAX
        } else {
            ttl < 0
        };
        if !ttl_ok {
            return Err(ErrorCode::BadArguments);
        }
        let requested = request.path.as_str();
        let Some((parent_path, _)) = path::split(requested) else {
            return Err(ErrorCode::BadArguments);
        };
        if requested.contains('\0') {
            return Err(ErrorCode::BadArguments);
        }
        let acl = acl::fixup(&request.acl, &entry.identities)?;
        let (parent_id, parent) = self
            .tree
            .get_with_id(parent_path)
            .ok_or(ErrorCode::NoNode)?;
        acl::check(&parent.acl, perms::CREATE, &entry.identities)?;
        let created_path = if mode.is_sequential() {
            format!("{requested}{:010}", parent.child_creates)
        } else {
            requested.to_string()
        };
        if !path::is_valid(&created_path) {
            return Err(ErrorCode::BadArguments);
        }
        let (_, name) = path::split(&created_path).ok_or(ErrorCode::BadArguments)?;
        // An empty name is the root itself ("/"), which exists.
        if name.is_empty() || self.tree.has_child(parent_id, name) {
            return Err(ErrorCode::NodeExists);
        }
        if matches!(parent.kind(), NodeKind::Ephemeral(_)) {
            return Err(ErrorCode::NoChildrenForEphemerals);
        }
        let kind = match opcode {
            OpCode::CreateContainer => NodeKind::Container,
            OpCode::CreateTtl => NodeKind::Ttl(ttl),
            _ if mode.is_ephemeral() => NodeKind::Ephemeral(entry.session_id),
            _ => NodeKind::Persistent,
        };
        let stat = self.tree.create(
            parent_id,
            &created_path,
            request.data.as_deref(),
            &acl,
            kind,
            zxid,
            entry.time_ms,
            triggers,
        );
        if let NodeKind::Ephemeral(owner) = kind {
            if let Some(session) = self.sessions.get_mut(&owner) {
                session.ephemerals.insert(Arc::from(created_path.as_str()));
            }
        }
        Ok(OpOutcome::Created(created_path, stat))
    }

    fn delete(
        &mut self,
        entry: &Entry,
        request: &DeleteRequest,
        zxid: i64,
        triggers: &mut Vec<Trigger>,
    ) -> Result<OpOutcome, ErrorCode> {
        let p = request.path.as_str();
        let parent_path = match path::split(p) {
            Some((parent, _)) if !p.contains('\0') && !path::is_special(p) => parent,
            _ => return Err(ErrorCode::BadArguments),
        };
        let parent = self.tree.get(parent_path).ok_or(ErrorCode::NoNode)?;
        acl::check(&parent.acl, perms::DELETE, &entry.identities)?;
        let node = self.tree.get(p).ok_or(ErrorCode::NoNode)?;
        check_version(node.version, request.version)?;
        if node.has_children() {
            return Err(ErrorCode::NotEmpty);
        }
        self.remove_node(p, zxid, triggers);
        Ok(OpOutcome::Deleted)
    }

    /// Deletes a childless node and forgets it in its owner's ephemerals.
    fn remove_node(&mut self, p: &str, zxid: i64, triggers: &mut Vec<Trigger>) {
        let node = self.tree.delete(p, zxid, triggers);
        if let NodeKind::Ephemeral(owner) = node.kind() {
            if let Some(session) = self.sessions.get_mut(&owner) {
                session.ephemerals.remove(p);
            }
        }
    }

    fn set_data(
        &mut self,
        entry: &Entry,
        request: &SetDataRequest,
        zxid: i64,
        triggers: &mut Vec<Trigger>,
    ) -> Result<OpOutcome, ErrorCode> {
        let p = request.path.as_str();
        if !path::is_valid(p) {
            return Err(ErrorCode::BadArguments);
        }
        let node = self.tree.get(p).ok_or(ErrorCode::NoNode)?;
        acl::check(&node.acl, perms::WRITE, &entry.identities)?;
        let version = check_version(node.version, request.version)?;
        let stat = self.tree.set_data(
            p,
            request.data.as_deref(),
            version,
            zxid,
            entry.time_ms,
            triggers,
        );
        Ok(OpOutcome::DataSet(stat))
    }

    fn set_acl(&mut self, entry: &Entry, request: &SetAclRequest) -> Result<OpOutcome, ErrorCode> {
        let p = request.path.as_str();
        if !path::is_valid(p) {
            return Err(ErrorCode::BadArguments);
        }
        let acl = acl::fixup(&request.acl, &entry.identities)?;
        let node = self.tree.get(p).ok_or(ErrorCode::NoNode)?;
        acl::check(&node.acl, perms::ADMIN, &entry.identities)?;
        let aversion = check_version(node.aversion, request.version)?;
        Ok(OpOutcome::AclSet(self.tree.set_acl(p, &acl, aversion)))
    }

    fn check_version(
        &self,
        entry: &Entry,
        request: &CheckVersionRequest,
    ) -> Result<OpOutcome, ErrorCode> {
        let p = request.path.as_str();
        if !path::is_valid(p) {
            return Err(ErrorCode::BadArguments);
        }
        let node = self.tree.get(p).ok_or(ErrorCode::NoNode)?;
        acl::check(&node.acl, perms::READ, &entry.identities)?;
        check_version(node.version, request.version)?;
        Ok(OpOutcome::Checked)
    }

    fn close_session(&mut self, session_id: i64, zxid: i64, triggers: &mut Vec<Trigger>) {
        let Some(session) = self.sessions.remove(&session_id) else {
            return;
        };
        for p in session.ephemerals.iter() {
            if self.tree.contains(p) {
                self.tree.delete(p, zxid, triggers);
            }
        }
    }

    fn delete_container(
        &mut self,
        p: &str,
        now_ms: i64,
        zxid: i64,
        triggers: &mut Vec<Trigger>,
    ) -> Result<(), ErrorCode> {
        let node = self.tree.get(p).ok_or(ErrorCode::NoNode)?;
        if node.has_children() {
            return Err(ErrorCode::NotEmpty);
        }
        if !is_reapable(node, now_ms) {
            return Err(ErrorCode::BadVersion);
        }
        self.remove_node(p, zxid, triggers);
        Ok(())
    }

    /// Containers and TTL nodes the reaper should delete at `now_ms`, at most `limit`.
    pub fn reap_candidates(&self, now_ms: i64, limit: usize) -> Vec<String> {
        self.tree
            .containers()
            .chain(self.tree.ttls())
            .filter(|p| self.tree.get(p).is_some_and(|n| is_reapable(n, now_ms)))
            .take(limit)
            .map(|p| p.to_string())
            .collect()
    }

    /// Answers a read. Watches it sets are registered in `watches` before it
    /// returns, so no later write can slip between the read and its watch.
    pub fn read(
        &self,
        request: &Request,
        caller: Caller<'_>,
        watches: &mut WatchTable,
    ) -> Result<Response, ErrorCode> {
        let ids = caller.identities;
        match request {
            Request::Exists(r) => {
                if r.path.contains('\0') {
                    return Err(ErrorCode::BadArguments);
                }
                let node = self.tree.get(&r.path);
                if let Some(node) = node {
                    acl::check(&node.acl, perms::READ, ids)?;
                }
                if r.watch {
                    watches.add_one_shot(caller.watcher, &r.path, WatchKind::Data);
                }
                node.map(|n| Response::Stat(n.stat()))
                    .ok_or(ErrorCode::NoNode)
            }
            Request::GetData(r) => {
                let node = self.readable(&r.path, perms::READ, ids)?;
                if r.watch {
                    watches.add_one_shot(caller.watcher, &r.path, WatchKind::Data);
                }
                Ok(Response::GetData(node.data(), node.stat()))
            }
            Request::GetChildren(r) | Request::GetChildren2(r) => {
                let node = self.readable(&r.path, perms::READ, ids)?;
                if r.watch {
                    watches.add_one_shot(caller.watcher, &r.path, WatchKind::Child);
                }
                let children = self.tree.child_names(node);
                Ok(match request {
                    Request::GetChildren(_) => Response::Children(children),
                    _ => Response::Children2(children, node.stat()),
                })
            }
            Request::GetAcl(r) => {
                let node = self.readable(&r.path, perms::READ | perms::ADMIN, ids)?;
                let acl = if acl::is_allowed(&node.acl, perms::ADMIN, ids) {
                    node.acl.to_vec()
                } else {
                    node.acl.iter().map(mask_digest).collect()
                };
                Ok(Response::GetAcl(acl, node.stat()))
            }
            Request::GetAllChildrenNumber(r) => {
                self.readable(&r.path, perms::READ, ids)?;
                let count = self.tree.descendant_count(&r.path);
                Ok(Response::AllChildrenNumber(
                    i32::try_from(count).unwrap_or(i32::MAX),
                ))
            }
            Request::GetEphemerals(r) => {
                let prefix = r.path.trim();
                let all = prefix.is_empty() || prefix == "/";
                let list = self
                    .sessions
                    .get(&caller.session_id)
                    .map(|s| {
                        s.ephemerals
                            .iter()
                            .filter(|p| all || p.starts_with(r.path.as_str()))
                            .map(|p| p.to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(Response::Ephemerals(list))
            }
            Request::MultiRead(Ok(ops)) => {
                let mut results = Vec::with_capacity(ops.len());
                for op in ops {
                    let result = match op {
                        MultiOp::GetData(r) => self
                            .readable(&r.path, perms::READ, ids)
                            .map(|n| MultiResult::GetData(n.data(), n.stat())),
                        MultiOp::GetChildren(r) => self
                            .readable(&r.path, perms::READ, ids)
                            .map(|n| MultiResult::GetChildren(self.tree.child_names(n))),
                        _ => return Err(ErrorCode::MarshallingError),
                    };
                    results.push(result.unwrap_or_else(MultiResult::Error));
                }
                Ok(Response::Multi(results))
            }
            Request::MultiRead(Err(_)) => Err(ErrorCode::MarshallingError),
            Request::CheckWatches(r) => {
                let watch_type =
                    WatcherType::from_code(r.watch_type).ok_or(ErrorCode::MarshallingError)?;
                if watches.contains(caller.watcher, &r.path, watch_type) {
                    Ok(Response::Empty)
                } else {
                    Err(ErrorCode::NoWatcher)
                }
            }
            Request::RemoveWatches(r) => {
                let watch_type =
                    WatcherType::from_code(r.watch_type).ok_or(ErrorCode::MarshallingError)?;
                if watches.remove(caller.watcher, &r.path, watch_type) {
                    Ok(Response::Empty)
                } else {
                    Err(ErrorCode::NoWatcher)
                }
            }
            Request::AddWatch(r) => {
                let mode = AddWatchMode::from_code(r.mode).ok_or(ErrorCode::MarshallingError)?;
                watches.add_persistent(
                    caller.watcher,
                    &r.path,
                    mode == AddWatchMode::PersistentRecursive,
                );
                Ok(Response::AddWatch)
            }
            Request::Sync(r) => Ok(Response::Sync(r.path.clone())),
            _ => Err(ErrorCode::MarshallingError),
        }
    }

    /// The node at `path` if it exists and `ids` hold one of `perm`'s bits.
    fn readable(&self, p: &str, perm: i32, ids: &[Id]) -> Result<&Node, ErrorCode> {
        let node = self.tree.get(p).ok_or(ErrorCode::NoNode)?;
        acl::check(&node.acl, perm, ids)?;
        Ok(node)
    }

    /// setWatches/setWatches2 after a reconnect: events for what changed since
    /// `relative_zxid` (fired at once, in ZooKeeper's order) and re-armed
    /// watches for the rest. Persistent watches are re-armed without catch-up.
    pub fn set_watches(
        &self,
        request: &SetWatches2,
        watcher: WatcherId,
        watches: &mut WatchTable,
    ) -> Vec<(EventType, String)> {
        let mut fired = Vec::new();
        let since = request.relative_zxid;
        for p in &request.data_watches {
            match self.tree.get(p) {
                None => fired.push((EventType::NodeDeleted, p.clone())),
                Some(n) if n.mzxid > since => fired.push((EventType::NodeDataChanged, p.clone())),
                Some(_) => watches.add_one_shot(watcher, p, WatchKind::Data),
            }
        }
        for p in &request.exist_watches {
            if self.tree.contains(p) {
                fired.push((EventType::NodeCreated, p.clone()));
            } else {
                watches.add_one_shot(watcher, p, WatchKind::Data);
            }
        }
        for p in &request.child_watches {
            match self.tree.get(p) {
                None => fired.push((EventType::NodeDeleted, p.clone())),
                Some(n) if n.pzxid > since => {
                    fired.push((EventType::NodeChildrenChanged, p.clone()))
                }
                Some(_) => watches.add_one_shot(watcher, p, WatchKind::Child),
            }
        }
        for p in &request.persistent_watches {
            watches.add_persistent(watcher, p, false);
        }
        for p in &request.persistent_recursive_watches {
            watches.add_persistent(watcher, p, true);
        }
        fired
    }
}

/// ZooKeeper's `checkAndIncVersion`: -1 matches any version; the next version
/// skips -1 when it wraps around.
fn check_version(current: i32, expected: i32) -> Result<i32, ErrorCode> {
    if expected != -1 && expected != current {
        return Err(ErrorCode::BadVersion);
    }
    Ok(match current.wrapping_add(1) {
        -1 => 0,
        next => next,
    })
}

/// getACL without ADMIN shows digest ids as `user:x`.
fn mask_digest(a: &Acl) -> Acl {
    if a.id.scheme != "digest" {
        return a.clone();
    }
    let user = a.id.id.split(':').next().unwrap_or_default();
    Acl::new(a.perms, "digest", format!("{user}:x"))
}

/// An empty container that once had children, or an empty TTL node unmodified
/// for longer than its TTL.
fn is_reapable(node: &Node, now_ms: i64) -> bool {
    if node.has_children() {
        return false;
    }
    match node.kind() {
        NodeKind::Container => node.child_creates > 0,
        NodeKind::Ttl(ttl_ms) => ttl_ms != 0 && now_ms.saturating_sub(node.mtime) > ttl_ms,
        _ => false,
    }
}
