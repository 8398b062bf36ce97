//! The leader's commands queued or in flight, by client and sequence
//! number, each with what it needs to answer once the command is decided.
//!
//! A client numbers its commands 1, 2, 3… and keeps a bounded number
//! outstanding, so a client's pending commands lie in a short stretch of
//! numbers, taken and released mostly in order. A ring per client, indexed
//! by sequence number, holds them a slot each: a hash map keyed by
//! `(client, seq)` held every pending command (16,384 in a loaded run,
//! more than the cache) and its inserts and removals took a tenth of the
//! leader's time. A number too far from its client's stretch for the ring
//! (a client that skipped far ahead, or a very old retry) goes to a map
//! beside the rings, so that no input can make a ring grow without bound.

use std::collections::VecDeque;

use crate::ClientId;
use crate::dedup::FastMap;

/// Most slots one client's ring spans.
const MAX_SPAN: u64 = 1 << 16;
/// Clients remembered before rings left empty are dropped.
const SWEEP_AT: usize = 64;

/// One client's stretch of pending numbers.
#[derive(Debug)]
struct Ring<T> {
    /// The number of `slots[0]`.
    base: u64,
    /// One slot per number from `base` on; the first and last are full.
    slots: VecDeque<Option<T>>,
}

impl<T> Ring<T> {
    fn slot(&self, seq: u64) -> Option<&Option<T>> {
        let at = seq.checked_sub(self.base)?;
        self.slots.get(usize::try_from(at).ok()?)
    }

    fn slot_mut(&mut self, seq: u64) -> Option<&mut Option<T>> {
        let at = seq.checked_sub(self.base)?;
        self.slots.get_mut(usize::try_from(at).ok()?)
    }

    /// Puts `value` at `seq` if the ring may span it; gives it back if not.
    fn put(&mut self, seq: u64, value: T) -> Result<(), T> {
        if self.slots.is_empty() {
            self.base = seq;
            self.slots.push_back(Some(value));
            return Ok(());
        }
        let len = self.slots.len() as u64;
        if seq >= self.base {
            let at = seq - self.base;
            if at >= MAX_SPAN {
                return Err(value);
            }
            if at >= len {
                self.slots.resize_with(at as usize + 1, || None);
            }
            self.slots[at as usize] = Some(value);
        } else {
            let before = self.base - seq;
            if before.saturating_add(len) > MAX_SPAN {
                return Err(value);
            }
            for _ in 1..before {
                self.slots.push_front(None);
            }
            self.slots.push_front(Some(value));
            self.base = seq;
        }
        Ok(())
    }

    /// Takes the value at `seq`, then trims empty slots off both ends.
    fn take(&mut self, seq: u64) -> Option<T> {
        let value = self.slot_mut(seq)?.take()?;
        while let Some(None) = self.slots.front() {
            self.slots.pop_front();
            self.base += 1;
        }
        while let Some(None) = self.slots.back() {
            self.slots.pop_back();
        }
        Some(value)
    }
}

/// Pending commands with a `T` each.
#[derive(Debug)]
pub(crate) struct Pending<T> {
    rings: FastMap<ClientId, Ring<T>>,
    /// Numbers that no ring may span.
    far: FastMap<(ClientId, u64), T>,
    /// Rings remembered before empty ones are dropped.
    sweep_at: usize,
}

impl<T> Default for Pending<T> {
    fn default() -> Self {
        Pending {
            rings: FastMap::default(),
            far: FastMap::default(),
            sweep_at: SWEEP_AT,
        }
    }
}

impl<T> Pending<T> {
    /// The value of `(client, seq)`, if pending.
    pub(crate) fn get(&self, client: ClientId, seq: u64) -> Option<&T> {
        if let Some(Some(v)) = self.rings.get(&client).and_then(|r| r.slot(seq)) {
            return Some(v);
        }
        if self.far.is_empty() {
            return None;
        }
        self.far.get(&(client, seq))
    }

