//! Scenario tests of the state machine: each test drives `State` with entries
//! and reads, and the whole transcript (replies, zxids, stats, watch events)
//! is compared with a reviewed expectation. Run with `UPDATE_EXPECT=1` to
//! regenerate after a deliberate change, then review the diff.

use bytes::Bytes;
use expect_test::{expect, Expect};
use roost_core::{Caller, Entry, State, StateConfig, Txn, WatchTable, WatcherId};
use roost_proto::*;

/// Drives one state and records a transcript.
struct Sim {
    state: State,
    watches: WatchTable,
    time_ms: i64,
    out: String,
}

fn ip() -> Vec<Id> {
    vec![Id::new("ip", "127.0.0.1")]
}

fn open() -> Vec<Acl> {
    roost_core::acl::open_acl()
}

fn fmt_stat(s: &Stat) -> String {
    format!(
        "[c{} m{} p{} t{}/{} v{} cv{} av{} own{:#x} len{} nc{}]",
        s.czxid,
        s.mzxid,
        s.pzxid,
        s.ctime,
        s.mtime,
        s.version,
        s.cversion,
        s.aversion,
        s.ephemeral_owner,
        s.data_length,
        s.num_children
    )
}

fn fmt_result(r: &Result<Response, ErrorCode>) -> String {
    match r {
        Err(e) => format!("ERR {}", e.name()),
        Ok(resp) => match resp {
            Response::Empty => "ok".into(),
            Response::Create(p) => format!("created {p}"),
            Response::Create2(p, s) => format!("created {p} {}", fmt_stat(s)),
            Response::Stat(s) => fmt_stat(s),
            Response::GetData(d, s) => {
                format!("{} {}", show(d), fmt_stat(s))
            }
            Response::Children(c) => format!("{c:?}"),
            Response::Children2(c, s) => format!("{c:?} {}", fmt_stat(s)),
            Response::GetAcl(a, s) => {
                let acl: Vec<String> = a
                    .iter()
                    .map(|a| format!("{}:{}:{}", a.id.scheme, a.id.id, a.perms))
                    .collect();
                format!("{acl:?} {}", fmt_stat(s))
            }
            Response::Multi(results) => {
                let parts: Vec<String> = results
                    .iter()
                    .map(|r| match r {
                        MultiResult::Create(p) => format!("create {p}"),
                        MultiResult::Create2(p, s) => format!("create2 {p} {}", fmt_stat(s)),
                        MultiResult::SetData(s) => format!("set {}", fmt_stat(s)),
                        MultiResult::Delete => "delete".into(),
                        MultiResult::Check => "check".into(),
                        MultiResult::GetData(d, _) => {
                            format!("data {}", show(d))
                        }
                        MultiResult::GetChildren(c) => format!("children {c:?}"),
                        MultiResult::Error(e) => format!("error {}", e.name()),
                    })
                    .collect();
                format!("multi [{}]", parts.join("; "))
            }
            other => format!("{other:?}"),
        },
    }
}

fn show(data: &Option<Bytes>) -> String {
    match data {
        Some(d) => format!("{:?}", String::from_utf8_lossy(d)),
        None => "null".into(),
    }
}

impl Sim {
    fn new() -> Self {
        Sim::with(StateConfig {
            extended_types: true,
            reconfig_enabled: false,
            ..Default::default()
        })
    }

    fn with(config: StateConfig) -> Self {
        Sim {
            state: State::new(config),
            watches: WatchTable::new(),
            time_ms: 1000,
            out: String::new(),
        }
    }

    fn entry(&mut self, session: i64, ids: Vec<Id>, txn: Txn) -> String {
        self.entry_from(0, session, ids, txn)
    }

    /// An entry sent through connection `origin` (server id in its top bits).
    fn entry_from(&mut self, origin: u64, session: i64, ids: Vec<Id>, txn: Txn) -> String {
        self.time_ms += 1;
        let applied = self.state.apply(&Entry {
            time_ms: self.time_ms,
            session_id: session,
            cxid: 0,
            identities: ids.into(),
            origin,
            txn,
        });
        let mut line = format!("z{} {}", applied.zxid, fmt_result(&applied.result));
        for t in &applied.triggers {
            for watcher in self.watches.trigger(t.path(), t.event) {
                line += &format!("\n    event w{watcher} {} {}", t.event.name(), t.path());
            }
        }
        line
    }

