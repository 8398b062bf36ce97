//! Query reply: the states of the processes asked about, a page at a time.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | request id of the query answered |
//! | 4 | 2 | entry count (0 for a query about an unknown process) |
//! | 6 | 1 | flags: bit 0 more replies follow for this request; other bits reserved |
//! | 7 | 1 | reserved |
//! | 8 | 32 × count | entries |
//!
//! Each entry:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | process id |
//! | 8 | 1 | state: 0 correct, 1 suspected, 2 unreachable |
//! | 9 | 1 | flags: bit 0 link present, bit 1 group present; other bits reserved |
//! | 10 | 2 | reserved |
//! | 12 | 4 | link id, when bit 0 |
//! | 16 | 4 | group id, when bit 1 |
//! | 20 | 4 | reserved |
//! | 24 | 8 | in this state since, nanoseconds on the detector's clock |
//!
//! An answer about every process rarely fits one datagram (44 entries fit
//! a 1500-byte MTU): [`emit_from`] fills one page and says whether more
//! follow.

use std::iter::{FusedIterator, Peekable};

use super::{Field, MsgError, check_flags, check_len, check_room, get_u16, get_u32, get_u64};
use crate::{GroupId, LinkId, ProcessId, ProcessInfo, State, Time};

/// Length of the header before the entries.
pub const HEADER_LEN: usize = 8;
/// Length of one entry.
pub const ENTRY_LEN: usize = 32;
/// Flag: more replies follow for this request.
pub const FLAG_MORE: u8 = 0x01;
/// Entry flag: the link field is meaningful.
pub const ENTRY_FLAG_LINK: u8 = 0x01;
/// Entry flag: the group field is meaningful.
pub const ENTRY_FLAG_GROUP: u8 = 0x02;

mod field {
    use super::Field;
    pub const REQUEST: Field = 0..4;
    pub const COUNT: Field = 4..6;
    pub const FLAGS: usize = 6;
    pub const RESERVED: usize = 7;
    pub const ENTRIES: usize = 8;

    pub const E_PROCESS: Field = 0..8;
    pub const E_STATE: usize = 8;
    pub const E_FLAGS: usize = 9;
    pub const E_RESERVED1: Field = 10..12;
    pub const E_LINK: Field = 12..16;
    pub const E_GROUP: Field = 16..20;
    pub const E_RESERVED2: Field = 20..24;
    pub const E_SINCE: Field = 24..32;
}

/// Bytes a reply with `count` entries takes.
pub const fn buffer_len(count: usize) -> usize {
    HEADER_LEN + ENTRY_LEN * count
}

/// How many entries fit in `room` bytes.
pub const fn capacity(room: usize) -> usize {
    room.saturating_sub(HEADER_LEN) / ENTRY_LEN
}

/// A view of a query reply in a buffer.
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

    /// Checks the header, that every entry is there, and every entry's
    /// state and flags, so that [`Packet::entries`] cannot fail.
    pub fn check(&self) -> Result<(), MsgError> {
        let b = self.buffer.as_ref();
        check_len("query reply", HEADER_LEN, b.len())?;
        check_flags("query reply", self.flags(), FLAG_MORE)?;
        let n = usize::from(self.count());
        check_len("query reply entries", buffer_len(n), b.len())?;
        for e in b[field::ENTRIES..buffer_len(n)].chunks_exact(ENTRY_LEN) {
            EntryRepr::parse(e)?;
        }
        Ok(())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The request id.
    pub fn request_id(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::REQUEST)
    }

    /// The entry count.
    pub fn count(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::COUNT)
    }

    /// The flags byte.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// Whether more replies follow.
    pub fn more(&self) -> bool {
        self.flags() & FLAG_MORE != 0
    }

    /// Entry `index`.
    pub fn entry(&self, index: usize) -> Result<EntryRepr, MsgError> {
        let count = usize::from(self.count());
        if index >= count {
            return Err(MsgError::NoEntry { index, count });
        }
        let start = buffer_len(index);
        let b = self.buffer.as_ref();
        check_len("query reply entry", start + ENTRY_LEN, b.len())?;
        EntryRepr::parse(&b[start..start + ENTRY_LEN])
    }

    /// The entries of a checked packet.
    pub fn entries(&self) -> Entries<'_> {
        let b = self.buffer.as_ref();
        let end = buffer_len(usize::from(self.count())).min(b.len());
        Entries {
            bytes: b.get(field::ENTRIES..end).unwrap_or_default(),
        }
    }
}

