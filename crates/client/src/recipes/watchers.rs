//! Watching one node's data or children as a stream of states (kazoo's
//! DataWatch and ChildrenWatch): the watch is re-armed after every event, so
//! the stream sees the latest state after each change (intermediate states
//! between two reads may be skipped, as with any ZooKeeper watch).

use std::future::Future;

use tokio::sync::mpsc;

use crate::{Client, Error, ErrorCode, Stat, Watch};

/// The node's data and Stat after each change; `None` while it does not exist.
pub struct DataWatch(mpsc::Receiver<Option<(Vec<u8>, Stat)>>);

impl DataWatch {
    pub fn new(client: &Client, path: &str) -> DataWatch {
        DataWatch(follow(client, path, |client, path| async move {
            let (data, stat, watch) = client.get_data_w(&path).await?;
            Ok((Some((data, stat)), watch))
        }))
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
        ChildrenWatch(follow(client, path, |client, path| async move {
            let (children, _, watch) = client.get_children_w(&path).await?;
            Ok((children, watch))
        }))
    }

    pub async fn next(&mut self) -> Option<Vec<String>> {
        self.0.recv().await
    }
}

/// Reads the node's state with `read` (which leaves a watch) after every
/// change and sends it when it differs from the last one sent; the first
/// state is always sent. While the node does not exist, the state is
/// `T::default()` and an exists watch waits for its creation.
fn follow<T, F, Fut>(client: &Client, path: &str, read: F) -> mpsc::Receiver<T>
where
    T: Clone + Default + PartialEq + Send + 'static,
    F: Fn(Client, String) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(T, Watch), Error>> + Send,
{
    let (tx, rx) = mpsc::channel(16);
    let client = client.clone();
    let path = path.to_string();
    tokio::spawn(async move {
        let mut last: Option<T> = None;
        loop {
            let (state, watch) = match read(client.clone(), path.clone()).await {
                Ok(found) => found,
                Err(Error::Zk(ErrorCode::NoNode)) => match client.exists_w(&path).await {
                    // Created between the two calls: read it again.
                    Ok((Some(_), _)) => continue,
                    Ok((None, watch)) => (T::default(), watch),
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
    rx
}
