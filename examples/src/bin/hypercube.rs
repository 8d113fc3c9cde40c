//! The graph computation of ZooKeeper's multi() announcement: the 32 nodes
//! of a 5-dimensional hypercube as znodes, node 0 held at 0 V and node 31 at
//! 1 V; worker processes repeatedly set a node to the mean of its
//! neighbours in one `multi` that also checks every neighbour's version, so
//! each update is computed from a consistent view. Edges are added with one
//! `multi` per edge that updates both endpoints' neighbour lists, so the
//! graph is never half-connected. Verified: the voltages converge to the
//! exact solution (by Hamming weight k: 0, 3/8, 15/32, 17/32, 5/8, 1).
//!
//!   cargo run --release -p roost-examples --bin hypercube -- --server 127.0.0.1:2181

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use roost_client::{Client, CreateMode, Error, ErrorCode, Op, ReadOp, ReadResult, Stat};
use roost_examples::{connect, run_id, spawn_worker};

const NODES: usize = 32;
const EXACT_BY_WEIGHT: [f64; 6] = [0.0, 0.375, 0.46875, 0.53125, 0.625, 1.0];
const TOLERANCE: f64 = 1e-6;

#[derive(Parser)]
struct Args {
    /// host:port[,host:port...]
    #[arg(long, default_value = "127.0.0.1:2181")]
    server: String,
    /// Worker processes.
    #[arg(long, default_value_t = 3)]
    workers: usize,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    #[arg(long, hide = true)]
    worker: bool,
    /// (worker) the graph's root znode.
    #[arg(long, hide = true)]
    root: Option<String>,
}

/// A node's znode data: its voltage and its neighbours.
#[derive(Debug, Clone, PartialEq)]
struct Vertex {
    voltage: f64,
    neighbours: Vec<usize>,
}

impl Vertex {
    fn encode(&self) -> Vec<u8> {
        let list: Vec<String> = self.neighbours.iter().map(|n| n.to_string()).collect();
        format!("{:?}|{}", self.voltage, list.join(",")).into_bytes()
    }

    fn decode(data: &[u8]) -> anyhow::Result<Vertex> {
        let text = std::str::from_utf8(data)?;
        let (voltage, list) = text.split_once('|').context("no '|' in vertex data")?;
        let neighbours = if list.is_empty() {
            Vec::new()
        } else {
            list.split(',').map(str::parse).collect::<Result<_, _>>()?
        };
        Ok(Vertex {
            voltage: voltage.parse()?,
            neighbours,
        })
    }
}

fn node_path(root: &str, i: usize) -> String {
    format!("{root}/node-{i:02}")
}

fn is_fixed(i: usize) -> bool {
    i == 0 || i == NODES - 1
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.worker {
        let root = args.root.context("--root")?;
        return worker(&args.server, &root).await;
    }
    coordinator(&args).await
}

async fn coordinator(args: &Args) -> anyhow::Result<()> {
    let zk = connect(&args.server, Duration::from_secs(10)).await?;
    let root = format!("/hypercube-{}", run_id());
    zk.create(&root, b"", CreateMode::Persistent).await?;
    for i in 0..NODES {
        let vertex = Vertex {
            voltage: if i == NODES - 1 { 1.0 } else { 0.0 },
            neighbours: Vec::new(),
        };
        zk.create(
            &node_path(&root, i),
            &vertex.encode(),
            CreateMode::Persistent,
        )
        .await?;
    }
    let mut edges = 0;
    for i in 0..NODES {
        for bit in 0..5 {
            let j = i ^ (1 << bit);
            if i < j {
                connect_nodes(&zk, &root, i, j).await?;
                edges += 1;
            }
        }
    }
    println!("graph {root}: {NODES} nodes, {edges} edges, each added by one multi");

    let logs = std::env::temp_dir().join(format!("roost-hypercube-{}", run_id()));
    std::fs::create_dir_all(&logs)?;
    let mut workers = Vec::new();
    for w in 0..args.workers {
        let log = logs.join(format!("worker-{w}.log"));
        let child = spawn_worker(
            &[
                "--server".into(),
                args.server.clone(),
                "--root".into(),
                root.clone(),
            ],
            &log,
        )?;
        workers.push((child, log));
    }
    println!("{} worker processes started", workers.len());

    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.timeout);
    let converged = loop {
        let voltages = match read_voltages(&zk, &root).await {
            Ok(voltages) => voltages,
            Err(e) if e.downcast_ref::<Error>().is_some_and(Error::is_retryable) => {
                zk.wait_connected().await?;
                continue;
            }
            Err(e) => return Err(e),
        };
        let error = max_error(&voltages);
        if error < TOLERANCE {
            break Some(voltages);
        }
        if Instant::now() > deadline {
            break None;
        }
        print!(
            "\rmax error {error:.3e} after {:.1} s   ",
            started.elapsed().as_secs_f64()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!();
    zk.create(&format!("{root}/done"), b"", CreateMode::Persistent)
        .await?;
    let (mut updates, mut retries) = (0u64, 0u64);
    for (mut child, log) in workers {
        let status = child.wait()?;
        let text = std::fs::read_to_string(&log)?;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("totals ") {
                let mut parts = rest.split_whitespace();
                updates += parts.next().unwrap_or("0").parse::<u64>()?;
                retries += parts.next().unwrap_or("0").parse::<u64>()?;
            }
        }
        if !status.success() {
            bail!("a worker failed ({status}); its log: {}", log.display());
        }
    }
    let _ = std::fs::remove_dir_all(&logs);
    let Some(voltages) = converged else {
        bail!("not converged within {} s", args.timeout);
    };
    // The graph is whole: every node lists exactly its 5 hypercube neighbours.
    for i in 0..NODES {
        let (data, _) = zk.get_data(&node_path(&root, i)).await?;
        let mut neighbours = Vertex::decode(&data)?.neighbours;
        neighbours.sort();
        let mut expected: Vec<usize> = (0..5).map(|b| i ^ (1 << b)).collect();
        expected.sort();
        if neighbours != expected {
            bail!("node {i} lists {neighbours:?}, expected {expected:?}");
        }
    }
    for (weight, exact) in EXACT_BY_WEIGHT.iter().enumerate() {
        let got: Vec<f64> = (0..NODES)
            .filter(|i| i.count_ones() as usize == weight)
            .map(|i| voltages[i])
            .collect();
        println!("weight {weight}: exact {exact:.6}, computed {:.9}", got[0]);
    }
    println!(
        "converged within {TOLERANCE:e} in {:.1} s: {updates} updates, {retries} BadVersion retries",
        started.elapsed().as_secs_f64()
    );
    zk.delete_all(&root).await?;
    zk.close().await;
    Ok(())
}

