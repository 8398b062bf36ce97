//! Message formats of the failure-detector service.
//!
//! Every message is the payload of an NFVinc message (the 32-byte common
//! header of [`dataplane::wire::nfvinc`]) whose service is
//! [`Service::Fd`] and whose message type is a [`MsgType`]. Each message
//! has its own module in smoltcp's shape: a `Packet<T: AsRef<[u8]>>` view
//! whose `new_checked` validates once, getters, setters for writable
//! buffers, and a `Repr` with `parse` and `emit`. [`Message`] dispatches on
//! the type. The byte layouts are tabled in the crate documentation.
//!
//! Rules common to every message: integers are big-endian; times are
//! nanoseconds; reserved bytes are sent as zero and ignored on receipt;
//! reserved flag bits must be zero (they would change the meaning);
//! a payload longer than its message is accepted and the rest ignored, so
//! that a later version may append fields. Malformed input of any kind is
//! a [`MsgError`], never a panic.

pub mod ack;
pub mod add;
pub mod event;
pub mod heartbeat;
pub mod query;
pub mod remove;
pub mod reply;
pub mod subscribe;

use dataplane::wire::WireError;
// The field helpers every message module uses, through `super::`.
use dataplane::wire::field::{Field, check_len, check_room, get_u16, get_u32, get_u64};
use dataplane::wire::nfvinc::{self, NfvHeader, NfvRepr, Service};

use crate::detector::{Cause, Evidence, ProcessId, State};

/// Why bytes are not a failure-detector message, or one cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MsgError {
    /// A length or NFVinc-header problem (truncated, no room, bad magic…).
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The NFVinc header is for another service.
    #[error("NFVinc message for {0:?}, not the failure detector")]
    WrongService(Service),
    /// The message type is not one of [`MsgType`].
    #[error("unknown failure-detector message type {0}")]
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
    /// An entry index past the entry count.
    #[error("entry {index} of {count}")]
    NoEntry {
        /// The index asked for.
        index: usize,
        /// How many entries there are.
        count: usize,
    },
}

/// The failure-detector message types, carried in the NFVinc header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MsgType {
    /// A process is alive ([`heartbeat`]).
    Heartbeat = 1,
    /// Start monitoring a process ([`add`]).
    Add = 2,
    /// Stop monitoring a process ([`remove`]).
    Remove = 3,
    /// Ask for the state of one process or all ([`query`]).
    Query = 4,
    /// The answer to a query ([`reply`]).
    QueryReply = 5,
    /// Ask for state changes to be pushed, or stop them ([`subscribe`]).
    Subscribe = 6,
    /// A state change, pushed to subscribers ([`event`]).
    StateChange = 7,
    /// The outcome of an add, remove or subscribe ([`ack`]).
    Ack = 8,
}

impl TryFrom<u8> for MsgType {
    type Error = MsgError;

    fn try_from(v: u8) -> Result<Self, MsgError> {
        Ok(match v {
            1 => MsgType::Heartbeat,
            2 => MsgType::Add,
            3 => MsgType::Remove,
            4 => MsgType::Query,
            5 => MsgType::QueryReply,
            6 => MsgType::Subscribe,
            7 => MsgType::StateChange,
            8 => MsgType::Ack,
            other => return Err(MsgError::UnknownType(other)),
        })
    }
}

impl From<MsgType> for u8 {
    fn from(t: MsgType) -> u8 {
        t as u8
    }
}

/// Which processes a query or subscription is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// One process.
    One(crate::ProcessId),
    /// Every monitored process.
    All,
}

impl From<State> for u8 {
    fn from(s: State) -> u8 {
        match s {
            State::Correct => 0,
            State::Suspected => 1,
            State::Unreachable => 2,
        }
    }
}

impl TryFrom<u8> for State {
    type Error = MsgError;

    fn try_from(v: u8) -> Result<Self, MsgError> {
        Ok(match v {
            0 => State::Correct,
            1 => State::Suspected,
            2 => State::Unreachable,
            value => {
                return Err(MsgError::BadValue {
                    field: "state",
                    value,
                });
            }
        })
    }
}

impl From<Cause> for u8 {
    fn from(c: Cause) -> u8 {
        match c {
            Cause::Timeout => 0,
            Cause::Heartbeat => 1,
            Cause::Traffic => 2,
            Cause::LinkDown => 3,
            Cause::LinkUp(Evidence::Heartbeat) => 4,
            Cause::LinkUp(Evidence::Traffic) => 5,
        }
    }
}

impl TryFrom<u8> for Cause {
    type Error = MsgError;

