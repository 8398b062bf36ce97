//! Wire formats: zero-copy typed views over packet bytes.
//!
//! Each protocol has its own module in the shape of smoltcp's `wire`: a
//! `Packet<T: AsRef<[u8]>>` view whose `new_checked` validates lengths once
//! (after which no accessor can go out of bounds), getters for any `T`,
//! setters when `T: AsMut<[u8]>`, and a `Repr` with `parse` and `emit` for
//! code that wants values rather than bytes. Nothing here allocates, and
//! malformed input of any kind is a [`WireError`], never a panic.
//!
//! [`UdpFrame`] ties the layers together for the common case of the
//! dataplane: an Ethernet II frame carrying an unfragmented IPv4 packet
//! carrying a UDP datagram, whose payload usually starts with the NFVinc
//! header. [`build_udp_frame`] writes such a frame, and
//! [`swap_udp_frame_addresses`] turns one around in place.
//!
//! # Byte layouts
//!
//! All multi-byte fields are in network byte order (big-endian).
//!
//! ## Ethernet II ([`ethernet`]), 14 bytes
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 6 | destination MAC |
//! | 6 | 6 | source MAC |
//! | 12 | 2 | EtherType (0x0800 IPv4) |
//! | 14 | … | payload |
//!
//! ## IPv4 ([`ipv4`], RFC 791), 20 to 60 bytes
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 1 | version (high 4 bits, must be 4), IHL in 32-bit words (low 4 bits, at least 5) |
//! | 1 | 1 | DSCP (high 6 bits), ECN (low 2 bits) |
//! | 2 | 2 | total length, header included (at least IHL × 4, at most the buffer) |
//! | 4 | 2 | identification |
//! | 6 | 2 | flags (bit 14 don't fragment, bit 13 more fragments), fragment offset in 8-byte units (low 13 bits) |
//! | 8 | 1 | time to live |
//! | 9 | 1 | protocol (17 UDP) |
//! | 10 | 2 | header checksum (RFC 1071 over the header, options included) |
//! | 12 | 4 | source address |
//! | 16 | 4 | destination address |
//! | 20 | IHL × 4 − 20 | options (carried, not interpreted) |
//! | IHL × 4 | … | payload, up to the total length |
//!
//! ## UDP ([`udp`], RFC 768), 8 bytes
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 2 | source port |
//! | 2 | 2 | destination port |
//! | 4 | 2 | length, header included (at least 8, at most the IPv4 payload) |
//! | 6 | 2 | checksum over the IPv4 pseudo-header, header and payload; 0 = none |
//! | 8 | … | payload, up to the length |
//!
//! ## NFVinc common header ([`nfvinc`]), 32 bytes
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 2 | magic 0x4E46 ("NF") |
//! | 2 | 1 | version (1) |
//! | 3 | 1 | service: 0 raw/echo, 1 sequencer, 2 consensus, 3 fd, 4 control; other values are an error |
//! | 4 | 1 | message type (service-specific, opaque here) |
//! | 5 | 1 | flags: bit 0 authentication tag present; other bits reserved, must be 0 |
//! | 6 | 2 | payload length (bytes after the 32-byte header; must fit the buffer) |
//! | 8 | 8 | session id |
//! | 16 | 16 | authentication tag: a keyed MAC over the message under the per-session key; all zero when flag bit 0 is clear |
//! | 32 | … | payload |
//!
//! A frame as the dataplane sees it, with a 20-byte IPv4 header:
//!
//! | offset | size | layer |
//! | --- | --- | --- |
//! | 0 | 14 | Ethernet II |
//! | 14 | 20 | IPv4 |
//! | 34 | 8 | UDP |
//! | 42 | 32 | NFVinc header ([`UDP_PAYLOAD_OFFSET`] is 42) |
//! | 74 | … | service payload |

pub mod checksum;
pub mod ethernet;
pub mod field;
pub mod ipv4;
pub mod nfvinc;
pub mod udp;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::Range;

pub use ethernet::MacAddr;
pub use nfvinc::{NfvHeader, NfvRepr, Service};

