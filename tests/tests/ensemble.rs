//! Ensembles of `roost server` processes on loopback, configured like
//! ZooKeeper (zoo.cfg `server.N` lines, `dataDir/myid`), with every peer link
//! through a relay that can be cut. Servers are SIGKILLed and partitioned
//! under load; no acknowledged write may be lost, the minority must refuse
//! clients, and a recorded history must be linearizable.
//!
//! Randomised tests print their seed; `ROOST_ENSEMBLE_SEED=<seed>` replays.
//! The tests take turns (one ensemble at a time) so that timings on a
//! 2-core machine stay meaningful.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use roost_proto::*;
use roost_tests::ensemble::Ensemble;
use roost_tests::history::{self, Input, Operation, Output, Verdict};
use roost_tests::raw::{four_letter_word, Frame, RawClient};
use roost_tests::requests::*;
use roost_tests::rng::Rng;
use roost_tests::servers::RoostProcess;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn seed() -> u64 {
    std::env::var("ROOST_ENSEMBLE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        })
}

/// Any server of `addrs` that accepts a new session, tried from `start`.
fn connect_any(addrs: &[SocketAddr], start: usize) -> Option<RawClient> {
    (0..addrs.len()).find_map(|i| {
        let client = RawClient::connect(addrs[(start + i) % addrs.len()]).ok()?;
        client.set_read_timeout(Duration::from_secs(8)).ok()?;
        Some(client)
    })
}

fn is_ok(frame: &Frame) -> bool {
    frame.err() == Some(ErrorCode::Ok)
}

fn monitor_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('\t')?;
        (k == key).then(|| v.to_string())
    })
}

/// `srvr`'s modes of `servers`.
fn modes(ensemble: &Ensemble, servers: std::ops::Range<usize>) -> Vec<String> {
    servers.map(|i| ensemble.mode(i)).collect()
}

/// Whether `servers` report one leader and followers only.
fn one_leader_and_followers(ensemble: &Ensemble, servers: std::ops::Range<usize>) -> bool {
    let modes = modes(ensemble, servers);
    modes.iter().filter(|m| *m == "leader").count() == 1
        && modes.iter().filter(|m| *m == "follower").count() == modes.len() - 1
}

#[test]
fn three_servers_elect_one_leader_replicate_and_report_their_modes() {
    let _turn = turn();
    let ensemble = Ensemble::start(3, &[], &[]).unwrap();
    let leader = ensemble.wait_for_leader(Duration::from_secs(10)).unwrap();
    assert!(
        one_leader_and_followers(&ensemble, 0..3),
        "{:?}",
        modes(&ensemble, 0..3)
    );
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;

    // A write made through a follower is read back there, and on the third
    // server after a sync.
    let mut writer = RawClient::connect(ensemble.addr(follower)).unwrap();
    assert!(is_ok(
        &writer
            .call(&create("/replicated", b"v1", CreateMode::Persistent))
            .unwrap()
    ));
    assert_eq!(
        data_of(writer.call(&get("/replicated", false)).unwrap()).as_deref(),
        Some(&b"v1"[..])
    );
    let mut reader = RawClient::connect(ensemble.addr(other)).unwrap();
    assert!(is_ok(&reader.call(&sync("/replicated")).unwrap()));
    assert_eq!(
        data_of(reader.call(&get("/replicated", true)).unwrap()).as_deref(),
        Some(&b"v1"[..])
    );
    // A watch set on one server fires for a write made through another.
    assert!(is_ok(&writer.call(&set("/replicated", b"v2", 0)).unwrap()));
    match reader.next_event().unwrap() {
        Frame::Notification { event, path, .. } => {
            assert_eq!(
                (event, path.as_str()),
                (EventType::NodeDataChanged, "/replicated")
            );
        }
        other => panic!("expected a notification, got {other:?}"),
    }

    let mntr = four_letter_word(ensemble.addr(leader), "mntr").unwrap();
    assert_eq!(
        monitor_value(&mntr, "zk_server_state").as_deref(),
        Some("leader")
    );
    assert!(
        roost_tests::requests::eventually(Duration::from_secs(5), || {
            let mntr = four_letter_word(ensemble.addr(leader), "mntr").unwrap_or_default();
            monitor_value(&mntr, "zk_synced_followers").as_deref() == Some("2")
        }),
        "{mntr}"
    );
    assert_eq!(monitor_value(&mntr, "zk_followers").as_deref(), Some("2"));
    let srvr = four_letter_word(ensemble.addr(follower), "srvr").unwrap();
    assert!(srvr.contains("Mode: follower"), "{srvr}");

    // The membership in ZooKeeper's format, as Curator's EnsembleTracker reads it.
    let reply = reader.call(&get("/zookeeper/config", false)).unwrap();
    assert_eq!(stat_of(&reply).map(|s| s.version), Some(-1));
    let config = String::from_utf8(data_of(reply).unwrap().to_vec()).unwrap();
    let lines: Vec<&str> = config.lines().collect();
    assert_eq!(lines.len(), 4, "{config}");
    for (i, line) in lines[..3].iter().enumerate() {
        assert!(
            line.starts_with(&format!("server.{}=127.0.0.1:", i + 1)),
            "{config}"
        );
        assert!(line.ends_with(":participant"), "{config}");
    }
    assert_eq!(lines[3], "version=0");
}

