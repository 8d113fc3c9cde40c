//! `roost bench`: a closed-loop load generator over the raw ZooKeeper protocol.
//!
//! Each session is one TCP connection keeping `depth` requests in flight: a
//! new request goes out as soon as a reply comes back. Replies on one
//! connection arrive in request order, so latency bookkeeping is a FIFO of
//! send times, with no per-request allocation. It works against any
//! ZooKeeper-compatible server, which is how Roost is compared with Apache
//! ZooKeeper.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use clap::{Args, ValueEnum};
use roost_proto::frame::split_frame;
use roost_proto::{
    perms, Acl, ConnectRequest, ConnectResponse, CreateRequest, Decode, DeleteRequest, Encode,
    MultiOp, OpCode, PathWatchRequest, Reader, ReplyHeader, Request, SetDataRequest,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Create a new persistent node per request.
    Create,
    /// setData on existing nodes.
    Set,
    /// getData on existing nodes.
    Get,
    /// getData and setData mixed by --read-pct.
    Mixed,
    /// A multi of two setData ops and a check.
    Multi,
    /// exists with a watch, then a setData that fires it.
    Watch,
    /// Create then delete an ephemeral node, repeatedly.
    Churn,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Server address(es): host:port[,host:port...]; sessions spread across them.
    #[arg(long, default_value = "127.0.0.1:2181")]
    server: String,
    #[arg(long, value_enum, default_value = "set")]
    workload: Workload,
    /// Concurrent sessions (connections).
    #[arg(long, default_value_t = 16)]
    sessions: usize,
    /// Requests in flight per session.
    #[arg(long, default_value_t = 16)]
    depth: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Bytes of data per write.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Percentage of reads in the mixed workload.
    #[arg(long, default_value_t = 90)]
    read_pct: u32,
    /// Nodes per session used by set/get/mixed/multi.
    #[arg(long, default_value_t = 100)]
    keys: usize,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
    /// Keep the nodes the run created (default: delete them afterwards).
    #[arg(long)]
    keep: bool,
    /// Stop after this many operations in total (the duration still bounds the run).
    #[arg(long)]
    ops: Option<u64>,
}

/// What one session measured.
#[derive(Default)]
struct SessionResult {
    latencies_us: Vec<u32>,
    errors: u64,
}

const SESSION_TIMEOUT_MS: i32 = 30_000;

struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    xid: i32,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> anyhow::Result<Conn> {
        let mut stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let mut out = BytesMut::new();
        ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            timeout_ms: SESSION_TIMEOUT_MS,
            session_id: 0,
            passwd: Bytes::from_static(&[0; 16]),
            read_only: Some(false),
        }
        .encode_framed(&mut out);
        stream.write_all(&out).await?;
        let mut conn = Conn {
            stream,
            buf: BytesMut::with_capacity(64 * 1024),
            xid: 0,
        };
        let response = ConnectResponse::from_bytes(conn.read_frame().await?)?;
        if response.session_id == 0 {
            bail!("session refused by {addr}");
        }
        Ok(conn)
    }

    async fn read_frame(&mut self) -> anyhow::Result<Bytes> {
        loop {
            if let Some(frame) = split_frame(&mut self.buf, 64 << 20)? {
                return Ok(frame);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                bail!("server closed the connection");
            }
        }
    }

    /// Reads the next reply that is not a notification; returns its error code.
    async fn read_reply(&mut self) -> anyhow::Result<i32> {
        loop {
            let frame = self.read_frame().await?;
            let header = ReplyHeader::decode(&mut Reader::new(frame))?;
            if header.xid != -1 {
                return Ok(header.err);
            }
        }
    }

    fn queue(&mut self, request: &Request, out: &mut BytesMut) {
        self.xid = self.xid.wrapping_add(1).max(1);
        request.encode_frame(self.xid, out);
    }

    /// Sends requests and waits for all their replies; returns failures.
    async fn call_all(&mut self, requests: &[Request]) -> anyhow::Result<u64> {
        let mut errors = 0;
        for chunk in requests.chunks(256) {
            let mut out = BytesMut::new();
            for request in chunk {
                self.queue(request, &mut out);
            }
            self.stream.write_all(&out).await?;
            for _ in chunk {
                if self.read_reply().await? != 0 {
                    errors += 1;
                }
            }
        }
        Ok(errors)
    }

    async fn close(mut self) {
        let mut out = BytesMut::new();
        self.queue(&Request::CloseSession, &mut out);
        let _ = self.stream.write_all(&out).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.read_reply()).await;
    }
}

