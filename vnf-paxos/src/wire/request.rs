//! Request: a client submits a command to the coordinator it believes
//! leads (again after a timeout, with the same sequence number).
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | client id |
//! | 8 | 8 | client sequence number |
//! | 16 | 2 | payload length |
//! | 18 | 6 | reserved |
//! | 24 | … | payload |

use super::{Field, MsgError, check_len, check_room, get_u16, get_u64};
use crate::{ClientId, Command};

/// Length of the fixed part.
pub const HEADER_LEN: usize = 24;

mod field {
    use super::Field;
    pub const CLIENT: Field = 0..8;
    pub const SEQ: Field = 8..16;
    pub const LEN: Field = 16..18;
    pub const RESERVED: Field = 18..24;
}

/// A view of a request in a buffer.
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

    /// Wraps `buffer` after checking that it holds the payload.
    pub fn new_checked(buffer: T) -> Result<Self, MsgError> {
        let b = buffer.as_ref();
        check_len("request", HEADER_LEN, b.len())?;
        let len = usize::from(get_u16(b, field::LEN));
        check_len("request payload", HEADER_LEN + len, b.len())?;
        Ok(Self { buffer })
    }

    /// The client.
    pub fn client(&self) -> ClientId {
        ClientId(get_u64(self.buffer.as_ref(), field::CLIENT))
    }

    /// The sequence number.
    pub fn seq(&self) -> u64 {
        get_u64(self.buffer.as_ref(), field::SEQ)
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[HEADER_LEN..HEADER_LEN + usize::from(get_u16(b, field::LEN))]
    }
}

/// A request, as values: the command.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The command submitted.
    pub command: Command,
}

impl Repr {
    /// Reads a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Self {
        Self {
            command: Command {
                client: p.client(),
                seq: p.seq(),
                payload: p.payload().into(),
            },
        }
    }

    /// Bytes the message takes.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.command.payload.len()
    }

    /// Writes the message at the front of the packet's buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<(), MsgError> {
        let c = &self.command;
        let len = u16::try_from(c.payload.len()).map_err(|_| MsgError::TooMany {
            what: "payload bytes",
        })?;
        let b = p.buffer.as_mut();
        check_room("request", self.buffer_len(), b.len())?;
        b[field::CLIENT].copy_from_slice(&c.client.0.to_be_bytes());
        b[field::SEQ].copy_from_slice(&c.seq.to_be_bytes());
        b[field::LEN].copy_from_slice(&len.to_be_bytes());
        b[field::RESERVED].fill(0);
        b[HEADER_LEN..HEADER_LEN + c.payload.len()].copy_from_slice(&c.payload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let bytes = [
            0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 2, 0, 2, 0, 0, 0, 0, 0, 0, b'h', b'i',
        ];
        let r = Repr::parse(&Packet::new_checked(&bytes[..]).unwrap());
        assert_eq!((r.command.client, r.command.seq), (ClientId(7), 2));
        assert_eq!(&r.command.payload[..], b"hi");
        let mut b = [0xffu8; 26];
        r.emit(&mut Packet::new_unchecked(&mut b[..])).unwrap();
        assert_eq!(b, bytes);
        assert!(Packet::new_checked(&bytes[..25]).is_err());
    }
}
