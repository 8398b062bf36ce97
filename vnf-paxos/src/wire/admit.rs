//! Admit: a leader admits a new acceptor identity into its slot.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | ballot the acceptor promises on admission |
//! | 8 | 8 | trim point: every instance below it is decided, and the acceptor must never vote on one |
//! | 16 | 2 | acceptor slot |
//! | 18 | 2 | reserved |
//! | 20 | 4 | acceptor incarnation |
//!
//! Sent only after the leader has drained its window (everything below the
//! trim point decided) and run phase 1 for the ballot on the old members
//! with nothing found at or above the trim point; see the crate docs.

use super::{Field, MsgError, check_len, check_room, get_acceptor, get_u64, set_acceptor};
use crate::{AcceptorId, Ballot, Instance};

/// Length of the message.
pub const LEN: usize = 24;

mod field {
    use super::Field;
    pub const BALLOT: Field = 0..8;
    pub const TRIM: Field = 8..16;
    pub const ACCEPTOR: usize = 16;
}

/// A view of an admit in a buffer.
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

    /// Wraps `buffer` after checking its length.
    pub fn new_checked(buffer: T) -> Result<Self, MsgError> {
        check_len("admit", LEN, buffer.as_ref().len())?;
        Ok(Self { buffer })
    }

    /// The ballot.
    pub fn ballot(&self) -> Ballot {
        Ballot::from_u64(get_u64(self.buffer.as_ref(), field::BALLOT))
    }

    /// The trim point.
    pub fn trim(&self) -> Instance {
        get_u64(self.buffer.as_ref(), field::TRIM)
    }

    /// The acceptor admitted.
    pub fn acceptor(&self) -> AcceptorId {
        get_acceptor(self.buffer.as_ref(), field::ACCEPTOR)
    }
}

/// An admit, as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The ballot.
    pub ballot: Ballot,
    /// Every instance below is decided.
    pub trim: Instance,
    /// The acceptor admitted.
    pub acceptor: AcceptorId,
}

impl Repr {
    /// Reads a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Self {
        Self {
            ballot: p.ballot(),
            trim: p.trim(),
            acceptor: p.acceptor(),
        }
    }

    /// Writes the message at the front of the packet's buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<(), MsgError> {
        let b = p.buffer.as_mut();
        check_room("admit", LEN, b.len())?;
        b[field::BALLOT].copy_from_slice(&self.ballot.to_u64().to_be_bytes());
        b[field::TRIM].copy_from_slice(&self.trim.to_be_bytes());
        set_acceptor(b, field::ACCEPTOR, self.acceptor);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let r = Repr {
            ballot: Ballot::from_u64(0x0000_0005_0001_0002),
            trim: 77,
            acceptor: AcceptorId {
                slot: 0,
                incarnation: 9,
            },
        };
        let mut b = [0xffu8; 24];
        r.emit(&mut Packet::new_unchecked(&mut b[..])).unwrap();
        assert_eq!(&b[0..8], &[0, 0, 0, 5, 0, 1, 0, 2]);
        assert_eq!(&b[16..24], &[0, 0, 0, 0, 0, 0, 0, 9]);
        assert_eq!(Repr::parse(&Packet::new_checked(&b[..]).unwrap()), r);
        assert!(Packet::new_checked(&b[..23]).is_err());
    }
}
