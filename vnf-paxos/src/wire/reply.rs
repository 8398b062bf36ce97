//! Reply: a coordinator tells a client what became of a request.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | client id |
//! | 8 | 8 | client sequence number |
//! | 16 | 8 | instance that decided it (status 0 only) |
//! | 24 | 1 | status: 0 decided, 1 not the leader (try the hint) |
//! | 25 | 1 | flags: bit 0 the hint is meaningful; other bits reserved |
//! | 26 | 2 | leader hint: the node believed to lead |
//! | 28 | 4 | reserved |

use super::{Field, MsgError, check_flags, check_len, check_room, get_u16, get_u64};
use crate::{ClientId, Instance, NodeId};

/// Length of the message.
pub const LEN: usize = 32;
/// Flag: the leader hint is meaningful.
pub const FLAG_HINT: u8 = 0x01;

mod field {
    use super::Field;
    pub const CLIENT: Field = 0..8;
    pub const SEQ: Field = 8..16;
    pub const INSTANCE: Field = 16..24;
    pub const STATUS: usize = 24;
    pub const FLAGS: usize = 25;
    pub const HINT: Field = 26..28;
    pub const RESERVED: Field = 28..32;
}

/// What became of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Decided in an instance.
    Decided(Instance),
    /// This coordinator does not lead; the leader, if it knows one.
    NotLeader(Option<NodeId>),
}

/// A view of a reply in a buffer.
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

    /// Wraps `buffer` after checking its length, status and flags.
    pub fn new_checked(buffer: T) -> Result<Self, MsgError> {
        let p = Self { buffer };
        check_len("reply", LEN, p.buffer.as_ref().len())?;
        check_flags("reply", p.buffer.as_ref()[field::FLAGS], FLAG_HINT)?;
        p.status()?;
        Ok(p)
    }

    /// The client.
    pub fn client(&self) -> ClientId {
        ClientId(get_u64(self.buffer.as_ref(), field::CLIENT))
    }

    /// The sequence number.
    pub fn seq(&self) -> u64 {
        get_u64(self.buffer.as_ref(), field::SEQ)
    }

    /// The status (always `Ok` for a checked packet).
    pub fn status(&self) -> Result<Status, MsgError> {
        let b = self.buffer.as_ref();
        match b[field::STATUS] {
            0 => Ok(Status::Decided(get_u64(b, field::INSTANCE))),
            1 => Ok(Status::NotLeader(
                (b[field::FLAGS] & FLAG_HINT != 0).then(|| NodeId(get_u16(b, field::HINT))),
            )),
            value => Err(MsgError::BadValue {
                field: "reply status",
                value,
            }),
        }
    }
}

/// A reply, as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The client.
    pub client: ClientId,
    /// Its request's sequence number.
    pub seq: u64,
    /// What became of it.
    pub status: Status,
}

impl Repr {
    /// Reads a packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self, MsgError> {
        Ok(Self {
            client: p.client(),
            seq: p.seq(),
            status: p.status()?,
        })
    }

    /// Writes the message at the front of the packet's buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) -> Result<(), MsgError> {
        let b = p.buffer.as_mut();
        check_room("reply", LEN, b.len())?;
        b[field::CLIENT].copy_from_slice(&self.client.0.to_be_bytes());
        b[field::SEQ].copy_from_slice(&self.seq.to_be_bytes());
        let (status, instance, flags, hint) = match self.status {
            Status::Decided(i) => (0, i, 0, 0),
            Status::NotLeader(None) => (1, 0, 0, 0),
            Status::NotLeader(Some(n)) => (1, 0, FLAG_HINT, n.0),
        };
        b[field::INSTANCE].copy_from_slice(&instance.to_be_bytes());
        b[field::STATUS] = status;
        b[field::FLAGS] = flags;
        b[field::HINT].copy_from_slice(&hint.to_be_bytes());
        b[field::RESERVED].fill(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_status() {
        for status in [
            Status::Decided(9),
            Status::NotLeader(None),
            Status::NotLeader(Some(NodeId(3))),
        ] {
            let r = Repr {
                client: ClientId(1),
                seq: 2,
                status,
            };
            let mut b = [0xffu8; 32];
            r.emit(&mut Packet::new_unchecked(&mut b[..])).unwrap();
            assert_eq!(Repr::parse(&Packet::new_checked(&b[..]).unwrap()), Ok(r));
            b[24] = 2;
            assert!(Packet::new_checked(&b[..]).is_err());
            b[24] = 1;
            b[25] = 2;
            assert!(Packet::new_checked(&b[..]).is_err());
        }
    }
}
