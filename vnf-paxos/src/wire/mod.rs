//! Message formats of the consensus service.
//!
//! Every message is the payload of an NFVinc message (the 32-byte common
//! header of [`dataplane::wire::nfvinc`]) whose service is
//! [`Service::Consensus`] and whose message type is a [`MsgType`]. Each
//! message has its own module in smoltcp's shape: a `Packet<T: AsRef<[u8]>>`
//! view whose `new_checked` validates the fixed part, getters, and a `Repr`
//! with `parse` and `emit`. Messages that carry values (promise, accept,
//! accepted, decided) share the value and entry-list layout of [`value`];
//! their entries are validated as they are read, so `Repr::parse` returns a
//! `Result`. [`Message`] dispatches on the type. The byte layouts are
//! tabled in the crate documentation.
//!
//! Rules common to every message: integers are big-endian; a ballot is one
//! 64-bit number (round, coordinator, incarnation: see [`crate::Ballot`]);
//! reserved bytes are sent as zero and ignored on receipt; reserved flag
//! bits must be zero; bytes after a message are ignored, so that a later
//! version may append fields. Malformed input of any kind is a
//! [`MsgError`], never a panic.

pub mod accept;
pub mod accepted;
pub mod admit;
pub mod decided;
pub mod fetch;
pub mod heartbeat;
pub mod join;
pub mod nack;
pub mod prepare;
pub mod promise;
pub mod replies;
pub mod reply;
pub mod request;
pub mod submit;
pub mod value;
pub mod voted;

use dataplane::wire::WireError;
use dataplane::wire::field::{Field, check_len, check_room, get_u16, get_u32, get_u64};
use dataplane::wire::nfvinc::{self, NfvHeader, NfvRepr, Service};

use crate::AcceptorId;

/// Why bytes are not a consensus message, or one cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MsgError {
    /// A length or NFVinc-header problem (truncated, no room, bad magic…).
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The NFVinc header is for another service.
    #[error("NFVinc message for {0:?}, not consensus")]
    WrongService(Service),
    /// The message type is not one of [`MsgType`].
    #[error("unknown consensus message type {0}")]
    UnknownType(u8),
    /// Reserved flag bits are set.
    #[error("{what}: reserved flag bits set in {got:#04x}")]
    ReservedFlags {
        /// Which message.
        what: &'static str,
        /// The flags byte.
        got: u8,
    },
    /// A field holds a value with no meaning.
    #[error("{field}: undefined value {value}")]
    BadValue {
        /// Which field.
        field: &'static str,
        /// The value found.
        value: u8,
    },
    /// More items than a count field can express.
    #[error("too many {what} for the message's count field")]
    TooMany {
        /// What there are too many of.
        what: &'static str,
    },
}

/// The consensus message types, carried in the NFVinc header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MsgType {
    /// Phase 1A ([`prepare`]).
    Prepare = 1,
    /// Phase 1B ([`promise`]).
    Promise = 2,
    /// Phase 2A ([`accept`]).
    Accept = 3,
    /// Phase 2B ([`accepted`]).
    Accepted = 4,
    /// A refusal by an acceptor ([`nack`]).
    Nack = 5,
    /// The leader's heartbeat ([`heartbeat`]).
    Heartbeat = 6,
    /// A client's command ([`request`]).
    Request = 7,
    /// The answer to a client ([`reply`]).
    Reply = 8,
    /// A learner asks for missing instances ([`fetch`]).
    Fetch = 9,
    /// Instances known decided ([`decided`]).
    Decided = 10,
    /// An acceptor asks to be admitted ([`join`]).
    Join = 11,
    /// A leader admits an acceptor ([`admit`]).
    Admit = 12,
    /// A client's commands, many per datagram ([`submit`]).
    Submit = 13,
    /// The answer to many of a client's commands ([`replies`]).
    Replies = 14,
    /// Phase 2B without values, a durable acceptor's vote ([`voted`]).
    Voted = 15,
}

impl TryFrom<u8> for MsgType {
    type Error = MsgError;

    fn try_from(v: u8) -> Result<Self, MsgError> {
        Ok(match v {
            1 => MsgType::Prepare,
            2 => MsgType::Promise,
            3 => MsgType::Accept,
            4 => MsgType::Accepted,
            5 => MsgType::Nack,
            6 => MsgType::Heartbeat,
            7 => MsgType::Request,
            8 => MsgType::Reply,
            9 => MsgType::Fetch,
            10 => MsgType::Decided,
            11 => MsgType::Join,
            12 => MsgType::Admit,
            13 => MsgType::Submit,
            14 => MsgType::Replies,
            15 => MsgType::Voted,
            other => return Err(MsgError::UnknownType(other)),
        })
    }
}

