//! Decided: a coordinator hands a learner instances it knows decided (the
//! answer to a [`super::fetch`]).
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 2 | entry count |
//! | 2 | 6 | reserved |
//! | 8 | … | entries: instance (8), value |

use super::value::{
    Entry, EntryBytes, count_u16, emit_entries, entry_bytes, entry_len, parse_entries,
};
use super::{Field, MsgError, check_len, check_room, get_u16};

/// Length of the fixed part.
pub const HEADER_LEN: usize = 8;

mod field {
    use super::Field;
    pub const COUNT: Field = 0..2;
    pub const RESERVED: Field = 2..8;
}

/// A view of a decided in a buffer.
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

    /// Wraps `buffer` after checking the fixed part; the entries are
    /// checked as [`Packet::entries`] reads them.
    pub fn new_checked(buffer: T) -> Result<Self, MsgError> {
        check_len("decided", HEADER_LEN, buffer.as_ref().len())?;
        Ok(Self { buffer })
    }

    /// The entry count.
    pub fn count(&self) -> usize {
        usize::from(get_u16(self.buffer.as_ref(), field::COUNT))
    }

    /// The entries.
    pub fn entries(&self) -> Result<Vec<Entry>, MsgError> {
        parse_entries(&self.buffer.as_ref()[HEADER_LEN..], self.count(), false)
    }

    /// The entries in place: each instance and its value's bytes, checked
    /// one by one as they are read (see [`entry_bytes`]). A learner's
    /// steady load: it builds only the values it has not learned yet, and
    /// builds no entry list.
    pub fn entry_bytes(&self) -> EntryBytes<'_> {
        entry_bytes(&self.buffer.as_ref()[HEADER_LEN..], self.count())
    }
}

/// A decided, as values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Decided instances and their values.
    pub entries: Vec<Entry>,
}

impl Repr {
    /// Reads a packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self, MsgError> {
        Ok(Self {
            entries: p.entries()?,
        })
    }

    /// Bytes the message takes.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
            + self
                .entries
                .iter()
                .map(|e| entry_len(e, false))
                .sum::<usize>()
    }

    /// Writes the message at the front of the packet's buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<(), MsgError> {
        let count = count_u16(&self.entries)?;
        let b = p.buffer.as_mut();
        check_room("decided", self.buffer_len(), b.len())?;
        b[field::COUNT].copy_from_slice(&count.to_be_bytes());
        b[field::RESERVED].fill(0);
        emit_entries(&self.entries, &mut b[HEADER_LEN..], false)?;
        Ok(())
    }
}
