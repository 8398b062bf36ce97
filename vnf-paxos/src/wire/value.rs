//! Values and entry lists: the variable-length parts that several messages
//! share.
//!
//! A value (a batch of commands; zero commands is the no-op):
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 2 | command count |
//! | 2 | 2 | reserved |
//! | 4 | … | commands |
//!
//! A command:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | client id |
//! | 8 | 8 | client sequence number |
//! | 16 | 2 | payload length |
//! | 18 | … | payload |
//!
//! An entry of a list is an instance number (8 bytes), in a promise also the
//! ballot the value was accepted in (8 bytes), then a value.

use std::sync::Arc;

use super::{MsgError, check_len, check_room, get_u16, get_u64};
use crate::{Ballot, ClientId, Command, Instance, Value};

/// Bytes before a value's commands.
pub const VALUE_HEADER_LEN: usize = 4;
/// Bytes before a command's payload.
pub const COMMAND_HEADER_LEN: usize = 18;
/// The longest payload a command may carry.
pub const MAX_PAYLOAD: usize = u16::MAX as usize;

/// One entry of a list: an instance, the ballot it was accepted in (only
/// promises carry it; [`Ballot::ZERO`] elsewhere) and its value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    /// The instance.
    pub instance: Instance,
    /// The ballot the value was accepted in.
    pub ballot: Ballot,
    /// The value.
    pub value: Value,
}

/// Bytes an entry takes, with or without its ballot.
pub fn entry_len(e: &Entry, with_ballot: bool) -> usize {
    8 + if with_ballot { 8 } else { 0 } + e.value.wire_len()
}

/// Checks the value at the front of `b` as [`parse_value`] would, without
/// building it; returns the bytes it takes. The acceptor's wire path uses
/// it to validate and then copy values without allocating.
#[inline]
pub fn scan_value(b: &[u8]) -> Result<usize, MsgError> {
    check_len("value", VALUE_HEADER_LEN, b.len())?;
    let count = usize::from(get_u16(b, 0..2));
    let mut at = VALUE_HEADER_LEN;
    for _ in 0..count {
        check_len("command", at + COMMAND_HEADER_LEN, b.len())?;
        let len = usize::from(get_u16(b, at + 16..at + 18));
        let end = at + COMMAND_HEADER_LEN + len;
        check_len("command payload", end, b.len())?;
        at = end;
    }
    Ok(at)
}

/// Reads a value at the front of `b`; returns it and the bytes it took.
pub fn parse_value(b: &[u8]) -> Result<(Value, usize), MsgError> {
    let (commands, n) = parse_commands(b)?;
    Ok((Value::batch(commands), n))
}

/// Reads the commands of a value (or of a [`super::submit`]) at the front
/// of `b`; returns them and the bytes they took.
pub fn parse_commands(b: &[u8]) -> Result<(Vec<Command>, usize), MsgError> {
    check_len("value", VALUE_HEADER_LEN, b.len())?;
    let count = usize::from(get_u16(b, 0..2));
    let mut at = VALUE_HEADER_LEN;
    // Capacity from what the bytes can hold, never from the count alone: a
    // forged count must not allocate.
    let mut commands = Vec::with_capacity(count.min(b.len() / COMMAND_HEADER_LEN));
    for _ in 0..count {
        check_len("command", at + COMMAND_HEADER_LEN, b.len())?;
        let len = usize::from(get_u16(b, at + 16..at + 18));
        let end = at + COMMAND_HEADER_LEN + len;
        check_len("command payload", end, b.len())?;
        commands.push(Command {
            client: ClientId(get_u64(b, at..at + 8)),
            seq: get_u64(b, at + 8..at + 16),
            payload: Arc::from(&b[at + COMMAND_HEADER_LEN..end]),
        });
        at = end;
    }
    Ok((commands, at))
}

/// Writes `v` at the front of `b`; returns the bytes it took.
pub fn emit_value(v: &Value, b: &mut [u8]) -> Result<usize, MsgError> {
    emit_value_of(v.commands(), b)
}