/// Offset of the IPv4 header in a frame.
pub const IPV4_OFFSET: usize = ethernet::HEADER_LEN;
/// Offset of the UDP payload in a frame whose IPv4 header has no options,
/// which is every frame [`build_udp_frame`] writes: 14 + 20 + 8.
pub const UDP_PAYLOAD_OFFSET: usize = IPV4_OFFSET + ipv4::MIN_HEADER_LEN + udp::HEADER_LEN;
/// The largest UDP payload an IPv4 packet without options can carry.
pub const MAX_UDP_PAYLOAD: usize = u16::MAX as usize - ipv4::MIN_HEADER_LEN - udp::HEADER_LEN;

/// Why bytes could not be read or written as a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer ends before the structure it should hold.
    #[error("{what} truncated: needs {needed} bytes, got {got}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes it needs.
        needed: usize,
        /// Bytes there are.
        got: usize,
    },
    /// A length field is impossible for the structure it describes.
    #[error("{what} {field} outside {min}..={max}")]
    BadLength {
        /// Which length field.
        what: &'static str,
        /// Its value.
        field: usize,
        /// The least it may be.
        min: usize,
        /// The most it may be.
        max: usize,
    },
    /// A header-length field below the protocol's minimum.
    #[error("{what} header length {got} is too short")]
    BadHeaderLength {
        /// Which protocol.
        what: &'static str,
        /// The header length it claims, in bytes.
        got: usize,
    },
    /// A version this code does not speak.
    #[error("unsupported {what} version {got}")]
    BadVersion {
        /// Which protocol.
        what: &'static str,
        /// The version found.
        got: u8,
    },
    /// A checksum does not match the bytes it covers.
    #[error("bad {what} checksum")]
    BadChecksum {
        /// Which checksum.
        what: &'static str,
    },
    /// The NFVinc magic number is wrong: not an NFVinc message.
    #[error("bad NFVinc magic {got:#06x}")]
    BadMagic {
        /// The value found.
        got: u16,
    },
    /// The NFVinc service field names no known service.
    #[error("unknown NFVinc service {0}")]
    UnknownService(u8),
    /// Reserved NFVinc flag bits are set.
    #[error("reserved NFVinc flag bits set in {got:#04x}")]
    ReservedFlags {
        /// The flags byte.
        got: u8,
    },
    /// An NFVinc tag is present although its flag is clear.
    #[error("NFVinc tag is non-zero but the authentication flag is clear")]
    UnexpectedTag,
    /// The IPv4 packet is a fragment, which the dataplane does not reassemble.
    #[error("IPv4 fragment (offset {offset}, more fragments: {more})")]
    Fragmented {
        /// Fragment offset in bytes.
        offset: u16,
        /// The more-fragments flag.
        more: bool,
    },
    /// The Ethernet frame does not carry IPv4.
    #[error("EtherType {ethertype:#06x} is not IPv4")]
    NotIpv4 {
        /// The EtherType found.
        ethertype: u16,
    },
    /// The IPv4 packet does not carry UDP.
    #[error("IP protocol {protocol} is not UDP")]
    NotUdp {
        /// The protocol found.
        protocol: u8,
    },
    /// The buffer is too small for what is to be written into it.
    #[error("no room for {what}: needs {needed} bytes, buffer has {got}")]
    NoRoom {
        /// What was being written.
        what: &'static str,
        /// Bytes it needs.
        needed: usize,
        /// Bytes the buffer has.
        got: usize,
    },
    /// What is to be written exceeds what its length field can express.
    #[error("{what} of {len} bytes exceeds the maximum of {max}")]
    TooLong {
        /// What was being written.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The most allowed.
        max: usize,
    },
}

/// Addresses and ports of a UDP frame, as [`build_udp_frame`] writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameSpec {
    /// Source MAC address.
    pub src_mac: MacAddr,
    /// Destination MAC address.
    pub dst_mac: MacAddr,
    /// Source IPv4 address.
    pub src_ip: Ipv4Addr,
    /// Destination IPv4 address.
    pub dst_ip: Ipv4Addr,
    /// Source UDP port.
    pub src_port: u16,
    /// Destination UDP port.
    pub dst_port: u16,
}

