//! TooOld: the sequencer's answer to a NACK for messages it no longer
//! holds.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | epoch |
//! | 4 | 4 | reserved |
//! | 8 | 8 | oldest sequence number the sequencer still holds |
//! | 16 | 8 | first sequence number of the NACK answered |
//!
//! The member then asks its peers (whose delivery rings keep recent
//! messages), and failing that tells its application that it must catch
//! up by state transfer (see the crate documentation).

use super::{Field, MsgError, check_len, check_room, get_u32, get_u64};

/// Length of the message.
pub const LEN: usize = 24;

mod field {
    use super::Field;
    pub const EPOCH: Field = 0..4;
    pub const RESERVED: Field = 4..8;
    pub const OLDEST: Field = 8..16;
    pub const ASKED: Field = 16..24;
}

/// A view of a TooOld answer in a buffer.
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
        check_len("too old", LEN, buffer.as_ref().len())?;
        Ok(Self { buffer })
    }

    /// The sequencer's epoch.
    pub fn epoch(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::EPOCH)
    }

    /// The oldest sequence number it holds.
    pub fn oldest(&self) -> u64 {
        get_u64(self.buffer.as_ref(), field::OLDEST)
    }

    /// The first sequence number that was asked for.
    pub fn asked(&self) -> u64 {
        get_u64(self.buffer.as_ref(), field::ASKED)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the epoch and zeroes the reserved bytes.
    pub fn set_epoch(&mut self, v: u32) {
        let b = self.buffer.as_mut();
        b[field::EPOCH].copy_from_slice(&v.to_be_bytes());
        b[field::RESERVED].fill(0);
    }

    /// Sets the oldest sequence number held.
    pub fn set_oldest(&mut self, v: u64) {
        self.buffer.as_mut()[field::OLDEST].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the first sequence number asked for.
    pub fn set_asked(&mut self, v: u64) {
        self.buffer.as_mut()[field::ASKED].copy_from_slice(&v.to_be_bytes());
    }
}

/// A TooOld answer, as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The sequencer's epoch.
    pub epoch: u32,
    /// Oldest sequence number it holds.
    pub oldest: u64,
    /// First sequence number of the NACK answered.
    pub asked: u64,
}

impl Repr {
    /// Reads a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Self {
        Self {
            epoch: p.epoch(),
            oldest: p.oldest(),
            asked: p.asked(),
        }
    }

    /// Writes the message at the front of the packet's buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<(), MsgError> {
        check_room("too old", LEN, p.buffer.as_ref().len())?;
        p.set_epoch(self.epoch);
        p.set_oldest(self.oldest);
        p.set_asked(self.asked);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_short() {
        let r = Repr {
            epoch: 2,
            oldest: 1000,
            asked: 5,
        };
        let mut b = [0xffu8; LEN];
        r.emit(&mut Packet::new_unchecked(&mut b[..])).unwrap();
        assert_eq!(&b[4..8], &[0, 0, 0, 0]);
        assert_eq!(Repr::parse(&Packet::new_checked(&b[..]).unwrap()), r);
        assert!(Packet::new_checked(&b[..LEN - 1]).is_err());
    }
}