    /// Makes `(client, seq)` pending with `value`, or gives it `value` if it
    /// is pending already; true when it was not.
    pub(crate) fn insert(&mut self, client: ClientId, seq: u64, value: T) -> bool {
        if !self.far.is_empty()
            && let Some(v) = self.far.get_mut(&(client, seq))
        {
            *v = value;
            return false;
        }
        if self.rings.len() >= self.sweep_at && !self.rings.contains_key(&client) {
            self.rings.retain(|_, r| !r.slots.is_empty());
            self.sweep_at = SWEEP_AT.max(2 * self.rings.len());
        }
        // One lookup of the client on the way in, found or made.
        let ring = self.rings.entry(client).or_insert_with(|| Ring {
            base: seq,
            slots: VecDeque::new(),
        });
        if let Some(Some(v)) = ring.slot_mut(seq) {
            *v = value;
            return false;
        }
        if let Err(value) = ring.put(seq, value) {
            self.far.insert((client, seq), value);
        }
        true
    }

    /// No longer pending: its value, if it was.
    pub(crate) fn remove(&mut self, client: ClientId, seq: u64) -> Option<T> {
        if let Some(v) = self.rings.get_mut(&client).and_then(|r| r.take(seq)) {
            return Some(v);
        }
        if self.far.is_empty() {
            return None;
        }
        self.far.remove(&(client, seq))
    }

    /// Forgets everything.
    pub(crate) fn clear(&mut self) {
        self.rings.clear();
        self.far.clear();
        self.sweep_at = SWEEP_AT;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn in_order_numbers_share_one_ring_and_far_ones_go_beside_it() {
        let c = ClientId(7);
        let mut p = Pending::default();
        for seq in 1..=100 {
            p.insert(c, seq, seq * 10);
        }
        assert_eq!(p.rings[&c].slots.len(), 100);
        assert_eq!(p.get(c, 50), Some(&500));
        p.insert(c, 50, 1);
        assert_eq!(p.remove(c, 50), Some(1));
        assert_eq!(p.remove(c, 50), None);
        assert_eq!(p.rings[&c].slots.len(), 100, "a hole in the middle stays");
        for seq in 1..50 {
            assert_eq!(p.remove(c, seq), Some(seq * 10));
        }
        assert_eq!(p.rings[&c].base, 51, "the empty front is trimmed");
        p.insert(c, 51 + MAX_SPAN, 3);
        p.insert(c, 0, 4);
        assert!(p.rings[&c].slots.len() as u64 <= MAX_SPAN);
        assert_eq!(p.far.len(), 1, "51 + MAX_SPAN is too far; 0 fits");
        assert_eq!(p.get(c, 51 + MAX_SPAN), Some(&3));
        assert_eq!(p.remove(c, 51 + MAX_SPAN), Some(3));
        assert_eq!(p.get(ClientId(8), 1), None);
        p.clear();
        assert_eq!(p.get(c, 60), None);
    }

    #[test]
    fn empty_rings_are_swept_as_clients_come_and_go() {
        let mut p = Pending::default();
        for c in 0..10 * SWEEP_AT as u64 {
            p.insert(ClientId(c), 1, ());
            p.remove(ClientId(c), 1);
        }
        assert!(p.rings.len() <= SWEEP_AT, "{} rings kept", p.rings.len());
    }

    proptest! {
        /// Any sequence of inserts, lookups and removals agrees with a map.
        #[test]
        fn behaves_as_a_map(ops in prop::collection::vec(
            (0u8..3, 0u64..3, prop_oneof![0u64..300, any::<u64>()], any::<u32>()),
            0..400,
        )) {
            let mut p = Pending::default();
            let mut model = HashMap::new();
            for (op, client, seq, value) in ops {
                let c = ClientId(client);
                match op {
                    0 => prop_assert_eq!(
                        p.insert(c, seq, value),
                        model.insert((c, seq), value).is_none()
                    ),
                    1 => prop_assert_eq!(p.remove(c, seq), model.remove(&(c, seq))),
                    _ => prop_assert_eq!(p.get(c, seq), model.get(&(c, seq))),
                }
            }
            for ((c, seq), v) in &model {
                prop_assert_eq!(p.get(*c, *seq), Some(v));
            }
        }
    }
}