impl FrameSpec {
    /// The spec of a reply: every source and destination exchanged.
    #[inline]
    pub fn reversed(&self) -> Self {
        Self {
            src_mac: self.dst_mac,
            dst_mac: self.src_mac,
            src_ip: self.dst_ip,
            dst_ip: self.src_ip,
            src_port: self.dst_port,
            dst_port: self.src_port,
        }
    }
}

/// A validated Ethernet II / IPv4 / UDP frame: views of each layer and the
/// place of the UDP payload.
///
/// [`UdpFrame::parse`] checks every length, that the EtherType is IPv4, the
/// IPv4 header checksum, that the packet is not a fragment and carries UDP.
/// It does not check the UDP checksum, which covers the whole payload: call
/// [`UdpFrame::check_udp_checksum`] where the path does not already vouch
/// for it (the kernel has checked it on the kernel UDP backend).
///
/// The layer views are over validated bytes; changing a length field through
/// them voids that validation for the views taken afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpFrame<T: AsRef<[u8]>> {
    buffer: T,
    udp_offset: usize,
    udp_end: usize,
}

impl<T: AsRef<[u8]>> UdpFrame<T> {
    /// Validates `buffer` as an Ethernet II frame carrying an unfragmented
    /// IPv4 packet carrying a UDP datagram.
    #[inline]
    pub fn parse(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        let eth = ethernet::Packet::new_checked(b)?;
        if eth.ethertype() != ethernet::ETHERTYPE_IPV4 {
            return Err(WireError::NotIpv4 {
                ethertype: eth.ethertype(),
            });
        }
        let ip = ipv4::Packet::new_checked(eth.payload())?;
        ip.check_checksum()?;
        if ip.is_fragment() {
            return Err(WireError::Fragmented {
                offset: ip.frag_offset(),
                more: ip.more_frags(),
            });
        }
        if ip.protocol() != ipv4::PROTO_UDP {
            return Err(WireError::NotUdp {
                protocol: ip.protocol(),
            });
        }
        let udp = udp::Packet::new_checked(ip.payload())?;
        let udp_offset = IPV4_OFFSET + ip.header_len();
        let udp_end = udp_offset + usize::from(udp.length());
        Ok(Self {
            buffer,
            udp_offset,
            udp_end,
        })
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Offset of the UDP header (34 unless the IPv4 header has options).
    #[inline]
    pub fn udp_offset(&self) -> usize {
        self.udp_offset
    }

    /// Where the UDP payload lies in the buffer.
    #[inline]
    pub fn payload_range(&self) -> Range<usize> {
        self.udp_offset + udp::HEADER_LEN..self.udp_end
    }

    /// Bytes of the frame up to the end of the UDP datagram; link-layer
    /// padding after it is not counted.
    #[inline]
    pub fn len(&self) -> usize {
        self.udp_end
    }

    /// Always false: a valid frame has at least its headers.
    #[inline]
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The Ethernet view (its payload runs to the end of the buffer).
    #[inline]
    pub fn ethernet(&self) -> ethernet::Packet<&[u8]> {
        ethernet::Packet::new_unchecked(self.buffer.as_ref())
    }

    /// The IPv4 view.
    #[inline]
    pub fn ipv4(&self) -> ipv4::Packet<&[u8]> {
        ipv4::Packet::new_unchecked(&self.buffer.as_ref()[IPV4_OFFSET..])
    }

    /// The UDP view, exactly the datagram.
    #[inline]
    pub fn udp(&self) -> udp::Packet<&[u8]> {
        udp::Packet::new_unchecked(&self.buffer.as_ref()[self.udp_offset..self.udp_end])
    }

    /// The UDP payload.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.payload_range()]
    }

