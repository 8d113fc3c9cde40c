//! Durability: acknowledged writes survive SIGKILL at random moments; torn
//! tails are cut and mid-log corruption refuses to start; a full disk stops
//! writes (not reads, not the server) until space returns; a failed fsync
//! stops the server.
//!
//! The crash test prints its seed; `ROOST_CRASH_SEED=<seed>` replays a run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use roost_proto::*;
use roost_storage::{FaultyFs, StdFs};
use roost_tests::raw::{Frame, RawClient};
use roost_tests::requests::{create, data_of, get};
use roost_tests::rng::Rng;
use roost_tests::servers::{RoostProcess, RoostServer};

/// Writes with up to `depth` creates in flight until the server dies; returns
/// every acknowledged (path, data, zxid).
fn write_until_killed(
    client: &mut RawClient,
    round: usize,
    depth: usize,
) -> Vec<(String, Vec<u8>, i64)> {
    let mut acked = Vec::new();
    let mut in_flight: std::collections::VecDeque<(i32, String, Vec<u8>)> = Default::default();
    let mut n = 0u64;
    loop {
        while in_flight.len() < depth {
            n += 1;
            let path = format!("/crash/r{round}-{n}");
            let data = format!("round {round} write {n}").into_bytes();
            match client.send(&create(&path, &data, CreateMode::Persistent)) {
                Ok(xid) => in_flight.push_back((xid, path, data)),
                Err(_) => return acked,
            }
        }
        match client.next_frame() {
            Ok(Some(Frame::Reply { xid, zxid, err, .. })) => {
                let Some((sent_xid, path, data)) = in_flight.pop_front() else {
                    return acked;
                };
                assert_eq!(xid, sent_xid, "replies in order");
                if err == 0 {
                    acked.push((path, data, zxid));
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return acked,
        }
    }
}

#[test]
fn acknowledged_writes_survive_repeated_sigkill() {
    let seed = std::env::var("ROOST_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64 | 1)
        });
    eprintln!("crash test seed: {seed} (replay with ROOST_CRASH_SEED={seed})");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_path_buf();
    if std::env::var_os("ROOST_TEST_KEEP").is_some() {
        // Keep the data of a failing run for inspection.
        eprintln!("keeping {}", data_dir.display());
        std::mem::forget(dir);
    }
    // Small segments and snapshots so rounds cross segment rolls and snapshots.
    let mut server =
        RoostProcess::start(&data_dir, &["snapCount=3000", "preAllocSize=256"]).unwrap();
    let mut acked: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut max_acked_zxid = 0i64;
    let mut survivor: Option<(i64, Bytes, String)> = None;
    let rounds = 12;
    for round in 0..rounds {
        let mut client =
            RawClient::connect_as(server.addr, 0, Bytes::from_static(&[0; 16]), 4_000).unwrap();
        client
            .call(&create("/crash", b"", CreateMode::Persistent))
            .unwrap();
        let ephemeral = format!("/crash/eph-{round}");
        client
            .call(&create(&ephemeral, b"e", CreateMode::Ephemeral))
            .unwrap();
        survivor = Some((client.session_id, client.password.clone(), ephemeral));
        let kill_after = Duration::from_millis(50 + rng.below(400));
        let pid = server.pid();
        let killer = std::thread::spawn(move || {
            std::thread::sleep(kill_after);
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        });
        let written = write_until_killed(&mut client, round, 1 + rng.below(32) as usize);
        killer.join().unwrap();
        for (path, data, zxid) in written {
            assert!(zxid > max_acked_zxid, "seed {seed}: zxids must increase");
            max_acked_zxid = zxid;
            acked.insert(path, data);
        }
        server.kill();
        server.restart().unwrap();
        // The session alive at the crash re-attaches (within its timeout) with its ephemeral.
        if let Some((id, password, ephemeral)) = survivor.take() {
            let mut back = RawClient::connect_as(server.addr, id, password, 4_000)
                .unwrap_or_else(|e| panic!("seed {seed}: live session lost across restart: {e}"));
            assert!(
                data_of(back.call(&get(&ephemeral, false)).unwrap()).is_some(),
                "seed {seed}: ephemeral {ephemeral} of a live session lost across restart"
            );
            if round + 1 < rounds {
                back.call(&Request::CloseSession).unwrap();
            } else {
                // The last one is abandoned: its ephemeral must go when it expires.
                survivor = Some((id, back.password.clone(), ephemeral));
                drop(back);
            }
        }
        let mut check = RawClient::connect(server.addr).unwrap();
        for (path, data) in &acked {
            let got = data_of(check.call(&get(path, false)).unwrap());
            assert_eq!(
                got.as_deref(),
                Some(data.as_slice()),
                "seed {seed}: acknowledged write {path} lost after restart {round}"
            );
        }
        let probe = check
            .call(&create(
                &format!("/crash/probe-{round}"),
                b"",
                CreateMode::Persistent,
            ))
            .unwrap();
        let Frame::Reply { zxid, err: 0, .. } = probe else {
            panic!("seed {seed}: write after restart failed: {probe:?}");
        };
        assert!(
            zxid > max_acked_zxid,
            "seed {seed}: zxid went back after restart"
        );
        max_acked_zxid = zxid;
        check.call(&Request::CloseSession).unwrap();
    }
    assert!(
        acked.len() > 100,
        "seed {seed}: only {} writes acknowledged",
        acked.len()
    );
    // The last survivor was abandoned after re-attaching: its ephemeral goes when it expires.
    let (_, _, ephemeral) = survivor.expect("last round's session");
    let mut check = RawClient::connect(server.addr).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while data_of(check.call(&get(&ephemeral, false)).unwrap()).is_some() {
        assert!(
            Instant::now() < deadline,
            "seed {seed}: abandoned ephemeral never expired"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Segment files of a stopped server's log, oldest first.
fn segments(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("data/log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("wal-"))
        .collect();
    files.sort();
    files
}

fn fill(server: &RoostProcess, count: usize) -> Vec<String> {
    let mut client = RawClient::connect(server.addr).unwrap();
    client
        .call(&create("/d", b"", CreateMode::Persistent))
        .unwrap();
    (0..count)
        .map(|i| {
            let path = format!("/d/n{i}");
            client
                .call(&create(&path, [b'v'; 100], CreateMode::Persistent))
                .unwrap();
            path
        })
        .collect()
}

#[test]
fn torn_tail_is_cut_and_the_server_starts() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = RoostProcess::start(dir.path(), &["preAllocSize=64"]).unwrap();
    let paths = fill(&server, 200);
    server.kill();
    // A crash in the middle of writing the next batch: garbage after the last record.
    let last = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    // Walk the records (16-byte segment header; 24-byte record header with the
    // payload length first) to the end of the written data.
    let mut end = 16;
    loop {
        let len = u32::from_le_bytes(bytes[end..end + 4].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        end += 24 + len;
    }
    for (i, b) in bytes[end..end + 300].iter_mut().enumerate() {
        *b = 0x5a ^ i as u8;
    }
    std::fs::write(&last, &bytes).unwrap();
    server.restart().unwrap();
    let mut client = RawClient::connect(server.addr).unwrap();
    for path in &paths {
        assert!(
            data_of(client.call(&get(path, false)).unwrap()).is_some(),
            "{path} lost"
        );
    }
    let log = std::fs::read_to_string(dir.path().join("roost.log")).unwrap();
    assert!(log.contains("torn write"), "the cut is logged");
}

#[test]
fn corruption_inside_the_log_refuses_to_start_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = RoostProcess::start(dir.path(), &["preAllocSize=64"]).unwrap();
    fill(&server, 1500);
    server.kill();
    let files = segments(dir.path());
    assert!(files.len() >= 3, "the log spans several segments");
    let first = &files[0];
    let mut bytes = std::fs::read(first).unwrap();
    bytes[4000] ^= 0xff;
    std::fs::write(first, &bytes).unwrap();
    let (status, stderr) = server.run_to_exit(Duration::from_secs(30)).unwrap();
    assert!(!status.success(), "a corrupt log must stop the server");
    assert!(stderr.contains(&first.display().to_string()), "{stderr}");
    assert!(stderr.contains("offset"), "{stderr}");
}

#[test]
fn full_disk_refuses_writes_keeps_reads_and_recovers() {
    let fs = FaultyFs::new(StdFs);
    let faults = fs.faults();
    let server =
        RoostServer::start_with_fs(|c| c.prealloc_bytes = 64 * 1024, Arc::new(fs)).unwrap();
    let mut client = RawClient::connect(server.addr).unwrap();
    client
        .call(&create("/before", b"kept", CreateMode::Persistent))
        .unwrap();
    faults.lock().unwrap().disk_full = true;
    let mut refused = None;
    for i in 0..20_000 {
        let reply = client
            .call(&create(
                &format!("/fill-{i}"),
                [b'x'; 200],
                CreateMode::Persistent,
            ))
            .unwrap();
        if let Some(code) = reply.err().filter(|c| *c != ErrorCode::Ok) {
            refused = Some(code);
            break;
        }
    }
    assert_eq!(
        refused,
        Some(ErrorCode::SystemError),
        "writes are refused with a clear error"
    );
    assert_eq!(
        data_of(client.call(&get("/before", false)).unwrap()).as_deref(),
        Some(&b"kept"[..]),
        "reads go on"
    );
    faults.lock().unwrap().disk_full = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = client
            .call(&create("/after", b"ok", CreateMode::Persistent))
            .unwrap();
        if reply.err() == Some(ErrorCode::Ok) {
            break;
        }
        assert!(Instant::now() < deadline, "writes never resumed: {reply:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        data_of(client.call(&get("/after", false)).unwrap()).as_deref(),
        Some(&b"ok"[..])
    );
}

#[test]
fn failed_fsync_stops_the_server() {
    let fs = FaultyFs::new(StdFs);
    let faults = fs.faults();
    let mut server = RoostServer::start_with_fs(|_| {}, Arc::new(fs)).unwrap();
    let mut client = RawClient::connect(server.addr).unwrap();
    client
        .call(&create("/a", b"", CreateMode::Persistent))
        .unwrap();
    faults.lock().unwrap().fail_next_sync_of = Some("wal-".into());
    let xid = client
        .send(&create("/b", b"", CreateMode::Persistent))
        .unwrap();
    let fatal = server.wait_for_fatal(Duration::from_secs(10));
    assert!(fatal.is_some(), "the server must stop after a failed fsync");
    // The write whose fsync failed was never acknowledged.
    let acknowledged = matches!(client.reply_to(xid), Ok(Frame::Reply { err: 0, .. }));
    assert!(!acknowledged, "an unsynced write must not be acknowledged");
}
