//! Add: start monitoring a process.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | request id, echoed in the [`super::ack`] |
//! | 4 | 1 | flags: bit 0 link present, bit 1 group present, bit 2 configuration present; other bits reserved |
//! | 5 | 3 | reserved |
//! | 8 | 8 | process id |
//! | 16 | 4 | link id (interface index or port), when bit 0 |
//! | 20 | 4 | group id, when bit 1 |
//! | 24 | 4 | window (arrivals averaged), when bit 2 |
//! | 28 | 4 | reserved |
//! | 32 | 8 | heartbeat interval, nanoseconds, when bit 2 |
//! | 40 | 8 | safety margin, nanoseconds, when bit 2 |
//!
//! Fields whose flag is clear are ignored. The configuration's bounds are
//! checked by the detector, not here: the format carries any value.

use std::time::Duration;

use super::{Field, MsgError, check_flags, check_len, check_room, get_u32, get_u64};
use crate::time::duration_nanos;
use crate::{Config, GroupId, LinkId, ProcessId, ProcessSpec};

/// Length of the message.
pub const LEN: usize = 48;
/// Flag: the link field is meaningful.
pub const FLAG_LINK: u8 = 0x01;
/// Flag: the group field is meaningful.
pub const FLAG_GROUP: u8 = 0x02;
/// Flag: window, interval and margin are meaningful.
pub const FLAG_CONFIG: u8 = 0x04;
const FLAGS_KNOWN: u8 = FLAG_LINK | FLAG_GROUP | FLAG_CONFIG;

mod field {
    use super::Field;
    pub const REQUEST: Field = 0..4;
    pub const FLAGS: usize = 4;
    pub const RESERVED1: Field = 5..8;
    pub const PROCESS: Field = 8..16;
    pub const LINK: Field = 16..20;
    pub const GROUP: Field = 20..24;
    pub const WINDOW: Field = 24..28;
    pub const RESERVED2: Field = 28..32;
    pub const INTERVAL: Field = 32..40;
    pub const MARGIN: Field = 40..48;
}

/// A view of an add request in a buffer.
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
        check_len("add", LEN, self.buffer.as_ref().len())?;
        check_flags("add", self.flags(), FLAGS_KNOWN)
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

    /// The process id.
    pub fn process(&self) -> ProcessId {
        ProcessId(get_u64(self.buffer.as_ref(), field::PROCESS))
    }

    /// The link id field, whatever the flag.
    pub fn link(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::LINK)
    }

    /// The group id field, whatever the flag.
    pub fn group(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::GROUP)
    }

    /// The window field, whatever the flag.
    pub fn window(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::WINDOW)
    }

    /// The interval field in nanoseconds, whatever the flag.
    pub fn interval_ns(&self) -> u64 {
        get_u64(self.buffer.as_ref(), field::INTERVAL)
    }

    /// The margin field in nanoseconds, whatever the flag.
    pub fn margin_ns(&self) -> u64 {
        get_u64(self.buffer.as_ref(), field::MARGIN)
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
        let b = self.buffer.as_mut();
        b[field::RESERVED1].fill(0);
        b[field::RESERVED2].fill(0);
    }

    /// Sets the process id.
    pub fn set_process(&mut self, id: ProcessId) {
        self.buffer.as_mut()[field::PROCESS].copy_from_slice(&id.0.to_be_bytes());
    }

    /// Sets the link id field (not its flag).
    pub fn set_link(&mut self, link: u32) {
        self.buffer.as_mut()[field::LINK].copy_from_slice(&link.to_be_bytes());
    }

    /// Sets the group id field (not its flag).
    pub fn set_group(&mut self, group: u32) {
        self.buffer.as_mut()[field::GROUP].copy_from_slice(&group.to_be_bytes());
    }

    /// Sets the window field (not its flag).
    pub fn set_window(&mut self, window: u32) {
        self.buffer.as_mut()[field::WINDOW].copy_from_slice(&window.to_be_bytes());
    }

    /// Sets the interval field (not its flag).
    pub fn set_interval_ns(&mut self, ns: u64) {
        self.buffer.as_mut()[field::INTERVAL].copy_from_slice(&ns.to_be_bytes());
    }

    /// Sets the margin field (not its flag).
    pub fn set_margin_ns(&mut self, ns: u64) {
        self.buffer.as_mut()[field::MARGIN].copy_from_slice(&ns.to_be_bytes());
    }
}