    /// Source IPv4 address and UDP port.
    #[inline]
    pub fn src(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.ipv4().src_addr(), self.udp().src_port())
    }

    /// Destination IPv4 address and UDP port.
    #[inline]
    pub fn dst(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.ipv4().dst_addr(), self.udp().dst_port())
    }

    /// The frame's addresses and ports.
    #[inline]
    pub fn spec(&self) -> FrameSpec {
        let (eth, ip, udp) = (self.ethernet(), self.ipv4(), self.udp());
        FrameSpec {
            src_mac: eth.src_addr(),
            dst_mac: eth.dst_addr(),
            src_ip: ip.src_addr(),
            dst_ip: ip.dst_addr(),
            src_port: udp.src_port(),
            dst_port: udp.dst_port(),
        }
    }

    /// True when the UDP checksum is absent (0) or correct.
    #[inline]
    pub fn verify_udp_checksum(&self) -> bool {
        let ip = self.ipv4();
        self.udp().verify_checksum(ip.src_addr(), ip.dst_addr())
    }

    /// [`UdpFrame::verify_udp_checksum`] as a `Result`.
    #[inline]
    pub fn check_udp_checksum(&self) -> Result<(), WireError> {
        let ip = self.ipv4();
        self.udp().check_checksum(ip.src_addr(), ip.dst_addr())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpFrame<T> {
    /// The Ethernet view, writable.
    #[inline]
    pub fn ethernet_mut(&mut self) -> ethernet::Packet<&mut [u8]> {
        ethernet::Packet::new_unchecked(self.buffer.as_mut())
    }

    /// The IPv4 view, writable.
    #[inline]
    pub fn ipv4_mut(&mut self) -> ipv4::Packet<&mut [u8]> {
        ipv4::Packet::new_unchecked(&mut self.buffer.as_mut()[IPV4_OFFSET..])
    }

    /// The UDP view, writable.
    #[inline]
    pub fn udp_mut(&mut self) -> udp::Packet<&mut [u8]> {
        let r = self.udp_offset..self.udp_end;
        udp::Packet::new_unchecked(&mut self.buffer.as_mut()[r])
    }

    /// The UDP payload, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let r = self.payload_range();
        &mut self.buffer.as_mut()[r]
    }

    /// Computes and stores the UDP checksum, after the payload is written.
    #[inline]
    pub fn fill_udp_checksum(&mut self) {
        let ip = self.ipv4();
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        self.udp_mut().fill_checksum(src, dst);
    }

    /// Exchanges source and destination MACs, IPv4 addresses and UDP ports,
    /// so that the frame goes back where it came from.
    ///
    /// Both checksums stay valid without being touched: the IPv4 header
    /// checksum covers both addresses, and the UDP checksum covers both
    /// addresses (pseudo-header) and both ports. Each address and port is a
    /// whole number of 16-bit words at an even offset, so the swap only
    /// reorders the words being summed, and one's-complement addition is
    /// commutative.
    #[inline]
    pub fn swap_addresses(&mut self) {
        self.ethernet_mut().swap_addresses();
        self.ipv4_mut().swap_addresses();
        self.udp_mut().swap_ports();
    }
}

/// Writes the Ethernet, IPv4 (no options, don't-fragment, TTL 64, valid
/// checksum) and UDP headers of a frame with a `payload_len`-byte payload at
/// the front of `buf`; returns the frame's length.
///
/// The UDP checksum is left 0 (none). Write the payload into
/// `buf[UDP_PAYLOAD_OFFSET..len]`, then call [`finish_udp_checksum`] on
/// `&mut buf[..len]` to fill it, or use [`write_udp_frame`] to do all three.
pub fn build_udp_frame(
    buf: &mut [u8],
    spec: &FrameSpec,
    payload_len: usize,
) -> Result<usize, WireError> {
    if payload_len > MAX_UDP_PAYLOAD {
        return Err(WireError::TooLong {
            what: "UDP payload",
            len: payload_len,
            max: MAX_UDP_PAYLOAD,
        });
    }
    let len = UDP_PAYLOAD_OFFSET + payload_len;
    if buf.len() < len {
        return Err(WireError::NoRoom {
            what: "UDP frame",
            needed: len,
            got: buf.len(),
        });
    }
    let buf = &mut buf[..len];
    ethernet::Repr {
        src_addr: spec.src_mac,
        dst_addr: spec.dst_mac,
        ethertype: ethernet::ETHERTYPE_IPV4,
    }
    .emit(&mut ethernet::Packet::new_unchecked(&mut *buf))?;
    ipv4::Repr {
        src_addr: spec.src_ip,
        dst_addr: spec.dst_ip,
        protocol: ipv4::PROTO_UDP,
        payload_len: udp::HEADER_LEN + payload_len,
        ttl: ipv4::DEFAULT_TTL,
        dscp_ecn: 0,
    }
    .emit(&mut ipv4::Packet::new_unchecked(&mut buf[IPV4_OFFSET..]))?;
    udp::Repr {
        src_port: spec.src_port,
        dst_port: spec.dst_port,
        payload_len,
    }
    .emit(&mut udp::Packet::new_unchecked(
        &mut buf[IPV4_OFFSET + ipv4::MIN_HEADER_LEN..],
    ))?;
    Ok(len)
}