#[test]
fn a_session_moved_to_another_server_is_closed_on_the_old_one() {
    let _turn = turn();
    let ensemble = Ensemble::start(3, &[], &[]).unwrap();
    let mut first = RawClient::connect(ensemble.addr(0)).unwrap();
    assert!(is_ok(
        &first
            .call(&create("/owned", b"", CreateMode::Ephemeral))
            .unwrap()
    ));
    let mut second = RawClient::connect_as(
        ensemble.addr(1),
        first.session_id,
        first.password.clone(),
        30_000,
    )
    .unwrap();
    assert_eq!(second.session_id, first.session_id);
    // The old connection's write is refused as ZooKeeper does it: the
    // connection is closed without a reply.
    let _ = first.send(&set("/owned", b"stale", -1));
    assert!(first.is_closed_by_server(), "the old connection is closed");
    let reply = second.call(&set("/owned", b"fresh", -1)).unwrap();
    assert!(is_ok(&reply), "{reply:?}");
    let stat = stat_of(&second.call(&exists("/owned", false)).unwrap()).unwrap();
    assert_eq!(stat.ephemeral_owner, second.session_id);
}

#[test]
fn clients_of_a_killed_server_move_on_with_their_sessions() {
    let _turn = turn();
    let mut ensemble = Ensemble::start(3, &[], &[]).unwrap();
    let leader = ensemble.wait_for_leader(Duration::from_secs(10)).unwrap();
    let victim = (leader + 1) % 3;
    let refuge = (leader + 2) % 3;
    let mut client = RawClient::connect_as(
        ensemble.addr(victim),
        0,
        Bytes::from_static(&[0; 16]),
        6_000,
    )
    .unwrap();
    let reply = client
        .call(&create("/lease", b"mine", CreateMode::Ephemeral))
        .unwrap();
    assert!(is_ok(&reply));
    let Frame::Reply { zxid, .. } = reply else {
        unreachable!()
    };
    ensemble.kill(victim);
    let mut moved = RawClient::open(ensemble.addr(refuge)).unwrap();
    let response = moved
        .handshake(&ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: zxid,
            timeout_ms: 6_000,
            session_id: client.session_id,
            passwd: client.password.clone(),
            read_only: Some(false),
        })
        .unwrap()
        .expect("the session is accepted elsewhere");
    assert_eq!(response.session_id, client.session_id);
    // Longer than the session timeout: the session lives because the
    // server now holding it keeps it alive.
    for _ in 0..8 {
        std::thread::sleep(Duration::from_secs(1));
        assert!(is_ok(&moved.call(&Request::Ping).unwrap()));
    }
    let stat = stat_of(&moved.call(&exists("/lease", false)).unwrap()).expect("ephemeral kept");
    assert_eq!(stat.ephemeral_owner, client.session_id);
    assert!(is_ok(
        &moved.call(&set("/lease", b"still mine", -1)).unwrap()
    ));
}

#[test]
fn a_server_behind_on_the_clients_zxid_refuses_it() {
    let _turn = turn();
    let ensemble = Ensemble::start(3, &[], &[]).unwrap();
    let mut client = RawClient::open(ensemble.addr(0)).unwrap();
    let response = client
        .handshake(&ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 1 << 40,
            timeout_ms: 10_000,
            session_id: 0,
            passwd: Bytes::from_static(&[0; 16]),
            read_only: Some(false),
        })
        .unwrap();
    assert!(
        response.is_none(),
        "refused: the client has seen the future"
    );
}

#[test]
fn killing_the_leader_under_load_loses_no_acknowledged_write() {
    let _turn = turn();
    let mut ensemble = Ensemble::start(3, &[], &[]).unwrap();
    let leader = ensemble.wait_for_leader(Duration::from_secs(10)).unwrap();
    let addrs: Vec<SocketAddr> = (0..3).map(|i| ensemble.addr(i)).collect();
    let load = Load::start(&addrs, 4);
    std::thread::sleep(Duration::from_secs(2));
    let before_kill = load.acknowledged();
    assert!(before_kill > 0, "the load is running");
    load.mark();
    ensemble.kill(leader);
    std::thread::sleep(Duration::from_secs(3));
    ensemble.restart(leader).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let failover = load
        .first_acknowledged_after_mark()
        .expect("writes resumed after the leader was killed");
    let acknowledged = load.stop();
    println!("first acknowledged write {failover:?} after killing the leader");
    assert!(failover < Duration::from_secs(5), "{failover:?}");
    let new_leader = ensemble.wait_for_leader(Duration::from_secs(10)).unwrap();
    assert_ne!(
        ensemble.mode(leader),
        "",
        "the restarted server serves again"
    );
    ensemble.wait_converged(Duration::from_secs(30)).unwrap();
    assert!(
        acknowledged.len() > before_kill,
        "writes went on after the kill"
    );
    println!("leader now: server.{}", new_leader + 1);
    assert_served_everywhere(&ensemble, &acknowledged);
}

