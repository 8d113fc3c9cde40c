//! Session liveness: when each session expires unless its client is heard from.
//!
//! Only the leader expires sessions, by proposing closeSession for each one
//! whose deadline passed. Deadlines are monotonic-clock instants; a new
//! leader (or a restarted standalone server) re-arms every session with its
//! full timeout, so a leader change never expires a live session.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Tracked {
    timeout: Duration,
    deadline: Instant,
}

#[derive(Debug, Default)]
pub(crate) struct SessionTracker {
    sessions: HashMap<i64, Tracked>,
    /// Sessions heard from since the last report to the leader (followers).
    touched: HashSet<i64>,
}

impl SessionTracker {
    /// Starts (or restarts) tracking a session with a full timeout from now.
    pub(crate) fn add(&mut self, session_id: i64, timeout_ms: i32) {
        let timeout = Duration::from_millis(timeout_ms.max(0) as u64);
        self.sessions.insert(
            session_id,
            Tracked {
                timeout,
                deadline: Instant::now() + timeout,
            },
        );
    }

    /// Pushes a session's deadline back; false if it is not tracked (expired or closed).
    pub(crate) fn touch(&mut self, session_id: i64) -> bool {
        match self.sessions.get_mut(&session_id) {
            Some(t) => {
                t.deadline = Instant::now() + t.timeout;
                self.touched.insert(session_id);
                true
            }
            None => false,
        }
    }

    /// Sessions touched since the last call (a follower reports them to the leader).
    pub(crate) fn take_touched(&mut self) -> Vec<i64> {
        self.touched.drain().collect()
    }

    /// Gives every session a full timeout from now (a new leader does this,
    /// so a leader change never expires a live session).
    pub(crate) fn rearm_all(&mut self) {
        let now = Instant::now();
        for t in self.sessions.values_mut() {
            t.deadline = now + t.timeout;
        }
    }

    pub(crate) fn clear(&mut self) {
        self.sessions.clear();
    }

    pub(crate) fn remove(&mut self, session_id: i64) {
        self.sessions.remove(&session_id);
    }

    /// Removes and returns the sessions whose deadline is before `now`, at most `limit`.
    pub(crate) fn take_expired(&mut self, now: Instant, limit: usize) -> Vec<i64> {
        let mut expired: Vec<i64> = self
            .sessions
            .iter()
            .filter(|(_, t)| t.deadline <= now)
            .map(|(id, _)| *id)
            .take(limit)
            .collect();
        expired.sort_unstable();
        for id in &expired {
            self.sessions.remove(id);
        }
        expired
    }

    /// Tracked sessions with the time left before they expire.
    pub(crate) fn deadlines(&self, now: Instant) -> Vec<(i64, Duration)> {
        let mut out: Vec<_> = self
            .sessions
            .iter()
            .map(|(id, t)| (*id, t.deadline.saturating_duration_since(now)))
            .collect();
        out.sort_by_key(|(id, left)| (*left, *id));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touched_sessions_live_and_silent_ones_expire() {
        let mut tracker = SessionTracker::default();
        tracker.add(1, 1000);
        tracker.add(2, 1000);
        let later = Instant::now() + Duration::from_millis(1500);
        assert_eq!(tracker.take_expired(Instant::now(), 10), Vec::<i64>::new());
        assert_eq!(tracker.take_expired(later, 10), vec![1, 2]);
        assert!(tracker.deadlines(later).is_empty());
        assert!(!tracker.touch(1));
    }
}
