//! Snapshot files: the whole replicated state at one log position.
//!
//! The caller clones the state (O(1), persistent maps) at the exact applied
//! index and hands the clone to [`write_snapshot`] off the apply path. The file
//! is streamed to `<name>.tmp`, checksummed, fsynced and renamed, so a crash
//! never leaves a half snapshot under a real name.
//!
//! Format (little endian): `RSNP`, version u32, the caller's metadata
//! (length-prefixed), last zxid, the nodes in depth-first pre-order (path,
//! data, ACL index, stat, kind), the ACL table, the sessions, then a crc32c of
//! everything before it and `RSNE`. Pre-order lets the loader rebuild every
//! child list with a stack instead of hash lookups; ephemeral sets are
//! rebuilt from the nodes' owners.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use imbl::OrdMap;
use roost_core::{Node, NodeKind, Session, State, StateConfig, Tree};
use roost_proto::{Acl, Id};

use crate::error::StorageError;
use crate::fs::{FileSystem, StorageFile};

const MAGIC: &[u8; 4] = b"RSNP";
const END_MAGIC: &[u8; 4] = b"RSNE";
const VERSION: u32 = 3;
/// Version 2 lacks session owners; still read.
const VERSION_WITHOUT_OWNERS: u32 = 2;
const WRITE_CHUNK_BYTES: usize = 1 << 20;
/// Written bytes between syncs: keeps the page cache from holding a whole
/// snapshot's writeback, which would stall the log's fsyncs behind it.
const SYNC_EVERY_BYTES: u64 = 8 << 20;

/// Writes through a file in large chunks while computing the checksum.
struct ChunkWriter<'a> {
    file: &'a dyn StorageFile,
    path: &'a Path,
    offset: u64,
    buf: Vec<u8>,
    crc: u32,
}

impl ChunkWriter<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= WRITE_CHUNK_BYTES {
            self.flush()?;
        }
        Ok(())
    }
    fn u32(&mut self, v: u32) -> Result<(), StorageError> {
        self.put(&v.to_le_bytes())
    }
    fn i32(&mut self, v: i32) -> Result<(), StorageError> {
        self.put(&v.to_le_bytes())
    }
    fn i64(&mut self, v: i64) -> Result<(), StorageError> {
        self.put(&v.to_le_bytes())
    }
    fn bytes(&mut self, v: &[u8]) -> Result<(), StorageError> {
        let len = u32::try_from(v.len())
            .map_err(|_| StorageError::Invariant("snapshot field over 4 GiB".into()))?;
        self.u32(len)?;
        self.put(v)
    }
    fn flush(&mut self) -> Result<(), StorageError> {
        self.crc = crc32c::crc32c_append(self.crc, &self.buf);
        self.file
            .write_at(self.offset, &self.buf)
            .map_err(|e| StorageError::io("writing snapshot", self.path, e))?;
        let before = self.offset;
        self.offset += self.buf.len() as u64;
        self.buf.clear();
        if before / SYNC_EVERY_BYTES != self.offset / SYNC_EVERY_BYTES {
            self.file
                .sync_data()
                .map_err(|e| StorageError::SyncFailed {
                    path: self.path.to_path_buf(),
                    source: e,
                })?;
        }
        Ok(())
    }
}

/// Writes `state` with `meta` to `dir/name` (via `name.tmp`). Returns the
/// final path and its size in bytes.
pub fn write_snapshot(
    fs: &dyn FileSystem,
    dir: &Path,
    name: &str,
    meta: &[u8],
    state: &State,
) -> Result<(PathBuf, u64), StorageError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let _ = fs.remove(&tmp);
    let file = fs
        .open(&tmp)
        .map_err(|e| StorageError::io("creating snapshot", &tmp, e))?;
    let result = write_body(&*file, &tmp, meta, state);
    let size = match result {
        Ok(size) => size,
        Err(e) => {
            drop(file);
            let _ = fs.remove(&tmp);
            return Err(e);
        }
    };
    file.sync_data().map_err(|e| StorageError::SyncFailed {
        path: tmp.clone(),
        source: e,
    })?;
    drop(file);
    fs.rename(&tmp, &path)
        .map_err(|e| StorageError::io("renaming snapshot", &tmp, e))?;
    fs.sync_dir(dir)
        .map_err(|e| StorageError::io("syncing directory", dir, e))?;
    Ok((path, size))
}

