//! Black-box tests over raw TCP: handshakes, limits, bad input, sessions,
//! pipelining and the ZooKeeper 3.9 behaviours the 3.8 reference lacks.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use roost_proto::codec::JuteWrite;
use roost_proto::*;
use roost_tests::raw::{four_letter_word, Frame, RawClient};
use roost_tests::requests::*;
use roost_tests::servers::RoostServer;

#[test]
fn legacy_44_byte_handshake_gets_36_byte_answer_and_works() {
    let server = RoostServer::start().unwrap();
    let mut client = RawClient::open(server.addr).unwrap();
    let request = ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: 0,
        timeout_ms: 30_000,
        session_id: 0,
        passwd: Bytes::from_static(&[0; 16]),
        read_only: None,
    };
    assert_eq!(request.to_bytes().len(), 44);
    let response = client.handshake(&request).unwrap().unwrap();
    assert_eq!(
        response.read_only, None,
        "legacy clients get no readOnly byte"
    );
    assert_eq!(response.to_bytes().len(), 36);
    assert_ne!(response.session_id, 0);
    assert_eq!(response.passwd.len(), 16);
    let stat = ok_body(client.call(&exists("/", false)).unwrap());
    assert!(matches!(stat, Response::Stat(s) if s.num_children == 1));
}

#[test]
fn read_only_request_is_served_read_write() {
    let server = RoostServer::start().unwrap();
    let mut client = RawClient::open(server.addr).unwrap();
    let response = client
        .handshake(&ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            timeout_ms: 30_000,
            session_id: 0,
            passwd: Bytes::from_static(&[0; 16]),
            read_only: Some(true),
        })
        .unwrap()
        .unwrap();
    assert_eq!(response.read_only, Some(false));
    assert_eq!(response.to_bytes().len(), 37);
}

#[test]
fn session_timeout_is_negotiated_within_bounds() {
    let server = RoostServer::start().unwrap();
    let low = RawClient::connect_as(server.addr, 0, Bytes::from_static(&[0; 16]), 1).unwrap();
    assert_eq!(low.timeout_ms, 4000);
    let high =
        RawClient::connect_as(server.addr, 0, Bytes::from_static(&[0; 16]), 10_000_000).unwrap();
    assert_eq!(high.timeout_ms, 40_000);
}

#[test]
fn client_ahead_of_the_server_is_refused_without_answer() {
    let server = RoostServer::start().unwrap();
    let mut client = RawClient::open(server.addr).unwrap();
    let answer = client
        .handshake(&ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0x7fff_ffff_0000_0000,
            timeout_ms: 30_000,
            session_id: 0,
            passwd: Bytes::from_static(&[0; 16]),
            read_only: Some(false),
        })
        .unwrap();
    assert_eq!(answer, None);
}

#[test]
fn unknown_opcode_and_lone_check_get_unimplemented_then_close() {
    let server = RoostServer::start().unwrap();
    let mut client = RawClient::connect(server.addr).unwrap();
    let mut frame = BytesMut::new();
    frame.put_jute_i32(8);
    frame.put_jute_i32(7);
    frame.put_jute_i32(999);
    client.send_bytes(&frame).unwrap();
    let reply = client.next_frame().unwrap().unwrap();
    assert_eq!(
        reply,
        Frame::Reply {
            xid: 7,
            zxid: -1,
            err: ErrorCode::Unimplemented.code(),
            body: None
        }
    );
    assert!(client.is_closed_by_server());

    let mut client = RawClient::connect(server.addr).unwrap();
    let reply = client
        .call(&Request::Check(CheckVersionRequest {
            path: "/".into(),
            version: 0,
        }))
        .unwrap();
    assert_eq!(reply.err(), Some(ErrorCode::Unimplemented));
    assert_eq!(reply_zxid(&reply), -1);
    assert!(client.is_closed_by_server());
}

