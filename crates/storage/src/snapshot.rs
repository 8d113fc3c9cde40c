//! Snapshot files: the whole replicated state at one log position.
//!
//! The caller clones the state at the exact applied index (the tree's chunks
//! are copy-on-write, sessions a persistent map) and hands the clone to
//! [`write_snapshot`] off the apply path. The file is streamed to
//! `<name>.tmp`, checksummed, fsynced and renamed, so a crash never leaves a
//! half snapshot under a real name.
//!
//! Format 4 (little endian): `RSNP`, version u32, the caller's metadata
//! (length-prefixed), last zxid, the ACL table, the nodes in depth-first
//! pre-order (the parent's visit number, the name, data, ACL index, stat,
//! kind), the sessions, then a crc32c of everything before it and `RSNE`.
//! A node names its parent by number, so loading parses no path and looks no
//! parent up; ephemeral sets are rebuilt from the nodes' owners. Formats 2
//! and 3 (whole paths, ACLs last) still load.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use imbl::OrdMap;
use roost_core::{NodeId, NodeInit, NodeKind, Session, State, StateConfig, TreeBuilder};
use roost_proto::{Acl, Id};

use crate::error::StorageError;
use crate::fs::{FileSystem, StorageFile};

const MAGIC: &[u8; 4] = b"RSNP";
const END_MAGIC: &[u8; 4] = b"RSNE";
const VERSION: u32 = 4;
/// From version 4 the ACL table comes first and a node names its parent by
/// visit number instead of storing its whole path; 2 and 3 are still read.
const VERSION_ACLS_FIRST: u32 = 4;
/// Version 2 lacks session owners.
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
    // ACLs are shared between nodes (interned); each distinct one is stored once.
    let mut acl_index: HashMap<*const Vec<Acl>, u32> = HashMap::new();
    let acls: Vec<&Arc<Vec<Acl>>> = tree.acl_lists().collect();
    w.u32(acls.len() as u32)?;
    for (at, acl) in acls.iter().enumerate() {
        acl_index.insert(Arc::as_ptr(acl), at as u32);
        w.u32(acl.len() as u32)?;
        for entry in acl.iter() {
            w.i32(entry.perms)?;
            w.bytes(entry.id.scheme.as_bytes())?;
            w.bytes(entry.id.id.as_bytes())?;
        }
    }
    w.i64(tree.len() as i64)?;
    let mut written = 0usize;
    tree.visit_records(|parent, node| -> Result<(), StorageError> {
        let acl = *acl_index
            .get(&Arc::as_ptr(&node.acl))
            .ok_or_else(|| StorageError::Invariant("a node's ACL is not interned".into()))?;
        w.u32(parent.unwrap_or(u32::MAX))?;
        w.bytes(node.name_bytes())?;
        match node.data_slice() {
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
        match node.kind() {
            NodeKind::Persistent => w.put(&[0])?,
            NodeKind::Ephemeral(owner) => {
                w.put(&[1])?;
                w.i64(owner)?;
            }
            NodeKind::Container => w.put(&[2])?,
            NodeKind::Ttl(ms) => {
                w.put(&[3])?;
                w.i64(ms)?;
            }
        }
        written += 1;
        Ok(())
    })?;
    if written != tree.len() {
        return Err(StorageError::Invariant(format!(
            "{} nodes are not reachable from the root",
            tree.len().abs_diff(written)
        )));
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
    if !(VERSION_WITHOUT_OWNERS..=VERSION).contains(&version) {
        return Err(StorageError::corrupt(
            path,
            4,
            format!(
                "snapshot format version {version} is not one this Roost reads (2 to {VERSION})"
            ),
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
    let mut loader = TreeLoader::default();
    if version >= VERSION_ACLS_FIRST {
        let acls = read_acls(&mut c)?;
        let node_count = c.count(50)?;
        loader.ids.reserve(node_count);
        loader.expected = node_count;
        for _ in 0..node_count {
            let at = c.pos as u64;
            let parent = match c.u32()? {
                u32::MAX => None,
                ordinal => Some(ordinal),
            };
            let name = c.bytes()?;
            let name = std::str::from_utf8(name)
                .map_err(|_| StorageError::corrupt(path, at, "invalid UTF-8 in a name"))?;
            let raw = read_node(&mut c, parent, name)?;
            loader.add(raw, &acls, path, at)?;
        }
    } else {
        // Version 2 and 3: full paths in pre-order, the ACL table after them.
        let node_count = c.count(60)?;
        loader.expected = node_count;
        let mut raws = Vec::with_capacity(node_count);
        // (path, visit number) of the ancestors of the node being read
        let mut ancestors: Vec<(&str, u32)> = Vec::new();
        for ordinal in 0..node_count as u32 {
            let at = c.pos as u64;
            let path_bytes = c.bytes()?;
            let path_str = std::str::from_utf8(path_bytes)
                .map_err(|_| StorageError::corrupt(path, at, "invalid UTF-8 in a path"))?;
            let (parent, name) = if path_str == "/" {
                (None, "")
            } else {
                let (parent_path, name) = roost_core::path::split(path_str)
                    .ok_or_else(|| StorageError::corrupt(path, at, "relative path"))?;
                while ancestors.last().is_some_and(|(p, _)| *p != parent_path) {
                    ancestors.pop();
                }
                let Some((_, parent)) = ancestors.last() else {
                    return Err(StorageError::corrupt(
                        path,
                        at,
                        format!("{path_str} has no parent before it"),
                    ));
                };
                (Some(*parent), name)
            };
            ancestors.push((path_str, ordinal));
            raws.push((at, read_node(&mut c, parent, name)?));
        }
        let acls = read_acls(&mut c)?;
        for (at, raw) in raws {
            loader.add(raw, &acls, path, at)?;
        }
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
    let Some(builder) = loader.builder else {
        return Err(StorageError::corrupt(path, 0, "the snapshot has no root"));
    };
    for (owner, id) in loader.ephemerals {
        if let Some(session) = sessions.get_mut(&owner) {
            session.ephemerals.insert(Arc::from(builder.path_of(id)));
        }
    }
    let tree = builder.finish();
    tracing::debug!("snapshot tree built in {:?}", started.elapsed());
    Ok((meta, State::from_parts(tree, sessions, last_zxid, config)))
}

fn read_acls(c: &mut Cursor<'_>) -> Result<Vec<Arc<Vec<Acl>>>, StorageError> {
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
    Ok(acls)
}

/// One node record as read, before its ACL is resolved.
struct RawNode<'a> {
    /// The visit number of its parent; `None` for the root.
    parent: Option<u32>,
    name: &'a str,
    data: Option<&'a [u8]>,
    acl: u32,
    stat: [i64; 5],
    versions: [i32; 3],
    kind: NodeKind,
}

/// The fields after a node's path or name.
fn read_node<'a>(
    c: &mut Cursor<'a>,
    parent: Option<u32>,
    name: &'a str,
) -> Result<RawNode<'a>, StorageError> {
    let at = c.pos as u64;
    let data = match c.u8()? {
        0 => None,
        _ => Some(c.bytes()?),
    };
    let acl = c.u32()?;
    let stat = [c.i64()?, c.i64()?, c.i64()?, c.i64()?, c.i64()?];
    let versions = [c.i32()?, c.i32()?, c.i32()?];
    let kind = match c.u8()? {
        0 => NodeKind::Persistent,
        1 => NodeKind::Ephemeral(c.i64()?),
        2 => NodeKind::Container,
        3 => NodeKind::Ttl(c.i64()?),
        other => {
            return Err(StorageError::corrupt(
                c.path,
                at,
                format!("node kind {other}"),
            ))
        }
    };
    Ok(RawNode {
        parent,
        name,
        data,
        acl,
        stat,
        versions,
        kind,
    })
}

/// Builds the tree from records in pre-order, each naming its parent by
/// visit number.
#[derive(Default)]
struct TreeLoader {
    builder: Option<TreeBuilder>,
    /// Ids by visit number.
    ids: Vec<NodeId>,
    /// Ephemeral nodes by owner, registered with their sessions at the end.
    ephemerals: Vec<(i64, NodeId)>,
    /// Nodes the snapshot says it holds (bounded by its size).
    expected: usize,
}

impl TreeLoader {
    fn add(
        &mut self,
        raw: RawNode<'_>,
        acls: &[Arc<Vec<Acl>>],
        path: &Path,
        at: u64,
    ) -> Result<(), StorageError> {
        let acl = acls.get(raw.acl as usize).cloned().ok_or_else(|| {
            StorageError::corrupt(path, at, format!("unknown ACL index {}", raw.acl))
        })?;
        let [czxid, mzxid, pzxid, ctime, mtime] = raw.stat;
        let [version, aversion, child_creates] = raw.versions;
        let init = NodeInit {
            data: raw.data,
            acl,
            czxid,
            mzxid,
            pzxid,
            ctime,
            mtime,
            version,
            aversion,
            child_creates,
            kind: raw.kind,
        };
        let id = match (raw.parent, &mut self.builder) {
            (None, None) => {
                let mut builder = TreeBuilder::new(init);
                builder.reserve(self.expected);
                self.builder = Some(builder);
                NodeId::ROOT
            }
            (Some(parent), Some(builder)) => {
                let parent = *self
                    .ids
                    .get(parent as usize)
                    .ok_or_else(|| StorageError::corrupt(path, at, "a node before its parent"))?;
                builder
                    .add(parent, raw.name, init)
                    .map_err(|_| StorageError::corrupt(path, at, "a node stored twice"))?
            }
            (None, Some(_)) => return Err(StorageError::corrupt(path, at, "a second root")),
            (Some(_), None) => {
                return Err(StorageError::corrupt(path, at, "the root is not first"))
            }
        };
        if let NodeKind::Ephemeral(owner) = raw.kind {
            self.ephemerals.push((owner, id));
        }
        self.ids.push(id);
        Ok(())
    }
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
            let other = loaded.tree().get(&p).unwrap();
            assert_eq!(other.stat(), node.stat(), "{p}");
            assert_eq!(other.data(), node.data());
            assert_eq!(other.acl, node.acl);
            assert_eq!(other.kind(), node.kind());
            assert_eq!(
                loaded.tree().child_names(other),
                state.tree().child_names(node)
            );
        }
        assert_eq!(loaded.sessions(), state.sessions());
        assert_eq!(
            loaded.reap_candidates(i64::MAX, 10),
            state.reap_candidates(i64::MAX, 10)
        );
        assert_eq!(read_snapshot_meta(&StdFs, &path).unwrap(), b"meta!");
    }

    /// Format 3 as Roost 0.1 wrote it: whole paths in pre-order, ACLs last.
    fn encode_version_3(state: &State) -> Vec<u8> {
        fn bytes(out: &mut Vec<u8>, v: &[u8]) {
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v);
        }
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&3u32.to_le_bytes());
        bytes(&mut out, b"old");
        out.extend_from_slice(&state.last_zxid().to_le_bytes());
        let tree = state.tree();
        out.extend_from_slice(&(tree.len() as i64).to_le_bytes());
        let acls: Vec<_> = tree.acl_lists().cloned().collect();
        for (p, node) in tree.iter() {
            bytes(&mut out, p.as_bytes());
            match node.data_slice() {
                Some(d) => {
                    out.push(1);
                    bytes(&mut out, d);
                }
                None => out.push(0),
            }
            let acl = acls.iter().position(|a| Arc::ptr_eq(a, &node.acl)).unwrap();
            out.extend_from_slice(&(acl as u32).to_le_bytes());
            for v in [node.czxid, node.mzxid, node.pzxid, node.ctime, node.mtime] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            for v in [node.version, node.aversion, node.child_creates] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            match node.kind() {
                NodeKind::Persistent => out.push(0),
                NodeKind::Ephemeral(o) => {
                    out.push(1);
                    out.extend_from_slice(&o.to_le_bytes());
                }
                NodeKind::Container => out.push(2),
                NodeKind::Ttl(ms) => {
                    out.push(3);
                    out.extend_from_slice(&ms.to_le_bytes());
                }
            }
        }
        out.extend_from_slice(&(acls.len() as u32).to_le_bytes());
        for acl in &acls {
            out.extend_from_slice(&(acl.len() as u32).to_le_bytes());
            for e in acl.iter() {
                out.extend_from_slice(&e.perms.to_le_bytes());
                bytes(&mut out, e.id.scheme.as_bytes());
                bytes(&mut out, e.id.id.as_bytes());
            }
        }
        out.extend_from_slice(&(state.sessions().len() as i64).to_le_bytes());
        for (id, session) in state.sessions().iter() {
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&session.timeout_ms.to_le_bytes());
            bytes(&mut out, &session.password);
            out.extend_from_slice(&(session.owner as i64).to_le_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(END_MAGIC);
        out
    }

    #[test]
    fn a_version_3_snapshot_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let state = sample_state();
        let path = dir.path().join("old");
        std::fs::write(&path, encode_version_3(&state)).unwrap();
        let (meta, loaded) = read_snapshot(&StdFs, &path, state.config().clone()).unwrap();
        assert_eq!(meta, b"old");
        assert_eq!(loaded.tree().len(), state.tree().len());
        for (p, node) in state.tree().iter() {
            let other = loaded.tree().get(&p).unwrap();
            assert_eq!(
                (other.stat(), other.data()),
                (node.stat(), node.data()),
                "{p}"
            );
        }
        assert_eq!(loaded.sessions(), state.sessions());
        assert_eq!(
            loaded.tree().approximate_data_bytes(),
            state.tree().approximate_data_bytes()
        );
    }

    #[test]
    fn an_unknown_version_is_refused_by_number() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = write_snapshot(&StdFs, dir.path(), "snap", b"", &sample_state()).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[4..8].copy_from_slice(&9u32.to_le_bytes());
        let len = bytes.len();
        let crc = crc32c::crc32c(&bytes[..len - 8]);
        bytes[len - 8..len - 4].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let err = read_snapshot(&StdFs, &path, StateConfig::default()).unwrap_err();
        assert!(err.to_string().contains("version 9"), "{err}");
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
