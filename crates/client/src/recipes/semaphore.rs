//! A counting semaphore: at most `max_leases` holders at a time.
//!
//! Each contender creates an ephemeral sequential `lease-` node; the
//! `max_leases` lowest hold a lease, the others wait (in order) for the
//! child list to change. **Failure behaviour**: a lease ends with its
//! session, so a crashed holder frees its lease after the session timeout.

use roost_proto::{CreateMode, ErrorCode};

use crate::{path, Client, Error, Result};

pub struct Semaphore {
    client: Client,
    path: String,
    max_leases: usize,
    identifier: Vec<u8>,
    node: Option<String>,
}

impl Semaphore {
    pub fn new(client: &Client, path: &str, identifier: &str, max_leases: usize) -> Semaphore {
        Semaphore {
            client: client.clone(),
            path: path.to_string(),
            max_leases: max_leases.max(1),
            identifier: identifier.as_bytes().to_vec(),
            node: None,
        }
    }

    /// Waits for a lease.
    pub async fn acquire(&mut self) -> Result<()> {
        if self.node.is_some() {
            return Ok(());
        }
        self.client.ensure_path(&self.path).await?;
        let created = self
            .client
            .create(
                &path::join(&self.path, "lease-"),
                &self.identifier,
                CreateMode::EphemeralSequential,
            )
            .await?;
        let name = path::name(&created).to_string();
        self.node = Some(name.clone());
        loop {
            let (mut children, _, watch) = self.client.get_children_w(&self.path).await?;
            children.retain(|c| c.starts_with("lease-"));
            children.sort_by_key(|c| path::sequence(c));
            match children.iter().position(|c| *c == name) {
                Some(rank) if rank < self.max_leases => return Ok(()),
                Some(_) => {
                    watch.wait().await?;
                }
                None => {
                    self.node = None;
                    return Err(Error::Zk(ErrorCode::NoNode));
                }
            }
        }
    }

    pub async fn release(&mut self) -> Result<()> {
        if let Some(node) = self.node.take() {
            match self
                .client
                .delete(&path::join(&self.path, &node), None)
                .await
            {
                Ok(()) | Err(Error::Zk(ErrorCode::NoNode)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Identifiers of the current lease holders and waiters, in order.
    pub async fn lease_holders(&self) -> Result<Vec<String>> {
        let mut children = self.client.get_children(&self.path).await?;
        children.sort_by_key(|c| path::sequence(c));
        let mut out = Vec::new();
        for child in children.iter().take(self.max_leases) {
            if let Ok((data, _)) = self.client.get_data(&path::join(&self.path, child)).await {
                out.push(String::from_utf8_lossy(&data).into_owned());
            }
        }
        Ok(out)
    }
}
