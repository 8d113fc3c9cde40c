//! A dataset on local disk (a folder of row files plus a manifest with a
//! checksum) used by many processes at once, guarded by an external
//! read/write lock: writers update, add and delete rows holding the
//! WriteLock on `/datasets/NAME`; readers hold the ReadLock. Verified: no
//! reader saw a manifest that disagrees with the rows, readers overlapped
//! (peak concurrent readers reported), writers never overlapped anyone.
//!
//! `--mode append`: an append-only data file. Writers (one at a time, under
//! the WriteLock) append a row, fsync it, then publish the new committed
//! length in a znode; readers take no lock, read only up to the committed
//! length, and so never see a half-appended row (the writer writes each row
//! in two pieces, on purpose).
//!
//!   cargo run --release -p roost-examples --bin dataset-lock -- --server 127.0.0.1:2181

use std::collections::BTreeSet;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use rand::Rng;
use roost_client::recipes::Lock;
use roost_client::{Client, CreateMode, Error, ErrorCode};
use roost_examples::{acquire, connect, now_ns, run_id, spawn_worker};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Rows updated and deleted in place under a read/write lock.
    Locked,
    /// Rows only appended; readers take no lock.
    Append,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Role {
    Reader,
    Writer,
}

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:2181")]
    server: String,
    #[arg(long, value_enum, default_value_t = Mode::Locked)]
    mode: Mode,
    #[arg(long, default_value_t = 6)]
    readers: usize,
    #[arg(long, default_value_t = 2)]
    writers: usize,
    /// Seconds every worker keeps working.
    #[arg(long, default_value_t = 6)]
    duration: u64,
    /// Readers skip the lock (to see the check catch torn reads).
    #[arg(long)]
    unsafe_no_lock: bool,
    #[arg(long, hide = true)]
    worker: bool,
    #[arg(long, hide = true, value_enum)]
    role: Option<Role>,
    #[arg(long, hide = true)]
    dir: Option<PathBuf>,
    #[arg(long, hide = true)]
    lock_path: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.worker {
        let role = args.role.context("--role")?;
        let dir = args.dir.clone().context("--dir")?;
        let lock_path = args.lock_path.clone().context("--lock-path")?;
        let zk = connect(&args.server, Duration::from_secs(10)).await?;
        let until = Instant::now() + Duration::from_secs(args.duration);
        let outcome = match (args.mode, role) {
            (Mode::Locked, Role::Reader) => {
                locked_reader(&zk, &dir, &lock_path, until, args.unsafe_no_lock).await
            }
            (Mode::Locked, Role::Writer) => locked_writer(&zk, &dir, &lock_path, until).await,
            (Mode::Append, Role::Reader) => append_reader(&zk, &dir, &lock_path, until).await,
            (Mode::Append, Role::Writer) => append_writer(&zk, &dir, &lock_path, until).await,
        };
        zk.close().await;
        return outcome;
    }
    coordinator(&args).await
}