fn open_acl() -> Vec<Acl> {
    vec![Acl::new(perms::ALL, "world", "anyone")]
}

fn create(path: String, data: Bytes, flags: i32) -> Request {
    Request::Create {
        opcode: OpCode::Create,
        request: CreateRequest {
            path,
            data: Some(data),
            acl: open_acl(),
            flags,
            ttl: -1,
        },
    }
}

/// Builds the requests of one session's workload.
struct Generator {
    workload: Workload,
    base: String,
    keys: usize,
    value: Bytes,
    read_pct: u32,
    counter: u64,
    rng: u64,
}

impl Generator {
    fn key(&self, i: u64) -> String {
        format!("{}/k{}", self.base, i % self.keys as u64)
    }

    fn next_random(&mut self) -> u64 {
        // xorshift: cheap and good enough to mix reads and writes.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn next(&mut self) -> Request {
        self.counter += 1;
        let n = self.counter;
        let value = self.value.clone();
        let set = |path| {
            Request::SetData(SetDataRequest {
                path,
                data: Some(value.clone()),
                version: -1,
            })
        };
        match self.workload {
            Workload::Create => create(format!("{}/c{n}", self.base), self.value.clone(), 0),
            Workload::Set => set(self.key(n)),
            Workload::Get => Request::GetData(PathWatchRequest {
                path: self.key(n),
                watch: false,
            }),
            Workload::Mixed => {
                let roll = self.next_random() % 100;
                if roll < u64::from(self.read_pct) {
                    Request::GetData(PathWatchRequest {
                        path: self.key(n),
                        watch: false,
                    })
                } else {
                    set(self.key(n))
                }
            }
            Workload::Multi => Request::Multi(Ok(vec![
                MultiOp::SetData(SetDataRequest {
                    path: self.key(n),
                    data: Some(self.value.clone()),
                    version: -1,
                }),
                MultiOp::SetData(SetDataRequest {
                    path: self.key(n + 1),
                    data: Some(self.value.clone()),
                    version: -1,
                }),
                MultiOp::Check(roost_proto::CheckVersionRequest {
                    path: self.base.clone(),
                    version: -1,
                }),
            ])),
            Workload::Watch => {
                if n % 2 == 1 {
                    Request::Exists(PathWatchRequest {
                        path: self.key(n / 2),
                        watch: true,
                    })
                } else {
                    set(self.key(n / 2 - 1))
                }
            }
            Workload::Churn => {
                if n % 2 == 1 {
                    create(format!("{}/e{}", self.base, n / 2), self.value.clone(), 1)
                } else {
                    Request::Delete(DeleteRequest {
                        path: format!("{}/e{}", self.base, n / 2 - 1),
                        version: -1,
                    })
                }
            }
        }
    }
}

