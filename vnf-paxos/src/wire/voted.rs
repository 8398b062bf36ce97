//! Voted (phase 2B without values): a durable acceptor's vote to the
//! coordinators, naming the instances it voted for in a ballot.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | ballot |
//! | 8 | 2 | acceptor slot |
//! | 10 | 2 | reserved |
//! | 12 | 4 | acceptor incarnation |
//! | 16 | 2 | instance count |
//! | 18 | 6 | reserved |
//! | 24 | 8 each | instances |
//!
//! The fixed part is [`super::accepted`]'s. An acceptor with a write-ahead
//! log votes only to the coordinators, and the leader counts votes in its
//! own ballot against the values it proposed, which it holds: the values
//! would cross the wire and be checked there for nothing (three copies of
//! a full instance per decision). A vote without its value counts only
//! where its ballot's value is known (see the crate docs, Phase 2).

use super::{Field, MsgError, check_len, check_room, get_acceptor, get_u16, get_u64};
use crate::{AcceptorId, Ballot, Instance};

/// Length of the fixed part.
pub const HEADER_LEN: usize = super::accepted::HEADER_LEN;
/// Bytes each instance takes.
pub const INSTANCE_LEN: usize = 8;

mod field {
    use super::Field;
    pub const BALLOT: Field = 0..8;
    pub const ACCEPTOR: usize = 8;
    pub const COUNT: Field = 16..18;
}

/// A view of a voted in a buffer.
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

    /// Wraps `buffer` after checking that it holds the fixed part and every
    /// instance the count announces.
    pub fn new_checked(buffer: T) -> Result<Self, MsgError> {
        let b = buffer.as_ref();
        check_len("voted", HEADER_LEN, b.len())?;
        let count = usize::from(get_u16(b, field::COUNT));
        check_len("voted", HEADER_LEN + count * INSTANCE_LEN, b.len())?;
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

    /// The instance count.
    pub fn count(&self) -> usize {
        usize::from(get_u16(self.buffer.as_ref(), field::COUNT))
    }

    /// The instances voted for, in place.
    pub fn instances(&self) -> impl Iterator<Item = Instance> + '_ {
        let b = self.buffer.as_ref();
        let end = (HEADER_LEN + self.count() * INSTANCE_LEN).min(b.len());
        b[HEADER_LEN.min(end)..end]
            .chunks_exact(INSTANCE_LEN)
            .map(|c| get_u64(c, 0..INSTANCE_LEN))
    }
}

/// A voted, as values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The ballot voted in.
    pub ballot: Ballot,
    /// The voter.
    pub acceptor: AcceptorId,
    /// The instances voted for.
    pub instances: Vec<Instance>,
}

impl Repr {
    /// Reads a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Self {
        Self {
            ballot: p.ballot(),
            acceptor: p.acceptor(),
            instances: p.instances().collect(),
        }
    }

    /// Bytes the message takes.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.instances.len() * INSTANCE_LEN
    }

    /// Writes the message at the front of the packet's buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<(), MsgError> {
        let count =
            u16::try_from(self.instances.len()).map_err(|_| MsgError::TooMany { what: "votes" })?;
        let b = p.buffer.as_mut();
        check_room("voted", self.buffer_len(), b.len())?;
        emit_header(b, self.ballot, self.acceptor, count)?;
        for (i, c) in self
            .instances
            .iter()
            .zip(b[HEADER_LEN..self.buffer_len()].chunks_exact_mut(INSTANCE_LEN))
        {
            c.copy_from_slice(&i.to_be_bytes());
        }
        Ok(())
    }
}

/// Writes the fixed part of a voted at the front of `b`, for a sender that
/// appends the instances itself (the acceptor copies them from the
/// accept): the fixed part is an accepted's.
pub fn emit_header(
    b: &mut [u8],
    ballot: Ballot,
    acceptor: AcceptorId,
    count: u16,
) -> Result<(), MsgError> {
    super::accepted::emit_header(b, ballot, acceptor, count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeId;

    #[test]
    fn round_trip_and_a_count_past_the_bytes_is_refused() {
        let r = Repr {
            ballot: Ballot {
                round: 3,
                node: NodeId(1),
                incarnation: 2,
            },
            acceptor: AcceptorId {
                slot: 2,
                incarnation: 9,
            },
            instances: vec![7, 8, 1 << 40],
        };
        let mut b = [0xffu8; 64];
        r.emit(&mut Packet::new_unchecked(&mut b[..])).unwrap();
        let n = r.buffer_len();
        assert_eq!(n, 48);
        assert_eq!(&b[16..24], &[0, 3, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[24..32], &7u64.to_be_bytes());
        let p = Packet::new_checked(&b[..n]).unwrap();
        assert_eq!(Repr::parse(&p), r);
        assert!(
            Packet::new_checked(&b[..n - 1]).is_err(),
            "an instance cut short"
        );
        assert!(Packet::new_checked(&b[..HEADER_LEN - 1]).is_err());
        assert!(r.emit(&mut Packet::new_unchecked(&mut b[..n - 1])).is_err());
    }
}
