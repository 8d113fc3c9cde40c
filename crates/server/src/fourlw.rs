//! Four-letter words: plain-text answers on the client port, in ZooKeeper's
//! formats (monitoring tools and clients parse them), gated by
//! `4lw.commands.whitelist`.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::shared::Shared;

/// The version reported to clients: the ZooKeeper release whose behaviour
/// Roost follows, then Roost's own version (clients parse the leading digits).
pub(crate) fn version_string() -> String {
    format!(
        "3.9.3-roost-{}, built on {}",
        env!("CARGO_PKG_VERSION"),
        "unknown"
    )
}

/// Java's `Double.toString` for the 4-decimal averages ZooKeeper prints.
pub(crate) fn java_double(value: f64) -> String {
    let rounded = (value * 10_000.0).round() / 10_000.0;
    let text = format!("{rounded:.4}");
    let trimmed = text.trim_end_matches('0');
    if trimmed.ends_with('.') {
        format!("{trimmed}0")
    } else {
        trimmed.to_string()
    }
}

const NOT_SERVING: &str = "This ZooKeeper instance is not currently serving requests";

/// The full answer to one four-letter word.
pub(crate) fn respond(word: &str, shared: &Shared) -> String {
    if !shared.config.four_letter_words.iter().any(|w| w == word) {
        return format!("{word} is not executed because it is not in the whitelist.\n");
    }
    if !shared.serving() && !shared.read_only_mode() {
        // An ensemble member outside the quorum answers as ZooKeeper's does.
        match word {
            "ruok" | "envi" => {}
            "isro" => return "null".into(),
            _ => return format!("{NOT_SERVING}\n"),
        }
    }
    let mut out = String::new();
    match word {
        "ruok" => out.push_str("imok"),
        "isro" if shared.read_only_mode() => out.push_str("ro"),
        "isro" => out.push_str("rw"),
        "srvr" => server_summary(shared, false, &mut out),
        "stat" => server_summary(shared, true, &mut out),
        "mntr" => monitor(shared, &mut out),
        "envi" => environment(&mut out),
        "conf" => configuration(shared, &mut out),
        "cons" => {
            connections(shared, true, &mut out);
            out.push('\n');
        }
        "crst" => {
            for conn in shared.registry().conns.values() {
                conn.stats.reset();
            }
            out.push_str("Connection stats reset.\n");
        }
        "srst" => {
            shared.stats.reset();
            out.push_str("Server stats reset.\n");
        }
        "dirs" => {
            let data = dir_size(&shared.config.data_dir);
            let log = dir_size(shared.config.log_dir());
            let _ = writeln!(out, "datadir_size: {data}\nlogdir_size: {log}");
        }
        "wchs" => {
            let (watchers, paths, total) = shared.watches().summary();
            let _ = writeln!(
                out,
                "{watchers} connections watching {paths} paths\nTotal watches:{total}\n"
            );
        }
        "wchc" => {
            let by_watcher = shared.watches().by_watcher();
            let registry = shared.registry();
            for (conn, paths) in by_watcher {
                let session = registry.conns.get(&conn).map_or(0, |c| c.session_id);
                let _ = writeln!(out, "0x{session:x}");
                for path in paths {
                    let _ = writeln!(out, "\t{path}");
                }
            }
            out.push('\n');
        }
        "wchp" => {
            let by_path = shared.watches().by_path();
            let registry = shared.registry();
            for (path, conns) in by_path {
                let _ = writeln!(out, "{path}");
                for conn in conns {
                    let session = registry.conns.get(&conn).map_or(0, |c| c.session_id);
                    let _ = writeln!(out, "\t0x{session:x}");
                }
            }
            out.push('\n');
        }
        "dump" => dump(shared, &mut out),
        "gtmk" => out.push_str("0\n"),
        "stmk" => out.push_str("0\n"),
        "hash" => out.push_str("Digest in log and actual tree is not enabled.\n"),
        _ => {}
    }
    out
}

fn server_summary(shared: &Shared, with_clients: bool, out: &mut String) {
    let _ = writeln!(out, "Zookeeper version: {}", version_string());
    if with_clients {
        out.push_str("Clients:\n");
        connections(shared, false, out);
        out.push('\n');
    }
    let stats = &shared.stats;
    let (zxid, nodes) = {
        let state = shared.state();
        (state.last_zxid(), state.tree().len())
    };
    let _ = write!(
        out,
        "Latency min/avg/max: {}/{}/{}\nReceived: {}\nSent: {}\nConnections: {}\nOutstanding: {}\nZxid: 0x{:x}\nMode: {}\nNode count: {}\n",
        stats.latency.min(),
        java_double(stats.latency.avg()),
        stats.latency.max(),
        stats.packets_received.load(Ordering::Relaxed),
        stats.packets_sent.load(Ordering::Relaxed),
        shared.registry().conns.len(),
        shared.budget.requests(),
        zxid,
        server_state(shared),
        nodes,
    );
}

