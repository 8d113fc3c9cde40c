//! `roost`: the one binary. `roost server` runs a server; more tools join here.

mod bench;
mod shell;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use roost_server::{Config, Server};
use tracing::{info, warn};

/// mimalloc rather than glibc's malloc: a server allocates a block per znode
/// and many short-lived buffers per request, and glibc's bins spent a tenth
/// of the CPU of a create load in `_int_malloc`.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "roost",
    version,
    about = "A ZooKeeper-compatible coordination service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a server. Without --config: standalone on port 2181, data in ./roost-data.
    Server {
        /// A ZooKeeper-style zoo.cfg.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Override clientPort.
        #[arg(long)]
        port: Option<u16>,
        /// Override dataDir.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Write the log to DIR/roost.log, a new file each day, instead of
        /// stderr.
        #[arg(long, value_name = "DIR")]
        log_dir: Option<PathBuf>,
        /// With --log-dir: how many daily files to keep.
        #[arg(long, default_value_t = 7)]
        log_files_kept: usize,
    },
    /// Measure a ZooKeeper-compatible server (Roost or Apache ZooKeeper).
    Bench(bench::BenchArgs),
    /// zkCli's commands: interactive, one command, or a script on stdin.
    Shell(shell::ShellArgs),
    /// Make a standalone Roost dataDir from a stopped Apache ZooKeeper's
    /// (3.5–3.9): the same tree, Stat fields, ACLs, sessions and zxid.
    Import {
        /// ZooKeeper's dataDir (the folder holding version-2).
        #[arg(long)]
        zookeeper_data_dir: PathBuf,
        /// ZooKeeper's dataLogDir, if it had a separate one.
        #[arg(long)]
        zookeeper_log_dir: Option<PathBuf>,
        /// The new Roost dataDir (must hold no snapshot yet).
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Write a stopped standalone Roost's tree as a snapshot in a new
    /// ZooKeeper dataDir, which Apache ZooKeeper 3.5+ loads.
    Export {
        /// Roost's dataDir.
        #[arg(long)]
        data_dir: PathBuf,
        /// Roost's dataLogDir, if it has a separate one.
        #[arg(long)]
        data_log_dir: Option<PathBuf>,
        /// The ZooKeeper dataDir to write (version-2/snapshot.<zxid>).
        #[arg(long)]
        zookeeper_data_dir: PathBuf,
    },
}

/// The log's format and filter (`ROOST_LOG`, e.g. `debug`), wherever it goes.
fn log_subscriber() -> tracing_subscriber::fmt::SubscriberBuilder<
    tracing_subscriber::fmt::format::DefaultFields,
    tracing_subscriber::fmt::format::Format,
    tracing_subscriber::EnvFilter,
> {
    tracing_subscriber::fmt().with_env_filter(
        tracing_subscriber::EnvFilter::try_from_env("ROOST_LOG")
            // openraft's warnings are routine during elections.
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=error")),
    )
}

/// Logs to `dir/roost.log.<date>`, a file a day, the oldest beyond `kept` deleted.
fn log_to_files(
    dir: &std::path::Path,
    kept: usize,
) -> anyhow::Result<tracing_appender::non_blocking::WorkerGuard> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the log directory {}", dir.display()))?;
    let appender = tracing_appender::rolling::RollingFileAppender::builder()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix("roost.log")
        .max_log_files(kept.max(1))
        .build(dir)
        .with_context(|| format!("cannot write logs in {}", dir.display()))?;
    let (writer, guard) = tracing_appender::non_blocking(appender);
    log_subscriber().with_ansi(false).with_writer(writer).init();
    Ok(guard)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Held until exit: it flushes what the file writer still buffers.
    let _log_flush = match &cli.command {
        Command::Server {
            log_dir: Some(dir),
            log_files_kept,
            ..
        } => Some(log_to_files(dir, *log_files_kept)?),
        _ => {
            log_subscriber()
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_writer(std::io::stderr)
                .init();
            None
        }
    };
    match cli.command {
        Command::Server {
            config,
            port,
            data_dir,
            ..
        } => run_server(config, port, data_dir),
        Command::Import {
            zookeeper_data_dir,
            zookeeper_log_dir,
            data_dir,
        } => {
            let summary = roost_server::import::import_zookeeper(
                &zookeeper_data_dir,
                zookeeper_log_dir.as_deref(),
                &data_dir,
            )?;
            println!(
                "imported {} znodes and {} sessions up to zxid 0x{:x} ({} and {} logged changes after it) into {}",
                summary.znodes,
                summary.sessions,
                summary.last_zxid,
                summary.from_snapshot.display(),
                summary.replayed,
                summary.written.display()
            );
            Ok(())
        }
        Command::Export {
            data_dir,
            data_log_dir,
            zookeeper_data_dir,
        } => {
            let summary = roost_server::import::export_zookeeper(
                &data_dir,
                data_log_dir.as_deref(),
                &zookeeper_data_dir,
            )?;
            println!(
                "exported {} znodes and {} sessions at zxid 0x{:x} to {}",
                summary.znodes,
                summary.sessions,
                summary.last_zxid,
                summary.written.display()
            );
            Ok(())
        }
        Command::Bench(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?
            .block_on(bench::run(args)),
        Command::Shell(args) => shell::run(args),
    }
}

fn run_server(
    config_path: Option<PathBuf>,
    port: Option<u16>,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let mut config = match &config_path {
        Some(path) => {
            let (config, warnings) = Config::load(path)?;
            for warning in warnings {
                warn!("{}: {warning}", path.display());
            }
            config
        }
        None => Config::standalone_default(),
    };
    if let Some(port) = port {
        config.client_port = port;
    }
    if let Some(dir) = data_dir {
        config.data_dir = dir;
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create dataDir {}", config.data_dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let mut server = Server::start(config).await?;
        let fatal = tokio::select! {
            fatal = server.wait() => Some(fatal),
            _ = shutdown_signal() => None,
        };
        info!("shutting down");
        server.shutdown().await;
        match fatal {
            Some(fatal) => Err(anyhow::Error::new(fatal).context("server stopped")),
            None => Ok(()),
        }
    })
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
