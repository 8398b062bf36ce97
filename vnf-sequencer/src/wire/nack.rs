//! Nack: a request for stamped messages by number.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | epoch of the requester |
//! | 4 | 4 | count of messages asked for |
//! | 8 | 8 | requester (member id, or the recovering sequencer's id) |
//! | 16 | 8 | first sequence number asked for |
//!
//! A member sends it to the sequencer (or to a peer, for messages the
//! sequencer no longer holds); a recovering sequencer sends it to members
//! to collect the old epoch's tail. The answer is [`super::batch`] frames
//! of type Repair (or Batch from the sequencer) holding what the answerer
//! has of the range, and nothing for what it lacks.

use super::{Field, MsgError, check_len, check_room, get_u32, get_u64};
use crate::ProcessId;

/// Length of the message.
pub const LEN: usize = 24;

mod field {
    use super::Field;
    pub const EPOCH: Field = 0..4;
    pub const COUNT: Field = 4..8;
    pub const FROM: Field = 8..16;
    pub const FIRST: Field = 16..24;
}

/// A view of a NACK in a buffer.
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

    /// The requester's epoch.
    pub fn epoch(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::EPOCH)
    }

    /// How many messages are asked for.
    pub fn count(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::COUNT)
    }

    /// The requester.
    pub fn from(&self) -> ProcessId {
        ProcessId(get_u64(self.buffer.as_ref(), field::FROM))
    }

    /// The first sequence number asked for.
    pub fn first(&self) -> u64 {
        get_u64(self.buffer.as_ref(), field::FIRST)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the epoch.
    pub fn set_epoch(&mut self, v: u32) {
        self.buffer.as_mut()[field::EPOCH].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the count.
    pub fn set_count(&mut self, v: u32) {
        self.buffer.as_mut()[field::COUNT].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the requester.
    pub fn set_from(&mut self, v: ProcessId) {
        self.buffer.as_mut()[field::FROM].copy_from_slice(&v.0.to_be_bytes());
    }

    /// Sets the first sequence number.
    pub fn set_first(&mut self, v: u64) {
        self.buffer.as_mut()[field::FIRST].copy_from_slice(&v.to_be_bytes());
    }
}

/// A NACK, as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The requester's epoch: a sequencer ignores NACKs from other epochs.
    pub epoch: u32,
    /// Who asks (the answer goes there).
    pub from: ProcessId,
    /// First sequence number asked for.
    pub first: u64,
    /// How many, from `first`.
    pub count: u32,
}

impl Repr {
    /// Reads a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Self {
        Self {
            epoch: p.epoch(),
            from: p.from(),
            first: p.first(),
            count: p.count(),
        }
    }

    /// Writes the message at the front of the packet's buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<(), MsgError> {
        check_room("nack", LEN, p.buffer.as_ref().len())?;
        p.set_epoch(self.epoch);
        p.set_count(self.count);
        p.set_from(self.from);
        p.set_first(self.first);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static BYTES: [u8; 24] = [
        0, 0, 0, 3, 0, 0, 0, 9, // epoch 3, 9 messages
        0, 0, 0, 0, 0, 0, 0, 7, // from member 7
        0, 0, 0, 0, 0, 0, 1, 0, // from seq 256
    ];

    #[test]
    fn deconstruct_and_emit() {
        let r = Repr::parse(&Packet::new_checked(&BYTES[..]).unwrap());
        assert_eq!(
            r,
            Repr {
                epoch: 3,
                from: ProcessId(7),
                first: 256,
                count: 9
            }
        );
        let mut b = [0xffu8; 24];
        r.emit(&mut Packet::new_unchecked(&mut b[..])).unwrap();
        assert_eq!(b, BYTES);
        assert!(Packet::new_checked(&BYTES[..23]).is_err());
    }
}