#[test]
fn an_isolated_leader_stops_serving_the_majority_goes_on_and_healing_converges() {
    let _turn = turn();
    let ensemble = Ensemble::start(3, &[], &[]).unwrap();
    let old_leader = ensemble.wait_for_leader(Duration::from_secs(10)).unwrap();
    let majority: Vec<usize> = (0..3).filter(|i| *i != old_leader).collect();
    let mut stranded = RawClient::connect(ensemble.addr(old_leader)).unwrap();
    assert!(is_ok(
        &stranded
            .call(&create("/before", b"", CreateMode::Persistent))
            .unwrap()
    ));
    ensemble.isolate(old_leader);

    // The majority elects a leader of its own and takes writes.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut majority_client = loop {
        assert!(Instant::now() < deadline, "the majority never took writes");
        if let Some(mut c) =
            connect_any(&[ensemble.addr(majority[0]), ensemble.addr(majority[1])], 0)
        {
            if c.call(&create("/during", b"", CreateMode::Persistent))
                .is_ok_and(|r| is_ok(&r))
            {
                break c;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };

    // The cut-off server refuses writes: its client is disconnected without
    // the write being acknowledged, and new sessions are refused.
    stranded.set_read_timeout(Duration::from_secs(10)).unwrap();
    let outcome = stranded.call(&create("/minority", b"", CreateMode::Persistent));
    assert!(
        !outcome.as_ref().is_ok_and(is_ok),
        "the minority acknowledged a write: {outcome:?}"
    );
    assert!(
        eventually(Duration::from_secs(5), || RawClient::connect(
            ensemble.addr(old_leader)
        )
        .is_err()),
        "the minority keeps accepting sessions"
    );
    let srvr = four_letter_word(ensemble.addr(old_leader), "srvr").unwrap();
    assert!(srvr.contains("not currently serving"), "{srvr}");

    ensemble.heal();
    ensemble.wait_converged(Duration::from_secs(30)).unwrap();
    let mut healed = None;
    assert!(eventually(Duration::from_secs(10), || {
        healed = RawClient::connect(ensemble.addr(old_leader)).ok();
        healed.is_some()
    }));
    let mut healed = healed.unwrap();
    assert!(is_ok(&healed.call(&sync("/")).unwrap()));
    for path in ["/before", "/during"] {
        assert!(
            stat_of(&healed.call(&exists(path, false)).unwrap()).is_some(),
            "{path} missing on the healed server"
        );
    }
    // "/minority" was never acknowledged: its outcome is unknown to the
    // client (ConnectionLoss), so it may or may not exist now.
    assert!(is_ok(&majority_client.call(&sync("/")).unwrap()));
}

#[test]
fn an_observer_serves_reads_forwards_writes_and_never_votes() {
    let _turn = turn();
    let mut ensemble = Ensemble::start(4, &[3], &[]).unwrap();
    assert!(eventually(Duration::from_secs(10), || ensemble.mode(3) == "observer"));
    let mut client = RawClient::connect(ensemble.addr(3)).unwrap();
    assert!(is_ok(
        &client
            .call(&create("/via-observer", b"o", CreateMode::Persistent))
            .unwrap()
    ));
    assert_eq!(
        data_of(client.call(&get("/via-observer", false)).unwrap()).as_deref(),
        Some(&b"o"[..])
    );
    // Two of three voters down: no quorum, although three of four servers...
    // ...would be a majority if the observer voted. With one voter down the
    // rest goes on.
    let leader = ensemble.wait_for_leader(Duration::from_secs(10)).unwrap();
    ensemble.kill(leader);
    let mut writer = None;
    assert!(
        eventually(Duration::from_secs(10), || {
            let Some(c) = connect_any(&[ensemble.addr(3)], 0) else {
                return false;
            };
            writer = Some(c);
            writer
                .as_mut()
                .and_then(|c| {
                    c.call(&create("/after-kill", b"", CreateMode::Persistent))
                        .ok()
                })
                .is_some_and(|r| is_ok(&r))
        }),
        "two voters of three keep the ensemble writable"
    );
    let second = (0..3).find(|i| *i != leader && ensemble.mode(*i) == "leader");
    if let Some(second) = second {
        ensemble.kill(second);
    } else {
        let follower = (0..3).find(|i| *i != leader).unwrap();
        ensemble.kill(follower);
    }
    let outcome = connect_any(&[ensemble.addr(3)], 0)
        .map(|mut c| c.call(&create("/no-quorum", b"", CreateMode::Persistent)));
    assert!(
        !matches!(outcome, Some(Ok(ref r)) if is_ok(r)),
        "one voter and an observer must not commit: {outcome:?}"
    );
}

#[test]
fn an_observer_cut_off_from_its_leader_stops_serving_until_healed() {
    let _turn = turn();
    let ensemble = Ensemble::start(4, &[3], &[]).unwrap();
    assert!(eventually(Duration::from_secs(10), || ensemble.mode(3) == "observer"));
    let mut client = RawClient::connect(ensemble.addr(3)).unwrap();
    assert!(is_ok(&client.call(&get("/", false)).unwrap()));
    ensemble.isolate(3);
    let cut = Instant::now();
    // A learner never elects, so only silence tells it the leader is gone:
    // it stops serving, and its clients move on, as ZooKeeper's observers' do.
    client.set_read_timeout(Duration::from_secs(30)).unwrap();
    assert!(client.is_closed_by_server());
    println!("cut-off observer stopped serving after {:?}", cut.elapsed());
    assert!(
        cut.elapsed() < Duration::from_secs(15),
        "the observer's client was disconnected, not timed out"
    );
    assert!(
        RawClient::connect(ensemble.addr(3)).is_err(),
        "no new sessions"
    );
    assert!(four_letter_word(ensemble.addr(3), "srvr")
        .unwrap()
        .contains("not currently serving"));
    ensemble.heal();
    assert!(
        eventually(Duration::from_secs(10), || RawClient::connect(
            ensemble.addr(3)
        )
        .is_ok()),
        "healed, the observer serves again"
    );
}

/// The nemesis's moves, at fixed times into the run, chosen by the seed.
fn nemesis(ensemble: &mut Ensemble, rng: &mut Rng, stop: &AtomicBool) {
    let step = Duration::from_millis(1500);
    let mut down: Option<usize> = None;
    let mut isolated = false;
    for _ in 0..8 {
        std::thread::sleep(step);
        if let Some(server) = down.take() {
            if let Err(e) = ensemble.restart(server) {
                panic!("restart failed: {e}");
            }
            continue;
        }
        if isolated {
            ensemble.heal();
            isolated = false;
            continue;
        }
        let target = match rng.below(2) {
            0 => ensemble
                .wait_for_leader(Duration::from_secs(5))
                .unwrap_or(0),
            _ => rng.below(3) as usize,
        };
        if rng.below(2) == 0 {
            println!("nemesis: kill server.{}", target + 1);
            ensemble.kill(target);
            down = Some(target);
        } else {
            println!("nemesis: isolate server.{}", target + 1);
            ensemble.isolate(target);
            isolated = true;
        }
    }
    if let Some(server) = down {
        ensemble.restart(server).unwrap();
    }
    ensemble.heal();
    stop.store(true, Ordering::Relaxed);
}

const KEYS: usize = 3;

/// One client of the history test: writes, version-checked writes and
/// sync-then-read on a few keys, recording each operation.
fn client_loop(
    id: usize,
    addrs: Vec<SocketAddr>,
    seed: u64,
    start: Instant,
    stop: Arc<AtomicBool>,
) -> Vec<Operation> {
    let mut rng = Rng(seed ^ (id as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut client: Option<RawClient> = None;
    let mut versions = [0i32; KEYS];
    let mut ops = Vec::new();
    let mut sequence = 0u64;
    let now = || start.elapsed().as_nanos() as u64;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(2 + rng.below(6)));
        let Some(c) = client.as_mut() else {
            client = connect_any(&addrs, rng.below(addrs.len() as u64) as usize);
            if client.is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            continue;
        };
        let key = rng.below(KEYS as u64) as usize;
        let path = format!("/lin/k{key}");
        sequence += 1;
        let value = (id as u64 + 1) * 1_000_000 + sequence;
        let input = match rng.below(10) {
            0..=3 => Input::Write(value),
            4..=6 => Input::CompareAndSet {
                version: versions[key],
                value,
            },
            _ => Input::Read,
        };
        let invoked = now();
        let result = match input {
            Input::Write(v) => c.call(&set(&path, v.to_string().as_bytes(), -1)),
            Input::CompareAndSet { version, value } => {
                c.call(&set(&path, value.to_string().as_bytes(), version))
            }
            Input::Read => c.call(&sync(&path)).and_then(|r| {
                if is_ok(&r) {
                    c.call(&get(&path, false))
                } else {
                    Ok(r)
                }
            }),
        };
        let output = match &result {
            Ok(frame) if is_ok(frame) => match input {
                Input::Read => {
                    let stat = stat_of(frame);
                    let value = data_of(frame.clone())
                        .and_then(|d| std::str::from_utf8(&d).ok()?.parse().ok());
                    match (value, stat) {
                        (Some(value), Some(stat)) => Some(Output::Read {
                            value,
                            version: stat.version,
                        }),
                        _ => None,
                    }
                }
                _ => stat_of(frame).map(|s| Output::Written { version: s.version }),
            },
            Ok(frame) if frame.err() == Some(ErrorCode::BadVersion) => Some(Output::BadVersion),
            _ => None,
        };
        if result.is_err() {
            client = None;
        }
        match output {
            Some(out) => {
                if let Output::Written { version } | Output::Read { version, .. } = out {
                    versions[key] = version;
                }
                ops.push(Operation {
                    key,
                    client: id,
                    input,
                    invoked,
                    completed: Some((now(), out)),
                });
            }
            // Unknown outcome: the write may or may not have happened.
            None if input != Input::Read => ops.push(Operation {
                key,
                client: id,
                input,
                invoked,
                completed: None,
            }),
            None => {}
        }
    }
    ops
}

#[test]
fn history_under_kills_and_partitions_is_linearizable() {
    let _turn = turn();
    let seed = seed();
    println!("ensemble history seed: {seed} (replay with ROOST_ENSEMBLE_SEED={seed})");
    let mut ensemble = Ensemble::start(3, &[], &[]).unwrap();
    let addrs: Vec<SocketAddr> = (0..3).map(|i| ensemble.addr(i)).collect();
    {
        let mut setup = RawClient::connect(addrs[0]).unwrap();
        assert!(is_ok(
            &setup
                .call(&create("/lin", b"", CreateMode::Persistent))
                .unwrap()
        ));
        for key in 0..KEYS {
            let path = format!("/lin/k{key}");
            assert!(is_ok(
                &setup
                    .call(&create(&path, b"0", CreateMode::Persistent))
                    .unwrap()
            ));
        }
    }
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..5)
        .map(|id| {
            let (addrs, stop) = (addrs.clone(), stop.clone());
            std::thread::spawn(move || client_loop(id, addrs, seed, start, stop))
        })
        .collect();
    let mut rng = Rng(seed);
    nemesis(&mut ensemble, &mut rng, &stop);
    let mut operations = Vec::new();
    for client in clients {
        operations.extend(client.join().unwrap());
    }
    ensemble.wait_converged(Duration::from_secs(30)).unwrap();
    // Final reads from every server join the history.
    for i in 0..3 {
        let mut client = RawClient::connect(ensemble.addr(i)).unwrap();
        for key in 0..KEYS {
            let path = format!("/lin/k{key}");
            let invoked = start.elapsed().as_nanos() as u64;
            let frame = client.call(&get(&path, false)).unwrap();
            let stat = stat_of(&frame).unwrap();
            let value = std::str::from_utf8(&data_of(frame).unwrap())
                .unwrap()
                .parse()
                .unwrap();
            operations.push(Operation {
                key,
                client: 100 + i,
                input: Input::Read,
                invoked,
                completed: Some((
                    start.elapsed().as_nanos() as u64,
                    Output::Read {
                        value,
                        version: stat.version,
                    },
                )),
            });
        }
    }
    let known = operations.iter().filter(|o| o.completed.is_some()).count();
    println!(
        "{} operations ({} with unknown outcome)",
        operations.len(),
        operations.len() - known
    );
    assert!(known > 200, "too few operations completed: {known}");
    for (key, verdict) in history::check(&operations, 20_000_000) {
        assert_eq!(
            verdict,
            Verdict::Linearizable,
            "key {key}, seed {seed} (replay with ROOST_ENSEMBLE_SEED={seed})"
        );
    }
}

