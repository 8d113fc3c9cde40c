//! kazoo's Lock and roost-client's Lock on the same path: never two holders.
//!
//! Every holder, of either kind, creates a marker file exclusively (O_EXCL)
//! while it holds the lock and removes it before releasing; a second holder
//! would find the marker and fail. Needs Python with kazoo (scripts/test.sh
//! installs it).

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use roost_client::recipes::Lock;

const KAZOO_CONTENDERS: &str = r#"
import os, sys, threading, time
from kazoo.client import KazooClient
hosts, path, marker, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
failures = []
def contend(i):
    zk = KazooClient(hosts=hosts)
    zk.start(timeout=15)
    lock = zk.Lock(path, "kazoo-%d" % i)
    for _ in range(rounds):
        with lock:
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                failures.append("kazoo-%d found another holder" % i)
                return
            time.sleep(0.005)
            os.close(fd)
            os.unlink(marker)
    zk.stop()
threads = [threading.Thread(target=contend, args=(i,)) for i in range(3)]
for t in threads: t.start()
for t in threads: t.join()
if failures:
    print("\n".join(failures))
    sys.exit(1)
print("kazoo done")
"#;

fn kazoo_available() -> bool {
    Command::new("python3")
        .args(["-c", "import kazoo"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn kazoo_and_roost_client_locks_exclude_each_other() {
    if !kazoo_available() {
        eprintln!("skipped: python3 with kazoo is not installed (pip install kazoo)");
        return;
    }
    on_each_server(|addr| async move {
        let dir = tempfile::tempdir()?;
        let marker = dir.path().join("holder");
        let path = root("mixed-lock");
        let rounds = 15;
        let mut kazoo = tokio::process::Command::new("python3")
            .args(["-c", KAZOO_CONTENDERS, &addr, &path])
            .arg(&marker)
            .arg(rounds.to_string())
            .stdout(Stdio::piped())
            .spawn()?;
        let acquisitions = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..3 {
            let (addr, path, marker, acquisitions) = (
                addr.clone(),
                path.clone(),
                marker.clone(),
                acquisitions.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let zk = connect(&addr).await;
                let mut lock = Lock::new(&zk, &path, &format!("roost-{i}"));
                for _ in 0..rounds {
                    lock.acquire().await?;
                    let held = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&marker);
                    anyhow::ensure!(held.is_ok(), "roost-{i} found another holder");
                    acquisitions.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    std::fs::remove_file(&marker)?;
                    lock.release().await?;
                }
                zk.close().await;
                Ok(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        let status = tokio::time::timeout(Duration::from_secs(120), kazoo.wait()).await??;
        assert!(status.success(), "kazoo contenders failed");
        assert_eq!(acquisitions.load(Ordering::SeqCst), 3 * rounds);
        let zk = connect(&addr).await;
        zk.delete_all(&path).await?;
        Ok(())
    });
}
