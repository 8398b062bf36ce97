//! Heartbeat: the sequencer's epoch and how far it has stamped, sent to
//! the group when it has been idle for an interval.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | epoch |
//! | 4 | 4 | reserved |
//! | 8 | 8 | next sequence number to stamp (every lower one is stamped) |
//! | 16 | 8 | epoch base: first sequence number this epoch decided |
//!
//! Without it a member that lost the last frame before a quiet period
//! would not know it missed anything (tail loss). The base tells a member
//! that has not yet seen this epoch's first frame where the new sequencer
//! took over (see the crate documentation on epochs).

use super::{Field, MsgError, check_len, check_room, get_u32, get_u64};

/// Length of the message.
pub const LEN: usize = 24;

mod field {
    use super::Field;
    pub const EPOCH: Field = 0..4;
    pub const RESERVED: Field = 4..8;
    pub const NEXT: Field = 8..16;
    pub const BASE: Field = 16..24;
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

    /// Wraps `buffer` after checking its length.
    pub fn new_checked(buffer: T) -> Result<Self, MsgError> {
        check_len("heartbeat", LEN, buffer.as_ref().len())?;
        Ok(Self { buffer })
    }

    /// The epoch.
    pub fn epoch(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::EPOCH)
    }

    /// The next sequence number to stamp.
    pub fn next(&self) -> u64 {
        get_u64(self.buffer.as_ref(), field::NEXT)
    }

    /// The epoch's base.
    pub fn base(&self) -> u64 {
        get_u64(self.buffer.as_ref(), field::BASE)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the epoch and zeroes the reserved bytes.
    pub fn set_epoch(&mut self, v: u32) {
        let b = self.buffer.as_mut();
        b[field::EPOCH].copy_from_slice(&v.to_be_bytes());
        b[field::RESERVED].fill(0);
    }

    /// Sets the next sequence number to stamp.
    pub fn set_next(&mut self, v: u64) {
        self.buffer.as_mut()[field::NEXT].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the epoch's base.
    pub fn set_base(&mut self, v: u64) {
        self.buffer.as_mut()[field::BASE].copy_from_slice(&v.to_be_bytes());
    }
}

/// A heartbeat, as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The sequencer's epoch.
    pub epoch: u32,
    /// Next sequence number to stamp.
    pub next: u64,
    /// First sequence number this epoch decided.
    pub base: u64,
}

impl Repr {
    /// Reads a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Self {
        Self {
            epoch: p.epoch(),
            next: p.next(),
            base: p.base(),
        }
    }

    /// Writes the message at the front of the packet's buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<(), MsgError> {
        check_room("heartbeat", LEN, p.buffer.as_ref().len())?;
        p.set_epoch(self.epoch);
        p.set_next(self.next);
        p.set_base(self.base);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static BYTES: [u8; 24] = [
        0, 0, 0, 1, 0, 0, 0, 0, // epoch 1
        0, 0, 0, 0, 0, 0, 0, 42, // next 42
        0, 0, 0, 0, 0, 0, 0, 1, // base 1
    ];

    #[test]
    fn deconstruct_and_emit() {
        let r = Repr::parse(&Packet::new_checked(&BYTES[..]).unwrap());
        assert_eq!(
            r,
            Repr {
                epoch: 1,
                next: 42,
                base: 1
            }
        );
        let mut b = [0xffu8; 24];
        r.emit(&mut Packet::new_unchecked(&mut b[..])).unwrap();
        assert_eq!(b, BYTES);
        assert!(Packet::new_checked(&BYTES[..10]).is_err());
    }
}
