//! Reading Apache ZooKeeper's data directory: its snapshots
//! (`version-2/snapshot.<zxid>`) and transaction logs (`version-2/log.<zxid>`),
//! for `roost import`. The formats are written down in
//! docs/zookeeper-data-format.md; every length and count is checked against
//! the bytes left, so a damaged file gives an error, never a huge allocation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use imbl::OrdMap;
use roost_core::{NodeId, NodeInit, NodeKind, Session, State, StateConfig, Tree, TreeBuilder};
use roost_proto::{Acl, Decode, DecodeError, OpCode, Reader};

const SNAPSHOT_MAGIC: i32 = 0x5A4B_534E; // "ZKSN"
const LOG_MAGIC: i32 = 0x5A4B_4C47; // "ZKLG"
/// The byte that ends every transaction-log entry.
const ENTRY_END: u8 = 0x42;
/// Index of ZooKeeper's built-in world:anyone ACL, never stored in the cache.
const OPEN_ACL_INDEX: i64 = -1;
/// `ephemeralOwner` of a container node.
pub const CONTAINER_OWNER: i64 = i64::MIN;
/// High byte of the `ephemeralOwner` of a TTL node; the TTL is in the low 40 bits.
const TTL_OWNER_TAG: u64 = 0xFF00_0000_0000_0000;
const TTL_MASK: u64 = 0x00FF_FFFF_FFFF;

