//! `roost-client`: an async (tokio) ZooKeeper client for Roost and Apache
//! ZooKeeper alike, with the recipes of kazoo and Curator.
//!
//! ```no_run
//! # async fn demo() -> Result<(), roost_client::Error> {
//! use roost_client::{Client, CreateMode};
//! let zk = Client::connect("127.0.0.1:2181,127.0.0.1:2182/app").await?;
//! zk.create("/greeting", b"hello", CreateMode::Persistent).await?;
//! let (data, stat) = zk.get_data("/greeting").await?;
//! # Ok(()) }
//! ```
//!
//! - One session per [`Client`], re-established on any server of the
//!   connect string after a connection drops (same session id, password
//!   and lastZxidSeen, watches re-registered with setWatches2, credentials
//!   re-sent). Requests in flight when a connection drops fail with
//!   ConnectionLoss: their outcome is unknown ([`Retry`] helps).
//! - [`SessionState`] transitions are a stream ([`Client::state_changes`]);
//!   Expired, AuthFailed and Closed are final: make a new `Client`.
//! - [`recipes`]: locks, elections, queues, barriers, counters, caches.

pub mod acl;
mod client;
mod connect_string;
mod error;
pub mod path;
pub mod recipes;
mod retry;
mod session;
mod watches;

pub use client::{Client, ClientOptions, Op, OpResult, ReadOp, ReadResult};
pub use connect_string::ConnectString;
pub use error::{Error, Result};
pub use retry::Retry;
pub use roost_proto::{
    perms, Acl, AddWatchMode, ClientInfo, CreateMode, ErrorCode, EventType, Id, KeeperState, Stat,
    WatcherType,
};
pub use session::SessionState;
pub use watches::{Watch, WatchStream, WatchedEvent};