#[test]
fn oversized_and_malformed_frames_close_only_their_connection() {
    let server = RoostServer::start_with(|c| c.max_frame_bytes = 1024).unwrap();
    let mut bystander = RawClient::connect(server.addr).unwrap();
    bystander
        .call(&create("/kept", "x", CreateMode::Ephemeral))
        .unwrap();

    let mut big = RawClient::connect(server.addr).unwrap();
    big.send_bytes(&1025u32.to_be_bytes()).unwrap();
    assert!(big.is_closed_by_server());

    // A getData whose path length claims more bytes than the frame holds.
    let mut bad = RawClient::connect(server.addr).unwrap();
    let mut frame = BytesMut::new();
    frame.put_jute_i32(16);
    frame.put_jute_i32(1);
    frame.put_jute_i32(OpCode::GetData.code());
    frame.put_jute_i32(1000);
    frame.put_jute_i32(0);
    bad.send_bytes(&frame).unwrap();
    assert!(bad.is_closed_by_server());

    // A frame too short for its header.
    let mut short = RawClient::connect(server.addr).unwrap();
    short.send_bytes(&[0, 0, 0, 2, 0, 1]).unwrap();
    assert!(short.is_closed_by_server());

    let data = ok_body(bystander.call(&get("/kept", false)).unwrap());
    assert!(matches!(data, Response::GetData(Some(d), _) if &d[..] == b"x"));
}

#[test]
fn max_client_cnxns_limits_connections_per_ip() {
    let server = RoostServer::start_with(|c| c.max_client_cnxns = 2).unwrap();
    let mut first = RawClient::connect(server.addr).unwrap();
    let _second = RawClient::connect(server.addr).unwrap();
    let mut third = RawClient::open(server.addr).unwrap();
    assert!(third.is_closed_by_server());
    assert!(matches!(
        ok_body(first.call(&exists("/", false)).unwrap()),
        Response::Stat(_)
    ));
    drop(first);
    assert!(eventually(Duration::from_secs(5), || RawClient::connect(
        server.addr
    )
    .is_ok()));
}

#[test]
fn four_letter_words_follow_the_whitelist() {
    let open = RoostServer::start().unwrap();
    assert_eq!(four_letter_word(open.addr, "ruok").unwrap(), "imok");
    assert_eq!(four_letter_word(open.addr, "isro").unwrap(), "rw");
    let srvr = four_letter_word(open.addr, "srvr").unwrap();
    assert!(srvr.starts_with("Zookeeper version: 3.9."), "{srvr}");
    assert!(srvr.contains("Mode: standalone"), "{srvr}");
    let envi = four_letter_word(open.addr, "envi").unwrap();
    assert!(envi.contains("\nzookeeper.version=3.9."), "{envi}");
    let mntr = four_letter_word(open.addr, "mntr").unwrap();
    assert!(mntr.contains("zk_server_state\tstandalone\n"), "{mntr}");
    assert!(mntr.contains("zk_znode_count\t4\n"), "{mntr}");

    let strict = RoostServer::start_with(|c| c.four_letter_words = vec!["srvr".into()]).unwrap();
    assert_eq!(
        four_letter_word(strict.addr, "ruok").unwrap(),
        "ruok is not executed because it is not in the whitelist.\n"
    );
    assert!(four_letter_word(strict.addr, "srvr")
        .unwrap()
        .contains("Mode: standalone"));
}

#[test]
fn watch_commands_report_watches() {
    let server = RoostServer::start().unwrap();
    let mut client = RawClient::connect(server.addr).unwrap();
    client.call(&exists("/w1", true)).unwrap();
    client.call(&get("/zookeeper", true)).unwrap();
    let wchs = four_letter_word(server.addr, "wchs").unwrap();
    assert!(
        wchs.starts_with("1 connections watching 2 paths\nTotal watches:2"),
        "{wchs}"
    );
    let wchc = four_letter_word(server.addr, "wchc").unwrap();
    assert!(
        wchc.contains(&format!("0x{:x}\n\t/w1\n\t/zookeeper\n", client.session_id)),
        "{wchc}"
    );
    let cons = four_letter_word(server.addr, "cons").unwrap();
    assert!(
        cons.contains(&format!("sid=0x{:x}", client.session_id)),
        "{cons}"
    );
}

