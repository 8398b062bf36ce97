//! The common NFVinc header that every service message carries right after
//! UDP.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |       Magic 0x4E46 "NF"       |  Version (1)  |    Service    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Message type |     Flags     |        Payload length         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                          Session id                           |
//! +                           (64 bits)                           +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! +                 Authentication tag (128 bits)                 +
//! |                                                               |
//! +                                                               +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     Payload (service-specific) ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! [`NfvHeader::new_checked`] refuses anything a well-behaved peer cannot
//! send: a wrong magic or version, an unknown service, reserved flag bits,
//! a tag without the flag that announces it, or a payload length past the
//! buffer. How the tag is computed (which MAC, which bytes) belongs to the
//! session layer; this view only carries it.

use super::WireError;

/// The magic number, "NF" in ASCII.
pub const MAGIC: u16 = 0x4e46;
/// The only version defined.
pub const VERSION: u8 = 1;
/// Length of the header.
pub const HEADER_LEN: usize = field::PAYLOAD;
/// Length of the authentication tag.
pub const TAG_LEN: usize = 16;
/// Flag bit 0: the authentication tag is present.
pub const FLAG_AUTH: u8 = 0x01;
/// Flag bits that must be zero.
pub const FLAGS_RESERVED: u8 = !FLAG_AUTH;

mod field {
    pub type Field = std::ops::Range<usize>;
    pub const MAGIC: Field = 0..2;
    pub const VERSION: usize = 2;
    pub const SERVICE: usize = 3;
    pub const MSG_TYPE: usize = 4;
    pub const FLAGS: usize = 5;
    pub const PAYLOAD_LEN: Field = 6..8;
    pub const SESSION: Field = 8..16;
    pub const TAG: Field = 16..32;
    pub const PAYLOAD: usize = 32;
}

/// The service a message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Service {
    /// Raw messages, echoed back (tests, benchmarks).
    Raw = 0,
    /// The sequencer (NFV-RBCast).
    Sequencer = 1,
    /// Consensus (VNF-Consensus, Multi-Paxos).
    Consensus = 2,
    /// The failure detector (NFV-FD).
    Fd = 3,
    /// Control messages between the control plane and a VNF.
    Control = 4,
}

impl TryFrom<u8> for Service {
    type Error = WireError;

    #[inline]
    fn try_from(v: u8) -> Result<Self, WireError> {
        Ok(match v {
            0 => Service::Raw,
            1 => Service::Sequencer,
            2 => Service::Consensus,
            3 => Service::Fd,
            4 => Service::Control,
            other => return Err(WireError::UnknownService(other)),
        })
    }
}

impl From<Service> for u8 {
    #[inline]
    fn from(s: Service) -> u8 {
        s as u8
    }
}