#[derive(Debug, thiserror::Error)]
pub enum ZkFormatError {
    #[error("not a ZooKeeper {what} (magic {magic:#x})")]
    BadMagic { what: &'static str, magic: i32 },
    #[error("damaged ZooKeeper file at byte {at}: {source}")]
    Decode { at: usize, source: DecodeError },
    #[error("ZooKeeper file checksum mismatch at byte {at}")]
    Checksum { at: usize },
    #[error("ZooKeeper snapshot: {0}")]
    Invalid(String),
}

/// Adler-32, as `java.util.zip.Adler32` computes it.
pub fn adler32(bytes: &[u8]) -> u32 {
    const MOD: u32 = 65_521;
    let (mut a, mut b) = (1u32, 0u32);
    // 5552 bytes is the most that can be summed before `b` could overflow.
    for chunk in bytes.chunks(5552) {
        for &byte in chunk {
            a += u32::from(byte);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

/// What a znode's `ephemeralOwner` says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZkNodeKind {
    Persistent,
    Ephemeral(i64),
    Container,
    Ttl(i64),
}

impl ZkNodeKind {
    pub fn from_owner(owner: i64) -> ZkNodeKind {
        let raw = owner as u64;
        if owner == 0 {
            ZkNodeKind::Persistent
        } else if owner == CONTAINER_OWNER {
            ZkNodeKind::Container
        } else if raw & !TTL_MASK == TTL_OWNER_TAG {
            ZkNodeKind::Ttl((raw & TTL_MASK) as i64)
        } else {
            ZkNodeKind::Ephemeral(owner)
        }
    }
}

/// One znode as a ZooKeeper snapshot stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkNode {
    /// `/` for the root (ZooKeeper stores it as the empty path).
    pub path: String,
    pub data: Option<Bytes>,
    pub acl: Vec<Acl>,
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub pzxid: i64,
}

/// A ZooKeeper snapshot: sessions and the tree, parents before children.
#[derive(Debug, Clone, Default)]
pub struct ZkSnapshot {
    /// (session id, timeout in ms).
    pub sessions: Vec<(i64, i32)>,
    pub nodes: Vec<ZkNode>,
}

struct Cursor {
    reader: Reader,
    len: usize,
}

impl Cursor {
    fn new(bytes: Bytes) -> Cursor {
        let len = bytes.len();
        Cursor {
            reader: Reader::new(bytes),
            len,
        }
    }

    fn at(&self) -> usize {
        self.len - self.reader.remaining()
    }

    fn wrap<T>(
        &mut self,
        read: impl FnOnce(&mut Reader) -> Result<T, DecodeError>,
    ) -> Result<T, ZkFormatError> {
        let at = self.at();
        read(&mut self.reader).map_err(|source| ZkFormatError::Decode { at, source })
    }

    fn i32(&mut self) -> Result<i32, ZkFormatError> {
        self.wrap(Reader::read_i32)
    }

    fn i64(&mut self) -> Result<i64, ZkFormatError> {
        self.wrap(Reader::read_i64)
    }

    fn count(&mut self, min_item: usize) -> Result<usize, ZkFormatError> {
        Ok(self.wrap(|r| r.read_count(min_item))?.unwrap_or(0))
    }
}

/// Parses a whole (uncompressed) ZooKeeper snapshot file.
pub fn read_snapshot(bytes: Bytes) -> Result<ZkSnapshot, ZkFormatError> {
    let all = bytes.clone();
    let mut c = Cursor::new(bytes);
    let magic = c.i32()?;
    if magic != SNAPSHOT_MAGIC {
        return Err(ZkFormatError::BadMagic {
            what: "snapshot",
            magic,
        });
    }
    let _version = c.i32()?;
    let _dbid = c.i64()?;
    let mut snapshot = ZkSnapshot::default();
    let sessions = c.count(12)?;
    for _ in 0..sessions {
        snapshot.sessions.push((c.i64()?, c.i32()?));
    }
    let acl_lists = c.count(12)?;
    let mut acls = std::collections::HashMap::with_capacity(acl_lists);
    for _ in 0..acl_lists {
        let index = c.i64()?;
        let list = c.wrap(Vec::<Acl>::decode)?;
        acls.insert(index, list);
    }
    loop {
        let at = c.at();
        let path = c.wrap(Reader::read_ustring)?;
        if path == "/" {
            break;
        }
        let data = c.wrap(Reader::read_buffer_opt)?;
        let acl_index = c.i64()?;
        let acl = if acl_index == OPEN_ACL_INDEX {
            roost_core::acl::open_acl()
        } else {
            acls.get(&acl_index).cloned().ok_or_else(|| {
                ZkFormatError::Invalid(format!("{path:?} at byte {at}: unknown ACL {acl_index}"))
            })?
        };
        let czxid = c.i64()?;
        let mzxid = c.i64()?;
        let ctime = c.i64()?;
        let mtime = c.i64()?;
        let version = c.i32()?;
        let cversion = c.i32()?;
        let aversion = c.i32()?;
        let ephemeral_owner = c.i64()?;
        let pzxid = c.i64()?;
        snapshot.nodes.push(ZkNode {
            path: if path.is_empty() { "/".into() } else { path },
            data,
            acl,
            czxid,
            mzxid,
            ctime,
            mtime,
            version,
            cversion,
            aversion,
            ephemeral_owner,
            pzxid,
        });
    }
    // The seal: Adler-32 of everything before it, then "/".
    let sealed = c.at();
    let stored = c.i64()?;
    if stored as u64 != u64::from(adler32(&all[..sealed])) {
        return Err(ZkFormatError::Checksum { at: sealed });
    }
    if c.wrap(Reader::read_ustring)? != "/" {
        return Err(ZkFormatError::Invalid(
            "no end mark after the checksum".into(),
        ));
    }
    // What follows (3.6+ digest, 3.9+ last zxid, each sealed) is not needed.
    Ok(snapshot)
}

/// One change in a ZooKeeper transaction log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkTxn {
    pub session: i64,
    pub cxid: i32,
    pub zxid: i64,
    pub time_ms: i64,
    pub op: ZkOp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZkOp {
    Create {
        path: String,
        data: Option<Bytes>,
        acl: Vec<Acl>,
        kind: ZkCreateKind,
        /// The parent's cversion after this create (-1: not recorded).
        parent_cversion: i32,
    },
    Delete {
        path: String,
    },
    SetData {
        path: String,
        data: Option<Bytes>,
        version: i32,
    },
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
    },
    Check {
        path: String,
        version: i32,
    },
    CreateSession {
        timeout_ms: i32,
    },
    CloseSession,
    /// A failed request, or a failed op of a multi.
    Error(i32),
    Multi(Vec<ZkOp>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZkCreateKind {
    Persistent,
    /// Owned by the transaction's session.
    Ephemeral,
    Container,
    Ttl(i64),
}

/// The path, data and ACL every create record starts with.
fn read_create_fields(r: &mut Reader) -> Result<(String, Option<Bytes>, Vec<Acl>), DecodeError> {
    Ok((
        r.read_ustring()?,
        r.read_buffer_opt()?,
        Vec::<Acl>::decode(r)?,
    ))
}

/// Decodes the record of a transaction of type `op`.
fn read_op(code: i32, r: &mut Reader) -> Result<ZkOp, DecodeError> {
    let unknown = DecodeError::InvalidValue {
        field: "transaction type",
        value: i64::from(code),
    };
    let op = OpCode::from_code(code).ok_or(unknown.clone())?;
    Ok(match op {
        OpCode::Create | OpCode::Create2 => {
            let (path, data, acl) = read_create_fields(r)?;
            let ephemeral = r.read_bool()?;
            // CreateTxnV0 (before 3.3) has no parent cversion.
            let parent_cversion = if r.remaining() >= 4 {
                r.read_i32()?
            } else {
                -1
            };
            ZkOp::Create {
                path,
                data,
                acl,
                kind: if ephemeral {
                    ZkCreateKind::Ephemeral
                } else {
                    ZkCreateKind::Persistent
                },
                parent_cversion,
            }
        }
        OpCode::CreateContainer | OpCode::CreateTtl => {
            let (path, data, acl) = read_create_fields(r)?;
            let parent_cversion = r.read_i32()?;
            let kind = if op == OpCode::CreateContainer {
                ZkCreateKind::Container
            } else {
                ZkCreateKind::Ttl(r.read_i64()?)
            };
            ZkOp::Create {
                path,
                data,
                acl,
                kind,
                parent_cversion,
            }
        }
        OpCode::Delete | OpCode::DeleteContainer => ZkOp::Delete {
            path: r.read_ustring()?,
        },
        OpCode::SetData | OpCode::Reconfig => ZkOp::SetData {
            path: r.read_ustring()?,
            data: r.read_buffer_opt()?,
            version: r.read_i32()?,
        },
        OpCode::SetAcl => ZkOp::SetAcl {
            path: r.read_ustring()?,
            acl: Vec::<Acl>::decode(r)?,
            version: r.read_i32()?,
        },
        OpCode::Check => ZkOp::Check {
            path: r.read_ustring()?,
            version: r.read_i32()?,
        },
        OpCode::CreateSession => ZkOp::CreateSession {
            timeout_ms: r.read_i32()?,
        },
        // 3.6+ lists the session's ephemerals (CloseSessionTxn); the tree says the same.
        OpCode::CloseSession => ZkOp::CloseSession,
        OpCode::Error => ZkOp::Error(r.read_i32()?),
        OpCode::Multi => {
            let count = r.read_count(8)?.unwrap_or(0);
            let mut ops = Vec::with_capacity(count);
            for _ in 0..count {
                let sub_op = r.read_i32()?;
                let sub = r.read_buffer()?;
                ops.push(read_op(sub_op, &mut Reader::new(sub))?);
            }
            ZkOp::Multi(ops)
        }
        _ => return Err(unknown),
    })
}

/// Parses a ZooKeeper transaction log file: every complete entry, in order.
/// The zeros ZooKeeper preallocates, or a torn last entry, end the log.
pub fn read_txn_log(bytes: Bytes) -> Result<Vec<ZkTxn>, ZkFormatError> {
    let mut c = Cursor::new(bytes);
    let magic = c.i32()?;
    if magic != LOG_MAGIC {
        return Err(ZkFormatError::BadMagic {
            what: "transaction log",
            magic,
        });
    }
    let _version = c.i32()?;
    let _dbid = c.i64()?;
    let mut txns = Vec::new();
    while c.reader.remaining() >= 12 {
        let at = c.at();
        let checksum = c.i64()?;
        let len = c.i32()?;
        if len == 0 {
            break; // preallocated zeros
        }
        let Ok(len) = usize::try_from(len) else {
            return Err(ZkFormatError::Invalid(format!(
                "log entry at byte {at} has length {len}"
            )));
        };
        if c.reader.remaining() < len + 1 {
            break; // torn write at the end
        }
        let payload = c.wrap(|r| r.read_bytes(len))?;
        let end = c.wrap(|r| r.read_bytes(1))?;
        if end[0] != ENTRY_END {
            break; // partial write
        }
        if checksum as u64 != u64::from(adler32(&payload)) {
            return Err(ZkFormatError::Checksum { at });
        }
        let mut r = Reader::new(payload);
        let decode = |r: &mut Reader| -> Result<ZkTxn, DecodeError> {
            let session = r.read_i64()?;
            let cxid = r.read_i32()?;
            let zxid = r.read_i64()?;
            let time_ms = r.read_i64()?;
            let op = r.read_i32()?;
            Ok(ZkTxn {
                session,
                cxid,
                zxid,
                time_ms,
                op: read_op(op, r)?,
            })
        };
        // A 3.6+ TxnDigest may follow the record; it is not needed.
        let txn = decode(&mut r).map_err(|source| ZkFormatError::Decode { at, source })?;
        txns.push(txn);
    }
    Ok(txns)
}

/// The zxid in a ZooKeeper file name (`snapshot.1a2b`, `log.100000001`).
pub fn zxid_of_file(name: &str, prefix: &str) -> Option<i64> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('.')?;
    let hex = rest.split('.').next()?;
    u64::from_str_radix(hex, 16).ok().map(|z| z as i64)
}

/// The password ZooKeeper gave session `session_id`: `java.util.Random`
/// seeded with the id XOR ZooKeeper's fixed secret, 16 bytes of `nextBytes`.
/// A client reconnecting after an import presents exactly this.
pub fn session_password(session_id: i64) -> [u8; 16] {
    const SECRET: i64 = 0xB341_5C00;
    const MULTIPLIER: u64 = 0x5_DEEC_E66D;
    const MASK: u64 = (1 << 48) - 1;
    let mut seed = ((session_id ^ SECRET) as u64 ^ MULTIPLIER) & MASK;
    let mut next_int = || {
        seed = seed.wrapping_mul(MULTIPLIER).wrapping_add(0xB) & MASK;
        (seed >> 16) as u32
    };
    let mut out = [0u8; 16];
    for chunk in out.chunks_mut(4) {
        let mut random = next_int();
        for byte in chunk {
            *byte = random as u8;
            random >>= 8;
        }
    }
    out
}

/// A ZooKeeper data directory read into a Roost state.
pub struct Imported {
    pub state: State,
    /// The snapshot it started from.
    pub snapshot: PathBuf,
    /// Transactions replayed from the logs after the snapshot.
    pub replayed: usize,
}

/// Files named `<prefix>.<hex zxid>` in `dir`, oldest first.
pub fn zk_files(dir: &Path, prefix: &str) -> Result<Vec<(i64, PathBuf)>, ZkFormatError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| ZkFormatError::Invalid(format!("reading {}: {e}", dir.display())))?;
    let mut found: Vec<(i64, PathBuf)> = entries
        .filter_map(|e| {
            let path = e.ok()?.path();
            let zxid = zxid_of_file(path.file_name()?.to_str()?, prefix)?;
            Some((zxid, path))
        })
        .collect();
    found.sort();
    Ok(found)
}