    fn try_from(v: u8) -> Result<Self, MsgError> {
        Ok(match v {
            0 => Cause::Timeout,
            1 => Cause::Heartbeat,
            2 => Cause::Traffic,
            3 => Cause::LinkDown,
            4 => Cause::LinkUp(Evidence::Heartbeat),
            5 => Cause::LinkUp(Evidence::Traffic),
            value => {
                return Err(MsgError::BadValue {
                    field: "cause",
                    value,
                });
            }
        })
    }
}

/// `ReservedFlags` if `flags` has a bit outside `allowed`.
#[inline]
fn check_flags(what: &'static str, flags: u8, allowed: u8) -> Result<(), MsgError> {
    if flags & !allowed != 0 {
        return Err(MsgError::ReservedFlags { what, got: flags });
    }
    Ok(())
}

/// A failure-detector message, as values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// A heartbeat.
    Heartbeat(heartbeat::Repr),
    /// Start monitoring a process.
    Add(add::Repr),
    /// Stop monitoring a process.
    Remove(remove::Repr),
    /// A query.
    Query(query::Repr),
    /// A query's answer: its header and its entries, read from the buffer.
    QueryReply(reply::Repr, reply::Entries<'a>),
    /// A subscription or its end.
    Subscribe(subscribe::Repr),
    /// A state change.
    StateChange(event::Repr),
    /// An acknowledgement.
    Ack(ack::Repr),
}

impl<'a> Message<'a> {
    /// Reads the payload of an NFVinc message of type `msg_type`.
    pub fn parse(msg_type: u8, payload: &'a [u8]) -> Result<Self, MsgError> {
        Ok(match MsgType::try_from(msg_type)? {
            MsgType::Heartbeat => Message::Heartbeat(heartbeat::Repr::parse(
                &heartbeat::Packet::new_checked(payload)?,
            )),
            MsgType::Add => Message::Add(add::Repr::parse(&add::Packet::new_checked(payload)?)?),
            MsgType::Remove => {
                Message::Remove(remove::Repr::parse(&remove::Packet::new_checked(payload)?))
            }
            MsgType::Query => {
                Message::Query(query::Repr::parse(&query::Packet::new_checked(payload)?)?)
            }
            MsgType::QueryReply => {
                let p = reply::Packet::new_checked(payload)?;
                Message::QueryReply(reply::Repr::parse(&p), p.into_entries())
            }
            MsgType::Subscribe => Message::Subscribe(subscribe::Repr::parse(
                &subscribe::Packet::new_checked(payload)?,
            )?),
            MsgType::StateChange => {
                Message::StateChange(event::Repr::parse(&event::Packet::new_checked(payload)?)?)
            }
            MsgType::Ack => Message::Ack(ack::Repr::parse(&ack::Packet::new_checked(payload)?)?),
        })
    }

    /// Reads a whole NFVinc message (a UDP payload): checks the common
    /// header, that it is for the failure detector, and parses the payload.
    pub fn parse_nfv(message: &'a [u8]) -> Result<(NfvRepr, Self), MsgError> {
        let h = NfvHeader::new_checked(message)?;
        let repr = NfvRepr::parse(&h)?;
        if repr.service != Service::Fd {
            return Err(MsgError::WrongService(repr.service));
        }
        let payload = &message[nfvinc::HEADER_LEN..h.total_len()];
        Ok((repr, Self::parse(repr.msg_type, payload)?))
    }

    /// The process a heartbeat message (a UDP payload) is from, read in
    /// place: `Some` exactly when [`Message::parse_nfv`] would return a
    /// [`Message::Heartbeat`], at a fraction of its cost. A heartbeat is
    /// nearly every message the detector receives; building the general
    /// representation for each (the header's and the message's, moved
    /// through `Result`s) cost more than the detector's own work.
    #[inline]
    pub fn heartbeat_process(message: &[u8]) -> Option<ProcessId> {
        let header: &[u8; nfvinc::HEADER_LEN] =
            message.get(..nfvinc::HEADER_LEN)?.try_into().ok()?;
        let flags = header[5];
        let payload_len = usize::from(u16::from_be_bytes([header[6], header[7]]));
        let tag = u128::from_ne_bytes(header[16..32].try_into().ok()?);
        let [m0, m1] = nfvinc::MAGIC.to_be_bytes();
        let ok = header[..5]
            == [
                m0,
                m1,
                nfvinc::VERSION,
                Service::Fd as u8,
                MsgType::Heartbeat as u8,
            ]
            && flags & nfvinc::FLAGS_RESERVED == 0
            && (flags & nfvinc::FLAG_AUTH != 0 || tag == 0)
            && payload_len >= heartbeat::LEN
            && message.len() >= nfvinc::HEADER_LEN + payload_len;
        if !ok {
            return None;
        }
        let id = message.get(nfvinc::HEADER_LEN..nfvinc::HEADER_LEN + 8)?;
        Some(ProcessId(u64::from_be_bytes(id.try_into().ok()?)))
    }

