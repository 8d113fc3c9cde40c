//! What the three example programs share: connecting, starting worker
//! processes (each program re-runs itself with `--worker`), and reading
//! their reports.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use roost_client::{Client, ClientOptions};

/// Connects with a session short enough that a killed worker's claims and
/// locks return quickly (ZooKeeper's default bounds allow 4 s and up).
pub async fn connect(server: &str, session: Duration) -> anyhow::Result<Client> {
    let options = ClientOptions {
        session_timeout: session,
        ..ClientOptions::default()
    };
    Client::connect_with(server, options)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to {server}: {e}"))
}

/// Starts this program again as a worker process with `args`; its stdout
/// goes to `log` (one line per event, read by the coordinator afterwards).
pub fn spawn_worker(args: &[String], log: &Path) -> anyhow::Result<Child> {
    let exe = std::env::current_exe()?;
    let out = std::fs::File::create(log)?;
    Ok(Command::new(exe)
        .arg("--worker")
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .spawn()?)
}

/// Acquires `lock`, trying again while the outcome is unknown because a
/// server went away (the session moves to another server meanwhile).
pub async fn acquire(
    client: &Client,
    lock: &mut roost_client::recipes::Lock,
) -> Result<i64, roost_client::Error> {
    loop {
        match lock.acquire().await {
            Err(e) if e.is_retryable() => client.wait_connected().await?,
            outcome => return outcome,
        }
    }
}

/// A unique name for this run, so runs never see each other's nodes.
pub fn run_id() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// Wall-clock nanoseconds: comparable across the processes of one machine.
pub fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}
