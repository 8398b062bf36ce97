//! Tests on virtual devices (`net_null`, `net_ring`): no NIC, no huge pages,
//! no root. Every test hot-plugs devices of its own names into the one EAL
//! this test process starts.

use super::*;
use crate::io::PacketIo;

fn eal() {
    eal::init(&EalConfig {
        huge: HugePages::Off,
        ..EalConfig::default()
    })
    .expect("EAL starts with --no-huge");
}

fn small(queues: u16) -> PortConfig {
    PortConfig {
        queues,
        chunks: 512,
        rx_desc: 128,
        tx_desc: 128,
        ..PortConfig::default()
    }
}

#[test]
fn null_device_frames_are_rewritten_in_place_and_sent() {
    eal();
    let port = DpdkPort::open("net_null_t1", small(1)).unwrap();
    let id = port.id();
    let mut io = port.into_queues().pop().unwrap();
    io.prefill(&[0xab; 64]).unwrap();
    let free0 = io.free_buffers();
    let mut b = io.new_batch();
    let mut total = 0;
    for _ in 0..100 {
        let n = io.recv(&mut b).unwrap();
        assert!(n <= b.burst());
        for mut f in b.iter_mut() {
            assert_eq!(f.len(), 64, "net_null delivers 64-byte frames");
            assert_eq!(f.data()[10], 0xab, "the prefilled bytes, not a copy");
            f.data_mut()[0] = 0x01;
        }
        // Drop one frame per burst: its mbuf must go back to the pool.
        b.truncate(n.saturating_sub(1));
        total += io.send(&mut b).unwrap();
        assert!(b.is_empty(), "net_null takes every frame");
    }
    assert!(total > 1000, "only {total} frames went through");
    let c = io.counters();
    assert_eq!(c.tx_packets, total as u64);
    assert_eq!(c.rx_packets, total as u64 + 100);
    assert_eq!(c.tx_bytes, 64 * total as u64);
    let s = io.port_stats().unwrap();
    assert_eq!(s.opackets, total as u64, "DPDK's own count agrees");
    assert_eq!(s.ipackets, c.rx_packets);
    io.release(&mut b).unwrap();
    assert_eq!(io.free_buffers(), free0, "no mbuf leaked (port {id})");
}

#[test]
fn ring_device_loops_frames_back_without_copying() {
    eal();
    // A net_ring device with no arguments transmits into the ring it
    // receives from.
    let port = DpdkPort::open("net_ring_t2", small(1)).unwrap();
    let mut io = port.into_queues().pop().unwrap();
    let mut b = io.new_batch();
    assert_eq!(io.alloc(&mut b, 8), 8);
    let mut addrs = Vec::new();
    for (i, mut f) in b.iter_mut().enumerate() {
        f.fill(&[i as u8; 100]).unwrap();
    }
    for i in 0..8 {
        addrs.push(b.frame(i).as_ptr() as usize);
    }
    assert_eq!(io.send(&mut b).unwrap(), 8);
    let mut back = io.new_batch();
    assert_eq!(io.recv(&mut back).unwrap(), 8);
    for (i, &addr) in addrs.iter().enumerate() {
        assert_eq!(back.frame(i), &[i as u8; 100][..]);
        assert_eq!(
            back.frame(i).as_ptr() as usize,
            addr,
            "the same buffer came back"
        );
    }
    back.clear();
    assert_eq!(io.recv(&mut back).unwrap(), 0);
    let c = io.counters();
    assert_eq!((c.tx_packets, c.rx_packets, c.rx_bytes), (8, 8, 800));
}

#[test]
fn multi_queue_ports_give_one_backend_per_queue() {
    eal();
    let port = DpdkPort::open("net_null_t3", small(2)).unwrap();
    assert_eq!(port.queues(), 2);
    let queues = port.into_queues();
    assert_eq!(queues.len(), 2);
    std::thread::scope(|s| {
        for mut io in queues {
            s.spawn(move || {
                let mut b = io.new_batch();
                let n = io.recv(&mut b).unwrap();
                assert!(n > 0, "queue {} received nothing", io.queue());
                assert_eq!(io.send(&mut b).unwrap(), n);
                assert_eq!(io.counters().tx_packets, n as u64);
            });
        }
    });
}

#[test]
fn bad_devices_and_settings_are_errors() {
    eal();
    let e = DpdkPort::open("net_nosuchdriver0", small(1)).unwrap_err();
    assert!(matches!(e, DpdkError::Probe { .. }), "{e}");
    let e = DpdkPort::open(
        "net_null_t4",
        PortConfig {
            chunk_size: 3000,
            ..small(1)
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("power of two"), "{e}");
    let e = DpdkPort::open("net_null_t5", small(2000)).unwrap_err();
    assert!(matches!(e, DpdkError::Start { .. }), "{e}");
}

#[test]
fn frames_start_at_staggered_cache_lines_and_keep_their_room() {
    eal();
    let port = DpdkPort::open("net_null_t6", small(1)).unwrap();
    let mut io = port.into_queues().pop().unwrap();
    let chunk = PortConfig::default().chunk_size as usize;
    let mut b = io.new_batch();
    let mut lines = std::collections::HashSet::new();
    for _ in 0..20 {
        io.recv(&mut b).unwrap();
        for i in 0..b.len() {
            let at = b.frame(i).as_ptr() as usize % chunk;
            assert!(at >= DpdkIo::headroom(), "offset {at} inside the headroom");
            assert_eq!(at % 64, DpdkIo::headroom() % 64, "cache-line steps");
            let mut f = b.frame_mut(i);
            assert!(f.room() >= 2048, "room {} after {at}", f.room());
            assert!(f.set_len(2048).is_ok());
            lines.insert(at / 64);
        }
        // Sent at full length: the mbuf's data offset and length are
        // taken from the frame wherever its buffer starts.
        let n = b.len();
        assert_eq!(io.send(&mut b).unwrap(), n, "net_null takes every frame");
    }
    assert!(
        lines.len() >= 8,
        "frame headers spread over only {} cache lines of their chunks",
        lines.len()
    );
    assert_eq!(io.counters().tx_bytes, 2048 * io.counters().tx_packets);
}
