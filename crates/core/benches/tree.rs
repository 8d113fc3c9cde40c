//! Micro-benchmarks of the data tree: create, get, set, delete and the
//! snapshot clone, on trees shaped like `roost bench --workload create`
//! (16 parents, 100-byte values).
//!
//!   cargo bench -p roost-core --bench tree

use divan::counter::ItemsCount;
use divan::Bencher;
use roost_core::acl::open_acl;
use roost_core::{NodeKind, Tree};

fn main() {
    divan::main();
}

const PARENTS: usize = 16;
const VALUE: [u8; 100] = [7; 100];

fn parent_path(p: usize) -> String {
    format!("/bench/s{p}")
}

fn child_path(i: usize) -> String {
    format!("{}/c{i:010}", parent_path(i % PARENTS))
}

fn create(tree: &mut Tree, path: &str, zxid: i64) {
    let (parent, _) = roost_core::path::split(path).expect("absolute path");
    let (parent, _) = tree.get_with_id(parent).expect("parent exists");
    let mut triggers = Vec::new();
    tree.create(
        parent,
        path,
        Some(&VALUE),
        &open_acl(),
        NodeKind::Persistent,
        zxid,
        zxid,
        &mut triggers,
    );
}

/// A tree with the 16 parents and `children` nodes under them.
fn tree_with(children: usize) -> Tree {
    let mut tree = Tree::new();
    create(&mut tree, "/bench", 1);
    for p in 0..PARENTS {
        create(&mut tree, &parent_path(p), 2);
    }
    for i in 0..children {
        create(&mut tree, &child_path(i), 3 + i as i64);
    }
    tree
}

/// Tree sizes the per-operation benchmarks run against.
const SIZES: [usize; 2] = [10_000, 1_000_000];
/// Operations per sample.
const BATCH: usize = 10_000;

#[divan::bench(args = SIZES, sample_count = 20)]
fn create_batch(bencher: Bencher, size: usize) {
    let base = tree_with(size);
    let paths: Vec<String> = (size..size + BATCH).map(child_path).collect();
    bencher
        .counter(ItemsCount::new(BATCH))
        .with_inputs(|| base.clone())
        .bench_local_values(|mut tree| {
            for (i, path) in paths.iter().enumerate() {
                create(&mut tree, path, 1_000_000_000 + i as i64);
            }
            tree
        });
}

#[divan::bench(args = SIZES, sample_count = 20)]
fn get_batch(bencher: Bencher, size: usize) {
    let tree = tree_with(size);
    let paths: Vec<String> = (0..BATCH).map(|i| child_path(i * (size / BATCH))).collect();
    bencher.counter(ItemsCount::new(BATCH)).bench_local(|| {
        let mut found = 0usize;
        for path in &paths {
            found += tree.get(divan::black_box(path)).map_or(0, |n| n.data_len());
        }
        found
    });
}

#[divan::bench(args = SIZES, sample_count = 20)]
fn set_batch(bencher: Bencher, size: usize) {
    let mut tree = tree_with(size);
    let paths: Vec<String> = (0..BATCH).map(|i| child_path(i * (size / BATCH))).collect();
    let mut triggers = Vec::new();
    bencher.counter(ItemsCount::new(BATCH)).bench_local(|| {
        for (i, path) in paths.iter().enumerate() {
            tree.set_data(
                path,
                Some(&VALUE),
                1,
                2_000_000_000 + i as i64,
                0,
                &mut triggers,
            );
            triggers.clear();
        }
    });
}

/// Creates a batch of nodes and deletes them again, so the tree keeps its
/// size from sample to sample; counts both operations.
#[divan::bench(args = SIZES, sample_count = 20)]
fn create_delete_batch(bencher: Bencher, size: usize) {
    let mut tree = tree_with(size);
    let paths: Vec<String> = (size..size + BATCH).map(child_path).collect();
    let mut triggers = Vec::new();
    bencher.counter(ItemsCount::new(2 * BATCH)).bench_local(|| {
        for (i, path) in paths.iter().enumerate() {
            create(&mut tree, path, 3_000_000_000 + i as i64);
        }
        for (i, path) in paths.iter().enumerate() {
            tree.delete(path, 3_100_000_000 + i as i64, &mut triggers);
            triggers.clear();
        }
    });
}

/// Sets spread over the whole tree right after a snapshot clone: the worst
/// case of copy-on-write, where each write lands in a chunk not yet copied.
#[divan::bench(args = SIZES, sample_count = 20)]
fn set_after_clone_batch(bencher: Bencher, size: usize) {
    let base = tree_with(size);
    let paths: Vec<String> = (0..BATCH).map(|i| child_path(i * (size / BATCH))).collect();
    bencher
        .counter(ItemsCount::new(BATCH))
        .with_inputs(|| base.clone())
        .bench_local_values(|mut tree| {
            let mut triggers = Vec::new();
            for (i, path) in paths.iter().enumerate() {
                tree.set_data(
                    path,
                    Some(&VALUE),
                    1,
                    2_000_000_000 + i as i64,
                    0,
                    &mut triggers,
                );
                triggers.clear();
            }
            tree
        });
}

/// What a snapshot costs the writer: the clone, and the first write after
/// it (which copies one chunk).
#[divan::bench(args = SIZES)]
fn clone_then_set(bencher: Bencher, size: usize) {
    let mut tree = tree_with(size);
    let path = child_path(size / 2);
    let mut triggers = Vec::new();
    bencher.bench_local(|| {
        let snapshot = tree.clone();
        tree.set_data(&path, Some(&VALUE), 1, 4_000_000_000, 0, &mut triggers);
        triggers.clear();
        snapshot
    });
}