fn read_file(path: &Path) -> Result<Bytes, ZkFormatError> {
    std::fs::read(path)
        .map(Bytes::from)
        .map_err(|e| ZkFormatError::Invalid(format!("reading {}: {e}", path.display())))
}

/// A gzip snapshot (`zookeeper.snapshot.compression.method=gz`); its
/// checksum covers the uncompressed bytes.
fn gunzip(path: &Path, compressed: &[u8]) -> Result<Bytes, ZkFormatError> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(compressed)
        .read_to_end(&mut out)
        .map_err(|e| ZkFormatError::Invalid(format!("{}: not valid gzip: {e}", path.display())))?;
    Ok(Bytes::from(out))
}

/// A snappy snapshot (`zookeeper.snapshot.compression.method=snappy`):
/// snappy-java's stream format, an 8-byte magic, two version ints, then
/// blocks each prefixed by its compressed length.
fn unsnappy(path: &Path, compressed: &[u8]) -> Result<Bytes, ZkFormatError> {
    const MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
    /// snappy-java writes blocks of 32 KiB; anything claiming far more is damage.
    const BLOCK_MAX: usize = 16 << 20;
    let bad = |what: String| ZkFormatError::Invalid(format!("{}: {what}", path.display()));
    if compressed.len() < 16 || compressed[..8] != MAGIC {
        return Err(bad("not a snappy-java stream".into()));
    }
    let mut out = Vec::new();
    let mut at = 16;
    while at < compressed.len() {
        let len = compressed
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| bad(format!("a truncated block length at byte {at}")))?;
        at += 4;
        let block = compressed
            .get(at..at.saturating_add(len))
            .ok_or_else(|| bad(format!("a truncated block at byte {at}")))?;
        at += len;
        let size = snap::raw::decompress_len(block).map_err(|e| bad(e.to_string()))?;
        if size > BLOCK_MAX {
            return Err(bad(format!("a block of {size} bytes")));
        }
        let start = out.len();
        out.resize(start + size, 0);
        snap::raw::Decoder::new()
            .decompress(block, &mut out[start..])
            .map_err(|e| bad(e.to_string()))?;
    }
    Ok(Bytes::from(out))
}