impl From<MsgType> for u8 {
    fn from(t: MsgType) -> u8 {
        t as u8
    }
}

/// An acceptor id at `at`: slot (2), reserved (2), incarnation (4).
#[inline]
fn get_acceptor(b: &[u8], at: usize) -> AcceptorId {
    AcceptorId {
        slot: get_u16(b, at..at + 2),
        incarnation: get_u32(b, at + 4..at + 8),
    }
}

/// Writes an acceptor id at `at`, reserved bytes zeroed.
#[inline]
fn set_acceptor(b: &mut [u8], at: usize, id: AcceptorId) {
    b[at..at + 2].copy_from_slice(&id.slot.to_be_bytes());
    b[at + 2..at + 4].fill(0);
    b[at + 4..at + 8].copy_from_slice(&id.incarnation.to_be_bytes());
}

/// `ReservedFlags` if `flags` has a bit outside `allowed`.
#[inline]
fn check_flags(what: &'static str, flags: u8, allowed: u8) -> Result<(), MsgError> {
    if flags & !allowed != 0 {
        return Err(MsgError::ReservedFlags { what, got: flags });
    }
    Ok(())
}

/// A consensus message, as values: what the protocol cores take and give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Phase 1A.
    Prepare(prepare::Repr),
    /// Phase 1B.
    Promise(promise::Repr),
    /// Phase 2A.
    Accept(accept::Repr),
    /// Phase 2B.
    Accepted(accepted::Repr),
    /// A refusal.
    Nack(nack::Repr),
    /// The leader's heartbeat.
    Heartbeat(heartbeat::Repr),
    /// A client's command.
    Request(request::Repr),
    /// The answer to a client.
    Reply(reply::Repr),
    /// A learner's request for missing instances.
    Fetch(fetch::Repr),
    /// Instances known decided.
    Decided(decided::Repr),
    /// An acceptor asks to be admitted.
    Join(join::Repr),
    /// A leader admits an acceptor.
    Admit(admit::Repr),
    /// A client's commands, many per datagram.
    Submit(submit::Repr),
    /// The answer to many of a client's commands.
    Replies(replies::Repr),
    /// Phase 2B without values.
    Voted(voted::Repr),
}

impl Message {
    /// Reads the payload of an NFVinc message of type `msg_type`.
    pub fn parse(msg_type: u8, payload: &[u8]) -> Result<Self, MsgError> {
        Ok(match MsgType::try_from(msg_type)? {
            MsgType::Prepare => Message::Prepare(prepare::Repr::parse(
                &prepare::Packet::new_checked(payload)?,
            )),
            MsgType::Promise => Message::Promise(promise::Repr::parse(
                &promise::Packet::new_checked(payload)?,
            )?),
            MsgType::Accept => {
                Message::Accept(accept::Repr::parse(&accept::Packet::new_checked(payload)?)?)
            }
            MsgType::Accepted => Message::Accepted(accepted::Repr::parse(
                &accepted::Packet::new_checked(payload)?,
            )?),
            MsgType::Nack => Message::Nack(nack::Repr::parse(&nack::Packet::new_checked(payload)?)),
            MsgType::Heartbeat => Message::Heartbeat(heartbeat::Repr::parse(
                &heartbeat::Packet::new_checked(payload)?,
            )),
            MsgType::Request => Message::Request(request::Repr::parse(
                &request::Packet::new_checked(payload)?,
            )),
            MsgType::Reply => {
                Message::Reply(reply::Repr::parse(&reply::Packet::new_checked(payload)?)?)
            }
            MsgType::Fetch => {
                Message::Fetch(fetch::Repr::parse(&fetch::Packet::new_checked(payload)?))
            }
            MsgType::Decided => Message::Decided(decided::Repr::parse(
                &decided::Packet::new_checked(payload)?,
            )?),
            MsgType::Join => Message::Join(join::Repr::parse(&join::Packet::new_checked(payload)?)),
            MsgType::Admit => {
                Message::Admit(admit::Repr::parse(&admit::Packet::new_checked(payload)?))
            }
            MsgType::Submit => {
                Message::Submit(submit::Repr::parse(&submit::Packet::new_checked(payload)?)?)
            }
            MsgType::Replies => Message::Replies(replies::Repr::parse(
                &replies::Packet::new_checked(payload)?,
            )?),
            MsgType::Voted => {
                Message::Voted(voted::Repr::parse(&voted::Packet::new_checked(payload)?))
            }
        })
    }

