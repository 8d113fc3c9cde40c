//! Distributed queues (kazoo's Queue and LockingQueue; same node layout).
//!
//! [`Queue`]: items are persistent sequential `entry-` nodes; a consumer owns
//! an item once its delete succeeds, so each item is handed out once; an item
//! taken by a consumer that then crashes is lost.
//!
//! [`LockingQueue`]: take → process → consume. Items live in `PATH/entries`
//! (`entry-<priority:03>-<seq>`); taking one creates the ephemeral
//! `PATH/taken/<entry>` (kazoo's layout), so only one consumer holds it and a
//! consumer that dies gives it back when its session ends. Consuming deletes
//! the entry and the claim in one `multi` that first checks the claim still
//! exists, together with the consumer's own result ops: an item's result is
//! committed at most once, and an item is never left behind.

use std::time::Duration;

use roost_proto::{CreateMode, ErrorCode};
use tokio::time::Instant;

use crate::{path, Client, Error, Op, Result};

pub struct Queue {
    client: Client,
    path: String,
}

impl Queue {
    pub fn new(client: &Client, path: &str) -> Queue {
        Queue {
            client: client.clone(),
            path: path.to_string(),
        }
    }

    pub async fn put(&self, data: &[u8]) -> Result<String> {
        self.client.ensure_path(&self.path).await?;
        self.client
            .create(
                &path::join(&self.path, "entry-"),
                data,
                CreateMode::PersistentSequential,
            )
            .await
    }

    /// Removes and returns the oldest item, if any.
    pub async fn get(&self) -> Result<Option<Vec<u8>>> {
        Ok(self.get_inner(false).await?.0)
    }

    /// Waits (up to `limit`) for an item and removes it.
    pub async fn take(&self, limit: Duration) -> Result<Option<Vec<u8>>> {
        let deadline = Instant::now() + limit;
        loop {
            let (item, watch) = self.get_inner(true).await?;
            if item.is_some() {
                return Ok(item);
            }
            let Some(watch) = watch else { continue };
            if tokio::time::timeout_at(deadline, watch.wait())
                .await
                .is_err()
            {
                return Ok(None);
            }
        }
    }

    async fn get_inner(&self, watch: bool) -> Result<(Option<Vec<u8>>, Option<crate::Watch>)> {
        self.client.ensure_path(&self.path).await?;
        let (mut children, watch) = if watch {
            let (children, _, w) = self.client.get_children_w(&self.path).await?;
            (children, Some(w))
        } else {
            (self.client.get_children(&self.path).await?, None)
        };
        children.sort_by_key(|c| path::sequence(c));
        for child in children {
            let child_path = path::join(&self.path, &child);
            let (data, stat) = match self.client.get_data(&child_path).await {
                Ok(found) => found,
                Err(Error::Zk(ErrorCode::NoNode)) => continue,
                Err(e) => return Err(e),
            };
            match self.client.delete(&child_path, Some(stat.version)).await {
                Ok(()) => return Ok((Some(data), None)),
                Err(Error::Zk(ErrorCode::NoNode)) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok((None, watch))
    }

    pub async fn len(&self) -> Result<usize> {
        match self.client.get_children(&self.path).await {
            Ok(children) => Ok(children.len()),
            Err(Error::Zk(ErrorCode::NoNode)) => Ok(0),
            Err(e) => Err(e),
        }
    }
}

/// An item held by a [`LockingQueue`] consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// The entry's name (unique for the queue's lifetime).
    pub name: String,
    pub data: Vec<u8>,
}

pub struct LockingQueue {
    client: Client,
    entries: String,
    taken: String,
    identifier: Vec<u8>,
    holding: Option<String>,
}

impl LockingQueue {
    pub fn new(client: &Client, path: &str, identifier: &str) -> LockingQueue {
        LockingQueue {
            client: client.clone(),
            entries: path::join(path, "entries"),
            taken: path::join(path, "taken"),
            identifier: identifier.as_bytes().to_vec(),
            holding: None,
        }
    }

    async fn ensure(&self) -> Result<()> {
        self.client.ensure_path(&self.entries).await?;
        self.client.ensure_path(&self.taken).await
    }

    /// Adds an item; lower `priority` values are taken first (0-999).
    pub async fn put(&self, data: &[u8], priority: u16) -> Result<String> {
        self.ensure().await?;
        let prefix = format!("entry-{:03}-", priority.min(999));
        let created = self
            .client
            .create(
                &path::join(&self.entries, &prefix),
                data,
                CreateMode::PersistentSequential,
            )
            .await?;
        Ok(path::name(&created).to_string())
    }

