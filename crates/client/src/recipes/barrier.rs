//! Barriers (kazoo's Barrier and DoubleBarrier).
//!
//! [`Barrier`]: while the node exists, [`Barrier::wait`] blocks; removing it
//! lets everyone through. [`DoubleBarrier`]: `n` participants [`enter`] and
//! proceed together once all have entered, then [`leave`] and proceed once
//! all have left. A participant that dies leaves (ephemeral membership).
//!
//! [`enter`]: DoubleBarrier::enter
//! [`leave`]: DoubleBarrier::leave

use std::time::Duration;

use roost_proto::{CreateMode, ErrorCode};

use crate::{path, Client, Error, Result};

pub struct Barrier {
    client: Client,
    path: String,
}

impl Barrier {
    pub fn new(client: &Client, path: &str) -> Barrier {
        Barrier {
            client: client.clone(),
            path: path.to_string(),
        }
    }

    /// Raises the barrier.
    pub async fn create(&self) -> Result<()> {
        self.client.ensure_path(path::parent(&self.path)).await?;
        match self
            .client
            .create(&self.path, b"", CreateMode::Persistent)
            .await
        {
            Ok(_) | Err(Error::Zk(ErrorCode::NodeExists)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Lowers the barrier.
    pub async fn remove(&self) -> Result<()> {
        match self.client.delete(&self.path, None).await {
            Ok(()) | Err(Error::Zk(ErrorCode::NoNode)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Waits until the barrier is down; `false` if `limit` passed first.
    pub async fn wait(&self, limit: Duration) -> Result<bool> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let (stat, watch) = self.client.exists_w(&self.path).await?;
            if stat.is_none() {
                return Ok(true);
            }
            if tokio::time::timeout_at(deadline, watch.wait())
                .await
                .is_err()
            {
                return Ok(false);
            }
        }
    }
}

pub struct DoubleBarrier {
    client: Client,
    path: String,
    participants: usize,
    node: String,
}

const READY: &str = "ready";

impl DoubleBarrier {
    pub fn new(client: &Client, path: &str, participants: usize) -> DoubleBarrier {
        DoubleBarrier {
            client: client.clone(),
            path: path.to_string(),
            participants: participants.max(1),
            node: super::lock::unique_hex(),
        }
    }

    /// Joins and waits until `participants` have joined.
    pub async fn enter(&self) -> Result<()> {
        self.client.ensure_path(&self.path).await?;
        self.client
            .create(
                &path::join(&self.path, &self.node),
                b"",
                CreateMode::Ephemeral,
            )
            .await?;
        loop {
            let (children, _, watch) = self.client.get_children_w(&self.path).await?;
            if children.iter().any(|c| c == READY) {
                return Ok(());
            }
            if children.len() >= self.participants {
                match self
                    .client
                    .create(&path::join(&self.path, READY), b"", CreateMode::Persistent)
                    .await
                {
                    Ok(_) | Err(Error::Zk(ErrorCode::NodeExists)) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            watch.wait().await?;
        }
    }

    /// Leaves and waits until every participant has left.
    pub async fn leave(&self) -> Result<()> {
        match self
            .client
            .delete(&path::join(&self.path, &self.node), None)
            .await
        {
            Ok(()) | Err(Error::Zk(ErrorCode::NoNode)) => {}
            Err(e) => return Err(e),
        }
        loop {
            let (children, _, watch) = self.client.get_children_w(&self.path).await?;
            if children.iter().all(|c| c == READY) {
                match self
                    .client
                    .delete(&path::join(&self.path, READY), None)
                    .await
                {
                    Ok(()) | Err(Error::Zk(ErrorCode::NoNode)) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            watch.wait().await?;
        }
    }
}
