//! A shared integer counter (kazoo's Counter): the value is the node's data
//! as decimal text, changed by compare-and-set on the node's version.
//!
//! **Guarantee**: every successful [`Counter::add`] is applied exactly once
//! and returns the value it produced; concurrent adds retry on BadVersion.
//! **Failure behaviour**: if the connection drops during the setData the
//! outcome is unknown and the error is returned, not retried (a blind retry
//! could count twice).

use roost_proto::{CreateMode, ErrorCode};

use crate::{Client, Error, Result};

pub struct Counter {
    client: Client,
    path: String,
}

impl Counter {
    pub fn new(client: &Client, path: &str) -> Counter {
        Counter {
            client: client.clone(),
            path: path.to_string(),
        }
    }

    /// The current value (0 if the node does not exist or is empty).
    pub async fn value(&self) -> Result<i64> {
        match self.client.get_data(&self.path).await {
            Ok((data, _)) => parse(&data),
            Err(Error::Zk(ErrorCode::NoNode)) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Adds `delta` atomically; returns the new value.
    pub async fn add(&self, delta: i64) -> Result<i64> {
        loop {
            let (data, stat) = match self.client.get_data(&self.path).await {
                Ok(found) => found,
                Err(Error::Zk(ErrorCode::NoNode)) => {
                    self.create_parent().await?;
                    match self
                        .client
                        .create(&self.path, b"0", CreateMode::Persistent)
                        .await
                    {
                        Ok(_) | Err(Error::Zk(ErrorCode::NodeExists)) => continue,
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            };
            let next = parse(&data)?
                .checked_add(delta)
                .ok_or_else(|| Error::BadArguments("counter overflow".into()))?;
            match self
                .client
                .set_data(&self.path, next.to_string().as_bytes(), Some(stat.version))
                .await
            {
                Ok(_) => return Ok(next),
                Err(Error::Zk(ErrorCode::BadVersion)) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    async fn create_parent(&self) -> Result<()> {
        let parent = crate::path::parent(&self.path);
        self.client.ensure_path(parent).await
    }
}

fn parse(data: &[u8]) -> Result<i64> {
    let text = std::str::from_utf8(data).unwrap_or("").trim();
    if text.is_empty() {
        return Ok(0);
    }
    text.parse()
        .map_err(|_| Error::BadArguments(format!("counter holds {text:?}, not an integer")))
}