#[test]
fn pipelined_requests_are_answered_in_order_and_read_their_writes() {
    let server = RoostServer::start().unwrap();
    let mut client = RawClient::connect(server.addr).unwrap();
    let mut xids = Vec::new();
    for i in 0..200 {
        let path = format!("/p{i}");
        xids.push(
            client
                .send(&create(&path, i.to_string(), CreateMode::Persistent))
                .unwrap(),
        );
        xids.push(client.send(&get(&path, false)).unwrap());
    }
    for (n, xid) in xids.iter().enumerate() {
        let frame = client.next_frame().unwrap().unwrap();
        let Frame::Reply {
            xid: got,
            err,
            body,
            ..
        } = frame
        else {
            panic!("unexpected {frame:?}");
        };
        assert_eq!(got, *xid, "replies in request order");
        assert_eq!(err, 0);
        if n % 2 == 1 {
            let Some(Response::GetData(Some(data), _)) = body else {
                panic!("getData body");
            };
            assert_eq!(String::from_utf8_lossy(&data), (n / 2).to_string());
        }
    }
}

#[test]
fn notifications_carry_the_zxid_of_their_transaction() {
    let server = RoostServer::start().unwrap();
    let mut watcher = RawClient::connect(server.addr).unwrap();
    let mut writer = RawClient::connect(server.addr).unwrap();
    watcher.call(&exists("/z", true)).unwrap();
    let created = writer
        .call(&create("/z", "", CreateMode::Persistent))
        .unwrap();
    let event = watcher.next_event().unwrap();
    assert_eq!(
        event,
        Frame::Notification {
            zxid: reply_zxid(&created),
            event: EventType::NodeCreated,
            path: "/z".into()
        }
    );
}

#[test]
fn create2_inside_multi_returns_its_stat() {
    let server = RoostServer::start().unwrap();
    let mut client = RawClient::connect(server.addr).unwrap();
    let request = |opcode| MultiOp::Create {
        opcode,
        request: CreateRequest {
            path: format!("/m{}", opcode as i32),
            data: Some(Bytes::from_static(b"abc")),
            acl: vec![Acl::new(perms::ALL, "world", "anyone")],
            flags: 0,
            ttl: -1,
        },
    };
    let body = ok_body(
        client
            .call(&Request::Multi(Ok(vec![
                request(OpCode::Create),
                request(OpCode::Create2),
            ])))
            .unwrap(),
    );
    let Response::Multi(results) = body else {
        panic!("multi body");
    };
    assert!(matches!(&results[0], MultiResult::Create(p) if p == "/m1"));
    assert!(matches!(&results[1], MultiResult::Create2(p, s) if p == "/m15" && s.data_length == 3));
}

#[test]
fn persistent_watch_types_can_be_checked_and_removed() {
    let server = RoostServer::start().unwrap();
    let mut client = RawClient::connect(server.addr).unwrap();
    client
        .call(&Request::AddWatch(AddWatchRequest {
            path: "/r".into(),
            mode: AddWatchMode::PersistentRecursive.code(),
        }))
        .unwrap();
    let check = |client: &mut RawClient, t: WatcherType| {
        client
            .call(&Request::CheckWatches(WatchesRequest {
                path: "/r".into(),
                watch_type: t.code(),
            }))
            .unwrap()
            .err()
    };
    assert_eq!(
        check(&mut client, WatcherType::PersistentRecursive),
        Some(ErrorCode::Ok)
    );
    assert_eq!(
        check(&mut client, WatcherType::Persistent),
        Some(ErrorCode::NoWatcher)
    );
    let removed = client
        .call(&Request::RemoveWatches(WatchesRequest {
            path: "/r".into(),
            watch_type: WatcherType::PersistentRecursive.code(),
        }))
        .unwrap();
    assert_eq!(removed.err(), Some(ErrorCode::Ok));
    assert_eq!(
        check(&mut client, WatcherType::Any),
        Some(ErrorCode::NoWatcher)
    );
}

