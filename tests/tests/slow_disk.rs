//! A follower whose every log fsync takes 200 ms more (a slow or overloaded
//! disk) must not cost the ensemble its leader, and keeps serving reads:
//! fsync runs on the log writer thread, never on raft's core task, so its
//! heartbeats and votes are answered on time.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use roost_proto::*;
use roost_server::config::PeerSpec;
use roost_storage::{Faults, FaultyFs, StdFs};
use roost_tests::raw::RawClient;
use roost_tests::requests::*;
use roost_tests::servers::{four_letter, free_port, RoostServer};

/// Three in-process servers, each over its own fault-injecting file system.
fn start_ensemble() -> (Vec<RoostServer>, Vec<Arc<Mutex<Faults>>>) {
    let ports: Vec<(u16, u16, u16)> = (0..3)
        .map(|_| {
            (
                free_port().unwrap(),
                free_port().unwrap(),
                free_port().unwrap(),
            )
        })
        .collect();
    let peers: Vec<PeerSpec> = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer, election))| PeerSpec {
            id: i as u64 + 1,
            host: "127.0.0.1".into(),
            peer_port: *peer,
            election_port: *election,
            observer: false,
            client_address: None,
        })
        .collect();
    let starting: Vec<_> = (0..3)
        .map(|i| {
            let fs = FaultyFs::new(StdFs);
            let faults = fs.faults();
            let peers = peers.clone();
            let client_port = ports[i].0;
            let server = std::thread::spawn(move || {
                RoostServer::start_with_fs(
                    |config| {
                        config.client_port = client_port;
                        config.tick_time_ms = 100;
                        config.servers = peers;
                        std::fs::write(config.data_dir.join("myid"), format!("{}\n", i + 1))
                            .unwrap();
                    },
                    Arc::new(fs),
                )
            });
            (server, faults)
        })
        .collect();
    let mut servers = Vec::new();
    let mut faults = Vec::new();
    for (server, fault) in starting {
        servers.push(server.join().unwrap().unwrap());
        faults.push(fault);
    }
    (servers, faults)
}

fn mode(addr: SocketAddr) -> String {
    four_letter(addr, "srvr")
        .lines()
        .find_map(|l| l.strip_prefix("Mode: "))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_follower_with_200_ms_fsyncs_keeps_the_leader_and_serves_reads() {
    let (servers, faults) = start_ensemble();
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let leader = (0..3)
        .find(|&i| mode(addrs[i]) == "leader")
        .expect("a leader");
    let slow = (leader + 1) % 3;
    faults[slow].lock().unwrap().slow_sync = Some(("wal-".into(), Duration::from_millis(200)));

    let mut writer = RawClient::connect(addrs[leader]).unwrap();
    writer
        .call(&create("/counter", b"0", CreateMode::Persistent))
        .unwrap();
    let mut reader = RawClient::connect(addrs[slow]).unwrap();
    let started = Instant::now();
    let (mut acknowledged, mut reads) = (0, 0);
    while started.elapsed() < Duration::from_secs(4) {
        // Ten writes in flight through the leader, then a read on the slow follower.
        let xids: Vec<i32> = (0..10)
            .map(|k| {
                writer
                    .send(&set(
                        "/counter",
                        format!("{}", acknowledged + k).as_bytes(),
                        -1,
                    ))
                    .unwrap()
            })
            .collect();
        for xid in xids {
            assert_eq!(writer.reply_to(xid).unwrap().err(), Some(ErrorCode::Ok));
            acknowledged += 1;
        }
        let read = reader.call(&get("/counter", false)).unwrap();
        assert_eq!(
            read.err(),
            Some(ErrorCode::Ok),
            "the slow follower serves reads"
        );
        reads += 1;
    }
    assert!(acknowledged >= 100, "writes went on: {acknowledged}");
    assert!(reads >= 10, "reads went on: {reads}");
    // Nobody started an election: the same leader, the slow server still follows.
    assert_eq!(mode(addrs[leader]), "leader");
    assert_eq!(mode(addrs[slow]), "follower");
    // Once its disk is fast again the follower catches up with every write.
    faults[slow].lock().unwrap().slow_sync = None;
    let expected = stat_of(&writer.call(&exists("/counter", false)).unwrap()).unwrap();
    assert_eq!(expected.version, acknowledged);
    assert!(eventually(Duration::from_secs(10), || {
        reader.call(&sync("/")).is_ok()
            && stat_of(&reader.call(&exists("/counter", false)).unwrap())
                .is_some_and(|s| s.version == acknowledged)
    }));
}
