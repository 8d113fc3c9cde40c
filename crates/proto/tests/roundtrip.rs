//! Property tests: encode then decode is the identity, and no byte string makes
//! the decoders panic.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use roost_proto::*;

fn path() -> impl Strategy<Value = String> {
    "(/[a-z0-9._-]{1,8}){1,4}"
}

fn stat() -> impl Strategy<Value = Stat> {
    (any::<[i64; 6]>(), any::<[i32; 5]>()).prop_map(|(l, i)| Stat {
        czxid: l[0],
        mzxid: l[1],
        ctime: l[2],
        mtime: l[3],
        version: i[0],
        cversion: i[1],
        aversion: i[2],
        ephemeral_owner: l[4],
        data_length: i[3],
        num_children: i[4],
        pzxid: l[5],
    })
}

fn acl() -> impl Strategy<Value = Acl> {
    (0..32i32, "world|digest|ip|auth", "[a-z:0-9.]{0,12}").prop_map(|(p, s, i)| Acl::new(p, s, i))
}

fn create_request() -> impl Strategy<Value = CreateRequest> {
    (
        path(),
        any::<Vec<u8>>(),
        prop::collection::vec(acl(), 0..3),
        0..7i32,
    )
        .prop_map(|(path, data, acl, flags)| CreateRequest {
            path,
            data: Some(Bytes::from(data)),
            acl,
            flags,
            ttl: -1,
        })
}

fn multi_op() -> impl Strategy<Value = MultiOp> {
    prop_oneof![
        create_request().prop_map(|request| MultiOp::Create {
            opcode: OpCode::Create,
            request
        }),
        (path(), any::<i32>())
            .prop_map(|(path, version)| MultiOp::Delete(DeleteRequest { path, version })),
        (path(), any::<Vec<u8>>(), any::<i32>()).prop_map(|(path, data, version)| {
            MultiOp::SetData(SetDataRequest {
                path,
                data: Some(Bytes::from(data)),
                version,
            })
        }),
        (path(), any::<i32>())
            .prop_map(|(path, version)| MultiOp::Check(CheckVersionRequest { path, version })),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        create_request().prop_map(|request| Request::Create {
            opcode: OpCode::Create2,
            request
        }),
        (create_request(), 1..i64::MAX).prop_map(|(mut request, ttl)| {
            request.ttl = ttl;
            Request::Create {
                opcode: OpCode::CreateTtl,
                request,
            }
        }),
        (path(), any::<bool>())
            .prop_map(|(path, watch)| Request::GetData(PathWatchRequest { path, watch })),
        (path(), prop::collection::vec(acl(), 0..4), any::<i32>())
            .prop_map(|(path, acl, version)| Request::SetAcl(SetAclRequest { path, acl, version })),
        prop::collection::vec(multi_op(), 0..5).prop_map(|ops| Request::Multi(Ok(ops))),
        (any::<i64>(), prop::collection::vec(path(), 0..3)).prop_map(|(z, paths)| {
            Request::SetWatches2(SetWatches2 {
                relative_zxid: z,
                data_watches: paths.clone(),
                exist_watches: vec![],
                child_watches: paths.clone(),
                persistent_watches: paths,
                persistent_recursive_watches: vec![],
            })
        }),
        Just(Request::CloseSession),
    ]
}

proptest! {
    #[test]
    fn requests_round_trip(req in request()) {
        let mut out = BytesMut::new();
        req.encode(&mut out);
        let back = Request::decode(req.opcode().code(), out.freeze()).unwrap();
        prop_assert_eq!(back, req);
    }

    #[test]
    fn responses_round_trip_and_know_their_length(s in stat(), p in path(), data in any::<Vec<u8>>()) {
        let cases = [
            (OpCode::Create2, Response::Create2(p.clone(), s.clone())),
            (OpCode::GetData, Response::GetData(Some(Bytes::from(data)), s.clone())),
            (OpCode::GetData, Response::GetData(None, s.clone())),
            (OpCode::Multi, Response::Multi(vec![
                MultiResult::Create(p.clone()),
                MultiResult::SetData(s.clone()),
                MultiResult::Error(ErrorCode::BadVersion),
            ])),
            (OpCode::GetChildren2, Response::Children2(vec![p.clone()], s.clone())),
            (OpCode::MultiRead, Response::Multi(vec![
                MultiResult::GetData(None, s.clone()),
                MultiResult::GetChildren(vec![p.clone(), "x".into()]),
                MultiResult::Create2(p.clone(), s.clone()),
                MultiResult::Delete,
            ])),
            (OpCode::GetAcl, Response::GetAcl(vec![Acl::new(31, "digest", p.clone())], s)),
            (OpCode::Sync, Response::Sync(p.clone())),
            (OpCode::WhoAmI, Response::WhoAmI(vec![ClientInfo { auth_scheme: "ip".into(), user: p.clone() }])),
            (OpCode::AddWatch, Response::AddWatch),
        ];
        for (op, resp) in cases {
            let mut out = BytesMut::new();
            resp.encode(&mut out);
            prop_assert_eq!(resp.encoded_len(), out.len(), "encoded_len of {:?}", op);
            prop_assert_eq!(Response::decode(op, out.freeze()).unwrap(), resp);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(op in -20i32..120, bytes in any::<Vec<u8>>()) {
        let bytes = Bytes::from(bytes);
        let _ = Request::decode(op, bytes.clone());
        let _ = ConnectRequest::from_bytes(bytes.clone());
        if let Some(op) = OpCode::from_code(op) {
            let _ = Response::decode(op, bytes);
        }
    }
}
