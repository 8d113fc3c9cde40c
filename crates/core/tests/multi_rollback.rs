//! Property: a multi that fails leaves the state exactly as it was (every
//! node's data, stat, children, and every session's ephemerals), whatever its
//! ops did before the failing one.

use bytes::Bytes;
use proptest::prelude::*;
use roost_core::{Entry, State, StateConfig, Txn};
use roost_proto::*;

const PATHS: [&str; 6] = ["/a", "/a/b", "/a/b/c", "/d", "/d/e", "/f"];

fn op() -> impl Strategy<Value = MultiOp> {
    let path = prop::sample::select(PATHS.to_vec()).prop_map(String::from);
    prop_oneof![
        (path.clone(), prop::bool::ANY, 0..4i32).prop_map(|(path, ephemeral, flags)| {
            MultiOp::Create {
                opcode: OpCode::Create,
                request: CreateRequest {
                    path,
                    data: Some(Bytes::from_static(b"new")),
                    acl: roost_core::acl::open_acl(),
                    flags: if ephemeral { 1 } else { flags % 3 },
                    ttl: -1,
                },
            }
        }),
        (path.clone(), -1..2i32)
            .prop_map(|(path, version)| MultiOp::Delete(DeleteRequest { path, version })),
        (path.clone(), -1..3i32).prop_map(|(path, version)| MultiOp::SetData(SetDataRequest {
            path,
            data: Some(Bytes::from_static(b"set")),
            version,
        })),
        (path, -1..3i32)
            .prop_map(|(path, version)| MultiOp::Check(CheckVersionRequest { path, version })),
    ]
}

fn apply(state: &mut State, txn: Txn) -> Result<Response, ErrorCode> {
    state
        .apply(&Entry {
            time_ms: 7,
            session_id: 1,
            cxid: 0,
            identities: vec![Id::new("ip", "127.0.0.1")].into(),
            origin: 0,
            txn,
        })
        .result
}

/// Everything observable about a state except its zxid counter.
fn fingerprint(state: &State) -> Vec<String> {
    let tree = state.tree();
    let mut out: Vec<String> = tree
        .iter()
        .map(|(path, node)| {
            let children = tree.child_names(node);
            format!("{path} {:?} {:?} {children:?}", node.data(), node.stat())
        })
        .collect();
    out.sort();
    for (id, session) in state.sessions().iter() {
        out.push(format!("session {id} {:?}", session.ephemerals));
    }
    out
}

proptest! {
    #[test]
    fn failed_multis_change_nothing(setup in prop::collection::vec(op(), 0..8), multi in prop::collection::vec(op(), 1..8)) {
        let mut state = State::new(StateConfig::default());
        apply(&mut state, Txn::CreateSession { timeout_ms: 1000, password: Bytes::from_static(&[0; 16]) }).unwrap();
        for op in setup {
            let _ = apply(&mut state, Txn::Request(Request::Multi(Ok(vec![op]))));
        }
        let before = fingerprint(&state);
        let result = apply(&mut state, Txn::Request(Request::Multi(Ok(multi))));
        let Ok(Response::Multi(results)) = result else {
            panic!("multi replies with results: {result:?}");
        };
        let failed = results.iter().any(|r| matches!(r, MultiResult::Error(code) if *code != ErrorCode::Ok));
        if failed {
            prop_assert_eq!(fingerprint(&state), before);
        }
    }
}
