//! A pool of worker processes sharing a read-only inbox: each email is
//! classified as spam or not exactly once, even though workers are killed
//! with SIGKILL while they work.
//!
//! The emails' names go into a LockingQueue. A worker takes one (an
//! ephemeral claim node), classifies it, and commits its result with one
//! `multi` that checks it still holds the claim, creates the result node and
//! removes the item and the claim. A killed worker's claim vanishes with its
//! session, and another worker takes the email again. Verified at the end:
//! every email has exactly one result, with the right label, none is
//! missing, and no result was committed twice.
//!
//!   cargo run --release -p roost-examples --bin inbox-workers -- --server 127.0.0.1:2181

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use rand::Rng;
use roost_client::recipes::LockingQueue;
use roost_client::{CreateMode, Op};
use roost_examples::{connect, run_id, spawn_worker};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:2181")]
    server: String,
    /// Emails in the inbox.
    #[arg(long, default_value_t = 2000)]
    emails: usize,
    /// Worker processes running at once.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Workers killed with SIGKILL (and replaced) while they work.
    #[arg(long, default_value_t = 4)]
    kills: usize,
    /// Session timeout of the workers: how soon a dead worker's claim returns.
    #[arg(long, default_value_t = 4000)]
    session_ms: u64,
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    #[arg(long, hide = true)]
    worker: bool,
    #[arg(long, hide = true)]
    root: Option<String>,
    #[arg(long, hide = true)]
    inbox: Option<PathBuf>,
}

const SPAM_WORDS: [&str; 8] = [
    "winner", "free", "prize", "urgent", "bitcoin", "viagra", "lottery", "click",
];
const HAM_WORDS: [&str; 10] = [
    "meeting", "report", "lunch", "project", "review", "invoice", "schedule", "team", "draft",
    "notes",
];

/// The keyword-score classifier.
fn classify(text: &str) -> &'static str {
    let lower = text.to_lowercase();
    let score: i32 = lower
        .split(|c: char| !c.is_alphanumeric())
        .map(|word| {
            if SPAM_WORDS.contains(&word) {
                2
            } else if HAM_WORDS.contains(&word) {
                -1
            } else {
                0
            }
        })
        .sum();
    if score >= 3 {
        "spam"
    } else {
        "ham"
    }
}

/// Writes `count` emails, about a third of them spammy.
fn generate_inbox(dir: &Path, count: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut rng = rand::thread_rng();
    for i in 0..count {
        let spammy = rng.gen_bool(0.33);
        let words: &[&str] = if spammy { &SPAM_WORDS } else { &HAM_WORDS };
        let body: Vec<&str> = (0..12)
            .map(|_| words[rng.gen_range(0..words.len())])
            .collect();
        let text = format!(
            "From: sender{}@example.com\nSubject: message {i}\n\n{}\n",
            rng.gen_range(0..500),
            body.join(" ")
        );
        std::fs::write(dir.join(email_name(i)), text)?;
    }
    Ok(())
}

fn email_name(i: usize) -> String {
    format!("email-{i:05}")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.worker {
        let root = args.root.clone().context("--root")?;
        let inbox = args.inbox.clone().context("--inbox")?;
        return worker(&args, &root, &inbox).await;
    }
    coordinator(&args).await
}

