//! Query: ask for the state of one process or of all.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | request id, echoed in the [`super::reply`] |
//! | 4 | 1 | flags: bit 0 all processes (the process id is then ignored); other bits reserved |
//! | 5 | 3 | reserved |
//! | 8 | 8 | process id |

use super::{Field, MsgError, Target, check_flags, check_len, check_room, get_u32, get_u64};
use crate::ProcessId;

/// Length of the message.
pub const LEN: usize = 16;
/// Flag: every process, not the one named.
pub const FLAG_ALL: u8 = 0x01;

mod field {
    use super::Field;
    pub const REQUEST: Field = 0..4;
    pub const FLAGS: usize = 4;
    pub const RESERVED: Field = 5..8;
    pub const PROCESS: Field = 8..16;
}

/// A view of a query in a buffer.
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

    /// Wraps `buffer` after [`Packet::check`].
    pub fn new_checked(buffer: T) -> Result<Self, MsgError> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// Checks the length and the flags.
    pub fn check(&self) -> Result<(), MsgError> {
        check_len("query", LEN, self.buffer.as_ref().len())?;
        check_flags("query", self.flags(), FLAG_ALL)
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The request id.
    pub fn request_id(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::REQUEST)
    }

    /// The flags byte.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The process id field, whatever the flags.
    pub fn process(&self) -> ProcessId {
        ProcessId(get_u64(self.buffer.as_ref(), field::PROCESS))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the request id.
    pub fn set_request_id(&mut self, id: u32) {
        self.buffer.as_mut()[field::REQUEST].copy_from_slice(&id.to_be_bytes());
    }

    /// Sets the flags byte as is.
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    /// Zeroes the reserved bytes.
    pub fn clear_reserved(&mut self) {
        self.buffer.as_mut()[field::RESERVED].fill(0);
    }

    /// Sets the process id field.
    pub fn set_process(&mut self, id: ProcessId) {
        self.buffer.as_mut()[field::PROCESS].copy_from_slice(&id.0.to_be_bytes());
    }
}

/// A query, as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Echoed in the reply.
    pub request_id: u32,
    /// What it asks about.
    pub target: Target,
}

impl Repr {
    /// Reads a packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self, MsgError> {
        p.check()?;
        Ok(Self {
            request_id: p.request_id(),
            target: if p.flags() & FLAG_ALL != 0 {
                Target::All
            } else {
                Target::One(p.process())
            },
        })
    }

    /// Bytes the message takes.
    pub const fn buffer_len(&self) -> usize {
        LEN
    }

    /// Writes the message at the front of the packet's buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<(), MsgError> {
        check_room("query", LEN, p.buffer.as_ref().len())?;
        p.set_request_id(self.request_id);
        p.clear_reserved();
        match self.target {
            Target::One(id) => {
                p.set_flags(0);
                p.set_process(id);
            }
            Target::All => {
                p.set_flags(FLAG_ALL);
                p.set_process(ProcessId(0));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static ONE: [u8; 16] = [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
    static ALL: [u8; 16] = [0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

    #[test]
    fn round_trip() {
        for (bytes, target, id) in [(ONE, Target::One(ProcessId(9)), 1), (ALL, Target::All, 2)] {
            let r = Repr::parse(&Packet::new_checked(&bytes[..]).unwrap()).unwrap();
            assert_eq!(
                r,
                Repr {
                    request_id: id,
                    target
                }
            );
            let mut b = [0xffu8; 16];
            r.emit(&mut Packet::new_unchecked(&mut b[..])).unwrap();
            assert_eq!(b, bytes);
        }
        let mut bad = ALL;
        bad[4] = 3;
        assert!(Packet::new_checked(&bad[..]).is_err());
    }
}