/// Validates `frame` as a [`UdpFrame`] and fills its UDP checksum.
pub fn finish_udp_checksum(frame: &mut [u8]) -> Result<(), WireError> {
    UdpFrame::parse(frame)?.fill_udp_checksum();
    Ok(())
}

/// Writes a whole frame carrying `payload`, with both checksums filled, at
/// the front of `buf`; returns its length.
pub fn write_udp_frame(
    buf: &mut [u8],
    spec: &FrameSpec,
    payload: &[u8],
) -> Result<usize, WireError> {
    let len = build_udp_frame(buf, spec, payload.len())?;
    buf[UDP_PAYLOAD_OFFSET..len].copy_from_slice(payload);
    finish_udp_checksum(&mut buf[..len])?;
    Ok(len)
}

/// Validates `frame` as a [`UdpFrame`] and exchanges its MACs, IPv4
/// addresses and UDP ports in place (see [`UdpFrame::swap_addresses`] for
/// why the checksums stay valid).
pub fn swap_udp_frame_addresses(frame: &mut [u8]) -> Result<(), WireError> {
    UdpFrame::parse(frame)?.swap_addresses();
    Ok(())
}

/// What [`fuzz_parse_all`] made of its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FuzzOutcome {
    /// The input as a [`UdpFrame`].
    pub frame: Result<(), WireError>,
    /// The frame's UDP payload as an NFVinc header, when the frame parsed.
    pub nfv: Option<Result<(), WireError>>,
}

/// Runs every parser of this module on `data`, reads every field of what
/// parses, and checks the module's invariants on it: swapping twice is the
/// identity, swapping keeps valid checksums valid, building a frame from a
/// parsed one gives it back, an NFVinc header re-emits to the same bytes,
/// and incremental checksum updates agree with a full recomputation.
///
/// Shared by the `parse_frame` fuzz target and the test that replays its
/// corpus. Malformed input only ever produces errors; this function panics
/// only when one of those invariants is broken, which is a bug here. It
/// allocates, so it is no part of the fast path.
pub fn fuzz_parse_all(data: &[u8]) -> FuzzOutcome {
    // Each layer on its own, at the offsets where it could start.
    for off in [
        0,
        IPV4_OFFSET,
        IPV4_OFFSET + ipv4::MIN_HEADER_LEN,
        UDP_PAYLOAD_OFFSET,
    ] {
        let Some(d) = data.get(off..) else { continue };
        touch_layers(d);
    }

    let frame = UdpFrame::parse(data);
    let outcome_nfv = frame.as_ref().ok().map(|f| {
        let h = NfvHeader::new_checked(f.payload());
        if let Ok(h) = &h {
            touch_nfv(h);
        }
        h.map(|_| ())
    });
    if let Ok(f) = &frame {
        check_frame_invariants(data, f);
    }
    check_incremental(data);
    FuzzOutcome {
        frame: frame.map(|_| ()),
        nfv: outcome_nfv,
    }
}