impl<'a> Packet<&'a [u8]> {
    /// The entries of a checked packet, borrowing the buffer rather than
    /// the view.
    pub fn into_entries(self) -> Entries<'a> {
        let end = buffer_len(usize::from(self.count())).min(self.buffer.len());
        Entries {
            bytes: self.buffer.get(field::ENTRIES..end).unwrap_or_default(),
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the request id.
    pub fn set_request_id(&mut self, id: u32) {
        self.buffer.as_mut()[field::REQUEST].copy_from_slice(&id.to_be_bytes());
    }

    /// Sets the entry count.
    pub fn set_count(&mut self, count: u16) {
        self.buffer.as_mut()[field::COUNT].copy_from_slice(&count.to_be_bytes());
    }

    /// Sets the flags byte as is.
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    /// Zeroes the reserved byte.
    pub fn clear_reserved(&mut self) {
        self.buffer.as_mut()[field::RESERVED] = 0;
    }

    /// Writes entry `index`; the count is not changed.
    pub fn set_entry(&mut self, index: usize, e: &EntryRepr) -> Result<(), MsgError> {
        let start = buffer_len(index);
        let b = self.buffer.as_mut();
        check_room("query reply entry", start + ENTRY_LEN, b.len())?;
        e.emit(&mut b[start..start + ENTRY_LEN]);
        Ok(())
    }
}

/// One process in a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntryRepr {
    /// The process.
    pub process: ProcessId,
    /// Its state.
    pub state: State,
    /// Its link.
    pub link: Option<LinkId>,
    /// Its group.
    pub group: Option<GroupId>,
    /// In this state since.
    pub since: Time,
}

impl From<&ProcessInfo> for EntryRepr {
    fn from(i: &ProcessInfo) -> Self {
        Self {
            process: i.id,
            state: i.state,
            link: i.link,
            group: i.group,
            since: i.since,
        }
    }
}

impl EntryRepr {
    /// Reads an entry from its 32 bytes.
    fn parse(b: &[u8]) -> Result<Self, MsgError> {
        check_len("query reply entry", ENTRY_LEN, b.len())?;
        let flags = b[field::E_FLAGS];
        check_flags(
            "query reply entry",
            flags,
            ENTRY_FLAG_LINK | ENTRY_FLAG_GROUP,
        )?;
        Ok(Self {
            process: ProcessId(get_u64(b, field::E_PROCESS)),
            state: State::try_from(b[field::E_STATE])?,
            link: (flags & ENTRY_FLAG_LINK != 0).then(|| LinkId(get_u32(b, field::E_LINK))),
            group: (flags & ENTRY_FLAG_GROUP != 0).then(|| GroupId(get_u32(b, field::E_GROUP))),
            since: Time::from_nanos(get_u64(b, field::E_SINCE)),
        })
    }

    /// Writes the entry into its 32 bytes.
    fn emit(&self, b: &mut [u8]) {
        let mut flags = 0;
        if self.link.is_some() {
            flags |= ENTRY_FLAG_LINK;
        }
        if self.group.is_some() {
            flags |= ENTRY_FLAG_GROUP;
        }
        b[field::E_PROCESS].copy_from_slice(&self.process.0.to_be_bytes());
        b[field::E_STATE] = self.state.into();
        b[field::E_FLAGS] = flags;
        b[field::E_RESERVED1].fill(0);
        b[field::E_LINK].copy_from_slice(&self.link.map_or(0, |l| l.0).to_be_bytes());
        b[field::E_GROUP].copy_from_slice(&self.group.map_or(0, |g| g.0).to_be_bytes());
        b[field::E_RESERVED2].fill(0);
        b[field::E_SINCE].copy_from_slice(&self.since.as_nanos().to_be_bytes());
    }
}

/// The entries of a checked reply, read as they are iterated.
#[derive(Clone, PartialEq, Eq)]
pub struct Entries<'a> {
    bytes: &'a [u8],
}

impl std::fmt::Debug for Entries<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}

impl Iterator for Entries<'_> {
    type Item = EntryRepr;

    fn next(&mut self) -> Option<EntryRepr> {
        if self.bytes.len() < ENTRY_LEN {
            self.bytes = &[];
            return None;
        }
        let (e, rest) = self.bytes.split_at(ENTRY_LEN);
        self.bytes = rest;
        // Checked with the packet: an error here would mean the bytes were
        // not, and ending the iteration is the harmless answer.
        EntryRepr::parse(e).ok()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.bytes.len() / ENTRY_LEN;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Entries<'_> {}
impl FusedIterator for Entries<'_> {}

/// A reply's header, as values; entries are read with [`Packet::entries`]
/// and written with [`Packet::set_entry`] or [`emit_from`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The query answered.
    pub request_id: u32,
    /// Entries that follow the header.
    pub count: u16,
    /// More replies follow.
    pub more: bool,
}