fn process_cpu_seconds() -> f64 {
    // utime and stime are fields 14 and 15 of /proc/self/stat, in clock ticks.
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some(after_comm) = stat.rsplit(')').next() else {
        return 0.0;
    };
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    ticks / 100.0
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    f64::from(sorted[rank.min(sorted.len() - 1)]) / 1000.0
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for server in args.server.split(',').map(str::trim) {
        let addr = tokio::net::lookup_host(server)
            .await
            .ok()
            .and_then(|mut a| a.next())
            .with_context(|| format!("cannot resolve {server}"))?;
        addrs.push(addr);
    }
    if args.sessions == 0 || args.depth == 0 {
        bail!("--sessions and --depth must be positive");
    }
    let run_id = std::process::id();
    let root = format!("/roost-bench-{run_id}");
    let mut setup = Conn::connect(addrs[0]).await?;
    setup
        .call_all(&[create(root.clone(), Bytes::new(), 0)])
        .await?;
    let value = Bytes::from(vec![b'x'; args.value_size]);
    let stop = Arc::new(AtomicBool::new(false));
    let done_ops = Arc::new(AtomicU64::new(0));
    let budget = Arc::new(AtomicU64::new(args.ops.unwrap_or(u64::MAX)));
    let mut handles = Vec::new();
    for session in 0..args.sessions {
        let addr = addrs[session % addrs.len()];
        let mut conn = Conn::connect(addr).await?;
        let base = format!("{root}/s{session}");
        let mut setup_requests = vec![create(base.clone(), value.clone(), 0)];
        if matches!(
            args.workload,
            Workload::Set | Workload::Get | Workload::Mixed | Workload::Multi | Workload::Watch
        ) {
            setup_requests
                .extend((0..args.keys).map(|k| create(format!("{base}/k{k}"), value.clone(), 0)));
        }
        conn.call_all(&setup_requests).await?;
        let generator = Generator {
            workload: args.workload,
            base,
            keys: args.keys.max(1),
            value: value.clone(),
            read_pct: args.read_pct.min(100),
            counter: 0,
            rng: 0x9E37_79B9_7F4A_7C15 ^ (session as u64 + 1),
        };
        handles.push((conn, generator));
    }
    let cpu_start = process_cpu_seconds();
    let started = Instant::now();
    let duration = Duration::from_secs_f64(args.duration.max(0.1));
    let mut tasks = Vec::new();
    for (conn, generator) in handles {
        tasks.push(tokio::spawn(drive(
            conn,
            generator,
            args.depth,
            stop.clone(),
            done_ops.clone(),
            budget.clone(),
        )));
    }
    let progress = {
        let done_ops = done_ops.clone();
        let quiet = args.json;
        tokio::spawn(async move {
            let mut last = 0;
            let mut ticker = tokio::time::interval(Duration::from_secs(1));
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let now = done_ops.load(Ordering::Relaxed);
                if !quiet {
                    eprintln!(
                        "  t={:>5.1}s  {:>10} ops/s",
                        started.elapsed().as_secs_f64(),
                        now - last
                    );
                }
                last = now;
            }
        })
    };
    let deadline = tokio::time::Instant::now() + duration;
    while tokio::time::Instant::now() < deadline && budget.load(Ordering::Relaxed) > 0 {
        tokio::time::sleep(Duration::from_millis(20).min(duration)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    progress.abort();
    let cpu = process_cpu_seconds() - cpu_start;
    let mut all: Vec<u32> = Vec::new();
    let mut errors = 0;
    let mut conns = Vec::new();
    for (result, conn) in results {
        all.extend_from_slice(&result.latencies_us);
        errors += result.errors;
        conns.push(conn);
    }
    all.sort_unstable();
    let ops = all.len() as f64;
    let summary = Summary {
        workload: format!("{:?}", args.workload).to_lowercase(),
        sessions: args.sessions,
        depth: args.depth,
        value_size: args.value_size,
        seconds: elapsed,
        ops: all.len() as u64,
        ops_per_sec: ops / elapsed,
        errors,
        p50_ms: percentile(&all, 50.0),
        p90_ms: percentile(&all, 90.0),
        p99_ms: percentile(&all, 99.0),
        p999_ms: percentile(&all, 99.9),
        max_ms: all.last().map_or(0.0, |v| f64::from(*v) / 1000.0),
        bench_cpu_pct: 100.0 * cpu / elapsed,
    };
    summary.print(args.json);
    for conn in conns {
        conn.close().await;
    }
    if !args.keep {
        cleanup(&mut setup, &root).await?;
    }
    setup.close().await;
    Ok(())
}

struct Summary {
    workload: String,
    sessions: usize,
    depth: usize,
    value_size: usize,
    seconds: f64,
    ops: u64,
    ops_per_sec: f64,
    errors: u64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    bench_cpu_pct: f64,
}

impl Summary {
    fn print(&self, json: bool) {
        if json {
            println!(
                "{{\"workload\":\"{}\",\"sessions\":{},\"depth\":{},\"value_size\":{},\"seconds\":{:.3},\"ops\":{},\"ops_per_sec\":{:.1},\"errors\":{},\"latency_ms\":{{\"p50\":{:.3},\"p90\":{:.3},\"p99\":{:.3},\"p99_9\":{:.3},\"max\":{:.3}}},\"bench_cpu_pct\":{:.1}}}",
                self.workload, self.sessions, self.depth, self.value_size, self.seconds, self.ops,
                self.ops_per_sec, self.errors, self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms,
                self.max_ms, self.bench_cpu_pct
            );
        } else {
            println!(
                "workload={} sessions={} depth={} value={}B ops={} ops/s={:.0} errors={} latency_ms p50={:.3} p90={:.3} p99={:.3} p99.9={:.3} max={:.3} bench_cpu={:.0}%",
                self.workload, self.sessions, self.depth, self.value_size, self.ops, self.ops_per_sec,
                self.errors, self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms,
                self.bench_cpu_pct
            );
        }
    }
}

/// Keeps `depth` requests in flight until told to stop, then drains.
async fn drive(
    mut conn: Conn,
    mut generator: Generator,
    depth: usize,
    stop: Arc<AtomicBool>,
    done_ops: Arc<AtomicU64>,
    budget: Arc<AtomicU64>,
) -> anyhow::Result<(SessionResult, Conn)> {
    // Takes one operation from the shared budget; false once it is spent.
    let take = || {
        budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(1)
            })
            .is_ok()
    };
    let mut result = SessionResult::default();
    let mut sent: VecDeque<Instant> = VecDeque::with_capacity(depth);
    let mut out = BytesMut::with_capacity(depth * 256);
    for _ in 0..depth {
        if !take() {
            break;
        }
        let request = generator.next();
        conn.queue(&request, &mut out);
        sent.push_back(Instant::now());
    }
    conn.stream.write_all(&out).await?;
    out.clear();
    while let Some(started) = sent.front().copied() {
        let err = conn.read_reply().await?;
        sent.pop_front();
        result
            .latencies_us
            .push(started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        if err != 0 {
            result.errors += 1;
        }
        done_ops.fetch_add(1, Ordering::Relaxed);
        if !stop.load(Ordering::Relaxed) && take() {
            let request = generator.next();
            conn.queue(&request, &mut out);
            sent.push_back(Instant::now());
            // Send at once when the pipe would otherwise run dry; batch otherwise.
            if conn.buf.len() < 16 || sent.len() <= 1 {
                conn.stream.write_all(&out).await?;
                out.clear();
            }
        }
        if !out.is_empty() && conn.buf.len() < 16 {
            conn.stream.write_all(&out).await?;
            out.clear();
        }
    }
    Ok((result, conn))
}