    /// Reads a whole NFVinc message (a UDP payload): checks the common
    /// header, that it is for consensus, and parses the payload.
    pub fn parse_nfv(message: &[u8]) -> Result<(NfvRepr, Self), MsgError> {
        let h = NfvHeader::new_checked(message)?;
        let repr = NfvRepr::parse(&h)?;
        if repr.service != Service::Consensus {
            return Err(MsgError::WrongService(repr.service));
        }
        Ok((repr, Self::parse(repr.msg_type, h.payload())?))
    }

    /// Its type.
    pub fn msg_type(&self) -> MsgType {
        match self {
            Message::Prepare(_) => MsgType::Prepare,
            Message::Promise(_) => MsgType::Promise,
            Message::Accept(_) => MsgType::Accept,
            Message::Accepted(_) => MsgType::Accepted,
            Message::Nack(_) => MsgType::Nack,
            Message::Heartbeat(_) => MsgType::Heartbeat,
            Message::Request(_) => MsgType::Request,
            Message::Reply(_) => MsgType::Reply,
            Message::Fetch(_) => MsgType::Fetch,
            Message::Decided(_) => MsgType::Decided,
            Message::Join(_) => MsgType::Join,
            Message::Admit(_) => MsgType::Admit,
            Message::Submit(_) => MsgType::Submit,
            Message::Replies(_) => MsgType::Replies,
            Message::Voted(_) => MsgType::Voted,
        }
    }

    /// Bytes its payload takes.
    pub fn payload_len(&self) -> usize {
        match self {
            Message::Prepare(_) => prepare::LEN,
            Message::Promise(r) => r.buffer_len(),
            Message::Accept(r) => r.buffer_len(),
            Message::Accepted(r) => r.buffer_len(),
            Message::Nack(_) => nack::LEN,
            Message::Heartbeat(r) => r.buffer_len(),
            Message::Request(r) => r.buffer_len(),
            Message::Reply(_) => reply::LEN,
            Message::Fetch(_) => fetch::LEN,
            Message::Decided(r) => r.buffer_len(),
            Message::Join(_) => join::LEN,
            Message::Admit(_) => admit::LEN,
            Message::Submit(r) => r.buffer_len(),
            Message::Replies(r) => r.buffer_len(),
            Message::Voted(r) => r.buffer_len(),
        }
    }

    /// Writes the payload at the front of `payload`; returns its length.
    pub fn emit_payload(&self, payload: &mut [u8]) -> Result<usize, MsgError> {
        let b = &mut *payload;
        match self {
            Message::Prepare(r) => r.emit(&mut prepare::Packet::new_unchecked(b))?,
            Message::Promise(r) => r.emit(&mut promise::Packet::new_unchecked(b))?,
            Message::Accept(r) => r.emit(&mut accept::Packet::new_unchecked(b))?,
            Message::Accepted(r) => r.emit(&mut accepted::Packet::new_unchecked(b))?,
            Message::Nack(r) => r.emit(&mut nack::Packet::new_unchecked(b))?,
            Message::Heartbeat(r) => r.emit(&mut heartbeat::Packet::new_unchecked(b))?,
            Message::Request(r) => r.emit(&mut request::Packet::new_unchecked(b))?,
            Message::Reply(r) => r.emit(&mut reply::Packet::new_unchecked(b))?,
            Message::Fetch(r) => r.emit(&mut fetch::Packet::new_unchecked(b))?,
            Message::Decided(r) => r.emit(&mut decided::Packet::new_unchecked(b))?,
            Message::Join(r) => r.emit(&mut join::Packet::new_unchecked(b))?,
            Message::Admit(r) => r.emit(&mut admit::Packet::new_unchecked(b))?,
            Message::Submit(r) => r.emit(&mut submit::Packet::new_unchecked(b))?,
            Message::Replies(r) => r.emit(&mut replies::Packet::new_unchecked(b))?,
            Message::Voted(r) => r.emit(&mut voted::Packet::new_unchecked(b))?,
        }
        Ok(self.payload_len())
    }

    /// Writes a whole NFVinc message (header without tag, then payload) at
    /// the front of `buf`, the UDP payload; returns its length.
    pub fn emit(&self, session_id: u64, buf: &mut [u8]) -> Result<usize, MsgError> {
        let repr = NfvRepr {
            service: Service::Consensus,
            msg_type: self.msg_type().into(),
            session_id,
            tag: None,
            payload_len: self.payload_len(),
        };
        repr.emit(&mut NfvHeader::new_unchecked(&mut *buf))?;
        self.emit_payload(&mut buf[nfvinc::HEADER_LEN..])?;
        Ok(repr.buffer_len())
    }
}

