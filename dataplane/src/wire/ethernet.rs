//! Ethernet II frames.
//!
//! ```text
//!  0                   1
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3
//! +-----------+-----------+---+---------
//! |    dst    |    src    |typ| payload
//! +-----------+-----------+---+---------
//! ```
//!
//! No 802.1Q tag and no frame check sequence: NICs strip the FCS, and VLAN
//! tags are left to the NIC or the kernel on the paths NFVinc uses.

use super::WireError;

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of an 802.1Q VLAN tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

/// Length of the Ethernet II header.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// A MAC address.
pub type MacAddr = [u8; 6];

mod field {
    pub type Field = std::ops::Range<usize>;
    pub const DST: Field = 0..6;
    pub const SRC: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const PAYLOAD: usize = 14;
}

/// A view of an Ethernet II frame in a buffer.
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

    /// Wraps `buffer` after checking it holds a whole header, so that no
    /// accessor can go out of bounds.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the buffer holds a whole header.
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        let got = self.buffer.as_ref().len();
        if got < HEADER_LEN {
            return Err(WireError::Truncated {
                what: "Ethernet header",
                needed: HEADER_LEN,
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

    /// Destination MAC address.
    #[inline]
    pub fn dst_addr(&self) -> MacAddr {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        a
    }

    /// Source MAC address.
    #[inline]
    pub fn src_addr(&self) -> MacAddr {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        a
    }

    /// EtherType (see the `ETHERTYPE_*` constants).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        let d = &self.buffer.as_ref()[field::ETHERTYPE];
        u16::from_be_bytes([d[0], d[1]])
    }

    /// The bytes after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the destination MAC address.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr);
    }

    /// Sets the source MAC address.
    #[inline]
    pub fn set_src_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr);
    }

    /// Sets the EtherType.
    #[inline]
    pub fn set_ethertype(&mut self, ethertype: u16) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&ethertype.to_be_bytes());
    }

    /// The bytes after the header, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }

    /// Exchanges source and destination addresses, to send a frame back
    /// where it came from.
    #[inline]
    pub fn swap_addresses(&mut self) {
        let b = self.buffer.as_mut();
        let (dst, rest) = b.split_at_mut(field::SRC.start);
        dst.swap_with_slice(&mut rest[..6]);
    }
}

/// The values of an Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source MAC address.
    pub src_addr: MacAddr,
    /// Destination MAC address.
    pub dst_addr: MacAddr,
    /// EtherType.
    pub ethertype: u16,
}

impl Repr {
    /// Reads the header of a checked frame.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Self, WireError> {
        packet.check_len()?;
        Ok(Self {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            ethertype: packet.ethertype(),
        })
    }

    /// Bytes the header takes.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into the front of `packet`'s buffer, which must be
    /// at least [`HEADER_LEN`] long.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
    ) -> Result<(), WireError> {
        packet.check_len()?;
        packet.set_dst_addr(self.dst_addr);
        packet.set_src_addr(self.src_addr);
        packet.set_ethertype(self.ethertype);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static FRAME: [u8; 18] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // dst
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // src
        0x08, 0x00, // IPv4
        0xaa, 0xbb, 0xcc, 0xdd, // payload
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&FRAME[..]).unwrap();
        assert_eq!(p.dst_addr(), [2, 0, 0, 0, 0, 2]);
        assert_eq!(p.src_addr(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(p.ethertype(), ETHERTYPE_IPV4);
        assert_eq!(p.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 18];
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        p.set_dst_addr([2, 0, 0, 0, 0, 2]);
        p.set_src_addr([2, 0, 0, 0, 0, 1]);
        p.set_ethertype(ETHERTYPE_IPV4);
        p.payload_mut().copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(buf, FRAME);
    }

    #[test]
    fn parse_and_emit() {
        let repr = Repr::parse(&Packet::new_checked(&FRAME[..]).unwrap()).unwrap();
        assert_eq!(repr.ethertype, ETHERTYPE_IPV4);
        let mut buf = FRAME;
        buf[..14].fill(0);
        repr.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
        assert_eq!(buf, FRAME);
    }

    #[test]
    fn swap_addresses() {
        let mut buf = FRAME;
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        p.swap_addresses();
        assert_eq!(p.dst_addr(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(p.src_addr(), [2, 0, 0, 0, 0, 2]);
        p.swap_addresses();
        assert_eq!(buf, FRAME);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Packet::new_checked(&FRAME[..13]).unwrap_err(),
            WireError::Truncated {
                what: "Ethernet header",
                needed: 14,
                got: 13
            }
        );
        let mut short = [0u8; 3];
        assert!(
            Repr::parse(&Packet::new_unchecked(&short[..])).is_err(),
            "parse checks even an unchecked view"
        );
        assert!(
            FRAME_REPR
                .emit(&mut Packet::new_unchecked(&mut short[..]))
                .is_err()
        );
    }

    const FRAME_REPR: Repr = Repr {
        src_addr: [0; 6],
        dst_addr: [0; 6],
        ethertype: 0,
    };
}
