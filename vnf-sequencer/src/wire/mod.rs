//! Message formats of the sequencer service.
//!
//! Every message is the payload of an NFVinc message (the 32-byte common
//! header of [`dataplane::wire::nfvinc`]) whose service is
//! [`Service::Sequencer`] and whose message type is a [`MsgType`]; the
//! header's session id names the group. Each message has its own module in
//! smoltcp's shape: a `Packet<T: AsRef<[u8]>>` view whose `new_checked`
//! validates once, getters, setters for writable buffers, and a `Repr` with
//! `parse` and `emit`. [`Message`] dispatches on the type. The byte layouts
//! are tabled in the crate documentation.
//!
//! Rules common to every message: integers are big-endian; reserved bytes
//! are sent as zero and ignored on receipt; a payload longer than its
//! message is accepted and the rest ignored, so that a later version may
//! append fields. Malformed input of any kind is a [`MsgError`], never a
//! panic.

pub mod batch;
pub mod data;
pub mod heartbeat;
pub mod nack;
pub mod new_epoch;
pub mod report;
pub mod too_old;

use std::ops::Range;

use dataplane::wire::WireError;
use dataplane::wire::nfvinc::{self, NfvHeader, NfvRepr, Service};

use crate::Mode;

/// Why bytes are not a sequencer message, or one cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MsgError {
    /// A length or NFVinc-header problem (truncated, no room, bad magic…).
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The NFVinc header is for another service.
    #[error("NFVinc message for {0:?}, not the sequencer")]
    WrongService(Service),
    /// The message type is not one of [`MsgType`].
    #[error("unknown sequencer message type {0}")]
    UnknownType(u8),
    /// A field holds a value with no meaning.
    #[error("{field}: undefined value {value}")]
    BadValue {
        /// Which field.
        field: &'static str,
        /// The value found.
        value: u64,
    },
}

/// The sequencer message types, carried in the NFVinc header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MsgType {
    /// A member asks for a message to be broadcast ([`data`]).
    Data = 1,
    /// Stamped messages from the sequencer to the group ([`batch`]).
    Batch = 2,
    /// Stamped messages re-sent by a peer or during recovery ([`batch`]).
    Repair = 3,
    /// A request for stamped messages by number ([`nack`]).
    Nack = 4,
    /// The sequencer no longer holds what a NACK asked for ([`too_old`]).
    TooOld = 5,
    /// The sequencer's epoch and how far it has stamped ([`heartbeat`]).
    Heartbeat = 6,
    /// A new sequencer announces its epoch ([`new_epoch`]).
    NewEpoch = 7,
    /// A member's state, for a new sequencer ([`report`]).
    EpochReport = 8,
}

impl TryFrom<u8> for MsgType {
    type Error = MsgError;

    fn try_from(v: u8) -> Result<Self, MsgError> {
        Ok(match v {
            1 => MsgType::Data,
            2 => MsgType::Batch,
            3 => MsgType::Repair,
            4 => MsgType::Nack,
            5 => MsgType::TooOld,
            6 => MsgType::Heartbeat,
            7 => MsgType::NewEpoch,
            8 => MsgType::EpochReport,
            other => return Err(MsgError::UnknownType(other)),
        })
    }
}

impl From<MsgType> for u8 {
    fn from(t: MsgType) -> u8 {
        t as u8
    }
}

impl From<Mode> for u8 {
    fn from(m: Mode) -> u8 {
        m as u8
    }
}

impl TryFrom<u8> for Mode {
    type Error = MsgError;

    #[inline]
    fn try_from(v: u8) -> Result<Self, MsgError> {
        Ok(match v {
            0 => Mode::Reliable,
            1 => Mode::Atomic,
            2 => Mode::Fifo,
            3 => Mode::Causal,
            value => {
                return Err(MsgError::BadValue {
                    field: "mode",
                    value: value.into(),
                });
            }
        })
    }
}

/// A byte range in a message.
type Field = Range<usize>;

#[inline]
fn get_u16(b: &[u8], f: Field) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[f]);
    u16::from_be_bytes(a)
}

#[inline]
fn get_u32(b: &[u8], f: Field) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[f]);
    u32::from_be_bytes(a)
}

