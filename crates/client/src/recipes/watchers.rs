//! Watching one node's data or children as a stream of states (kazoo's
//! DataWatch and ChildrenWatch): the watch is re-armed after every event, so
//! the stream sees the latest state after each change (intermediate states
//! between two reads may be skipped, as with any ZooKeeper watch).

use tokio::sync::mpsc;

use crate::{Client, Error, ErrorCode, Stat};

/// The node's data and Stat after each change; `None` while it does not exist.
pub struct DataWatch(mpsc::Receiver<Option<(Vec<u8>, Stat)>>);

impl DataWatch {
    pub fn new(client: &Client, path: &str) -> DataWatch {
        let (tx, rx) = mpsc::channel(16);
        let client = client.clone();
        let path = path.to_string();
        tokio::spawn(async move {
            // The first state is always sent, even if it is "absent".
            let mut last: Option<Option<(Vec<u8>, Stat)>> = None;
            loop {
                let (state, watch) = match client.get_data_w(&path).await {
                    Ok((data, stat, watch)) => (Some((data, stat)), watch),
                    Err(Error::Zk(ErrorCode::NoNode)) => match client.exists_w(&path).await {
                        // Created between the two calls: read it again.
                        Ok((Some(_), _)) => continue,
                        Ok((None, watch)) => (None, watch),
                        Err(e) if e.is_retryable() => continue,
                        Err(_) => return,
                    },
                    Err(e) if e.is_retryable() => {
                        if client.wait_connected().await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Err(_) => return,
                };
                if last.as_ref() != Some(&state) {
                    last = Some(state.clone());
                    if tx.send(state).await.is_err() {
                        return;
                    }
                }
                if watch.wait().await.is_err() {
                    return;
                }
            }
        });
        DataWatch(rx)
    }

    /// The next state; `None` when the session ended or the client closed.
    pub async fn next(&mut self) -> Option<Option<(Vec<u8>, Stat)>> {
        self.0.recv().await
    }
}

/// The sorted child list after each change; empty while the node does not exist.
pub struct ChildrenWatch(mpsc::Receiver<Vec<String>>);

impl ChildrenWatch {
    pub fn new(client: &Client, path: &str) -> ChildrenWatch {
        let (tx, rx) = mpsc::channel(16);
        let client = client.clone();
        let path = path.to_string();
        tokio::spawn(async move {
            let mut last = None;
            loop {
                let (children, watch) = match client.get_children_w(&path).await {
                    Ok((children, _, watch)) => (children, watch),
                    Err(Error::Zk(ErrorCode::NoNode)) => match client.exists_w(&path).await {
                        Ok((Some(_), _)) => continue,
                        Ok((None, watch)) => (Vec::new(), watch),
                        Err(e) if e.is_retryable() => continue,
                        Err(_) => return,
                    },
                    Err(e) if e.is_retryable() => {
                        if client.wait_connected().await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Err(_) => return,
                };
                if last.as_ref() != Some(&children) {
                    last = Some(children.clone());
                    if tx.send(children).await.is_err() {
                        return;
                    }
                }
                if watch.wait().await.is_err() {
                    return;
                }
            }
        });
        ChildrenWatch(rx)
    }

    pub async fn next(&mut self) -> Option<Vec<String>> {
        self.0.recv().await
    }
}
