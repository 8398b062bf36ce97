//! The kernel UDP backend across a real veth link: host a sends datagrams
//! with a std socket, a `UdpIo` in host b echoes them by swapping the
//! addresses of each frame in place, and every datagram must come back with
//! its payload intact.
//!
//! Needs root: it builds network namespaces and a veth pair.

use std::collections::HashSet;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dataplane::io::PacketIo;
use dataplane::io::udp::{UdpConfig, UdpIo};
use dataplane::netns::{self, Pair, PairOptions};
use dataplane::wire;

const N: u64 = 10_000;
/// Datagrams in flight at most: keeps every socket buffer far from full, so
/// that a loss means a bug rather than an overrun. The client's socket has
/// the default receive buffer (`net.core.rmem_default`, about 208 KiB), and
/// a 1.4 KB datagram takes about 2.3 KiB of it.
const WINDOW: u64 = 32;
const PORT: u16 = 9000;
const DEADLINE: Duration = Duration::from_secs(60);
const STALL: Duration = Duration::from_secs(5);

/// Payload of datagram `seq`: its number, then bytes derived from it, with
/// lengths from 8 to 1407 so that many sizes cross the link.
fn payload(seq: u64, buf: &mut [u8]) -> usize {
    let len = 8 + (seq as usize * 37) % 1400;
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in buf[8..len].iter_mut().enumerate() {
        *b = (seq as usize).wrapping_mul(31).wrapping_add(i) as u8;
    }
    len
}

#[test]
fn echo_ten_thousand_datagrams_across_a_veth_pair() {
    if let Err(e) = netns::check_privileges() {
        panic!("this test builds network namespaces and a veth pair, which needs root: {e}");
    }
    let pair = Pair::new("udpbe", PairOptions::default()).expect("veth pair");
    let server = SocketAddrV4::new(pair.b.ip, PORT);
    let stop = Arc::new(AtomicBool::new(false));

    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let echo_stop = stop.clone();
    let echo = pair.b.ns.spawn(move || {
        let mut io = UdpIo::open(UdpConfig {
            bind: server,
            chunks: 1024,
            ..UdpConfig::default()
        })
        .expect("UDP backend in host b");
        let _ = ready_tx.send(());
        let mut batch = io.new_batch();
        let started = Instant::now();
        while !echo_stop.load(Ordering::Relaxed) && started.elapsed() < DEADLINE {
            if io.recv(&mut batch).expect("recv") == 0 {
                io.wait(Duration::from_millis(10)).expect("wait");
                continue;
            }
            for mut f in batch.iter_mut() {
                wire::swap_udp_frame_addresses(f.data_mut()).expect("a received frame swaps");
            }
            while !batch.is_empty() {
                if io.send(&mut batch).expect("send") == 0 {
                    std::thread::yield_now();
                }
            }
        }
        (io.counters(), io.stats(), io.free_buffers())
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the backend came up");

    let client_ip = pair.a.ip;
    let client = pair.a.ns.spawn(move || {
        let sock = UdpSocket::bind(SocketAddrV4::new(client_ip, 0)).expect("client socket");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        let mut out = [0u8; 1500];
        let mut inb = [0u8; 2048];
        let mut expect = [0u8; 1500];
        let mut seen = HashSet::new();
        let mut bad = 0u64;
        let mut sent = 0u64;
        let started = Instant::now();
        let mut progress = Instant::now();
        // A lost datagram stalls the window; give up on it after a while
        // instead of waiting out the whole deadline.
        while (seen.len() as u64) < N && started.elapsed() < DEADLINE && progress.elapsed() < STALL
        {
            while sent < N && sent - seen.len() as u64 - bad < WINDOW {
                let len = payload(sent, &mut out);
                sock.send_to(&out[..len], server).expect("send_to");
                sent += 1;
            }
            match sock.recv_from(&mut inb) {
                Ok((n, from)) => {
                    assert_eq!(from, SocketAddr::V4(server), "echo comes from the server");
                    let seq = u64::from_le_bytes(inb[..8].try_into().expect("8 bytes"));
                    let len = payload(seq, &mut expect);
                    if n == len && inb[..n] == expect[..len] && seen.insert(seq) {
                        progress = Instant::now();
                        continue;
                    }
                    bad += 1;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("recv_from: {e}"),
            }
        }
        (sent, seen.len() as u64, bad)
    });

    let (sent, echoed, bad) = client
        .join()
        .expect("client thread")
        .expect("client entered host a");
    stop.store(true, Ordering::Relaxed);
    let (counters, stats, free) = echo
        .join()
        .expect("echo thread")
        .expect("echo entered host b");

    assert_eq!(sent, N, "every datagram was sent");
    assert_eq!(bad, 0, "corrupt, duplicate or foreign echoes");
    assert_eq!(
        echoed, N,
        "every datagram came back (backend: {counters:?}, {stats:?})"
    );
    assert_eq!(counters.rx_packets, N);
    assert_eq!(counters.tx_packets, N);
    assert_eq!(counters.tx_errors, 0);
    assert_eq!(counters.rx_dropped, 0);
    assert_eq!(free, 1024, "every buffer is back in the pool");
    drop(pair);
}