async fn children(conn: &mut Conn, path: String) -> anyhow::Result<Vec<String>> {
    let mut out = BytesMut::new();
    conn.queue(
        &Request::GetChildren(PathWatchRequest { path, watch: false }),
        &mut out,
    );
    conn.stream.write_all(&out).await?;
    loop {
        let frame = conn.read_frame().await?;
        let mut r = Reader::new(frame);
        let header = ReplyHeader::decode(&mut r)?;
        if header.xid == -1 {
            continue;
        }
        if header.err != 0 {
            return Ok(Vec::new());
        }
        return match roost_proto::Response::decode(OpCode::GetChildren, r.read_rest())? {
            roost_proto::Response::Children(c) => Ok(c),
            _ => Ok(Vec::new()),
        };
    }
}

/// Deletes the run's nodes, deepest first.
async fn cleanup(conn: &mut Conn, root: &str) -> anyhow::Result<()> {
    let mut deletes = Vec::new();
    for session in children(conn, root.to_string()).await? {
        let base = format!("{root}/{session}");
        for child in children(conn, base.clone()).await? {
            deletes.push(Request::Delete(DeleteRequest {
                path: format!("{base}/{child}"),
                version: -1,
            }));
        }
        conn.call_all(&deletes).await?;
        deletes.clear();
        conn.call_all(&[Request::Delete(DeleteRequest {
            path: base,
            version: -1,
        })])
        .await?;
    }
    conn.call_all(&[Request::Delete(DeleteRequest {
        path: root.to_string(),
        version: -1,
    })])
    .await?;
    Ok(())
}
