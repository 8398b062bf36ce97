//! Nack: an acceptor refuses a prepare or an accept because it promised a
//! higher ballot; the coordinator learns that ballot and steps down.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | ballot refused |
//! | 8 | 8 | ballot promised |
//! | 16 | 2 | acceptor slot |
//! | 18 | 2 | reserved |
//! | 20 | 4 | acceptor incarnation |

use super::{Field, MsgError, check_len, check_room, get_acceptor, get_u64, set_acceptor};
use crate::{AcceptorId, Ballot};

/// Length of the message.
pub const LEN: usize = 24;

mod field {
    use super::Field;
    pub const REFUSED: Field = 0..8;
    pub const PROMISED: Field = 8..16;
    pub const ACCEPTOR: usize = 16;
}

/// A view of a nack in a buffer.
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
        check_len("nack", LEN, buffer.as_ref().len())?;
        Ok(Self { buffer })
    }

    /// The ballot refused.
    pub fn refused(&self) -> Ballot {
        Ballot::from_u64(get_u64(self.buffer.as_ref(), field::REFUSED))
    }

    /// The ballot promised.
    pub fn promised(&self) -> Ballot {
        Ballot::from_u64(get_u64(self.buffer.as_ref(), field::PROMISED))
    }

    /// The acceptor.
    pub fn acceptor(&self) -> AcceptorId {
        get_acceptor(self.buffer.as_ref(), field::ACCEPTOR)
    }
}

/// A nack, as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The ballot refused.
    pub refused: Ballot,
    /// The higher ballot the acceptor promised.
    pub promised: Ballot,
    /// Who refused.
    pub acceptor: AcceptorId,
}

impl Repr {
    /// Reads a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Self {
        Self {
            refused: p.refused(),
            promised: p.promised(),
            acceptor: p.acceptor(),
        }
    }

    /// Writes the message at the front of the packet's buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<(), MsgError> {
        let b = p.buffer.as_mut();
        check_room("nack", LEN, b.len())?;
        b[field::REFUSED].copy_from_slice(&self.refused.to_u64().to_be_bytes());
        b[field::PROMISED].copy_from_slice(&self.promised.to_u64().to_be_bytes());
        set_acceptor(b, field::ACCEPTOR, self.acceptor);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let bytes = [
            0, 0, 0, 1, 0, 1, 0, 0, // refused (1, 1, 0)
            0, 0, 0, 2, 0, 2, 0, 0, // promised (2, 2, 0)
            0, 1, 0, 0, 0, 0, 0, 4, // acceptor slot 1 incarnation 4
        ];
        let r = Repr::parse(&Packet::new_checked(&bytes[..]).unwrap());
        assert_eq!(
            r.acceptor,
            AcceptorId {
                slot: 1,
                incarnation: 4
            }
        );
        assert_eq!(r.promised.round, 2);
        let mut b = [0xffu8; 24];
        r.emit(&mut Packet::new_unchecked(&mut b[..])).unwrap();
        assert_eq!(b, bytes);
        assert!(Packet::new_checked(&bytes[..23]).is_err());
    }
}
