//! Roost reads Apache ZooKeeper's own data files (for `roost import`): a real
//! ZooKeeper 3.8 is given a varied tree, killed, and its transaction log and
//! snapshot are parsed and compared with what its clients were told.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use roost_proto::*;
use roost_storage::zookeeper::{
    read_snapshot, read_txn_log, zk_files, ZkCreateKind, ZkNodeKind, ZkOp, ZkTxn,
};
use roost_tests::raw::RawClient;
use roost_tests::requests::{create, get, ok_body, set};
use roost_tests::servers::{zookeeper_installed, ZooKeeper};

fn call_ok(c: &mut RawClient, request: Request) -> Response {
    ok_body(c.call(&request).expect("reply"))
}

fn create_as(
    path: &str,
    data: Option<&[u8]>,
    opcode: OpCode,
    mode: CreateMode,
    ttl: i64,
) -> Request {
    Request::Create {
        opcode,
        request: CreateRequest {
            path: path.into(),
            data: data.map(Bytes::copy_from_slice),
            acl: vec![Acl::new(perms::ALL, "world", "anyone")],
            flags: mode.code(),
            ttl,
        },
    }
}

/// Every znode below `/` (but not `/zookeeper`): path -> (data, stat, acl).
type Seen = BTreeMap<String, (Option<Bytes>, Stat, Vec<Acl>)>;

fn walk(c: &mut RawClient, path: &str, out: &mut Seen) {
    let Response::GetData(data, stat) = call_ok(c, get(path, false)) else {
        panic!("getData {path}")
    };
    let Response::GetAcl(acl, _) = call_ok(c, Request::GetAcl(PathRequest { path: path.into() }))
    else {
        panic!("getACL {path}")
    };
    out.insert(path.to_string(), (data, stat, acl));
    let Response::Children(mut kids) = call_ok(
        c,
        Request::GetChildren(PathWatchRequest {
            path: path.into(),
            watch: false,
        }),
    ) else {
        panic!("getChildren {path}")
    };
    kids.sort();
    for kid in kids {
        let child = if path == "/" {
            format!("/{kid}")
        } else {
            format!("{path}/{kid}")
        };
        if child != "/zookeeper" {
            walk(c, &child, out);
        }
    }
}

/// `roost import` from ZooKeeper's `zk/data` into Roost's `roost/data`.
fn roost_import(zk: &Path, roost: &Path) -> std::process::Output {
    run_roost(
        "import",
        ["--zookeeper-data-dir", "--data-dir"],
        [zk, roost],
    )
}

/// `roost export` from Roost's `roost/data` into ZooKeeper's `zk/data`.
fn roost_export(roost: &Path, zk: &Path) -> std::process::Output {
    run_roost(
        "export",
        ["--data-dir", "--zookeeper-data-dir"],
        [roost, zk],
    )
}

fn run_roost(command: &str, flags: [&str; 2], dirs: [&Path; 2]) -> std::process::Output {
    let mut run = std::process::Command::new(roost_tests::servers::roost_binary());
    run.arg(command);
    for (flag, dir) in flags.into_iter().zip(dirs) {
        run.arg(flag).arg(dir.join("data"));
    }
    run.output().expect("run roost")
}