#[inline]
fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// A view of an NFVinc header and its payload in a buffer (the UDP payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NfvHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> NfvHeader<T> {
    /// Wraps `buffer` without checking it; accessors may then panic on a
    /// short buffer. Prefer [`NfvHeader::new_checked`] for received bytes.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer` after [`NfvHeader::check`], so that no accessor can go
    /// out of bounds and every field holds a defined value.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let h = Self::new_unchecked(buffer);
        h.check()?;
        Ok(h)
    }

    /// Checks the length, magic, version, service, flags, tag and payload
    /// length.
    #[inline]
    pub fn check(&self) -> Result<(), WireError> {
        let got = self.buffer.as_ref().len();
        if got < HEADER_LEN {
            return Err(WireError::Truncated {
                what: "NFVinc header",
                needed: HEADER_LEN,
                got,
            });
        }
        if self.magic() != MAGIC {
            return Err(WireError::BadMagic { got: self.magic() });
        }
        if self.version() != VERSION {
            return Err(WireError::BadVersion {
                what: "NFVinc",
                got: self.version(),
            });
        }
        self.service()?;
        if self.flags() & FLAGS_RESERVED != 0 {
            return Err(WireError::ReservedFlags { got: self.flags() });
        }
        if !self.has_tag() && self.tag().iter().any(|&b| b != 0) {
            return Err(WireError::UnexpectedTag);
        }
        let needed = HEADER_LEN + usize::from(self.payload_len());
        if got < needed {
            return Err(WireError::Truncated {
                what: "NFVinc payload",
                needed,
                got,
            });
        }
        Ok(())
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The magic field ([`MAGIC`] for a checked header).
    #[inline]
    pub fn magic(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::MAGIC])
    }

    /// The version field.
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }

    /// The service field as sent.
    #[inline]
    pub fn service_raw(&self) -> u8 {
        self.buffer.as_ref()[field::SERVICE]
    }

    /// The service (always `Ok` for a checked header).
    #[inline]
    pub fn service(&self) -> Result<Service, WireError> {
        Service::try_from(self.service_raw())
    }

    /// The service-specific message type.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::MSG_TYPE]
    }

    /// The flags byte.
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// True when the authentication tag is present.
    #[inline]
    pub fn has_tag(&self) -> bool {
        self.flags() & FLAG_AUTH != 0
    }

    /// Payload length in bytes.
    #[inline]
    pub fn payload_len(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::PAYLOAD_LEN])
    }

    /// Header plus payload length: the bytes of the message.
    #[inline]
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.payload_len())
    }

    /// The session id.
    #[inline]
    pub fn session_id(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.buffer.as_ref()[field::SESSION]);
        u64::from_be_bytes(b)
    }

    /// The authentication tag (all zero when absent).
    #[inline]
    pub fn tag(&self) -> &[u8; TAG_LEN] {
        self.buffer.as_ref()[field::TAG]
            .try_into()
            .expect("the TAG field is TAG_LEN bytes long")
    }

    /// The payload, up to the payload length.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..self.total_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> NfvHeader<T> {
    /// Sets magic and version to [`MAGIC`] and [`VERSION`].
    #[inline]
    pub fn set_magic_and_version(&mut self) {
        let b = self.buffer.as_mut();
        b[field::MAGIC].copy_from_slice(&MAGIC.to_be_bytes());
        b[field::VERSION] = VERSION;
    }

    /// Sets the service.
    #[inline]
    pub fn set_service(&mut self, service: Service) {
        self.buffer.as_mut()[field::SERVICE] = service.into();
    }

    /// Sets the message type.
    #[inline]
    pub fn set_msg_type(&mut self, msg_type: u8) {
        self.buffer.as_mut()[field::MSG_TYPE] = msg_type;
    }

    /// Sets the flags byte as is.
    #[inline]
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    /// Sets the payload length.
    #[inline]
    pub fn set_payload_len(&mut self, len: u16) {
        self.buffer.as_mut()[field::PAYLOAD_LEN].copy_from_slice(&len.to_be_bytes());
    }

    /// Sets the session id.
    #[inline]
    pub fn set_session_id(&mut self, id: u64) {
        self.buffer.as_mut()[field::SESSION].copy_from_slice(&id.to_be_bytes());
    }

    /// Stores `tag` and sets the flag that announces it.
    #[inline]
    pub fn set_tag(&mut self, tag: &[u8; TAG_LEN]) {
        let b = self.buffer.as_mut();
        b[field::TAG].copy_from_slice(tag);
        b[field::FLAGS] |= FLAG_AUTH;
    }

    /// Zeroes the tag and clears its flag; a MAC over the message is
    /// computed in this state.
    #[inline]
    pub fn clear_tag(&mut self) {
        let b = self.buffer.as_mut();
        b[field::TAG].fill(0);
        b[field::FLAGS] &= !FLAG_AUTH;
    }

    /// The payload (up to the payload length), writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.total_len();
        &mut self.buffer.as_mut()[field::PAYLOAD..end]
    }
}

/// The values of an NFVinc header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NfvRepr {
    /// The service.
    pub service: Service,
    /// The service-specific message type.
    pub msg_type: u8,
    /// The session id.
    pub session_id: u64,
    /// The authentication tag, when present.
    pub tag: Option<[u8; TAG_LEN]>,
    /// Payload length in bytes.
    pub payload_len: usize,
}

impl NfvRepr {
    /// Reads a header after [`NfvHeader::check`].
    pub fn parse<T: AsRef<[u8]>>(header: &NfvHeader<T>) -> Result<Self, WireError> {
        header.check()?;
        Ok(Self {
            service: header.service()?,
            msg_type: header.msg_type(),
            session_id: header.session_id(),
            tag: header.has_tag().then(|| *header.tag()),
            payload_len: usize::from(header.payload_len()),
        })
    }

