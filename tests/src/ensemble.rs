//! A Roost ensemble of `roost server` processes on loopback, each with its
//! own zoo.cfg and `myid` as a ZooKeeper user would write them. Every peer
//! link runs through a [`Link`] relay, so tests can partition servers; the
//! processes are stopped by PID when the ensemble is dropped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::proxy::Link;
use crate::servers::{four_letter, free_port, RoostProcess};

pub struct Ensemble {
    /// `servers[i]` is `server.{i+1}`.
    pub servers: Vec<RoostProcess>,
    /// The relay carrying traffic from server `from` to server `to`'s peer port.
    links: BTreeMap<(usize, usize), Link>,
    peer_ports: Vec<u16>,
    election_ports: Vec<u16>,
    /// Servers configured but not started (see [`Ensemble::start_with_spares`]).
    spares: usize,
    _dir: tempfile::TempDir,
}

impl Ensemble {
    /// Starts `size` servers (observers among them as listed, by index) and
    /// waits until all serve. `extra` lines go into every zoo.cfg.
    pub fn start(size: usize, observers: &[usize], extra: &[&str]) -> anyhow::Result<Ensemble> {
        Self::start_with_spares(size, 0, observers, extra)
    }

    /// As [`Ensemble::start`], and configures `spares` more servers without
    /// starting them: `servers[size..]`, to be added by `reconfig`. As a
    /// ZooKeeper operator writes them, a spare's zoo.cfg lists the ensemble
    /// and the spares, while the ensemble's lists only its own servers; the
    /// ensemble reaches a spare directly, at the address `reconfig` gives.
    pub fn start_with_spares(
        size: usize,
        spares: usize,
        observers: &[usize],
        extra: &[&str],
    ) -> anyhow::Result<Ensemble> {
        let dir = tempfile::tempdir()?;
        let (founders, size) = (size, size + spares);
        let mut peer_ports = Vec::new();
        let mut election_ports = Vec::new();
        let mut client_ports = Vec::new();
        for _ in 0..size {
            peer_ports.push(free_port()?);
            election_ports.push(free_port()?);
            client_ports.push(free_port()?);
        }
        let mut links = BTreeMap::new();
        for from in 0..size {
            for (to, &peer_port) in peer_ports.iter().enumerate() {
                if from != to {
                    let target: SocketAddr = ([127, 0, 0, 1], peer_port).into();
                    links.insert((from, to), Link::start(target)?);
                }
            }
        }
        let mut servers = Vec::new();
        for me in 0..size {
            let server_dir = dir.path().join(format!("server{}", me + 1));
            let data_dir = server_dir.join("data");
            std::fs::create_dir_all(&data_dir)?;
            std::fs::write(data_dir.join("myid"), format!("{}\n", me + 1))?;
            let mut cfg = format!(
                "tickTime=100\ninitLimit=10\nsyncLimit=5\nclientPort={}\n\
                 clientPortAddress=127.0.0.1\ndataDir={}\nmaxClientCnxns=0\n\
                 maxSessionTimeout=60000\n4lw.commands.whitelist=*\n",
                client_ports[me],
                data_dir.display()
            );
            let known = if me < founders { founders } else { size };
            for peer in 0..known {
                // This server reaches the others through the relays.
                let port = if peer == me {
                    peer_ports[me]
                } else {
                    links[&(me, peer)].listen.port()
                };
                let role = if observers.contains(&peer) {
                    ":observer"
                } else {
                    ""
                };
                cfg.push_str(&format!(
                    "server.{}=127.0.0.1:{port}:{}{role}\n",
                    peer + 1,
                    election_ports[peer]
                ));
            }
            for line in extra {
                cfg.push_str(line);
                cfg.push('\n');
            }
            servers.push(RoostProcess::configure(
                &server_dir,
                client_ports[me],
                &cfg,
            )?);
        }
        for server in &mut servers[..founders] {
            server.spawn()?;
        }
        for server in &mut servers[..founders] {
            server.wait_ready(Duration::from_secs(60))?;
        }
        Ok(Ensemble {
            servers,
            links,
            peer_ports,
            election_ports,
            spares,
            _dir: dir,
        })
    }

