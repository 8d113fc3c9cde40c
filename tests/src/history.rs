//! A linearizability checker for histories of one versioned register per key
//! (a znode's data and version), after Wing & Gong with Lowe's memoisation
//! (as Porcupine does it): search for an order of the operations that
//! respects real time and the register's semantics.
//!
//! An operation whose outcome is unknown (the connection failed before the
//! reply) has no completion: it may take effect at any time after it was
//! invoked, or never (placed after every other operation, it is unobservable).

use std::collections::{BTreeMap, HashSet};

/// What a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// setData with version -1.
    Write(u64),
    /// setData expecting `version`.
    CompareAndSet { version: i32, value: u64 },
    /// sync, then getData.
    Read,
}

/// What the server answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// A write succeeded; the node's new version.
    Written {
        version: i32,
    },
    BadVersion,
    Read {
        value: u64,
        version: i32,
    },
}

/// One operation; times are nanoseconds from a common start.
#[derive(Debug, Clone)]
pub struct Operation {
    pub key: usize,
    pub client: usize,
    pub input: Input,
    pub invoked: u64,
    /// `None`: the outcome is unknown.
    pub completed: Option<(u64, Output)>,
}

/// A key's register: its value and znode version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Register {
    value: u64,
    version: i32,
}

/// Applies `input` to `state`; `None` if `output` could not have been its answer.
fn step(state: Register, input: Input, output: Option<Output>) -> Option<Register> {
    let (next, expected) = match input {
        Input::Write(value) => {
            let next = Register {
                value,
                version: state.version + 1,
            };
            (
                next,
                Output::Written {
                    version: next.version,
                },
            )
        }
        Input::CompareAndSet { version, value } if version == state.version => {
            let next = Register {
                value,
                version: state.version + 1,
            };
            (
                next,
                Output::Written {
                    version: next.version,
                },
            )
        }
        Input::CompareAndSet { .. } => (state, Output::BadVersion),
        Input::Read => (
            state,
            Output::Read {
                value: state.value,
                version: state.version,
            },
        ),
    };
    match output {
        Some(actual) if actual != expected => None,
        _ => Some(next),
    }
}

/// The verdict for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order exists; the operations involved, for the failure message.
    Violation(String),
    /// The search gave up after this many steps (too many concurrent operations).
    Inconclusive(u64),
}

/// Checks every key's history separately (linearizability is compositional).
/// Every key starts with value 0 at version 0.
pub fn check(operations: &[Operation], step_budget: u64) -> BTreeMap<usize, Verdict> {
    let mut by_key: BTreeMap<usize, Vec<&Operation>> = BTreeMap::new();
    for op in operations {
        by_key.entry(op.key).or_default().push(op);
    }
    by_key
        .into_iter()
        .map(|(key, ops)| (key, check_key(&ops, step_budget)))
        .collect()
}

#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    prev: usize,
    next: usize,
}