fn node_kind(owner: i64) -> NodeKind {
    match ZkNodeKind::from_owner(owner) {
        ZkNodeKind::Persistent => NodeKind::Persistent,
        ZkNodeKind::Ephemeral(session) => NodeKind::Ephemeral(session),
        ZkNodeKind::Container => NodeKind::Container,
        ZkNodeKind::Ttl(ms) => NodeKind::Ttl(ms),
    }
}

/// Builds the tree of a ZooKeeper snapshot; its system nodes are added if missing.
fn tree_of(snapshot: &ZkSnapshot) -> Result<Tree, ZkFormatError> {
    fn init(n: &ZkNode) -> NodeInit<'_> {
        NodeInit {
            data: n.data.as_deref(),
            acl: Arc::new(n.acl.clone()),
            czxid: n.czxid,
            mzxid: n.mzxid,
            pzxid: n.pzxid,
            ctime: n.ctime,
            mtime: n.mtime,
            version: n.version,
            aversion: n.aversion,
            // ZooKeeper stores the cversion counting creates, as Roost does.
            child_creates: n.cversion,
            kind: node_kind(n.ephemeral_owner),
        }
    }
    let Some(root) = snapshot.nodes.first().filter(|n| n.path == "/") else {
        return Err(ZkFormatError::Invalid(
            "the first node is not the root".into(),
        ));
    };
    let mut builder = TreeBuilder::new(init(root));
    builder.reserve(snapshot.nodes.len());
    let mut ids: HashMap<&str, NodeId> = HashMap::with_capacity(snapshot.nodes.len());
    ids.insert("/", NodeId::ROOT);
    for node in &snapshot.nodes[1..] {
        let (parent, name) = roost_core::path::split(&node.path)
            .ok_or_else(|| ZkFormatError::Invalid(format!("bad path {:?}", node.path)))?;
        let parent = *ids
            .get(parent)
            .ok_or_else(|| ZkFormatError::Invalid(format!("{} before its parent", node.path)))?;
        let id = builder
            .add(parent, name, init(node))
            .map_err(|_| ZkFormatError::Invalid(format!("{} stored twice", node.path)))?;
        ids.insert(&node.path, id);
    }
    let mut tree = builder.finish();
    // Roost expects ZooKeeper's system nodes (3.5+ has /zookeeper/config).
    let fresh = Tree::new();
    for system in [
        roost_core::path::ZOOKEEPER,
        roost_core::path::QUOTA,
        roost_core::path::CONFIG,
    ] {
        if !tree.contains(system) {
            let (parent, _) = roost_core::path::split(system).expect("absolute");
            let Some((parent, _)) = tree.get_with_id(parent) else {
                continue;
            };
            let template = fresh.get(system).expect("a fresh tree has it");
            tree.create(
                parent,
                system,
                Some(&[]),
                &template.acl,
                NodeKind::Persistent,
                0,
                0,
                &mut Vec::new(),
            );
        }
    }
    Ok(tree)
}

