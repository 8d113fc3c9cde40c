//! `roost-storage`: everything Roost keeps on disk.
//!
//! - [`wal`]: the segmented write-ahead log (preallocated segments, crc32c
//!   records, torn-tail recovery, suffix truncation, prefix purge);
//! - [`snapshot`]: whole-state snapshot files, exact at one log position;
//! - [`meta`]: small atomically replaced files (the vote, the purge point);
//! - [`fs`]: the file-system trait all of it goes through, with a
//!   fault-injecting implementation for tests.

// Items are crate-private unless the crate root re-exports them.
#![warn(unreachable_pub)]

mod error;
mod fs;
pub mod meta;
pub mod snapshot;
mod wal;
pub mod zookeeper;

pub use error::StorageError;
pub use fs::{Faults, FaultyFs, FileSystem, StdFs, StorageFile};
pub use wal::{preallocate_spare, Record, UnsyncedSegment, Wal, WalOptions};
