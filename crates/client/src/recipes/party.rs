//! Group membership (kazoo's Party): each member is an ephemeral node, so a
//! member whose session ends leaves the party by itself.

use roost_proto::{CreateMode, ErrorCode};

use crate::{path, Client, Error, Result};

pub struct Party {
    client: Client,
    path: String,
    identifier: Vec<u8>,
    node: String,
    joined: bool,
}

impl Party {
    pub fn new(client: &Client, path: &str, identifier: &str) -> Party {
        Party {
            client: client.clone(),
            path: path.to_string(),
            identifier: identifier.as_bytes().to_vec(),
            node: super::lock::unique_hex(),
            joined: false,
        }
    }

    pub async fn join(&mut self) -> Result<()> {
        self.client.ensure_path(&self.path).await?;
        match self
            .client
            .create(
                &path::join(&self.path, &self.node),
                &self.identifier,
                CreateMode::Ephemeral,
            )
            .await
        {
            Ok(_) | Err(Error::Zk(ErrorCode::NodeExists)) => {
                self.joined = true;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    pub async fn leave(&mut self) -> Result<()> {
        self.joined = false;
        match self
            .client
            .delete(&path::join(&self.path, &self.node), None)
            .await
        {
            Ok(()) | Err(Error::Zk(ErrorCode::NoNode)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The identifiers of the current members.
    pub async fn members(&self) -> Result<Vec<String>> {
        let children = match self.client.get_children(&self.path).await {
            Ok(children) => children,
            Err(Error::Zk(ErrorCode::NoNode)) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut members = Vec::new();
        for child in children {
            match self.client.get_data(&path::join(&self.path, &child)).await {
                Ok((data, _)) => members.push(String::from_utf8_lossy(&data).into_owned()),
                Err(Error::Zk(ErrorCode::NoNode)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(members)
    }
}