/// Applies one logged change with ZooKeeper's replay rules: a change the
/// (fuzzy) snapshot already holds, or one whose node is gone, is skipped.
fn replay(tree: &mut Tree, sessions: &mut OrdMap<i64, Session>, txn: &ZkTxn, op: &ZkOp) {
    let mut triggers = Vec::new();
    match op {
        ZkOp::Create {
            path,
            data,
            acl,
            kind,
            ..
        } => {
            // ZooKeeper logs only valid paths; anything else is damage to skip.
            if !roost_core::path::is_valid(path) {
                return;
            }
            let Some((parent, _)) = roost_core::path::split(path) else {
                return;
            };
            if tree.contains(path) {
                return;
            }
            let Some((parent, _)) = tree.get_with_id(parent) else {
                return;
            };
            let kind = match kind {
                ZkCreateKind::Persistent => NodeKind::Persistent,
                ZkCreateKind::Ephemeral => NodeKind::Ephemeral(txn.session),
                ZkCreateKind::Container => NodeKind::Container,
                ZkCreateKind::Ttl(ms) => NodeKind::Ttl(*ms),
            };
            tree.create(
                parent,
                path,
                data.as_deref(),
                acl,
                kind,
                txn.zxid,
                txn.time_ms,
                &mut triggers,
            );
            if let Some(session) = sessions.get_mut(&txn.session) {
                if kind == NodeKind::Ephemeral(txn.session) {
                    session.ephemerals.insert(Arc::from(path.as_str()));
                }
            }
        }
        ZkOp::Delete { path } => {
            if tree.get(path).is_some_and(|n| !n.has_children()) {
                let node = tree.delete(path, txn.zxid, &mut triggers);
                if let NodeKind::Ephemeral(owner) = node.kind() {
                    if let Some(session) = sessions.get_mut(&owner) {
                        session.ephemerals.remove(path);
                    }
                }
            }
        }
        ZkOp::SetData {
            path,
            data,
            version,
        } => {
            if tree.contains(path) {
                tree.set_data(
                    path,
                    data.as_deref(),
                    *version,
                    txn.zxid,
                    txn.time_ms,
                    &mut triggers,
                );
            }
        }
        ZkOp::SetAcl { path, acl, version } => {
            if tree.contains(path) {
                tree.set_acl(path, acl, *version);
            }
        }
        ZkOp::CreateSession { timeout_ms } => {
            sessions.insert(
                txn.session,
                Session {
                    timeout_ms: *timeout_ms,
                    password: Bytes::copy_from_slice(&session_password(txn.session)),
                    ephemerals: Default::default(),
                    owner: 0,
                },
            );
        }
        ZkOp::CloseSession => {
            let Some(session) = sessions.remove(&txn.session) else {
                return;
            };
            for path in session.ephemerals.iter() {
                if tree.get(path).is_some_and(|n| !n.has_children()) {
                    tree.delete(path, txn.zxid, &mut triggers);
                }
            }
        }
        // A failed multi logs an error for its failing op and changes nothing.
        ZkOp::Multi(ops) if ops.iter().any(|op| matches!(op, ZkOp::Error(_))) => {}
        ZkOp::Multi(ops) => {
            for op in ops {
                replay(tree, sessions, txn, op);
            }
        }
        ZkOp::Check { .. } | ZkOp::Error(_) => {}
    }
}

