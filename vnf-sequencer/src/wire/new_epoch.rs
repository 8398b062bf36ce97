//! NewEpoch: a new sequencer announces itself and asks every member for
//! its state.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | new epoch |
//! | 4 | 4 | reserved |
//! | 8 | 8 | the new sequencer's id |
//!
//! A member that sees an epoch higher than its own stops accepting frames
//! of older epochs (it fences the old sequencer) and answers with an
//! [`super::report`]; it answers again each time the announcement is
//! repeated, until the new epoch's first frame arrives.

use super::{Field, MsgError, check_len, check_room, get_u32, get_u64};
use crate::ProcessId;

/// Length of the message.
pub const LEN: usize = 16;

mod field {
    use super::Field;
    pub const EPOCH: Field = 0..4;
    pub const RESERVED: Field = 4..8;
    pub const SEQUENCER: Field = 8..16;
}

/// A view of an epoch announcement in a buffer.
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
        check_len("new epoch", LEN, buffer.as_ref().len())?;
        Ok(Self { buffer })
    }

    /// The new epoch.
    pub fn epoch(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::EPOCH)
    }

    /// The new sequencer.
    pub fn sequencer(&self) -> ProcessId {
        ProcessId(get_u64(self.buffer.as_ref(), field::SEQUENCER))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the epoch and zeroes the reserved bytes.
    pub fn set_epoch(&mut self, v: u32) {
        let b = self.buffer.as_mut();
        b[field::EPOCH].copy_from_slice(&v.to_be_bytes());
        b[field::RESERVED].fill(0);
    }

    /// Sets the sequencer's id.
    pub fn set_sequencer(&mut self, v: ProcessId) {
        self.buffer.as_mut()[field::SEQUENCER].copy_from_slice(&v.0.to_be_bytes());
    }
}

/// An epoch announcement, as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The new epoch.
    pub epoch: u32,
    /// The new sequencer.
    pub sequencer: ProcessId,
}

impl Repr {
    /// Reads a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Self {
        Self {
            epoch: p.epoch(),
            sequencer: p.sequencer(),
        }
    }

    /// Writes the message at the front of the packet's buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<(), MsgError> {
        check_room("new epoch", LEN, p.buffer.as_ref().len())?;
        p.set_epoch(self.epoch);
        p.set_sequencer(self.sequencer);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_short() {
        let r = Repr {
            epoch: 9,
            sequencer: ProcessId(0xabc),
        };
        let mut b = [0xffu8; LEN];
        r.emit(&mut Packet::new_unchecked(&mut b[..])).unwrap();
        assert_eq!(b, [0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0xbc]);
        assert_eq!(Repr::parse(&Packet::new_checked(&b[..]).unwrap()), r);
        assert!(Packet::new_checked(&b[..LEN - 1]).is_err());
    }
}
