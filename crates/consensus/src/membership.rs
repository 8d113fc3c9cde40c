//! Membership changes (`reconfig`) on openraft's joint consensus.
//!
//! `/zookeeper/config` is the membership: a `reconfig` is a logged write
//! that changes it, and the leader then makes raft's membership follow it
//! ([`reconcile`]): new servers join as learners, the voter set is replaced
//! through a joint configuration, and servers that left are dropped. A new
//! leader does the same, so a change the old leader committed but did not
//! finish is finished.
//!
//! Before the write is logged the leader [`Reconfigurer::prepare`]s it, as
//! ZooKeeper's leader checks that a quorum of the new configuration is
//! connected and synced: it adds the new servers as learners and waits for a
//! quorum of the new voters to catch up (NewConfigNoQuorum if they do not).
//! One change at a time: another `reconfig` meanwhile is ReconfigInProgress.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::{BasicNode, ChangeMembers};
use roost_core::quorum::QuorumConfig;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::node::Leadership;
use crate::state_machine::StateMachineHost;
use crate::types::{NodeId, Raft};

/// The membership a configuration names: each server by id with its peer address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipTarget {
    pub voters: BTreeMap<NodeId, String>,
    pub observers: BTreeMap<NodeId, String>,
    /// The configuration's version (0: zoo.cfg's, never reconfigured).
    pub version: i64,
}

impl MembershipTarget {
    /// The servers `config` names, by role.
    pub fn of(config: &QuorumConfig) -> Self {
        let addresses = |observer: bool| {
            config
                .servers
                .values()
                .filter(|s| s.observer == observer)
                .map(|s| (s.id, s.peer_address()))
                .collect()
        };
        MembershipTarget {
            voters: addresses(false),
            observers: addresses(true),
            version: config.version,
        }
    }

    fn all(&self) -> impl Iterator<Item = (&NodeId, &String)> {
        self.voters.iter().chain(self.observers.iter())
    }
}

/// Why the leader refused to start a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// Another change is not finished (ReconfigInProgress).
    InProgress,
    /// No quorum of the new voters caught up in time (NewConfigNoQuorum).
    NoQuorum,
    /// This server is not the leader, or the leader could not be reached.
    NoLeader,
}

/// How long a change waits for raft to follow the one applied before it.
const TURN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the leader waits for new voters to catch up before refusing.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(4);
/// How long a prepared change may take to be logged and applied before
/// another may start (the client's write may never arrive).
const PREPARED_FOR: Duration = Duration::from_secs(10);
/// The longest a prepare takes: its turn, then its catch-up, with room.
pub(crate) const PREPARE_TIMEOUT: Duration = Duration::from_secs(8);
const RECONCILE_INTERVAL: Duration = Duration::from_millis(50);

/// A change the leader readied (or tried to).
#[derive(Debug, Clone, Copy)]
struct Prepared {
    at: Instant,
    /// The configuration version it starts from.
    from: i64,
    /// Its new voters did not catch up in time. Its learners are kept for
    /// a while all the same, so that a retry finds them further along (a
    /// large tree can take longer than one attempt to send).
    refused: bool,
}