/// Adds the edge i-j: both neighbour lists change in one multi, each
/// checked against the version it was read at; retried on a conflict.
async fn connect_nodes(zk: &Client, root: &str, i: usize, j: usize) -> anyhow::Result<()> {
    loop {
        let (a_data, a_stat) = zk.get_data(&node_path(root, i)).await?;
        let (b_data, b_stat) = zk.get_data(&node_path(root, j)).await?;
        let (mut a, mut b) = (Vertex::decode(&a_data)?, Vertex::decode(&b_data)?);
        a.neighbours.push(j);
        b.neighbours.push(i);
        let ops = vec![
            Op::set_data(node_path(root, i), a.encode(), Some(a_stat.version)),
            Op::set_data(node_path(root, j), b.encode(), Some(b_stat.version)),
        ];
        match zk.multi(ops).await {
            Ok(_) => return Ok(()),
            Err(Error::Multi {
                code: ErrorCode::BadVersion,
                ..
            }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

async fn read_voltages(zk: &Client, root: &str) -> anyhow::Result<Vec<f64>> {
    let reads = (0..NODES)
        .map(|i| ReadOp::GetData(node_path(root, i)))
        .collect();
    let mut voltages = Vec::with_capacity(NODES);
    for result in zk.multi_read(reads).await? {
        match result {
            ReadResult::Data(data, _) => voltages.push(Vertex::decode(&data)?.voltage),
            other => bail!("reading the graph: {other:?}"),
        }
    }
    Ok(voltages)
}

fn max_error(voltages: &[f64]) -> f64 {
    (0..NODES)
        .map(|i| (voltages[i] - EXACT_BY_WEIGHT[i.count_ones() as usize]).abs())
        .fold(0.0, f64::max)
}

/// Relaxes random free nodes until the coordinator creates `root/done`.
async fn worker(server: &str, root: &str) -> anyhow::Result<()> {
    let zk = connect(server, Duration::from_secs(10)).await?;
    let done = format!("{root}/done");
    let (mut updates, mut retries) = (0u64, 0u64);
    let mut round = 0u64;
    loop {
        round += 1;
        if round.is_multiple_of(32) {
            match zk.exists(&done).await {
                Ok(Some(_)) => break,
                Ok(None) => {}
                Err(e) if e.is_retryable() => zk.wait_connected().await?,
                Err(e) => return Err(e.into()),
            }
        }
        let i = loop {
            let i = rand::random::<usize>() % NODES;
            if !is_fixed(i) {
                break i;
            }
        };
        match relax(&zk, root, i).await {
            Ok(()) => updates += 1,
            Err(Error::Multi {
                code: ErrorCode::BadVersion,
                ..
            }) => retries += 1,
            // A server went away mid-update: the update may or may not have
            // happened, and either is fine: the next one reads afresh.
            Err(e) if e.is_retryable() => zk.wait_connected().await?,
            Err(e) => return Err(e.into()),
        }
    }
    println!("totals {updates} {retries}");
    zk.close().await;
    Ok(())
}

/// One update: read the node and its neighbours from one state (multiRead),
/// then write the mean, checking no neighbour changed meanwhile.
async fn relax(zk: &Client, root: &str, i: usize) -> Result<(), Error> {
    let (data, stat) = zk.get_data(&node_path(root, i)).await?;
    let vertex = Vertex::decode(&data).map_err(|e| Error::BadArguments(e.to_string()))?;
    let reads = vertex
        .neighbours
        .iter()
        .map(|&n| ReadOp::GetData(node_path(root, n)))
        .collect();
    let mut sum = 0.0;
    let mut checks = Vec::new();
    for (&n, result) in vertex.neighbours.iter().zip(zk.multi_read(reads).await?) {
        let ReadResult::Data(data, neighbour_stat) = result else {
            return Err(Error::BadArguments(format!("neighbour {n}: {result:?}")));
        };
        let neighbour = Vertex::decode(&data).map_err(|e| Error::BadArguments(e.to_string()))?;
        sum += neighbour.voltage;
        checks.push(Op::check(node_path(root, n), version(&neighbour_stat)));
    }
    let updated = Vertex {
        voltage: sum / vertex.neighbours.len() as f64,
        neighbours: vertex.neighbours,
    };
    checks.push(Op::set_data(
        node_path(root, i),
        updated.encode(),
        Some(stat.version),
    ));
    zk.multi(checks).await.map(|_| ())
}

fn version(stat: &Stat) -> i32 {
    stat.version
}