    /// Its type.
    pub fn msg_type(&self) -> MsgType {
        match self {
            Message::Heartbeat(_) => MsgType::Heartbeat,
            Message::Add(_) => MsgType::Add,
            Message::Remove(_) => MsgType::Remove,
            Message::Query(_) => MsgType::Query,
            Message::QueryReply(..) => MsgType::QueryReply,
            Message::Subscribe(_) => MsgType::Subscribe,
            Message::StateChange(_) => MsgType::StateChange,
            Message::Ack(_) => MsgType::Ack,
        }
    }

    /// Bytes its payload takes.
    pub fn payload_len(&self) -> usize {
        match self {
            Message::Heartbeat(_) => heartbeat::LEN,
            Message::Add(_) => add::LEN,
            Message::Remove(_) => remove::LEN,
            Message::Query(_) => query::LEN,
            Message::QueryReply(_, e) => reply::buffer_len(e.len()),
            Message::Subscribe(_) => subscribe::LEN,
            Message::StateChange(_) => event::LEN,
            Message::Ack(_) => ack::LEN,
        }
    }

    /// Writes the payload at the front of `payload`; returns its length.
    pub fn emit_payload(&self, payload: &mut [u8]) -> Result<usize, MsgError> {
        match self {
            Message::Heartbeat(r) => {
                r.emit(&mut heartbeat::Packet::new_unchecked(&mut *payload))?
            }
            Message::Add(r) => r.emit(&mut add::Packet::new_unchecked(&mut *payload))?,
            Message::Remove(r) => r.emit(&mut remove::Packet::new_unchecked(&mut *payload))?,
            Message::Query(r) => r.emit(&mut query::Packet::new_unchecked(&mut *payload))?,
            Message::QueryReply(r, entries) => {
                let count = entries.len();
                let r = reply::Repr {
                    count: u16::try_from(count).map_err(|_| WireError::TooLong {
                        what: "query reply entries",
                        len: count,
                        max: usize::from(u16::MAX),
                    })?,
                    ..*r
                };
                let mut p = reply::Packet::new_unchecked(&mut *payload);
                r.emit(&mut p)?;
                for (i, e) in entries.clone().enumerate() {
                    p.set_entry(i, &e)?;
                }
            }
            Message::Subscribe(r) => {
                r.emit(&mut subscribe::Packet::new_unchecked(&mut *payload))?
            }
            Message::StateChange(r) => r.emit(&mut event::Packet::new_unchecked(&mut *payload))?,
            Message::Ack(r) => r.emit(&mut ack::Packet::new_unchecked(&mut *payload))?,
        }
        Ok(self.payload_len())
    }

