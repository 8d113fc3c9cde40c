//! Exclusive and shared/exclusive locks, node-compatible with kazoo.
//!
//! Each contender creates an ephemeral sequential node under the lock path,
//! named `<32 hex>__lock__<seq>` (writers, exclusive) or
//! `<32 hex>__rlock__<seq>` (readers), exactly as kazoo's Lock, WriteLock
//! and ReadLock do, so kazoo processes and Roost processes contend for the
//! same lock correctly. A contender holds the lock when no node that
//! excludes it has a lower sequence number: for exclusive locks and
//! writers, any lock node; for readers, only writers' nodes. So readers
//! share, writers are alone, and readers wait only for earlier writers.
//! Waiting is on the next lower excluding node only (no herd effect).
//!
//! **Failure behaviour.** The lock is held as long as the session is: if the
//! session expires (see [`Client::state_changes`]) the node is gone and
//! another contender may acquire the lock, so work that must not overlap
//! should check the fencing token ([`Lock::fencing_token`], the czxid of the
//! lock node, which only grows) at the resource it protects. A connection
//! loss during the create is recovered by finding the node by its unique
//! prefix, so no orphan node blocks the lock.

use std::time::Duration;

use roost_proto::{CreateMode, ErrorCode};

use crate::{acl, path, Client, Error, Result};

/// Which kind of contender a [`Lock`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// kazoo's Lock (and Curator-compatible with `extra_patterns`).
    Exclusive,
    /// kazoo's ReadLock: shared with other readers.
    Read,
    /// kazoo's WriteLock: exclusive against readers and writers.
    Write,
}

impl LockKind {
    fn marker(self) -> &'static str {
        match self {
            LockKind::Exclusive | LockKind::Write => "__lock__",
            LockKind::Read => "__rlock__",
        }
    }

    /// The markers of the nodes that block this kind.
    fn blocked_by(self) -> &'static [&'static str] {
        match self {
            LockKind::Exclusive | LockKind::Read => &["__lock__"],
            LockKind::Write => &["__lock__", "__rlock__"],
        }
    }
}

/// A lock on one path. Not re-entrant; one acquisition at a time.
pub struct Lock {
    client: Client,
    path: String,
    kind: LockKind,
    identifier: Vec<u8>,
    /// Other name patterns that count as contenders (e.g. Curator's "-lock-").
    extra_patterns: Vec<String>,
    prefix: String,
    /// The node name while held or waiting.
    node: Option<String>,
    fencing_token: Option<i64>,
}

impl Lock {
    /// An exclusive lock (kazoo `Lock`). `identifier` is stored in the node
    /// so [`Lock::contenders`] can show who holds and waits.
    pub fn new(client: &Client, path: &str, identifier: &str) -> Lock {
        Lock::with_kind(client, path, identifier, LockKind::Exclusive)
    }

    /// The shared side of a read/write lock (kazoo `ReadLock`).
    pub fn read(client: &Client, path: &str, identifier: &str) -> Lock {
        Lock::with_kind(client, path, identifier, LockKind::Read)
    }

    /// The exclusive side of a read/write lock (kazoo `WriteLock`).
    pub fn write(client: &Client, path: &str, identifier: &str) -> Lock {
        Lock::with_kind(client, path, identifier, LockKind::Write)
    }

    pub fn with_kind(client: &Client, path: &str, identifier: &str, kind: LockKind) -> Lock {
        Lock {
            client: client.clone(),
            path: path.to_string(),
            kind,
            identifier: identifier.as_bytes().to_vec(),
            extra_patterns: Vec::new(),
            prefix: format!("{}{}", unique_hex(), kind.marker()),
            node: None,
            fencing_token: None,
        }
    }

    /// Also treat nodes whose name has `pattern` before the sequence number as
    /// contenders (kazoo's `extra_lock_patterns`, e.g. "-lock-" for Curator).
    pub fn with_extra_pattern(mut self, pattern: &str) -> Lock {
        self.extra_patterns.push(pattern.to_string());
        self
    }

    pub fn is_acquired(&self) -> bool {
        self.fencing_token.is_some()
    }

    /// The lock node's czxid while held: larger for every later holder, so a
    /// resource can refuse a holder whose token is older than one it saw.
    pub fn fencing_token(&self) -> Option<i64> {
        self.fencing_token
    }

    /// Waits until the lock is held; returns the fencing token.
    pub async fn acquire(&mut self) -> Result<i64> {
        match self.acquire_inner(None).await? {
            Some(token) => Ok(token),
            None => Err(Error::Zk(ErrorCode::OperationTimeout)),
        }
    }

    /// Like [`Lock::acquire`], giving up after `limit` (`Ok(None)`; the
    /// contender node is removed).
    pub async fn acquire_timeout(&mut self, limit: Duration) -> Result<Option<i64>> {
        self.acquire_inner(Some(tokio::time::Instant::now() + limit))
            .await
    }

