//! Batch and Repair: stamped messages, consecutive in global sequence
//! number, packed into one frame.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | epoch of the sender of the frame |
//! | 4 | 2 | entry count |
//! | 6 | 2 | reserved |
//! | 8 | 8 | global sequence number of the first entry (the others follow, +1 each) |
//! | 16 | 8 | epoch base: first sequence number this epoch decided |
//! | 24 | … | entries |
//!
//! Each entry:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | sender |
//! | 8 | 8 | sender sequence number |
//! | 16 | 1 | mode: 0 reliable, 1 atomic, 2 FIFO-atomic, 3 causal-atomic, 255 filler |
//! | 17 | 1 | reserved |
//! | 18 | 2 | payload length (0 for a filler) |
//! | 20 | n | payload |
//!
//! A filler takes a sequence number that an epoch change left empty: it is
//! delivered to nobody, and its sender (if any) retransmits the message it
//! stood for. Batch (type 2) comes from the sequencer; Repair (type 3) has
//! the same layout and comes from a peer, or from a member to a recovering
//! sequencer. [`Writer`] packs entries until the buffer is full.

use std::iter::FusedIterator;

use super::{Field, MsgError, check_len, check_room, get_u16, get_u32, get_u64};
use crate::{Mode, ProcessId};

/// Length of the frame header.
pub const HEADER_LEN: usize = 24;
/// Length of an entry's fixed part.
pub const ENTRY_HEADER_LEN: usize = 20;
/// The mode byte of a filler.
pub const FILLER: u8 = 0xff;

mod field {
    use super::Field;
    pub const EPOCH: Field = 0..4;
    pub const COUNT: Field = 4..6;
    pub const RESERVED: Field = 6..8;
    pub const FIRST: Field = 8..16;
    pub const BASE: Field = 16..24;
    pub const ENTRIES: usize = 24;

    pub const E_SENDER: Field = 0..8;
    pub const E_SEQ: Field = 8..16;
    pub const E_MODE: usize = 16;
    pub const E_RESERVED: usize = 17;
    pub const E_LEN: Field = 18..20;
}

/// Bytes an entry with a `payload_len`-byte payload takes.
pub const fn entry_len(payload_len: usize) -> usize {
    ENTRY_HEADER_LEN + payload_len
}

/// A view of a batch in a buffer.
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

    /// Wraps `buffer` after [`Packet::check`].
    pub fn new_checked(buffer: T) -> Result<Self, MsgError> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// Checks the header, that every entry is there with a defined mode,
    /// and that the sequence numbers do not wrap, so that iterating the
    /// entries cannot fail.
    pub fn check(&self) -> Result<(), MsgError> {
        let b = self.buffer.as_ref();
        check_len("batch", HEADER_LEN, b.len())?;
        let count = self.count();
        if self.first().checked_add(u64::from(count)).is_none() {
            return Err(MsgError::BadValue {
                field: "first sequence number",
                value: self.first(),
            });
        }
        entries_len(&b[field::ENTRIES..], count)?;
        Ok(())
    }

    /// The epoch.
    pub fn epoch(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::EPOCH)
    }

    /// The entry count.
    pub fn count(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::COUNT)
    }

    /// The first entry's global sequence number.
    pub fn first(&self) -> u64 {
        get_u64(self.buffer.as_ref(), field::FIRST)
    }

    /// The epoch's base.
    pub fn base(&self) -> u64 {
        get_u64(self.buffer.as_ref(), field::BASE)
    }
}

impl<'a> Packet<&'a [u8]> {
    /// The entries, borrowed from the buffer (of a checked packet).
    pub fn into_entries(self) -> Entries<'a> {
        let count = self.count();
        let rest = &self.buffer[field::ENTRIES..];
        let len = entries_len(rest, count).unwrap_or(0);
        Entries {
            bytes: &rest[..len],
            first: self.first(),
            count,
        }
    }
}

/// Checks `buffer` as [`Packet::check`] does and returns its header and
/// its entries, walking the entries once (a checked [`Packet`] and
/// [`Packet::into_entries`] walk them twice): what a member does with
/// every group frame.
pub fn parse_checked(buffer: &[u8]) -> Result<(Repr, Entries<'_>), MsgError> {
    check_len("batch", HEADER_LEN, buffer.len())?;
    let r = Repr::parse(&Packet::new_unchecked(buffer));
    if r.first.checked_add(u64::from(r.count)).is_none() {
        return Err(MsgError::BadValue {
            field: "first sequence number",
            value: r.first,
        });
    }
    let rest = &buffer[field::ENTRIES..];
    let len = entries_len(rest, r.count)?;
    Ok((
        r,
        Entries {
            bytes: &rest[..len],
            first: r.first,
            count: r.count,
        },
    ))
}

