//! Acknowledgement: the outcome of an add, remove or subscribe request.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | request id of the request answered |
//! | 4 | 1 | status: 0 done, 1 unknown process, 2 duplicate process, 3 bad configuration, 4 detector full, 5 malformed request |
//! | 5 | 3 | reserved |

use super::{Field, MsgError, check_len, check_room, get_u32};
use crate::FdError;

/// Length of the message.
pub const LEN: usize = 8;

mod field {
    use super::Field;
    pub const REQUEST: Field = 0..4;
    pub const STATUS: usize = 4;
    pub const RESERVED: Field = 5..8;
}

/// The outcome of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Done.
    Ok,
    /// The process named is not monitored.
    UnknownProcess,
    /// The process is already monitored.
    DuplicateProcess,
    /// The configuration is out of bounds.
    BadConfig,
    /// The detector cannot take more processes.
    Full,
    /// The request could not be read.
    Malformed,
}

impl From<Status> for u8 {
    fn from(s: Status) -> u8 {
        match s {
            Status::Ok => 0,
            Status::UnknownProcess => 1,
            Status::DuplicateProcess => 2,
            Status::BadConfig => 3,
            Status::Full => 4,
            Status::Malformed => 5,
        }
    }
}

impl TryFrom<u8> for Status {
    type Error = MsgError;

    fn try_from(v: u8) -> Result<Self, MsgError> {
        Ok(match v {
            0 => Status::Ok,
            1 => Status::UnknownProcess,
            2 => Status::DuplicateProcess,
            3 => Status::BadConfig,
            4 => Status::Full,
            5 => Status::Malformed,
            value => {
                return Err(MsgError::BadValue {
                    field: "status",
                    value,
                });
            }
        })
    }
}

impl From<&FdError> for Status {
    fn from(e: &FdError) -> Self {
        match e {
            FdError::UnknownProcess(_) => Status::UnknownProcess,
            FdError::DuplicateProcess(_) => Status::DuplicateProcess,
            FdError::Config(_) => Status::BadConfig,
            FdError::Full => Status::Full,
        }
    }
}

/// A view of an acknowledgement in a buffer.
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

    /// Checks the length and the status.
    pub fn check(&self) -> Result<(), MsgError> {
        check_len("ack", LEN, self.buffer.as_ref().len())?;
        self.status().map(|_| ())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The request id.
    pub fn request_id(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::REQUEST)
    }

    /// The status (always `Ok` for a checked packet).
    pub fn status(&self) -> Result<Status, MsgError> {
        Status::try_from(self.buffer.as_ref()[field::STATUS])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the request id.
    pub fn set_request_id(&mut self, id: u32) {
        self.buffer.as_mut()[field::REQUEST].copy_from_slice(&id.to_be_bytes());
    }

    /// Sets the status.
    pub fn set_status(&mut self, s: Status) {
        self.buffer.as_mut()[field::STATUS] = s.into();
    }

    /// Zeroes the reserved bytes.
    pub fn clear_reserved(&mut self) {
        self.buffer.as_mut()[field::RESERVED].fill(0);
    }
}

/// An acknowledgement, as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The request answered.
    pub request_id: u32,
    /// Its outcome.
    pub status: Status,
}

impl Repr {
    /// Reads a packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self, MsgError> {
        check_len("ack", LEN, p.buffer.as_ref().len())?;
        Ok(Self {
            request_id: p.request_id(),
            status: p.status()?,
        })
    }

    /// Bytes the message takes.
    pub const fn buffer_len(&self) -> usize {
        LEN
    }

    /// Writes the message at the front of the packet's buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<(), MsgError> {
        check_room("ack", LEN, p.buffer.as_ref().len())?;
        p.set_request_id(self.request_id);
        p.set_status(self.status);
        p.clear_reserved();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static BYTES: [u8; 8] = [0, 0, 0, 6, 3, 0, 0, 0];

    #[test]
    fn round_trip() {
        let r = Repr::parse(&Packet::new_checked(&BYTES[..]).unwrap()).unwrap();
        assert_eq!(
            r,
            Repr {
                request_id: 6,
                status: Status::BadConfig
            }
        );
        let mut b = [0xffu8; 8];
        r.emit(&mut Packet::new_unchecked(&mut b[..])).unwrap();
        assert_eq!(b, BYTES);
        let mut bad = BYTES;
        bad[4] = 6;
        assert!(Packet::new_checked(&bad[..]).is_err());
        for v in 0..=5u8 {
            assert_eq!(u8::from(Status::try_from(v).unwrap()), v);
        }
    }
}
