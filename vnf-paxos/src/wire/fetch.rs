//! Fetch: a learner asks for decided instances it is missing (a gap in
//! its log, or instances behind the leader's commit point).
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | first instance wanted |
//! | 8 | 8 | end of the range wanted (exclusive) |
//!
//! Coordinators answer with [`super::decided`] messages for what they know
//! decided; acceptors re-send their votes ([`super::accepted`]).

use super::{Field, MsgError, check_len, check_room, get_u64};
use crate::Instance;

/// Length of the message.
pub const LEN: usize = 16;

mod field {
    use super::Field;
    pub const FROM: Field = 0..8;
    pub const TO: Field = 8..16;
}

/// A view of a fetch in a buffer.
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
        check_len("fetch", LEN, buffer.as_ref().len())?;
        Ok(Self { buffer })
    }

    /// The first instance wanted.
    pub fn from(&self) -> Instance {
        get_u64(self.buffer.as_ref(), field::FROM)
    }

    /// The end of the range wanted.
    pub fn to(&self) -> Instance {
        get_u64(self.buffer.as_ref(), field::TO)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the first instance wanted.
    pub fn set_from(&mut self, i: Instance) {
        self.buffer.as_mut()[field::FROM].copy_from_slice(&i.to_be_bytes());
    }

    /// Sets the end of the range wanted.
    pub fn set_to(&mut self, i: Instance) {
        self.buffer.as_mut()[field::TO].copy_from_slice(&i.to_be_bytes());
    }
}

/// A fetch, as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// First instance wanted.
    pub from: Instance,
    /// End of the range (exclusive).
    pub to: Instance,
}

impl Repr {
    /// Reads a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Self {
        Self {
            from: p.from(),
            to: p.to(),
        }
    }

    /// Writes the message at the front of the packet's buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<(), MsgError> {
        check_room("fetch", LEN, p.buffer.as_ref().len())?;
        p.set_from(self.from);
        p.set_to(self.to);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let bytes = [0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 1, 0];
        let r = Repr::parse(&Packet::new_checked(&bytes[..]).unwrap());
        assert_eq!(r, Repr { from: 5, to: 256 });
        let mut b = [0xffu8; 16];
        r.emit(&mut Packet::new_unchecked(&mut b[..])).unwrap();
        assert_eq!(b, bytes);
        assert!(Packet::new_checked(&bytes[..15]).is_err());
    }
}
