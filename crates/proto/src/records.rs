//! The records of ZooKeeper 3.9's `zookeeper.jute` that cross the client port.
//!
//! Field order and types follow the `.jute` file exactly: that order *is* the
//! wire format. Records with the same shape under different names in the
//! `.jute` file (e.g. `GetDataRequest`, `ExistsRequest`, `GetChildrenRequest`)
//! share one Rust type here; the opcode says which request it is.

use bytes::{Bytes, BytesMut};

use crate::codec::{Decode, DecodeError, Encode, JuteWrite, MinSize, Reader};

/// Declares a jute record: a struct whose encoding is its fields in order.
macro_rules! jute_record {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident : $ty:ty),* $(,)? } min_size = $min:expr;) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name { $($(#[$fmeta])* pub $field: $ty),* }

        impl Encode for $name {
            fn encode(&self, _out: &mut BytesMut) {
                $(self.$field.encode(_out);)*
            }
        }

        impl Decode for $name {
            fn decode(_r: &mut Reader) -> Result<Self, DecodeError> {
                Ok($name { $($field: <$ty>::decode(_r)?),* })
            }
        }

        impl MinSize for $name {
            const MIN_SIZE: usize = $min;
        }
    };
}

jute_record! {
    /// An identity: `scheme` (world, auth, digest, ip, super, ...) and its id.
    pub struct Id {
        pub scheme: String,
        pub id: String,
    } min_size = 8;
}

impl Id {
    pub fn new(scheme: impl Into<String>, id: impl Into<String>) -> Self {
        Id {
            scheme: scheme.into(),
            id: id.into(),
        }
    }
}

jute_record! {
    /// One access-control entry: the permissions `perms` (see [`crate::perms`]) granted to `id`.
    pub struct Acl {
        pub perms: i32,
        pub id: Id,
    } min_size = 12;
}

impl Acl {
    pub fn new(perms: i32, scheme: impl Into<String>, id: impl Into<String>) -> Self {
        Acl {
            perms,
            id: Id::new(scheme, id),
        }
    }
}

jute_record! {
    /// A znode's metadata as clients see it (68 bytes on the wire).
    pub struct Stat {
        /// zxid of the transaction that created the node.
        pub czxid: i64,
        /// zxid of the last setData (or the create).
        pub mzxid: i64,
        /// Creation time, ms since the epoch (the leader's clock).
        pub ctime: i64,
        /// Time of the last setData.
        pub mtime: i64,
        /// Number of data changes.
        pub version: i32,
        /// Number of child changes (see `roost-core` for ZooKeeper's formula).
        pub cversion: i32,
        /// Number of ACL changes.
        pub aversion: i32,
        /// Owning session of an ephemeral node, else 0.
        pub ephemeral_owner: i64,
        pub data_length: i32,
        pub num_children: i32,
        /// zxid of the last change to the children list.
        pub pzxid: i64,
    } min_size = 68;
}

jute_record! {
    /// Every request starts with this: the client's xid and the opcode.
    pub struct RequestHeader {
        pub xid: i32,
        pub opcode: i32,
    } min_size = 8;
}

jute_record! {
    /// Every reply and notification starts with this.
    pub struct ReplyHeader {
        pub xid: i32,
        pub zxid: i64,
        pub err: i32,
    } min_size = 16;
}

jute_record! {
    /// Frames each operation of a multi request or response.
    pub struct MultiHeader {
        pub opcode: i32,
        pub done: bool,
        pub err: i32,
    } min_size = 9;
}

jute_record! {
    pub struct SetWatches {
        pub relative_zxid: i64,
        pub data_watches: Vec<String>,
        pub exist_watches: Vec<String>,
        pub child_watches: Vec<String>,
    } min_size = 20;
}

jute_record! {
    pub struct SetWatches2 {
        pub relative_zxid: i64,
        pub data_watches: Vec<String>,
        pub exist_watches: Vec<String>,
        pub child_watches: Vec<String>,
        pub persistent_watches: Vec<String>,
        pub persistent_recursive_watches: Vec<String>,
    } min_size = 28;
}

jute_record! {
    pub struct AuthPacket {
        pub auth_type: i32,
        pub scheme: String,
        pub auth: Bytes,
    } min_size = 12;
}

jute_record! {
    /// getData, exists, getChildren and getChildren2 requests.
    pub struct PathWatchRequest {
        pub path: String,
        pub watch: bool,
    } min_size = 5;
}

jute_record! {
    /// getACL, sync, getAllChildrenNumber, getEphemerals (`prefixPath`) and
    /// deleteContainer requests; also the sync response.
    pub struct PathRequest {
        pub path: String,
    } min_size = 4;
}

jute_record! {
    pub struct SetDataRequest {
        pub path: String,
        /// `None` for a null buffer (length -1), which ZooKeeper keeps as null.
        pub data: Option<Bytes>,
        pub version: i32,
    } min_size = 12;
}

jute_record! {
    pub struct ReconfigRequest {
        pub joining_servers: Option<String>,
        pub leaving_servers: Option<String>,
        pub new_members: Option<String>,
        pub cur_config_id: i64,
    } min_size = 20;
}

jute_record! {
    /// exists, setData and setACL responses.
    pub struct StatResponse {
        pub stat: Stat,
    } min_size = 68;
}

jute_record! {
    /// Both the GetSASLRequest and the SetSASLResponse.
    pub struct SaslToken {
        pub token: Option<Bytes>,
    } min_size = 4;
}

jute_record! {
    pub struct DeleteRequest {
        pub path: String,
        pub version: i32,
    } min_size = 8;
}

jute_record! {
    pub struct CheckVersionRequest {
        pub path: String,
        pub version: i32,
    } min_size = 8;
}

jute_record! {
    pub struct SetAclRequest {
        pub path: String,
        pub acl: Vec<Acl>,
        pub version: i32,
    } min_size = 12;
}

jute_record! {
    pub struct AddWatchRequest {
        pub path: String,
        pub mode: i32,
    } min_size = 8;
}

jute_record! {
    /// The body of a notification (reply xid -1).
    pub struct WatcherEvent {
        pub event_type: i32,
        pub state: i32,
        pub path: String,
    } min_size = 12;
}

jute_record! {
    /// addWatch's reply body, and the result of a failed op inside a multi.
    pub struct ErrorResponse {
        pub err: i32,
    } min_size = 4;
}

jute_record! {
    pub struct CreateResponse {
        pub path: String,
    } min_size = 4;
}

jute_record! {
    pub struct Create2Response {
        pub path: String,
        pub stat: Stat,
    } min_size = 72;
}

jute_record! {
    pub struct GetDataResponse {
        pub data: Option<Bytes>,
        pub stat: Stat,
    } min_size = 72;
}

jute_record! {
    /// getChildren and getEphemerals responses.
    pub struct StringListResponse {
        pub items: Vec<String>,
    } min_size = 4;
}

jute_record! {
    pub struct GetAllChildrenNumberResponse {
        pub total_number: i32,
    } min_size = 4;
}

jute_record! {
    pub struct GetChildren2Response {
        pub children: Vec<String>,
        pub stat: Stat,
    } min_size = 72;
}

jute_record! {
    pub struct GetAclResponse {
        pub acl: Vec<Acl>,
        pub stat: Stat,
    } min_size = 72;
}

jute_record! {
    /// checkWatches and removeWatches requests; `watch_type` is a [`crate::WatcherType`] value.
    pub struct WatchesRequest {
        pub path: String,
        pub watch_type: i32,
    } min_size = 8;
}

jute_record! {
    pub struct ClientInfo {
        pub auth_scheme: String,
        pub user: String,
    } min_size = 8;
}

jute_record! {
    pub struct WhoAmIResponse {
        pub client_info: Vec<ClientInfo>,
    } min_size = 4;
}

/// A create of any flavour. `ttl` is on the wire only for createTTL (opcode 21);
/// other flavours carry -1 here, as ZooKeeper does internally.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateRequest {
    pub path: String,
    /// `None` for a null buffer (length -1), which ZooKeeper keeps as null.
    pub data: Option<Bytes>,
    pub acl: Vec<Acl>,
    pub flags: i32,
    pub ttl: i64,
}

