//! Remove: stop monitoring a process.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | request id, echoed in the [`super::ack`] |
//! | 4 | 4 | reserved |
//! | 8 | 8 | process id |

use super::{Field, MsgError, check_len, check_room, get_u32, get_u64};
use crate::ProcessId;

/// Length of the message.
pub const LEN: usize = 16;

mod field {
    use super::Field;
    pub const REQUEST: Field = 0..4;
    pub const RESERVED: Field = 4..8;
    pub const PROCESS: Field = 8..16;
}

/// A view of a remove request in a buffer.
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
    pub fn new_checked(buffer: T) -> Result<Self, MsgError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the buffer holds the message.
    pub fn check_len(&self) -> Result<(), MsgError> {
        Ok(check_len("remove", LEN, self.buffer.as_ref().len())?)
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The request id.
    pub fn request_id(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::REQUEST)
    }

    /// The process id.
    pub fn process(&self) -> ProcessId {
        ProcessId(get_u64(self.buffer.as_ref(), field::PROCESS))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the request id.
    pub fn set_request_id(&mut self, id: u32) {
        self.buffer.as_mut()[field::REQUEST].copy_from_slice(&id.to_be_bytes());
    }

    /// Zeroes the reserved bytes.
    pub fn clear_reserved(&mut self) {
        self.buffer.as_mut()[field::RESERVED].fill(0);
    }

    /// Sets the process id.
    pub fn set_process(&mut self, id: ProcessId) {
        self.buffer.as_mut()[field::PROCESS].copy_from_slice(&id.0.to_be_bytes());
    }
}

/// A remove request, as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Echoed in the acknowledgement.
    pub request_id: u32,
    /// The process.
    pub process: ProcessId,
}

impl Repr {
    /// Reads a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Self {
        Self {
            request_id: p.request_id(),
            process: p.process(),
        }
    }

    /// Bytes the message takes.
    pub const fn buffer_len(&self) -> usize {
        LEN
    }

    /// Writes the message at the front of the packet's buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<(), MsgError> {
        check_room("remove", LEN, p.buffer.as_ref().len())?;
        p.set_request_id(self.request_id);
        p.clear_reserved();
        p.set_process(self.process);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static BYTES: [u8; 16] = [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];

    #[test]
    fn round_trip() {
        let p = Packet::new_checked(&BYTES[..]).unwrap();
        let r = Repr::parse(&p);
        assert_eq!(
            r,
            Repr {
                request_id: 256,
                process: ProcessId(5)
            }
        );
        let mut b = [0xffu8; 16];
        r.emit(&mut Packet::new_unchecked(&mut b[..])).unwrap();
        assert_eq!(b, BYTES);
    }
}
