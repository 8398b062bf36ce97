//! Heartbeat: the leader says it leads, how far the log is decided, and
//! which acceptor identity holds each slot.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | the leader's ballot |
//! | 8 | 8 | commit point: every instance below it is decided and known to the leader |
//! | 16 | 1 | acceptor count *n* |
//! | 17 | 7 | reserved |
//! | 24 | 4 × *n* | incarnation of the acceptor in each slot, slot order |
//!
//! Sent to coordinators (which hold their elections back while it comes),
//! learners (which fetch what they miss below the commit point) and
//! acceptors (which may trim their logs below it).

use super::{Field, MsgError, check_len, check_room, get_u32, get_u64};
use crate::{Ballot, Instance};

/// Length of the fixed part.
pub const HEADER_LEN: usize = 24;
/// The most acceptors a heartbeat describes.
pub const MAX_ACCEPTORS: usize = u8::MAX as usize;

mod field {
    use super::Field;
    pub const BALLOT: Field = 0..8;
    pub const COMMITTED: Field = 8..16;
    pub const COUNT: usize = 16;
    pub const RESERVED: Field = 17..24;
}

/// Bytes a heartbeat describing `n` acceptors takes.
pub const fn buffer_len(n: usize) -> usize {
    HEADER_LEN + 4 * n
}

/// A view of a heartbeat in a buffer.
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
    /// incarnation.
    pub fn new_checked(buffer: T) -> Result<Self, MsgError> {
        let b = buffer.as_ref();
        check_len("heartbeat", HEADER_LEN, b.len())?;
        check_len(
            "heartbeat acceptors",
            buffer_len(usize::from(b[field::COUNT])),
            b.len(),
        )?;
        Ok(Self { buffer })
    }

    /// The leader's ballot.
    pub fn ballot(&self) -> Ballot {
        Ballot::from_u64(get_u64(self.buffer.as_ref(), field::BALLOT))
    }

    /// The commit point.
    pub fn committed(&self) -> Instance {
        get_u64(self.buffer.as_ref(), field::COMMITTED)
    }

    /// The acceptor count.
    pub fn count(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::COUNT])
    }

    /// The incarnation in slot `slot` (`slot < count`).
    pub fn incarnation(&self, slot: usize) -> u32 {
        let at = HEADER_LEN + 4 * slot;
        get_u32(self.buffer.as_ref(), at..at + 4)
    }
}

/// A heartbeat, as values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The leader's ballot.
    pub ballot: Ballot,
    /// Every instance below is decided.
    pub committed: Instance,
    /// The incarnation in each acceptor slot.
    pub incarnations: Vec<u32>,
}

impl Repr {
    /// Reads a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Self {
        Self {
            ballot: p.ballot(),
            committed: p.committed(),
            incarnations: (0..p.count()).map(|s| p.incarnation(s)).collect(),
        }
    }

    /// Bytes the message takes.
    pub fn buffer_len(&self) -> usize {
        buffer_len(self.incarnations.len())
    }

    /// Writes the message at the front of the packet's buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<(), MsgError> {
        let n = self.incarnations.len();
        let count = u8::try_from(n).map_err(|_| MsgError::TooMany {
            what: "acceptors in a heartbeat",
        })?;
        let b = p.buffer.as_mut();
        check_room("heartbeat", buffer_len(n), b.len())?;
        b[field::BALLOT].copy_from_slice(&self.ballot.to_u64().to_be_bytes());
        b[field::COMMITTED].copy_from_slice(&self.committed.to_be_bytes());
        b[field::COUNT] = count;
        b[field::RESERVED].fill(0);
        for (s, inc) in self.incarnations.iter().enumerate() {
            let at = HEADER_LEN + 4 * s;
            b[at..at + 4].copy_from_slice(&inc.to_be_bytes());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let r = Repr {
            ballot: Ballot::from_u64(0x0000_0001_0002_0003),
            committed: 12,
            incarnations: vec![1, 2, 0x0102_0304],
        };
        let mut b = [0xffu8; 36];
        r.emit(&mut Packet::new_unchecked(&mut b[..])).unwrap();
        assert_eq!(b[16], 3);
        assert_eq!(&b[32..36], &[1, 2, 3, 4]);
        assert_eq!(Repr::parse(&Packet::new_checked(&b[..]).unwrap()), r);
        assert!(Packet::new_checked(&b[..35]).is_err());
        assert!(r.emit(&mut Packet::new_unchecked(&mut b[..35])).is_err());
    }
}
