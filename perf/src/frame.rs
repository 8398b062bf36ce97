//! The generator's frames: one template built once, stamped per packet.
//!
//! Payload layout (offsets from the start of the UDP payload, big-endian):
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | sequence number |
//! | 8 | 8 | timestamp, ns on [`crate::clock`] (intended send time in open loop) |
//! | 16 | 4 | run tag: replies carrying another tag are not ours |
//! | 20 | … | filler up to the frame size |
//!
//! The template's sequence number and timestamp are zero, so stamping a
//! frame only adds words to what the template's UDP checksum covers; the
//! checksum is brought up to date incrementally (RFC 1624 eq. 3, with the
//! old words all zero), or left 0 (none), or recomputed whole, per
//! [`ChecksumMode`].

use anyhow::{Context, ensure};
use dataplane::wire::{self, FrameSpec, UDP_PAYLOAD_OFFSET, UdpFrame, checksum};

use crate::cli::ChecksumMode;

/// UDP port the echo VNF serves.
pub const ECHO_PORT: u16 = 7;

/// Bytes of payload the generator needs.
pub const STAMP_LEN: usize = 20;

/// The smallest frame that holds headers and stamp.
pub const MIN_FRAME: usize = UDP_PAYLOAD_OFFSET + STAMP_LEN;

const SEQ: usize = UDP_PAYLOAD_OFFSET;
const TS: usize = SEQ + 8;
const TAG: usize = TS + 8;
/// Offset of the UDP checksum in a frame without IPv4 options.
const UDP_CSUM: usize = UDP_PAYLOAD_OFFSET - 2;

/// What a reply carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Sequence number.
    pub seq: u64,
    /// Timestamp written at send time.
    pub ts: u64,
}

/// Why a received frame is not a reply to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotOurs {
    /// Not a UDP frame to our port with our tag.
    Foreign,
    /// Ours, but its UDP checksum is wrong.
    Corrupt,
}

/// A frame to copy and stamp.
#[derive(Debug, Clone)]
pub struct Template {
    bytes: Vec<u8>,
    spec: FrameSpec,
    tag: u32,
    mode: ChecksumMode,
    csum: u16,
}

impl Template {
    /// A `size`-byte frame from `spec`, tagged `tag`.
    pub fn new(spec: FrameSpec, size: usize, tag: u32, mode: ChecksumMode) -> anyhow::Result<Self> {
        ensure!(
            size >= MIN_FRAME,
            "frame size {size} is below the {MIN_FRAME} bytes headers and stamp need"
        );
        let mut bytes = vec![0u8; size];
        let len = wire::build_udp_frame(&mut bytes, &spec, size - UDP_PAYLOAD_OFFSET)
            .context("building the template frame")?;
        debug_assert_eq!(len, size);
        bytes[TAG..TAG + 4].copy_from_slice(&tag.to_be_bytes());
        for (i, b) in bytes[MIN_FRAME..].iter_mut().enumerate() {
            *b = i as u8;
        }
        if mode != ChecksumMode::Zero {
            wire::finish_udp_checksum(&mut bytes).context("checksumming the template")?;
        }
        let csum = u16::from_be_bytes([bytes[UDP_CSUM], bytes[UDP_CSUM + 1]]);
        Ok(Self {
            bytes,
            spec,
            tag,
            mode,
            csum,
        })
    }

    /// Frame length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Never true: a template holds at least [`MIN_FRAME`] bytes.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Addresses and ports of generated frames.
    pub fn spec(&self) -> &FrameSpec {
        &self.spec
    }

    /// The template's bytes (sequence number and timestamp zero).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Copies the template into `dst` (exactly [`Template::len`] bytes) and
    /// stamps it with `seq` and `ts`, keeping the UDP checksum valid.
    #[inline]
    pub fn write(&self, dst: &mut [u8], seq: u64, ts: u64) {
        dst.copy_from_slice(&self.bytes);
        dst[SEQ..SEQ + 8].copy_from_slice(&seq.to_be_bytes());
        dst[TS..TS + 8].copy_from_slice(&ts.to_be_bytes());
        match self.mode {
            ChecksumMode::Zero => {}
            ChecksumMode::Incremental => {
                // The stamp's words replace zeros: the new sum is the old
                // one plus theirs (RFC 1624 eq. 3 with m = 0).
                let added = checksum::sum(&dst[SEQ..TAG]);
                let c = !checksum::combine(&[!self.csum, added]);
                let c = if c == 0 { 0xffff } else { c };
                dst[UDP_CSUM..UDP_CSUM + 2].copy_from_slice(&c.to_be_bytes());
            }
            ChecksumMode::Full => {
                if let Ok(mut f) = UdpFrame::parse(&mut *dst) {
                    f.fill_udp_checksum();
                }
            }
        }
    }

    /// The sequence number of a frame stamped from this template, as it
    /// left (not a reply).
    #[inline]
    pub fn read_own(&self, frame: &[u8]) -> Option<u64> {
        let b = frame.get(SEQ..SEQ + 8)?;
        Some(u64::from_be_bytes(b.try_into().ok()?))
    }

