//! Counters behind `srvr`, `stat`, `cons` and `mntr`: lock-free atomics,
//! updated on the request path, read by the four-letter words and metrics.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use roost_proto::OpCode;

/// Request latency in ms: min, max and a running sum for the average.
#[derive(Debug)]
pub(crate) struct Latency {
    min_ms: AtomicU64,
    max_ms: AtomicU64,
    total_ms: AtomicU64,
    count: AtomicU64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            min_ms: AtomicU64::new(u64::MAX),
            max_ms: AtomicU64::new(0),
            total_ms: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl Latency {
    pub(crate) fn record(&self, since: Instant) {
        let ms = since.elapsed().as_millis() as u64;
        self.min_ms.fetch_min(ms, Ordering::Relaxed);
        self.max_ms.fetch_max(ms, Ordering::Relaxed);
        self.total_ms.fetch_add(ms, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn min(&self) -> u64 {
        match self.min_ms.load(Ordering::Relaxed) {
            u64::MAX => 0,
            v => v,
        }
    }

    pub(crate) fn max(&self) -> u64 {
        self.max_ms.load(Ordering::Relaxed)
    }

    pub(crate) fn avg(&self) -> f64 {
        let count = self.count.load(Ordering::Relaxed);
        if count == 0 {
            0.0
        } else {
            self.total_ms.load(Ordering::Relaxed) as f64 / count as f64
        }
    }

    pub(crate) fn reset(&self) {
        self.min_ms.store(u64::MAX, Ordering::Relaxed);
        self.max_ms.store(0, Ordering::Relaxed);
        self.total_ms.store(0, Ordering::Relaxed);
        self.count.store(0, Ordering::Relaxed);
    }
}

/// Server-wide counters.
#[derive(Debug, Default)]
pub(crate) struct ServerStats {
    pub packets_received: AtomicU64,
    pub packets_sent: AtomicU64,
    pub latency: Latency,
    pub auth_failed: AtomicU64,
    pub connections_rejected: AtomicU64,
    pub connections_dropped: AtomicU64,
    pub watch_events_sent: AtomicU64,
    pub last_response_size: AtomicU64,
    pub max_response_size: AtomicU64,
    pub min_response_size: AtomicU64,
}

impl ServerStats {
    pub(crate) fn reset(&self) {
        self.packets_received.store(0, Ordering::Relaxed);
        self.packets_sent.store(0, Ordering::Relaxed);
        self.latency.reset();
    }

    pub(crate) fn record_response_size(&self, bytes: usize) {
        let bytes = bytes as u64;
        self.last_response_size.store(bytes, Ordering::Relaxed);
        self.max_response_size.fetch_max(bytes, Ordering::Relaxed);
        let min = self.min_response_size.load(Ordering::Relaxed);
        if min == 0 || bytes < min {
            self.min_response_size.store(bytes, Ordering::Relaxed);
        }
    }
}

/// One connection's counters, for `cons`.
#[derive(Debug)]
pub(crate) struct ConnStats {
    pub established_ms: u64,
    pub received: AtomicU64,
    pub sent: AtomicU64,
    pub queued: AtomicI64,
    pub last_op: std::sync::Mutex<&'static str>,
    pub last_cxid: AtomicI64,
    pub last_zxid: AtomicI64,
    pub last_response_ms: AtomicU64,
    pub timeout_ms: AtomicI64,
    pub latency: Latency,
}

impl ConnStats {
    pub(crate) fn new(established_ms: u64) -> Self {
        ConnStats {
            established_ms,
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            queued: AtomicI64::new(0),
            last_op: std::sync::Mutex::new("NA"),
            last_cxid: AtomicI64::new(-1),
            last_zxid: AtomicI64::new(-1),
            last_response_ms: AtomicU64::new(0),
            timeout_ms: AtomicI64::new(0),
            latency: Latency::default(),
        }
    }

    pub(crate) fn reset(&self) {
        self.received.store(0, Ordering::Relaxed);
        self.sent.store(0, Ordering::Relaxed);
        self.latency.reset();
    }
}

/// The four-letter op names `cons` shows (ZooKeeper's `lop`).
pub(crate) fn last_op_name(opcode: OpCode) -> &'static str {
    match opcode {
        OpCode::Ping => "PING",
        OpCode::Create | OpCode::Create2 | OpCode::CreateContainer | OpCode::CreateTtl => "CREA",
        OpCode::Delete => "DELE",
        OpCode::Exists => "EXIS",
        OpCode::GetData => "GETD",
        OpCode::SetData => "SETD",
        OpCode::GetAcl => "GETA",
        OpCode::SetAcl => "SETA",
        OpCode::GetChildren | OpCode::GetChildren2 => "GETC",
        OpCode::Sync => "SYNC",
        OpCode::Multi => "MULT",
        OpCode::MultiRead => "MLTR",
        OpCode::CloseSession => "CLOS",
        OpCode::SetWatches => "SETW",
        OpCode::SetWatches2 => "STW2",
        OpCode::AddWatch => "ADDW",
        OpCode::CheckWatches => "CHKW",
        OpCode::RemoveWatches => "REMW",
        OpCode::GetEphemerals => "GETE",
        OpCode::GetAllChildrenNumber => "GETACN",
        OpCode::WhoAmI => "HOMI",
        OpCode::Reconfig => "RECO",
        _ => "NA",
    }
}
