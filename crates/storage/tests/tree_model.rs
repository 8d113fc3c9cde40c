//! Property: the arena tree behaves like a plain map of paths under the same
//! random creates, deletes, sets, ACL changes and rolled-back multis; a clone
//! taken mid-way (a snapshot) keeps what it saw while the tree goes on; and a
//! snapshot written and read back holds the same tree and keeps behaving
//! like the model.

use std::collections::BTreeMap;

use proptest::prelude::*;
use roost_core::{NodeKind, State, StateConfig, Tree};
use roost_proto::{Acl, Stat};
use roost_storage::snapshot::{read_snapshot, write_snapshot};
use roost_storage::StdFs;

#[derive(Debug, Clone)]
enum Op {
    Create(String, Option<Vec<u8>>, bool),
    Delete(String),
    Set(String, Option<Vec<u8>>),
    SetAcl(String, i32),
    Begin,
    Rollback,
    Commit,
    Clone,
    Reload,
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "zookeeper"]), 1..4)
        .prop_map(|segments| format!("/{}", segments.join("/")))
}

fn data() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop::option::of(prop::collection::vec(any::<u8>(), 0..40))
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (path(), data(), any::<bool>()).prop_map(|(p, d, e)| Op::Create(p, d, e)),
        3 => path().prop_map(Op::Delete),
        3 => (path(), data()).prop_map(|(p, d)| Op::Set(p, d)),
        1 => (path(), 1..32i32).prop_map(|(p, perms)| Op::SetAcl(p, perms)),
        1 => Just(Op::Begin),
        1 => Just(Op::Rollback),
        1 => Just(Op::Commit),
        1 => Just(Op::Clone),
        1 => Just(Op::Reload),
    ]
}

#[derive(Debug, Clone, PartialEq)]
struct ModelNode {
    data: Option<Vec<u8>>,
    acl: Vec<Acl>,
    ephemeral: bool,
    stat: Stat,
    creates: i32,
}

type Model = BTreeMap<String, ModelNode>;

fn parent_of(path: &str) -> String {
    match path.rfind('/') {
        Some(0) => "/".into(),
        Some(i) => path[..i].into(),
        None => "/".into(),
    }
}

fn children_of(model: &Model, path: &str) -> Vec<String> {
    model
        .keys()
        .filter(|p| p.as_str() != "/" && parent_of(p) == path)
        .map(|p| p.rsplit('/').next().unwrap().to_string())
        .collect()
}

fn model_of(tree: &Tree) -> Model {
    tree.iter()
        .map(|(p, node)| {
            let model = ModelNode {
                data: node.data_slice().map(<[u8]>::to_vec),
                acl: node.acl.to_vec(),
                ephemeral: matches!(node.kind(), NodeKind::Ephemeral(_)),
                stat: node.stat(),
                creates: node.child_creates,
            };
            (p, model)
        })
        .collect()
}

/// The tree holds exactly the model: every node, stat, datum and child list.
fn assert_same(tree: &Tree, model: &Model) {
    assert_eq!(&model_of(tree), model);
    assert_eq!(tree.len(), model.len());
    for (p, node) in model {
        let got = tree.get(p).expect("model node in tree");
        assert_eq!(tree.child_names(got), children_of(model, p), "{p}");
        assert_eq!(got.stat(), node.stat, "{p}");
    }
    let bytes: u64 = model
        .iter()
        .map(|(p, n)| (p.len() + n.data.as_ref().map_or(0, Vec::len)) as u64)
        .sum();
    assert_eq!(tree.approximate_data_bytes(), bytes);
}

/// Recomputes the stat fields the model derives from its children.
fn settle(model: &mut Model) {
    let mut counts: BTreeMap<String, i32> = BTreeMap::new();
    for p in model.keys().filter(|p| p.as_str() != "/") {
        *counts.entry(parent_of(p)).or_default() += 1;
    }
    for (p, node) in model.iter_mut() {
        let n = counts.get(p).copied().unwrap_or(0);
        node.stat.num_children = n;
        node.stat.cversion = node.creates * 2 - n;
    }
}

fn acl(perms: i32) -> Vec<Acl> {
    vec![Acl::new(perms, "world", "anyone")]
}

fn reload(tree: &Tree) -> Tree {
    let dir = tempfile::tempdir().unwrap();
    let state = State::from_parts(tree.clone(), Default::default(), 0, StateConfig::default());
    let (file, _) = write_snapshot(&StdFs, dir.path(), "snap", b"", &state).unwrap();
    let (_, loaded) = read_snapshot(&StdFs, &file, StateConfig::default()).unwrap();
    loaded.tree().clone()
}