    /// The stamp of `frame` if it is a reply to this generator: a valid
    /// UDP frame to our address and port, with our tag and a correct UDP
    /// checksum.
    #[inline]
    pub fn read_reply(&self, frame: &[u8]) -> Result<Stamp, NotOurs> {
        let f = UdpFrame::parse(frame).map_err(|_| NotOurs::Foreign)?;
        if f.dst() != std::net::SocketAddrV4::new(self.spec.src_ip, self.spec.src_port) {
            return Err(NotOurs::Foreign);
        }
        let p = f.payload();
        if p.len() < STAMP_LEN || p[16..20] != self.tag.to_be_bytes() {
            return Err(NotOurs::Foreign);
        }
        if !f.verify_udp_checksum() {
            return Err(NotOurs::Corrupt);
        }
        Ok(Stamp {
            seq: u64::from_be_bytes(p[0..8].try_into().expect("8 bytes")),
            ts: u64::from_be_bytes(p[8..16].try_into().expect("8 bytes")),
        })
    }

    /// True when `frame` is one of ours, in either direction, intact: valid
    /// headers and checksums, our ports, our tag, our filler.
    pub fn is_intact_echo(&self, frame: &[u8]) -> bool {
        let Ok(f) = UdpFrame::parse(frame) else {
            return false;
        };
        let ports = (f.udp().src_port(), f.udp().dst_port());
        let ours = (self.spec.src_port, self.spec.dst_port);
        f.verify_udp_checksum()
            && (ports == ours || ports == (ours.1, ours.0))
            && f.len() == self.len()
            && frame[TAG..] == self.bytes[TAG..]
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    pub(crate) fn spec() -> FrameSpec {
        FrameSpec {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: Ipv4Addr::new(198, 18, 0, 1),
            dst_ip: Ipv4Addr::new(198, 18, 0, 2),
            src_port: 49152,
            dst_port: ECHO_PORT,
        }
    }

    fn stamped(mode: ChecksumMode, size: usize, seq: u64, ts: u64) -> (Template, Vec<u8>) {
        let t = Template::new(spec(), size, 0xfeed_f00d, mode).unwrap();
        let mut buf = vec![0u8; t.len()];
        t.write(&mut buf, seq, ts);
        (t, buf)
    }

    #[test]
    fn stamped_frames_parse_with_valid_checksums_in_every_mode() {
        for mode in [
            ChecksumMode::Incremental,
            ChecksumMode::Zero,
            ChecksumMode::Full,
        ] {
            for size in [64, 65, 128, 1500] {
                for (seq, ts) in [(0, 0), (1, 2), (u64::MAX, u64::MAX), (0x1234_5678_9abc, 77)] {
                    let (t, buf) = stamped(mode, size, seq, ts);
                    assert_eq!(buf.len(), size);
                    let f = UdpFrame::parse(&buf[..]).unwrap();
                    assert_eq!(f.spec(), spec());
                    assert!(f.verify_udp_checksum(), "{mode:?} {size} {seq}");
                    let c = f.udp().checksum();
                    if mode == ChecksumMode::Zero {
                        assert_eq!(c, 0);
                    } else {
                        assert_ne!(c, 0, "a computed checksum of 0 is sent as 0xffff");
                        assert_eq!(c, f.udp().compute_checksum(spec().src_ip, spec().dst_ip));
                    }
                    assert_eq!(t.read_own(&buf), Some(seq));
                }
            }
        }
    }

    #[test]
    fn incremental_equals_full() {
        for seq in (0..100_000u64).step_by(997) {
            let ts = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let (_, a) = stamped(ChecksumMode::Incremental, 64, seq, ts);
            let (_, b) = stamped(ChecksumMode::Full, 64, seq, ts);
            assert_eq!(a, b, "seq {seq}");
        }
    }

    #[test]
    fn replies_are_read_and_strangers_refused() {
        let (t, mut buf) = stamped(ChecksumMode::Incremental, 64, 42, 1_000);
        // As sent, the frame is addressed to the VNF, not to us.
        assert_eq!(t.read_reply(&buf), Err(NotOurs::Foreign));
        wire::swap_udp_frame_addresses(&mut buf).unwrap();
        assert_eq!(t.read_reply(&buf), Ok(Stamp { seq: 42, ts: 1_000 }));
        assert!(t.is_intact_echo(&buf));
        // Another run's tag.
        let other = Template::new(spec(), 64, 1, ChecksumMode::Incremental).unwrap();
        assert_eq!(other.read_reply(&buf), Err(NotOurs::Foreign));
        // A flipped payload bit.
        buf[TS + 3] ^= 0x10;
        assert_eq!(t.read_reply(&buf), Err(NotOurs::Corrupt));
        assert!(!t.is_intact_echo(&buf));
        // Garbage and truncation.
        assert_eq!(t.read_reply(&[0u8; 64]), Err(NotOurs::Foreign));
        assert_eq!(t.read_reply(&buf[..30]), Err(NotOurs::Foreign));
    }

    #[test]
    fn too_small_frames_are_refused() {
        let e = Template::new(spec(), MIN_FRAME - 1, 0, ChecksumMode::Zero).unwrap_err();
        assert!(e.to_string().contains("below"), "{e}");
        assert!(Template::new(spec(), MIN_FRAME, 0, ChecksumMode::Zero).is_ok());
    }
}