/// The leader's side of a change; shared by its handle and peer service.
#[derive(Clone)]
pub(crate) struct Reconfigurer {
    raft: Raft,
    host: Arc<dyn StateMachineHost>,
    /// The last change readied, while it may still be applied.
    prepared: Arc<Mutex<Option<Prepared>>>,
    /// Changes waiting for the one before to finish go in arrival order.
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl Reconfigurer {
    pub(crate) fn new(raft: Raft, host: Arc<dyn StateMachineHost>) -> Self {
        Reconfigurer {
            raft,
            host,
            prepared: Default::default(),
            turn: Default::default(),
        }
    }

    fn pending(&self) -> Option<Prepared> {
        let mut prepared = self.prepared.lock().unwrap_or_else(|e| e.into_inner());
        if prepared.is_some_and(|p| p.at.elapsed() > PREPARED_FOR) {
            *prepared = None;
        }
        *prepared
    }

    fn set_pending(&self, value: Option<Prepared>) {
        *self.prepared.lock().unwrap_or_else(|e| e.into_inner()) = value;
    }

    /// Readies the change from the configuration this leader applied last to `target`.
    pub(crate) async fn prepare(&self, target: &MembershipTarget) -> Result<(), Refusal> {
        // A change already applied is done for its client, as in ZooKeeper,
        // though raft may still be following it: the next one waits for that.
        let turn = self.turn.lock().await;
        let deadline = Instant::now() + TURN_TIMEOUT;
        loop {
            let current = self.host.membership_target().map_or(0, |t| t.version);
            {
                let mut prepared = self.prepared.lock().unwrap_or_else(|e| e.into_inner());
                match *prepared {
                    Some(p) if p.at.elapsed() <= PREPARED_FOR && !p.refused => {
                        if current == p.from || Instant::now() > deadline {
                            return Err(Refusal::InProgress);
                        }
                    }
                    _ => {
                        *prepared = Some(Prepared {
                            at: Instant::now(),
                            from: current,
                            refused: false,
                        });
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(turn);
        let result = self.catch_up(target).await;
        match result {
            Ok(()) => {}
            // The learners added stay for a retry, then the reconciler
            // drops them (they are in no configuration).
            Err(Refusal::NoQuorum) => {
                if let Some(mut p) = self.pending() {
                    p.refused = true;
                    self.set_pending(Some(p));
                }
            }
            Err(_) => self.set_pending(None),
        }
        result
    }

    async fn catch_up(&self, target: &MembershipTarget) -> Result<(), Refusal> {
        let (known, joint) = {
            let metrics = self.raft.metrics().borrow().clone();
            if metrics.current_leader != Some(metrics.id) {
                return Err(Refusal::NoLeader);
            }
            let membership = metrics.membership_config.membership();
            let known: BTreeSet<NodeId> = membership.nodes().map(|(id, _)| *id).collect();
            (known, membership.get_joint_config().len() > 1)
        };
        if joint {
            return Err(Refusal::InProgress);
        }
        for (id, address) in target.all() {
            if known.contains(id) {
                continue;
            }
            if let Err(e) = self
                .raft
                .add_learner(*id, BasicNode::new(address.clone()), false)
                .await
            {
                debug!("cannot add server.{id} as a learner: {e}");
                return Err(Refusal::InProgress);
            }
            info!("server.{id} ({address}) added as a learner for a reconfig");
        }
        // Caught up: holds what the leader held once every learner was added.
        let goal = self.raft.metrics().borrow().last_log_index.unwrap_or(0);
        let deadline = Instant::now() + CATCH_UP_TIMEOUT;
        let mut metrics = self.raft.metrics();
        loop {
            let synced = {
                let m = metrics.borrow_and_update();
                let matched = |id: &NodeId| {
                    *id == m.id
                        || m.replication.as_ref().is_some_and(|r| {
                            r.get(id)
                                .is_some_and(|l| l.is_some_and(|l| l.index >= goal))
                        })
                };
                target.voters.keys().filter(|id| matched(id)).count()
            };
            if synced > target.voters.len() / 2 {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                warn!(
                    "reconfig refused: only {synced} of {} new voters caught up within {CATCH_UP_TIMEOUT:?}",
                    target.voters.len()
                );
                return Err(Refusal::NoQuorum);
            }
            let _ = tokio::time::timeout(left, metrics.changed()).await;
        }
    }

    /// Whether raft's only voter is this server while zoo.cfg (`target`,
    /// never reconfigured) names more voters, this one among them.
    fn grows_from_one(&self, target: &MembershipTarget) -> bool {
        let metrics = self.raft.metrics().borrow().clone();
        let voters: Vec<NodeId> = metrics.membership_config.membership().voter_ids().collect();
        voters == [metrics.id] && target.voters.len() > 1 && target.voters.contains_key(&metrics.id)
    }

    /// Adds the observers of `target` that raft does not know yet.
    async fn add_observers(&self, target: &MembershipTarget) {
        let known: BTreeSet<NodeId> = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .collect();
        for (id, address) in &target.observers {
            if known.contains(id) {
                continue;
            }
            match self
                .raft
                .add_learner(*id, BasicNode::new(address.clone()), false)
                .await
            {
                Ok(_) => info!("observer {id} added"),
                Err(e) => debug!("cannot add observer {id} yet: {e}"),
            }
        }
    }

    /// One step toward `target` on raft's membership; true when they agree.
    async fn converge(&self, target: &MembershipTarget) -> bool {
        let (nodes, voters, joint) = {
            let metrics = self.raft.metrics().borrow().clone();
            let membership = metrics.membership_config.membership();
            let nodes: BTreeSet<NodeId> = membership.nodes().map(|(id, _)| *id).collect();
            let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
            (nodes, voters, membership.get_joint_config().len() > 1)
        };
        if joint {
            return false;
        }
        let wanted_voters: BTreeSet<NodeId> = target.voters.keys().copied().collect();
        let wanted: BTreeSet<NodeId> = target.all().map(|(id, _)| *id).collect();
        if voters == wanted_voters && nodes == wanted {
            return true;
        }
        let missing: BTreeMap<NodeId, BasicNode> = target
            .all()
            .filter(|(id, _)| !nodes.contains(id))
            .map(|(id, address)| (*id, BasicNode::new(address.clone())))
            .collect();
        let step = if !missing.is_empty() {
            ChangeMembers::AddNodes(missing)
        } else if voters != wanted_voters {
            ChangeMembers::ReplaceAllVoters(wanted_voters)
        } else {
            ChangeMembers::RemoveNodes(nodes.difference(&wanted).copied().collect())
        };
        info!("membership change: {step:?}");
        match self.raft.change_membership(step, true).await {
            Ok(_) => {}
            Err(e) => debug!("membership change not made yet: {e}"),
        }
        false
    }
}

/// While this server leads, makes raft's membership follow the configuration
/// the state machine holds. A configuration never reconfigured (zoo.cfg's)
/// only adds its observers: raft's voters are the ones the ensemble was
/// founded with, whatever a server's zoo.cfg says later.
pub(crate) async fn reconcile(
    reconfigurer: Reconfigurer,
    mut leadership: watch::Receiver<Leadership>,
) {
    loop {
        let leading = leadership.borrow_and_update().leading;
        if let Some(target) = reconfigurer.host.membership_target().filter(|_| leading) {
            if target.version == 0 {
                if reconfigurer.grows_from_one(&target) {
                    // A lone server's data (a standalone server's, or an
                    // import) founding the ensemble zoo.cfg names: its
                    // peers join as they catch up, as after a `reconfig`.
                    if reconfigurer.catch_up(&target).await.is_ok() {
                        reconfigurer.converge(&target).await;
                    }
                } else {
                    reconfigurer.add_observers(&target).await;
                }
            } else {
                // A prepared change's learners stay until its write is applied.
                let waiting = reconfigurer
                    .pending()
                    .is_some_and(|p| p.from == target.version);
                if !waiting && reconfigurer.converge(&target).await {
                    reconfigurer.set_pending(None);
                }
            }
        }
        tokio::select! {
            changed = leadership.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(RECONCILE_INTERVAL) => {}
        }
    }
}
