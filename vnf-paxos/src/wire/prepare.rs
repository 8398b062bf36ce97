//! Prepare (phase 1A): a coordinator asks the acceptors to promise a ballot.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | ballot |
//! | 8 | 8 | first instance asked about: the coordinator knows every instance below it decided |

use super::{Field, MsgError, check_len, check_room, get_u64};
use crate::{Ballot, Instance};

/// Length of the message.
pub const LEN: usize = 16;

mod field {
    use super::Field;
    pub const BALLOT: Field = 0..8;
    pub const FROM: Field = 8..16;
}

/// A view of a prepare in a buffer.
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
        check_len("prepare", LEN, buffer.as_ref().len())?;
        Ok(Self { buffer })
    }

    /// The ballot.
    pub fn ballot(&self) -> Ballot {
        Ballot::from_u64(get_u64(self.buffer.as_ref(), field::BALLOT))
    }

    /// The first instance asked about.
    pub fn from(&self) -> Instance {
        get_u64(self.buffer.as_ref(), field::FROM)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the ballot.
    pub fn set_ballot(&mut self, b: Ballot) {
        self.buffer.as_mut()[field::BALLOT].copy_from_slice(&b.to_u64().to_be_bytes());
    }

    /// Sets the first instance asked about.
    pub fn set_from(&mut self, i: Instance) {
        self.buffer.as_mut()[field::FROM].copy_from_slice(&i.to_be_bytes());
    }
}

/// A prepare, as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The ballot to promise.
    pub ballot: Ballot,
    /// Accepted values are reported from this instance on.
    pub from: Instance,
}

impl Repr {
    /// Reads a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Self {
        Self {
            ballot: p.ballot(),
            from: p.from(),
        }
    }

    /// Writes the message at the front of the packet's buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<(), MsgError> {
        check_room("prepare", LEN, p.buffer.as_ref().len())?;
        p.set_ballot(self.ballot);
        p.set_from(self.from);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeId;

    static BYTES: [u8; 16] = [0, 0, 0, 3, 0, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0x10, 0];

    #[test]
    fn round_trip() {
        let r = Repr::parse(&Packet::new_checked(&BYTES[..]).unwrap());
        assert_eq!(
            r.ballot,
            Ballot {
                round: 3,
                node: NodeId(2),
                incarnation: 1
            }
        );
        assert_eq!(r.from, 0x1000);
        let mut b = [0xffu8; 16];
        r.emit(&mut Packet::new_unchecked(&mut b[..])).unwrap();
        assert_eq!(b, BYTES);
        assert!(Packet::new_checked(&BYTES[..15]).is_err());
    }
}