    /// Writes a whole NFVinc message (header without tag, then payload) at
    /// the front of `buf`, the UDP payload; returns its length.
    pub fn emit(&self, session_id: u64, buf: &mut [u8]) -> Result<usize, MsgError> {
        let repr = NfvRepr {
            service: Service::Fd,
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
    use super::*;
    use crate::{Config, GroupId, LinkId, ProcessId, ProcessSpec, Time, Transition};
    use std::time::Duration;

    fn samples() -> Vec<Message<'static>> {
        vec![
            Message::Heartbeat(heartbeat::Repr {
                process: ProcessId(7),
                seq: 42,
                sent_ns: 123_456_789,
            }),
            Message::Add(add::Repr {
                request_id: 1,
                spec: ProcessSpec::new(ProcessId(8))
                    .behind(LinkId(3))
                    .in_group(GroupId(4))
                    .with_config(Config::new(
                        Duration::from_millis(10),
                        Duration::from_millis(5),
                    )),
            }),
            Message::Remove(remove::Repr {
                request_id: 2,
                process: ProcessId(8),
            }),
            Message::Query(query::Repr {
                request_id: 3,
                target: Target::All,
            }),
            Message::Subscribe(subscribe::Repr {
                request_id: 4,
                target: Target::One(ProcessId(9)),
                unsubscribe: true,
            }),
            Message::StateChange(event::Repr::from(Transition {
                seq: 5,
                process: ProcessId(9),
                from: State::Correct,
                to: State::Suspected,
                at: Time::from_millis(25),
                cause: Cause::Timeout,
            })),
            Message::Ack(ack::Repr {
                request_id: 6,
                status: ack::Status::DuplicateProcess,
            }),
        ]
    }

    #[test]
    fn every_message_round_trips_through_an_nfvinc_frame() {
        for m in samples() {
            let mut buf = [0u8; 256];
            let n = m.emit(0xabcd, &mut buf).unwrap();
            assert_eq!(n, nfvinc::HEADER_LEN + m.payload_len());
            let (h, back) = Message::parse_nfv(&buf[..n]).unwrap();
            assert_eq!(h.session_id, 0xabcd);
            assert_eq!(h.msg_type, u8::from(m.msg_type()));
            assert_eq!(back, m);
        }
    }

    fn heartbeat_of(m: &[u8]) -> Option<ProcessId> {
        match Message::parse_nfv(m) {
            Ok((_, Message::Heartbeat(h))) => Some(h.process),
            _ => None,
        }
    }

    #[test]
    fn the_heartbeat_fast_path_reads_every_sample_like_the_parser() {
        for m in samples() {
            let mut buf = [0u8; 256];
            let n = m.emit(0xabcd, &mut buf).unwrap();
            let got = Message::heartbeat_process(&buf[..n]);
            assert_eq!(got, heartbeat_of(&buf[..n]), "{m:?}");
            assert_eq!(got.is_some(), matches!(m, Message::Heartbeat(_)));
        }
    }

    proptest::proptest! {
        /// Any byte of a heartbeat changed, the message cut or lengthened:
        /// the fast path and the parser agree.
        #[test]
        fn the_heartbeat_fast_path_agrees_with_the_parser(
            at in 0usize..64,
            byte in proptest::prelude::any::<u8>(),
            len in 0usize..80,
            auth in proptest::prelude::any::<bool>(),
        ) {
            let mut buf = [0u8; 80];
            let hb = Message::Heartbeat(heartbeat::Repr { process: ProcessId(0x1122_3344_5566_7788), seq: 1, sent_ns: 2 });
            hb.emit(9, &mut buf).unwrap();
            if auth {
                buf[5] |= nfvinc::FLAG_AUTH;
                buf[20] = 0x5a;
            }
            buf[at] = byte;
            let m = &buf[..len];
            proptest::prop_assert_eq!(Message::heartbeat_process(m), heartbeat_of(m));
        }
    }

    #[test]
    fn query_reply_round_trips() {
        let entries = [
            reply::EntryRepr {
                process: ProcessId(1),
                state: State::Correct,
                link: Some(LinkId(2)),
                group: None,
                since: Time::from_millis(3),
            },
            reply::EntryRepr {
                process: ProcessId(4),
                state: State::Unreachable,
                link: None,
                group: Some(GroupId(5)),
                since: Time::from_millis(6),
            },
        ];
        let mut payload = [0u8; 100];
        let n = reply::emit_from(9, &mut entries.iter().copied().peekable(), &mut payload).unwrap();
        assert_eq!(n, reply::buffer_len(2));
        let m = Message::parse(MsgType::QueryReply.into(), &payload[..n]).unwrap();
        let Message::QueryReply(r, e) = &m else {
            panic!("{m:?}")
        };
        assert_eq!((r.request_id, r.count, r.more), (9, 2, false));
        assert_eq!(e.clone().collect::<Vec<_>>(), entries);
        let mut again = [0u8; 100];
        assert_eq!(m.emit_payload(&mut again).unwrap(), n);
        assert_eq!(again[..n], payload[..n]);
    }

    #[test]
    fn other_services_and_types_are_refused() {
        let m = &samples()[0];
        let mut buf = [0u8; 64];
        let n = m.emit(1, &mut buf).unwrap();
        buf[3] = Service::Consensus.into();
        assert_eq!(
            Message::parse_nfv(&buf[..n]),
            Err(MsgError::WrongService(Service::Consensus))
        );
        assert_eq!(Message::parse(0, &buf), Err(MsgError::UnknownType(0)));
        assert_eq!(Message::parse(9, &buf), Err(MsgError::UnknownType(9)));
    }

    #[test]
    fn short_buffers_are_errors_on_both_sides() {
        for m in samples() {
            let mut buf = [0u8; 256];
            let n = m.emit_payload(&mut buf).unwrap();
            let t = u8::from(m.msg_type());
            assert!(matches!(
                Message::parse(t, &buf[..n - 1]),
                Err(MsgError::Wire(WireError::Truncated { .. }))
            ));
            assert!(matches!(
                m.emit_payload(&mut buf[..n - 1]),
                Err(MsgError::Wire(WireError::NoRoom { .. }))
            ));
            assert!(m.emit(0, &mut buf[..nfvinc::HEADER_LEN + n - 1]).is_err());
        }
    }

    #[test]
    fn codes_round_trip() {
        for s in [State::Correct, State::Suspected, State::Unreachable] {
            assert_eq!(State::try_from(u8::from(s)), Ok(s));
        }
        for v in 0..=5u8 {
            assert_eq!(u8::from(Cause::try_from(v).unwrap()), v);
        }
        for v in 1..=8u8 {
            assert_eq!(u8::from(MsgType::try_from(v).unwrap()), v);
        }
        assert!(State::try_from(3).is_err());
        assert!(Cause::try_from(6).is_err());
    }
}
