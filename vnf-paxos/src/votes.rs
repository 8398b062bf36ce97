//! Counting phase-2B votes into decisions: a value is decided in an
//! instance once acceptors of a majority of slots voted for it in one
//! ballot.
//!
//! Votes are counted per slot, not per identity: two identities of one slot
//! never vote in the same ballot (a new identity starts promised to the
//! ballot that admitted it, above every ballot its predecessor voted in),
//! so a slot's votes in one ballot are one acceptor's.

use std::collections::BTreeMap;

use crate::{Ballot, Instance, Value};

/// Votes for one instance: per ballot, the value and the slots (a bit each)
/// that voted for it.
#[derive(Debug, Default)]
struct Tally {
    ballots: Vec<(Ballot, Value, u64)>,
}

/// Open tallies for instances not yet decided.
#[derive(Debug)]
pub(crate) struct Votes {
    quorum: u32,
    slots: u16,
    open: BTreeMap<Instance, Tally>,
}

impl Votes {
    /// Tallies for `slots` acceptors (at most 64).
    pub(crate) fn new(slots: u16) -> Self {
        Votes {
            quorum: u32::from(slots) / 2 + 1,
            slots,
            open: BTreeMap::new(),
        }
    }

    /// Counts `slot`'s vote for `value` in `instance` at `ballot`; returns
    /// the value when this vote decides it. The caller drops votes for
    /// instances it knows decided.
    pub(crate) fn vote(
        &mut self,
        instance: Instance,
        ballot: Ballot,
        slot: u16,
        value: &Value,
    ) -> Option<Value> {
        if slot >= self.slots {
            return None;
        }
        let tally = self.open.entry(instance).or_default();
        let bit = 1u64 << slot;
        let at = match tally.ballots.iter().position(|(b, ..)| *b == ballot) {
            Some(at) => at,
            None => {
                tally.ballots.push((ballot, value.clone(), 0));
                tally.ballots.len() - 1
            }
        };
        let (_, v, mask) = &mut tally.ballots[at];
        *mask |= bit;
        if mask.count_ones() >= self.quorum {
            let v = v.clone();
            self.open.remove(&instance);
            return Some(v);
        }
        None
    }

    /// Forgets the tally of a decided instance.
    pub(crate) fn forget(&mut self, instance: Instance) {
        self.open.remove(&instance);
    }

    /// Forgets every tally below `instance`.
    pub(crate) fn forget_below(&mut self, instance: Instance) {
        self.open = self.open.split_off(&instance);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeId;

    #[test]
    fn a_majority_in_one_ballot_decides() {
        let b = |round| Ballot {
            round,
            node: NodeId(1),
            incarnation: 0,
        };
        let v = Value::noop();
        let mut votes = Votes::new(3);
        assert_eq!(votes.vote(1, b(1), 0, &v), None);
        assert_eq!(votes.vote(1, b(1), 0, &v), None, "a duplicate counts once");
        assert_eq!(votes.vote(1, b(2), 1, &v), None, "another ballot");
        assert_eq!(votes.vote(1, b(1), 9, &v), None, "no such slot");
        assert_eq!(votes.vote(1, b(2), 2, &v), Some(v.clone()));
        assert!(votes.open.is_empty());
    }
}