/// Asserts that a `roost` command succeeded; its standard output.
fn succeeded(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A varied tree: data, null data, sequentials, an ephemeral, a container,
/// a TTL node, a setData, a setACL with a digest entry, a delete and a multi.
fn fill(c: &mut RawClient) {
    call_ok(c, create("/app", b"hello", CreateMode::Persistent));
    for _ in 0..3 {
        call_ok(
            c,
            create("/app/seq-", b"", CreateMode::PersistentSequential),
        );
    }
    call_ok(c, create("/app/eph", b"e", CreateMode::Ephemeral));
    call_ok(
        c,
        create_as(
            "/app/null",
            None,
            OpCode::Create,
            CreateMode::Persistent,
            -1,
        ),
    );
    call_ok(
        c,
        create_as(
            "/jobs",
            Some(b"j"),
            OpCode::CreateContainer,
            CreateMode::Container,
            -1,
        ),
    );
    call_ok(c, create("/jobs/one", b"1", CreateMode::Persistent));
    call_ok(
        c,
        create_as(
            "/ttl",
            Some(b"t"),
            OpCode::CreateTtl,
            CreateMode::PersistentWithTtl,
            60_000,
        ),
    );
    call_ok(c, set("/app", b"v2", 0));
    call_ok(
        c,
        Request::SetAcl(SetAclRequest {
            path: "/app/seq-0000000000".into(),
            acl: vec![
                Acl::new(perms::READ, "world", "anyone"),
                Acl::new(perms::ALL, "digest", "bob:rB1dRXQrt0a3XgYa7BX7tNmUXIM="),
            ],
            version: -1,
        }),
    );
    call_ok(
        c,
        Request::Delete(DeleteRequest {
            path: "/app/seq-0000000002".into(),
            version: -1,
        }),
    );
    let multi = Request::Multi(Ok(vec![
        MultiOp::Create {
            opcode: OpCode::Create,
            request: CreateRequest {
                path: "/m".into(),
                data: Some(Bytes::from_static(b"m")),
                acl: vec![Acl::new(perms::ALL, "world", "anyone")],
                flags: 0,
                ttl: -1,
            },
        },
        MultiOp::SetData(SetDataRequest {
            path: "/m".into(),
            data: Some(Bytes::from_static(b"m2")),
            version: 0,
        }),
    ]));
    call_ok(c, multi);
}

#[test]
fn a_real_zookeepers_log_and_snapshot_parse_to_what_its_clients_saw() {
    if !zookeeper_installed() {
        eprintln!("skipped: Apache ZooKeeper is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let zk = ZooKeeper::start_in(dir.path(), &[]).expect("start ZooKeeper");
    let mut c = RawClient::connect(zk.addr).unwrap();
    fill(&mut c);
    let mut seen = Seen::new();
    walk(&mut c, "/", &mut seen);
    drop(zk); // SIGKILL: the session and its ephemeral stay in the files

    // The transaction log holds every change, with the zxids clients saw.
    let version2 = dir.path().join("data/version-2");
    let mut txns: Vec<ZkTxn> = Vec::new();
    for (_, log) in zk_files(&version2, "log").unwrap() {
        let bytes = Bytes::from(std::fs::read(&log).unwrap());
        txns.extend(read_txn_log(bytes).expect("log parses"));
    }
    let creates: BTreeMap<&str, (i64, ZkCreateKind)> = txns
        .iter()
        .flat_map(|t| {
            let ops = match &t.op {
                ZkOp::Multi(ops) => ops.iter().collect::<Vec<_>>(),
                op => vec![op],
            };
            ops.into_iter().filter_map(move |op| match op {
                ZkOp::Create { path, kind, .. } => Some((path.as_str(), (t.zxid, *kind))),
                _ => None,
            })
        })
        .collect();
    for (path, (_, stat, _)) in &seen {
        if path == "/" {
            continue;
        }
        let (zxid, _) = creates
            .get(path.as_str())
            .unwrap_or_else(|| panic!("no create of {path}"));
        assert_eq!(*zxid, stat.czxid, "{path}");
    }
    assert_eq!(creates["/app/eph"].1, ZkCreateKind::Ephemeral);
    assert_eq!(creates["/jobs"].1, ZkCreateKind::Container);
    assert_eq!(creates["/ttl"].1, ZkCreateKind::Ttl(60_000));
    assert!(txns
        .iter()
        .any(|t| matches!(t.op, ZkOp::CreateSession { .. })));
    assert!(txns
        .iter()
        .any(|t| matches!(&t.op, ZkOp::Delete { path } if path == "/app/seq-0000000002")));
    assert!(txns
        .iter()
        .any(|t| matches!(&t.op, ZkOp::Multi(ops) if ops.len() == 2)));

    // A restart makes ZooKeeper write a snapshot of everything it loaded.
    let zk = ZooKeeper::start_in(dir.path(), &[]).expect("restart ZooKeeper");
    drop(zk);
    let (_, newest) = zk_files(&version2, "snapshot")
        .unwrap()
        .pop()
        .expect("a snapshot");
    let snapshot =
        read_snapshot(Bytes::from(std::fs::read(&newest).unwrap())).expect("snapshot parses");
    assert!(snapshot.sessions.iter().any(|(id, _)| *id == c.session_id));
    let stored: BTreeMap<&str, _> = snapshot
        .nodes
        .iter()
        .map(|n| (n.path.as_str(), n))
        .collect();
    let mut child_counts: BTreeMap<&str, i32> = BTreeMap::new();
    for node in snapshot.nodes.iter().filter(|n| n.path != "/") {
        if let Some((parent, _)) = roost_core::path::split(&node.path) {
            *child_counts.entry(parent).or_default() += 1;
        }
    }
    for (path, (data, stat, acl)) in &seen {
        let node = stored
            .get(path.as_str())
            .unwrap_or_else(|| panic!("{path} not in the snapshot"));
        assert_eq!(&node.data, data, "{path}");
        // getACL shows a digest id's hash as "x" to a caller without ADMIN.
        let redacted: Vec<Acl> = node
            .acl
            .iter()
            .map(|a| match a.id.id.split_once(':') {
                Some((user, _)) if a.id.scheme == "digest" => {
                    Acl::new(a.perms, "digest", format!("{user}:x"))
                }
                _ => a.clone(),
            })
            .collect();
        assert!(
            &node.acl == acl || &redacted == acl,
            "{path}: {:?} vs {acl:?}",
            node.acl
        );
        let got = (
            node.czxid,
            node.mzxid,
            node.ctime,
            node.mtime,
            node.version,
            // Stored, cversion counts creates; clients see it as
            // 2 * creates - children (DataNode.copyStat), as Roost stores it too.
            2 * node.cversion - child_counts.get(path.as_str()).copied().unwrap_or(0),
            node.aversion,
            node.pzxid,
        );
        let want = (
            stat.czxid,
            stat.mzxid,
            stat.ctime,
            stat.mtime,
            stat.version,
            stat.cversion,
            stat.aversion,
            stat.pzxid,
        );
        assert_eq!(got, want, "{path}");
        // Containers and TTL nodes report ephemeralOwner 0 to clients.
        let kind = ZkNodeKind::from_owner(node.ephemeral_owner);
        let owner = match kind {
            ZkNodeKind::Ephemeral(owner) => owner,
            _ => 0,
        };
        assert_eq!(owner, stat.ephemeral_owner, "{path}");
    }
    assert_eq!(
        ZkNodeKind::from_owner(stored["/jobs"].ephemeral_owner),
        ZkNodeKind::Container
    );
    assert_eq!(
        ZkNodeKind::from_owner(stored["/ttl"].ephemeral_owner),
        ZkNodeKind::Ttl(60_000)
    );
    assert!(stored.contains_key("/zookeeper/quota"));
    assert_eq!(
        stored["/app/seq-0000000000"].acl[1].id.id,
        "bob:rB1dRXQrt0a3XgYa7BX7tNmUXIM="
    );
    // Parents come before their children.
    let order: Vec<&str> = snapshot.nodes.iter().map(|n| n.path.as_str()).collect();
    for (i, path) in order.iter().enumerate().skip(1) {
        if let Some((parent, _)) = roost_core::path::split(path) {
            assert!(order[..i].contains(&parent), "{path} before its parent");
        }
    }
}

#[test]
fn roost_import_serves_a_zookeeper_tree_and_its_sessions_unchanged() {
    import_and_compare(&[], "snapshot.");
}

#[test]
fn roost_import_reads_gzip_snapshots() {
    // zoo.cfg keys ZooKeeper does not know become `zookeeper.*` system properties.
    import_and_compare(&["snapshot.compression.method=gz"], ".gz ");
}

#[test]
fn roost_import_reads_snappy_snapshots() {
    import_and_compare(&["snapshot.compression.method=snappy"], ".snappy ");
}

/// Fills a ZooKeeper started with `extra` in zoo.cfg, restarts it (a
/// snapshot, whose name contains `snapshot_mark`), changes more, kills it,
/// imports, and compares what clients see on both.
fn import_and_compare(extra: &[&str], snapshot_mark: &str) {
    if !zookeeper_installed() {
        eprintln!("skipped: Apache ZooKeeper is not installed");
        return;
    }
    let zk_dir = tempfile::tempdir().unwrap();
    let zk = ZooKeeper::start_in(zk_dir.path(), extra).expect("start ZooKeeper");
    let mut c = RawClient::connect(zk.addr).unwrap();
    fill(&mut c);
    // A restart writes a snapshot; the changes after it are only in the log.
    drop(zk);
    let zk = ZooKeeper::start_in(zk_dir.path(), extra).expect("restart ZooKeeper");
    let mut c = RawClient::connect_as(zk.addr, c.session_id, c.password.clone(), c.timeout_ms)
        .expect("the session survives ZooKeeper's restart");
    call_ok(&mut c, set("/app", b"after the snapshot", 1));
    call_ok(
        &mut c,
        create("/app/seq-", b"late", CreateMode::PersistentSequential),
    );
    // A session that closed: its ephemeral goes with it.
    let mut closed = RawClient::connect(zk.addr).unwrap();
    call_ok(&mut closed, create("/gone", b"", CreateMode::Ephemeral));
    call_ok(&mut closed, Request::CloseSession);
    let mut seen_zk = Seen::new();
    walk(&mut c, "/", &mut seen_zk);
    let last_zk_zxid = seen_zk
        .values()
        .map(|(_, s, _)| s.mzxid.max(s.pzxid))
        .max()
        .unwrap();
    drop(zk);

    let roost_dir = tempfile::tempdir().unwrap();
    let out = roost_import(zk_dir.path(), roost_dir.path());
    // From the restart's snapshot, with the later changes from the log.
    let said = succeeded(&out);
    assert!(
        said.contains(snapshot_mark) && !said.contains("snapshot.0 "),
        "{said}"
    );
    assert!(!said.contains(" and 0 logged changes"), "{said}");
    let roost =
        roost_tests::servers::RoostProcess::start(roost_dir.path(), &[]).expect("start Roost");
    let mut r = RawClient::connect(roost.addr).unwrap();
    let mut seen_roost = Seen::new();
    walk(&mut r, "/", &mut seen_roost);
    assert_eq!(
        seen_roost.keys().collect::<Vec<_>>(),
        seen_zk.keys().collect::<Vec<_>>()
    );
    for (path, zk_view) in &seen_zk {
        assert_eq!(&seen_roost[path], zk_view, "{path}");
    }
    // The ZooKeeper session reconnects to Roost with its id and password and
    // still owns its ephemeral; new writes continue after ZooKeeper's zxids.
    let mut again =
        RawClient::connect_as(roost.addr, c.session_id, c.password.clone(), c.timeout_ms)
            .expect("the imported session is accepted");
    let Response::GetData(_, eph) = call_ok(&mut again, get("/app/eph", false)) else {
        panic!("getData")
    };
    assert_eq!(eph.ephemeral_owner, c.session_id);
    let Response::Stat(stat) = call_ok(&mut again, set("/app", b"v3", 2)) else {
        panic!("setData")
    };
    assert!(
        stat.mzxid > last_zk_zxid,
        "0x{:x} after 0x{last_zk_zxid:x}",
        stat.mzxid
    );
    assert!(RawClient::connect_as(
        roost.addr,
        c.session_id,
        Bytes::from_static(&[0; 16]),
        c.timeout_ms
    )
    .is_err());
    // A second import into a data directory in use is refused.
    let again = roost_import(zk_dir.path(), roost_dir.path());
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds"));
}

#[test]
fn roost_export_gives_zookeeper_the_same_tree() {
    if !zookeeper_installed() {
        eprintln!("skipped: Apache ZooKeeper is not installed");
        return;
    }
    let roost_dir = tempfile::tempdir().unwrap();
    let mut roost = roost_tests::servers::RoostProcess::start(
        roost_dir.path(),
        &["zookeeper.extendedTypesEnabled=true", "snapCount=20"],
    )
    .expect("start Roost");
    let mut c = RawClient::connect(roost.addr).unwrap();
    fill(&mut c);
    // Past a snapshot (snapCount 20), so the export reads one and the log after it.
    for i in 0..40 {
        call_ok(&mut c, set("/jobs/one", format!("{i}").as_bytes(), -1));
    }
    let mut seen_roost = Seen::new();
    walk(&mut c, "/", &mut seen_roost);
    roost.kill();

    let zk_dir = tempfile::tempdir().unwrap();
    let out = roost_export(roost_dir.path(), zk_dir.path());
    succeeded(&out);
    let zk = ZooKeeper::start_in(zk_dir.path(), &[]).expect("ZooKeeper loads the export");
    let mut z = RawClient::connect(zk.addr).unwrap();
    let mut seen_zk = Seen::new();
    walk(&mut z, "/", &mut seen_zk);
    assert_eq!(
        seen_zk.keys().collect::<Vec<_>>(),
        seen_roost.keys().collect::<Vec<_>>()
    );
    for (path, roost_view) in &seen_roost {
        assert_eq!(&seen_zk[path], roost_view, "{path}");
    }
}

/// Sends `requests` in pipelined batches and returns their replies in order.
fn pipelined(c: &mut RawClient, requests: &[Request]) -> Vec<Response> {
    let mut replies = Vec::with_capacity(requests.len());
    for batch in requests.chunks(500) {
        let xids = c.send_together(batch).expect("send");
        for xid in xids {
            replies.push(ok_body(c.reply_to(xid).expect("reply")));
        }
    }
    replies
}

/// data, Stat and ACL of every path, read in pipelined batches.
fn bulk_read(c: &mut RawClient, paths: &[String]) -> Vec<(Option<Bytes>, Stat, Vec<Acl>)> {
    let gets: Vec<Request> = paths.iter().map(|p| get(p, false)).collect();
    let acls: Vec<Request> = paths
        .iter()
        .map(|p| Request::GetAcl(PathRequest { path: p.clone() }))
        .collect();
    pipelined(c, &gets)
        .into_iter()
        .zip(pipelined(c, &acls))
        .map(|(data, acl)| match (data, acl) {
            (Response::GetData(data, stat), Response::GetAcl(acl, _)) => (data, stat, acl),
            other => panic!("unexpected replies {other:?}"),
        })
        .collect()
}

#[test]
fn an_import_of_100k_znodes_matches_zookeeper_byte_for_byte() {
    if !zookeeper_installed() {
        eprintln!("skipped: Apache ZooKeeper is not installed");
        return;
    }
    const ZNODES: usize = 100_000;
    // snapCount 30000: ZooKeeper snapshots (fuzzily) while the load runs.
    let zk_dir = tempfile::tempdir().unwrap();
    let zk = ZooKeeper::start_in(zk_dir.path(), &["snapCount=30000"]).expect("start ZooKeeper");
    let mut c = RawClient::connect(zk.addr).unwrap();
    let digest = Acl::new(perms::ALL, "digest", "bob:rB1dRXQrt0a3XgYa7BX7tNmUXIM=");
    let mut setup: Vec<Request> = vec![create("/bulk", b"", CreateMode::Persistent)];
    setup.extend((0..10).map(|p| create(&format!("/bulk/p{p}"), b"", CreateMode::Persistent)));
    pipelined(&mut c, &setup);
    let creates: Vec<Request> = (0..ZNODES)
        .map(|i| {
            let parent = format!("/bulk/p{}", i % 10);
            let (path, mode) = match i % 4 {
                0 => (format!("{parent}/seq-"), CreateMode::PersistentSequential),
                1 => (format!("{parent}/e{i}"), CreateMode::Ephemeral),
                _ => (format!("{parent}/n{i}"), CreateMode::Persistent),
            };
            let Request::Create {
                opcode,
                mut request,
            } = create(&path, format!("{i:0100}"), mode)
            else {
                unreachable!("create builds a Create")
            };
            if i % 7 == 0 {
                request.acl = vec![Acl::new(perms::READ, "world", "anyone"), digest.clone()];
            }
            Request::Create { opcode, request }
        })
        .collect();
    pipelined(&mut c, &creates);
    // Every eighth persistent (non-sequential) node is changed afterwards.
    let updates: Vec<Request> = (2..ZNODES)
        .step_by(8)
        .filter(|j| j % 7 != 0) // those only bob may write
        .map(|j| set(&format!("/bulk/p{}/n{j}", j % 10), b"changed", -1))
        .collect();
    pipelined(&mut c, &updates);
    let mut paths = Vec::new();
    for p in 0..10 {
        let parent = format!("/bulk/p{p}");
        let Response::Children(kids) = call_ok(
            &mut c,
            Request::GetChildren(PathWatchRequest {
                path: parent.clone(),
                watch: false,
            }),
        ) else {
            panic!("getChildren")
        };
        paths.extend(kids.into_iter().map(|k| format!("{parent}/{k}")));
    }
    paths.sort();
    assert_eq!(paths.len(), ZNODES);
    let seen_zk = bulk_read(&mut c, &paths);
    drop(zk);

    let roost_dir = tempfile::tempdir().unwrap();
    let out = roost_import(zk_dir.path(), roost_dir.path());
    succeeded(&out);
    let roost =
        roost_tests::servers::RoostProcess::start(roost_dir.path(), &[]).expect("start Roost");
    let mut r = RawClient::connect_as(roost.addr, c.session_id, c.password.clone(), c.timeout_ms)
        .expect("the session that owns the ephemerals reconnects");
    let seen_roost = bulk_read(&mut r, &paths);
    for (i, path) in paths.iter().enumerate() {
        assert_eq!(seen_roost[i], seen_zk[i], "{path}");
    }
}
