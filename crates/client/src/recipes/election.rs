//! Leader election, latch-style ([`LeaderLatch`], like Curator's) and
//! callback-style ([`Election::run`], like kazoo's Election, on a [`Lock`]).
//!
//! **Guarantee**: at most one live session leads at a time (the one whose
//! node has the lowest sequence number); when the leader's session ends or
//! it resigns, the next contender in line takes over.
//! **Failure behaviour**: leadership is lost with the session; a leader must
//! stop acting as leader when [`crate::SessionState`] leaves Connected for
//! longer than it can tolerate, and fence its actions with the token.

use std::future::Future;

use super::lock::{Lock, LockKind};
use crate::{Client, Result};

/// A contender that either leads or waits to lead. Nodes are named
/// `<hex>-latch-<seq>`, Curator's LeaderLatch pattern.
pub struct LeaderLatch {
    lock: Lock,
}

impl LeaderLatch {
    pub fn new(client: &Client, path: &str, identifier: &str) -> LeaderLatch {
        LeaderLatch {
            lock: Lock::with_kind(client, path, identifier, LockKind::Exclusive)
                .with_extra_pattern("-latch-"),
        }
    }

    /// Waits until this contender leads; returns its fencing token.
    pub async fn await_leadership(&mut self) -> Result<i64> {
        self.lock.acquire().await
    }

    pub fn has_leadership(&self) -> bool {
        self.lock.is_acquired()
    }

    /// Gives up leadership (or the place in line).
    pub async fn resign(&mut self) -> Result<()> {
        self.lock.release().await
    }

    /// Identifiers of all contenders, the leader first.
    pub async fn participants(&self) -> Result<Vec<String>> {
        self.lock.contenders().await
    }
}

/// kazoo's Election: wait to lead, run `work` as leader, then step down.
pub struct Election;

impl Election {
    pub async fn run<F, Fut, T>(client: &Client, path: &str, identifier: &str, work: F) -> Result<T>
    where
        F: FnOnce(i64) -> Fut,
        Fut: Future<Output = T>,
    {
        let mut lock = Lock::new(client, path, identifier);
        let token = lock.acquire().await?;
        let outcome = work(token).await;
        lock.release().await?;
        Ok(outcome)
    }
}
