//! A local copy of a subtree (Curator's TreeCache), kept current by one
//! persistent recursive watch, and reloaded after every reconnection (events
//! that happen while disconnected are not replayed for persistent watches).
//!
//! **Guarantee**: eventually consistent with the server; after
//! [`TreeCache::synced`] returns, the cache reflects at least every change
//! made before it was called.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use roost_proto::{AddWatchMode, ErrorCode, EventType};
use tokio::sync::watch;

use crate::{path, Client, Error, Result, SessionState, Stat};

type Nodes = BTreeMap<String, (Vec<u8>, Stat)>;

pub struct TreeCache {
    client: Client,
    root: String,
    nodes: Arc<Mutex<Nodes>>,
    /// Bumped after every applied change (for waiters).
    version: watch::Receiver<u64>,
}

impl TreeCache {
    /// Loads the subtree at `root` and keeps it current in the background.
    pub async fn start(client: &Client, root: &str) -> Result<TreeCache> {
        let nodes = Arc::new(Mutex::new(Nodes::new()));
        let (bump, version) = watch::channel(0u64);
        let mut events = client
            .add_watch(root, AddWatchMode::PersistentRecursive)
            .await?;
        load(client, root, &nodes).await?;
        let task_client = client.clone();
        let task_nodes = nodes.clone();
        let task_root = root.to_string();
        let mut states = client.state_changes();
        tokio::spawn(async move {
            let mut count = 0u64;
            loop {
                tokio::select! {
                    event = events.next() => {
                        let Some(event) = event else { return };
                        if event.event_type == EventType::None {
                            return;
                        }
                        let outcome = match event.event_type {
                            EventType::NodeDeleted => {
                                remove_subtree(&task_nodes, &event.path);
                                Ok(())
                            }
                            _ => refresh(&task_client, &event.path, &task_nodes).await,
                        };
                        if outcome.is_err() {
                            continue;
                        }
                    }
                    state = states.recv() => match state {
                        Ok(SessionState::Connected) => {
                            let _ = load(&task_client, &task_root, &task_nodes).await;
                        }
                        Ok(s) if s.is_terminal() => return,
                        Ok(_) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => return,
                    },
                }
                count += 1;
                bump.send_replace(count);
            }
        });
        Ok(TreeCache {
            client: client.clone(),
            root: root.to_string(),
            nodes,
            version,
        })
    }

    /// The cached data and Stat of `path`.
    pub fn get(&self, path: &str) -> Option<(Vec<u8>, Stat)> {
        self.nodes.lock().ok()?.get(path).cloned()
    }

    /// The cached children of `path`, sorted.
    pub fn children(&self, path: &str) -> Vec<String> {
        let Ok(nodes) = self.nodes.lock() else {
            return Vec::new();
        };
        nodes
            .keys()
            .filter(|p| p.as_str() != path && path::parent(p) == path)
            .map(|p| path::name(p).to_string())
            .collect()
    }

    /// Every cached path.
    pub fn paths(&self) -> Vec<String> {
        self.nodes
            .lock()
            .map(|n| n.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Waits until the cache has applied every change the server had made
    /// when this was called (a sync, then a read of the root's stat, then
    /// waiting until the cache has seen that state).
    pub async fn synced(&self) -> Result<()> {
        self.client.sync(&self.root).await?;
        let mut version = self.version.clone();
        loop {
            let want = self.snapshot_matches().await?;
            if want {
                return Ok(());
            }
            if version.changed().await.is_err() {
                return Err(Error::Closed);
            }
        }
    }

    async fn snapshot_matches(&self) -> Result<bool> {
        let fresh = Nodes::new();
        let fresh = Arc::new(Mutex::new(fresh));
        load(&self.client, &self.root, &fresh).await?;
        let fresh = fresh.lock().map(|n| n.clone()).unwrap_or_default();
        let cached = self.nodes.lock().map(|n| n.clone()).unwrap_or_default();
        Ok(fresh
            .iter()
            .all(|(p, (_, stat))| cached.get(p).is_some_and(|(_, s)| s.mzxid >= stat.mzxid)))
    }
}

async fn load(client: &Client, root: &str, nodes: &Mutex<Nodes>) -> Result<()> {
    let mut found = Nodes::new();
    let mut queue = vec![root.to_string()];
    while let Some(p) = queue.pop() {
        match client.get_data(&p).await {
            Ok(entry) => {
                found.insert(p.clone(), entry);
            }
            Err(Error::Zk(ErrorCode::NoNode)) => continue,
            Err(e) => return Err(e),
        }
        match client.get_children(&p).await {
            Ok(children) => queue.extend(children.iter().map(|c| path::join(&p, c))),
            Err(Error::Zk(ErrorCode::NoNode)) => {}
            Err(e) => return Err(e),
        }
    }
    if let Ok(mut nodes) = nodes.lock() {
        *nodes = found;
    }
    Ok(())
}

async fn refresh(client: &Client, p: &str, nodes: &Mutex<Nodes>) -> Result<()> {
    match client.get_data(p).await {
        Ok(entry) => {
            if let Ok(mut nodes) = nodes.lock() {
                nodes.insert(p.to_string(), entry);
            }
            Ok(())
        }
        Err(Error::Zk(ErrorCode::NoNode)) => {
            remove_subtree(nodes, p);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn remove_subtree(nodes: &Mutex<Nodes>, p: &str) {
    if let Ok(mut nodes) = nodes.lock() {
        let below = format!("{p}/");
        nodes.retain(|k, _| k != p && !k.starts_with(&below));
    }
}
