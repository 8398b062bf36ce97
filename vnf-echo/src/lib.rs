//! The echo VNF: the smallest complete network function on this stack.
//!
//! Every UDP datagram that reaches it goes back to its sender: the frame's
//! Ethernet, IPv4 and UDP source and destination are swapped in place and the
//! same buffer is transmitted. No copy, no allocation, no checksum work: the
//! Internet checksum is a sum, and swapping two summed fields changes nothing.
//! Frames that are not IPv4/UDP are dropped.
//!
//! The logic is [`reflect`]; `main.rs` is the shell that runs it on a backend.

use dataplane::io::Batch;
use dataplane::wire::swap_udp_frame_addresses;

/// Turns every UDP frame of `burst` around in place; drops the others.
#[inline]
pub fn reflect(burst: &mut Batch) {
    burst.retain_mut(|f| swap_udp_frame_addresses(f.data_mut()).is_ok());
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::io::PacketIo;
    use dataplane::io::mem::{MemConfig, MemIo};

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
}