    /// Adds many items in one transaction.
    pub async fn put_all(&self, items: &[Vec<u8>], priority: u16) -> Result<()> {
        self.ensure().await?;
        let prefix = path::join(&self.entries, &format!("entry-{:03}-", priority.min(999)));
        let ops = items
            .iter()
            .map(|data| {
                Op::create(
                    prefix.clone(),
                    data.clone(),
                    CreateMode::PersistentSequential,
                )
            })
            .collect();
        self.client.multi(ops).await.map(|_| ())
    }

    /// Claims the first unclaimed item, waiting up to `limit` for one.
    /// One item at a time: consume or release it before taking another.
    pub async fn take(&mut self, limit: Duration) -> Result<Option<Taken>> {
        if self.holding.is_some() {
            return Err(Error::BadArguments(
                "consume or release the held item first".into(),
            ));
        }
        self.ensure().await?;
        let deadline = Instant::now() + limit;
        loop {
            let (mut entries, _, entries_changed) =
                self.client.get_children_w(&self.entries).await?;
            let (claimed, _, claims_changed) = self.client.get_children_w(&self.taken).await?;
            entries.sort();
            for entry in entries.iter().filter(|e| !claimed.contains(e)) {
                if let Some(taken) = self.claim(entry).await? {
                    return Ok(Some(taken));
                }
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Ok(None);
            }
            // Wake on a new entry or a released claim (a consumer died).
            tokio::select! {
                _ = entries_changed.wait() => {}
                _ = claims_changed.wait() => {}
                _ = tokio::time::sleep(remaining) => return Ok(None),
            }
        }
    }

    async fn claim(&mut self, entry: &str) -> Result<Option<Taken>> {
        let claim = path::join(&self.taken, entry);
        match self
            .client
            .create(&claim, &self.identifier, CreateMode::Ephemeral)
            .await
        {
            Ok(_) => {}
            Err(Error::Zk(ErrorCode::NodeExists)) => return Ok(None),
            Err(e) => return Err(e),
        }
        match self
            .client
            .get_data(&path::join(&self.entries, entry))
            .await
        {
            Ok((data, _)) => {
                self.holding = Some(entry.to_string());
                Ok(Some(Taken {
                    name: entry.to_string(),
                    data,
                }))
            }
            Err(Error::Zk(ErrorCode::NoNode)) => {
                // Consumed between our listing and our claim.
                let _ = self.client.delete(&claim, None).await;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Removes the held item for good.
    pub async fn consume(&mut self) -> Result<()> {
        self.consume_with(Vec::new()).await
    }

    /// Removes the held item and applies `results` in the same transaction,
    /// which fails (Error::Multi on op 0, NoNode) if this consumer no longer
    /// holds the item; then neither the removal nor `results` happen.
    pub async fn consume_with(&mut self, results: Vec<Op>) -> Result<()> {
        let Some(entry) = self.holding.clone() else {
            return Err(Error::BadArguments("no item held".into()));
        };
        let claim = path::join(&self.taken, &entry);
        let entry_path = path::join(&self.entries, &entry);
        let mut ops = vec![
            Op::check(claim.clone(), 0),
            Op::delete(entry_path.clone(), None),
            Op::delete(claim.clone(), None),
        ];
        ops.extend(results);
        loop {
            match self.client.multi(ops.clone()).await {
                Err(e) if e.is_retryable() => {
                    // The outcome is unknown: find out on the same session.
                    self.client.wait_connected().await?;
                    let claimed = self.client.exists(&claim).await?.is_some();
                    let queued = self.client.exists(&entry_path).await?.is_some();
                    match (claimed, queued) {
                        // Still ours and still queued: it did not happen.
                        (true, true) => continue,
                        // Only the claim holder removes both: it happened.
                        (false, false) => {
                            self.holding = None;
                            return Ok(());
                        }
                        _ => {
                            self.holding = None;
                            return Err(Error::Zk(ErrorCode::NoNode));
                        }
                    }
                }
                outcome => {
                    self.holding = None;
                    return outcome.map(|_| ());
                }
            }
        }
    }

    /// Gives the held item back to the queue.
    pub async fn release(&mut self) -> Result<()> {
        if let Some(entry) = self.holding.take() {
            match self
                .client
                .delete(&path::join(&self.taken, &entry), None)
                .await
            {
                Ok(()) | Err(Error::Zk(ErrorCode::NoNode)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Items not yet consumed (claimed or not).
    pub async fn len(&self) -> Result<usize> {
        match self.client.get_children(&self.entries).await {
            Ok(children) => Ok(children.len()),
            Err(Error::Zk(ErrorCode::NoNode)) => Ok(0),
            Err(e) => Err(e),
        }
    }
}