fn check_key(ops: &[&Operation], step_budget: u64) -> Verdict {
    // Reads with unknown outcomes say nothing.
    let ops: Vec<&Operation> = ops
        .iter()
        .copied()
        .filter(|o| o.completed.is_some() || o.input != Input::Read)
        .collect();
    let mut times: Vec<(u64, bool, usize)> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        times.push((op.invoked, true, i));
        // An operation ends strictly after it starts, whatever the clock said.
        let completed = op
            .completed
            .map_or(u64::MAX, |(t, _)| t.max(op.invoked + 1));
        times.push((completed, false, i));
    }
    // At equal times a completion comes first: the operations did not overlap.
    times.sort_by_key(|&(t, is_call, op)| (t, is_call, op));
    // A doubly linked list over the events; index 0 is the head sentinel.
    let mut events = vec![Event {
        op: usize::MAX,
        is_call: false,
        prev: 0,
        next: 1,
    }];
    let mut return_of = vec![0usize; ops.len()];
    for (n, &(_, is_call, op)) in times.iter().enumerate() {
        let index = n + 1;
        events.push(Event {
            op,
            is_call,
            prev: n,
            next: if n + 1 == times.len() { 0 } else { index + 1 },
        });
        if !is_call {
            return_of[op] = index;
        }
    }
    if times.is_empty() {
        return Verdict::Linearizable;
    }
    let unlink = |events: &mut Vec<Event>, i: usize| {
        let (p, n) = (events[i].prev, events[i].next);
        events[p].next = n;
        if n != 0 {
            events[n].prev = p;
        }
    };
    let relink = |events: &mut Vec<Event>, i: usize| {
        let (p, n) = (events[i].prev, events[i].next);
        events[p].next = i;
        if n != 0 {
            events[n].prev = i;
        }
    };
    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut seen: HashSet<(Vec<u64>, Register)> = HashSet::new();
    let mut stack: Vec<(usize, Register)> = Vec::new();
    let mut state = Register {
        value: 0,
        version: 0,
    };
    let mut cursor = events[0].next;
    let mut steps = 0u64;
    while events[0].next != 0 {
        steps += 1;
        if steps > step_budget {
            return Verdict::Inconclusive(steps);
        }
        if cursor == 0 {
            // Ran off the end with calls left: only unknown outcomes remain
            // unplaced, and those may never have happened.
            let mut i = events[0].next;
            let mut all_unknown = true;
            while i != 0 {
                if ops[events[i].op].completed.is_some() {
                    all_unknown = false;
                    break;
                }
                i = events[i].next;
            }
            if all_unknown {
                return Verdict::Linearizable;
            }
            let Some((call, previous)) = stack.pop() else {
                return Verdict::Violation(describe(&ops, state));
            };
            let op = events[call].op;
            state = previous;
            linearized[op / 64] &= !(1 << (op % 64));
            relink(&mut events, return_of[op]);
            relink(&mut events, call);
            cursor = events[call].next;
            continue;
        }
        let event = events[cursor];
        if event.is_call {
            let op = ops[event.op];
            let output = op.completed.map(|(_, out)| out);
            if let Some(next) = step(state, op.input, output) {
                let mut marked = linearized.clone();
                marked[event.op / 64] |= 1 << (event.op % 64);
                if seen.insert((marked.clone(), next)) {
                    stack.push((cursor, state));
                    state = next;
                    linearized = marked;
                    unlink(&mut events, cursor);
                    unlink(&mut events, return_of[event.op]);
                    cursor = events[0].next;
                    continue;
                }
            }
            cursor = event.next;
        } else {
            // A completion reached while its operation is unplaced: undo.
            let Some((call, previous)) = stack.pop() else {
                return Verdict::Violation(describe(&ops, state));
            };
            let op = events[call].op;
            state = previous;
            linearized[op / 64] &= !(1 << (op % 64));
            relink(&mut events, return_of[op]);
            relink(&mut events, call);
            cursor = events[call].next;
        }
    }
    Verdict::Linearizable
}