fn touch_layers(d: &[u8]) {
    if let Ok(p) = ethernet::Packet::new_checked(d) {
        let _ = (p.src_addr(), p.dst_addr(), p.ethertype(), p.payload().len());
        let _ = ethernet::Repr::parse(&p);
    }
    if let Ok(p) = ipv4::Packet::new_checked(d) {
        let _ = (
            p.dscp_ecn(),
            p.ident(),
            p.dont_frag(),
            p.ttl(),
            p.checksum(),
        );
        let _ = (p.options().len(), p.payload().len(), p.verify_checksum());
        let _ = (p.src_addr(), p.dst_addr(), p.is_fragment(), p.frag_offset());
        let _ = ipv4::Repr::parse(&p);
    }
    if let Ok(p) = udp::Packet::new_checked(d) {
        let (s, t) = (Ipv4Addr::LOCALHOST, Ipv4Addr::BROADCAST);
        let _ = (p.src_port(), p.dst_port(), p.checksum(), p.payload().len());
        let _ = (p.compute_checksum(s, t), udp::Repr::parse(&p, s, t));
    }
    if let Ok(h) = NfvHeader::new_checked(d) {
        touch_nfv(&h);
    }
    let _ = NfvRepr::parse(&NfvHeader::new_unchecked(d));
}

fn touch_nfv(h: &NfvHeader<&[u8]>) {
    let _ = (
        h.service(),
        h.msg_type(),
        h.session_id(),
        h.tag(),
        h.payload(),
    );
    let repr = NfvRepr::parse(h).expect("a checked header parses");
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut NfvHeader::new_unchecked(&mut out[..]))
        .expect("a parsed header re-emits");
    let orig = h.into_inner();
    assert_eq!(
        out[..nfvinc::HEADER_LEN],
        orig[..nfvinc::HEADER_LEN],
        "NFVinc header re-emits to the same bytes"
    );
}

fn check_frame_invariants(data: &[u8], f: &UdpFrame<&[u8]>) {
    let _ = (f.src(), f.dst(), f.payload(), f.len(), f.udp_offset());
    let udp_ok = f.verify_udp_checksum();

    let mut copy = data.to_vec();
    swap_udp_frame_addresses(&mut copy).expect("a valid frame swaps");
    let swapped = UdpFrame::parse(&copy[..]).expect("a swapped frame still parses");
    assert_eq!(swapped.spec(), f.spec().reversed());
    assert_eq!(
        swapped.verify_udp_checksum(),
        udp_ok,
        "swap keeps checksums"
    );
    swap_udp_frame_addresses(&mut copy).expect("a valid frame swaps");
    assert_eq!(copy, data, "swapping twice is the identity");

    let mut built = vec![0u8; UDP_PAYLOAD_OFFSET + f.payload().len()];
    let len = write_udp_frame(&mut built, &f.spec(), f.payload()).expect("a parsed frame rebuilds");
    let rebuilt = UdpFrame::parse(&built[..len]).expect("a built frame parses");
    assert_eq!(rebuilt.spec(), f.spec());
    assert_eq!(rebuilt.payload(), f.payload());
    assert!(rebuilt.verify_udp_checksum());
    assert_ne!(rebuilt.udp().checksum(), 0, "a built frame has a checksum");
}

fn check_incremental(data: &[u8]) {
    if data.len() < 8 {
        return;
    }
    let mut d = data[..data.len().min(64)].to_vec();
    let hc = checksum::checksum(&d);
    let old16 = u16::from_be_bytes([d[0], d[1]]);
    let new16 = !old16 ^ u16::from_be_bytes([d[2], d[3]]);
    d[..2].copy_from_slice(&new16.to_be_bytes());
    let hc = checksum::update16(hc, old16, new16);
    assert_incremental(hc, &d, "RFC 1624 16-bit update");
    let old32 = u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
    let new32 = old32.rotate_left(7) ^ 0x5a5a_a5a5;
    d[4..8].copy_from_slice(&new32.to_be_bytes());
    let hc = checksum::update32(hc, old32, new32);
    assert_incremental(hc, &d, "RFC 1624 32-bit update");
}

