//! IPv4 packets (RFC 791).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version|  IHL  |  DSCP/ECN     |          Total Length         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Identification        |Flags|      Fragment Offset    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Time to Live |    Protocol   |         Header Checksum       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       Source Address                          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Destination Address                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Options (IHL > 5)                          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! [`Packet::new_checked`] validates the version, the header length and the
//! total length against the buffer, so the buffer may be longer than the
//! packet (Ethernet pads short frames to 60 bytes); [`Packet::payload`] ends
//! at the total length. Options are carried but not interpreted. Fragments
//! pass the check and are reported by [`Packet::is_fragment`], for callers
//! that refuse them.

use std::net::Ipv4Addr;

use super::{WireError, checksum};

/// Length of a header without options.
pub const MIN_HEADER_LEN: usize = field::DST.end;
/// The protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// The protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// The protocol number of ICMP.
pub const PROTO_ICMP: u8 = 1;
/// Default time to live of packets NFVinc builds (Linux's default).
pub const DEFAULT_TTL: u8 = 64;

mod field {
    pub type Field = std::ops::Range<usize>;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC: Field = 12..16;
    pub const DST: Field = 16..20;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

#[inline]
fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

#[inline]
fn addr(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking it; accessors may then panic on a
    /// short buffer. Prefer [`Packet::new_checked`] for received bytes.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer` after [`Packet::check_len`], so that no accessor can
    /// go out of bounds.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks the version, that the header length is at least 20 bytes and
    /// fits the buffer, and that the total length covers the header and fits
    /// the buffer.
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        let got = self.buffer.as_ref().len();
        if got < MIN_HEADER_LEN {
            return Err(WireError::Truncated {
                what: "IPv4 header",
                needed: MIN_HEADER_LEN,
                got,
            });
        }
        if self.version() != 4 {
            return Err(WireError::BadVersion {
                what: "IPv4",
                got: self.version(),
            });
        }
        let header_len = self.header_len();
        if header_len < MIN_HEADER_LEN {
            return Err(WireError::BadHeaderLength {
                what: "IPv4",
                got: header_len,
            });
        }
        if got < header_len {
            return Err(WireError::Truncated {
                what: "IPv4 options",
                needed: header_len,
                got,
            });
        }
        let total = usize::from(self.total_len());
        if total < header_len {
            return Err(WireError::BadLength {
                what: "IPv4 total length",
                field: total,
                min: header_len,
                max: got,
            });
        }
        if got < total {
            return Err(WireError::Truncated {
                what: "IPv4 packet",
                needed: total,
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

    /// The version field (4 for a checked packet).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes, options included (IHL × 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// DSCP and ECN, the former type-of-service byte.
    #[inline]
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// Total length of the packet, header included.
    #[inline]
    pub fn total_len(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::LENGTH])
    }

    /// Identification, for reassembly.
    #[inline]
    pub fn ident(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::IDENT])
    }

    /// The don't-fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        be16(&self.buffer.as_ref()[field::FLG_OFF]) & FLAG_DF != 0
    }

    /// The more-fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        be16(&self.buffer.as_ref()[field::FLG_OFF]) & FLAG_MF != 0
    }

    /// Fragment offset in bytes.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (be16(&self.buffer.as_ref()[field::FLG_OFF]) & OFFSET_MASK) << 3
    }

    /// True when this packet is a fragment (more fragments follow, or it is
    /// not the first): its payload is not a whole transport segment.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        be16(&self.buffer.as_ref()[field::FLG_OFF]) & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// The payload's protocol (see the `PROTO_*` constants).
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// The header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        addr(&self.buffer.as_ref()[field::SRC])
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        addr(&self.buffer.as_ref()[field::DST])
    }

    /// The option bytes (empty when IHL is 5).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[MIN_HEADER_LEN..self.header_len()]
    }

    /// True when the header checksum is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::sum(&self.buffer.as_ref()[..self.header_len()]) == 0xffff
    }

    /// [`Packet::verify_checksum`] as a `Result`.
    #[inline]
    pub fn check_checksum(&self) -> Result<(), WireError> {
        if self.verify_checksum() {
            Ok(())
        } else {
            Err(WireError::BadChecksum {
                what: "IPv4 header",
            })
        }
    }

    /// The payload: from the end of the header to the total length, which
    /// excludes any link-layer padding after the packet.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version to 4 and the header length (a multiple of 4, 20 to 60).
    #[inline]
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ((header_len / 4) as u8 & 0x0f);
    }

    /// Sets DSCP and ECN.
    #[inline]
    pub fn set_dscp_ecn(&mut self, value: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = value;
    }

    /// Sets the total length.
    #[inline]
    pub fn set_total_len(&mut self, len: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&len.to_be_bytes());
    }

    /// Sets the identification.
    #[inline]
    pub fn set_ident(&mut self, ident: u16) {
        self.buffer.as_mut()[field::IDENT].copy_from_slice(&ident.to_be_bytes());
    }

    /// Sets the flags and fragment offset: `offset` is in bytes and must be
    /// a multiple of 8.
    #[inline]
    pub fn set_flags_and_frag_offset(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let mut v = (offset >> 3) & OFFSET_MASK;
        if dont_frag {
            v |= FLAG_DF;
        }
        if more_frags {
            v |= FLAG_MF;
        }
        self.buffer.as_mut()[field::FLG_OFF].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the time to live.
    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    /// Sets the protocol.
    #[inline]
    pub fn set_protocol(&mut self, protocol: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol;
    }

    /// Sets the checksum field as is; see [`Packet::fill_checksum`].
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.octets());
    }

    /// Computes the header checksum and stores it.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(&self.buffer.as_ref()[..self.header_len()]);
        self.set_checksum(c);
    }

    /// Exchanges source and destination addresses. The header checksum stays
    /// valid: the same 16-bit words are summed, in another order.
    #[inline]
    pub fn swap_addresses(&mut self) {
        let b = self.buffer.as_mut();
        let (src, dst) = b[field::SRC.start..field::DST.end].split_at_mut(4);
        src.swap_with_slice(dst);
    }

    /// Decrements the time to live, updating the checksum incrementally
    /// (RFC 1624); returns the new value. A router drops the packet when it
    /// reaches 0; that decision is the caller's.
    #[inline]
    pub fn decrement_ttl(&mut self) -> u8 {
        let b = self.buffer.as_ref();
        let old = be16(&b[field::TTL..field::PROTOCOL + 1]);
        let ttl = self.ttl().saturating_sub(1);
        self.set_ttl(ttl);
        let new = be16(&self.buffer.as_ref()[field::TTL..field::PROTOCOL + 1]);
        let c = checksum::update16(self.checksum(), old, new);
        self.set_checksum(c);
        ttl
    }

    /// The option bytes, writable.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[MIN_HEADER_LEN..end]
    }

    /// The payload (up to the total length), writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), usize::from(self.total_len()));
        &mut self.buffer.as_mut()[start..end]
    }
}