/// Walks `count` entries at the front of `b`: their total length, or why
/// they are malformed.
fn entries_len(b: &[u8], count: u16) -> Result<usize, MsgError> {
    let mut at = 0usize;
    for _ in 0..count {
        let rest = b.get(at..).unwrap_or_default();
        check_len("batch entry", ENTRY_HEADER_LEN, rest.len())?;
        let len = usize::from(get_u16(rest, field::E_LEN));
        let mode = rest[field::E_MODE];
        if mode == FILLER {
            if len != 0 {
                return Err(MsgError::BadValue {
                    field: "filler payload length",
                    value: len as u64,
                });
            }
        } else {
            Mode::try_from(mode)?;
        }
        check_len("batch entry payload", entry_len(len), rest.len())?;
        at += entry_len(len);
    }
    Ok(at)
}

/// A batch's header, as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The epoch of whoever sent the frame.
    pub epoch: u32,
    /// Global sequence number of the first entry.
    pub first: u64,
    /// First sequence number the epoch decided.
    pub base: u64,
    /// How many entries follow.
    pub count: u16,
}

impl Repr {
    /// Reads a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Self {
        Self {
            epoch: p.epoch(),
            first: p.first(),
            base: p.base(),
            count: p.count(),
        }
    }
}

/// One stamped message, as values (its payload apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntryRepr {
    /// Its global sequence number (from the frame's first and its place).
    pub seq: u64,
    /// The sender.
    pub sender: ProcessId,
    /// The sender's sequence number for it.
    pub sender_seq: u64,
    /// Its mode; `None` for a filler.
    pub mode: Option<Mode>,
}

/// The entries of a checked batch, in order, each with its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entries<'a> {
    bytes: &'a [u8],
    first: u64,
    count: u16,
}

impl<'a> Entries<'a> {
    /// How many entries are left.
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    /// True when none are left.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes the entries left take.
    pub fn bytes_len(&self) -> usize {
        self.bytes.len()
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = (EntryRepr, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.count == 0 || self.bytes.len() < ENTRY_HEADER_LEN {
            return None;
        }
        let b = self.bytes;
        let len = usize::from(get_u16(b, field::E_LEN));
        let payload = b.get(ENTRY_HEADER_LEN..entry_len(len))?;
        let mode = match b[field::E_MODE] {
            FILLER => None,
            m => Some(Mode::try_from(m).ok()?),
        };
        let e = EntryRepr {
            seq: self.first,
            sender: ProcessId(get_u64(b, field::E_SENDER)),
            sender_seq: get_u64(b, field::E_SEQ),
            mode,
        };
        self.bytes = &b[entry_len(len)..];
        self.first = self.first.wrapping_add(1);
        self.count -= 1;
        Some((e, payload))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len(), Some(self.len()))
    }
}

impl ExactSizeIterator for Entries<'_> {}
impl FusedIterator for Entries<'_> {}

/// Packs entries into a batch payload in place.
///
/// The sequencer builds its frames with this straight from its
/// retransmission ring into the shell's transmit buffer: no staging copy.
#[derive(Debug)]
pub struct Writer<'b> {
    buf: &'b mut [u8],
    len: usize,
    count: u16,
}

impl<'b> Writer<'b> {
    /// Starts a batch of `epoch` whose first entry will be `first`.
    pub fn new(buf: &'b mut [u8], epoch: u32, first: u64, base: u64) -> Result<Self, MsgError> {
        check_room("batch", HEADER_LEN, buf.len())?;
        buf[field::EPOCH].copy_from_slice(&epoch.to_be_bytes());
        buf[field::RESERVED].fill(0);
        buf[field::FIRST].copy_from_slice(&first.to_be_bytes());
        buf[field::BASE].copy_from_slice(&base.to_be_bytes());
        Ok(Self {
            buf,
            len: HEADER_LEN,
            count: 0,
        })
    }

    /// Entries written so far.
    pub fn count(&self) -> u16 {
        self.count
    }

    /// Whether an entry with a `payload_len`-byte payload still fits.
    pub fn fits(&self, payload_len: usize) -> bool {
        self.count < u16::MAX && self.len + entry_len(payload_len) <= self.buf.len()
    }

