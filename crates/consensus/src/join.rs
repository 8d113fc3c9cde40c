//! How a voter without state takes its place in an ensemble.
//!
//! Raft is safe only while every voter remembers its vote and its log. A
//! voter that starts with neither is either one of the founders of a new
//! ensemble or a member whose disk was replaced; only its peers can tell
//! which. So a blank voter asks the other voters for their [`PeerStatus`]:
//!
//! - if any of them holds entries a leader wrote, the ensemble exists and
//!   this server rejoins: it grants no vote and stands for no election until
//!   it has applied what those peers had applied (at least a leader's first
//!   entry), sent to it by the leader as a snapshot and log, as a ZooKeeper
//!   follower syncs from its leader;
//! - if every voter is blank, or a peer has been initialized but never
//!   applied anything (no leader was ever elected, so nothing can have been
//!   lost), it founds the ensemble with the configured voters, as every
//!   founder does; a blank quorum whose other voters do not answer founds it
//!   too, once they stayed silent for [`FOUND_GRACE`] (a server that holds
//!   data, such as a standalone server's or an import, may just be slower
//!   to start, and must not be outvoted by empty ones);
//! - otherwise it waits and asks again.
//!
//! The marker file [`MARKER`] in the log directory records that a rejoin is
//! under way (and, once known, the index to reach), so a crash before it
//! completes does not turn a half-filled log into a voter.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use openraft::BasicNode;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::peer::{PeerNetwork, PeerRequest, PeerResponse};
use crate::types::{NodeId, Raft};

/// Written in the log directory while this server rejoins.
pub(crate) const MARKER: &str = "rejoining";
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How long a blank quorum waits for the silent voters before founding.
const FOUND_GRACE: Duration = Duration::from_secs(5);
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);

/// What one server tells a blank peer about itself.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct PeerStatus {
    /// Raft holds a membership (from initializing or from a leader).
    pub(crate) initialized: bool,
    /// Still rejoining: its own state says nothing about the ensemble's.
    pub(crate) rejoining: bool,
    /// The last log index applied to its state machine.
    pub(crate) applied: Option<u64>,
    /// The index of its last log entry (after a restart, entries are applied
    /// only once a leader says they are committed).
    pub(crate) last_log: Option<u64>,
}

impl PeerStatus {
    pub(crate) fn of(raft: &Raft, gate: &VoteGate) -> PeerStatus {
        let metrics = raft.metrics().borrow().clone();
        let initialized = metrics
            .membership_config
            .membership()
            .voter_ids()
            .next()
            .is_some();
        PeerStatus {
            initialized,
            // While it asks, a server that a leader has begun to fill is
            // already rejoining: its partial state proves nothing either.
            rejoining: match gate.stage() {
                Stage::Voting => false,
                Stage::Asking => initialized,
                Stage::Rejoining => true,
            },
            applied: metrics.last_applied.map(|l| l.index),
            last_log: metrics.last_log_index,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    Voting = 0,
    /// Blank (or interrupted while rejoining), asking the other voters.
    Asking = 1,
    Rejoining = 2,
}

/// Where this server is in joining, shared with the peer service: it grants
/// votes only once `Voting`.
#[derive(Clone, Default)]
pub(crate) struct VoteGate(Arc<AtomicU8>);

impl VoteGate {
    pub(crate) fn stage(&self) -> Stage {
        match self.0.load(Ordering::Acquire) {
            0 => Stage::Voting,
            1 => Stage::Asking,
            _ => Stage::Rejoining,
        }
    }

    fn set(&self, stage: Stage) {
        self.0.store(stage as u8, Ordering::Release)
    }
}

/// What a blank voter learned from its peers.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Found,
    /// A blank quorum, but some voters did not answer: found unless they
    /// answer within [`FOUND_GRACE`].
    FoundUnlessLate,
    /// Catch up to this applied index before voting.
    Rejoin(u64),
    Wait,
}

fn decide(voters: usize, answers: &[PeerStatus]) -> Decision {
    let live: Vec<&PeerStatus> = answers
        .iter()
        .filter(|s| s.initialized && !s.rejoining)
        .collect();
    // Index 0 holds the initial membership; a leader's first entry follows.
    let led = live
        .iter()
        .any(|s| s.last_log.is_some_and(|l| l > 0) || s.applied.is_some_and(|a| a > 0));
    if led {
        let applied = live.iter().filter_map(|s| s.applied).max().unwrap_or(0);
        return Decision::Rejoin(applied.max(1));
    }
    if !live.is_empty() {
        // Initialized, but no leader ever committed its first entry.
        return Decision::Found;
    }
    let blank = 1 + answers
        .iter()
        .filter(|s| !s.initialized && !s.rejoining)
        .count();
    if blank == voters {
        Decision::Found
    } else if blank > voters / 2 {
        Decision::FoundUnlessLate
    } else {
        Decision::Wait
    }
}

/// A voter of an ensemble, as it starts.
pub(crate) struct Joiner {
    pub(crate) raft: Raft,
    pub(crate) network: PeerNetwork,
    pub(crate) node_id: NodeId,
    pub(crate) voters: BTreeMap<NodeId, BasicNode>,
    pub(crate) log_dir: PathBuf,
    pub(crate) gate: VoteGate,
}

impl Joiner {
    /// Decides, before raft can hear from peers, whether this server must
    /// keep out of elections for now; then `run` completes the join.
    pub(crate) fn must_ask_peers(&self, blank: bool) -> bool {
        let ask = blank || self.log_dir.join(MARKER).exists();
        if ask {
            self.gate.set(Stage::Asking);
            self.raft.runtime_config().elect(false);
        }
        ask
    }