/// ZooKeeper's `Mode`: standalone, leader, follower or observer.
pub(crate) fn server_state(shared: &Shared) -> &'static str {
    if !shared.config.is_ensemble() {
        return "standalone";
    }
    if shared.read_only_mode() {
        return "read-only";
    }
    match shared.consensus.get().map(|c| c.leadership()) {
        Some(l) if l.leading => "leader",
        Some(l) if l.observer => "observer",
        _ => "follower",
    }
}

fn connections(shared: &Shared, full: bool, out: &mut String) {
    let registry = shared.registry();
    let mut conns: Vec<_> = registry.conns.iter().collect();
    conns.sort_by_key(|(id, _)| **id);
    for (_, conn) in conns {
        let s = &conn.stats;
        let _ = write!(
            out,
            " /{}[{}](queued={},recved={},sent={}",
            conn.peer,
            u8::from(conn.session_id != 0),
            s.queued.load(Ordering::Relaxed).max(0),
            s.received.load(Ordering::Relaxed),
            s.sent.load(Ordering::Relaxed),
        );
        if full && conn.session_id != 0 {
            let last_op = s.last_op.lock().map(|op| *op).unwrap_or("NA");
            let _ = write!(
                out,
                ",sid=0x{:x},lop={},est={},to={},lcxid=0x{:x},lzxid=0x{:x},lresp={},llat={},minlat={},avglat={},maxlat={}",
                conn.session_id,
                last_op,
                s.established_ms,
                s.timeout_ms.load(Ordering::Relaxed),
                s.last_cxid.load(Ordering::Relaxed),
                s.last_zxid.load(Ordering::Relaxed),
                s.last_response_ms.load(Ordering::Relaxed),
                s.latency.max(),
                s.latency.min(),
                s.latency.avg().round() as u64,
                s.latency.max(),
            );
        }
        out.push_str(")\n");
    }
}

fn monitor(shared: &Shared, out: &mut String) {
    let stats = &shared.stats;
    let (nodes, data_bytes, sessions, ephemerals, zxid) = {
        let state = shared.state();
        let ephemerals: usize = state.sessions().values().map(|s| s.ephemerals.len()).sum();
        (
            state.tree().len(),
            state.tree().approximate_data_bytes(),
            state.sessions().len(),
            ephemerals,
            state.last_zxid(),
        )
    };
    let (_, _, watch_count) = shared.watches().summary();
    let lines: Vec<(&str, String)> = vec![
        ("zk_version", version_string()),
        ("zk_server_state", server_state(shared).to_string()),
        ("zk_ephemerals_count", ephemerals.to_string()),
        (
            "zk_num_alive_connections",
            shared.registry().conns.len().to_string(),
        ),
        ("zk_avg_latency", java_double(stats.latency.avg())),
        (
            "zk_outstanding_requests",
            shared.budget.requests().to_string(),
        ),
        ("zk_znode_count", nodes.to_string()),
        ("zk_peer_state", peer_state(shared)),
        ("zk_global_sessions", sessions.to_string()),
        ("zk_local_sessions", "0".to_string()),
        ("zk_watch_count", watch_count.to_string()),
        ("zk_approximate_data_size", data_bytes.to_string()),
        (
            "zk_packets_sent",
            stats.packets_sent.load(Ordering::Relaxed).to_string(),
        ),
        (
            "zk_packets_received",
            stats.packets_received.load(Ordering::Relaxed).to_string(),
        ),
        ("zk_min_latency", stats.latency.min().to_string()),
        ("zk_max_latency", stats.latency.max().to_string()),
        (
            "zk_auth_failed_count",
            stats.auth_failed.load(Ordering::Relaxed).to_string(),
        ),
        (
            "zk_connection_rejected",
            stats
                .connections_rejected
                .load(Ordering::Relaxed)
                .to_string(),
        ),
        (
            "zk_connection_drop_count",
            stats
                .connections_dropped
                .load(Ordering::Relaxed)
                .to_string(),
        ),
        (
            "zk_last_client_response_size",
            stats.last_response_size.load(Ordering::Relaxed).to_string(),
        ),
        (
            "zk_max_client_response_size",
            stats.max_response_size.load(Ordering::Relaxed).to_string(),
        ),
        (
            "zk_min_client_response_size",
            stats.min_response_size.load(Ordering::Relaxed).to_string(),
        ),
        (
            "zk_uptime",
            shared.started.elapsed().as_millis().to_string(),
        ),
        ("zk_last_zxid", format!("0x{zxid:x}")),
        ("zk_open_file_descriptor_count", open_fd_count().to_string()),
        ("zk_max_file_descriptor_count", max_fd_count().to_string()),
    ];
    for (key, value) in lines {
        let _ = writeln!(out, "{key}\t{value}");
    }
    if server_state(shared) == "leader" {
        let (followers, synced) = shared.consensus.get().map_or((0, 0), |c| c.followers(1000));
        let _ = writeln!(out, "zk_learners\t{followers}");
        let _ = writeln!(out, "zk_followers\t{followers}");
        let _ = writeln!(out, "zk_synced_followers\t{synced}");
        let _ = writeln!(out, "zk_pending_syncs\t0");
    }
}

