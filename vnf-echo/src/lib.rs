//! The echo VNF: the smallest complete network function on this stack.
//!
//! Every UDP datagram that reaches it goes back to its sender: the frame's
//! Ethernet, IPv4 and UDP source and destination are swapped in place and the
//! same buffer is transmitted. No copy, no allocation, no checksum work: the
//! Internet checksum is a sum, and swapping two summed fields changes nothing.
//! Frames that are not IPv4/UDP are dropped.
//!
//! The logic is [`reflect`]; `main.rs` is the shell that runs it on a backend.
//!
//! Per frame, the common case (an IPv4 header without options) is checked
//! and swapped at fixed offsets with the header checksum summed in five
//! 32-bit words, all inlined; anything else goes through the general
//! parser ([`swap_udp_frame_addresses`]), which decides the same way for
//! every frame (a property test holds the two to it).

use dataplane::io::Batch;
use dataplane::wire::swap_udp_frame_addresses;

/// Turns every UDP frame of `burst` around in place; drops the others.
///
/// One pass turns the frames around in place and notes, a bit per frame,
/// those it leaves; only a burst with such a frame is compacted after it.
/// (Compacting as it goes copied every kept descriptor and checked both
/// indices, a fixed cost per frame even when all are kept.)
#[inline]
pub fn reflect(burst: &mut Batch) {
    // Bit i: frame i is not a UDP frame to turn around. A batch holds at
    // most MAX_BURST (64) frames, one bit each.
    let mut left = 0u64;
    for (i, mut f) in burst.iter_mut().enumerate() {
        left |= u64::from(!turn_around(f.data_mut())) << (i % 64);
    }
    if left != 0 {
        let mut i = 0;
        burst.retain_mut(|_| {
            let keep = left >> (i % 64) & 1 == 0;
            i += 1;
            keep
        });
    }
}

/// Turns one frame around in place: true when it is an Ethernet II frame
/// carrying an unfragmented IPv4 packet (valid header checksum) carrying a
/// UDP datagram, whose addresses and ports are now swapped; false, the
/// frame untouched, otherwise. The same as
/// `swap_udp_frame_addresses(frame).is_ok()`, faster for the common case.
#[inline]
pub fn turn_around(frame: &mut [u8]) -> bool {
    if plain_udp(frame) {
        let (dst, rest) = frame.split_at_mut(6);
        dst.swap_with_slice(&mut rest[..6]);
        let (src_ip, rest) = frame[26..].split_at_mut(4);
        src_ip.swap_with_slice(&mut rest[..4]);
        let (src_port, rest) = frame[34..].split_at_mut(2);
        src_port.swap_with_slice(&mut rest[..2]);
        true
    } else {
        swap_udp_frame_addresses(frame).is_ok()
    }
}

/// Ethernet header, IPv4 header without options, UDP header.
const PLAIN_HEADERS: usize = 14 + 20 + 8;

