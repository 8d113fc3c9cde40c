//! `roost-consensus`: replication for Roost, and the only crate that names
//! openraft.
//!
//! openraft 0.9 (0.9.25; features `serde`, `storage-v2`,
//! `generic-snapshot-data`) was chosen as docs/architecture.md requires: a
//! maintained Raft with pluggable storage. Its log store and state machine are
//! adapters over `roost-storage` ([`log_store`]) and `roost-core`
//! ([`state_machine`]); [`node`] runs a replica and its proposal pump. The
//! rest of the server sees a narrow API: a channel to propose entries, a read
//! barrier, leadership and health.

// openraft's trait methods return its large `StorageError`; our helpers
// return the same type rather than converting at every call.
#![allow(clippy::result_large_err)]

pub mod bounds;
pub mod log_store;
pub mod network;
pub mod node;
pub mod peer;
pub mod state_machine;
pub mod types;

pub use bounds::Bounds;
pub use node::{Consensus, ConsensusConfig, ConsensusError, Handle, Leadership, Member};
pub use state_machine::{AppliedMark, MemoryHost, StateMachineHost};
pub use types::Batch;
