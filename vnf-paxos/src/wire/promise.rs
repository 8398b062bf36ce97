//! Promise (phase 1B): an acceptor promises a ballot and reports what it
//! accepted, one page of the instance range at a time.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | ballot promised |
//! | 8 | 2 | acceptor slot |
//! | 10 | 2 | reserved |
//! | 12 | 4 | acceptor incarnation |
//! | 16 | 8 | trim point: the acceptor knows every instance below it decided and votes on none |
//! | 24 | 8 | page start: first instance this page covers |
//! | 32 | 8 | page end (exclusive; `u64::MAX`: the last page) |
//! | 40 | 2 | entry count |
//! | 42 | 6 | reserved |
//! | 48 | … | entries: instance (8), ballot accepted in (8), value |
//!
//! Pages let a promise that reports many in-flight instances fit datagrams;
//! the coordinator counts the acceptor once its pages cover the range it
//! asked about, whatever order they arrive in.

use super::value::{Entry, count_u16, emit_entries, entry_len, parse_entries};
use super::{Field, MsgError, check_len, check_room, get_acceptor, get_u16, get_u64, set_acceptor};
use crate::{AcceptorId, Ballot, Instance};

/// Length of the fixed part.
pub const HEADER_LEN: usize = 48;

mod field {
    use super::Field;
    pub const BALLOT: Field = 0..8;
    pub const ACCEPTOR: usize = 8;
    pub const TRIM: Field = 16..24;
    pub const LO: Field = 24..32;
    pub const HI: Field = 32..40;
    pub const COUNT: Field = 40..42;
    pub const RESERVED: Field = 42..48;
}

/// A view of a promise in a buffer.
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
        check_len("promise", HEADER_LEN, buffer.as_ref().len())?;
        Ok(Self { buffer })
    }

    /// The ballot promised.
    pub fn ballot(&self) -> Ballot {
        Ballot::from_u64(get_u64(self.buffer.as_ref(), field::BALLOT))
    }

    /// The acceptor.
    pub fn acceptor(&self) -> AcceptorId {
        get_acceptor(self.buffer.as_ref(), field::ACCEPTOR)
    }

    /// The trim point.
    pub fn trim(&self) -> Instance {
        get_u64(self.buffer.as_ref(), field::TRIM)
    }

    /// The page's range.
    pub fn range(&self) -> (Instance, Instance) {
        let b = self.buffer.as_ref();
        (get_u64(b, field::LO), get_u64(b, field::HI))
    }

    /// The entry count.
    pub fn count(&self) -> usize {
        usize::from(get_u16(self.buffer.as_ref(), field::COUNT))
    }

    /// The entries.
    pub fn entries(&self) -> Result<Vec<Entry>, MsgError> {
        parse_entries(&self.buffer.as_ref()[HEADER_LEN..], self.count(), true)
    }
}

/// A promise, as values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The ballot promised.
    pub ballot: Ballot,
    /// The acceptor.
    pub acceptor: AcceptorId,
    /// Every instance below is decided; the acceptor votes on none.
    pub trim: Instance,
    /// First instance this page covers.
    pub lo: Instance,
    /// End of the page (exclusive); `u64::MAX` for the last page.
    pub hi: Instance,
    /// What the acceptor accepted in the page, with the ballots.
    pub entries: Vec<Entry>,
}

impl Repr {
    /// Reads a packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self, MsgError> {
        let (lo, hi) = p.range();
        Ok(Self {
            ballot: p.ballot(),
            acceptor: p.acceptor(),
            trim: p.trim(),
            lo,
            hi,
            entries: p.entries()?,
        })
    }

    /// Bytes the message takes.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
            + self
                .entries
                .iter()
                .map(|e| entry_len(e, true))
                .sum::<usize>()
    }

    /// Writes the message at the front of the packet's buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<(), MsgError> {
        let count = count_u16(&self.entries)?;
        let b = p.buffer.as_mut();
        check_room("promise", self.buffer_len(), b.len())?;
        b[field::BALLOT].copy_from_slice(&self.ballot.to_u64().to_be_bytes());
        set_acceptor(b, field::ACCEPTOR, self.acceptor);
        b[field::TRIM].copy_from_slice(&self.trim.to_be_bytes());
        b[field::LO].copy_from_slice(&self.lo.to_be_bytes());
        b[field::HI].copy_from_slice(&self.hi.to_be_bytes());
        b[field::COUNT].copy_from_slice(&count.to_be_bytes());
        b[field::RESERVED].fill(0);
        emit_entries(&self.entries, &mut b[HEADER_LEN..], true)?;
        Ok(())
    }
}
