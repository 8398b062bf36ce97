//! Join: an acceptor that is not (or no longer) a voting member asks the
//! coordinators to admit it; sent until a leader does.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 2 | acceptor slot |
//! | 2 | 2 | reserved |
//! | 4 | 4 | acceptor incarnation (new after an in-memory restart) |

use super::{MsgError, check_len, check_room, get_acceptor, set_acceptor};
use crate::AcceptorId;

/// Length of the message.
pub const LEN: usize = 8;

/// A view of a join in a buffer.
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
        check_len("join", LEN, buffer.as_ref().len())?;
        Ok(Self { buffer })
    }

    /// The acceptor.
    pub fn acceptor(&self) -> AcceptorId {
        get_acceptor(self.buffer.as_ref(), 0)
    }
}

/// A join, as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The acceptor asking.
    pub acceptor: AcceptorId,
}

impl Repr {
    /// Reads a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Self {
        Self {
            acceptor: p.acceptor(),
        }
    }

    /// Writes the message at the front of the packet's buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<(), MsgError> {
        let b = p.buffer.as_mut();
        check_room("join", LEN, b.len())?;
        set_acceptor(b, 0, self.acceptor);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let bytes = [0, 2, 0, 0, 0, 0, 1, 0];
        let r = Repr::parse(&Packet::new_checked(&bytes[..]).unwrap());
        assert_eq!(
            r.acceptor,
            AcceptorId {
                slot: 2,
                incarnation: 256
            }
        );
        let mut b = [0xffu8; 8];
        r.emit(&mut Packet::new_unchecked(&mut b[..])).unwrap();
        assert_eq!(b, bytes);
        assert!(Packet::new_checked(&bytes[..7]).is_err());
    }
}
