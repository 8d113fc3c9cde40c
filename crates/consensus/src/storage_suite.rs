//! openraft's own storage test suite, run against Roost's log store and state
//! machine on real files.

use std::sync::Arc;

use crate::log_store::LogStore;
use crate::state_machine::{MemoryHost, SnapshotPolicy, SnapshotStore, StateMachine};
use crate::types::{StorageError, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};
use roost_core::StateConfig;
use roost_storage::{StdFs, WalOptions};
use tempfile::TempDir;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let options = WalOptions {
            segment_bytes: 64 * 1024,
            ..WalOptions::default()
        };
        // A small cache: the suite's reads also come back from disk.
        let bounds = crate::Bounds {
            log_cache_bytes_max: 4096,
            ..crate::Bounds::default()
        };
        let log = LogStore::open(Arc::new(StdFs), &dir.path().join("log"), options, &bounds)
            .expect("open log");
        let (snapshots, _) = SnapshotStore::open(
            Arc::new(StdFs),
            &dir.path().join("snapshots"),
            StateConfig::default(),
            3,
        )
        .expect("open snapshots");
        let (housekeeping, _) = tokio::sync::mpsc::unbounded_channel();
        let machine = StateMachine::new(
            Arc::new(MemoryHost::new(StateConfig::default())),
            Arc::new(snapshots),
            housekeeping,
            SnapshotPolicy {
                entries: 0,
                bytes: 0,
            },
            (0, 0),
        );
        Ok((dir, log, machine))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("openraft=info")
        .try_init();
    if let Err(e) = Suite::test_all(Builder) {
        panic!("openraft storage suite failed: {e}");
    }
}