#[inline]
fn get_u64(b: &[u8], f: Field) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[f]);
    u64::from_be_bytes(a)
}

/// `Truncated` unless `got` bytes hold `needed`.
#[inline]
fn check_len(what: &'static str, needed: usize, got: usize) -> Result<(), MsgError> {
    if got < needed {
        return Err(WireError::Truncated { what, needed, got }.into());
    }
    Ok(())
}

/// `NoRoom` unless `got` bytes hold `needed`.
#[inline]
fn check_room(what: &'static str, needed: usize, got: usize) -> Result<(), MsgError> {
    if got < needed {
        return Err(WireError::NoRoom { what, needed, got }.into());
    }
    Ok(())
}

/// `TooLong` unless `len` fits a 16-bit length field.
#[inline]
fn len16(what: &'static str, len: usize) -> Result<u16, MsgError> {
    u16::try_from(len).map_err(|_| {
        WireError::TooLong {
            what,
            len,
            max: usize::from(u16::MAX),
        }
        .into()
    })
}

/// A sequencer message, as values; variable parts borrow the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// A message to broadcast, and its payload.
    Data(data::Repr, &'a [u8]),
    /// Stamped messages from the sequencer.
    Batch(batch::Repr, batch::Entries<'a>),
    /// Stamped messages re-sent by a peer or to a recovering sequencer.
    Repair(batch::Repr, batch::Entries<'a>),
    /// A request for stamped messages.
    Nack(nack::Repr),
    /// A NACK asked for messages the sequencer no longer holds.
    TooOld(too_old::Repr),
    /// The sequencer's progress.
    Heartbeat(heartbeat::Repr),
    /// A new sequencer's announcement.
    NewEpoch(new_epoch::Repr),
    /// A member's state and the bitmap of what it holds.
    EpochReport(report::Repr, &'a [u8]),
}

impl<'a> Message<'a> {
    /// Reads the payload of an NFVinc message of type `msg_type`.
    pub fn parse(msg_type: u8, payload: &'a [u8]) -> Result<Self, MsgError> {
        Ok(match MsgType::try_from(msg_type)? {
            MsgType::Data => {
                let p = data::Packet::new_checked(payload)?;
                let r = data::Repr::parse(&p)?;
                Message::Data(r, p.into_payload())
            }
            MsgType::Batch => {
                let (r, e) = batch::parse_checked(payload)?;
                Message::Batch(r, e)
            }
            MsgType::Repair => {
                let (r, e) = batch::parse_checked(payload)?;
                Message::Repair(r, e)
            }
            MsgType::Nack => Message::Nack(nack::Repr::parse(&nack::Packet::new_checked(payload)?)),
            MsgType::TooOld => Message::TooOld(too_old::Repr::parse(
                &too_old::Packet::new_checked(payload)?,
            )),
            MsgType::Heartbeat => Message::Heartbeat(heartbeat::Repr::parse(
                &heartbeat::Packet::new_checked(payload)?,
            )),
            MsgType::NewEpoch => Message::NewEpoch(new_epoch::Repr::parse(
                &new_epoch::Packet::new_checked(payload)?,
            )),
            MsgType::EpochReport => {
                let p = report::Packet::new_checked(payload)?;
                let r = report::Repr::parse(&p);
                Message::EpochReport(r, p.into_held())
            }
        })
    }

    /// Reads a whole NFVinc message (a UDP payload): checks the common
    /// header, that it is for the sequencer service, and parses the payload.
    pub fn parse_nfv(message: &'a [u8]) -> Result<(NfvRepr, Self), MsgError> {
        let h = NfvHeader::new_checked(message)?;
        let repr = NfvRepr::parse(&h)?;
        if repr.service != Service::Sequencer {
            return Err(MsgError::WrongService(repr.service));
        }
        let payload = &message[nfvinc::HEADER_LEN..h.total_len()];
        Ok((repr, Self::parse(repr.msg_type, payload)?))
    }

    /// Its type.
    pub fn msg_type(&self) -> MsgType {
        match self {
            Message::Data(..) => MsgType::Data,
            Message::Batch(..) => MsgType::Batch,
            Message::Repair(..) => MsgType::Repair,
            Message::Nack(_) => MsgType::Nack,
            Message::TooOld(_) => MsgType::TooOld,
            Message::Heartbeat(_) => MsgType::Heartbeat,
            Message::NewEpoch(_) => MsgType::NewEpoch,
            Message::EpochReport(..) => MsgType::EpochReport,
        }
    }

    /// Bytes its payload takes.
    pub fn payload_len(&self) -> usize {
        match self {
            Message::Data(_, p) => data::HEADER_LEN + p.len(),
            Message::Batch(_, e) | Message::Repair(_, e) => batch::HEADER_LEN + e.bytes_len(),
            Message::Nack(_) => nack::LEN,
            Message::TooOld(_) => too_old::LEN,
            Message::Heartbeat(_) => heartbeat::LEN,
            Message::NewEpoch(_) => new_epoch::LEN,
            Message::EpochReport(_, held) => report::HEADER_LEN + held.len(),
        }
    }

    /// Writes the payload at the front of `payload`; returns its length.
    pub fn emit_payload(&self, payload: &mut [u8]) -> Result<usize, MsgError> {
        match self {
            Message::Data(r, p) => {
                let mut pk = data::Packet::new_unchecked(&mut *payload);
                r.emit(&mut pk, p.len())?;
                pk.payload_mut().copy_from_slice(p);
            }
            Message::Batch(r, e) | Message::Repair(r, e) => {
                let mut w = batch::Writer::new(&mut *payload, r.epoch, r.first, r.base)?;
                w.append_raw(e)?;
                w.finish();
            }
            Message::Nack(r) => r.emit(&mut nack::Packet::new_unchecked(&mut *payload))?,
            Message::TooOld(r) => r.emit(&mut too_old::Packet::new_unchecked(&mut *payload))?,
            Message::Heartbeat(r) => {
                r.emit(&mut heartbeat::Packet::new_unchecked(&mut *payload))?
            }
            Message::NewEpoch(r) => r.emit(&mut new_epoch::Packet::new_unchecked(&mut *payload))?,
            Message::EpochReport(r, held) => {
                let mut p = report::Packet::new_unchecked(&mut *payload);
                r.emit(&mut p, held.len())?;
                p.held_mut().copy_from_slice(held);
            }
        }
        Ok(self.payload_len())
    }

    /// Writes a whole NFVinc message (header without tag, then payload) at
    /// the front of `buf`, the UDP payload; returns its length.
    pub fn emit(&self, session_id: u64, buf: &mut [u8]) -> Result<usize, MsgError> {
        let len = self.payload_len();
        check_room("sequencer message", nfvinc::HEADER_LEN + len, buf.len())?;
        self.emit_payload(&mut buf[nfvinc::HEADER_LEN..])?;
        emit_header(self.msg_type(), session_id, len, buf)
    }
}

/// The NFVinc messages of one datagram, in order.
///
/// A datagram may carry several messages back to back, each whole (its
/// header's payload length says where the next begins): members pack the
/// Data messages of one flush into as few datagrams as fit, so that the
/// per-datagram cost of the kernel paths, theirs and the sequencer's, is
/// shared by many messages. Each message is checked (tag included) and
/// handled on its own. Bytes that do not start with a well-formed header
/// (a truncated or foreign tail, or a single malformed message) come out
/// as one last item, for the caller's parser to refuse and count.
pub fn messages(datagram: &[u8]) -> Messages<'_> {
    Messages { rest: datagram }
}

/// Iterator of [`messages`].
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Messages<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let len = NfvHeader::new_checked(self.rest).map_or(self.rest.len(), |h| h.total_len());
        let (m, rest) = self.rest.split_at(len.min(self.rest.len()));
        self.rest = rest;
        Some(m)
    }
}

/// Writes the NFVinc header for a payload of `payload_len` bytes that is
/// already in place after it; returns the whole message's length. The
/// cores build payloads in place and then call this.
pub fn emit_header(
    msg_type: MsgType,
    session_id: u64,
    payload_len: usize,
    buf: &mut [u8],
) -> Result<usize, MsgError> {
    let repr = NfvRepr {
        service: Service::Sequencer,
        msg_type: msg_type.into(),
        session_id,
        tag: None,
        payload_len,
    };
    repr.emit(&mut NfvHeader::new_unchecked(&mut *buf))?;
    Ok(repr.buffer_len())
}
