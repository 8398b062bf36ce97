//! A small replicated key-value store on the consensus service, and a
//! linearizability checker for its histories.
//!
//! **Store.** Every operation (get, put, compare-and-set) is a value
//! submitted to the service; every replica applies the decided log in
//! instance order to its own [`Store`], so all replicas pass through the
//! same states. A client's operation completes when its own replica
//! applies it: the output is what that application returned. Reads go
//! through the log too, which is what makes them linearizable.
//!
//! **Checker.** A history is a list of [`Event`]s: an operation, its output
//! (none for an operation that never completed: it may or may not have
//! taken effect), and its invocation and completion times. Linearizable
//! means there is a total order of the operations that respects real time
//! (an operation that completed before another was invoked comes first)
//! and that, replayed on a single register per key, gives every completed
//! operation its recorded output. Keys are independent (P-compositionality,
//! as in Porcupine), so each key's sub-history is checked on its own with
//! Wing & Gong's search: repeatedly pick an operation that may come next
//! (no other pending operation completed before it was invoked), apply it
//! to the model, backtrack when an output disagrees, and remember
//! `(operations done, register state)` pairs already explored (Lowe's
//! memoisation) so that the search is not exponential on typical
//! histories. Operations that never completed may be linearized anywhere
//! after their invocation, or left out.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};

/// A key.
pub type Key = u8;

/// An operation on the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Read a key.
    Get(Key),
    /// Write a key.
    Put(Key, u64),
    /// Write `new` if the key holds `expected` (`None`: absent).
    Cas(Key, Option<u64>, u64),
}

impl Op {
    /// The key it touches.
    pub fn key(&self) -> Key {
        match *self {
            Op::Get(k) | Op::Put(k, _) | Op::Cas(k, _, _) => k,
        }
    }

    /// Its bytes, as submitted to the service.
    pub fn encode(&self) -> [u8; 19] {
        let mut b = [0u8; 19];
        match *self {
            Op::Get(k) => {
                b[0] = 0;
                b[1] = k;
            }
            Op::Put(k, v) => {
                b[0] = 1;
                b[1] = k;
                b[2..10].copy_from_slice(&v.to_be_bytes());
            }
            Op::Cas(k, e, v) => {
                b[0] = if e.is_some() { 3 } else { 2 };
                b[1] = k;
                b[2..10].copy_from_slice(&v.to_be_bytes());
                b[10] = 1;
                b[11..19].copy_from_slice(&e.unwrap_or(0).to_be_bytes());
            }
        }
        b
    }

    /// An operation from its bytes.
    pub fn decode(b: &[u8]) -> Option<Op> {
        if b.len() != 19 {
            return None;
        }
        let v = u64::from_be_bytes(b[2..10].try_into().ok()?);
        let e = u64::from_be_bytes(b[11..19].try_into().ok()?);
        Some(match b[0] {
            0 => Op::Get(b[1]),
            1 => Op::Put(b[1], v),
            2 => Op::Cas(b[1], None, v),
            3 => Op::Cas(b[1], Some(e), v),
            _ => return None,
        })
    }
}

/// What an operation returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Output {
    /// A get's value.
    Value(Option<u64>),
    /// A put's acknowledgement.
    Done,
    /// Whether a compare-and-set wrote.
    Swapped(bool),
}

/// One register's step: the new state and the output.
fn step(state: Option<u64>, op: Op) -> (Option<u64>, Output) {
    match op {
        Op::Get(_) => (state, Output::Value(state)),
        Op::Put(_, v) => (Some(v), Output::Done),
        Op::Cas(_, e, v) if state == e => (Some(v), Output::Swapped(true)),
        Op::Cas(..) => (state, Output::Swapped(false)),
    }
}

/// The replicated state machine: one register per key.
#[derive(Debug, Default, Clone)]
pub struct Store {
    map: BTreeMap<Key, u64>,
}

impl Store {
    /// Applies an operation; returns its output.
    pub fn apply(&mut self, op: Op) -> Output {
        let k = op.key();
        let (next, out) = step(self.map.get(&k).copied(), op);
        match next {
            Some(v) => self.map.insert(k, v),
            None => self.map.remove(&k),
        };
        out
    }
}