async fn coordinator(args: &Args) -> anyhow::Result<()> {
    let run = run_id();
    let dir = std::env::temp_dir().join(format!("roost-dataset-{run}"));
    std::fs::create_dir_all(dir.join("rows"))?;
    let name = format!("dataset-{run}");
    let lock_path = format!("/datasets/{name}");
    let zk = connect(&args.server, Duration::from_secs(10)).await?;
    zk.ensure_path(&lock_path).await?;
    match args.mode {
        Mode::Locked => {
            for i in 0..20 {
                write_row(&dir, i, 0)?;
            }
            write_manifest(&dir, false)?;
        }
        Mode::Append => {
            std::fs::File::create(dir.join("data.log"))?;
            zk.create(&committed_path(&lock_path), b"0", CreateMode::Persistent)
                .await?;
        }
    }
    println!(
        "{:?} dataset {} guarded by {lock_path}: {} readers, {} writers for {} s",
        args.mode,
        dir.display(),
        args.readers,
        args.writers,
        args.duration
    );
    let mut children = Vec::new();
    for (role, count) in [(Role::Reader, args.readers), (Role::Writer, args.writers)] {
        for i in 0..count {
            let log = dir.join(format!("{role:?}-{i}.log"));
            let worker_args = vec![
                "--server".to_string(),
                args.server.clone(),
                "--mode".into(),
                format!("{:?}", args.mode).to_lowercase(),
                "--role".into(),
                format!("{role:?}").to_lowercase(),
                "--dir".into(),
                dir.display().to_string(),
                "--lock-path".into(),
                lock_path.clone(),
                "--duration".into(),
                args.duration.to_string(),
            ];
            let mut worker_args = worker_args;
            if args.unsafe_no_lock {
                worker_args.push("--unsafe-no-lock".into());
            }
            children.push((spawn_worker(&worker_args, &log)?, log));
        }
    }
    let mut reads = Vec::new();
    let mut writes = Vec::new();
    let mut bad = Vec::new();
    for (mut child, log) in children {
        let status = child.wait()?;
        let text = std::fs::read_to_string(&log)?;
        if !status.success() {
            bail!("worker failed ({status}):\n{text}");
        }
        for line in text.lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts.as_slice() {
                ["R", start, end, "ok", ..] => reads.push((start.parse()?, end.parse()?)),
                ["W", start, end] => writes.push((start.parse::<u128>()?, end.parse::<u128>()?)),
                ["R", _, _, ..] => bad.push(line.to_string()),
                _ => {}
            }
        }
    }
    if !bad.is_empty() {
        bail!(
            "{} reads saw an inconsistent dataset, e.g. {}",
            bad.len(),
            bad[0]
        );
    }
    let peak_readers = peak_overlap(&reads);
    match args.mode {
        Mode::Locked => {
            for (i, w) in writes.iter().enumerate() {
                let overlaps = |&(s, e): &(u128, u128)| s < w.1 && w.0 < e;
                if writes[i + 1..].iter().any(overlaps) {
                    bail!("two writers held the lock at once");
                }
                if reads.iter().any(overlaps) {
                    bail!("a reader and a writer held the lock at once");
                }
            }
            if reads.is_empty() || writes.is_empty() {
                bail!(
                    "{} reads and {} writes: too few to show anything",
                    reads.len(),
                    writes.len()
                );
            }
            if args.readers > 1 && peak_readers < 2 {
                bail!("readers never overlapped");
            }
            println!(
                "{} consistent reads, {} writes; peak {} concurrent readers; writers never overlapped anyone",
                reads.len(),
                writes.len(),
                peak_readers
            );
        }
        Mode::Append => {
            let (committed, _) = zk.get_data(&committed_path(&lock_path)).await?;
            let length: u64 = std::str::from_utf8(&committed)?.parse()?;
            let rows = read_committed_rows(&dir, length)?;
            if rows != writes.len() {
                bail!("{rows} rows committed but {} appends logged", writes.len());
            }
            println!(
                "{} lock-free reads never saw a half-appended row; {rows} rows appended; \
                 peak {peak_readers} concurrent readers",
                reads.len()
            );
        }
    }
    zk.delete_all(&lock_path).await?;
    zk.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The largest number of intervals that overlap at one instant.
fn peak_overlap(intervals: &[(u128, u128)]) -> usize {
    let mut edges: Vec<(u128, i32)> = intervals
        .iter()
        .flat_map(|&(s, e)| [(s, 1), (e, -1)])
        .collect();
    // Ends sort before starts at the same instant.
    edges.sort();
    let (mut now, mut peak) = (0i32, 0i32);
    for (_, delta) in edges {
        now += delta;
        peak = peak.max(now);
    }
    peak as usize
}

fn row_path(dir: &Path, i: u32) -> PathBuf {
    dir.join("rows").join(format!("row-{i:04}"))
}

fn write_row(dir: &Path, i: u32, revision: u32) -> anyhow::Result<()> {
    let text = format!("row {i} revision {revision} {}\n", "x".repeat(64));
    std::fs::write(row_path(dir, i), text)?;
    Ok(())
}

