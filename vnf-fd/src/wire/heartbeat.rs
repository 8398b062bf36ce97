//! Heartbeat: a process says it is alive.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | process id |
//! | 8 | 8 | sequence number, +1 per heartbeat |
//! | 16 | 8 | sender's timestamp, nanoseconds on the sender's clock |
//!
//! The detector times a heartbeat by its arrival; sequence number and
//! timestamp are for the shell (loss and one-way delay statistics).

use super::{Field, MsgError, check_len, check_room, get_u64};
use crate::ProcessId;

/// Length of the message.
pub const LEN: usize = 24;

mod field {
    use super::Field;
    pub const PROCESS: Field = 0..8;
    pub const SEQ: Field = 8..16;
    pub const SENT: Field = 16..24;
}

/// A view of a heartbeat in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking it; accessors may then panic on a
    /// short buffer. Prefer [`Packet::new_checked`] for received bytes.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer` after [`Packet::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, MsgError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the buffer holds the message.
    #[inline]
    pub fn check_len(&self) -> Result<(), MsgError> {
        Ok(check_len("heartbeat", LEN, self.buffer.as_ref().len())?)
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The process id.
    #[inline]
    pub fn process(&self) -> ProcessId {
        ProcessId(get_u64(self.buffer.as_ref(), field::PROCESS))
    }

    /// The sequence number.
    #[inline]
    pub fn seq(&self) -> u64 {
        get_u64(self.buffer.as_ref(), field::SEQ)
    }

    /// The sender's timestamp.
    #[inline]
    pub fn sent_ns(&self) -> u64 {
        get_u64(self.buffer.as_ref(), field::SENT)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the process id.
    #[inline]
    pub fn set_process(&mut self, id: ProcessId) {
        self.buffer.as_mut()[field::PROCESS].copy_from_slice(&id.0.to_be_bytes());
    }

    /// Sets the sequence number.
    #[inline]
    pub fn set_seq(&mut self, seq: u64) {
        self.buffer.as_mut()[field::SEQ].copy_from_slice(&seq.to_be_bytes());
    }

    /// Sets the sender's timestamp.
    #[inline]
    pub fn set_sent_ns(&mut self, ns: u64) {
        self.buffer.as_mut()[field::SENT].copy_from_slice(&ns.to_be_bytes());
    }
}

/// A heartbeat, as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The process.
    pub process: ProcessId,
    /// Its sequence number.
    pub seq: u64,
    /// When it was sent, on the sender's clock.
    pub sent_ns: u64,
}

impl Repr {
    /// Reads a checked packet.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Self {
        Self {
            process: p.process(),
            seq: p.seq(),
            sent_ns: p.sent_ns(),
        }
    }

    /// Bytes the message takes.
    pub const fn buffer_len(&self) -> usize {
        LEN
    }

    /// Writes the message at the front of the packet's buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<(), MsgError> {
        check_room("heartbeat", LEN, p.buffer.as_ref().len())?;
        p.set_process(self.process);
        p.set_seq(self.seq);
        p.set_sent_ns(self.sent_ns);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static BYTES: [u8; 24] = [
        0, 0, 0, 0, 0, 0, 0x01, 0x02, // process 0x102
        0, 0, 0, 0, 0, 0, 0, 9, // seq 9
        0, 0, 0, 0, 0x3b, 0x9a, 0xca, 0x00, // 1 s
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&BYTES[..]).unwrap();
        assert_eq!(p.process(), ProcessId(0x102));
        assert_eq!(p.seq(), 9);
        assert_eq!(p.sent_ns(), 1_000_000_000);
    }

    #[test]
    fn construct_and_emit() {
        let mut b = [0xffu8; 24];
        let repr = Repr::parse(&Packet::new_checked(&BYTES[..]).unwrap());
        repr.emit(&mut Packet::new_unchecked(&mut b[..])).unwrap();
        assert_eq!(b, BYTES);
    }

    #[test]
    fn short_is_an_error() {
        assert!(Packet::new_checked(&BYTES[..23]).is_err());
    }
}