#[test]
fn sessions_kept_alive_through_any_server_never_expire() {
    let _turn = turn();
    let ensemble = Ensemble::start(3, &[], &[]).unwrap();
    let leader = ensemble.wait_for_leader(Duration::from_secs(10)).unwrap();
    // One short session on every server, each pinging only its own server.
    let mut clients: Vec<RawClient> = (0..3)
        .map(|i| {
            RawClient::connect_as(ensemble.addr(i), 0, Bytes::from_static(&[0; 16]), 1000).unwrap()
        })
        .collect();
    for (i, client) in clients.iter_mut().enumerate() {
        let eph = format!("/alive-{i}");
        assert!(is_ok(
            &client
                .call(&create(&eph, b"", CreateMode::Ephemeral))
                .unwrap()
        ));
    }
    // Five session timeouts: a server that expired sessions it does not
    // hold (only the leader may) would end the followers' ones.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        for client in &mut clients {
            let reply = client.call(&Request::Ping).unwrap();
            assert!(is_ok(&reply), "{reply:?}");
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    let mut checker = RawClient::connect(ensemble.addr(leader)).unwrap();
    for i in 0..3 {
        let reply = checker
            .call(&exists(&format!("/alive-{i}"), false))
            .unwrap();
        assert!(is_ok(&reply), "the session held by server {i} expired");
    }
}