    fn open_session(&mut self, session: i64) {
        let line = self.entry(
            session,
            ip(),
            Txn::CreateSession {
                timeout_ms: 30000,
                password: Bytes::from_static(&[0; 16]),
            },
        );
        self.out += &format!("session {session:#x}: {line}\n");
    }

    fn write_as(&mut self, session: i64, ids: Vec<Id>, label: &str, request: Request) {
        let line = self.entry(session, ids, Txn::Request(request));
        self.out += &format!("{label}: {line}\n");
    }

    fn write(&mut self, label: &str, request: Request) {
        self.write_as(1, ip(), label, request)
    }

    fn read_as(&mut self, watcher: WatcherId, ids: &[Id], label: &str, request: Request) {
        let result = self.state.read(
            &request,
            Caller {
                session_id: 1,
                identities: ids,
                watcher,
            },
            &mut self.watches,
        );
        self.out += &format!("{label}: {}\n", fmt_result(&result));
    }

    fn read(&mut self, label: &str, request: Request) {
        self.read_as(1, &ip(), label, request)
    }

    fn check(self, expected: Expect) {
        expected.assert_eq(&self.out);
    }
}

fn create(path: &str, data: &str, mode: CreateMode) -> Request {
    Request::Create {
        opcode: OpCode::Create2,
        request: CreateRequest {
            path: path.into(),
            data: Some(Bytes::copy_from_slice(data.as_bytes())),
            acl: open(),
            flags: mode.code(),
            ttl: -1,
        },
    }
}

fn get(path: &str, watch: bool) -> Request {
    Request::GetData(PathWatchRequest {
        path: path.into(),
        watch,
    })
}

fn set(path: &str, data: &str, version: i32) -> Request {
    Request::SetData(SetDataRequest {
        path: path.into(),
        data: Some(Bytes::copy_from_slice(data.as_bytes())),
        version,
    })
}

fn delete(path: &str, version: i32) -> Request {
    Request::Delete(DeleteRequest {
        path: path.into(),
        version,
    })
}

fn children(path: &str, watch: bool) -> Request {
    Request::GetChildren2(PathWatchRequest {
        path: path.into(),
        watch,
    })
}