/// An add request, as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Echoed in the acknowledgement.
    pub request_id: u32,
    /// The process and how to monitor it.
    pub spec: ProcessSpec,
}

impl Repr {
    /// Reads a packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self, MsgError> {
        p.check()?;
        let f = p.flags();
        Ok(Self {
            request_id: p.request_id(),
            spec: ProcessSpec {
                id: p.process(),
                link: (f & FLAG_LINK != 0).then(|| LinkId(p.link())),
                group: (f & FLAG_GROUP != 0).then(|| GroupId(p.group())),
                config: (f & FLAG_CONFIG != 0).then(|| Config {
                    interval: Duration::from_nanos(p.interval_ns()),
                    margin: Duration::from_nanos(p.margin_ns()),
                    window: p.window(),
                }),
            },
        })
    }

    /// Bytes the message takes.
    pub const fn buffer_len(&self) -> usize {
        LEN
    }

    /// Writes the message at the front of the packet's buffer. Durations
    /// beyond `u64::MAX` nanoseconds are written as that.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<(), MsgError> {
        check_room("add", LEN, p.buffer.as_ref().len())?;
        let s = &self.spec;
        let mut flags = 0;
        p.set_request_id(self.request_id);
        p.clear_reserved();
        p.set_process(s.id);
        p.set_link(s.link.map_or(0, |l| l.0));
        p.set_group(s.group.map_or(0, |g| g.0));
        if s.link.is_some() {
            flags |= FLAG_LINK;
        }
        if s.group.is_some() {
            flags |= FLAG_GROUP;
        }
        match &s.config {
            Some(c) => {
                flags |= FLAG_CONFIG;
                p.set_window(c.window);
                p.set_interval_ns(duration_nanos(c.interval));
                p.set_margin_ns(duration_nanos(c.margin));
            }
            None => {
                p.set_window(0);
                p.set_interval_ns(0);
                p.set_margin_ns(0);
            }
        }
        p.set_flags(flags);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static BYTES: [u8; 48] = [
        0, 0, 0, 7, 0x05, 0, 0, 0, // request 7, link and config
        0, 0, 0, 0, 0, 0, 0, 42, // process 42
        0, 0, 0, 3, 0, 0, 0, 0, // link 3, no group
        0, 0, 0, 16, 0, 0, 0, 0, // window 16
        0, 0, 0, 0, 0, 0x98, 0x96, 0x80, // 10 ms
        0, 0, 0, 0, 0, 0x4c, 0x4b, 0x40, // 5 ms
    ];

    fn repr() -> Repr {
        Repr {
            request_id: 7,
            spec: ProcessSpec::new(ProcessId(42))
                .behind(LinkId(3))
                .with_config(Config {
                    interval: Duration::from_millis(10),
                    margin: Duration::from_millis(5),
                    window: 16,
                }),
        }
    }

    #[test]
    fn deconstruct_and_parse() {
        let p = Packet::new_checked(&BYTES[..]).unwrap();
        assert_eq!(
            (p.request_id(), p.flags(), p.process()),
            (7, 5, ProcessId(42))
        );
        assert_eq!((p.link(), p.window(), p.interval_ns()), (3, 16, 10_000_000));
        assert_eq!(Repr::parse(&p).unwrap(), repr());
    }

    #[test]
    fn emit() {
        let mut b = [0xffu8; 48];
        repr().emit(&mut Packet::new_unchecked(&mut b[..])).unwrap();
        assert_eq!(b, BYTES);
    }

    #[test]
    fn flags_decide_what_counts() {
        let mut b = BYTES;
        b[4] = 0;
        let r = Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(r.spec, ProcessSpec::new(ProcessId(42)));
        b[4] = 0x08;
        assert_eq!(
            Packet::new_checked(&b[..]).map(|_| ()),
            Err(MsgError::ReservedFlags {
                what: "add",
                got: 8
            })
        );
    }
}