impl Repr {
    /// Reads a checked packet's header.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Self {
        Self {
            request_id: p.request_id(),
            count: p.count(),
            more: p.more(),
        }
    }

    /// Bytes the reply takes, entries included.
    pub const fn buffer_len(&self) -> usize {
        buffer_len(self.count as usize)
    }

    /// Writes the header at the front of the packet's buffer, which must
    /// have room for the entries too.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<(), MsgError> {
        check_room("query reply", self.buffer_len(), p.buffer.as_ref().len())?;
        p.set_request_id(self.request_id);
        p.set_count(self.count);
        p.set_flags(if self.more { FLAG_MORE } else { 0 });
        p.clear_reserved();
        Ok(())
    }
}

/// Writes one page of a reply into `payload`: as many of `entries` as fit,
/// with the "more" flag set when some are left for the next page. Returns
/// the bytes written; `NoRoom` when not even one entry fits and there is
/// one to write.
pub fn emit_from<I: Iterator<Item = EntryRepr>>(
    request_id: u32,
    entries: &mut Peekable<I>,
    payload: &mut [u8],
) -> Result<usize, MsgError> {
    let room = capacity(payload.len()).min(usize::from(u16::MAX));
    // A page without an entry that says "more" would never end.
    let needed = if entries.peek().is_some() {
        buffer_len(1)
    } else {
        HEADER_LEN
    };
    check_room("query reply", needed, payload.len())?;
    let mut p = Packet::new_unchecked(payload);
    let mut n = 0;
    while n < room {
        let Some(e) = entries.next() else { break };
        p.set_entry(n, &e)?;
        n += 1;
    }
    let repr = Repr {
        request_id,
        count: n as u16,
        more: entries.peek().is_some(),
    };
    repr.emit(&mut p)?;
    Ok(repr.buffer_len())
}

#[cfg(test)]
mod tests {
    use super::*;

    static BYTES: [u8; 40] = [
        0, 0, 0, 1, 0, 1, 0x01, 0, // request 1, one entry, more
        0, 0, 0, 0, 0, 0, 0, 7, // process 7
        1, 0x01, 0, 0, 0, 0, 0, 2, // suspected, link 2
        0, 0, 0, 0, 0, 0, 0, 0, // no group
        0, 0, 0, 0, 0, 0, 0x27, 0x10, // since 10 µs
    ];

    fn entry() -> EntryRepr {
        EntryRepr {
            process: ProcessId(7),
            state: State::Suspected,
            link: Some(LinkId(2)),
            group: None,
            since: Time::from_micros(10),
        }
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&BYTES[..]).unwrap();
        assert_eq!((p.request_id(), p.count(), p.more()), (1, 1, true));
        assert_eq!(p.entry(0).unwrap(), entry());
        assert_eq!(p.entry(1), Err(MsgError::NoEntry { index: 1, count: 1 }));
        assert_eq!(p.entries().collect::<Vec<_>>(), [entry()]);
    }

    #[test]
    fn construct() {
        let mut b = [0xffu8; 40];
        let mut p = Packet::new_unchecked(&mut b[..]);
        Repr {
            request_id: 1,
            count: 1,
            more: true,
        }
        .emit(&mut p)
        .unwrap();
        p.set_entry(0, &entry()).unwrap();
        assert_eq!(b, BYTES);
    }

    #[test]
    fn pages() {
        let all: Vec<_> = (0..5)
            .map(|i| EntryRepr {
                process: ProcessId(i),
                ..entry()
            })
            .collect();
        let mut it = all.iter().copied().peekable();
        let mut got = Vec::new();
        let mut buf = [0u8; buffer_len(2) + 31];
        loop {
            let n = emit_from(3, &mut it, &mut buf).unwrap();
            let p = Packet::new_checked(&buf[..n]).unwrap();
            got.extend(p.entries());
            if !p.more() {
                break;
            }
            assert_eq!(p.count(), 2);
        }
        assert_eq!(got, all);
    }

    #[test]
    fn malformed_is_an_error() {
        assert!(Packet::new_checked(&BYTES[..39]).is_err());
        let mut b = BYTES;
        b[16] = 9;
        assert!(Packet::new_checked(&b[..]).is_err());
        let mut b = BYTES;
        b[17] = 0x04;
        assert!(Packet::new_checked(&b[..]).is_err());
        let mut b = BYTES;
        b[6] = 0x02;
        assert!(Packet::new_checked(&b[..]).is_err());
    }
}