#[test]
fn stat_fields_versions_and_sequential_names() {
    let mut sim = Sim::new();
    sim.open_session(1);
    sim.write("create /a", create("/a", "x", CreateMode::Persistent));
    sim.write("seq", create("/a/s-", "", CreateMode::PersistentSequential));
    sim.write("seq", create("/a/s-", "", CreateMode::PersistentSequential));
    sim.write("delete seq 0", delete("/a/s-0000000000", -1));
    sim.write(
        "seq after delete",
        create("/a/s-", "", CreateMode::PersistentSequential),
    );
    sim.write("set", set("/a", "yy", -1));
    sim.write("set v1", set("/a", "zzz", 1));
    sim.write("set stale v1", set("/a", "w", 1));
    sim.read("get /a", get("/a", false));
    sim.read("children /a", children("/a", false));
    sim.read("root", children("/", false));
    sim.check(expect![[r#"
        session 0x1: z1 ok
        create /a: z2 created /a [c2 m2 p2 t1002/1002 v0 cv0 av0 own0x0 len1 nc0]
        seq: z3 created /a/s-0000000000 [c3 m3 p3 t1003/1003 v0 cv0 av0 own0x0 len0 nc0]
        seq: z4 created /a/s-0000000001 [c4 m4 p4 t1004/1004 v0 cv0 av0 own0x0 len0 nc0]
        delete seq 0: z5 ok
        seq after delete: z6 created /a/s-0000000002 [c6 m6 p6 t1006/1006 v0 cv0 av0 own0x0 len0 nc0]
        set: z7 [c2 m7 p6 t1002/1007 v1 cv4 av0 own0x0 len2 nc2]
        set v1: z8 [c2 m8 p6 t1002/1008 v2 cv4 av0 own0x0 len3 nc2]
        set stale v1: z9 ERR BadVersion
        get /a: "zzz" [c2 m8 p6 t1002/1008 v2 cv4 av0 own0x0 len3 nc2]
        children /a: ["s-0000000001", "s-0000000002"] [c2 m8 p6 t1002/1008 v2 cv4 av0 own0x0 len3 nc2]
        root: ["a", "zookeeper"] [c0 m0 p2 t0/0 v0 cv0 av0 own0x0 len0 nc2]
    "#]]);
}

#[test]
fn create_errors_follow_zookeeper_validation_order() {
    let mut sim = Sim::new();
    sim.open_session(1);
    sim.write("relative", create("rel", "", CreateMode::Persistent));
    sim.write("trailing slash", create("/", "", CreateMode::Persistent));
    sim.write(
        "missing parent first",
        create("/nope/", "", CreateMode::Persistent),
    );
    sim.write("dot", create("/.", "", CreateMode::Persistent));
    sim.write(
        "sequential trailing slash ok",
        create("/", "", CreateMode::PersistentSequential),
    );
    sim.write("eph", create("/e", "", CreateMode::Ephemeral));
    sim.write("under eph", create("/e/c", "", CreateMode::Persistent));
    sim.write("exists", create("/e", "", CreateMode::Persistent));
    let mut empty_acl = create("/x", "", CreateMode::Persistent);
    if let Request::Create { request, .. } = &mut empty_acl {
        request.acl.clear();
    }
    sim.write("empty acl", empty_acl);
    let mut bad_flags = create("/x", "", CreateMode::Persistent);
    if let Request::Create { request, .. } = &mut bad_flags {
        request.flags = 9;
    }
    sim.write("bad flags", bad_flags);
    sim.write("delete root", delete("/", -1));
    sim.write("delete /zookeeper", delete("/zookeeper", -1));
    sim.write("delete missing", delete("/missing", -1));
    sim.write_as(
        7,
        ip(),
        "no session",
        create("/y", "", CreateMode::Persistent),
    );
    sim.check(expect![[r#"
        session 0x1: z1 ok
        relative: z2 ERR BadArguments
        trailing slash: z3 ERR NodeExists
        missing parent first: z4 ERR NoNode
        dot: z5 ERR BadArguments
        sequential trailing slash ok: z6 created /0000000000 [c6 m6 p6 t1006/1006 v0 cv0 av0 own0x0 len0 nc0]
        eph: z7 created /e [c7 m7 p7 t1007/1007 v0 cv0 av0 own0x1 len0 nc0]
        under eph: z8 ERR NoChildrenForEphemerals
        exists: z9 ERR NodeExists
        empty acl: z10 ERR InvalidAcl
        bad flags: z11 ERR BadArguments
        delete root: z12 ERR BadArguments
        delete /zookeeper: z13 ERR BadArguments
        delete missing: z14 ERR NoNode
        no session: z15 ERR SessionExpired
    "#]]);
}

#[test]
fn multi_is_all_or_nothing_with_zookeeper_error_layout() {
    let mut sim = Sim::new();
    sim.open_session(1);
    sim.write("create /m", create("/m", "", CreateMode::Persistent));
    let ops = |check_version| {
        Request::Multi(Ok(vec![
            MultiOp::Create {
                opcode: OpCode::Create,
                request: CreateRequest {
                    path: "/m/new".into(),
                    data: Some(Bytes::new()),
                    acl: open(),
                    flags: 0,
                    ttl: -1,
                },
            },
            MultiOp::Create {
                opcode: OpCode::Create2,
                request: CreateRequest {
                    path: "/m/new/kid".into(),
                    data: Some(Bytes::new()),
                    acl: open(),
                    flags: 0,
                    ttl: -1,
                },
            },
            MultiOp::Check(CheckVersionRequest {
                path: "/m".into(),
                version: check_version,
            }),
            MultiOp::SetData(SetDataRequest {
                path: "/m".into(),
                data: Some(Bytes::from_static(b"v")),
                version: -1,
            }),
        ]))
    };
    sim.read("watch /m", get("/m", true));
    sim.write("failing multi", ops(5));
    sim.read("nothing applied", children("/m", false));
    sim.write("good multi", ops(0));
    sim.write("empty multi", Request::Multi(Ok(vec![])));
    sim.write(
        "read op in write multi",
        Request::Multi(Ok(vec![MultiOp::GetData(PathWatchRequest {
            path: "/m".into(),
            watch: false,
        })])),
    );
    sim.read(
        "multiRead",
        Request::MultiRead(Ok(vec![
            MultiOp::GetData(PathWatchRequest {
                path: "/m".into(),
                watch: false,
            }),
            MultiOp::GetChildren(PathWatchRequest {
                path: "/m".into(),
                watch: false,
            }),
            MultiOp::GetData(PathWatchRequest {
                path: "/absent".into(),
                watch: false,
            }),
        ])),
    );
    sim.check(expect![[r#"
        session 0x1: z1 ok
        create /m: z2 created /m [c2 m2 p2 t1002/1002 v0 cv0 av0 own0x0 len0 nc0]
        watch /m: "" [c2 m2 p2 t1002/1002 v0 cv0 av0 own0x0 len0 nc0]
        failing multi: z3 multi [error Ok; error Ok; error BadVersion; error RuntimeInconsistency]
        nothing applied: [] [c2 m2 p2 t1002/1002 v0 cv0 av0 own0x0 len0 nc0]
        good multi: z4 multi [create /m/new; create2 /m/new/kid [c4 m4 p4 t1004/1004 v0 cv0 av0 own0x0 len0 nc0]; check; set [c2 m4 p4 t1002/1004 v1 cv1 av0 own0x0 len1 nc1]]
            event w1 NodeDataChanged /m
        empty multi: z5 multi []
        read op in write multi: z6 ERR MarshallingError
        multiRead: multi [data "v"; children ["new"]; error NoNode]
    "#]]);
}

#[test]
fn watches_fire_once_and_closing_a_session_deletes_its_ephemerals() {
    let mut sim = Sim::new();
    sim.open_session(1);
    sim.open_session(2);
    sim.write("create /w", create("/w", "", CreateMode::Persistent));
    sim.read_as(10, &ip(), "w10 exists /w/e (missing)", {
        Request::Exists(PathWatchRequest {
            path: "/w/e".into(),
            watch: true,
        })
    });
    sim.read_as(11, &ip(), "w11 children /w", children("/w", true));
    sim.write_as(
        2,
        ip(),
        "s2 ephemeral",
        create("/w/e", "", CreateMode::Ephemeral),
    );
    sim.read_as(10, &ip(), "w10 get /w/e", get("/w/e", true));
    sim.read_as(11, &ip(), "w11 children /w", children("/w", true));
    sim.write_as(
        2,
        ip(),
        "s2 ephemeral 2",
        create("/w/f", "", CreateMode::EphemeralSequential),
    );
    let line = sim.entry(2, vec![], Txn::CloseSession);
    sim.out += &format!("close s2: {line}\n");
    sim.read("gone", children("/w", false));
    sim.check(expect![[r#"
        session 0x1: z1 ok
        session 0x2: z2 ok
        create /w: z3 created /w [c3 m3 p3 t1003/1003 v0 cv0 av0 own0x0 len0 nc0]
        w10 exists /w/e (missing): ERR NoNode
        w11 children /w: [] [c3 m3 p3 t1003/1003 v0 cv0 av0 own0x0 len0 nc0]
        s2 ephemeral: z4 created /w/e [c4 m4 p4 t1004/1004 v0 cv0 av0 own0x2 len0 nc0]
            event w10 NodeCreated /w/e
            event w11 NodeChildrenChanged /w
        w10 get /w/e: "" [c4 m4 p4 t1004/1004 v0 cv0 av0 own0x2 len0 nc0]
        w11 children /w: ["e"] [c3 m3 p4 t1003/1003 v0 cv1 av0 own0x0 len0 nc1]
        s2 ephemeral 2: z5 created /w/f0000000001 [c5 m5 p5 t1005/1005 v0 cv0 av0 own0x2 len0 nc0]
            event w11 NodeChildrenChanged /w
        close s2: z6 ok
            event w10 NodeDeleted /w/e
        gone: [] [c3 m3 p6 t1003/1003 v0 cv4 av0 own0x0 len0 nc0]
    "#]]);
}

#[test]
fn acls_digest_auth_and_masking() {
    let mut sim = Sim::new();
    let bob = vec![
        Id::new("ip", "127.0.0.1"),
        Id::new("digest", roost_core::acl::digest_id(b"bob:pw")),
    ];
    sim.open_session(1);
    let mut secret = create("/s", "secret", CreateMode::Persistent);
    if let Request::Create { request, .. } = &mut secret {
        request.acl = vec![
            Acl::new(perms::READ, "world", "anyone"),
            Acl::new(perms::ALL, "auth", ""),
        ];
    }
    sim.write("anonymous auth acl", secret.clone());
    sim.write_as(1, bob.clone(), "bob auth acl", secret);
    sim.read(
        "anon getAcl masks",
        Request::GetAcl(PathRequest { path: "/s".into() }),
    );
    sim.read_as(
        1,
        &bob,
        "bob getAcl",
        Request::GetAcl(PathRequest { path: "/s".into() }),
    );
    sim.write("anon set", set("/s", "x", -1));
    sim.write_as(1, bob.clone(), "bob set", set("/s", "x", -1));
    sim.write_as(
        1,
        bob.clone(),
        "bob locks it",
        Request::SetAcl(SetAclRequest {
            path: "/s".into(),
            acl: vec![Acl::new(perms::ALL, "auth", "")],
            version: 0,
        }),
    );
    sim.read("anon get", get("/s", false));
    sim.read("anon exists needs READ", {
        Request::Exists(PathWatchRequest {
            path: "/s".into(),
            watch: false,
        })
    });
    sim.read_as(1, &[Id::new("super", "")], "super get", get("/s", false));
    sim.check(expect![[r#"
        session 0x1: z1 ok
        anonymous auth acl: z2 ERR InvalidAcl
        bob auth acl: z3 created /s [c3 m3 p3 t1003/1003 v0 cv0 av0 own0x0 len6 nc0]
        anon getAcl masks: ["world:anyone:1", "digest:bob:x:31"] [c3 m3 p3 t1003/1003 v0 cv0 av0 own0x0 len6 nc0]
        bob getAcl: ["world:anyone:1", "digest:bob:ikIaKsbtGweaHnb/jKn7OHqbunM=:31"] [c3 m3 p3 t1003/1003 v0 cv0 av0 own0x0 len6 nc0]
        anon set: z4 ERR NoAuth
        bob set: z5 [c3 m5 p3 t1003/1005 v1 cv0 av0 own0x0 len1 nc0]
        bob locks it: z6 [c3 m5 p3 t1003/1005 v1 cv0 av1 own0x0 len1 nc0]
        anon get: ERR NoAuth
        anon exists needs READ: ERR NoAuth
        super get: "x" [c3 m5 p3 t1003/1005 v1 cv0 av1 own0x0 len1 nc0]
    "#]]);
}

#[test]
fn containers_and_ttl_nodes_are_reaped_by_entries() {
    let mut sim = Sim::new();
    sim.open_session(1);
    let flavoured = |opcode, path: &str, flags, ttl| Request::Create {
        opcode,
        request: CreateRequest {
            path: path.into(),
            data: Some(Bytes::new()),
            acl: open(),
            flags,
            ttl,
        },
    };
    sim.write("container", flavoured(OpCode::CreateContainer, "/c", 4, -1));
    sim.write("ttl", flavoured(OpCode::CreateTtl, "/t", 5, 100));
    sim.write("ttl zero", flavoured(OpCode::CreateTtl, "/t0", 5, 0));
    sim.write(
        "ttl mode via create",
        flavoured(OpCode::Create, "/t1", 5, -1),
    );
    sim.write("kid", create("/c/kid", "", CreateMode::Persistent));
    sim.out += &format!(
        "candidates: {:?}\n",
        sim.state.reap_candidates(sim.time_ms, 10)
    );
    sim.write("drop kid", delete("/c/kid", -1));
    sim.out += &format!(
        "candidates: {:?}\n",
        sim.state.reap_candidates(sim.time_ms, 10)
    );
    sim.time_ms += 200;
    let candidates = sim.state.reap_candidates(sim.time_ms, 10);
    sim.out += &format!("candidates later: {candidates:?}\n");
    for p in candidates {
        let line = sim.entry(0, vec![], Txn::DeleteContainer(p.clone()));
        sim.out += &format!("reap {p}: {line}\n");
    }
    let mut no_ttl = Sim::with(StateConfig::default());
    no_ttl.open_session(1);
    no_ttl.write("ttl disabled", flavoured(OpCode::CreateTtl, "/t", 5, 100));
    sim.out += &no_ttl.out;
    sim.check(expect![[r#"
        session 0x1: z1 ok
        container: z2 created /c [c2 m2 p2 t1002/1002 v0 cv0 av0 own0x0 len0 nc0]
        ttl: z3 created /t [c3 m3 p3 t1003/1003 v0 cv0 av0 own0x0 len0 nc0]
        ttl zero: z4 ERR BadArguments
        ttl mode via create: z5 ERR BadArguments
        kid: z6 created /c/kid [c6 m6 p6 t1006/1006 v0 cv0 av0 own0x0 len0 nc0]
        candidates: []
        drop kid: z7 ok
        candidates: ["/c"]
        candidates later: ["/c", "/t"]
        reap /c: z8 ok
        reap /t: z9 ok
        session 0x1: z1 ok
        ttl disabled: z2 ERR Unimplemented
    "#]]);
}

#[test]
fn a_session_moved_to_another_server_refuses_writes_through_the_old_one() {
    let through = |server: u64| server << roost_core::ORIGIN_SERVER_SHIFT | 7;
    let mut sim = Sim::new();
    let step = |sim: &mut Sim, label: &str, server: u64, txn: Txn| {
        let line = sim.entry_from(through(server), 5, ip(), txn);
        sim.out += &format!("{label}: {line}\n");
    };
    let password = Bytes::from_static(&[0; 16]);
    step(
        &mut sim,
        "open via 1",
        1,
        Txn::CreateSession {
            timeout_ms: 30000,
            password,
        },
    );
    step(
        &mut sim,
        "write via 1",
        1,
        Txn::Request(create("/a", "x", CreateMode::Ephemeral)),
    );
    step(
        &mut sim,
        "write via 2 before moving",
        2,
        Txn::Request(set("/a", "y", -1)),
    );
    step(&mut sim, "move to 2", 2, Txn::MoveSession);
    step(&mut sim, "write via 2", 2, Txn::Request(set("/a", "y", -1)));
    step(
        &mut sim,
        "write via 1 after the move",
        1,
        Txn::Request(set("/a", "z", -1)),
    );
    step(&mut sim, "close via 1 after the move", 1, Txn::CloseSession);
    sim.read("the session and its ephemeral live on", get("/a", false));
    let line = sim.entry(5, ip(), Txn::CloseSession);
    sim.out += &format!("expiry by the leader: {line}\n");
    step(&mut sim, "move after expiry", 2, Txn::MoveSession);
    sim.read("ephemeral gone", get("/a", false));
    sim.check(expect![[r#"
        open via 1: z1 ok
        write via 1: z2 created /a [c2 m2 p2 t1002/1002 v0 cv0 av0 own0x5 len1 nc0]
        write via 2 before moving: z3 ERR SessionMoved
        move to 2: z4 ok
        write via 2: z5 [c2 m5 p2 t1002/1005 v1 cv0 av0 own0x5 len1 nc0]
        write via 1 after the move: z6 ERR SessionMoved
        close via 1 after the move: z7 ERR SessionMoved
        the session and its ephemeral live on: "y" [c2 m5 p2 t1002/1005 v1 cv0 av0 own0x5 len1 nc0]
        expiry by the leader: z8 ok
        move after expiry: z9 ERR SessionExpired
        ephemeral gone: ERR NoNode
    "#]]);
}