/// An incremental result equals the recomputed one, except on all-zero data
/// where it is the other zero (see [`checksum::update16`]).
fn assert_incremental(incremental: u16, data: &[u8], what: &str) {
    if data.iter().all(|&b| b == 0) {
        assert_eq!(incremental, 0, "{what} on all-zero data");
    } else {
        assert_eq!(incremental, checksum::checksum(data), "{what}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> FrameSpec {
        FrameSpec {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: Ipv4Addr::new(198, 18, 0, 1),
            dst_ip: Ipv4Addr::new(198, 18, 0, 2),
            src_port: 40000,
            dst_port: 9000,
        }
    }

    /// The frame `write_udp_frame(spec(), b"hello")` must produce, written out
    /// by hand.
    const HELLO: [u8; 47] = [
        2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, // Ethernet
        0x45, 0x00, 0x00, 33, 0x00, 0x00, 0x40, 0x00, 64, 17, 0xae, 0xa4, // IPv4
        198, 18, 0, 1, 198, 18, 0, 2, //
        0x9c, 0x40, 0x23, 0x28, 0x00, 13, 0x00, 0x00, // UDP, checksum below
        b'h', b'e', b'l', b'l', b'o',
    ];

    fn hello() -> [u8; 47] {
        let mut f = HELLO;
        finish_udp_checksum(&mut f).unwrap();
        f
    }

    #[test]
    fn build_matches_hand_written_frame() {
        let mut buf = [0xeeu8; 64];
        let len = write_udp_frame(&mut buf, &spec(), b"hello").unwrap();
        assert_eq!(len, 47);
        assert_eq!(buf[..len], hello());
        let f = UdpFrame::parse(&HELLO[..]).unwrap();
        assert!(f.ipv4().verify_checksum(), "hand-computed IPv4 checksum");
    }

    #[test]
    fn parse_gives_every_layer() {
        let f = hello();
        let p = UdpFrame::parse(&f[..]).unwrap();
        assert_eq!(p.udp_offset(), 34);
        assert_eq!(p.payload_range(), 42..47);
        assert_eq!(p.payload(), b"hello");
        assert_eq!(p.len(), 47);
        assert_eq!(p.spec(), spec());
        assert_eq!(p.src(), "198.18.0.1:40000".parse().unwrap());
        assert_eq!(p.dst(), "198.18.0.2:9000".parse().unwrap());
        assert!(p.verify_udp_checksum());
        assert_eq!(p.ethernet().ethertype(), ethernet::ETHERTYPE_IPV4);
        assert_eq!(p.ipv4().total_len(), 33);
        assert_eq!(p.udp().length(), 13);
    }

    #[test]
    fn build_then_fill_payload_in_place() {
        let mut buf = [0u8; 2048];
        let len = build_udp_frame(&mut buf, &spec(), 5).unwrap();
        buf[UDP_PAYLOAD_OFFSET..len].copy_from_slice(b"hello");
        finish_udp_checksum(&mut buf[..len]).unwrap();
        assert_eq!(buf[..len], hello());

        let mut f = UdpFrame::parse(&mut buf[..len]).unwrap();
        f.payload_mut().copy_from_slice(b"HELLO");
        assert!(!f.verify_udp_checksum());
        f.fill_udp_checksum();
        assert!(f.verify_udp_checksum());
    }

    #[test]
    fn padded_frames_parse_to_the_datagram() {
        let mut buf = [0u8; 60];
        let len = write_udp_frame(&mut buf, &spec(), b"hi").unwrap();
        assert_eq!(len, 44);
        let f = UdpFrame::parse(&buf[..]).unwrap();
        assert_eq!(f.payload(), b"hi");
        assert_eq!(f.len(), 44);
    }

    #[test]
    fn swap_keeps_checksums_and_twice_is_identity() {
        let orig = hello();
        let mut f = orig;
        swap_udp_frame_addresses(&mut f).unwrap();
        let p = UdpFrame::parse(&f[..]).unwrap();
        assert_eq!(p.spec(), spec().reversed());
        assert!(p.ipv4().verify_checksum());
        assert!(p.verify_udp_checksum());
        // The swapped frame is exactly what a fresh build of the reply gives.
        let mut reply = [0u8; 47];
        write_udp_frame(&mut reply, &spec().reversed(), b"hello").unwrap();
        assert_eq!(f, reply);
        swap_udp_frame_addresses(&mut f).unwrap();
        assert_eq!(f, orig);
    }

    #[test]
    fn layer_errors_are_reported() {
        let good = hello();
        let parse = |b: &[u8]| UdpFrame::parse(b).map(|_| ());
        assert!(matches!(
            parse(&good[..10]),
            Err(WireError::Truncated {
                what: "Ethernet header",
                ..
            })
        ));
        let mut b = good;
        b[12] = 0x86;
        b[13] = 0xdd;
        assert_eq!(parse(&b), Err(WireError::NotIpv4 { ethertype: 0x86dd }));
        let mut b = good;
        b[14 + 9] = 6;
        ipv4::Packet::new_unchecked(&mut b[14..]).fill_checksum();
        assert_eq!(parse(&b), Err(WireError::NotUdp { protocol: 6 }));
        let mut b = good;
        b[14 + 8] = 1; // TTL changed, checksum not updated
        assert_eq!(
            parse(&b),
            Err(WireError::BadChecksum {
                what: "IPv4 header"
            })
        );
        let mut b = good;
        ipv4::Packet::new_unchecked(&mut b[14..]).set_flags_and_frag_offset(false, true, 0);
        ipv4::Packet::new_unchecked(&mut b[14..]).fill_checksum();
        assert!(matches!(parse(&b), Err(WireError::Fragmented { .. })));
        let mut b = good;
        b[14 + 20 + 5] = 14; // UDP length past the IPv4 payload
        assert!(matches!(
            parse(&b),
            Err(WireError::Truncated {
                what: "UDP datagram",
                ..
            })
        ));
        assert!(matches!(
            parse(&good[..46]),
            Err(WireError::Truncated {
                what: "IPv4 packet",
                ..
            })
        ));
        let mut b = good;
        b[46] ^= 0xff;
        let f = UdpFrame::parse(&b[..]).unwrap();
        assert_eq!(
            f.check_udp_checksum(),
            Err(WireError::BadChecksum { what: "UDP" })
        );
        assert!(swap_udp_frame_addresses(&mut [0u8; 20]).is_err());
        assert!(finish_udp_checksum(&mut [0u8; 41]).is_err());
    }

    #[test]
    fn build_refuses_what_does_not_fit() {
        let mut small = [0u8; 45];
        assert_eq!(
            build_udp_frame(&mut small, &spec(), 4),
            Err(WireError::NoRoom {
                what: "UDP frame",
                needed: 46,
                got: 45
            })
        );
        assert!(matches!(
            build_udp_frame(&mut small, &spec(), MAX_UDP_PAYLOAD + 1),
            Err(WireError::TooLong { .. })
        ));
        let mut big = vec![0u8; UDP_PAYLOAD_OFFSET + MAX_UDP_PAYLOAD];
        let len = build_udp_frame(&mut big, &spec(), MAX_UDP_PAYLOAD).unwrap();
        assert_eq!(
            UdpFrame::parse(&big[..len]).unwrap().payload().len(),
            MAX_UDP_PAYLOAD
        );
    }

    #[test]
    fn fuzz_helper_reports_layers() {
        let mut buf = [0u8; 128];
        let msg_len = nfvinc::HEADER_LEN + 3;
        let mut msg = vec![0u8; msg_len];
        NfvRepr {
            service: Service::Sequencer,
            msg_type: 1,
            session_id: 42,
            tag: None,
            payload_len: 3,
        }
        .emit(&mut NfvHeader::new_unchecked(&mut msg[..]))
        .unwrap();
        let len = write_udp_frame(&mut buf, &spec(), &msg).unwrap();
        let out = fuzz_parse_all(&buf[..len]);
        assert_eq!(out.frame, Ok(()));
        assert_eq!(out.nfv, Some(Ok(())));
        let out = fuzz_parse_all(&hello());
        assert_eq!(out.frame, Ok(()));
        assert!(matches!(out.nfv, Some(Err(WireError::Truncated { .. }))));
        assert!(fuzz_parse_all(&[]).frame.is_err());
        assert_eq!(fuzz_parse_all(&[0xff; 100]).nfv, None);
    }
}