/// Writers creating `/load/w{w}-{n}` through any server until stopped,
/// remembering every create that was acknowledged.
struct Load {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<BTreeSet<String>>>,
    failover: Arc<Failover>,
    writers: Vec<std::thread::JoinHandle<()>>,
}

/// When a fault was injected ([`Load::mark`]), and how long after it the
/// first write sent after it was acknowledged (failover time).
#[derive(Default)]
struct Failover {
    marked: Mutex<Option<Instant>>,
    first: Mutex<Option<Duration>>,
}

impl Failover {
    fn acknowledged(&self, invoked: Instant) {
        let marked = *self.marked.lock().unwrap();
        if let Some(at) = marked.filter(|at| invoked > *at) {
            let took = at.elapsed();
            let mut first = self.first.lock().unwrap();
            if first.is_none_or(|f| took < f) {
                *first = Some(took);
            }
        }
    }
}

impl Load {
    fn start(addrs: &[SocketAddr], writers: usize) -> Load {
        let mut setup = connect_any(addrs, 0).expect("a server accepts a session");
        assert!(is_ok(
            &setup
                .call(&create("/load", b"", CreateMode::Persistent))
                .unwrap()
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
        let failover = Arc::new(Failover::default());
        let writers = (0..writers)
            .map(|w| {
                let (stop, acknowledged, failover) =
                    (stop.clone(), acknowledged.clone(), failover.clone());
                let addrs = addrs.to_vec();
                std::thread::spawn(move || {
                    let mut client = None;
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let Some(c) = client.as_mut() else {
                            client = connect_any(&addrs, w);
                            if client.is_none() {
                                std::thread::sleep(Duration::from_millis(20));
                            }
                            continue;
                        };
                        let path = format!("/load/w{w}-{n}");
                        n += 1;
                        let invoked = Instant::now();
                        match c.call(&create(&path, b"x", CreateMode::Persistent)) {
                            Ok(reply) if is_ok(&reply) => {
                                acknowledged.lock().unwrap().insert(path);
                                failover.acknowledged(invoked);
                            }
                            Ok(_) => {}
                            Err(_) => client = None,
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            acknowledged,
            failover,
            writers,
        }
    }

    fn acknowledged(&self) -> usize {
        self.acknowledged.lock().unwrap().len()
    }

    /// Notes that a fault is injected now (see [`Load::first_acknowledged_after_mark`]).
    fn mark(&self) {
        *self.failover.marked.lock().unwrap() = Some(Instant::now());
    }

    /// How long after the mark the first write sent after it was acknowledged.
    fn first_acknowledged_after_mark(&self) -> Option<Duration> {
        *self.failover.first.lock().unwrap()
    }

    fn stop(self) -> BTreeSet<String> {
        self.stop.store(true, Ordering::Relaxed);
        for writer in self.writers {
            writer.join().unwrap();
        }
        let acknowledged = self.acknowledged.lock().unwrap();
        acknowledged.clone()
    }
}

/// Asserts that every server of `ensemble` serves each path of `expected`
/// under `/load`.
fn assert_served_everywhere(ensemble: &Ensemble, expected: &BTreeSet<String>) {
    for i in (0..ensemble.servers.len()).filter(|i| ensemble.servers[*i].is_running()) {
        let mut client = RawClient::connect(ensemble.addr(i)).unwrap_or_else(|e| {
            panic!(
                "server.{} takes no session: {e}\n{}",
                i + 1,
                ensemble.log_tails(30)
            )
        });
        let Response::Children(names) = ok_body(client.call(&children("/load")).unwrap()) else {
            panic!("children expected");
        };
        let present: BTreeSet<String> = names.into_iter().map(|n| format!("/load/{n}")).collect();
        let missing: Vec<&String> = expected.difference(&present).collect();
        assert!(
            missing.is_empty(),
            "server.{} lacks {} acknowledged writes, e.g. {:?}\n{}",
            i + 1,
            missing.len(),
            missing.first(),
            ensemble.log_tails(20)
        );
    }
}

#[test]
fn a_member_rebuilt_from_an_empty_disk_rejoins_without_losing_writes() {
    let _turn = turn();
    // Frequent snapshots: the leader purges its log, so a wiped member must
    // be sent a snapshot, as a ZooKeeper follower syncs one from its leader.
    let mut ensemble = Ensemble::start(3, &[], &["snapCount=300"]).unwrap();
    let addrs: Vec<SocketAddr> = (0..3).map(|i| ensemble.addr(i)).collect();
    let load = Load::start(&addrs, 3);
    let leader = ensemble.wait_for_leader(Duration::from_secs(10)).unwrap();
    let follower = (leader + 1) % 3;
    for (role, index) in [("follower", follower), ("leader", leader)] {
        std::thread::sleep(Duration::from_secs(2));
        let before = load.acknowledged();
        ensemble.kill(index);
        ensemble.wipe(index).unwrap();
        let wiped_at = Instant::now();
        ensemble.restart(index).unwrap();
        println!(
            "wiped {role} server.{} serving again after {:?}",
            index + 1,
            wiped_at.elapsed()
        );
        let log = std::fs::read_to_string(ensemble.servers[index].dir.join("roost.log")).unwrap();
        assert!(
            log.contains("rejoining the ensemble without a vote"),
            "the wiped {role} rejoined rather than founding a new ensemble\n{}",
            ensemble.log_tails(20)
        );
        std::thread::sleep(Duration::from_secs(1));
        assert!(load.acknowledged() > before, "writes went on");
    }
    let acknowledged = load.stop();
    ensemble.wait_converged(Duration::from_secs(30)).unwrap();
    assert_served_everywhere(&ensemble, &acknowledged);
}

#[test]
fn a_blank_member_never_helps_a_stale_one_win() {
    let _turn = turn();
    let mut ensemble = Ensemble::start(3, &[], &[]).unwrap();
    let leader = ensemble.wait_for_leader(Duration::from_secs(10)).unwrap();
    let stale = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    ensemble.kill(stale);
    let addrs = [ensemble.addr(leader), ensemble.addr(other)];
    let load = Load::start(&addrs, 2);
    while load.acknowledged() < 200 {
        std::thread::sleep(Duration::from_millis(50));
    }
    let acknowledged = load.stop();
    // Only `other` and the leader hold those writes; `other` loses its disk.
    ensemble.kill(leader);
    ensemble.kill(other);
    ensemble.wipe(other).unwrap();
    ensemble.servers[stale].spawn().unwrap();
    ensemble.servers[other].spawn().unwrap();
    std::thread::sleep(Duration::from_secs(4));
    // A blank voter that voted would let the stale one lead without the
    // writes: they must wait for the server that has them.
    for index in [stale, other] {
        assert_eq!(
            ensemble.mode(index),
            "",
            "server.{} serves without the acknowledged writes\n{}",
            index + 1,
            ensemble.log_tails(20)
        );
    }
    ensemble.restart(leader).unwrap();
    for index in [stale, other] {
        ensemble.servers[index]
            .wait_ready(Duration::from_secs(30))
            .unwrap();
    }
    ensemble.wait_converged(Duration::from_secs(30)).unwrap();
    assert_served_everywhere(&ensemble, &acknowledged);
}

/// Moves a session to the first server of `addrs` (from `start`) that takes
/// it, as a ZooKeeper client does after ConnectionLoss. None if every server
/// refused it or is down.
fn resume_session(
    addrs: &[SocketAddr],
    start: usize,
    session: &RawClient,
    last_zxid_seen: i64,
) -> Option<RawClient> {
    (0..addrs.len()).find_map(|i| {
        let mut moved = RawClient::open(addrs[(start + i) % addrs.len()]).ok()?;
        moved.set_read_timeout(Duration::from_secs(8)).ok()?;
        let response = moved
            .handshake(&ConnectRequest {
                protocol_version: 0,
                last_zxid_seen,
                timeout_ms: session.timeout_ms,
                session_id: session.session_id,
                passwd: session.password.clone(),
                read_only: Some(false),
            })
            .ok()??;
        (response.session_id == session.session_id).then_some(moved)
    })
}

#[test]
fn a_rolling_restart_under_load_keeps_every_write_and_session() {
    let _turn = turn();
    let mut ensemble = Ensemble::start(3, &[], &[]).unwrap();
    ensemble.wait_for_leader(Duration::from_secs(10)).unwrap();
    let addrs: Vec<SocketAddr> = (0..3).map(|i| ensemble.addr(i)).collect();
    {
        let mut setup = RawClient::connect(addrs[0]).unwrap();
        for path in ["/load", "/owners"] {
            assert!(is_ok(
                &setup
                    .call(&create(path, b"", CreateMode::Persistent))
                    .unwrap()
            ));
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let stop = stop.clone();
            let addrs = addrs.clone();
            std::thread::spawn(move || {
                let mut client =
                    RawClient::connect_as(addrs[w], 0, Bytes::from_static(&[0; 16]), 10_000)
                        .unwrap();
                client.set_read_timeout(Duration::from_secs(8)).unwrap();
                let owner = format!("/owners/w{w}");
                assert!(is_ok(
                    &client
                        .call(&create(&owner, b"", CreateMode::Ephemeral))
                        .unwrap()
                ));
                let session = client.session_id;
                let (mut acknowledged, mut last_zxid, mut moves) = (BTreeSet::new(), 0, 0);
                let mut connected = Some(client);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let Some(c) = connected.as_mut() else {
                        unreachable!()
                    };
                    let path = format!("/load/w{w}-{n}");
                    n += 1;
                    match c.call(&create(&path, b"x", CreateMode::Persistent)) {
                        Ok(reply) => {
                            if let Frame::Reply { zxid, .. } = &reply {
                                last_zxid = last_zxid.max(*zxid);
                            }
                            if is_ok(&reply) {
                                acknowledged.insert(path);
                            }
                        }
                        Err(_) => {
                            // ConnectionLoss: the retry moves the session on.
                            let old = connected.take().unwrap();
                            let deadline = Instant::now() + Duration::from_secs(8);
                            while connected.is_none() && Instant::now() < deadline {
                                connected = resume_session(&addrs, w + 1, &old, last_zxid);
                                if connected.is_none() {
                                    std::thread::sleep(Duration::from_millis(50));
                                }
                            }
                            assert!(connected.is_some(), "writer {w} lost session {session:#x}");
                            moves += 1;
                        }
                    }
                }
                let c = connected.as_mut().unwrap();
                let owned = stat_of(&c.call(&exists(&owner, false)).unwrap());
                assert_eq!(
                    owned.map(|s| s.ephemeral_owner),
                    Some(session),
                    "writer {w}'s ephemeral outlived the restarts"
                );
                (acknowledged, moves)
            })
        })
        .collect();
    for i in 0..3 {
        std::thread::sleep(Duration::from_secs(1));
        ensemble.kill(i);
        std::thread::sleep(Duration::from_millis(500));
        let restarted = Instant::now();
        ensemble.restart(i).unwrap();
        println!(
            "server.{} serving again {:?} after its restart",
            i + 1,
            restarted.elapsed()
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = BTreeSet::new();
    let mut moves = 0;
    for writer in writers {
        let (written, moved) = writer.join().unwrap();
        acknowledged.extend(written);
        moves += moved;
    }
    println!(
        "{} writes acknowledged; sessions moved {moves} times",
        acknowledged.len()
    );
    assert!(moves >= 3, "every writer's server was restarted once");
    ensemble.wait_converged(Duration::from_secs(30)).unwrap();
    assert_served_everywhere(&ensemble, &acknowledged);
}

/// zoo.cfg lines for an ensemble `reconfig` may change, with kazoo's test
/// super user (`super:test`).
const RECONFIG_ENABLED: [&str; 2] = [
    "reconfigEnabled=true",
    "DigestAuthenticationProvider.superDigest=super:D/InIHSb7yEEbrWz8b9l71RjZJU=",
];

/// A session of the super user on server `index`.
fn super_session(ensemble: &Ensemble, index: usize) -> RawClient {
    let mut client = RawClient::connect(ensemble.addr(index)).unwrap();
    client.set_read_timeout(Duration::from_secs(15)).unwrap();
    let auth = client
        .call(&Request::Auth(AuthPacket {
            auth_type: 0,
            scheme: "digest".into(),
            auth: Bytes::from_static(b"super:test"),
        }))
        .unwrap();
    assert!(is_ok(&auth));
    client
}

fn reconfig(joining: Option<String>, leaving: Option<String>) -> Request {
    Request::Reconfig(ReconfigRequest {
        joining_servers: joining,
        leaving_servers: leaving,
        new_members: None,
        cur_config_id: -1,
    })
}

/// The voters' ids a `/zookeeper/config` text names.
fn participants(config: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(config)
        .lines()
        .filter(|l| l.ends_with(":participant") || l.contains(":participant;"))
        .filter_map(|l| l.strip_prefix("server.")?.split('=').next()?.parse().ok())
        .collect()
}

#[test]
fn growing_to_five_voters_and_shrinking_back_under_load_loses_nothing() {
    let _turn = turn();
    let mut ensemble = Ensemble::start_with_spares(3, 2, &[], &RECONFIG_ENABLED).unwrap();
    let addrs: Vec<SocketAddr> = (0..5).map(|i| ensemble.addr(i)).collect();
    let load = Load::start(&addrs, 3);
    let mut watcher = RawClient::connect(ensemble.addr(0)).unwrap();
    assert!(is_ok(
        &watcher.call(&get("/zookeeper/config", true)).unwrap()
    ));
    std::thread::sleep(Duration::from_secs(1));

    // 3 -> 5: the new servers start, then join as participants.
    for spare in [3, 4] {
        ensemble.start_spare(spare).unwrap();
    }
    let joining = format!(
        "{},{}",
        ensemble.member_line(3, "participant"),
        ensemble.member_line(4, "participant")
    );
    let asked = Instant::now();
    let mut admin = super_session(&ensemble, 1);
    let grown = admin
        .call(&reconfig(Some(joining), None))
        .unwrap_or_else(|e| panic!("{e}\n{}", ensemble.log_tails(15)));
    let config = data_of(grown).expect("reconfig answers the new configuration");
    println!("3 -> 5 voters took {:?}", asked.elapsed());
    assert_eq!(participants(&config), [1, 2, 3, 4, 5]);
    let event = watcher.next_event().unwrap();
    assert!(
        matches!(&event, Frame::Notification { path, event: EventType::NodeDataChanged, .. } if path == "/zookeeper/config"),
        "the watch on /zookeeper/config fired: {event:?}"
    );
    for spare in [3, 4] {
        ensemble.servers[spare]
            .wait_ready(Duration::from_secs(30))
            .unwrap();
    }
    assert!(
        eventually(Duration::from_secs(5), || one_leader_and_followers(
            &ensemble,
            0..5
        )),
        "{:?}",
        modes(&ensemble, 0..5)
    );

    // 5 -> 3: the leader and another founder leave; the new servers stay.
    let leader = ensemble.wait_for_leader(Duration::from_secs(10)).unwrap();
    let other = (0..3).find(|i| *i != leader).unwrap();
    let leaving = format!("{},{}", leader + 1, other + 1);
    let keeper = (0..3).find(|i| *i != leader && *i != other).unwrap();
    let mut admin = super_session(&ensemble, keeper);
    let asked = Instant::now();
    let shrunk = admin.call(&reconfig(None, Some(leaving))).unwrap();
    let config = data_of(shrunk).expect("reconfig answers the new configuration");
    let mut remaining = vec![keeper as u64 + 1, 4, 5];
    remaining.sort();
    assert_eq!(participants(&config), remaining);
    // The servers that left are stopped, as an operator would.
    ensemble.kill(leader);
    ensemble.kill(other);
    let new_leader = ensemble.wait_for_leader(Duration::from_secs(10)).unwrap();
    println!(
        "5 -> 3 voters: server.{} leads {:?} after the request",
        new_leader + 1,
        asked.elapsed()
    );
    assert!(remaining.contains(&(new_leader as u64 + 1)));
    let before = load.acknowledged();
    std::thread::sleep(Duration::from_secs(1));
    assert!(load.acknowledged() > before, "writes go on with 3 voters");

    // Each server writes the membership beside its zoo.cfg, as ZooKeeper does.
    let version = String::from_utf8_lossy(&config)
        .lines()
        .find_map(|l| l.strip_prefix("version=").map(str::to_string))
        .unwrap();
    let running: Vec<usize> = (0..5)
        .filter(|i| ensemble.servers[*i].is_running())
        .collect();
    for &i in &running {
        let file = ensemble.servers[i]
            .dir
            .join(format!("zoo.cfg.dynamic.{version}"));
        assert!(
            eventually(Duration::from_secs(5), || std::fs::read(&file)
                .is_ok_and(|text| participants(&text) == remaining)),
            "{} holds the new membership",
            file.display()
        );
    }
    // The membership is durable: each server restarts into it.
    for &i in &running {
        ensemble.kill(i);
        ensemble.restart(i).unwrap();
    }
    ensemble.wait_for_leader(Duration::from_secs(10)).unwrap();

    let acknowledged = load.stop();
    println!("{} writes acknowledged", acknowledged.len());
    ensemble.wait_converged(Duration::from_secs(30)).unwrap();
    assert_served_everywhere(&ensemble, &acknowledged);
}

/// Copies a directory tree (a stopped server's data).
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_standalone_servers_data_founds_an_ensemble() {
    let _turn = turn();
    // A standalone server's data, as `roost import` also writes it.
    let standalone_dir = tempfile::tempdir().unwrap();
    let mut standalone = RoostProcess::start(standalone_dir.path(), &[]).unwrap();
    let mut expected = BTreeSet::new();
    {
        let mut client = RawClient::connect(standalone.addr).unwrap();
        assert!(is_ok(
            &client
                .call(&create("/load", b"", CreateMode::Persistent))
                .unwrap()
        ));
        for n in 0..200 {
            let path = format!("/load/standalone-{n}");
            assert!(is_ok(
                &client
                    .call(&create(&path, b"x", CreateMode::Persistent))
                    .unwrap()
            ));
            expected.insert(path);
        }
    }
    // Killed, not stopped: the last writes are in its log only.
    standalone.kill();

    let mut ensemble = Ensemble::start_with_spares(0, 3, &[], &[]).unwrap();
    copy_tree(
        &standalone_dir.path().join("data"),
        &ensemble.servers[0].dir.join("data"),
    );
    let started = Instant::now();
    for i in 0..3 {
        ensemble.start_spare(i).unwrap();
    }
    for i in 0..3 {
        ensemble.servers[i]
            .wait_ready(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e}\n{}", ensemble.log_tails(20)));
    }
    println!(
        "3 servers serve the standalone data after {:?}",
        started.elapsed()
    );
    // Server 2 and 3 joined as voters: writes commit with server 1 gone.
    assert!(
        eventually(Duration::from_secs(10), || one_leader_and_followers(
            &ensemble,
            0..3
        )),
        "{:?}",
        modes(&ensemble, 0..3)
    );
    std::thread::sleep(Duration::from_millis(500));
    ensemble.kill(0);
    let written = Instant::now();
    let mut client = None;
    let mut n = 0;
    while n < 50 && written.elapsed() < Duration::from_secs(20) {
        let Some(c) = client.as_mut() else {
            client = RawClient::connect(ensemble.addr(1 + n % 2)).ok();
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let path = format!("/load/ensemble-{n}");
        match c.call(&create(&path, b"x", CreateMode::Persistent)) {
            Ok(reply) if is_ok(&reply) => {
                expected.insert(path);
                n += 1;
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => client = None,
        }
    }
    assert_eq!(
        n,
        50,
        "writes commit on servers 2 and 3 alone\n{}",
        ensemble.log_tails(20)
    );
    ensemble.restart(0).unwrap();
    ensemble.wait_converged(Duration::from_secs(30)).unwrap();
    assert_served_everywhere(&ensemble, &expected);
}
