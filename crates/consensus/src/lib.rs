//! `roost-consensus`: replication for Roost, and the only crate that names
//! openraft.
//!
//! openraft 0.9 (0.9.25; features `serde`, `storage-v2`,
//! `generic-snapshot-data`, and `loosen-follower-log-revert` so that a member
//! rebuilt from an empty disk can rejoin, see [`join`]) was chosen as
//! docs/architecture.md requires: a maintained Raft with pluggable storage. Its log store and state machine are
//! adapters over `roost-storage` ([`log_store`]) and `roost-core`
//! ([`state_machine`]); [`node`] runs a replica and its proposal pump. The
//! rest of the server sees a narrow API: a channel to propose entries, a read
//! barrier, leadership and health ([`Consensus`], [`Handle`]), the state
//! machine host it implements ([`StateMachineHost`]), and the byte
//! [`Bounds`] of the write path. Everything else is private to the crate.

// Items are crate-private unless the crate root re-exports them.
#![warn(unreachable_pub)]
// openraft's trait methods return its large `StorageError`; our helpers
// return the same type rather than converting at every call.
#![allow(clippy::result_large_err)]

mod bounds;
mod join;
mod log_store;
mod membership;
mod network;
mod node;
mod peer;
mod state_machine;
#[cfg(test)]
mod storage_suite;
mod types;

pub use bounds::Bounds;
pub use membership::{MembershipTarget, Refusal};
pub use node::{
    read_standalone_state, Consensus, ConsensusConfig, ConsensusError, Handle, Leadership, Member,
};
pub use state_machine::{write_initial_snapshot, AppliedMark, StateMachineHost};
pub use types::Batch;
