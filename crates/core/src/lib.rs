//! `roost-core`: Roost's pure, deterministic ZooKeeper state machine.
//!
//! Entries and time go in; replies, watch triggers and state come out. No I/O,
//! no clock, no randomness, no async: the server decides ids, passwords and
//! timestamps and passes them in, so every replica applying the same entries
//! reaches the same state and the same replies.
//!
//! - [`State`]: tree + sessions + zxid; [`State::apply`] for log entries,
//!   [`State::read`] for reads;
//! - [`Entry`]/[`Txn`]: what the log holds;
//! - [`WatchTable`]: one server's watches (not replicated);
//! - [`acl`], [`path`]: ZooKeeper's ACL and path rules.

// Items are crate-private unless the crate root re-exports them.
#![warn(unreachable_pub)]

pub mod acl;
mod entry;
pub mod path;
pub mod quorum;
mod state;
mod tree;
mod watch;

pub use entry::{
    entry_bytes_max, identities_within_bounds, origin_server, Entry, Txn, IDENTITIES_MAX,
    IDENTITY_BYTES_MAX, ORIGIN_SERVER_SHIFT,
};
pub use state::{Applied, Caller, Session, State, StateConfig, TTL_MS_MAX};
pub use tree::{
    DuplicateChild, NameSet, Node, NodeId, NodeInit, NodeKind, Tree, TreeBuilder, Trigger,
    CHUNK_SLOTS,
};
pub use watch::{WatchKind, WatchTable, WatcherId};