/// Reads a ZooKeeper data directory (`dataDir`, or its `version-2`; the logs
/// in `log_dir` when ZooKeeper had a separate `dataLogDir`): the newest
/// snapshot that reads, then every logged change after it.
pub fn import_data_dir(
    dir: &Path,
    log_dir: Option<&Path>,
    config: StateConfig,
) -> Result<Imported, ZkFormatError> {
    let version2 = |d: &Path| {
        let v = d.join("version-2");
        if v.is_dir() {
            v
        } else {
            d.to_path_buf()
        }
    };
    let snap_dir = version2(dir);
    let log_dir = version2(log_dir.unwrap_or(dir));
    let mut snapshots = zk_files(&snap_dir, "snapshot")?;
    let mut last_error = None;
    let (snapshot_zxid, path, snapshot) = loop {
        let Some((zxid, path)) = snapshots.pop() else {
            return Err(last_error.unwrap_or_else(|| {
                ZkFormatError::Invalid(format!("no snapshot.* in {}", snap_dir.display()))
            }));
        };
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default();
        let bytes = read_file(&path).and_then(|b| match extension {
            "gz" => gunzip(&path, &b),
            "snappy" => unsnappy(&path, &b),
            _ => Ok(b),
        });
        match bytes.and_then(read_snapshot) {
            Ok(snapshot) => break (zxid, path, snapshot),
            Err(e) => last_error = Some(e),
        }
    };
    let mut tree = tree_of(&snapshot)?;
    let mut sessions: OrdMap<i64, Session> = snapshot
        .sessions
        .iter()
        .map(|&(id, timeout_ms)| {
            let session = Session {
                timeout_ms,
                password: Bytes::copy_from_slice(&session_password(id)),
                ephemerals: Default::default(),
                owner: 0,
            };
            (id, session)
        })
        .collect();
    // Ephemerals by owner, kept up to date by the replay.
    let _ = tree.visit_preorder(|path, node| -> Result<(), std::convert::Infallible> {
        if let NodeKind::Ephemeral(owner) = node.kind() {
            if let Some(session) = sessions.get_mut(&owner) {
                session.ephemerals.insert(Arc::from(path));
            }
        }
        Ok(())
    });
    // The newest log starting at or before the snapshot, and every later one.
    let logs = zk_files(&log_dir, "log")?;
    let first = logs
        .iter()
        .rposition(|(start, _)| *start <= snapshot_zxid)
        .unwrap_or(0);
    let mut last_zxid = snapshot_zxid;
    let mut replayed = 0;
    for (_, log) in &logs[first..] {
        for txn in read_txn_log(read_file(log)?)? {
            if txn.zxid <= snapshot_zxid {
                continue;
            }
            replay(&mut tree, &mut sessions, &txn, &txn.op);
            last_zxid = last_zxid.max(txn.zxid);
            replayed += 1;
        }
    }
    Ok(Imported {
        state: State::from_parts(tree, sessions, last_zxid, config),
        snapshot: path,
        replayed,
    })
}