/// Writes `commands` in a value's layout at the front of `b`; returns the
/// bytes they took.
pub fn emit_value_of(commands: &[Command], b: &mut [u8]) -> Result<usize, MsgError> {
    let len = VALUE_HEADER_LEN + commands.iter().map(Command::wire_len).sum::<usize>();
    check_room("value", len, b.len())?;
    let count = u16::try_from(commands.len()).map_err(|_| MsgError::TooMany {
        what: "commands in a value",
    })?;
    b[0..2].copy_from_slice(&count.to_be_bytes());
    b[2..4].fill(0);
    let mut at = VALUE_HEADER_LEN;
    for c in commands {
        let plen = u16::try_from(c.payload.len()).map_err(|_| MsgError::TooMany {
            what: "payload bytes",
        })?;
        b[at..at + 8].copy_from_slice(&c.client.0.to_be_bytes());
        b[at + 8..at + 16].copy_from_slice(&c.seq.to_be_bytes());
        b[at + 16..at + 18].copy_from_slice(&plen.to_be_bytes());
        let start = at + COMMAND_HEADER_LEN;
        b[start..start + c.payload.len()].copy_from_slice(&c.payload);
        at = start + c.payload.len();
    }
    Ok(len)
}

/// Reads `count` entries from `b`.
pub fn parse_entries(b: &[u8], count: usize, with_ballot: bool) -> Result<Vec<Entry>, MsgError> {
    let head = if with_ballot { 16 } else { 8 };
    let mut out = Vec::with_capacity(count.min(b.len() / (head + VALUE_HEADER_LEN)));
    let mut at = 0;
    for _ in 0..count {
        check_len("entry", at + head, b.len())?;
        let instance = get_u64(b, at..at + 8);
        let ballot = if with_ballot {
            Ballot::from_u64(get_u64(b, at + 8..at + 16))
        } else {
            Ballot::ZERO
        };
        let (value, n) = parse_value(&b[at + head..])?;
        out.push(Entry {
            instance,
            ballot,
            value,
        });
        at += head + n;
    }
    Ok(out)
}

/// Writes `entries` at the front of `b`; returns the bytes they took.
pub fn emit_entries(entries: &[Entry], b: &mut [u8], with_ballot: bool) -> Result<usize, MsgError> {
    let head = if with_ballot { 16 } else { 8 };
    let mut at = 0;
    for e in entries {
        check_room("entry", at + head, b.len())?;
        b[at..at + 8].copy_from_slice(&e.instance.to_be_bytes());
        if with_ballot {
            b[at + 8..at + 16].copy_from_slice(&e.ballot.to_u64().to_be_bytes());
        }
        at += head;
        at += emit_value(&e.value, &mut b[at..])?;
    }
    Ok(at)
}

/// The entry count of a list as its 2-byte field.
pub fn count_u16(entries: &[Entry]) -> Result<u16, MsgError> {
    u16::try_from(entries.len()).map_err(|_| MsgError::TooMany {
        what: "entries in a message",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    static VALUE: [u8; 4 + 18 + 3] = [
        0, 1, 0, 0, // one command
        0, 0, 0, 0, 0, 0, 0, 7, // client 7
        0, 0, 0, 0, 0, 0, 0, 9, // seq 9
        0, 3, b'a', b'b', b'c', // 3 bytes
    ];

    #[test]
    fn value_round_trips_and_short_is_an_error() {
        let (v, n) = parse_value(&VALUE).unwrap();
        assert_eq!(n, VALUE.len());
        assert_eq!(v.commands()[0].client, ClientId(7));
        assert_eq!(v.commands()[0].seq, 9);
        assert_eq!(&v.commands()[0].payload[..], b"abc");
        let mut b = [0xffu8; 25];
        assert_eq!(emit_value(&v, &mut b).unwrap(), 25);
        assert_eq!(b, VALUE);
        assert_eq!(scan_value(&VALUE), Ok(VALUE.len()));
        for cut in 0..VALUE.len() {
            assert!(parse_value(&VALUE[..cut]).is_err(), "cut at {cut}");
            assert!(scan_value(&VALUE[..cut]).is_err(), "cut at {cut}");
            assert!(emit_value(&v, &mut b[..cut]).is_err());
        }
    }

    #[test]
    fn a_forged_count_allocates_nothing_and_fails() {
        assert!(parse_value(&[0xff, 0xff, 0, 0]).is_err());
        assert!(parse_entries(&[0; 8], usize::from(u16::MAX), true).is_err());
    }
}
