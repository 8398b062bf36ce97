//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! [`sum`] returns the folded one's-complement sum of a byte string, not yet
//! complemented, so that the sums of a pseudo-header and a segment can be
//! [`combine`]d before the final complement. The checksum field of a header
//! holds `!sum`; a receiver that sums the header including that field gets
//! `0xffff` when it is intact.
//!
//! The sum is byte-order independent (RFC 1071 §2(B)): it is computed over
//! native-endian 64-bit words with end-around carry and converted to network
//! order once at the end, which is several times faster than summing 16-bit
//! big-endian words one by one.

use std::net::Ipv4Addr;

/// Folds a 64-bit one's-complement accumulator to 16 bits. Folding is exact
/// because 2^16 ≡ 1 (mod 2^16 − 1), so every 16-bit slice of the
/// accumulator carries the same weight.
#[inline]
fn fold(mut acc: u64) -> u16 {
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc as u16
}

/// Adds `w` to `acc` with end-around carry, which keeps `acc` a correct
/// one's-complement sum however many words are added.
#[inline(always)]
fn add_carry(acc: u64, w: u64) -> u64 {
    let (s, carry) = acc.overflowing_add(w);
    // Cannot overflow: after a carry `s <= 2^64 - 2`.
    s + u64::from(carry)
}

/// The one's-complement sum of `data`, as 16-bit big-endian words (an odd
/// last byte is padded with a zero), folded to 16 bits and not complemented.
#[inline]
pub fn sum(data: &[u8]) -> u16 {
    // Four independent accumulators let the carry chains of consecutive words
    // run in parallel instead of one after another.
    let mut acc = [0u64; 4];
    let mut blocks = data.chunks_exact(32);
    for b in &mut blocks {
        for (i, a) in acc.iter_mut().enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i * 8..i * 8 + 8]);
            *a = add_carry(*a, u64::from_ne_bytes(w));
        }
    }
    let mut total = add_carry(add_carry(acc[0], acc[1]), add_carry(acc[2], acc[3]));
    let mut words = blocks.remainder().chunks_exact(8);
    for c in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        total = add_carry(total, u64::from_ne_bytes(w));
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        // Zero padding after the bytes, in memory order, is exactly the
        // RFC's padding of an odd byte whatever the host's endianness.
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        total = add_carry(total, u64::from_ne_bytes(w));
    }
    // The folded sum is in the byte order the words were read in; `from_be`
    // turns it into the value of the big-endian sum (a swap on little-endian
    // hosts, nothing on big-endian ones).
    u16::from_be(fold(total))
}

/// The one's-complement sum of several partial sums.
#[inline]
pub fn combine(sums: &[u16]) -> u16 {
    let acc: u64 = sums.iter().map(|&s| u64::from(s)).sum();
    fold(acc)
}

/// The Internet checksum of `data`: the complement of [`sum`], the value a
/// checksum field holds when the field itself was zero while summing.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !sum(data)
}

/// The sum of the IPv4 pseudo-header that UDP and TCP checksums cover:
/// source and destination address, zero, protocol, and the segment length.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u16 {
    let s = u32::from(src);
    let d = u32::from(dst);
    let acc = u64::from(s >> 16)
        + u64::from(s & 0xffff)
        + u64::from(d >> 16)
        + u64::from(d & 0xffff)
        + u64::from(protocol)
        + u64::from(length);
    fold(acc)
}

/// The checksum after a 16-bit field covered by it changed from `old` to
/// `new`, per RFC 1624 equation 3: `HC' = ~(~HC + ~m + m')`.
///
/// The result equals a full recomputation ([`checksum`]) in every case but
/// one: when every covered byte is now zero, recomputation gives `0xffff`
/// and this gives `0x0000`, because a one's-complement sum with a non-zero
/// term is never +0. That case cannot arise for the headers NFVinc updates:
/// an IPv4 header has a non-zero version, and the UDP pseudo-header a
/// non-zero protocol.
#[inline]
pub fn update16(checksum: u16, old: u16, new: u16) -> u16 {
    let acc = u64::from(!checksum) + u64::from(!old) + u64::from(new);
    !fold(acc)
}