/// `ephemeralOwner` as ZooKeeper stores it for a node of `kind`.
fn owner_of(kind: NodeKind) -> i64 {
    match kind {
        NodeKind::Persistent => 0,
        NodeKind::Ephemeral(session) => session,
        NodeKind::Container => CONTAINER_OWNER,
        NodeKind::Ttl(ms) => (TTL_OWNER_TAG | (ms as u64 & TTL_MASK)) as i64,
    }
}

/// `state` as a ZooKeeper 3.5+ snapshot file (no compression, no digest:
/// ZooKeeper reads a snapshot without one as written by an older version),
/// to be saved as `version-2/snapshot.<hex last zxid>`.
pub fn snapshot_bytes(state: &State) -> Vec<u8> {
    use bytes::BytesMut;
    use roost_proto::codec::JuteWrite;
    let tree = state.tree();
    let mut out = BytesMut::with_capacity(64 + tree.approximate_data_bytes() as usize * 2);
    out.put_jute_i32(SNAPSHOT_MAGIC);
    out.put_jute_i32(2);
    out.put_jute_i64(-1);
    out.put_jute_i32(state.sessions().len() as i32);
    for (id, session) in state.sessions().iter() {
        out.put_jute_i64(*id);
        out.put_jute_i32(session.timeout_ms);
    }
    // ZooKeeper's ACL cache: each distinct list once, numbered from 1.
    let lists: Vec<&Arc<Vec<Acl>>> = tree.acl_lists().collect();
    let index_of: HashMap<*const Vec<Acl>, i64> = lists
        .iter()
        .enumerate()
        .map(|(i, list)| (Arc::as_ptr(list), i as i64 + 1))
        .collect();
    out.put_jute_i32(lists.len() as i32);
    for (i, list) in lists.iter().enumerate() {
        out.put_jute_i64(i as i64 + 1);
        out.put_jute_i32(list.len() as i32);
        for acl in list.iter() {
            out.put_jute_i32(acl.perms);
            out.put_jute_str(&acl.id.scheme);
            out.put_jute_str(&acl.id.id);
        }
    }
    let _ = tree.visit_preorder(|path, node| -> Result<(), std::convert::Infallible> {
        out.put_jute_str(if path == "/" { "" } else { path });
        match node.data_slice() {
            Some(data) => out.put_jute_buffer(data),
            None => out.put_jute_null(),
        }
        out.put_jute_i64(
            index_of
                .get(&Arc::as_ptr(&node.acl))
                .copied()
                .unwrap_or(OPEN_ACL_INDEX),
        );
        for v in [node.czxid, node.mzxid, node.ctime, node.mtime] {
            out.put_jute_i64(v);
        }
        // The stored cversion counts creates, in ZooKeeper as in Roost.
        for v in [node.version, node.child_creates, node.aversion] {
            out.put_jute_i32(v);
        }
        out.put_jute_i64(owner_of(node.kind()));
        out.put_jute_i64(node.pzxid);
        Ok(())
    });
    out.put_jute_str("/");
    let seal = adler32(&out);
    out.put_jute_i64(i64::from(seal));
    out.put_jute_str("/");
    out.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adler32_matches_known_values() {
        assert_eq!(adler32(b""), 1);
        // Known value of Adler-32("Wikipedia").
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        let long = vec![0xFFu8; 100_000];
        let (mut a, mut b) = (1u64, 0u64);
        for &x in &long {
            a = (a + u64::from(x)) % 65_521;
            b = (b + a) % 65_521;
        }
        assert_eq!(adler32(&long), ((b << 16) | a) as u32);
    }

    #[test]
    fn owner_encodings() {
        assert_eq!(ZkNodeKind::from_owner(0), ZkNodeKind::Persistent);
        assert_eq!(ZkNodeKind::from_owner(i64::MIN), ZkNodeKind::Container);
        assert_eq!(
            ZkNodeKind::from_owner(0xFF00_0000_0000_1388_u64 as i64),
            ZkNodeKind::Ttl(5000)
        );
        assert_eq!(
            ZkNodeKind::from_owner(0x0100_0189_0000_0001),
            ZkNodeKind::Ephemeral(0x0100_0189_0000_0001)
        );
    }

    #[test]
    fn session_passwords_are_zookeepers() {
        // Printed by java.util.Random(id ^ 0xB3415C00L).nextBytes(new byte[16]).
        let hex = |p: [u8; 16]| p.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(
            hex(session_password(0x1_0000_0abc_0001)),
            "995304e53b64b887c9cad66eb01eac5c"
        );
        assert_eq!(hex(session_password(0)), "f22acd4a97e69d6d20a49bb638eadb38");
        assert_eq!(
            hex(session_password(i64::MAX)),
            "20f62cb5648dc2d771471c8a2486a9ee"
        );
    }

    #[test]
    fn damaged_compressed_snapshots_are_errors() {
        let path = Path::new("snapshot.1.snappy");
        assert!(unsnappy(path, b"short").is_err());
        let mut stream = vec![
            0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1,
        ];
        stream.extend_from_slice(&[0, 0, 0, 9, 1]); // a block longer than the file
        assert!(unsnappy(path, &stream).is_err());
        assert!(gunzip(Path::new("snapshot.1.gz"), b"not gzip").is_err());
    }

    #[test]
    fn file_names() {
        assert_eq!(zxid_of_file("snapshot.1a2b", "snapshot"), Some(0x1a2b));
        assert_eq!(zxid_of_file("log.100000001", "log"), Some(0x1_0000_0001));
        assert_eq!(zxid_of_file("snapshot.0.snappy", "snapshot"), Some(0));
        assert_eq!(zxid_of_file("log.zz", "log"), None);
        assert_eq!(zxid_of_file("snapshot.5", "log"), None);
    }

    #[test]
    fn damaged_files_are_errors_not_panics() {
        assert!(matches!(
            read_snapshot(Bytes::from_static(b"nope")),
            Err(ZkFormatError::BadMagic { .. })
        ));
        assert!(matches!(
            read_snapshot(Bytes::from_static(b"ZKSN\0\0\0\x02")),
            Err(ZkFormatError::Decode { .. })
        ));
        let mut log = Vec::new();
        log.extend_from_slice(&LOG_MAGIC.to_be_bytes());
        log.extend_from_slice(&2i32.to_be_bytes());
        log.extend_from_slice(&0i64.to_be_bytes());
        // An entry whose checksum is wrong.
        log.extend_from_slice(&7i64.to_be_bytes());
        log.extend_from_slice(&4i32.to_be_bytes());
        log.extend_from_slice(&[1, 2, 3, 4, ENTRY_END]);
        assert!(matches!(
            read_txn_log(Bytes::from(log.clone())),
            Err(ZkFormatError::Checksum { .. })
        ));
        // Preallocated zeros after the header end the log.
        log.truncate(16);
        log.extend_from_slice(&[0; 64]);
        assert_eq!(read_txn_log(Bytes::from(log)).unwrap(), vec![]);
    }
}
