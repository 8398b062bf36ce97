//! Submit: one datagram carrying many client commands to the coordinator
//! believed to lead (the multi-value form of [`super::request`]).
//!
//! The payload has the layout of a value ([`super::value`], either
//! format; runs are sent, so a client's consecutive commands share one
//! header):
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 2 | command count *n* (at least 1) |
//! | 2 | 1 | format: 0 plain, 1 runs |
//! | 3 | 1 | reserved |
//! | 4 | … | *n* commands in the format's layout |
//!
//! Each command keeps its own `(client, sequence number)`, by which the
//! service deduplicates it exactly as a single [`super::request`]: a
//! command is decided at most once however often, and in whichever
//! datagrams, it is sent. Commands of several clients may share a datagram
//! (a proxy's); the coordinator answers each client with
//! [`super::replies`]. A datagram with no command means nothing and is
//! refused.

use super::value::{VALUE_HEADER_LEN, commands_len, emit_value_of, parse_commands, scan_value};
use super::{MsgError, check_room, get_u16};
use crate::Command;

/// Length of the fixed part.
pub const HEADER_LEN: usize = VALUE_HEADER_LEN;

/// A view of a submit in a buffer.
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

    /// Wraps `buffer` after checking that it holds every command it counts,
    /// and at least one.
    pub fn new_checked(buffer: T) -> Result<Self, MsgError> {
        scan_value(buffer.as_ref())?;
        let p = Self { buffer };
        if p.count() == 0 {
            return Err(MsgError::BadValue {
                field: "submit command count",
                value: 0,
            });
        }
        Ok(p)
    }

    /// The command count.
    pub fn count(&self) -> usize {
        usize::from(get_u16(self.buffer.as_ref(), 0..2))
    }

    /// The commands (of a checked packet).
    pub fn commands(&self) -> Result<Vec<Command>, MsgError> {
        Ok(parse_commands(self.buffer.as_ref())?.0)
    }
}

/// A submit, as values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The commands, in the order the client numbered them.
    pub commands: Vec<Command>,
}

impl Repr {
    /// Reads a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self, MsgError> {
        Ok(Self {
            commands: p.commands()?,
        })
    }

    /// Bytes the message takes.
    pub fn buffer_len(&self) -> usize {
        commands_len(&self.commands)
    }

    /// Writes the message at the front of the packet's buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<(), MsgError> {
        if self.commands.is_empty() {
            return Err(MsgError::BadValue {
                field: "submit command count",
                value: 0,
            });
        }
        let b = p.buffer.as_mut();
        check_room("submit", self.buffer_len(), b.len())?;
        emit_value_of(&self.commands, b)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClientId;

    #[test]
    fn round_trip_and_refusals() {
        let r = Repr {
            commands: vec![
                Command {
                    client: ClientId(7),
                    seq: 1,
                    payload: (&b"ab"[..]).into(),
                },
                Command {
                    client: ClientId(7),
                    seq: 2,
                    payload: (&b""[..]).into(),
                },
            ],
        };
        let mut b = [0xffu8; 4 + 18 + (2 + 2) + 2];
        assert_eq!(r.buffer_len(), b.len());
        r.emit(&mut Packet::new_unchecked(&mut b[..])).unwrap();
        assert_eq!(&b[..4], &[0, 2, 1, 0]);
        assert_eq!(Repr::parse(&Packet::new_checked(&b[..]).unwrap()), Ok(r));
        for cut in 0..b.len() {
            assert!(Packet::new_checked(&b[..cut]).is_err(), "cut at {cut}");
        }
        assert!(Packet::new_checked(&[0u8, 0, 0, 0][..]).is_err(), "empty");
        let empty = Repr {
            commands: Vec::new(),
        };
        assert!(empty.emit(&mut Packet::new_unchecked(&mut b[..])).is_err());
    }
}