/// The manifest lists every row file with its checksum, then a checksum of
/// the list. `slowly` writes it in two pieces with a pause between, as a
/// real writer might, so that an unlocked reader could catch it half-done.
fn write_manifest(dir: &Path, slowly: bool) -> anyhow::Result<()> {
    let mut listing = String::new();
    for entry in sorted_rows(dir)? {
        let data = std::fs::read(dir.join("rows").join(&entry))?;
        listing.push_str(&format!("{entry} {:08x}\n", crc32c::crc32c(&data)));
    }
    let text = format!(
        "{listing}total {:08x}\n",
        crc32c::crc32c(listing.as_bytes())
    );
    let mut file = std::fs::File::create(dir.join("manifest"))?;
    let half = text.len() / 2;
    file.write_all(&text.as_bytes()[..half])?;
    if slowly {
        std::thread::sleep(Duration::from_millis(2));
    }
    file.write_all(&text.as_bytes()[half..])?;
    Ok(())
}

fn sorted_rows(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut rows: Vec<String> = std::fs::read_dir(dir.join("rows"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    rows.sort();
    Ok(rows)
}

/// Checks the manifest against the rows; `Err(reason)` if they disagree.
fn check_dataset(dir: &Path) -> Result<usize, String> {
    let manifest = std::fs::read_to_string(dir.join("manifest")).map_err(|e| e.to_string())?;
    let (listing, total) = manifest
        .trim_end()
        .rsplit_once('\n')
        .ok_or("manifest without a total")?;
    let listing = format!("{listing}\n");
    if total != format!("total {:08x}", crc32c::crc32c(listing.as_bytes())) {
        return Err("manifest checksum mismatch".into());
    }
    let mut listed = BTreeSet::new();
    for line in listing.lines() {
        let (name, crc) = line.split_once(' ').ok_or("bad manifest line")?;
        let data = std::fs::read(dir.join("rows").join(name))
            .map_err(|_| format!("{name} listed but missing"))?;
        if format!("{:08x}", crc32c::crc32c(&data)) != crc {
            return Err(format!("{name} differs from the manifest"));
        }
        listed.insert(name.to_string());
    }
    let on_disk: BTreeSet<String> = sorted_rows(dir)
        .map_err(|e| e.to_string())?
        .into_iter()
        .collect();
    if on_disk != listed {
        return Err("rows on disk that the manifest does not list".into());
    }
    Ok(listed.len())
}

async fn locked_reader(
    zk: &Client,
    dir: &Path,
    lock_path: &str,
    until: Instant,
    no_lock: bool,
) -> anyhow::Result<()> {
    let mut lock = Lock::read(zk, lock_path, &format!("reader-{}", std::process::id()));
    while Instant::now() < until {
        if !no_lock {
            acquire(zk, &mut lock).await?;
        }
        let start = now_ns();
        let verdict = check_dataset(dir);
        // Hold the lock a while, so that readers overlap.
        tokio::time::sleep(Duration::from_millis(15)).await;
        let end = now_ns();
        lock.release().await?;
        match verdict {
            Ok(rows) => println!("R {start} {end} ok {rows}"),
            Err(reason) => println!("R {start} {end} BAD {reason}"),
        }
        tokio::time::sleep(Duration::from_millis(rand::thread_rng().gen_range(0..10))).await;
    }
    Ok(())
}

async fn locked_writer(
    zk: &Client,
    dir: &Path,
    lock_path: &str,
    until: Instant,
) -> anyhow::Result<()> {
    let mut lock = Lock::write(zk, lock_path, &format!("writer-{}", std::process::id()));
    let mut revision = 0;
    while Instant::now() < until {
        acquire(zk, &mut lock).await?;
        let start = now_ns();
        revision += 1;
        let mut rng = rand::thread_rng();
        for _ in 0..3 {
            let i = rng.gen_range(0..40);
            match rng.gen_range(0..4) {
                0 => {
                    let _ = std::fs::remove_file(row_path(dir, i));
                }
                _ => write_row(dir, i, revision)?,
            }
        }
        write_manifest(dir, true)?;
        let end = now_ns();
        lock.release().await?;
        println!("W {start} {end}");
        tokio::time::sleep(Duration::from_millis(rng.gen_range(20..60))).await;
    }
    Ok(())
}

fn committed_path(lock_path: &str) -> String {
    format!("{lock_path}-committed")
}

/// A row of the append-only file: `payload|crc\n`.
fn encode_append_row(seq: u64) -> String {
    let payload = format!("row {seq} {}", "y".repeat(48));
    format!("{payload}|{:08x}\n", crc32c::crc32c(payload.as_bytes()))
}

/// Reads the first `length` bytes; every row in them must be whole and intact.
fn read_committed_rows(dir: &Path, length: u64) -> anyhow::Result<usize> {
    let mut file = std::fs::File::open(dir.join("data.log"))?;
    file.rewind()?;
    let mut bytes = vec![0; length as usize];
    file.read_exact(&mut bytes)?;
    let text = String::from_utf8(bytes)?;
    if !text.is_empty() && !text.ends_with('\n') {
        bail!("the committed part ends inside a row");
    }
    let mut rows = 0;
    for line in text.lines() {
        let (payload, crc) = line.rsplit_once('|').context("row without a checksum")?;
        if format!("{:08x}", crc32c::crc32c(payload.as_bytes())) != crc {
            bail!("a row fails its checksum");
        }
        rows += 1;
    }
    Ok(rows)
}

async fn append_writer(
    zk: &Client,
    dir: &Path,
    lock_path: &str,
    until: Instant,
) -> anyhow::Result<()> {
    let mut lock = Lock::write(zk, lock_path, &format!("appender-{}", std::process::id()));
    let committed = committed_path(lock_path);
    while Instant::now() < until {
        acquire(zk, &mut lock).await?;
        let start = now_ns();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("data.log"))?;
        let row = encode_append_row(rand::random::<u64>());
        let half = row.len() / 2;
        file.write_all(&row.as_bytes()[..half])?;
        std::thread::sleep(Duration::from_millis(1));
        file.write_all(&row.as_bytes()[half..])?;
        file.sync_data()?;
        let length = file.metadata()?.len();
        // Publish the new committed length; only the lock holder writes it,
        // so writing the same value again after a connection loss is safe.
        loop {
            match zk
                .set_data(&committed, length.to_string().as_bytes(), None)
                .await
            {
                Ok(_) => break,
                Err(e) if e.is_retryable() => zk.wait_connected().await?,
                Err(Error::Zk(ErrorCode::NoNode)) => bail!("{committed} is gone"),
                Err(e) => return Err(e.into()),
            }
        }
        let end = now_ns();
        lock.release().await?;
        println!("W {start} {end}");
        tokio::time::sleep(Duration::from_millis(rand::thread_rng().gen_range(5..20))).await;
    }
    Ok(())
}

async fn append_reader(
    zk: &Client,
    dir: &Path,
    lock_path: &str,
    until: Instant,
) -> anyhow::Result<()> {
    let committed = committed_path(lock_path);
    let mut last_rows = 0;
    while Instant::now() < until {
        let start = now_ns();
        let data = match zk.get_data(&committed).await {
            Ok((data, _)) => data,
            Err(e) if e.is_retryable() => {
                zk.wait_connected().await?;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let length: u64 = std::str::from_utf8(&data)?.parse()?;
        let verdict = read_committed_rows(dir, length);
        let end = now_ns();
        match verdict {
            Ok(rows) if rows >= last_rows => {
                last_rows = rows;
                println!("R {start} {end} ok {rows}");
            }
            Ok(rows) => println!("R {start} {end} BAD rows went from {last_rows} to {rows}"),
            Err(e) => println!("R {start} {end} BAD {e}"),
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    Ok(())
}