/// One operation of a history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// The operation.
    pub op: Op,
    /// Its output; `None` when it never completed.
    pub output: Option<Output>,
    /// When it was invoked.
    pub invoke: u64,
    /// When it completed (ignored when it did not).
    pub complete: u64,
}

/// Why a history is not linearizable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The key whose sub-history has no linearization.
    pub key: Key,
    /// Operations on that key.
    pub ops: usize,
}

/// Checks a whole history (see the module docs).
pub fn check(history: &[Event]) -> Result<(), Violation> {
    let mut by_key: HashMap<Key, Vec<Event>> = HashMap::new();
    for e in history {
        by_key.entry(e.op.key()).or_default().push(*e);
    }
    let mut keys: Vec<_> = by_key.into_iter().collect();
    keys.sort_by_key(|(k, _)| *k);
    for (key, events) in keys {
        if !check_register(&events) {
            return Err(Violation {
                key,
                ops: events.len(),
            });
        }
    }
    Ok(())
}

/// Wing & Gong search with memoisation on one register's history.
fn check_register(events: &[Event]) -> bool {
    let n = events.len();
    let end = |e: &Event| {
        if e.output.is_some() {
            e.complete
        } else {
            u64::MAX
        }
    };
    let words = n.div_ceil(64);
    let mut done = vec![0u64; words];
    let mut seen: HashSet<(Vec<u64>, Option<u64>)> = HashSet::new();
    let completed = events.iter().filter(|e| e.output.is_some()).count();
    // Iterative depth-first search: a stack of (state, op chosen, next
    // candidate index to try at this depth).
    let mut stack: Vec<(Option<u64>, usize)> = Vec::new();
    let mut state: Option<u64> = None;
    let mut next_try = 0usize;
    let mut completed_done = 0usize;
    let is_done = |d: &[u64], i: usize| d[i / 64] >> (i % 64) & 1 == 1;
    loop {
        if completed_done == completed {
            return true;
        }
        // The earliest completion among operations not yet linearized:
        // only operations invoked before it may come next.
        let horizon = (0..n)
            .filter(|&i| !is_done(&done, i))
            .map(|i| end(&events[i]))
            .min()
            .unwrap_or(u64::MAX);
        let mut advanced = false;
        let mut i = next_try;
        while i < n {
            if !is_done(&done, i) && events[i].invoke <= horizon {
                let e = &events[i];
                let (s2, out) = step(state, e.op);
                if e.output.is_none_or(|o| o == out) {
                    done[i / 64] |= 1 << (i % 64);
                    if seen.insert((done.clone(), s2)) {
                        stack.push((state, i));
                        state = s2;
                        if e.output.is_some() {
                            completed_done += 1;
                        }
                        next_try = 0;
                        advanced = true;
                        break;
                    }
                    done[i / 64] &= !(1 << (i % 64));
                }
            }
            i += 1;
        }
        if advanced {
            continue;
        }
        // Dead end: undo the last choice and try the next candidate.
        let Some((prev, last)) = stack.pop() else {
            return false;
        };
        done[last / 64] &= !(1 << (last % 64));
        if events[last].output.is_some() {
            completed_done -= 1;
        }
        state = prev;
        next_try = last + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(op: Op, output: Option<Output>, invoke: u64, complete: u64) -> Event {
        Event {
            op,
            output,
            invoke,
            complete,
        }
    }

    const K: Key = 1;

    #[test]
    fn ops_round_trip_through_bytes() {
        for op in [
            Op::Get(3),
            Op::Put(4, 99),
            Op::Cas(5, None, 7),
            Op::Cas(6, Some(0), 8),
        ] {
            assert_eq!(Op::decode(&op.encode()), Some(op));
        }
        assert_eq!(Op::decode(&[9; 19]), None);
        assert_eq!(Op::decode(&[0; 3]), None);
    }

    #[test]
    fn a_sequential_history_is_linearizable() {
        let h = [
            ev(Op::Put(K, 1), Some(Output::Done), 0, 1),
            ev(Op::Get(K), Some(Output::Value(Some(1))), 2, 3),
            ev(Op::Cas(K, Some(1), 2), Some(Output::Swapped(true)), 4, 5),
            ev(Op::Cas(K, Some(1), 3), Some(Output::Swapped(false)), 6, 7),
            ev(Op::Get(K), Some(Output::Value(Some(2))), 8, 9),
        ];
        assert_eq!(check(&h), Ok(()));
    }

    #[test]
    fn overlapping_operations_may_take_either_order() {
        // The read overlaps the write: old or new value are both fine.
        for seen in [None, Some(1)] {
            let h = [
                ev(Op::Put(K, 1), Some(Output::Done), 0, 10),
                ev(Op::Get(K), Some(Output::Value(seen)), 5, 6),
            ];
            assert_eq!(check(&h), Ok(()), "read saw {seen:?}");
        }
    }

    #[test]
    fn a_stale_read_is_rejected() {
        let h = [
            ev(Op::Put(K, 1), Some(Output::Done), 0, 1),
            ev(Op::Put(K, 2), Some(Output::Done), 2, 3),
            ev(Op::Get(K), Some(Output::Value(Some(1))), 4, 5),
        ];
        assert_eq!(check(&h), Err(Violation { key: K, ops: 3 }));
    }

    #[test]
    fn two_winning_compare_and_sets_are_rejected() {
        let h = [
            ev(Op::Cas(K, None, 1), Some(Output::Swapped(true)), 0, 10),
            ev(Op::Cas(K, None, 2), Some(Output::Swapped(true)), 1, 11),
        ];
        assert!(check(&h).is_err());
    }

    #[test]
    fn reads_must_agree_on_one_order() {
        // Two concurrent writes; one reader sees 1 then 2, another 2 then
        // 1, all after both writes were invoked and sequentially per
        // reader: no single order explains both.
        let h = [
            ev(Op::Put(K, 1), Some(Output::Done), 0, 100),
            ev(Op::Put(K, 2), Some(Output::Done), 0, 100),
            ev(Op::Get(K), Some(Output::Value(Some(1))), 10, 20),
            ev(Op::Get(K), Some(Output::Value(Some(2))), 30, 40),
            ev(Op::Get(K), Some(Output::Value(Some(2))), 10, 20),
            ev(Op::Get(K), Some(Output::Value(Some(1))), 30, 40),
        ];
        assert!(check(&h).is_err());
    }

    #[test]
    fn an_operation_that_never_completed_may_or_may_not_have_happened() {
        for seen in [None, Some(5)] {
            let h = [
                ev(Op::Put(K, 5), None, 0, 0),
                ev(Op::Get(K), Some(Output::Value(seen)), 10, 11),
            ];
            assert_eq!(check(&h), Ok(()));
        }
        // But not before it was invoked.
        let h = [
            ev(Op::Get(K), Some(Output::Value(Some(5))), 0, 1),
            ev(Op::Put(K, 5), None, 2, 0),
        ];
        assert!(check(&h).is_err());
    }

    #[test]
    fn keys_are_checked_apart() {
        let h = [
            ev(Op::Put(1, 1), Some(Output::Done), 0, 1),
            ev(Op::Put(2, 2), Some(Output::Done), 0, 1),
            ev(Op::Get(1), Some(Output::Value(Some(1))), 2, 3),
            ev(Op::Get(2), Some(Output::Value(Some(1))), 2, 3),
        ];
        assert_eq!(check(&h), Err(Violation { key: 2, ops: 2 }));
    }

    #[test]
    fn a_long_concurrent_history_is_checked_quickly() {
        // 1,000 overlapping operations on one register (each overlaps
        // three neighbours on either side, as with a handful of concurrent
        // clients), built from a real sequential order so that it is
        // linearizable.
        let mut store = Store::default();
        let mut h = Vec::new();
        let mut t = 0u64;
        for i in 0..1000u64 {
            let op = match i % 3 {
                0 => Op::Put(K, i),
                1 => Op::Get(K),
                _ => Op::Cas(K, Some(i - 2), i),
            };
            let out = store.apply(op);
            h.push(ev(op, Some(out), t.saturating_sub(35), t + 35));
            t += 10;
        }
        let started = std::time::Instant::now();
        assert_eq!(check(&h), Ok(()));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // Corrupt one read: found, which takes exhausting the search.
        let i = h.iter().rposition(|e| matches!(e.op, Op::Get(_))).unwrap();
        h[i].output = Some(Output::Value(Some(123_456)));
        let started = std::time::Instant::now();
        assert!(check(&h).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }
}