    /// Bytes the header and payload take.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes the header into the front of `header`'s buffer, which must
    /// have room for the header and the payload.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        header: &mut NfvHeader<T>,
    ) -> Result<(), WireError> {
        let len16 = u16::try_from(self.payload_len).map_err(|_| WireError::TooLong {
            what: "NFVinc payload",
            len: self.payload_len,
            max: usize::from(u16::MAX),
        })?;
        let got = header.buffer.as_ref().len();
        if got < self.buffer_len() {
            return Err(WireError::NoRoom {
                what: "NFVinc message",
                needed: self.buffer_len(),
                got,
            });
        }
        header.set_magic_and_version();
        header.set_service(self.service);
        header.set_msg_type(self.msg_type);
        header.set_flags(0);
        header.set_payload_len(len16);
        header.set_session_id(self.session_id);
        match &self.tag {
            Some(t) => header.set_tag(t),
            None => header.clear_tag(),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static MSG: [u8; 36] = [
        0x4e, 0x46, 0x01, 0x02, // magic, version, consensus
        0x07, 0x01, 0x00, 0x04, // msg type 7, auth flag, 4 bytes of payload
        0x00, 0x00, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef, // session
        0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, // tag
        0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, //
        0xca, 0xfe, 0xba, 0xbe, // payload
    ];

    fn tag() -> [u8; 16] {
        std::array::from_fn(|i| 0x10 + i as u8)
    }

    #[test]
    fn deconstruct() {
        let h = NfvHeader::new_checked(&MSG[..]).unwrap();
        assert_eq!(h.magic(), MAGIC);
        assert_eq!(h.version(), 1);
        assert_eq!(h.service(), Ok(Service::Consensus));
        assert_eq!(h.msg_type(), 7);
        assert!(h.has_tag());
        assert_eq!(h.payload_len(), 4);
        assert_eq!(h.session_id(), 0xdead_beef);
        assert_eq!(h.tag(), &tag());
        assert_eq!(h.payload(), &[0xca, 0xfe, 0xba, 0xbe]);
    }

    #[test]
    fn construct() {
        let mut b = [0u8; 36];
        let mut h = NfvHeader::new_unchecked(&mut b[..]);
        h.set_magic_and_version();
        h.set_service(Service::Consensus);
        h.set_msg_type(7);
        h.set_payload_len(4);
        h.set_session_id(0xdead_beef);
        h.set_tag(&tag());
        h.payload_mut().copy_from_slice(&[0xca, 0xfe, 0xba, 0xbe]);
        assert_eq!(b, MSG);
    }

    #[test]
    fn parse_and_emit() {
        let repr = NfvRepr::parse(&NfvHeader::new_checked(&MSG[..]).unwrap()).unwrap();
        assert_eq!(
            repr,
            NfvRepr {
                service: Service::Consensus,
                msg_type: 7,
                session_id: 0xdead_beef,
                tag: Some(tag()),
                payload_len: 4,
            }
        );
        let mut b = [0xffu8; 36];
        repr.emit(&mut NfvHeader::new_unchecked(&mut b[..]))
            .unwrap();
        b[32..].copy_from_slice(&[0xca, 0xfe, 0xba, 0xbe]);
        assert_eq!(b, MSG);

        let untagged = NfvRepr { tag: None, ..repr };
        untagged
            .emit(&mut NfvHeader::new_unchecked(&mut b[..]))
            .unwrap();
        let h = NfvHeader::new_checked(&b[..]).unwrap();
        assert!(!h.has_tag());
        assert_eq!(h.tag(), &[0; 16]);
        assert_eq!(NfvRepr::parse(&h).unwrap(), untagged);
    }

    #[test]
    fn services_round_trip() {
        for v in 0..=4u8 {
            assert_eq!(u8::from(Service::try_from(v).unwrap()), v);
        }
        assert_eq!(Service::try_from(5), Err(WireError::UnknownService(5)));
    }

    #[test]
    fn malformed_headers_are_errors() {
        let check = |b: &[u8]| NfvHeader::new_checked(b).map(|_| ());
        assert!(matches!(
            check(&MSG[..31]),
            Err(WireError::Truncated { needed: 32, .. })
        ));
        assert!(matches!(
            check(&MSG[..35]),
            Err(WireError::Truncated { needed: 36, .. })
        ));
        let mut b = MSG;
        b[0] = b'X';
        assert_eq!(check(&b), Err(WireError::BadMagic { got: 0x5846 }));
        let mut b = MSG;
        b[2] = 2;
        assert_eq!(
            check(&b),
            Err(WireError::BadVersion {
                what: "NFVinc",
                got: 2
            })
        );
        let mut b = MSG;
        b[3] = 200;
        assert_eq!(check(&b), Err(WireError::UnknownService(200)));
        let mut b = MSG;
        b[5] = 0x81;
        assert_eq!(check(&b), Err(WireError::ReservedFlags { got: 0x81 }));
        let mut b = MSG;
        b[5] = 0;
        assert_eq!(check(&b), Err(WireError::UnexpectedTag));
    }

    #[test]
    fn emit_refuses_what_does_not_fit() {
        let repr = NfvRepr {
            service: Service::Raw,
            msg_type: 0,
            session_id: 1,
            tag: None,
            payload_len: 10,
        };
        let mut b = [0u8; 41];
        assert!(matches!(
            repr.emit(&mut NfvHeader::new_unchecked(&mut b[..])),
            Err(WireError::NoRoom { needed: 42, .. })
        ));
        let huge = NfvRepr {
            payload_len: 70000,
            ..repr
        };
        assert!(matches!(
            huge.emit(&mut NfvHeader::new_unchecked(&mut b[..])),
            Err(WireError::TooLong { .. })
        ));
    }
}