/// The values of an IPv4 header without options, as NFVinc builds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Payload protocol.
    pub protocol: u8,
    /// Payload length in bytes (total length minus the header).
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// DSCP and ECN.
    pub dscp_ecn: u8,
}

impl Repr {
    /// Reads a checked packet's header. Refuses a bad checksum and
    /// fragments: a `Repr` describes a whole, trustworthy datagram. Options
    /// are skipped (the payload length accounts for them).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Self, WireError> {
        packet.check_len()?;
        packet.check_checksum()?;
        if packet.is_fragment() {
            return Err(WireError::Fragmented {
                offset: packet.frag_offset(),
                more: packet.more_frags(),
            });
        }
        Ok(Self {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: usize::from(packet.total_len()) - packet.header_len(),
            ttl: packet.ttl(),
            dscp_ecn: packet.dscp_ecn(),
        })
    }

    /// Bytes the header takes (no options).
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        MIN_HEADER_LEN
    }

    /// Writes a 20-byte header with don't-fragment set, identification 0 and
    /// a valid checksum into the front of `packet`'s buffer, which must have
    /// room for the header and the payload.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
    ) -> Result<(), WireError> {
        let total = MIN_HEADER_LEN + self.payload_len;
        let total16 = u16::try_from(total).map_err(|_| WireError::TooLong {
            what: "IPv4 packet",
            len: total,
            max: usize::from(u16::MAX),
        })?;
        let got = packet.buffer.as_ref().len();
        if got < total {
            return Err(WireError::NoRoom {
                what: "IPv4 packet",
                needed: total,
                got,
            });
        }
        packet.set_version_and_header_len(MIN_HEADER_LEN);
        packet.set_dscp_ecn(self.dscp_ecn);
        packet.set_total_len(total16);
        packet.set_ident(0);
        packet.set_flags_and_frag_offset(true, false, 0);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 198.18.0.1 -> 198.18.0.2, UDP, 4 bytes of payload, DF, TTL 64.
    static PACKET: [u8; 24] = [
        0x45, 0x00, 0x00, 0x18, // version, IHL, DSCP, total length 24
        0x12, 0x34, 0x40, 0x00, // ident, DF
        0x40, 0x11, 0x00, 0x00, // TTL 64, UDP, checksum (filled in tests)
        198, 18, 0, 1, // src
        198, 18, 0, 2, // dst
        0xde, 0xad, 0xbe, 0xef,
    ];

    fn packet() -> [u8; 24] {
        let mut b = PACKET;
        Packet::new_unchecked(&mut b[..]).fill_checksum();
        b
    }

    #[test]
    fn deconstruct() {
        let b = packet();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 24);
        assert_eq!(p.ident(), 0x1234);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), PROTO_UDP);
        assert_eq!(p.src_addr(), Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(198, 18, 0, 2));
        assert!(p.verify_checksum());
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        assert!(p.options().is_empty());
    }

    #[test]
    fn construct() {
        let mut b = [0u8; 24];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_version_and_header_len(20);
        p.set_total_len(24);
        p.set_ident(0x1234);
        p.set_flags_and_frag_offset(true, false, 0);
        p.set_ttl(64);
        p.set_protocol(PROTO_UDP);
        p.set_src_addr(Ipv4Addr::new(198, 18, 0, 1));
        p.set_dst_addr(Ipv4Addr::new(198, 18, 0, 2));
        p.payload_mut().copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        p.fill_checksum();
        assert_eq!(b, packet());
    }

    #[test]
    fn parse_and_emit() {
        let b = packet();
        let repr = Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(repr.payload_len, 4);
        let mut out = [0u8; 24];
        repr.emit(&mut Packet::new_unchecked(&mut out[..])).unwrap();
        out[20..].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        let mut expected = b;
        expected[4..6].fill(0); // emit writes ident 0
        Packet::new_unchecked(&mut expected[..]).fill_checksum();
        assert_eq!(out, expected);
    }

    #[test]
    fn padding_after_total_length_is_not_payload() {
        let mut b = [0u8; 46];
        b[..24].copy_from_slice(&packet());
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload().len(), 4);
    }

    #[test]
    fn options_are_skipped() {
        let mut b = [0u8; 28];
        b[..20].copy_from_slice(&packet()[..20]);
        b[0] = 0x46; // IHL 6: one word of options
        b[2..4].copy_from_slice(&28u16.to_be_bytes());
        b[20..24].copy_from_slice(&[1, 1, 1, 0]); // NOP NOP NOP EOL
        b[24..].copy_from_slice(&[9, 8, 7, 6]);
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert_eq!(p.payload(), &[9, 8, 7, 6]);
        assert_eq!(Repr::parse(&p).unwrap().payload_len, 4);
    }

    #[test]
    fn malformed_headers_are_errors() {
        let good = packet();
        let check = |b: &[u8]| Packet::new_checked(b).map(|_| ());
        assert!(matches!(
            check(&good[..19]),
            Err(WireError::Truncated { needed: 20, .. })
        ));
        let mut b = good;
        b[0] = 0x65;
        assert_eq!(
            check(&b),
            Err(WireError::BadVersion {
                what: "IPv4",
                got: 6
            })
        );
        b[0] = 0x44;
        assert_eq!(
            check(&b),
            Err(WireError::BadHeaderLength {
                what: "IPv4",
                got: 16
            })
        );
        b[0] = 0x4f; // 60-byte header in a 24-byte buffer
        assert!(matches!(
            check(&b),
            Err(WireError::Truncated { needed: 60, .. })
        ));
        let mut b = good;
        b[3] = 19;
        assert!(matches!(
            check(&b),
            Err(WireError::BadLength { field: 19, .. })
        ));
        b[3] = 25;
        assert!(matches!(
            check(&b),
            Err(WireError::Truncated { needed: 25, .. })
        ));
        let mut b = good;
        b[8] ^= 1;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(!p.verify_checksum());
        assert_eq!(
            Repr::parse(&p),
            Err(WireError::BadChecksum {
                what: "IPv4 header"
            })
        );
    }

    #[test]
    fn fragments_are_reported() {
        let mut b = packet();
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_flags_and_frag_offset(false, true, 0);
        p.fill_checksum();
        assert!(p.is_fragment());
        assert_eq!(
            Repr::parse(&p),
            Err(WireError::Fragmented {
                offset: 0,
                more: true
            })
        );
        p.set_flags_and_frag_offset(false, false, 1480);
        p.fill_checksum();
        assert!(p.is_fragment());
        assert_eq!(p.frag_offset(), 1480);
        p.set_flags_and_frag_offset(true, false, 0);
        assert!(!p.is_fragment());
    }

    #[test]
    fn swap_and_ttl_keep_checksum_valid() {
        let mut b = packet();
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.swap_addresses();
        assert_eq!(p.src_addr(), Ipv4Addr::new(198, 18, 0, 2));
        assert!(p.verify_checksum());
        assert_eq!(p.decrement_ttl(), 63);
        assert!(p.verify_checksum());
        p.swap_addresses();
        p.set_ttl(64);
        p.fill_checksum();
        assert_eq!(b, packet());
    }

    #[test]
    fn emit_refuses_what_does_not_fit() {
        let repr = Repr {
            src_addr: Ipv4Addr::LOCALHOST,
            dst_addr: Ipv4Addr::LOCALHOST,
            protocol: PROTO_UDP,
            payload_len: 10,
            ttl: 64,
            dscp_ecn: 0,
        };
        let mut small = [0u8; 29];
        assert!(matches!(
            repr.emit(&mut Packet::new_unchecked(&mut small[..])),
            Err(WireError::NoRoom { needed: 30, .. })
        ));
        let huge = Repr {
            payload_len: 65516,
            ..repr
        };
        assert!(matches!(
            huge.emit(&mut Packet::new_unchecked(&mut small[..])),
            Err(WireError::TooLong { .. })
        ));
    }
}