    async fn acquire_inner(
        &mut self,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Option<i64>> {
        if let Some(token) = self.fencing_token {
            return Ok(Some(token));
        }
        let outcome = self.contend(deadline).await;
        match outcome {
            Ok(Some(token)) => {
                self.fencing_token = Some(token);
                Ok(Some(token))
            }
            other => {
                // Timed out or failed: leave no node behind to block others.
                let _ = self.remove_node().await;
                other
            }
        }
    }

    async fn contend(&mut self, deadline: Option<tokio::time::Instant>) -> Result<Option<i64>> {
        let (node, czxid) = self.create_node().await?;
        loop {
            let children = self.client.get_children(&self.path).await?;
            if !children.contains(&node) {
                // Our node is gone (the session was replaced?): start over.
                return Err(Error::Zk(ErrorCode::NoNode));
            }
            let Some(predecessor) = self.predecessor(&node, &children) else {
                return Ok(Some(czxid));
            };
            let (stat, watch) = self
                .client
                .exists_w(&path::join(&self.path, &predecessor))
                .await?;
            if stat.is_none() {
                continue;
            }
            match deadline {
                None => {
                    watch.wait().await?;
                }
                Some(deadline) => {
                    if tokio::time::timeout_at(deadline, watch.wait())
                        .await
                        .is_err()
                    {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Creates this contender's node; after a connection loss, finds it by
    /// its unique prefix instead of creating a second one.
    async fn create_node(&mut self) -> Result<(String, i64)> {
        self.client.ensure_path(&self.path).await?;
        let create_path = path::join(&self.path, &self.prefix);
        loop {
            match self
                .client
                .create_with(
                    &create_path,
                    &self.identifier,
                    &acl::open(),
                    CreateMode::EphemeralSequential,
                    None,
                )
                .await
            {
                Ok((created, stat)) => {
                    let name = path::name(&created).to_string();
                    self.node = Some(name.clone());
                    return Ok((name, stat.czxid));
                }
                Err(e) if e.is_retryable() => {
                    self.client.wait_connected().await?;
                    if let Some((name, czxid)) = self.find_own_node().await? {
                        self.node = Some(name.clone());
                        return Ok((name, czxid));
                    }
                }
                Err(Error::Zk(ErrorCode::NoNode)) => self.client.ensure_path(&self.path).await?,
                Err(e) => return Err(e),
            }
        }
    }

    async fn find_own_node(&self) -> Result<Option<(String, i64)>> {
        for child in self.client.get_children(&self.path).await? {
            if child.starts_with(&self.prefix) {
                if let Some(stat) = self.client.exists(&path::join(&self.path, &child)).await? {
                    return Ok(Some((child, stat.czxid)));
                }
            }
        }
        Ok(None)
    }

    /// The closest lower-sequence node that excludes `node`, if any.
    fn predecessor(&self, node: &str, children: &[String]) -> Option<String> {
        let own = path::sequence(node)?;
        children
            .iter()
            .filter_map(|c| {
                let seq = self.contender_sequence(c, self.kind.blocked_by())?;
                (seq < own).then_some((seq, c))
            })
            .max_by_key(|(seq, _)| *seq)
            .map(|(_, c)| c.clone())
    }

    /// The sequence number of `name` if it is a contender node of one of `markers`.
    fn contender_sequence(&self, name: &str, markers: &[&str]) -> Option<i64> {
        let seq = path::sequence(name)?;
        let stem = &name[..name.len() - 10];
        let matches = markers.iter().any(|m| stem.ends_with(m))
            || self
                .extra_patterns
                .iter()
                .any(|p| stem.ends_with(p.as_str()));
        matches.then_some(seq)
    }

    /// Releases the lock (or abandons waiting). Safe to call when not held.
    pub async fn release(&mut self) -> Result<()> {
        self.fencing_token = None;
        self.remove_node().await
    }

    async fn remove_node(&mut self) -> Result<()> {
        let Some(node) = self.node.take() else {
            return Ok(());
        };
        let node_path = path::join(&self.path, &node);
        let retry = crate::Retry::default();
        match retry.run(|| self.client.delete(&node_path, None)).await {
            Ok(()) | Err(Error::Zk(ErrorCode::NoNode)) => Ok(()),
            // The session is over: its ephemeral node is gone with it.
            Err(Error::Zk(ErrorCode::SessionExpired)) | Err(Error::Closed) => Ok(()),
            Err(e) => {
                self.node = Some(node);
                Err(e)
            }
        }
    }

    /// The identifiers of all contenders in lock order (holders first).
    pub async fn contenders(&self) -> Result<Vec<String>> {
        let children = match self.client.get_children(&self.path).await {
            Ok(children) => children,
            Err(Error::Zk(ErrorCode::NoNode)) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut nodes: Vec<(i64, String)> = children
            .into_iter()
            .filter_map(|c| Some((self.contender_sequence(&c, &["__lock__", "__rlock__"])?, c)))
            .collect();
        nodes.sort();
        let mut identifiers = Vec::new();
        for (_, node) in nodes {
            match self.client.get_data(&path::join(&self.path, &node)).await {
                Ok((data, _)) => identifiers.push(String::from_utf8_lossy(&data).into_owned()),
                Err(Error::Zk(ErrorCode::NoNode)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(identifiers)
    }
}

impl Drop for Lock {
    /// A lock dropped while held or waiting (e.g. its future was cancelled)
    /// removes its node in the background, so it cannot block others for
    /// the rest of the session.
    fn drop(&mut self) {
        let Some(node) = self.node.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let client = self.client.clone();
        let node_path = path::join(&self.path, &node);
        runtime.spawn(async move {
            let _ = crate::Retry::default()
                .run(|| client.delete(&node_path, None))
                .await;
        });
    }
}

/// 32 random hex digits, like kazoo's `uuid4().hex`.
pub(crate) fn unique_hex() -> String {
    format!("{:032x}", rand::random::<u128>())
}
