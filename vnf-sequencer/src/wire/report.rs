//! EpochReport: what a member tells a new sequencer about itself.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | the new epoch this answers |
//! | 4 | 2 | held bitmap length in bytes (at most 8,192) |
//! | 6 | 2 | reserved |
//! | 8 | 8 | member |
//! | 16 | 8 | next: every global sequence number below it is delivered, in order |
//! | 24 | 8 | sender stable-through: every own message up to this sender sequence number is delivered |
//! | 32 | 8 | sender stable bitmap: bit i (least significant first) set when own message stable-through + 1 + i is delivered |
//! | 40 | n | held bitmap: bit i (most significant bit of byte i / 8 first) set when the member has delivered global sequence number next + i (reliable messages, delivered on arrival; what it holds undelivered is left out: it may be stale) |
//!
//! The sequencer takes the old epoch's end from the held bitmaps, its
//! deduplication state from the stable fields, and what to fetch from
//! `next` (see the crate documentation on epochs).

use super::{Field, MsgError, check_len, check_room, get_u16, get_u32, get_u64, len16};
use crate::ProcessId;

/// Length of the fixed part, before the held bitmap.
pub const HEADER_LEN: usize = 40;
/// The longest held bitmap: 65,536 sequence numbers.
pub const MAX_HELD: usize = 8192;

mod field {
    use super::Field;
    pub const EPOCH: Field = 0..4;
    pub const HELD_LEN: Field = 4..6;
    pub const RESERVED: Field = 6..8;
    pub const MEMBER: Field = 8..16;
    pub const NEXT: Field = 16..24;
    pub const STABLE: Field = 24..32;
    pub const STABLE_BITS: Field = 32..40;
    pub const HELD: usize = 40;
}

/// A view of a report in a buffer.
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

    /// Wraps `buffer` after checking the fixed part, the bitmap's bound and
    /// that the bitmap is there.
    pub fn new_checked(buffer: T) -> Result<Self, MsgError> {
        let p = Self::new_unchecked(buffer);
        let got = p.buffer.as_ref().len();
        check_len("epoch report", HEADER_LEN, got)?;
        let n = usize::from(p.held_len());
        if n > MAX_HELD {
            return Err(MsgError::BadValue {
                field: "held bitmap length",
                value: n as u64,
            });
        }
        check_len("epoch report bitmap", HEADER_LEN + n, got)?;
        Ok(p)
    }

    /// The epoch answered.
    pub fn epoch(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::EPOCH)
    }

    /// Length of the held bitmap in bytes.
    pub fn held_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::HELD_LEN)
    }

    /// The member.
    pub fn member(&self) -> ProcessId {
        ProcessId(get_u64(self.buffer.as_ref(), field::MEMBER))
    }

    /// Its in-order delivery cursor.
    pub fn next(&self) -> u64 {
        get_u64(self.buffer.as_ref(), field::NEXT)
    }

    /// Its own messages delivered up to here, all of them.
    pub fn stable_through(&self) -> u64 {
        get_u64(self.buffer.as_ref(), field::STABLE)
    }

    /// Its own messages delivered beyond `stable_through`.
    pub fn stable_bits(&self) -> u64 {
        get_u64(self.buffer.as_ref(), field::STABLE_BITS)
    }
}

impl<'a> Packet<&'a [u8]> {
    /// The held bitmap, borrowed from the buffer.
    pub fn into_held(self) -> &'a [u8] {
        let n = usize::from(self.held_len());
        &self.buffer[field::HELD..field::HELD + n]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the epoch and zeroes the reserved bytes.
    pub fn set_epoch(&mut self, v: u32) {
        let b = self.buffer.as_mut();
        b[field::EPOCH].copy_from_slice(&v.to_be_bytes());
        b[field::RESERVED].fill(0);
    }

    /// Sets the bitmap length.
    pub fn set_held_len(&mut self, v: u16) {
        self.buffer.as_mut()[field::HELD_LEN].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the member.
    pub fn set_member(&mut self, v: ProcessId) {
        self.buffer.as_mut()[field::MEMBER].copy_from_slice(&v.0.to_be_bytes());
    }

    /// Sets the delivery cursor.
    pub fn set_next(&mut self, v: u64) {
        self.buffer.as_mut()[field::NEXT].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the stable-through field.
    pub fn set_stable_through(&mut self, v: u64) {
        self.buffer.as_mut()[field::STABLE].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the stable bitmap.
    pub fn set_stable_bits(&mut self, v: u64) {
        self.buffer.as_mut()[field::STABLE_BITS].copy_from_slice(&v.to_be_bytes());
    }

    /// The held bitmap, writable.
    pub fn held_mut(&mut self) -> &mut [u8] {
        let n = usize::from(self.held_len());
        &mut self.buffer.as_mut()[field::HELD..field::HELD + n]
    }
}

/// A report's fixed part, as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The epoch answered.
    pub epoch: u32,
    /// The member.
    pub member: ProcessId,
    /// Every global sequence number below this is delivered.
    pub next: u64,
    /// Own messages delivered through this sender sequence number.
    pub stable_through: u64,
    /// Own messages delivered beyond it (bit i: `stable_through + 1 + i`).
    pub stable_bits: u64,
}

impl Repr {
    /// Reads a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Self {
        Self {
            epoch: p.epoch(),
            member: p.member(),
            next: p.next(),
            stable_through: p.stable_through(),
            stable_bits: p.stable_bits(),
        }
    }

    /// Writes the fixed part and the length of a `held_len`-byte bitmap;
    /// the bitmap is then written through [`Packet::held_mut`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        p: &mut Packet<T>,
        held_len: usize,
    ) -> Result<(), MsgError> {
        if held_len > MAX_HELD {
            return Err(MsgError::BadValue {
                field: "held bitmap length",
                value: held_len as u64,
            });
        }
        let n = len16("held bitmap", held_len)?;
        check_room(
            "epoch report",
            HEADER_LEN + held_len,
            p.buffer.as_ref().len(),
        )?;
        p.set_epoch(self.epoch);
        p.set_held_len(n);
        p.set_member(self.member);
        p.set_next(self.next);
        p.set_stable_through(self.stable_through);
        p.set_stable_bits(self.stable_bits);
        Ok(())
    }
}

/// Whether bit `i` of a held bitmap is set (false past its end).
pub fn held_bit(held: &[u8], i: u64) -> bool {
    usize::try_from(i / 8)
        .ok()
        .and_then(|byte| held.get(byte))
        .is_some_and(|b| b & (0x80 >> (i % 8)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_bitmap_and_bounds() {
        let r = Repr {
            epoch: 4,
            member: ProcessId(3),
            next: 10,
            stable_through: 7,
            stable_bits: 0b101,
        };
        let mut b = [0xffu8; 42];
        let mut p = Packet::new_unchecked(&mut b[..]);
        r.emit(&mut p, 2).unwrap();
        p.held_mut().copy_from_slice(&[0b1000_0001, 0]);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Repr::parse(&p), r);
        let held = p.into_held();
        assert!(held_bit(held, 0) && held_bit(held, 7) && !held_bit(held, 1));
        assert!(!held_bit(held, 100));
        assert!(Packet::new_checked(&b[..41]).is_err());
        b[4..6].copy_from_slice(&9000u16.to_be_bytes());
        assert!(Packet::new_checked(&b[..]).is_err());
    }
}