fn write_body(
    file: &dyn StorageFile,
    path: &Path,
    meta: &[u8],
    state: &State,
) -> Result<u64, StorageError> {
    let mut w = ChunkWriter {
        file,
        path,
        offset: 0,
        buf: Vec::with_capacity(WRITE_CHUNK_BYTES * 2),
        crc: 0,
    };
    w.put(MAGIC)?;
    w.u32(VERSION)?;
    w.bytes(meta)?;
    w.i64(state.last_zxid())?;
    let tree = state.tree();
    w.i64(tree.len() as i64)?;
    // ACLs are shared between nodes (by `Arc`); each distinct one is stored once.
    let mut acl_index: HashMap<*const Vec<Acl>, u32> = HashMap::new();
    let mut acls: Vec<Arc<Vec<Acl>>> = Vec::new();
    let mut write_node =
        |w: &mut ChunkWriter, path: &str, node: &Node| -> Result<(), StorageError> {
            let acl = *acl_index.entry(Arc::as_ptr(&node.acl)).or_insert_with(|| {
                acls.push(node.acl.clone());
                (acls.len() - 1) as u32
            });
            w.bytes(path.as_bytes())?;
            match &node.data {
                Some(data) => {
                    w.put(&[1])?;
                    w.bytes(data)?;
                }
                None => w.put(&[0])?,
            }
            w.u32(acl)?;
            for v in [node.czxid, node.mzxid, node.pzxid, node.ctime, node.mtime] {
                w.i64(v)?;
            }
            for v in [node.version, node.aversion, node.child_creates] {
                w.i32(v)?;
            }
            match node.kind {
                NodeKind::Persistent => w.put(&[0]),
                NodeKind::Ephemeral(owner) => {
                    w.put(&[1])?;
                    w.i64(owner)
                }
                NodeKind::Container => w.put(&[2]),
                NodeKind::Ttl(ms) => {
                    w.put(&[3])?;
                    w.i64(ms)
                }
            }
        };
    // Depth-first pre-order from the root, following the (sorted) child lists.
    let root = tree
        .get("/")
        .ok_or_else(|| StorageError::Invariant("the tree has no root".into()))?;
    write_node(&mut w, "/", root)?;
    let mut written = 1usize;
    let mut path = String::from("/");
    // (length of the parent's path, its children still to visit)
    type Frame<'a> = (usize, Box<dyn Iterator<Item = &'a Arc<str>> + 'a>);
    let mut stack: Vec<Frame<'_>> = vec![(1, Box::new(root.children.iter()))];
    while let Some((base_len, children)) = stack.last_mut() {
        let Some(name) = children.next() else {
            stack.pop();
            continue;
        };
        path.truncate(*base_len);
        if *base_len > 1 {
            path.push('/');
        }
        path.push_str(name);
        let node = tree
            .get(&path)
            .ok_or_else(|| StorageError::Invariant(format!("child {path} is missing")))?;
        write_node(&mut w, &path, node)?;
        written += 1;
        if !node.children.is_empty() {
            stack.push((path.len(), Box::new(node.children.iter())));
        }
    }
    if written != tree.len() {
        return Err(StorageError::Invariant(format!(
            "{} nodes are not reachable from the root",
            tree.len() - written
        )));
    }
    w.u32(acls.len() as u32)?;
    for acl in &acls {
        w.u32(acl.len() as u32)?;
        for entry in acl.iter() {
            w.i32(entry.perms)?;
            w.bytes(entry.id.scheme.as_bytes())?;
            w.bytes(entry.id.id.as_bytes())?;
        }
    }
    w.i64(state.sessions().len() as i64)?;
    for (id, session) in state.sessions().iter() {
        w.i64(*id)?;
        w.i32(session.timeout_ms)?;
        w.bytes(&session.password)?;
        w.i64(session.owner as i64)?;
    }
    w.flush()?;
    let crc = w.crc;
    w.put(&crc.to_le_bytes())?;
    w.put(END_MAGIC)?;
    w.flush()?;
    Ok(w.offset)
}