#[test]
fn expired_session_loses_its_ephemerals_and_cannot_reattach() {
    let server = RoostServer::start_with(|c| c.tick_time_ms = 50).unwrap();
    let mut observer = RawClient::connect(server.addr).unwrap();
    let mut doomed =
        RawClient::connect_as(server.addr, 0, Bytes::from_static(&[0; 16]), 200).unwrap();
    assert_eq!(doomed.timeout_ms, 200);
    doomed
        .call(&create("/e", "", CreateMode::Ephemeral))
        .unwrap();
    observer.call(&exists("/e", true)).unwrap();
    let (id, password) = (doomed.session_id, doomed.password.clone());
    // The doomed client goes silent; the observer keeps its own session alive.
    let event = loop {
        observer.send(&Request::Ping).unwrap();
        match observer.next_frame().unwrap().unwrap() {
            Frame::Reply { .. } => std::thread::sleep(Duration::from_millis(100)),
            event => break event,
        }
    };
    assert!(
        matches!(event, Frame::Notification { event: EventType::NodeDeleted, ref path, .. } if path == "/e")
    );
    assert!(
        doomed.is_closed_by_server(),
        "the expired session's connection is closed"
    );
    let mut again = RawClient::open(server.addr).unwrap();
    let answer = again
        .handshake(&ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            timeout_ms: 200,
            session_id: id,
            passwd: password,
            read_only: Some(false),
        })
        .unwrap()
        .unwrap();
    assert_eq!(
        answer.session_id, 0,
        "expired sessions get the zeroed answer"
    );
    assert_eq!(answer.timeout_ms, 0);
}

#[test]
fn auth_with_unknown_scheme_fails_and_closes() {
    let server = RoostServer::start().unwrap();
    let mut client = RawClient::connect(server.addr).unwrap();
    let reply = client
        .call(&Request::Auth(AuthPacket {
            auth_type: 0,
            scheme: "bogus".into(),
            auth: Bytes::from_static(b"x"),
        }))
        .unwrap();
    assert_eq!(
        reply,
        Frame::Reply {
            xid: xid::AUTH,
            zxid: 0,
            err: ErrorCode::AuthFailed.code(),
            body: None
        }
    );
    assert!(client.is_closed_by_server());
}

#[test]
fn super_digest_grants_everything() {
    let digest = roost_core::acl::digest_id(b"super:admin");
    let server = RoostServer::start_with(|c| c.super_digest = Some(digest)).unwrap();
    let mut owner = RawClient::connect(server.addr).unwrap();
    owner
        .call(&Request::Create {
            opcode: OpCode::Create,
            request: CreateRequest {
                path: "/locked".into(),
                data: Some(Bytes::from_static(b"s")),
                acl: vec![Acl::new(perms::ALL, "digest", "nobody:x")],
                flags: 0,
                ttl: -1,
            },
        })
        .unwrap();
    assert_eq!(
        owner.call(&get("/locked", false)).unwrap().err(),
        Some(ErrorCode::NoAuth)
    );
    let mut admin = RawClient::connect(server.addr).unwrap();
    admin
        .call(&Request::Auth(AuthPacket {
            auth_type: 0,
            scheme: "digest".into(),
            auth: Bytes::from_static(b"super:admin"),
        }))
        .unwrap();
    assert!(matches!(
        ok_body(admin.call(&get("/locked", false)).unwrap()),
        Response::GetData(..)
    ));
}

#[test]
fn empty_containers_and_expired_ttl_nodes_are_reaped() {
    let server = RoostServer::start_with(|c| c.container_check_interval_ms = 50).unwrap();
    let mut client = RawClient::connect(server.addr).unwrap();
    let flavoured = |opcode, path: &str, flags: i32, ttl: i64| Request::Create {
        opcode,
        request: CreateRequest {
            path: path.into(),
            data: Some(Bytes::new()),
            acl: vec![Acl::new(perms::ALL, "world", "anyone")],
            flags,
            ttl,
        },
    };
    client
        .call(&flavoured(OpCode::CreateContainer, "/c", 4, -1))
        .unwrap();
    client
        .call(&create("/c/kid", "", CreateMode::Persistent))
        .unwrap();
    client
        .call(&flavoured(OpCode::CreateTtl, "/t", 5, 100))
        .unwrap();
    client.call(&exists("/c", true)).unwrap();
    client
        .call(&Request::Delete(DeleteRequest {
            path: "/c/kid".into(),
            version: -1,
        }))
        .unwrap();
    let deleted = client.next_event().unwrap();
    assert!(
        matches!(deleted, Frame::Notification { event: EventType::NodeDeleted, ref path, .. } if path == "/c")
    );
    assert!(eventually(Duration::from_secs(5), || {
        client.call(&exists("/t", false)).unwrap().err() == Some(ErrorCode::NoNode)
    }));
}