impl CreateRequest {
    pub fn encode_with_ttl(&self, with_ttl: bool, out: &mut BytesMut) {
        out.put_jute_str(&self.path);
        self.data.encode(out);
        self.acl.encode(out);
        out.put_jute_i32(self.flags);
        if with_ttl {
            out.put_jute_i64(self.ttl);
        }
    }

    pub fn decode_with_ttl(with_ttl: bool, r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(CreateRequest {
            path: r.read_ustring()?,
            data: r.read_buffer_opt()?,
            acl: Vec::<Acl>::decode(r)?,
            flags: r.read_i32()?,
            ttl: if with_ttl { r.read_i64()? } else { -1 },
        })
    }
}

/// The first frame of a session. `read_only` is `None` for the legacy 44-byte form.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectRequest {
    pub protocol_version: i32,
    pub last_zxid_seen: i64,
    pub timeout_ms: i32,
    pub session_id: i64,
    pub passwd: Bytes,
    pub read_only: Option<bool>,
}

impl Encode for ConnectRequest {
    fn encode(&self, out: &mut BytesMut) {
        out.put_jute_i32(self.protocol_version);
        out.put_jute_i64(self.last_zxid_seen);
        out.put_jute_i32(self.timeout_ms);
        out.put_jute_i64(self.session_id);
        out.put_jute_buffer(&self.passwd);
        if let Some(ro) = self.read_only {
            out.put_jute_bool(ro);
        }
    }
}

impl Decode for ConnectRequest {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(ConnectRequest {
            protocol_version: r.read_i32()?,
            last_zxid_seen: r.read_i64()?,
            timeout_ms: r.read_i32()?,
            session_id: r.read_i64()?,
            passwd: r.read_buffer()?,
            read_only: if r.remaining() > 0 {
                Some(r.read_bool()?)
            } else {
                None
            },
        })
    }
}

/// The server's answer to a [`ConnectRequest`]; `read_only` is omitted for legacy clients.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectResponse {
    pub protocol_version: i32,
    pub timeout_ms: i32,
    pub session_id: i64,
    pub passwd: Bytes,
    pub read_only: Option<bool>,
}

impl ConnectResponse {
    /// The zeroed answer to a refused session (bad password, expired): the client
    /// reads it as "session expired".
    pub fn refused(legacy: bool) -> Self {
        ConnectResponse {
            protocol_version: 0,
            timeout_ms: 0,
            session_id: 0,
            passwd: Bytes::from_static(&[0u8; 16]),
            read_only: if legacy { None } else { Some(false) },
        }
    }
}

impl Encode for ConnectResponse {
    fn encode(&self, out: &mut BytesMut) {
        out.put_jute_i32(self.protocol_version);
        out.put_jute_i32(self.timeout_ms);
        out.put_jute_i64(self.session_id);
        out.put_jute_buffer(&self.passwd);
        if let Some(ro) = self.read_only {
            out.put_jute_bool(ro);
        }
    }
}

impl Decode for ConnectResponse {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(ConnectResponse {
            protocol_version: r.read_i32()?,
            timeout_ms: r.read_i32()?,
            session_id: r.read_i64()?,
            passwd: r.read_buffer()?,
            read_only: if r.remaining() > 0 {
                Some(r.read_bool()?)
            } else {
                None
            },
        })
    }
}
