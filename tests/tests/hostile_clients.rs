//! Slow and hostile peers hold a bounded amount of a server and disturb
//! nothing else: a client that never reads its events, setWatches beyond the
//! watch limit, unbounded addAuth, and garbage or oversized frames on the
//! peer port of an ensemble.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use roost_proto::*;
use roost_tests::ensemble::Ensemble;
use roost_tests::raw::{Frame, RawClient};
use roost_tests::requests::*;
use roost_tests::servers::RoostProcess;

/// Resident memory of a process, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

fn add_watch(path: &str, mode: AddWatchMode) -> Request {
    Request::AddWatch(AddWatchRequest {
        path: path.into(),
        mode: mode.code(),
    })
}

#[test]
fn a_client_that_never_reads_its_events_is_closed_and_holds_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let server = RoostProcess::start(dir.path(), &[]).unwrap();
    // A long path makes every event ~330 bytes: 100,000 of them are far
    // more than the socket buffers and the 16 MiB default bound hold.
    let path = format!("/slow/{}", "n".repeat(290));
    let mut writer = RawClient::connect(server.addr).unwrap();
    writer
        .call(&create("/slow", b"", CreateMode::Persistent))
        .unwrap();
    writer
        .call(&create(&path, b"", CreateMode::Persistent))
        .unwrap();
    let mut slow = RawClient::connect(server.addr).unwrap();
    slow.set_receive_buffer(64 << 10).unwrap();
    let watched = slow
        .call(&add_watch("/slow", AddWatchMode::PersistentRecursive))
        .unwrap();
    assert_eq!(watched.err(), Some(ErrorCode::Ok));
    let mut bystander = RawClient::connect(server.addr).unwrap();
    let rss_before = rss_bytes(server.pid());
    let mut rss_max = rss_before;

    // 100,000 setData calls, 200 in flight; the slow client reads nothing.
    const SETS: usize = 100_000;
    let mut in_flight = std::collections::VecDeque::new();
    for i in 0..SETS {
        in_flight.push_back(writer.send(&set(&path, b"v", -1)).unwrap());
        if in_flight.len() == 200 {
            let xid = in_flight.pop_front().unwrap();
            assert_eq!(writer.reply_to(xid).unwrap().err(), Some(ErrorCode::Ok));
        }
        if i % 10_000 == 0 {
            rss_max = rss_max.max(rss_bytes(server.pid()));
        }
    }
    for xid in in_flight {
        assert_eq!(writer.reply_to(xid).unwrap().err(), Some(ErrorCode::Ok));
    }
    rss_max = rss_max.max(rss_bytes(server.pid()));

    // The server closed the slow connection: what it still reads ends
    // before all the events, at EOF.
    slow.set_read_timeout(Duration::from_secs(5)).unwrap();
    let mut events = 0;
    while let Ok(Some(frame)) = slow.next_frame() {
        if matches!(frame, Frame::Notification { .. }) {
            events += 1;
        }
    }
    let log = std::fs::read_to_string(dir.path().join("roost.log")).unwrap_or_default();
    assert!(
        events < SETS,
        "the slow client got all {events} events\n{log}"
    );
    // Everyone else is unaffected.
    let stat = stat_of(&bystander.call(&exists(&path, false)).unwrap()).unwrap();
    assert_eq!(stat.version, SETS as i32);
    assert_eq!(
        writer.call(&get(&path, false)).unwrap().err(),
        Some(ErrorCode::Ok)
    );
    let grown = rss_max.saturating_sub(rss_before);
    eprintln!("server RSS grew by {} MiB", grown >> 20);
    assert!(
        grown < 96 << 20,
        "server memory grew by {} MiB while a client did not read",
        grown >> 20
    );
}

#[test]
fn set_watches_beyond_the_watch_limit_closes_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = RoostProcess::start(dir.path(), &["maxWatchesPerConnection=100"]).unwrap();
    let set_watches = |count: usize| {
        Request::SetWatches2(SetWatches2 {
            relative_zxid: 0,
            data_watches: Vec::new(),
            // Exist watches on missing nodes: all registered, none fire.
            exist_watches: (0..count).map(|i| format!("/missing-{i}")).collect(),
            child_watches: Vec::new(),
            persistent_watches: Vec::new(),
            persistent_recursive_watches: Vec::new(),
        })
    };
    let mut within = RawClient::connect(server.addr).unwrap();
    let reply = within.call(&set_watches(100)).unwrap();
    assert_eq!(reply.err(), Some(ErrorCode::Ok));
    assert!(four_letter_word_text(server.addr, "wchs").contains("Total watches:100"));
    let mut beyond = RawClient::connect(server.addr).unwrap();
    beyond.send(&set_watches(101)).unwrap();
    assert!(beyond.is_closed_by_server());
    // The connection within the limit still works.
    assert_eq!(
        within.call(&exists("/", false)).unwrap().err(),
        Some(ErrorCode::Ok)
    );
}

