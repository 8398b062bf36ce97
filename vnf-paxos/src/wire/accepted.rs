//! Accepted (phase 2B): an acceptor's vote for values in a ballot, sent by
//! an acceptor in memory to the coordinators and the learners, and by any
//! acceptor to a process that fetches votes (an acceptor with a log votes
//! to the coordinators with a [`super::voted`], without the values).
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | ballot |
//! | 8 | 2 | acceptor slot |
//! | 10 | 2 | reserved |
//! | 12 | 4 | acceptor incarnation |
//! | 16 | 2 | entry count |
//! | 18 | 6 | reserved |
//! | 24 | … | entries: instance (8), value |
//!
//! The vote carries the value, so that a learner can learn from a quorum of
//! votes without waiting for the leader.

use super::value::{Entry, count_u16, emit_entries, entry_bytes, entry_len, parse_entries};
use super::{Field, MsgError, check_len, check_room, get_acceptor, get_u16, get_u64, set_acceptor};
use crate::{AcceptorId, Ballot, Instance};

/// Length of the fixed part.
pub const HEADER_LEN: usize = 24;

mod field {
    use super::Field;
    pub const BALLOT: Field = 0..8;
    pub const ACCEPTOR: usize = 8;
    pub const COUNT: Field = 16..18;
    pub const RESERVED: Field = 18..24;
}

/// A view of an accepted in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking it; accessors may then panic on a
    /// short buffer. Prefer [`Packet::new_checked`] for received bytes.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer` after checking the fixed part; the entries are
    /// checked as [`Packet::entries`] reads them.
    pub fn new_checked(buffer: T) -> Result<Self, MsgError> {
        check_len("accepted", HEADER_LEN, buffer.as_ref().len())?;
        Ok(Self { buffer })
    }

    /// The ballot.
    pub fn ballot(&self) -> Ballot {
        Ballot::from_u64(get_u64(self.buffer.as_ref(), field::BALLOT))
    }

    /// The acceptor.
    pub fn acceptor(&self) -> AcceptorId {
        get_acceptor(self.buffer.as_ref(), field::ACCEPTOR)
    }

    /// The entry count.
    pub fn count(&self) -> usize {
        usize::from(get_u16(self.buffer.as_ref(), field::COUNT))
    }

    /// The entries.
    pub fn entries(&self) -> Result<Vec<Entry>, MsgError> {
        parse_entries(&self.buffer.as_ref()[HEADER_LEN..], self.count(), false)
    }

    /// The entries in place, each an instance and its value's bytes, after
    /// checking every one of them (so that a malformed vote is refused
    /// whole, as [`Packet::entries`] refuses it): for receivers that build
    /// a value only where they need it (learners need one copy of the
    /// votes' value per instance, not one per vote).
    pub fn entry_bytes(&self) -> Result<impl Iterator<Item = (Instance, &[u8])>, MsgError> {
        let list = &self.buffer.as_ref()[HEADER_LEN..];
        for e in entry_bytes(list, self.count()) {
            e?;
        }
        // Checked above: every entry reads again.
        Ok(entry_bytes(list, self.count()).map_while(Result::ok))
    }
}

/// Writes the fixed part of an accepted (ballot, voter, entry count,
/// reserved bytes zeroed) at the front of `b`, for a sender that copies the
/// entries in itself (the acceptor copies them from the accept's bytes).
pub fn emit_header(
    b: &mut [u8],
    ballot: Ballot,
    acceptor: AcceptorId,
    count: u16,
) -> Result<(), MsgError> {
    check_room("accepted", HEADER_LEN, b.len())?;
    b[field::BALLOT].copy_from_slice(&ballot.to_u64().to_be_bytes());
    set_acceptor(b, field::ACCEPTOR, acceptor);
    b[field::COUNT].copy_from_slice(&count.to_be_bytes());
    b[field::RESERVED].fill(0);
    Ok(())
}

/// An accepted, as values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The ballot voted in.
    pub ballot: Ballot,
    /// The voter.
    pub acceptor: AcceptorId,
    /// Instances and values voted for (their `ballot` field is not sent).
    pub entries: Vec<Entry>,
}

impl Repr {
    /// Reads a packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self, MsgError> {
        Ok(Self {
            ballot: p.ballot(),
            acceptor: p.acceptor(),
            entries: p.entries()?,
        })
    }

    /// Bytes the message takes.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
            + self
                .entries
                .iter()
                .map(|e| entry_len(e, false))
                .sum::<usize>()
    }

    /// Writes the message at the front of the packet's buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<(), MsgError> {
        let count = count_u16(&self.entries)?;
        let b = p.buffer.as_mut();
        check_room("accepted", self.buffer_len(), b.len())?;
        b[field::BALLOT].copy_from_slice(&self.ballot.to_u64().to_be_bytes());
        set_acceptor(b, field::ACCEPTOR, self.acceptor);
        b[field::COUNT].copy_from_slice(&count.to_be_bytes());
        b[field::RESERVED].fill(0);
        emit_entries(&self.entries, &mut b[HEADER_LEN..], false)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Command, NodeId, Value};

    #[test]
    fn entry_bytes_are_the_entries_or_refuse_a_vote_whole() {
        let value = |seq| Value::batch(vec![Command::of(3, seq, b"put k v")]);
        let r = Repr {
            ballot: Ballot {
                round: 2,
                node: NodeId(1),
                incarnation: 0,
            },
            acceptor: AcceptorId::default(),
            entries: (0..3)
                .map(|i| Entry {
                    instance: 10 + i,
                    ballot: Ballot::ZERO,
                    value: value(i + 1),
                })
                .collect(),
        };
        let mut b = vec![0u8; r.buffer_len()];
        r.emit(&mut Packet::new_unchecked(&mut b[..])).unwrap();
        let p = Packet::new_checked(&b[..]).unwrap();
        let got: Vec<_> = p.entry_bytes().unwrap().collect();
        assert_eq!(got.len(), 3);
        for ((i, bytes), e) in got.iter().zip(&r.entries) {
            assert_eq!(*i, e.instance);
            assert_eq!(crate::wire::value::parse_value(bytes).unwrap().0, e.value);
        }
        // The last entry cut short: nothing, not the first two.
        let cut = Packet::new_checked(&b[..b.len() - 1]).unwrap();
        assert!(cut.entry_bytes().is_err());
    }
}
