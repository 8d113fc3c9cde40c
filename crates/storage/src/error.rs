//! Storage errors. A full disk and corruption are told apart from other I/O
//! failures because the server reacts differently: it refuses writes until
//! space returns, and it refuses to start on corruption.

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "{}: corrupt data at offset {offset}: {reason}; refusing to start \
         (restore this server's data from a replica or a backup)",
        path.display()
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("fsync of {} failed: {source}; durability is lost, the server must stop", path.display())]
    SyncFailed { path: PathBuf, source: io::Error },
    #[error("storage invariant broken: {0}")]
    Invariant(String),
}

impl StorageError {
    pub fn io(what: &'static str, path: &Path, source: io::Error) -> Self {
        StorageError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> Self {
        StorageError::Corrupt {
            path: path.to_path_buf(),
            offset,
            reason: reason.into(),
        }
    }

    /// Whether the disk (or quota) is full: writes may succeed again later.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StorageError::Io { source, .. } => crate::fs::is_disk_full(source),
            _ => false,
        }
    }
}