/// The checksum after a 32-bit field covered by it (an IPv4 address, a
/// sequence number) changed from `old` to `new`: two 16-bit updates at once,
/// with the same all-zero exception as [`update16`].
#[inline]
pub fn update32(checksum: u16, old: u32, new: u32) -> u16 {
    let acc = u64::from(!checksum)
        + u64::from(!(old >> 16) as u16)
        + u64::from(!(old as u16))
        + u64::from(new >> 16)
        + u64::from(new & 0xffff);
    !fold(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain RFC 1071 reference: 16-bit big-endian words, one at a time.
    fn reference_sum(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for c in data.chunks(2) {
            let w = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_be_bytes([c[0], 0])
            };
            acc += u32::from(w);
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn ipv4_header_example() {
        // A well-known header whose checksum field holds b861.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(sum(&h), 0xffff, "an intact header sums to all ones");
    }

    #[test]
    fn matches_reference_at_every_length_and_alignment() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 131 + 7) as u8).collect();
        for start in 0..9 {
            for end in start..data.len() {
                assert_eq!(
                    sum(&data[start..end]),
                    reference_sum(&data[start..end]),
                    "{start}..{end}"
                );
            }
        }
        assert_eq!(sum(&[]), 0);
        assert_eq!(sum(&[0xff; 4096]), 0xffff);
    }

    #[test]
    fn combine_adds_partial_sums() {
        let data: Vec<u8> = (0..100u8).collect();
        // Splitting at an even offset keeps word boundaries.
        assert_eq!(combine(&[sum(&data[..40]), sum(&data[40..])]), sum(&data));
        assert_eq!(combine(&[0xffff, 0xffff]), 0xffff);
        assert_eq!(combine(&[]), 0);
    }

    #[test]
    fn pseudo_header_matches_bytes() {
        let src = Ipv4Addr::new(198, 18, 0, 1);
        let dst = Ipv4Addr::new(10, 255, 3, 200);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&src.octets());
        bytes.extend_from_slice(&dst.octets());
        bytes.extend_from_slice(&[0, 17]);
        bytes.extend_from_slice(&1234u16.to_be_bytes());
        assert_eq!(pseudo_header_v4(src, dst, 17, 1234), sum(&bytes));
    }

    #[test]
    fn incremental_16_equals_recompute() {
        let mut h: Vec<u8> = (0..20u8).map(|i| i.wrapping_mul(37)).collect();
        h[10] = 0;
        h[11] = 0;
        let mut hc = checksum(&h);
        for new in [0u16, 1, 0x00ff, 0x8000, 0xfffe, 0xffff, 0x1234] {
            let old = u16::from_be_bytes([h[8], h[9]]);
            h[8..10].copy_from_slice(&new.to_be_bytes());
            hc = update16(hc, old, new);
            assert_eq!(hc, checksum(&h), "ttl/proto word -> {new:#06x}");
        }
    }

    #[test]
    fn incremental_32_equals_recompute() {
        let mut h: Vec<u8> = (0..20u8).map(|i| i.wrapping_mul(91)).collect();
        h[10] = 0;
        h[11] = 0;
        let mut hc = checksum(&h);
        for new in [0u32, 0xffff_ffff, 0xc612_0001, 0x0000_ffff, 0xffff_0000, 1] {
            let old = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
            h[12..16].copy_from_slice(&new.to_be_bytes());
            hc = update32(hc, old, new);
            assert_eq!(hc, checksum(&h), "src -> {new:#010x}");
        }
    }

    #[test]
    fn incremental_differs_from_recompute_only_on_all_zero_data() {
        // Found by the fuzzer: zeroing the only non-zero word. The sum of the
        // new data is +0, which a one's-complement addition with a non-zero
        // term cannot produce, so the update yields -0's complement.
        let mut h = [0u8; 8];
        h[0..2].copy_from_slice(&0xffffu16.to_be_bytes());
        let hc = checksum(&h);
        h[0..2].fill(0);
        assert_eq!(checksum(&h), 0xffff);
        assert_eq!(update16(hc, 0xffff, 0), 0x0000);
        // One more non-zero bit anywhere and the two agree again.
        h[7] = 1;
        let hc = checksum(&h);
        h[0..2].copy_from_slice(&0xfffeu16.to_be_bytes());
        assert_eq!(update16(hc, 0, 0xfffe), checksum(&h));
    }
}
