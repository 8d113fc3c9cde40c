//! Legal but heavy loads that must never stop a server: many sessions
//! keeping 1 MB writes in flight (standalone and ensemble), and a multi of
//! 10,000 operations.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use roost_proto::*;
use roost_tests::ensemble::Ensemble;
use roost_tests::raw::{Frame, RawClient};
use roost_tests::requests::*;
use roost_tests::servers::RoostProcess;

/// Just under ZooKeeper's default `jute.maxbuffer` once framed.
const VALUE_BYTES: usize = 1_000_000;
const SESSIONS: usize = 24;
const IN_FLIGHT: usize = 4;

/// The value session `session` writes as the `k`th of round `round`.
fn value(session: usize, round: usize, k: usize) -> Vec<u8> {
    vec![(session * 31 + round * IN_FLIGHT + k) as u8; VALUE_BYTES]
}

/// `SESSIONS` sessions, spread over `servers`, each keeping `IN_FLIGHT` 1 MB
/// setData calls in flight for `rounds` rounds; every reply must be a success
/// and every node must read back as its last write.
fn write_megabyte_values(servers: &[SocketAddr], rounds: usize) -> anyhow::Result<()> {
    let workers: Vec<_> = (0..SESSIONS)
        .map(|session| {
            let addr = servers[session % servers.len()];
            std::thread::spawn(move || -> anyhow::Result<()> {
                let mut client = RawClient::connect(addr)?;
                client.set_read_timeout(Duration::from_secs(60))?;
                let path = format!("/big-{session}");
                let created = client.call(&create(&path, b"", CreateMode::Persistent))?;
                if created.err().is_some_and(|e| e != ErrorCode::Ok) {
                    bail!("create {path}: {created:?}");
                }
                for round in 0..rounds {
                    let xids: Vec<i32> = (0..IN_FLIGHT)
                        .map(|k| client.send(&set(&path, &value(session, round, k), -1)))
                        .collect::<anyhow::Result<_>>()?;
                    for xid in xids {
                        let reply = client.reply_to(xid)?;
                        if reply.err() != Some(ErrorCode::Ok) {
                            bail!("set {path} (round {round}): {reply:?}");
                        }
                    }
                    let data = data_of(client.call(&get(&path, false))?);
                    let last = value(session, round, IN_FLIGHT - 1);
                    if data.as_deref() != Some(last.as_slice()) {
                        bail!("{path} does not read back its last write in round {round}");
                    }
                }
                Ok(())
            })
        })
        .collect();
    for (session, worker) in workers.into_iter().enumerate() {
        worker
            .join()
            .map_err(|_| anyhow::anyhow!("session {session} panicked"))?
            .with_context(|| format!("session {session}"))?;
    }
    Ok(())
}

#[test]
fn megabyte_writes_from_many_sessions_are_all_acknowledged_standalone() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = RoostProcess::start(dir.path(), &[]).unwrap();
    write_megabyte_values(&[server.addr], 3).unwrap();
    assert!(server.is_running());
    // The server is still the same process, answering.
    server.wait_ready(Duration::from_secs(1)).unwrap();
}

#[test]
fn megabyte_writes_from_many_sessions_are_all_acknowledged_in_an_ensemble() {
    let ensemble = Ensemble::start(3, &[], &[]).unwrap();
    let addrs: Vec<SocketAddr> = (0..3).map(|i| ensemble.addr(i)).collect();
    let before = ensemble.wait_for_leader(Duration::from_secs(10)).unwrap();
    write_megabyte_values(&addrs, 2)
        .with_context(|| ensemble.log_tails(20))
        .unwrap();
    ensemble.wait_converged(Duration::from_secs(30)).unwrap();
    // Every server holds every value, and the leader never changed.
    for i in 0..3 {
        let mut client = RawClient::connect(ensemble.addr(i)).unwrap();
        for session in 0..SESSIONS {
            let data = data_of(
                client
                    .call(&get(&format!("/big-{session}"), false))
                    .unwrap(),
            );
            assert_eq!(
                data.as_deref(),
                Some(value(session, 1, IN_FLIGHT - 1).as_slice())
            );
        }
    }
    assert_eq!(
        ensemble.wait_for_leader(Duration::from_secs(1)).unwrap(),
        before
    );
}