/// Reads the bytes of a snapshot file.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StorageError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or_else(|| StorageError::corrupt(self.path, self.pos as u64, "truncated"))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, StorageError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, StorageError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn i32(&mut self) -> Result<i32, StorageError> {
        Ok(i32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn i64(&mut self) -> Result<i64, StorageError> {
        Ok(i64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn bytes(&mut self) -> Result<&'a [u8], StorageError> {
        let len = self.u32()? as usize;
        self.take(len)
    }
    fn string(&mut self) -> Result<String, StorageError> {
        let at = self.pos;
        String::from_utf8(self.bytes()?.to_vec())
            .map_err(|_| StorageError::corrupt(self.path, at as u64, "invalid UTF-8"))
    }
    fn count(&mut self, min_item_bytes: usize) -> Result<usize, StorageError> {
        let at = self.pos;
        let n = self.i64()?;
        usize::try_from(n)
            .ok()
            .filter(|n| n.saturating_mul(min_item_bytes) <= self.buf.len() - self.pos)
            .ok_or_else(|| StorageError::corrupt(self.path, at as u64, "impossible item count"))
    }
}

/// Checks a snapshot's checksum and returns its caller metadata without
/// decoding the state.
pub fn read_snapshot_meta(fs: &dyn FileSystem, path: &Path) -> Result<Vec<u8>, StorageError> {
    let bytes = read_verified(fs, path)?;
    let mut c = Cursor {
        buf: &bytes,
        pos: 8,
        path,
    };
    Ok(c.bytes()?.to_vec())
}

fn read_verified(fs: &dyn FileSystem, path: &Path) -> Result<Vec<u8>, StorageError> {
    let file = fs
        .open(path)
        .map_err(|e| StorageError::io("opening snapshot", path, e))?;
    let len = file
        .size()
        .map_err(|e| StorageError::io("reading snapshot size", path, e))? as usize;
    let mut bytes = vec![0u8; len];
    file.read_at(0, &mut bytes)
        .map_err(|e| StorageError::io("reading snapshot", path, e))?;
    if len < 16 || &bytes[..4] != MAGIC || &bytes[len - 4..] != END_MAGIC {
        return Err(StorageError::corrupt(path, 0, "not a complete snapshot"));
    }
    let version = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if version != VERSION && version != VERSION_WITHOUT_OWNERS {
        return Err(StorageError::corrupt(
            path,
            4,
            format!("unknown version {version}"),
        ));
    }
    let stored = u32::from_le_bytes(bytes[len - 8..len - 4].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[..len - 8]) != stored {
        return Err(StorageError::corrupt(
            path,
            (len - 8) as u64,
            "checksum mismatch",
        ));
    }
    bytes.truncate(len - 8);
    Ok(bytes)
}

/// Loads a snapshot: the caller's metadata and the state.
pub fn read_snapshot(
    fs: &dyn FileSystem,
    path: &Path,
    config: StateConfig,
) -> Result<(Vec<u8>, State), StorageError> {
    let started = std::time::Instant::now();
    let bytes = read_verified(fs, path)?;
    let version = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    tracing::debug!("snapshot read and verified in {:?}", started.elapsed());
    let mut c = Cursor {
        buf: &bytes,
        pos: 8,
        path,
    };
    let meta = c.bytes()?.to_vec();
    let last_zxid = c.i64()?;
    let node_count = c.count(60)?;
    // Nodes arrive in pre-order: a node's parent is on the stack of its
    // ancestors, and its children follow it.
    let mut nodes: Vec<(Arc<str>, Node, u32)> = Vec::with_capacity(node_count);
    let mut ancestors: Vec<(usize, Vec<Arc<str>>)> = Vec::new();
    let finish = |nodes: &mut Vec<(Arc<str>, Node, u32)>, (at, names): (usize, Vec<Arc<str>>)| {
        nodes[at].1.children = names.into_iter().collect();
    };
    for _ in 0..node_count {
        let at = c.pos as u64;
        let path_bytes = c.bytes()?;
        let path_str = std::str::from_utf8(path_bytes)
            .map_err(|_| StorageError::corrupt(path, at, "invalid UTF-8 in a path"))?;
        let data = match c.u8()? {
            0 => None,
            _ => Some(Bytes::copy_from_slice(c.bytes()?)),
        };
        let acl_index = c.u32()?;
        let [czxid, mzxid, pzxid, ctime, mtime] =
            [c.i64()?, c.i64()?, c.i64()?, c.i64()?, c.i64()?];
        let [version, aversion, child_creates] = [c.i32()?, c.i32()?, c.i32()?];
        let kind = match c.u8()? {
            0 => NodeKind::Persistent,
            1 => NodeKind::Ephemeral(c.i64()?),
            2 => NodeKind::Container,
            3 => NodeKind::Ttl(c.i64()?),
            other => {
                return Err(StorageError::corrupt(
                    path,
                    at,
                    format!("node kind {other}"),
                ))
            }
        };
        if path_str == "/" {
            if !nodes.is_empty() {
                return Err(StorageError::corrupt(path, at, "the root is not first"));
            }
        } else {
            let (parent, name) = roost_core::path::split(path_str)
                .ok_or_else(|| StorageError::corrupt(path, at, "relative path"))?;
            while let Some((top, _)) = ancestors.last() {
                if &*nodes[*top].0 == parent {
                    break;
                }
                let done = ancestors.pop().expect("checked non-empty");
                finish(&mut nodes, done);
            }
            let Some((_, siblings)) = ancestors.last_mut() else {
                return Err(StorageError::corrupt(
                    path,
                    at,
                    format!("{path_str} has no parent before it"),
                ));
            };
            siblings.push(Arc::from(name));
        }
        ancestors.push((nodes.len(), Vec::new()));
        nodes.push((
            Arc::from(path_str),
            Node {
                data,
                acl: Arc::new(Vec::new()),
                czxid,
                mzxid,
                pzxid,
                ctime,
                mtime,
                version,
                aversion,
                child_creates,
                kind,
                children: Default::default(),
            },
            acl_index,
        ));
    }
    while let Some(done) = ancestors.pop() {
        finish(&mut nodes, done);
    }
    let acl_count = c.u32()? as usize;
    let mut acls = Vec::with_capacity(acl_count.min(1 << 20));
    for _ in 0..acl_count {
        let n = c.u32()? as usize;
        let mut acl = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let perms = c.i32()?;
            let scheme = c.string()?;
            let id = c.string()?;
            acl.push(Acl {
                perms,
                id: Id { scheme, id },
            });
        }
        acls.push(Arc::new(acl));
    }
    let session_count = c.count(16)?;
    let mut sessions: OrdMap<i64, Session> = OrdMap::new();
    for _ in 0..session_count {
        let id = c.i64()?;
        let timeout_ms = c.i32()?;
        let password = Bytes::copy_from_slice(c.bytes()?);
        let owner = if version == VERSION_WITHOUT_OWNERS {
            0
        } else {
            c.i64()? as u64
        };
        sessions.insert(
            id,
            Session {
                timeout_ms,
                password,
                ephemerals: Default::default(),
                owner,
            },
        );
    }
    if c.pos != bytes.len() {
        return Err(StorageError::corrupt(path, c.pos as u64, "trailing bytes"));
    }
    tracing::debug!("snapshot parsed in {:?}", started.elapsed());
    let mut tree_nodes = Vec::with_capacity(nodes.len());
    for (p, mut node, acl_index) in nodes {
        node.acl = acls.get(acl_index as usize).cloned().ok_or_else(|| {
            StorageError::corrupt(path, 0, format!("unknown ACL index {acl_index}"))
        })?;
        if let NodeKind::Ephemeral(owner) = node.kind {
            if let Some(session) = sessions.get_mut(&owner) {
                session.ephemerals.insert(p.clone());
            }
        }
        tree_nodes.push((p, node));
    }
    let tree = Tree::from_nodes(tree_nodes);
    tracing::debug!("snapshot tree built in {:?}", started.elapsed());
    Ok((meta, State::from_parts(tree, sessions, last_zxid, config)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::StdFs;
    use roost_core::{Entry, Txn};
    use roost_proto::{CreateRequest, OpCode, Request};

    fn sample_state() -> State {
        let mut state = State::new(StateConfig {
            extended_types: true,
            reconfig_enabled: false,
            ..Default::default()
        });
        let mut apply = |session, txn| {
            state.apply(&Entry {
                time_ms: 1000,
                session_id: session,
                cxid: 0,
                identities: vec![Id::new("ip", "127.0.0.1")].into(),
                origin: 0,
                txn,
            })
        };
        apply(
            7,
            Txn::CreateSession {
                timeout_ms: 5000,
                password: Bytes::from_static(&[9; 16]),
            },
        );
        for (path, flags, opcode) in [
            ("/a", 0, OpCode::Create),
            ("/a/b", 0, OpCode::Create),
            ("/a/e", 1, OpCode::Create),
            ("/c", 4, OpCode::CreateContainer),
        ] {
            apply(
                7,
                Txn::Request(Request::Create {
                    opcode,
                    request: CreateRequest {
                        path: path.into(),
                        data: Some(Bytes::from(path.as_bytes().to_vec())),
                        acl: roost_core::acl::open_acl(),
                        flags,
                        ttl: -1,
                    },
                }),
            );
        }
        state
    }

    #[test]
    fn snapshot_round_trips_the_whole_state() {
        let dir = tempfile::tempdir().unwrap();
        let state = sample_state();
        let (path, size) = write_snapshot(&StdFs, dir.path(), "snap", b"meta!", &state).unwrap();
        assert!(size > 0);
        let (meta, loaded) = read_snapshot(&StdFs, &path, state.config().clone()).unwrap();
        assert_eq!(meta, b"meta!");
        assert_eq!(loaded.last_zxid(), state.last_zxid());
        assert_eq!(loaded.tree().len(), state.tree().len());
        for (p, node) in state.tree().iter() {
            let other = loaded.tree().get(p).unwrap();
            assert_eq!(other.stat(), node.stat(), "{p}");
            assert_eq!(other.data, node.data);
            assert_eq!(other.acl, node.acl);
            assert_eq!(other.kind, node.kind);
        }
        assert_eq!(loaded.sessions(), state.sessions());
        assert_eq!(
            loaded.reap_candidates(i64::MAX, 10),
            state.reap_candidates(i64::MAX, 10)
        );
        assert_eq!(read_snapshot_meta(&StdFs, &path).unwrap(), b"meta!");
    }

    #[test]
    fn damaged_snapshots_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = write_snapshot(&StdFs, dir.path(), "snap", b"", &sample_state()).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        assert!(read_snapshot(&StdFs, &path, StateConfig::default()).is_err());
        std::fs::write(&path, &bytes[..middle]).unwrap();
        assert!(read_snapshot(&StdFs, &path, StateConfig::default()).is_err());
    }
}
