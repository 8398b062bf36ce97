//! An acceptor's votes, by instance: a ring of slots indexed by instance
//! number, each keeping the ballot and the value's wire bytes.
//!
//! Instances in flight are dense (the leader proposes consecutive
//! instances from its commit point, and the acceptor drops everything
//! below its trim point), so a ring that covers `[base, base + capacity)`
//! finds an instance with one index and one comparison, where a search
//! tree costs a walk and a node allocation per vote. Each slot keeps its
//! byte buffer when it is overwritten, so once the ring has turned over,
//! storing a vote allocates nothing. The ring starts small and doubles
//! when an instance lies beyond it, up to a limit; an instance further
//! ahead than the limit is refused, and the acceptor then does not vote on
//! it (as if the accept had been lost: safe, and the leader, whose window
//! is far smaller, never sends one).

use crate::{Ballot, Instance};

/// Slots a new store starts with.
const INITIAL: usize = 64;

#[derive(Debug, Clone)]
struct Slot {
    /// The instance it holds; valid only when at or above the base and
    /// congruent with the slot's index (stale slots fail one of the two).
    instance: Instance,
    ballot: Ballot,
    value: Vec<u8>,
}

impl Slot {
    const fn empty() -> Self {
        Slot {
            instance: Instance::MAX,
            ballot: Ballot::ZERO,
            value: Vec::new(),
        }
    }
}

/// The votes of one acceptor (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct VoteStore {
    slots: Vec<Slot>,
    mask: u64,
    /// Nothing below is kept: the acceptor's trim point.
    base: Instance,
    /// One past the highest instance stored, at least `base`.
    top: Instance,
    /// Most slots the ring may grow to (a power of two).
    limit: u64,
}

impl VoteStore {
    /// A store for instances from 0, growing to at most `limit` slots
    /// (rounded up to a power of two).
    pub(crate) fn new(limit: u64) -> Self {
        let limit = limit.clamp(INITIAL as u64, 1 << 40).next_power_of_two();
        VoteStore {
            slots: vec![Slot::empty(); INITIAL],
            mask: INITIAL as u64 - 1,
            base: 0,
            top: 0,
            limit,
        }
    }

    /// Stores a vote for `value` (a value's wire bytes) in `instance` at
    /// `ballot`, replacing any earlier vote there. False, and nothing
    /// stored, when the instance is below the base or too far above it.
    #[inline]
    pub(crate) fn insert(&mut self, instance: Instance, ballot: Ballot, value: &[u8]) -> bool {
        if instance < self.base || instance == Instance::MAX {
            return false;
        }
        let ahead = instance - self.base;
        if ahead >= self.limit {
            return false;
        }
        if ahead > self.mask {
            self.grow(ahead + 1);
        }
        let slot = &mut self.slots[(instance & self.mask) as usize];
        slot.instance = instance;
        slot.ballot = ballot;
        slot.value.clear();
        slot.value.extend_from_slice(value);
        if instance >= self.top {
            self.top = instance + 1;
        }
        true
    }

    /// The vote in `instance`, if any.
    #[inline]
    pub(crate) fn get(&self, instance: Instance) -> Option<(Ballot, &[u8])> {
        if instance < self.base || instance >= self.top {
            return None;
        }
        let slot = &self.slots[(instance & self.mask) as usize];
        (slot.instance == instance).then_some((slot.ballot, &slot.value[..]))
    }

    /// The votes in `[from, end)`, in instance order.
    pub(crate) fn range(
        &self,
        from: Instance,
        end: Instance,
    ) -> impl Iterator<Item = (Instance, Ballot, &[u8])> + '_ {
        let lo = from.max(self.base);
        let hi = end.min(self.top);
        (lo..hi.max(lo)).filter_map(move |i| self.get(i).map(|(b, v)| (i, b, v)))
    }

    /// Drops every vote below `t` (no effect if `t` is not above the base).
    pub(crate) fn trim(&mut self, t: Instance) {
        if t > self.base {
            self.base = t;
            self.top = self.top.max(t);
        }
    }

    /// Doubles the ring until it has at least `need` slots (at most the
    /// limit), moving the live votes to their new places.
    fn grow(&mut self, need: u64) {
        let cap = need
            .next_power_of_two()
            .max((self.mask + 1) * 2)
            .min(self.limit);
        let mut slots = vec![Slot::empty(); cap as usize];
        let mask = cap - 1;
        for s in self.slots.drain(..) {
            if s.instance >= self.base && s.instance < self.top {
                let at = (s.instance & mask) as usize;
                slots[at] = s;
            }
        }
        self.slots = slots;
        self.mask = mask;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeId;
    use std::collections::BTreeMap;

    fn b(round: u32) -> Ballot {
        Ballot {
            round,
            node: NodeId(1),
            incarnation: 0,
        }
    }

    #[test]
    fn behaves_like_a_map_under_inserts_overwrites_and_trims() {
        // A reference map beside the ring, driven by a fixed pseudo-random
        // walk of inserts (mostly ahead, sometimes behind), overwrites and
        // trims.
        let mut store = VoteStore::new(1 << 12);
        let mut model: BTreeMap<Instance, (Ballot, Vec<u8>)> = BTreeMap::new();
        let mut base = 0u64;
        let mut x = 0x1234_5678u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for step in 0..20_000u64 {
            let r = next();
            if r % 50 == 0 {
                let t = base + r % 300;
                store.trim(t);
                base = base.max(t);
                model = model.split_off(&base);
            } else {
                let i = base + (r >> 8) % 2000;
                let value = vec![(step % 251) as u8; (r % 40) as usize];
                assert!(store.insert(i, b(step as u32), &value));
                model.insert(i, (b(step as u32), value));
            }
            if step % 97 == 0 {
                let got: Vec<_> = store
                    .range(0, Instance::MAX)
                    .map(|(i, b, v)| (i, (b, v.to_vec())))
                    .collect();
                let want: Vec<_> = model.iter().map(|(i, v)| (*i, v.clone())).collect();
                assert_eq!(got, want, "step {step}");
            }
        }
    }

    #[test]
    fn refuses_what_lies_out_of_range() {
        let mut s = VoteStore::new(100);
        assert_eq!(s.limit, 128);
        assert!(s.insert(127, b(1), b"x"));
        assert!(!s.insert(128, b(1), b"x"), "beyond the limit");
        s.trim(10);
        assert!(!s.insert(9, b(1), b"x"), "below the base");
        assert!(s.insert(137, b(1), b"y"));
        assert!(!s.insert(Instance::MAX, b(1), b"y"));
        assert_eq!(s.get(127), Some((b(1), &b"x"[..])));
        assert_eq!(s.get(5), None);
        assert_eq!(s.range(0, 1000).count(), 2);
        assert_eq!(s.range(128, 137).count(), 0);
    }
}
