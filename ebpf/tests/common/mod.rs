//! Topology and traffic helpers shared by the integration tests.
//!
//! Every test builds its own veth pair in namespaces of its own and sends
//! traffic only there. XDP work happens in threads that entered the
//! namespace, since attaching resolves the interface index in the calling
//! thread's namespace.

#![allow(dead_code)] // each test binary uses its own subset

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use dataplane::netns::{Host, Netns, Pair, PairOptions, check_privileges};

/// A fresh pair; panics with the reason when this process may not build one.
pub fn pair(tag: &str) -> Pair {
    // Logs show with a failing test's output (or with --nocapture).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "ebpf=debug,dataplane=info".into()),
        )
        .with_test_writer()
        .try_init();
    if let Err(e) = check_privileges() {
        panic!("this test needs root: {e}");
    }
    Pair::new(tag, PairOptions::default()).expect("build veth pair")
}

/// Runs `f` in a thread inside `ns` and returns its result.
pub fn in_ns<R: Send + 'static>(ns: &Netns, f: impl FnOnce() -> R + Send + 'static) -> R {
    ns.spawn(f)
        .join()
        .expect("thread in namespace panicked")
        .expect("enter namespace")
}

/// `ip -d link show` of the host's interface.
pub fn link_details(host: &Host) -> String {
    host.ns
        .exec("ip", &["-d", "link", "show", "dev", &host.ifname])
        .expect("ip link show")
}

/// Whether the host's interface runs an XDP program, as `ip` sees it.
pub fn has_xdp(host: &Host) -> bool {
    link_details(host).contains("prog/xdp")
}

/// A UDP socket bound to `port` on the host's address, created inside its
/// namespace (a socket belongs to the namespace it was created in).
pub fn udp_socket(host: &Host, port: u16) -> UdpSocket {
    let addr = SocketAddrV4::new(host.ip, port);
    let sock = in_ns(&host.ns, move || UdpSocket::bind(addr)).expect("bind UDP socket");
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("set read timeout");
    sock
}

/// Sends `count` datagrams from `from` to `to:port`, paced in small bursts
/// so that no queue on the way overflows and every loss is the XDP
/// program's.
pub fn send_udp(from: &Host, to: Ipv4Addr, port: u16, count: usize) {
    let sock = udp_socket(from, 0);
    let dst = SocketAddrV4::new(to, port);
    for i in 0..count {
        sock.send_to(&(i as u32).to_be_bytes(), dst).expect("send");
        if i % 32 == 31 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Receives until `want` datagrams arrived or the socket stays quiet past
/// `quiet`, within `limit` overall; returns how many arrived.
pub fn drain(sock: &UdpSocket, want: usize, quiet: Duration, limit: Duration) -> usize {
    let start = Instant::now();
    let mut last = Instant::now();
    let mut got = 0;
    let mut buf = [0u8; 2048];
    while got < want && start.elapsed() < limit && last.elapsed() < quiet {
        if sock.recv_from(&mut buf).is_ok() {
            got += 1;
            last = Instant::now();
        }
    }
    got
}

/// Polls `f` until it returns `Some`, for at most `limit`.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
