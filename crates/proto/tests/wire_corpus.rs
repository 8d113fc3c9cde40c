//! Golden bytes: every frame of the ZooKeeper 3.8 wire corpus (captured from
//! real clients talking to a real server) decodes, and re-encodes to the exact
//! same bytes.

use bytes::{Bytes, BytesMut};
use roost_proto::{
    ConnectRequest, ConnectResponse, Decode, Encode, ErrorCode, OpCode, Reader, ReplyHeader,
    Request, RequestDecodeError, RequestHeader, Response, WatcherEvent,
};
use serde_json::Value;

const CORPUS: &str = include_str!("data/zk-3.8.0.jsonl");

fn frames() -> Vec<Value> {
    CORPUS
        .lines()
        .map(|l| serde_json::from_str(l).expect("corpus line is JSON"))
        .collect()
}

/// The payload of a frame (its hex without the 4-byte length prefix), checking the prefix.
fn payload(frame: &Value) -> Bytes {
    let raw = hex::decode(frame["hex"].as_str().unwrap()).unwrap();
    let len = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize;
    assert_eq!(len, raw.len() - 4, "length prefix of {frame}");
    Bytes::from(raw[4..].to_vec())
}

fn opcode_named(name: &str) -> Option<OpCode> {
    (-20..200)
        .filter_map(OpCode::from_code)
        .find(|op| op.zk_name().eq_ignore_ascii_case(name))
}

fn reencode(value: &impl Encode) -> Bytes {
    let mut out = BytesMut::new();
    value.encode(&mut out);
    out.freeze()
}

#[test]
fn every_corpus_frame_round_trips_byte_for_byte() {
    let mut checked = 0;
    for frame in frames() {
        let kind = frame["decoded"]["kind"].as_str().unwrap();
        if matches!(
            kind,
            "connect-request" | "connect-response" | "request" | "reply" | "notification"
        ) {
            checked += 1;
        }
        match kind {
            "connect-request" => {
                let body = payload(&frame);
                let req = ConnectRequest::from_bytes(body.clone()).unwrap();
                assert_eq!(req.read_only.is_none(), body.len() == 44);
                assert_eq!(reencode(&req), body);
            }
            "connect-response" => {
                let body = payload(&frame);
                let resp = ConnectResponse::from_bytes(body.clone()).unwrap();
                assert_eq!(reencode(&resp), body);
            }
            "request" => {
                let body = payload(&frame);
                let mut r = Reader::new(body.clone());
                let header = RequestHeader::decode(&mut r).unwrap();
                let rest = r.read_rest();
                match Request::decode(header.opcode, rest.clone()) {
                    Ok(Request::Multi(Err(_))) => {
                        assert_eq!(frame["case"], "multi-read-op-in-write-multi");
                    }
                    Ok(request)
                        if frame["case"] == "create-error-invalidacl" && header.xid == 11 =>
                    {
                        // kazoo sends the `auth` ACL with a null id; null ustrings read as "".
                        let Request::Create { request, .. } = request else {
                            panic!()
                        };
                        assert_eq!(request.acl[0].id.id, "");
                    }
                    Ok(request) => {
                        let mut out = BytesMut::new();
                        request.encode(&mut out);
                        assert_eq!(out.freeze(), rest, "re-encoding {frame}");
                        assert_eq!(request.opcode().code(), header.opcode);
                    }
                    Err(RequestDecodeError::UnknownOpcode(999)) => {}
                    Err(e) => panic!("{e} for {frame}"),
                }
            }
            "reply" => {
                let body = payload(&frame);
                let mut r = Reader::new(body.clone());
                let header = ReplyHeader::decode(&mut r).unwrap();
                let rest = r.read_rest();
                let op_name = frame["decoded"]["in_reply_to"].as_str().unwrap();
                let Some(op) = opcode_named(op_name) else {
                    assert_eq!(op_name, "unknown(999)");
                    assert_eq!(header.err, ErrorCode::Unimplemented.code());
                    assert!(rest.is_empty());
                    continue;
                };
                if header.err != 0 {
                    assert!(rest.is_empty(), "error replies carry no body: {frame}");
                    continue;
                }
                let response = Response::decode(op, rest.clone())
                    .unwrap_or_else(|e| panic!("{e} decoding {frame}"));
                let mut out = BytesMut::new();
                response.encode(&mut out);
                assert_eq!(out.freeze(), rest, "re-encoding {frame}");
            }
            "notification" => {
                let body = payload(&frame);
                let mut r = Reader::new(body.clone());
                let header = ReplyHeader::decode(&mut r).unwrap();
                assert_eq!(header.xid, -1);
                let event = WatcherEvent::decode(&mut r).unwrap();
                r.finish().unwrap();
                let mut out = BytesMut::new();
                header.encode(&mut out);
                event.encode(&mut out);
                assert_eq!(out.freeze(), body);
            }
            _ => continue,
        }
    }
    // 36 + 35 connects, 22 notifications, 155 requests and 154 replies.
    assert_eq!(checked, 402);
}

#[test]
fn create_inside_multi_keeps_its_flavour() {
    // multi-create-flavours: create2, createContainer and createTTL nested in a multi.
    let frame = frames()
        .into_iter()
        .find(|f| f["case"] == "multi-create-flavours" && f["decoded"]["kind"] == "request")
        .unwrap();
    let mut r = Reader::new(payload(&frame));
    let header = RequestHeader::decode(&mut r).unwrap();
    let Request::Multi(Ok(ops)) = Request::decode(header.opcode, r.read_rest()).unwrap() else {
        panic!("not a multi");
    };
    let opcodes: Vec<OpCode> = ops.iter().map(|op| op.opcode()).collect();
    assert_eq!(
        opcodes,
        [OpCode::Create2, OpCode::CreateContainer, OpCode::CreateTtl]
    );
}