fn describe(ops: &[&Operation], state: Register) -> String {
    let mut text = format!(
        "no linearization; {} operations, stuck at value {} version {}:\n",
        ops.len(),
        state.value,
        state.version
    );
    let mut sorted: Vec<&&Operation> = ops.iter().collect();
    sorted.sort_by_key(|o| o.invoked);
    for op in sorted.iter().take(400) {
        text.push_str(&format!(
            "  client {} [{} .. {}] {:?} -> {:?}\n",
            op.client,
            op.invoked,
            op.completed.map_or("?".into(), |(t, _)| t.to_string()),
            op.input,
            op.completed.map(|(_, o)| o)
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(
        client: usize,
        input: Input,
        invoked: u64,
        completed: Option<(u64, Output)>,
    ) -> Operation {
        Operation {
            key: 0,
            client,
            input,
            invoked,
            completed,
        }
    }

    fn verdict(ops: &[Operation]) -> Verdict {
        check(ops, 1_000_000)
            .remove(&0)
            .unwrap_or(Verdict::Linearizable)
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let ops = [
            op(
                0,
                Input::Write(5),
                0,
                Some((10, Output::Written { version: 1 })),
            ),
            op(
                1,
                Input::Read,
                20,
                Some((
                    30,
                    Output::Read {
                        value: 5,
                        version: 1,
                    },
                )),
            ),
            op(
                0,
                Input::CompareAndSet {
                    version: 0,
                    value: 6,
                },
                40,
                Some((50, Output::BadVersion)),
            ),
            op(
                0,
                Input::CompareAndSet {
                    version: 1,
                    value: 7,
                },
                60,
                Some((70, Output::Written { version: 2 })),
            ),
            op(
                1,
                Input::Read,
                80,
                Some((
                    90,
                    Output::Read {
                        value: 7,
                        version: 2,
                    },
                )),
            ),
        ];
        assert_eq!(verdict(&ops), Verdict::Linearizable);
    }

    #[test]
    fn stale_read_after_acknowledged_write_is_a_violation() {
        let ops = [
            op(
                0,
                Input::Write(5),
                0,
                Some((10, Output::Written { version: 1 })),
            ),
            op(
                1,
                Input::Read,
                20,
                Some((
                    30,
                    Output::Read {
                        value: 0,
                        version: 0,
                    },
                )),
            ),
        ];
        assert!(matches!(verdict(&ops), Verdict::Violation(_)));
    }

    #[test]
    fn concurrent_operations_may_take_effect_in_either_order() {
        let ops = [
            op(
                0,
                Input::Write(5),
                0,
                Some((100, Output::Written { version: 2 })),
            ),
            op(
                1,
                Input::Write(6),
                10,
                Some((90, Output::Written { version: 1 })),
            ),
            op(
                2,
                Input::Read,
                110,
                Some((
                    120,
                    Output::Read {
                        value: 5,
                        version: 2,
                    },
                )),
            ),
        ];
        assert_eq!(verdict(&ops), Verdict::Linearizable);
    }

    #[test]
    fn an_unknown_write_may_or_may_not_have_happened() {
        let happened = [
            op(0, Input::Write(5), 0, None),
            op(
                1,
                Input::Read,
                20,
                Some((
                    30,
                    Output::Read {
                        value: 5,
                        version: 1,
                    },
                )),
            ),
        ];
        assert_eq!(verdict(&happened), Verdict::Linearizable);
        let not_happened = [
            op(0, Input::Write(5), 0, None),
            op(
                1,
                Input::Read,
                20,
                Some((
                    30,
                    Output::Read {
                        value: 0,
                        version: 0,
                    },
                )),
            ),
        ];
        assert_eq!(verdict(&not_happened), Verdict::Linearizable);
        let before_invoked = [
            op(
                1,
                Input::Read,
                0,
                Some((
                    10,
                    Output::Read {
                        value: 5,
                        version: 1,
                    },
                )),
            ),
            op(0, Input::Write(5), 20, None),
        ];
        assert!(matches!(verdict(&before_invoked), Verdict::Violation(_)));
    }

    #[test]
    fn lost_acknowledged_write_is_a_violation() {
        // Both writes acknowledged, yet the later read sees the first only.
        let ops = [
            op(
                0,
                Input::Write(5),
                0,
                Some((10, Output::Written { version: 1 })),
            ),
            op(
                1,
                Input::Write(6),
                20,
                Some((30, Output::Written { version: 2 })),
            ),
            op(
                2,
                Input::Read,
                40,
                Some((
                    50,
                    Output::Read {
                        value: 5,
                        version: 1,
                    },
                )),
            ),
        ];
        assert!(matches!(verdict(&ops), Verdict::Violation(_)));
    }

    /// Histories generated from a real register, with each operation's
    /// interval stretched around the moment it took effect, always pass; the
    /// same histories with one read corrupted never do.
    #[test]
    fn generated_histories_pass_and_corrupted_ones_fail() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..200 {
            let mut state = Register {
                value: 0,
                version: 0,
            };
            let mut ops = Vec::new();
            for i in 0..40u64 {
                let at = i * 100 + 50;
                let input = match next(3) {
                    0 => Input::Write(i + 1),
                    1 => Input::CompareAndSet {
                        version: state.version - next(2) as i32,
                        value: i + 1,
                    },
                    _ => Input::Read,
                };
                let Some(after) = step(state, input, None) else {
                    unreachable!("any output is accepted")
                };
                let output = match input {
                    Input::Read => Output::Read {
                        value: state.value,
                        version: state.version,
                    },
                    _ if after == state => Output::BadVersion,
                    _ => Output::Written {
                        version: after.version,
                    },
                };
                state = after;
                let unknown = input != Input::Read && next(10) == 0;
                ops.push(op(
                    next(4) as usize,
                    input,
                    at - next(300).min(at),
                    (!unknown).then(|| (at + next(300), output)),
                ));
            }
            let v = verdict(&ops);
            assert_eq!(v, Verdict::Linearizable, "{v:?}");
            let reads: Vec<usize> = (0..ops.len())
                .filter(|i| matches!(ops[*i].completed, Some((_, Output::Read { .. }))))
                .collect();
            if let Some(&victim) = reads.last() {
                if let Some((t, Output::Read { value, version })) = ops[victim].completed {
                    ops[victim].completed = Some((
                        t,
                        Output::Read {
                            value: value + 1000,
                            version,
                        },
                    ));
                    assert!(matches!(verdict(&ops), Verdict::Violation(_)));
                }
            }
        }
    }
}