#[cfg(test)]
mod tests {
    use super::value::Entry;
    use super::*;
    use crate::{Ballot, ClientId, Command, NodeId, Value};

    fn value() -> Value {
        Value::batch(vec![Command {
            client: ClientId(5),
            seq: 6,
            payload: (&b"set x 1"[..]).into(),
        }])
    }

    fn samples() -> Vec<Message> {
        let b = Ballot::from_u64(0x0000_0002_0001_0003);
        let a = AcceptorId {
            slot: 2,
            incarnation: 7,
        };
        let entries = vec![
            Entry {
                instance: 4,
                ballot: Ballot::ZERO,
                value: value(),
            },
            Entry {
                instance: 9,
                ballot: Ballot::ZERO,
                value: Value::noop(),
            },
        ];
        let mut with_ballots = entries.clone();
        with_ballots[0].ballot = b;
        vec![
            Message::Prepare(prepare::Repr { ballot: b, from: 3 }),
            Message::Promise(promise::Repr {
                ballot: b,
                acceptor: a,
                trim: 1,
                lo: 3,
                hi: u64::MAX,
                entries: with_ballots,
            }),
            Message::Accept(accept::Repr {
                ballot: b,
                committed: 4,
                entries: entries.clone(),
            }),
            Message::Accepted(accepted::Repr {
                ballot: b,
                acceptor: a,
                entries: entries.clone(),
            }),
            Message::Nack(nack::Repr {
                refused: Ballot::ZERO,
                promised: b,
                acceptor: a,
            }),
            Message::Heartbeat(heartbeat::Repr {
                ballot: b,
                committed: 8,
                incarnations: vec![0, 1, 2],
            }),
            Message::Request(request::Repr {
                command: value().commands()[0].clone(),
            }),
            Message::Reply(reply::Repr {
                client: ClientId(5),
                seq: 6,
                status: reply::Status::NotLeader(Some(NodeId(1))),
            }),
            Message::Fetch(fetch::Repr { from: 2, to: 10 }),
            Message::Decided(decided::Repr { entries }),
            Message::Join(join::Repr { acceptor: a }),
            Message::Admit(admit::Repr {
                ballot: b,
                trim: 12,
                acceptor: a,
            }),
            Message::Submit(submit::Repr {
                commands: value().commands().to_vec(),
            }),
            Message::Replies(replies::Repr {
                client: ClientId(5),
                status: replies::Status::Decided,
                runs: vec![replies::Run {
                    first: 3,
                    last: 9,
                    instance: 4,
                }],
            }),
            Message::Voted(voted::Repr {
                ballot: b,
                acceptor: a,
                instances: vec![4, 9],
            }),
        ]
    }

    #[test]
    fn every_message_round_trips_through_an_nfvinc_frame() {
        for m in samples() {
            let mut buf = [0u8; 512];
            let n = m.emit(0xabcd, &mut buf).unwrap();
            assert_eq!(n, nfvinc::HEADER_LEN + m.payload_len());
            let (h, back) = Message::parse_nfv(&buf[..n]).unwrap();
            assert_eq!(h.session_id, 0xabcd);
            assert_eq!(h.msg_type, u8::from(m.msg_type()));
            assert_eq!(back, m);
        }
    }

    #[test]
    fn short_buffers_are_errors_on_both_sides() {
        for m in samples() {
            let mut buf = [0u8; 512];
            let n = m.emit_payload(&mut buf).unwrap();
            let t = u8::from(m.msg_type());
            assert!(Message::parse(t, &buf[..n - 1]).is_err(), "{m:?}");
            assert!(matches!(
                m.emit_payload(&mut buf[..n - 1]),
                Err(MsgError::Wire(WireError::NoRoom { .. }))
            ));
        }
    }

    #[test]
    fn other_services_and_types_are_refused() {
        let m = &samples()[0];
        let mut buf = [0u8; 64];
        let n = m.emit(1, &mut buf).unwrap();
        buf[3] = Service::Fd.into();
        assert_eq!(
            Message::parse_nfv(&buf[..n]),
            Err(MsgError::WrongService(Service::Fd))
        );
        assert_eq!(Message::parse(0, &buf), Err(MsgError::UnknownType(0)));
        assert_eq!(Message::parse(16, &buf), Err(MsgError::UnknownType(16)));
        for v in 1..=15u8 {
            assert_eq!(u8::from(MsgType::try_from(v).unwrap()), v);
        }
    }
}