    /// Appends the next entry (its `seq` is implied by its place and is not
    /// checked). A filler's payload must be empty. `NoRoom` when it does
    /// not fit; the batch so far is intact.
    pub fn push(
        &mut self,
        sender: ProcessId,
        sender_seq: u64,
        mode: Option<Mode>,
        payload: &[u8],
    ) -> Result<(), MsgError> {
        let len = super::len16("batch entry payload", payload.len())?;
        if mode.is_none() && !payload.is_empty() {
            return Err(MsgError::BadValue {
                field: "filler payload length",
                value: payload.len() as u64,
            });
        }
        if !self.fits(payload.len()) {
            return Err(dataplane::wire::WireError::NoRoom {
                what: "batch entry",
                needed: self.len + entry_len(payload.len()),
                got: self.buf.len(),
            }
            .into());
        }
        let e = &mut self.buf[self.len..self.len + entry_len(payload.len())];
        e[field::E_SENDER].copy_from_slice(&sender.0.to_be_bytes());
        e[field::E_SEQ].copy_from_slice(&sender_seq.to_be_bytes());
        e[field::E_MODE] = mode.map_or(FILLER, u8::from);
        e[field::E_RESERVED] = 0;
        e[field::E_LEN].copy_from_slice(&len.to_be_bytes());
        e[ENTRY_HEADER_LEN..].copy_from_slice(payload);
        self.len += entry_len(payload.len());
        self.count += 1;
        Ok(())
    }

    /// Appends already-encoded entries (from a parsed batch).
    pub fn append_raw(&mut self, entries: &Entries<'_>) -> Result<(), MsgError> {
        let n = entries.bytes_len();
        check_room("batch entries", self.len + n, self.buf.len())?;
        let count = self
            .count
            .checked_add(entries.count)
            .ok_or(MsgError::BadValue {
                field: "entry count",
                value: u64::from(self.count) + u64::from(entries.count),
            })?;
        self.buf[self.len..self.len + n].copy_from_slice(entries.bytes);
        self.len += n;
        self.count = count;
        Ok(())
    }

    /// Writes the entry count; returns the payload's length.
    pub fn finish(self) -> usize {
        self.buf[field::COUNT].copy_from_slice(&self.count.to_be_bytes());
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static BYTES: [u8; 66] = [
        0, 0, 0, 2, 0, 2, 0, 0, // epoch 2, 2 entries
        0, 0, 0, 0, 0, 0, 0, 10, // first 10
        0, 0, 0, 0, 0, 0, 0, 1, // base 1
        0, 0, 0, 0, 0, 0, 0, 4, // sender 4
        0, 0, 0, 0, 0, 0, 0, 1, // its message 1
        1, 0, 0, 2, b'h', b'i', // atomic, "hi"
        0, 0, 0, 0, 0, 0, 0, 0, // filler
        0, 0, 0, 0, 0, 0, 0, 0, //
        0xff, 0, 0, 0,
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&BYTES[..]).unwrap();
        let r = Repr::parse(&p);
        assert_eq!((r.epoch, r.first, r.base, r.count), (2, 10, 1, 2));
        let e: Vec<_> = p.into_entries().collect();
        assert_eq!(e.len(), 2);
        assert_eq!(
            e[0].0,
            EntryRepr {
                seq: 10,
                sender: ProcessId(4),
                sender_seq: 1,
                mode: Some(Mode::Atomic)
            }
        );
        assert_eq!(e[0].1, b"hi");
        assert_eq!((e[1].0.seq, e[1].0.mode, e[1].1), (11, None, &b""[..]));
        // The one-walk parse reads the same.
        let (r1, e1) = parse_checked(&BYTES[..]).unwrap();
        assert_eq!(r1, r);
        assert_eq!(e1.bytes_len(), BYTES.len() - HEADER_LEN);
        assert_eq!(e1.collect::<Vec<_>>(), e);
    }

    #[test]
    fn construct() {
        let mut b = [0xffu8; 66];
        let mut w = Writer::new(&mut b, 2, 10, 1).unwrap();
        w.push(ProcessId(4), 1, Some(Mode::Atomic), b"hi").unwrap();
        w.push(ProcessId(0), 0, None, b"").unwrap();
        assert!(w.push(ProcessId(0), 0, None, b"").is_err(), "full");
        assert_eq!(w.finish(), 66);
        assert_eq!(b, BYTES);
    }

    #[test]
    fn malformed_is_an_error() {
        let bad = |b: &[u8]| {
            assert_eq!(
                Packet::new_checked(b).is_err(),
                parse_checked(b).is_err(),
                "both parses agree"
            );
            Packet::new_checked(b).is_err()
        };
        assert!(bad(&BYTES[..65]));
        assert!(bad(&BYTES[..HEADER_LEN - 1]));
        let mut b = BYTES;
        b[40] = 7; // undefined mode
        assert!(bad(&b[..]));
        let mut b = BYTES;
        b[65] = 1; // a filler with a payload
        assert!(bad(&b[..]));
        let mut b = BYTES;
        b[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(bad(&b[..]), "wraps");
        assert!(!bad(&BYTES[..]));
    }
}
