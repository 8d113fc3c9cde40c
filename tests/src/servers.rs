//! Servers for tests: Roost in-process on a free port, and the real Apache
//! ZooKeeper (Debian package) as a child process, both stopped on drop.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use roost_server::{Config, Server};

/// A Roost server running on its own runtime in a background thread.
pub struct RoostServer {
    pub addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
    server: Option<Server>,
    _data: tempfile::TempDir,
}

impl RoostServer {
    /// Standalone on 127.0.0.1, a free port, a temporary data folder, every
    /// four-letter word enabled, TTL nodes on, and `tweak` applied last.
    pub fn start_with(tweak: impl FnOnce(&mut Config)) -> anyhow::Result<RoostServer> {
        Self::start_with_fs(tweak, Arc::new(roost_storage::StdFs))
    }

    /// Like [`RoostServer::start_with`], over a given file system (faults).
    pub fn start_with_fs(
        tweak: impl FnOnce(&mut Config),
        fs: Arc<dyn roost_storage::FileSystem>,
    ) -> anyhow::Result<RoostServer> {
        let data = tempfile::tempdir()?;
        let mut config = Config::standalone_default();
        config.client_port = 0;
        config.client_port_address = [127, 0, 0, 1].into();
        config.data_dir = data.path().to_path_buf();
        config.extended_types_enabled = true;
        config.max_client_cnxns = 0;
        tweak(&mut config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let server = runtime.block_on(Server::start_with_fs(config, fs))?;
        Ok(RoostServer {
            addr: server.local_addr(),
            runtime: Some(runtime),
            server: Some(server),
            _data: data,
        })
    }

    pub fn start() -> anyhow::Result<RoostServer> {
        Self::start_with(|_| {})
    }

    /// Waits up to `limit` for the server to stop on a fatal error.
    pub fn wait_for_fatal(&mut self, limit: Duration) -> Option<String> {
        let runtime = self.runtime.as_ref()?;
        let server = self.server.as_mut()?;
        runtime
            .block_on(async { tokio::time::timeout(limit, server.wait()).await })
            .ok()
            .map(|fatal| fatal.to_string())
    }
}

impl Drop for RoostServer {
    fn drop(&mut self) {
        if let (Some(runtime), Some(server)) = (self.runtime.take(), self.server.take()) {
            runtime.block_on(server.shutdown());
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

/// The Debian `zookeeper` package's jars.
const ZK_CLASSPATH: &str = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar";

/// Whether the real ZooKeeper is installed here.
pub fn zookeeper_installed() -> bool {
    Path::new("/usr/share/java/zookeeper.jar").exists() && Path::new("/usr/bin/java").exists()
}

/// A standalone Apache ZooKeeper child process.
pub struct ZooKeeper {
    pub addr: SocketAddr,
    child: Child,
    /// The folder made for it, when the caller gave none.
    _dir: Option<tempfile::TempDir>,
}

/// A port nobody listens on right now, below the kernel's ephemeral range
/// (32768 and up on Linux), so that no outgoing connection or port-0
/// listener takes it before the server binds it.
pub fn free_port() -> anyhow::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    // Spread across processes by pid; walk within this process.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let base = std::process::id().wrapping_mul(7919) % SPAN;
    for _ in 0..SPAN {
        let offset = (base + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN;
        let port = (LOW + offset) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port between {LOW} and {}", LOW + SPAN)
}

impl ZooKeeper {
    /// Starts ZooKeeper with a fresh data folder; `extra` lines go into zoo.cfg.
    pub fn start(extra: &[&str]) -> anyhow::Result<ZooKeeper> {
        let dir = tempfile::tempdir()?;
        let mut zk = ZooKeeper::start_in(dir.path(), extra)?;
        zk._dir = Some(dir);
        Ok(zk)
    }

    /// Starts ZooKeeper on `dir` (its dataDir is `dir/data`), keeping what an
    /// earlier server left there.
    pub fn start_in(dir: &Path, extra: &[&str]) -> anyhow::Result<ZooKeeper> {
        if !zookeeper_installed() {
            bail!("Apache ZooKeeper is not installed (apt-get install zookeeper)");
        }
        let port = free_port()?;
        let mut cfg = format!(
            "tickTime=2000\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
             maxClientCnxns=0\n4lw.commands.whitelist=*\nadmin.enableServer=false\n",
            dir.join("data").display()
        );
        for line in extra {
            cfg.push_str(line);
            cfg.push('\n');
        }
        let cfg_path = dir.join("zoo.cfg");
        std::fs::write(&cfg_path, cfg)?;
        let child = Command::new("/usr/bin/java")
            .args([
                "-Xmx256m",
                "-Dzookeeper.extendedTypesEnabled=true",
                "-Dznode.container.checkIntervalMs=3600000",
                "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                "-cp",
                ZK_CLASSPATH,
                "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            ])
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting java")?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let zk = ZooKeeper {
            addr,
            child,
            _dir: None,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if four_letter(addr, "srvr").contains("Mode: standalone") {
                return Ok(zk);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("ZooKeeper did not start on {addr} within 60 s")
    }
}

/// A four-letter word's answer, or "" if the server is not answering yet.
pub fn four_letter(addr: SocketAddr, word: &str) -> String {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else {
        return String::new();
    };
    use std::io::Write;
    if stream.write_all(word.as_bytes()).is_err() {
        return String::new();
    }
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `roost` binary next to the running test executable
/// (`target/<profile>/roost`), or `ROOST_BIN`.
pub fn roost_binary() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("ROOST_BIN") {
        return path.into();
    }
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let bin = profile_dir.join("roost");
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build --release --workspace)",
        bin.display()
    );
    bin
}

/// A `roost server` child process on a fixed data folder, so it can be
/// killed and restarted on the same data.
pub struct RoostProcess {
    pub addr: SocketAddr,
    pub dir: std::path::PathBuf,
    child: Option<Child>,
}

impl RoostProcess {
    /// Writes `dir/zoo.cfg` (tickTime 100 ms, a free port, `extra` lines) and starts.
    pub fn start(dir: &Path, extra: &[&str]) -> anyhow::Result<RoostProcess> {
        let port = free_port()?;
        let mut cfg = format!(
            "tickTime=100\nclientPort={port}\nclientPortAddress=127.0.0.1\ndataDir={}\n\
             maxClientCnxns=0\nmaxSessionTimeout=60000\n4lw.commands.whitelist=*\n",
            dir.join("data").display()
        );
        for line in extra {
            cfg.push_str(line);
            cfg.push('\n');
        }
        let mut process = RoostProcess::configure(dir, port, &cfg)?;
        process.restart()?;
        Ok(process)
    }

    /// Writes `dir/zoo.cfg` for a server on `client_port`; does not start it.
    pub fn configure(dir: &Path, client_port: u16, cfg: &str) -> anyhow::Result<RoostProcess> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("zoo.cfg"), cfg)?;
        Ok(RoostProcess {
            addr: ([127, 0, 0, 1], client_port).into(),
            dir: dir.to_path_buf(),
            child: None,
        })
    }

    /// Starts the server again on the same config and data.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.spawn()?;
        self.wait_ready(Duration::from_secs(60))
    }

    /// Starts the process without waiting for it to serve (an ensemble's
    /// servers serve only once a quorum of them runs).
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("roost.log"))?;
        let child = Command::new(roost_binary())
            .args(["server", "--config"])
            .arg(self.dir.join("zoo.cfg"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting roost")?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until the server answers `ruok`.
    pub fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if four_letter(self.addr, "ruok") == "imok" {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "roost exited with {status}; see {}",
                    self.dir.join("roost.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("roost did not start within {limit:?}")
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The running server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs the binary on this data and waits for it to exit (for refusals).
    pub fn run_to_exit(
        &mut self,
        limit: Duration,
    ) -> anyhow::Result<(std::process::ExitStatus, String)> {
        self.kill();
        let mut child = Command::new(roost_binary())
            .args(["server", "--config"])
            .arg(self.dir.join("zoo.cfg"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait()? {
                let mut err = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    let _ = stderr.read_to_string(&mut err);
                }
                return Ok((status, err));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("roost kept running");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RoostProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