    /// Completes the join; `joined` is set to true once this server may
    /// serve clients.
    pub(crate) async fn run(self, blank: bool, joined: watch::Sender<bool>) {
        let marker = self.log_dir.join(MARKER);
        let target = match read_marker(&marker) {
            Some(target) => Some(target),
            None => {
                if let Err(e) = write_marker(&marker, None) {
                    warn!("cannot record the rejoin in {}: {e}", marker.display());
                }
                self.ask_peers(blank).await
            }
        };
        if let Some(target) = target {
            self.gate.set(Stage::Rejoining);
            if let Err(e) = write_marker(&marker, Some(target)) {
                warn!("cannot record the rejoin in {}: {e}", marker.display());
            }
            info!(
                "rejoining the ensemble without a vote until index {target} is applied (sent by the leader)"
            );
            let started = std::time::Instant::now();
            if let Err(e) = self
                .raft
                .wait(None)
                .applied_index_at_least(Some(target), "rejoining")
                .await
            {
                warn!("rejoin stopped: {e}");
                return;
            }
            info!(
                "caught up with the ensemble in {:?}; voting again",
                started.elapsed()
            );
        }
        if let Err(e) = std::fs::remove_file(&marker) {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!("cannot remove {}: {e}", marker.display());
            }
        }
        self.gate.set(Stage::Voting);
        self.raft.runtime_config().elect(true);
        let _ = joined.send(true);
    }

    /// Asks the other voters until it is clear whether to found the ensemble
    /// (returns None, after initializing) or rejoin it (the index to reach).
    async fn ask_peers(&self, blank: bool) -> Option<u64> {
        let mut waited = false;
        let mut blank_quorum_since = None;
        loop {
            let answers = self.statuses().await;
            let mut decision = decide(self.voters.len(), &answers);
            if decision == Decision::FoundUnlessLate {
                let since = *blank_quorum_since.get_or_insert_with(std::time::Instant::now);
                decision = if since.elapsed() >= FOUND_GRACE {
                    Decision::Found
                } else {
                    Decision::Wait
                };
            } else {
                blank_quorum_since = None;
            }
            match decision {
                Decision::Rejoin(target) => return Some(target),
                Decision::Found if blank => {
                    match self.raft.initialize(self.voters.clone()).await {
                        Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                            return None
                        }
                        // Not a voter yet: ask again rather than vote uninitialized.
                        Err(e) => {
                            warn!("initializing the ensemble failed ({e}); asking again");
                            tokio::time::sleep(POLL_INTERVAL).await;
                        }
                    }
                }
                // Not blank, yet the ensemble has applied nothing: nothing
                // this server could have lost.
                Decision::Found | Decision::FoundUnlessLate => return None,
                Decision::Wait => {
                    if !waited {
                        info!("no state on disk: waiting for the other servers to tell whether the ensemble exists");
                        waited = true;
                    }
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
            }
        }
    }

    async fn statuses(&self) -> Vec<PeerStatus> {
        let mut asks = tokio::task::JoinSet::new();
        for (id, node) in &self.voters {
            if *id == self.node_id {
                continue;
            }
            let mut client = self
                .network
                .client(*id, self.network.address_of(*id, &node.addr));
            asks.spawn(async move {
                match tokio::time::timeout(STATUS_TIMEOUT, client.call(&PeerRequest::Status)).await
                {
                    Ok(Ok(PeerResponse::Status(status))) => Some(status),
                    _ => None,
                }
            });
        }
        asks.join_all().await.into_iter().flatten().collect()
    }
}

fn read_marker(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Writes the marker durably: its file and its directory entry.
fn write_marker(path: &Path, target: Option<u64>) -> std::io::Result<()> {
    let text = target.map(|t| t.to_string()).unwrap_or_default();
    let tmp = path.with_extension("tmp");
    {
        let mut file = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut file, text.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blank() -> PeerStatus {
        PeerStatus {
            initialized: false,
            rejoining: false,
            applied: None,
            last_log: None,
        }
    }

    fn live(applied: Option<u64>) -> PeerStatus {
        PeerStatus {
            initialized: true,
            rejoining: false,
            applied,
            last_log: applied,
        }
    }

    #[test]
    fn founders_need_a_blank_quorum() {
        assert_eq!(decide(3, &[]), Decision::Wait);
        assert_eq!(decide(3, &[blank(), blank()]), Decision::Found);
        // A silent voter may hold data: it gets time to answer.
        assert_eq!(decide(3, &[blank()]), Decision::FoundUnlessLate);
        assert_eq!(decide(5, &[blank()]), Decision::Wait);
        assert_eq!(decide(5, &[blank(), blank()]), Decision::FoundUnlessLate);
    }

    #[test]
    fn an_ensemble_with_applied_entries_is_rejoined() {
        assert_eq!(decide(3, &[live(Some(40)), blank()]), Decision::Rejoin(40));
        assert_eq!(
            decide(3, &[live(Some(40)), live(Some(42))]),
            Decision::Rejoin(42)
        );
        // A founder that raced ahead, with no leader yet: nothing to lose.
        assert_eq!(decide(3, &[live(Some(0))]), Decision::Found);
        assert_eq!(decide(3, &[live(None)]), Decision::Found);
        // Restarted, it has applied nothing yet, but its log shows a leader.
        let restarted = PeerStatus {
            last_log: Some(9),
            ..live(None)
        };
        assert_eq!(decide(3, &[restarted]), Decision::Rejoin(1));
    }

    #[test]
    fn rejoining_peers_prove_nothing() {
        let rejoining = PeerStatus {
            initialized: true,
            rejoining: true,
            applied: Some(7),
            last_log: Some(7),
        };
        assert_eq!(decide(3, &[rejoining]), Decision::Wait);
        assert_eq!(decide(5, &[rejoining, blank()]), Decision::Wait);
    }
}