/// `mntr`'s zk_peer_state: ZooKeeper prints e.g. "leading - broadcast".
fn peer_state(shared: &Shared) -> String {
    match server_state(shared) {
        "leader" => "leading - broadcast".into(),
        "follower" => "following - broadcast".into(),
        "observer" => "observing - broadcast".into(),
        _ => "standalone".into(),
    }
}

fn environment(out: &mut String) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string());
    let cwd = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let _ = writeln!(out, "Environment:");
    let _ = writeln!(out, "zookeeper.version={}", version_string());
    let _ = writeln!(out, "host.name={host}");
    let _ = writeln!(out, "roost.version={}", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(out, "os.name={}", std::env::consts::OS);
    let _ = writeln!(out, "os.arch={}", std::env::consts::ARCH);
    let _ = writeln!(
        out,
        "user.name={}",
        std::env::var("USER").unwrap_or_default()
    );
    let _ = writeln!(out, "user.dir={cwd}");
}

fn configuration(shared: &Shared, out: &mut String) {
    let c = &shared.config;
    let (min, max) = c.session_timeout_bounds_ms();
    let _ = writeln!(out, "clientPort={}", c.client_port);
    let _ = writeln!(out, "secureClientPort=-1");
    let _ = writeln!(out, "dataDir={}", c.data_dir.display());
    let _ = writeln!(out, "dataDirSize={}", dir_size(&c.data_dir));
    let _ = writeln!(out, "dataLogDir={}", c.log_dir().display());
    let _ = writeln!(out, "dataLogSize={}", dir_size(c.log_dir()));
    let _ = writeln!(out, "tickTime={}", c.tick_time_ms);
    let _ = writeln!(out, "maxClientCnxns={}", c.max_client_cnxns);
    let _ = writeln!(out, "minSessionTimeout={min}");
    let _ = writeln!(out, "maxSessionTimeout={max}");
    let _ = writeln!(out, "clientPortListenBacklog=-1");
    let _ = writeln!(out, "serverId={}", shared.server_id);
}

fn dump(shared: &Shared, out: &mut String) {
    let now = Instant::now();
    let deadlines = shared.tracker().deadlines(now);
    let _ = writeln!(out, "SessionTracker dump:");
    let _ = writeln!(out, "Session Sets ({}):", deadlines.len());
    for (session, left) in deadlines {
        let _ = writeln!(out, "\t0x{session:x} expires in {} ms", left.as_millis());
    }
    let state = shared.state();
    let owners: Vec<_> = state
        .sessions()
        .iter()
        .filter(|(_, s)| !s.ephemerals.is_empty())
        .collect();
    let _ = writeln!(out, "ephemeral nodes dump:");
    let _ = writeln!(out, "Sessions with Ephemerals ({}):", owners.len());
    for (id, session) in owners {
        let _ = writeln!(out, "0x{id:x}:");
        for path in session.ephemerals.iter() {
            let _ = writeln!(out, "\t{path}");
        }
    }
    drop(state);
    let registry = shared.registry();
    let _ = writeln!(out, "Connections dump:");
    let _ = writeln!(out, "Connections ({}):", registry.conns.len());
    for conn in registry.conns.values() {
        let _ = writeln!(
            out,
            "\tip: /{} sessionId: 0x{:x}",
            conn.peer, conn.session_id
        );
    }
}

fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn open_fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn max_fd_count() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_print_like_java_doubles() {
        assert_eq!(java_double(0.0), "0.0");
        assert_eq!(java_double(1.034_94), "1.0349");
        assert_eq!(java_double(2.5), "2.5");
        assert_eq!(java_double(3.0), "3.0");
    }
}
