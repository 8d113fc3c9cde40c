//! `roost import`: a Roost data directory made from Apache ZooKeeper's.

use std::path::{Path, PathBuf};

use roost_core::StateConfig;
use roost_storage::zookeeper::{import_data_dir, ZkFormatError};
use roost_storage::{StdFs, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("reading ZooKeeper's data: {0}")]
    Read(#[from] ZkFormatError),
    #[error("writing Roost's data: {0}")]
    Write(#[from] StorageError),
}

/// What an import produced.
#[derive(Debug)]
pub struct ImportSummary {
    pub znodes: usize,
    pub sessions: usize,
    pub last_zxid: i64,
    pub from_snapshot: PathBuf,
    pub replayed: usize,
    pub written: PathBuf,
}

/// Reads ZooKeeper's `zk_data_dir` (and `zk_log_dir`, its dataLogDir if
/// separate) and writes the same tree, sessions and zxid as the first
/// snapshot of a standalone Roost whose dataDir is `data_dir`.
pub fn import_zookeeper(
    zk_data_dir: &Path,
    zk_log_dir: Option<&Path>,
    data_dir: &Path,
) -> Result<ImportSummary, ImportError> {
    let imported = import_data_dir(zk_data_dir, zk_log_dir, StateConfig::default())?;
    // Where a standalone server (myid 1) keeps its snapshots.
    let snapshot_dir = data_dir.join("snapshots");
    let written =
        roost_consensus::write_initial_snapshot(&StdFs, &snapshot_dir, 1, &imported.state)?;
    Ok(ImportSummary {
        znodes: imported.state.tree().len(),
        sessions: imported.state.sessions().len(),
        last_zxid: imported.state.last_zxid(),
        from_snapshot: imported.snapshot,
        replayed: imported.replayed,
        written,
    })
}
