//! UDP datagrams (RFC 768) over IPv4.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Source Port          |       Destination Port        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |            Length             |           Checksum            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The checksum covers an IPv4 pseudo-header (source, destination, protocol,
//! UDP length), the header and the payload. Over IPv4 a checksum field of 0
//! means "no checksum", so a computed checksum of 0 is sent as `0xffff`,
//! which is the same value in one's-complement arithmetic.

use std::net::Ipv4Addr;

use super::{WireError, checksum, ipv4::PROTO_UDP};

/// Length of the UDP header.
pub const HEADER_LEN: usize = field::PAYLOAD;

mod field {
    pub type Field = std::ops::Range<usize>;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
    pub const PAYLOAD: usize = 8;
}

#[inline]
fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// A view of a UDP datagram in a buffer.
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

    /// Wraps `buffer` after [`Packet::check_len`], so that no accessor can
    /// go out of bounds.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the buffer holds a header and that the length field
    /// covers the header and fits the buffer. The buffer may be longer than
    /// the datagram.
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        let got = self.buffer.as_ref().len();
        if got < HEADER_LEN {
            return Err(WireError::Truncated {
                what: "UDP header",
                needed: HEADER_LEN,
                got,
            });
        }
        let len = usize::from(self.length());
        if len < HEADER_LEN {
            return Err(WireError::BadLength {
                what: "UDP length",
                field: len,
                min: HEADER_LEN,
                max: got,
            });
        }
        if len > got {
            return Err(WireError::Truncated {
                what: "UDP datagram",
                needed: len,
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

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::SRC_PORT])
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::DST_PORT])
    }

    /// Length of header and payload.
    #[inline]
    pub fn length(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::LENGTH])
    }

    /// The checksum field (0: none).
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// The payload, up to the length field.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.length())]
    }

    /// The checksum the datagram should carry between `src` and `dst`,
    /// computed as if the checksum field were zero, and never 0.
    #[inline]
    pub fn compute_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
        let d = &self.buffer.as_ref()[..usize::from(self.length())];
        let s = checksum::combine(&[
            checksum::pseudo_header_v4(src, dst, PROTO_UDP, self.length()),
            checksum::sum(&d[..field::CHECKSUM.start]),
            checksum::sum(&d[field::PAYLOAD..]),
        ]);
        match !s {
            0 => 0xffff,
            c => c,
        }
    }

    /// True when the checksum is absent (0) or correct for `src` → `dst`.
    #[inline]
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let d = &self.buffer.as_ref()[..usize::from(self.length())];
        let s = checksum::combine(&[
            checksum::pseudo_header_v4(src, dst, PROTO_UDP, self.length()),
            checksum::sum(d),
        ]);
        s == 0xffff
    }

    /// [`Packet::verify_checksum`] as a `Result`.
    #[inline]
    pub fn check_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> Result<(), WireError> {
        if self.verify_checksum(src, dst) {
            Ok(())
        } else {
            Err(WireError::BadChecksum { what: "UDP" })
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port.
    #[inline]
    pub fn set_src_port(&mut self, port: u16) {
        self.buffer.as_mut()[field::SRC_PORT].copy_from_slice(&port.to_be_bytes());
    }

    /// Sets the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, port: u16) {
        self.buffer.as_mut()[field::DST_PORT].copy_from_slice(&port.to_be_bytes());
    }

    /// Sets the length field.
    #[inline]
    pub fn set_length(&mut self, len: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&len.to_be_bytes());
    }

    /// Sets the checksum field as is (0: none); see [`Packet::fill_checksum`].
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes());
    }

    /// Computes the checksum for `src` → `dst` and stores it.
    #[inline]
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        let c = self.compute_checksum(src, dst);
        self.set_checksum(c);
    }

    /// Exchanges the ports. The checksum stays valid: the same two 16-bit
    /// words are summed, in another order.
    #[inline]
    pub fn swap_ports(&mut self) {
        let b = self.buffer.as_mut();
        let (src, dst) = b[field::SRC_PORT.start..field::DST_PORT.end].split_at_mut(2);
        src.swap_with_slice(dst);
    }

    /// The payload (up to the length field), writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.length());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// The values of a UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload length in bytes.
    pub payload_len: usize,
}

impl Repr {
    /// Reads a datagram's header after checking its length and, when
    /// present, its checksum for `src` → `dst`.
    pub fn parse<T: AsRef<[u8]>>(
        packet: &Packet<T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
    ) -> Result<Self, WireError> {
        packet.check_len()?;
        packet.check_checksum(src, dst)?;
        Ok(Self {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload_len: usize::from(packet.length()) - HEADER_LEN,
        })
    }