    /// Starts a spare server; it serves once a `reconfig` has added it and
    /// it has caught up ([`RoostProcess::wait_ready`]).
    pub fn start_spare(&mut self, index: usize) -> anyhow::Result<()> {
        assert!(
            index >= self.servers.len() - self.spares,
            "server.{} is no spare",
            index + 1
        );
        self.servers[index].spawn()
    }

    /// The `server.N=...` line naming server `index` in a `reconfig`, with
    /// its role and client port.
    pub fn member_line(&self, index: usize, role: &str) -> String {
        format!(
            "server.{}=127.0.0.1:{}:{}:{role};127.0.0.1:{}",
            index + 1,
            self.peer_ports[index],
            self.election_ports[index],
            self.servers[index].addr.port()
        )
    }

    pub fn addr(&self, index: usize) -> SocketAddr {
        self.servers[index].addr
    }

    /// Where a server listens for its peers (raft, forwarded writes).
    pub fn peer_addr(&self, index: usize) -> SocketAddr {
        ([127, 0, 0, 1], self.peer_ports[index]).into()
    }

    /// `host:port,host:port,...` for clients.
    pub fn connect_string(&self) -> String {
        self.servers
            .iter()
            .map(|s| s.addr.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `srvr`'s `Mode:` of a server ("" if it does not answer).
    pub fn mode(&self, index: usize) -> String {
        four_letter(self.addr(index), "srvr")
            .lines()
            .find_map(|l| l.strip_prefix("Mode: "))
            .unwrap_or_default()
            .to_string()
    }

    /// `srvr`'s `Zxid:` of a server, if it answers.
    pub fn zxid(&self, index: usize) -> Option<i64> {
        four_letter(self.addr(index), "srvr")
            .lines()
            .find_map(|l| l.strip_prefix("Zxid: "))
            .and_then(|z| i64::from_str_radix(z.trim_start_matches("0x"), 16).ok())
    }

    /// The index of the server reporting `Mode: leader`, waiting up to `limit`.
    pub fn wait_for_leader(&self, limit: Duration) -> anyhow::Result<usize> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            for i in 0..self.servers.len() {
                if self.servers[i].is_running() && self.mode(i) == "leader" {
                    return Ok(i);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("no leader within {limit:?}")
    }

    /// SIGKILL of one server.
    pub fn kill(&mut self, index: usize) {
        self.servers[index].kill();
    }

    /// Starts a killed server again on its data, waiting until it serves.
    pub fn restart(&mut self, index: usize) -> anyhow::Result<()> {
        self.servers[index]
            .restart()
            .with_context(|| format!("restarting server.{}", index + 1))
    }

    /// Empties a (killed) server's data directory but for `myid`, as when its
    /// disk is replaced.
    pub fn wipe(&self, index: usize) -> anyhow::Result<()> {
        let data = self.servers[index].dir.join("data");
        for entry in std::fs::read_dir(&data)? {
            let path = entry?.path();
            if path.file_name().is_some_and(|n| n == "myid") {
                continue;
            }
            if path.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(())
    }

    /// Cuts every link between `index` and the other servers, both ways.
    pub fn isolate(&self, index: usize) {
        for ((from, to), link) in &self.links {
            if *from == index || *to == index {
                link.cut();
            }
        }
    }

    /// Restores every link.
    pub fn heal(&self) {
        for link in self.links.values() {
            link.heal();
        }
    }

    /// Waits until every running server reports the same zxid.
    pub fn wait_converged(&self, limit: Duration) -> anyhow::Result<i64> {
        let deadline = Instant::now() + limit;
        let mut last = Vec::new();
        while Instant::now() < deadline {
            last = (0..self.servers.len())
                .filter(|i| self.servers[*i].is_running())
                .map(|i| self.zxid(i))
                .collect();
            if let Some(Some(first)) = last.first() {
                if last.iter().all(|z| *z == Some(*first)) {
                    return Ok(*first);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "servers did not converge within {limit:?}: zxids {last:?}\n{}",
            self.log_tails(30)
        )
    }

    /// The last `lines` lines of every server's log, for failure messages.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for (i, server) in self.servers.iter().enumerate() {
            let log = std::fs::read_to_string(server.dir.join("roost.log")).unwrap_or_default();
            let all: Vec<&str> = log.lines().collect();
            out.push_str(&format!("--- server.{} ---\n", i + 1));
            for line in &all[all.len().saturating_sub(lines)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}