fn multi_creates(parent: &str, count: usize) -> Request {
    Request::Multi(Ok((0..count)
        .map(|i| MultiOp::Create {
            opcode: OpCode::Create,
            request: CreateRequest {
                path: format!("{parent}/n{i}"),
                data: Some(bytes::Bytes::from_static(b"x")),
                acl: vec![Acl::new(perms::ALL, "world", "anyone")],
                flags: CreateMode::Persistent.code(),
                ttl: -1,
            },
        })
        .collect()))
}

#[test]
fn a_multi_of_ten_thousand_ops_applies_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let server = RoostProcess::start(dir.path(), &[]).unwrap();
    let mut client = RawClient::connect(server.addr).unwrap();
    client
        .call(&create("/m", b"", CreateMode::Persistent))
        .unwrap();
    let reply = client.call(&multi_creates("/m", 10_000)).unwrap();
    let Frame::Reply {
        err: 0,
        body: Some(Response::Multi(results)),
        ..
    } = reply
    else {
        panic!("multi failed: {reply:?}");
    };
    assert_eq!(results.len(), 10_000);
    assert!(results.iter().all(|r| matches!(r, MultiResult::Create(_))));
    let stat = stat_of(&client.call(&exists("/m", false)).unwrap()).unwrap();
    assert_eq!(stat.num_children, 10_000);
    // The same 10,000 creates again all fail on the first: nothing changes.
    let reply = client.call(&multi_creates("/m", 10_000)).unwrap();
    let Frame::Reply {
        body: Some(Response::Multi(results)),
        ..
    } = reply
    else {
        panic!("multi reply: {reply:?}");
    };
    assert_eq!(results[0], MultiResult::Error(ErrorCode::NodeExists));
    assert!(results[1..]
        .iter()
        .all(|r| *r == MultiResult::Error(ErrorCode::RuntimeInconsistency)));
    let after = stat_of(&client.call(&exists("/m", false)).unwrap()).unwrap();
    assert_eq!(after, stat);
}

/// `zk_outstanding_requests` from `mntr`.
fn outstanding_requests(addr: SocketAddr) -> Option<usize> {
    roost_tests::servers::four_letter(addr, "mntr")
        .lines()
        .find_map(|l| l.strip_prefix("zk_outstanding_requests\t"))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn past_the_global_request_budget_connections_wait_in_their_sockets() {
    const CLIENTS: usize = 40;
    const PIPELINED: usize = 25;
    const LIMIT: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let server =
        RoostProcess::start(dir.path(), &[&format!("globalOutstandingLimit={LIMIT}")]).unwrap();
    let addr = server.addr;
    let mut setup = RawClient::connect(addr).unwrap();
    setup
        .call(&create("/budget", b"", CreateMode::Persistent))
        .unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut seen = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                seen = seen.max(outstanding_requests(addr).unwrap_or(0));
            }
            seen
        })
    };
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            std::thread::spawn(move || {
                let mut client = RawClient::connect(addr).unwrap();
                let path = format!("/budget/c{c}");
                client
                    .call(&create(&path, b"", CreateMode::Persistent))
                    .unwrap();
                // Everything at once: the server takes them as its budget allows.
                let xids: Vec<i32> = (0..PIPELINED)
                    .map(|k| client.send(&set(&path, &[k as u8; 512], -1)).unwrap())
                    .collect();
                for xid in xids {
                    assert_eq!(client.reply_to(xid).unwrap().err(), Some(ErrorCode::Ok));
                }
                stat_of(&client.call(&exists(&path, false)).unwrap())
                    .unwrap()
                    .version
            })
        })
        .collect();
    for client in clients {
        assert_eq!(client.join().unwrap(), PIPELINED as i32);
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    // Past the budget only connections with nothing in flight get one in.
    assert!(
        peak <= LIMIT + 1 + CLIENTS,
        "{peak} requests in flight with a budget of {LIMIT}"
    );
}