    /// Bytes the header takes.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header with a zero checksum into the front of `packet`'s
    /// buffer, which must have room for the header and the payload. Fill
    /// the payload, then call [`Packet::fill_checksum`] (or leave 0: none).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
    ) -> Result<(), WireError> {
        let len = HEADER_LEN + self.payload_len;
        let len16 = u16::try_from(len).map_err(|_| WireError::TooLong {
            what: "UDP datagram",
            len,
            max: usize::from(u16::MAX),
        })?;
        let got = packet.buffer.as_ref().len();
        if got < len {
            return Err(WireError::NoRoom {
                what: "UDP datagram",
                needed: len,
                got,
            });
        }
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_length(len16);
        packet.set_checksum(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

    // 40000 -> 7, length 12, 4 bytes of payload. Checksum by hand: pseudo
    // 0xc612+0x0001+0xc612+0x0002+0x0011+0x000c, header 0x9c40+0x0007+0x000c,
    // payload 0xdead+0xbeef; folded 0xc636, complemented 0x39c9.
    static DATAGRAM: [u8; 12] = [
        0x9c, 0x40, 0x00, 0x07, 0x00, 0x0c, 0x39, 0xc9, 0xde, 0xad, 0xbe, 0xef,
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&DATAGRAM[..]).unwrap();
        assert_eq!(p.src_port(), 40000);
        assert_eq!(p.dst_port(), 7);
        assert_eq!(p.length(), 12);
        assert_eq!(p.checksum(), 0x39c9);
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        assert!(p.verify_checksum(SRC, DST));
        assert!(!p.verify_checksum(SRC, Ipv4Addr::new(198, 18, 0, 3)));
    }

    #[test]
    fn construct() {
        let mut b = [0u8; 12];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_src_port(40000);
        p.set_dst_port(7);
        p.set_length(12);
        p.payload_mut().copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        p.fill_checksum(SRC, DST);
        assert_eq!(b, DATAGRAM);
    }

    #[test]
    fn parse_and_emit() {
        let p = Packet::new_checked(&DATAGRAM[..]).unwrap();
        let repr = Repr::parse(&p, SRC, DST).unwrap();
        assert_eq!(
            repr,
            Repr {
                src_port: 40000,
                dst_port: 7,
                payload_len: 4
            }
        );
        assert_eq!(
            Repr::parse(&p, DST, DST),
            Err(WireError::BadChecksum { what: "UDP" })
        );
        let mut b = [0u8; 12];
        let mut out = Packet::new_unchecked(&mut b[..]);
        repr.emit(&mut out).unwrap();
        out.payload_mut().copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        out.fill_checksum(SRC, DST);
        assert_eq!(b, DATAGRAM);
    }

    #[test]
    fn zero_checksum_means_none_and_computed_zero_is_sent_as_ffff() {
        let mut b = DATAGRAM;
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_checksum(0);
        assert!(p.verify_checksum(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST));
        // Choose a payload word that drives the sum to all ones.
        p.payload_mut().copy_from_slice(&[0, 0, 0, 0]);
        let c = p.compute_checksum(SRC, DST);
        let word = c; // the sum plus its own complement is all ones
        p.payload_mut()[..2].copy_from_slice(&word.to_be_bytes());
        assert_eq!(p.compute_checksum(SRC, DST), 0xffff);
        p.fill_checksum(SRC, DST);
        assert!(p.verify_checksum(SRC, DST));
    }

    #[test]
    fn malformed_lengths_are_errors() {
        assert!(matches!(
            Packet::new_checked(&DATAGRAM[..7]),
            Err(WireError::Truncated { needed: 8, .. })
        ));
        let mut b = DATAGRAM;
        b[5] = 7;
        assert!(matches!(
            Packet::new_checked(&b[..]),
            Err(WireError::BadLength { field: 7, .. })
        ));
        b[5] = 13;
        assert!(matches!(
            Packet::new_checked(&b[..]),
            Err(WireError::Truncated { needed: 13, .. })
        ));
        let mut long = [0u8; 20];
        long[..12].copy_from_slice(&DATAGRAM);
        let p = Packet::new_checked(&long[..]).unwrap();
        assert_eq!(
            p.payload().len(),
            4,
            "bytes past the length are not payload"
        );
        assert!(p.verify_checksum(SRC, DST));
    }

    #[test]
    fn swap_ports_keeps_checksum() {
        let mut b = DATAGRAM;
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.swap_ports();
        assert_eq!((p.src_port(), p.dst_port()), (7, 40000));
        assert!(p.verify_checksum(DST, SRC));
        p.swap_ports();
        assert_eq!(b, DATAGRAM);
    }

    #[test]
    fn emit_refuses_what_does_not_fit() {
        let r = Repr {
            src_port: 1,
            dst_port: 2,
            payload_len: 5,
        };
        let mut b = [0u8; 12];
        assert!(matches!(
            r.emit(&mut Packet::new_unchecked(&mut b[..])),
            Err(WireError::NoRoom { needed: 13, .. })
        ));
        let huge = Repr {
            payload_len: 65528,
            ..r
        };
        assert!(matches!(
            huge.emit(&mut Packet::new_unchecked(&mut b[..])),
            Err(WireError::TooLong { .. })
        ));
    }
}