/// True when `frame` is a valid IPv4/UDP frame whose IPv4 header has no
/// options: everything the general parser checks, at fixed offsets.
#[inline]
fn plain_udp(frame: &[u8]) -> bool {
    let Some(h) = frame.first_chunk::<PLAIN_HEADERS>() else {
        return false;
    };
    let be16 = |at: usize| u16::from_be_bytes([h[at], h[at + 1]]);
    let le32 = |at: usize| {
        let w: [u8; 4] = h[at..at + 4].try_into().expect("4 bytes");
        u64::from(u32::from_le_bytes(w))
    };
    // Fixed fields, read as little-endian words and masked: ethertype IPv4
    // and version 4 with a 20-byte header (bytes 12..15); neither more
    // fragments nor an offset, and UDP (bytes 20..24, TTL masked out).
    // Then: the total length covers IPv4 and UDP headers and fits the
    // frame; a UDP length that covers its header and fits the IPv4
    // payload.
    let total = usize::from(be16(16));
    let udp_len = usize::from(be16(38));
    if le32(12) & 0x00ff_ffff != 0x0045_0008
        || le32(20) & 0xff00_ff3f != 0x1100_0000
        || total < 28
        || 14 + total > frame.len()
        || udp_len < 8
        || udp_len > total - 20
    {
        return false;
    }
    // The header's one's-complement sum is all ones when its checksum is
    // right. That sum is the plain sum of its 16-bit words folded modulo
    // 0xffff (2^16 is 1 there) into 1..=0xffff, so it is all ones exactly
    // when the plain sum is a nonzero multiple of 0xffff. 32-bit words
    // sum pairs of 16-bit words (2^16 again being 1), and a remainder by
    // a constant is a multiply and a shift, not a division. The byte
    // order does not matter (RFC 1071, 2.B): swapping the bytes of every
    // word swaps those of the folded sum, and all ones stays all ones, so
    // the words are read as they lie in memory, without a byte swap.
    let acc = le32(14) + le32(18) + le32(22) + le32(26) + le32(30);
    acc != 0 && acc % 0xffff == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::io::PacketIo;
    use dataplane::io::mem::{MemConfig, MemIo};
    use proptest::prelude::*;

    /// A UDP frame 02:..:01 198.18.0.1:4000 -> 02:..:02 198.18.0.2:7 with
    /// payload "ping" and valid checksums, as a kernel would send it.
    const FRAME: [u8; 46] = [
        0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00, // Ethernet
        0x45, 0x00, 0x00, 0x20, 0x00, 0x01, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, // IPv4 ...
        198, 18, 0, 1, 198, 18, 0, 2, // ... addresses (checksum filled below)
        0x0f, 0xa0, 0x00, 0x07, 0x00, 0x0c, 0x00, 0x00, // UDP (no checksum)
        b'p', b'i', b'n', b'g',
    ];

    fn frame() -> Vec<u8> {
        let mut f = FRAME.to_vec();
        let csum = dataplane::wire::checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&csum.to_be_bytes());
        f
    }

    #[test]
    fn reflects_udp_and_drops_the_rest() {
        let mut io = MemIo::new(MemConfig::default()).unwrap();
        io.inject(&frame()).unwrap();
        let mut arp = frame();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        io.inject(&arp).unwrap();
        io.inject(&frame()[..30]).unwrap();
        let mut b = io.new_batch();
        assert_eq!(io.recv(&mut b).unwrap(), 3);
        reflect(&mut b);
        assert_eq!(b.len(), 1, "only the UDP frame goes back");
        io.send(&mut b).unwrap();
        let mut out = Vec::new();
        io.drain_sent(|f| out.push(f.to_vec()));
        let f = &out[0];
        assert_eq!(&f[0..6], &[2, 0, 0, 0, 0, 1], "to the sender's MAC");
        assert_eq!(&f[26..30], &[198, 18, 0, 2], "from our address");
        assert_eq!(&f[30..34], &[198, 18, 0, 1], "to the sender's address");
        assert_eq!(&f[34..38], &[0x00, 0x07, 0x0f, 0xa0], "ports swapped");
        assert_eq!(&f[42..], b"ping");
        assert_eq!(
            dataplane::wire::checksum::checksum(&f[14..34]),
            0,
            "IPv4 checksum still valid"
        );
        assert_eq!(
            io.free_buffers(),
            MemConfig::default().chunks as usize,
            "dropped frames were reclaimed"
        );
    }

    /// A valid frame from `FRAME` with `options` bytes of IPv4 options
    /// (a multiple of 4) and `payload` bytes of UDP payload.
    fn frame_with(options: usize, payload: usize) -> Vec<u8> {
        let mut f = frame()[..34].to_vec();
        f[14] = 0x45 + (options / 4) as u8;
        f.extend(std::iter::repeat_n(1u8, options));
        let udp_len = 8 + payload;
        f.extend_from_slice(&[0x0f, 0xa0, 0x00, 0x07]);
        f.extend_from_slice(&(udp_len as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend((0..payload).map(|i| i as u8));
        let total = (20 + options + udp_len) as u16;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        refill_ip_checksum(&mut f);
        f
    }

    fn refill_ip_checksum(f: &mut [u8]) {
        let ihl = usize::from(f[14] & 0x0f) * 4;
        if ihl < 20 || f.len() < 14 + ihl {
            return;
        }
        f[24..26].copy_from_slice(&[0, 0]);
        let c = dataplane::wire::checksum::checksum(&f[14..14 + ihl]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
    }

    #[test]
    fn the_fast_path_takes_plain_frames_and_leaves_options_to_the_parser() {
        let mut f = frame();
        assert!(plain_udp(&f));
        assert!(turn_around(&mut f));
        assert_eq!(&f[0..6], &[2, 0, 0, 0, 0, 1]);
        assert_eq!(&f[26..34], &[198, 18, 0, 2, 198, 18, 0, 1]);
        assert_eq!(&f[34..38], &[0x00, 0x07, 0x0f, 0xa0]);
        let mut o = frame_with(8, 4);
        assert!(!plain_udp(&o), "options: not the fast path");
        let before = o.clone();
        assert!(turn_around(&mut o), "but still turned around");
        assert_eq!(&o[0..6], &before[6..12]);
        let mut bad = frame();
        bad[24] ^= 1;
        assert!(!turn_around(&mut bad), "a bad header checksum is dropped");
        assert_eq!(bad[0..6], frame()[0..6], "and left untouched");
    }

    proptest! {
        /// On any frame (valid ones with random fields, then some bytes of
        /// the headers changed, the checksum refreshed or not, the frame
        /// cut short or not), `turn_around` decides as the general parser
        /// does and leaves the same bytes.
        #[test]
        fn turn_around_agrees_with_the_general_parser(
            options in prop_oneof![Just(0usize), Just(4), Just(40)],
            payload in 0usize..64,
            changes in proptest::collection::vec((0usize..60, any::<u8>()), 0..4),
            refresh in any::<bool>(),
            cut in proptest::option::of(0usize..120),
            pad in 0usize..8,
        ) {
            let mut f = frame_with(options, payload);
            f.extend(std::iter::repeat_n(0xee, pad));
            for (at, v) in changes {
                if at < f.len() {
                    f[at] = v;
                }
            }
            if refresh {
                refill_ip_checksum(&mut f);
            }
            if let Some(c) = cut {
                f.truncate(c);
            }
            let mut general = f.clone();
            let want = swap_udp_frame_addresses(&mut general).is_ok();
            let mut fast = f.clone();
            prop_assert_eq!(turn_around(&mut fast), want);
            prop_assert_eq!(fast, general);
        }
    }
}