async fn coordinator(args: &Args) -> anyhow::Result<()> {
    let run = run_id();
    let work = std::env::temp_dir().join(format!("roost-inbox-{run}"));
    let inbox = work.join("inbox");
    generate_inbox(&inbox, args.emails)?;
    let zk = connect(&args.server, Duration::from_secs(10)).await?;
    let root = format!("/inbox-{run}");
    zk.ensure_path(&format!("{root}/results")).await?;
    let queue = LockingQueue::new(&zk, &format!("{root}/queue"), "coordinator");
    let names: Vec<Vec<u8>> = (0..args.emails)
        .map(|i| email_name(i).into_bytes())
        .collect();
    for batch in names.chunks(500) {
        queue.put_all(batch, 100).await?;
    }
    println!(
        "{} emails in {} and in the queue {root}/queue",
        args.emails,
        inbox.display()
    );

    let worker_args = |_: usize| {
        vec![
            "--server".to_string(),
            args.server.clone(),
            "--root".into(),
            root.clone(),
            "--inbox".into(),
            inbox.display().to_string(),
            "--session-ms".into(),
            args.session_ms.to_string(),
        ]
    };
    let mut next_worker = 0;
    let mut running = Vec::new();
    let mut logs = Vec::new();
    for _ in 0..args.workers {
        let log = work.join(format!("worker-{next_worker}.log"));
        running.push(spawn_worker(&worker_args(next_worker), &log)?);
        logs.push(log);
        next_worker += 1;
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.timeout);
    let mut kills = 0;
    let mut rng = rand::thread_rng();
    loop {
        let left = queue.len().await?;
        print!("\r{left:5} emails left, {kills} workers killed   ");
        if left == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("{left} emails still unprocessed after {} s", args.timeout);
        }
        // Kills are spread by progress, not by time, so that every one of them
        // lands while work is left however fast the workers are.
        let kill_due = left <= args.emails * (args.kills - kills) / (args.kills + 1);
        if kills < args.kills && kill_due && !running.is_empty() {
            let victim = rng.gen_range(0..running.len());
            let mut child: std::process::Child = running.swap_remove(victim);
            let killed = child.kill(); // SIGKILL
            child.wait()?;
            killed?;
            kills += 1;
            let log = work.join(format!("worker-{next_worker}.log"));
            running.push(spawn_worker(&worker_args(next_worker), &log)?);
            logs.push(log);
            next_worker += 1;
        }
        // Replace workers that finished early (the queue looked empty while
        // a dead worker's claim was still held).
        running.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
        while running.len() < args.workers {
            let log = work.join(format!("worker-{next_worker}.log"));
            running.push(spawn_worker(&worker_args(next_worker), &log)?);
            logs.push(log);
            next_worker += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!();
    for mut child in running {
        let status = child.wait()?;
        if !status.success() {
            bail!("a worker failed: {status}");
        }
    }

    // Who took what, from every worker's log (killed ones included).
    let mut takes: BTreeMap<String, usize> = BTreeMap::new();
    let mut commits: BTreeMap<String, usize> = BTreeMap::new();
    for log in &logs {
        for line in std::fs::read_to_string(log)?.lines() {
            if let Some(name) = line.strip_prefix("took ") {
                *takes.entry(name.to_string()).or_default() += 1;
            } else if let Some(name) = line.strip_prefix("committed ") {
                *commits.entry(name.to_string()).or_default() += 1;
            }
        }
    }
    let results = zk.get_children(&format!("{root}/results")).await?;
    if results.len() != args.emails {
        bail!("{} results for {} emails", results.len(), args.emails);
    }
    let mut spam = 0;
    for i in 0..args.emails {
        let name = email_name(i);
        let (label, _) = zk.get_data(&format!("{root}/results/{name}")).await?;
        let text = std::fs::read_to_string(inbox.join(&name))?;
        if label != classify(&text).as_bytes() {
            bail!("{name}: wrong label {}", String::from_utf8_lossy(&label));
        }
        spam += usize::from(label == b"spam");
        if commits.get(&name).copied().unwrap_or(0) > 1 {
            bail!("{name} was committed twice");
        }
    }
    let retaken = takes.values().filter(|&&n| n > 1).count();
    println!(
        "{} emails classified exactly once ({spam} spam) in {:.1} s by {next_worker} worker \
         processes; {kills} killed with SIGKILL; {retaken} claims re-taken after a worker died",
        args.emails,
        started.elapsed().as_secs_f64()
    );
    zk.delete_all(&root).await?;
    zk.close().await;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

async fn worker(args: &Args, root: &str, inbox: &Path) -> anyhow::Result<()> {
    use std::io::Write;
    let zk = connect(&args.server, Duration::from_millis(args.session_ms)).await?;
    let me = format!("worker-{}", std::process::id());
    let mut queue = LockingQueue::new(&zk, &format!("{root}/queue"), &me);
    let mut out = std::io::stdout().lock();
    loop {
        let item = match queue.take(Duration::from_secs(1)).await {
            Ok(Some(item)) => item,
            Ok(None) => break,
            // A server went away: the session moves to another one.
            Err(e) if e.is_retryable() => {
                zk.wait_connected().await?;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let name = String::from_utf8(item.data)?;
        writeln!(out, "took {name}")?;
        out.flush()?;
        let text = std::fs::read_to_string(inbox.join(&name))?;
        let label = classify(&text);
        // Some work happens here: a kill may land in the middle of it.
        tokio::time::sleep(Duration::from_millis(10)).await;
        let result = format!("{root}/results/{name}");
        queue
            .consume_with(vec![Op::create(
                result,
                label.as_bytes().to_vec(),
                CreateMode::Persistent,
            )])
            .await?;
        writeln!(out, "committed {name}")?;
        out.flush()?;
    }
    zk.close().await;
    Ok(())
}
