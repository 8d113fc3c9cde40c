//! `roost import` and `roost export`: moving a tree between Apache
//! ZooKeeper's data directory and Roost's.

use std::path::{Path, PathBuf};

use roost_core::StateConfig;
use roost_storage::zookeeper::{import_data_dir, snapshot_bytes, ZkFormatError};
use roost_storage::{StdFs, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("reading ZooKeeper's data: {0}")]
    Read(#[from] ZkFormatError),
    #[error("writing Roost's data: {0}")]
    Write(#[from] StorageError),
    #[error("reading Roost's data: {0}")]
    ReadRoost(#[from] roost_consensus::ConsensusError),
    #[error("{0}")]
    Io(String),
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
    // A log left by an earlier server would be replayed on top of the import.
    let log_dir = data_dir.join("log");
    let has_log = std::fs::read_dir(&log_dir)
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false);
    if has_log {
        return Err(ImportError::Io(format!(
            "{} already holds a Roost log: import into an empty data directory",
            log_dir.display()
        )));
    }
    let imported = import_data_dir(zk_data_dir, zk_log_dir, StateConfig::default())?;
    // An ensemble member's dataDir holds its myid: the imported data is then
    // that server's, and it founds the ensemble zoo.cfg names (the others
    // start empty and catch up from it). A standalone server is server 1.
    let node_id = match std::fs::read_to_string(data_dir.join("myid")) {
        Ok(text) => text.trim().parse().map_err(|_| {
            ImportError::Io(format!(
                "{}/myid does not hold a server id",
                data_dir.display()
            ))
        })?,
        Err(_) => 1,
    };
    let snapshot_dir = data_dir.join("snapshots");
    let written =
        roost_consensus::write_initial_snapshot(&StdFs, &snapshot_dir, node_id, &imported.state)?;
    Ok(ImportSummary {
        znodes: imported.state.tree().len(),
        sessions: imported.state.sessions().len(),
        last_zxid: imported.state.last_zxid(),
        from_snapshot: imported.snapshot,
        replayed: imported.replayed,
        written,
    })
}

/// What an export produced.
#[derive(Debug)]
pub struct ExportSummary {
    pub znodes: usize,
    pub sessions: usize,
    pub last_zxid: i64,
    pub written: PathBuf,
}

/// Writes the state of a stopped standalone Roost (`data_dir`, and
/// `log_dir` if its dataLogDir is separate) as a snapshot in ZooKeeper's
/// dataDir `zk_data_dir` (`version-2/snapshot.<zxid>`), which Apache
/// ZooKeeper 3.5+ loads. Refuses a folder that already holds a snapshot.
pub fn export_zookeeper(
    data_dir: &Path,
    log_dir: Option<&Path>,
    zk_data_dir: &Path,
) -> Result<ExportSummary, ImportError> {
    let state = roost_consensus::read_standalone_state(
        data_dir.to_path_buf(),
        log_dir.unwrap_or(data_dir).to_path_buf(),
        StateConfig::default(),
    )?;
    let version2 = zk_data_dir.join("version-2");
    let io = |what: &str, e: std::io::Error| {
        ImportError::Io(format!("{what} {}: {e}", version2.display()))
    };
    std::fs::create_dir_all(&version2).map_err(|e| io("creating", e))?;
    let taken = std::fs::read_dir(&version2)
        .map_err(|e| io("listing", e))?
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with("snapshot."));
    if taken {
        return Err(ImportError::Io(format!(
            "{} already holds a snapshot: export into an empty dataDir",
            version2.display()
        )));
    }
    let written = version2.join(format!("snapshot.{:x}", state.last_zxid()));
    let tmp = written.with_extension("tmp");
    let bytes = snapshot_bytes(&state);
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &written)
    };
    write().map_err(|e| io("writing a snapshot in", e))?;
    Ok(ExportSummary {
        znodes: state.tree().len(),
        sessions: state.sessions().len(),
        last_zxid: state.last_zxid(),
        written,
    })
}
