//! Data: a member asks the sequencer to stamp and broadcast a message.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | sender (member id) |
//! | 8 | 8 | sender sequence number, from 1, +1 per message of this sender |
//! | 16 | 8 | causal barrier: the highest global sequence number the sender had delivered when it sent this |
//! | 24 | 1 | mode: 0 reliable, 1 atomic, 2 FIFO-atomic, 3 causal-atomic |
//! | 25 | 1 | reserved |
//! | 26 | 2 | payload length |
//! | 28 | 4 | reserved |
//! | 32 | n | payload |
//!
//! The sender retransmits the same bytes until it has delivered the
//! message itself; (sender, sender sequence number) is what the sequencer
//! deduplicates on.

use super::{Field, MsgError, check_len, check_room, get_u16, get_u64, len16};
use crate::{Mode, ProcessId};

/// Length of the fixed part, before the payload.
pub const HEADER_LEN: usize = 32;

mod field {
    use super::Field;
    pub const SENDER: Field = 0..8;
    pub const SENDER_SEQ: Field = 8..16;
    pub const BARRIER: Field = 16..24;
    pub const MODE: usize = 24;
    pub const RESERVED1: usize = 25;
    pub const LEN: Field = 26..28;
    pub const RESERVED2: Field = 28..32;
    pub const PAYLOAD: usize = 32;
}

/// A view of a data message in a buffer.
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

    /// Wraps `buffer` after checking that it holds the fixed part and the
    /// payload its length announces.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, MsgError> {
        let p = Self::new_unchecked(buffer);
        let got = p.buffer.as_ref().len();
        check_len("data", HEADER_LEN, got)?;
        check_len("data payload", p.total_len(), got)?;
        Ok(p)
    }

    #[inline]
    fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.payload_len())
    }

    /// The sender.
    #[inline]
    pub fn sender(&self) -> ProcessId {
        ProcessId(get_u64(self.buffer.as_ref(), field::SENDER))
    }

    /// The sender sequence number.
    #[inline]
    pub fn sender_seq(&self) -> u64 {
        get_u64(self.buffer.as_ref(), field::SENDER_SEQ)
    }

    /// The causal barrier.
    #[inline]
    pub fn barrier(&self) -> u64 {
        get_u64(self.buffer.as_ref(), field::BARRIER)
    }

    /// The mode byte as sent.
    #[inline]
    pub fn mode_raw(&self) -> u8 {
        self.buffer.as_ref()[field::MODE]
    }

    /// The payload length.
    #[inline]
    pub fn payload_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LEN)
    }

    /// The payload.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..self.total_len()]
    }
}

impl<'a> Packet<&'a [u8]> {
    /// The payload, borrowed from the buffer rather than the view.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        let end = self.total_len();
        &self.buffer[field::PAYLOAD..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the sender.
    pub fn set_sender(&mut self, v: ProcessId) {
        self.buffer.as_mut()[field::SENDER].copy_from_slice(&v.0.to_be_bytes());
    }

    /// Sets the sender sequence number.
    pub fn set_sender_seq(&mut self, v: u64) {
        self.buffer.as_mut()[field::SENDER_SEQ].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the causal barrier.
    pub fn set_barrier(&mut self, v: u64) {
        self.buffer.as_mut()[field::BARRIER].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the mode and zeroes the reserved bytes.
    pub fn set_mode(&mut self, m: Mode) {
        let b = self.buffer.as_mut();
        b[field::MODE] = m.into();
        b[field::RESERVED1] = 0;
        b[field::RESERVED2].fill(0);
    }

    /// Sets the payload length.
    pub fn set_payload_len(&mut self, v: u16) {
        self.buffer.as_mut()[field::LEN].copy_from_slice(&v.to_be_bytes());
    }

    /// The payload (up to the payload length), writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.total_len();
        &mut self.buffer.as_mut()[field::PAYLOAD..end]
    }
}

/// A data message's fixed part, as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The sender.
    pub sender: ProcessId,
    /// Its sequence number for this message.
    pub sender_seq: u64,
    /// Highest global sequence number the sender had delivered.
    pub barrier: u64,
    /// How the message is to be delivered.
    pub mode: Mode,
}

impl Repr {
    /// Reads a checked packet.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self, MsgError> {
        Ok(Self {
            sender: p.sender(),
            sender_seq: p.sender_seq(),
            barrier: p.barrier(),
            mode: Mode::try_from(p.mode_raw())?,
        })
    }

    /// Writes the fixed part and the length of a `payload_len`-byte payload
    /// at the front of the packet's buffer; the payload is then written
    /// through [`Packet::payload_mut`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        p: &mut Packet<T>,
        payload_len: usize,
    ) -> Result<(), MsgError> {
        let len = len16("data payload", payload_len)?;
        check_room("data", HEADER_LEN + payload_len, p.buffer.as_ref().len())?;
        p.set_sender(self.sender);
        p.set_sender_seq(self.sender_seq);
        p.set_barrier(self.barrier);
        p.set_mode(self.mode);
        p.set_payload_len(len);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static BYTES: [u8; 35] = [
        0, 0, 0, 0, 0, 0, 0, 5, // sender 5
        0, 0, 0, 0, 0, 0, 0, 2, // its message 2
        0, 0, 0, 0, 0, 0, 0, 100, // had delivered up to 100
        3, 0, 0, 3, 0, 0, 0, 0, // causal, 3 bytes
        b'a', b'b', b'c',
    ];

    #[test]
    fn deconstruct_and_emit() {
        let p = Packet::new_checked(&BYTES[..]).unwrap();
        let r = Repr::parse(&p).unwrap();
        assert_eq!(
            r,
            Repr {
                sender: ProcessId(5),
                sender_seq: 2,
                barrier: 100,
                mode: Mode::Causal
            }
        );
        assert_eq!(p.into_payload(), b"abc");
        let mut b = [0xffu8; 35];
        let mut q = Packet::new_unchecked(&mut b[..]);
        r.emit(&mut q, 3).unwrap();
        q.payload_mut().copy_from_slice(b"abc");
        assert_eq!(b, BYTES);
    }

    #[test]
    fn malformed_is_an_error() {
        assert!(Packet::new_checked(&BYTES[..34]).is_err(), "payload cut");
        assert!(Packet::new_checked(&BYTES[..31]).is_err());
        let mut b = BYTES;
        b[24] = 4;
        assert!(Repr::parse(&Packet::new_checked(&b[..]).unwrap()).is_err());
    }
}