/// Applies `ops` to the tree and the model, comparing them after every
/// `check_every`-th op and at the end.
fn run(ops: Vec<Op>, check_every: usize) {
    let mut tree = Tree::new();
    let mut model = model_of(&tree);
    let mut saved: Option<Model> = None;
    let mut clones: Vec<(Tree, Model)> = Vec::new();
    let mut zxid = 0i64;
    let count = ops.len();
    for (at, op) in ops.into_iter().enumerate() {
        zxid += 1;
        let mut triggers = Vec::new();
        match op {
            Op::Create(p, data, ephemeral) => {
                let parent = parent_of(&p);
                let ok =
                    !model.contains_key(&p) && model.get(&parent).is_some_and(|n| !n.ephemeral);
                if !ok {
                    continue;
                }
                let (parent_id, _) = tree.get_with_id(&parent).unwrap();
                let kind = if ephemeral {
                    NodeKind::Ephemeral(7)
                } else {
                    NodeKind::Persistent
                };
                let stat = tree.create(
                    parent_id,
                    &p,
                    data.as_deref(),
                    &acl(31),
                    kind,
                    zxid,
                    zxid * 10,
                    &mut triggers,
                );
                let parent_node = model.get_mut(&parent).unwrap();
                parent_node.creates += 1;
                parent_node.stat.pzxid = zxid;
                let created = ModelNode {
                    stat: Stat {
                        czxid: zxid,
                        mzxid: zxid,
                        pzxid: zxid,
                        ctime: zxid * 10,
                        mtime: zxid * 10,
                        ephemeral_owner: if ephemeral { 7 } else { 0 },
                        data_length: data.as_ref().map_or(0, Vec::len) as i32,
                        ..Stat::default()
                    },
                    data,
                    acl: acl(31),
                    ephemeral,
                    creates: 0,
                };
                assert_eq!(stat, created.stat);
                model.insert(p, created);
            }
            Op::Delete(p) => {
                if !model.contains_key(&p) || !children_of(&model, &p).is_empty() {
                    continue;
                }
                tree.delete(&p, zxid, &mut triggers);
                model.remove(&p);
                let parent_node = model.get_mut(&parent_of(&p)).unwrap();
                parent_node.stat.pzxid = parent_node.stat.pzxid.max(zxid);
            }
            Op::Set(p, data) => {
                let Some(node) = model.get_mut(&p) else {
                    continue;
                };
                let version = node.stat.version + 1;
                tree.set_data(&p, data.as_deref(), version, zxid, zxid * 10, &mut triggers);
                node.stat.version = version;
                node.stat.mzxid = zxid;
                node.stat.mtime = zxid * 10;
                node.stat.data_length = data.as_ref().map_or(0, Vec::len) as i32;
                node.data = data;
            }
            Op::SetAcl(p, perms) => {
                let Some(node) = model.get_mut(&p) else {
                    continue;
                };
                let aversion = node.stat.aversion + 1;
                tree.set_acl(&p, &acl(perms), aversion);
                node.stat.aversion = aversion;
                node.acl = acl(perms);
            }
            Op::Begin if saved.is_none() => {
                tree.begin();
                saved = Some(model.clone());
            }
            Op::Rollback => {
                if let Some(before) = saved.take() {
                    tree.rollback();
                    model = before;
                }
            }
            Op::Commit => {
                if saved.take().is_some() {
                    tree.commit();
                }
            }
            Op::Clone => {
                settle(&mut model);
                clones.push((tree.clone(), model.clone()));
            }
            Op::Reload if saved.is_none() => tree = reload(&tree),
            Op::Begin | Op::Reload => {}
        }
        settle(&mut model);
        if at % check_every == 0 || at + 1 == count {
            assert_same(&tree, &model);
        }
    }
    for (clone, seen) in &clones {
        assert_same(clone, seen);
    }
    if saved.is_none() {
        assert_same(&reload(&tree), &model);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn the_tree_behaves_like_a_map_of_paths(ops in prop::collection::vec(op(), 1..120)) {
        run(ops, 1);
    }
}

/// Enough nodes that clones share and copy whole chunks.
#[test]
fn clones_and_reloads_hold_across_many_chunks() {
    let mut ops = Vec::new();
    for i in 0..(roost_core::CHUNK_SLOTS * 3) {
        ops.push(Op::Create(
            format!("/n{i}"),
            Some(vec![i as u8]),
            i % 3 == 0,
        ));
        if i % 700 == 0 {
            ops.push(Op::Clone);
        }
    }
    for i in (0..roost_core::CHUNK_SLOTS * 3).step_by(5) {
        ops.push(Op::Delete(format!("/n{i}")));
    }
    ops.push(Op::Clone);
    ops.push(Op::Reload);
    for i in 0..200 {
        ops.push(Op::Create(format!("/m{i}"), None, false));
    }
    run(ops, 500);
}
