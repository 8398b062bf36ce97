//! Counting phase-2B votes into decisions: a value is decided in an
//! instance once acceptors of a majority of slots voted for it in one
//! ballot.
//!
//! Votes are counted per slot, not per identity: two identities of one slot
//! never vote in the same ballot (a new identity starts promised to the
//! ballot that admitted it, above every ballot its predecessor voted in),
//! so a slot's votes in one ballot are one acceptor's.

use std::collections::BTreeMap;

use crate::wire::value::parse_value;
use crate::{Ballot, Instance, Value};

/// The value a vote is for: built already, its checked bytes, parsed
/// only when a tally needs it (the first vote of a ballot), or not sent
/// (a `Voted`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum VoteValue<'a> {
    /// A value in hand.
    Built(&'a Value),
    /// A value's bytes, checked by the caller.
    Bytes(&'a [u8]),
    /// Not known to the counter: the vote counts only in a tally that
    /// another vote of its ballot opened with the value.
    Unknown,
}

impl VoteValue<'_> {
    fn get(self) -> Option<Value> {
        match self {
            VoteValue::Built(v) => Some(v.clone()),
            VoteValue::Bytes(b) => parse_value(b).ok().map(|(v, _)| v),
            VoteValue::Unknown => None,
        }
    }
}

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
    /// instances it knows decided. The value is built only if this is the
    /// first vote of its ballot in the instance: one ballot carries one
    /// value per instance (a leader proposes once per instance and
    /// ballot), so later votes of the ballot are counted without reading
    /// theirs. A vote whose value cannot be built counts for nothing.
    pub(crate) fn vote_for(
        &mut self,
        instance: Instance,
        ballot: Ballot,
        slot: u16,
        value: VoteValue<'_>,
    ) -> Option<Value> {
        if slot >= self.slots {
            return None;
        }
        let tally = self.open.entry(instance).or_default();
        let bit = 1u64 << slot;
        let at = match tally.ballots.iter().position(|(b, ..)| *b == ballot) {
            Some(at) => at,
            None => {
                let Some(v) = value.get() else {
                    if tally.ballots.is_empty() {
                        self.open.remove(&instance);
                    }
                    return None;
                };
                tally.ballots.push((ballot, v, 0));
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
        let noop = Value::noop();
        let v = VoteValue::Built(&noop);
        let mut votes = Votes::new(3);
        assert_eq!(votes.vote_for(1, b(1), 0, v), None);
        assert_eq!(
            votes.vote_for(1, b(1), 0, v),
            None,
            "a duplicate counts once"
        );
        assert_eq!(votes.vote_for(1, b(2), 1, v), None, "another ballot");
        assert_eq!(votes.vote_for(1, b(1), 9, v), None, "no such slot");
        assert_eq!(votes.vote_for(1, b(2), 2, v), Some(noop.clone()));
        assert!(votes.open.is_empty());
    }

    #[test]
    fn later_votes_of_a_ballot_are_counted_unread_and_bad_bytes_count_nothing() {
        let b = Ballot {
            round: 1,
            node: NodeId(1),
            incarnation: 0,
        };
        let mut votes = Votes::new(3);
        // Truncated bytes: no tally, no vote.
        assert_eq!(votes.vote_for(4, b, 0, VoteValue::Bytes(&[0, 1])), None);
        assert!(votes.open.is_empty());
        let noop = [0u8, 0, 0, 0];
        assert_eq!(votes.vote_for(4, b, 0, VoteValue::Bytes(&noop)), None);
        // The second vote's bytes are not read: the ballot's value stands.
        assert_eq!(
            votes.vote_for(4, b, 1, VoteValue::Bytes(&[0xff])),
            Some(Value::noop())
        );
    }

    #[test]
    fn a_vote_without_its_value_counts_only_beside_one_with_it() {
        let b = Ballot {
            round: 1,
            node: NodeId(1),
            incarnation: 0,
        };
        let noop = Value::noop();
        let mut votes = Votes::new(3);
        assert_eq!(votes.vote_for(4, b, 0, VoteValue::Unknown), None);
        assert!(votes.open.is_empty(), "no value: no tally");
        assert_eq!(votes.vote_for(4, b, 1, VoteValue::Built(&noop)), None);
        assert_eq!(
            votes.vote_for(4, b, 2, VoteValue::Unknown),
            Some(noop),
            "counted against the value its ballot's first vote brought"
        );
    }
}