fn four_letter_word_text(addr: SocketAddr, word: &str) -> String {
    roost_tests::raw::four_letter_word(addr, word).unwrap()
}

#[test]
fn identities_per_connection_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let server = RoostProcess::start(dir.path(), &[]).unwrap();
    let mut client = RawClient::connect(server.addr).unwrap();
    let auth = |user: usize| {
        Request::Auth(AuthPacket {
            auth_type: 0,
            scheme: "digest".into(),
            auth: Bytes::from(format!("user{user}:secret")),
        })
    };
    // The address is one identity; 31 users fit beside it.
    for user in 0..31 {
        assert_eq!(
            client.call(&auth(user)).unwrap().err(),
            Some(ErrorCode::Ok),
            "user {user}"
        );
    }
    assert_eq!(
        client.call(&auth(31)).unwrap().err(),
        Some(ErrorCode::AuthFailed)
    );
    assert!(client.is_closed_by_server());
}

/// Sends `bytes` to a peer port and tells whether the server closed the
/// connection (rather than waiting for more) within a few seconds.
fn peer_port_closes_after(addr: SocketAddr, bytes: &[u8]) -> bool {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = stream.write_all(bytes);
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn garbage_and_oversized_frames_on_the_peer_port_close_only_that_connection() {
    let ensemble = Ensemble::start(3, &[], &[]).unwrap();
    let leader = ensemble.wait_for_leader(Duration::from_secs(10)).unwrap();
    let mut client = RawClient::connect(ensemble.addr(leader)).unwrap();
    client
        .call(&create("/before", b"1", CreateMode::Persistent))
        .unwrap();
    for target in 0..3 {
        let peer = ensemble.peer_addr(target);
        // A length far over any frame the bounds allow: refused at once.
        let started = Instant::now();
        assert!(peer_port_closes_after(peer, &u32::MAX.to_le_bytes()));
        assert!(started.elapsed() < Duration::from_secs(4));
        // A length in bounds followed by bytes that decode to nothing.
        let mut garbage = 64u32.to_le_bytes().to_vec();
        garbage.extend((0..64u8).map(|b| b.wrapping_mul(151).wrapping_add(7)));
        assert!(peer_port_closes_after(peer, &garbage));
        // Plain text, as a stranger's HTTP probe would send.
        assert!(peer_port_closes_after(
            peer,
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        ));
    }
    // The ensemble goes on as before: same leader, writes and reads work
    // through every server.
    assert_eq!(
        ensemble.wait_for_leader(Duration::from_secs(1)).unwrap(),
        leader
    );
    for i in 0..3 {
        let mut c = RawClient::connect(ensemble.addr(i)).unwrap();
        let reply = c
            .call(&create(
                &format!("/after-{i}"),
                b"x",
                CreateMode::Persistent,
            ))
            .unwrap();
        assert_eq!(reply.err(), Some(ErrorCode::Ok), "write through server {i}");
        assert!(data_of(c.call(&get("/before", false)).unwrap()).is_some());
    }
}

#[test]
fn pipelined_reads_of_large_nodes_wait_for_the_client_to_read() {
    let dir = tempfile::tempdir().unwrap();
    let server = RoostProcess::start(dir.path(), &[]).unwrap();
    let mut client = RawClient::connect(server.addr).unwrap();
    client.set_receive_buffer(64 << 10).unwrap();
    let value = vec![7u8; 1_000_000];
    client
        .call(&create("/large", &value, CreateMode::Persistent))
        .unwrap();
    let rss_before = rss_bytes(server.pid());
    // 500 reads of a 1 MB node sent at once (500 MB of replies), nothing read yet.
    const READS: usize = 500;
    let reads: Vec<Request> = (0..READS).map(|_| get("/large", false)).collect();
    let xids = client.send_together(&reads).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let grown = rss_bytes(server.pid()).saturating_sub(rss_before);
    eprintln!("server RSS grew by {} MiB", grown >> 20);
    // Every reply comes, in order, as the client reads them.
    for xid in xids {
        let reply = client.reply_to(xid).unwrap();
        assert_eq!(data_of(reply).map(|d| d.len()), Some(value.len()));
    }
    assert!(
        grown < 64 << 20,
        "server memory grew by {} MiB holding replies the client had not read",
        grown >> 20
    );
}
