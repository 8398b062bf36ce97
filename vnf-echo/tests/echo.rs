//! The echo VNF as a real process on AF_XDP in one namespace, a kernel client
//! in another: every datagram comes back, and the interface keeps serving
//! ping and TCP because the XDP program passes what it does not steer.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dataplane::netns::{Pair, PairOptions, check_privileges};

fn require_root() {
    if let Err(e) = check_privileges() {
        panic!("this test builds network namespaces and attaches XDP programs: {e}");
    }
}

/// The VNF process; SIGTERM and reaped on drop so a failing test leaves nothing.
struct Vnf(Child);

impl Vnf {
    fn start(pair: &Pair, backend: &str) -> Self {
        Self::start_with(pair, backend, &[])
    }

    /// As `start`, with further arguments for the VNF.
    fn start_with(pair: &Pair, backend: &str, extra: &[&str]) -> Self {
        let mut child = pair
            .b
            .ns
            .command(env!("CARGO_BIN_EXE_vnf-echo"))
            .args([
                "--backend",
                backend,
                "--iface",
                "veth0",
                "--port",
                "7",
                "--bind",
                "copy",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "READY", "vnf-echo did not come up");
        Vnf(child)
    }

    /// Stops the VNF with SIGTERM and returns its final counters line.
    fn stop(mut self) -> String {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let mut out = String::new();
        self.0
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let status = self.0.wait().unwrap();
        assert!(status.success(), "vnf-echo exited with {status}");
        out
    }
}

impl Drop for Vnf {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `n` numbered datagrams with at most `window` unanswered at once and
/// returns the set of numbers that came back.
fn echo_client(n: u32, window: u32) -> HashSet<u32> {
    let s = UdpSocket::bind("198.18.0.1:0").unwrap();
    s.connect("198.18.0.2:7").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut back = HashSet::with_capacity(n as usize);
    let mut buf = [0u8; 64];
    let (mut sent, deadline) = (0u32, Instant::now() + Duration::from_secs(120));
    while back.len() < n as usize && Instant::now() < deadline {
        while sent < n && sent - (back.len() as u32) < window {
            let mut p = [0u8; 32];
            p[..4].copy_from_slice(&sent.to_be_bytes());
            s.send(&p).unwrap();
            sent += 1;
        }
        match s.recv(&mut buf) {
            Ok(len) => {
                assert_eq!(len, 32, "payload length preserved");
                let v = u32::from_be_bytes(buf[..4].try_into().unwrap());
                assert!(back.insert(v), "datagram {v} came back twice");
            }
            Err(e) => panic!("no reply after {} of {n}: {e}", back.len()),
        }
    }
    back
}

#[test]
fn echo_on_afxdp_returns_every_datagram_while_ping_and_tcp_still_work() {
    require_root();
    let pair = Pair::new("echo", PairOptions::default()).unwrap();
    let vnf = Vnf::start(&pair, "afxdp");

    // TCP server in b on another port: the XDP program must pass it.
    let tcp = pair.b.ns.spawn(|| {
        let l = TcpListener::bind("198.18.0.2:8080").unwrap();
        let (mut c, _) = l.accept().unwrap();
        let mut buf = [0u8; 5];
        c.read_exact(&mut buf).unwrap();
        c.write_all(&buf).unwrap();
    });

    const N: u32 = 100_000;
    let back = pair
        .a
        .ns
        .spawn(|| echo_client(N, 64))
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(back.len(), N as usize, "every datagram came back");

    let ping = pair
        .a
        .ns
        .exec("ping", &["-c", "3", "-i", "0.2", "-W", "2", "198.18.0.2"])
        .unwrap();
    assert!(
        ping.contains("3 received"),
        "ping through the XDP-attached interface: {ping}"
    );

    pair.a
        .ns
        .spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut c = loop {
                match TcpStream::connect("198.18.0.2:8080") {
                    Ok(c) => break c,
                    Err(e) if Instant::now() > deadline => panic!("TCP connect: {e}"),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            };
            c.write_all(b"hello").unwrap();
            let mut buf = [0u8; 5];
            c.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"hello");
        })
        .join()
        .unwrap()
        .unwrap();
    tcp.join().unwrap().unwrap();

    let counters = vnf.stop();
    assert!(
        counters.contains(&format!("\"rx_packets\":{N}")),
        "counters flushed at SIGTERM: {counters}"
    );
}

#[test]
fn echo_on_kernel_udp_returns_every_datagram() {
    require_root();
    let pair = Pair::new("echou", PairOptions::default()).unwrap();
    let vnf = Vnf::start(&pair, "udp");
    const N: u32 = 20_000;
    let back = pair
        .a
        .ns
        .spawn(|| echo_client(N, 64))
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(back.len(), N as usize);
    let counters = vnf.stop();
    assert!(
        counters.contains(&format!("\"tx_packets\":{N}")),
        "{counters}"
    );
}

/// DPDK (feature `dpdk`) through `net_af_packet` on the namespace's veth:
/// the same client, every datagram back, DPDK's port counters flushed.
#[cfg(feature = "dpdk")]
#[test]
fn echo_on_dpdk_af_packet_returns_every_datagram() {
    require_root();
    let pair = Pair::new("echod", PairOptions::default()).unwrap();
    let vnf = Vnf::start(&pair, "dpdk");
    const N: u32 = 20_000;
    let back = pair
        .a
        .ns
        .spawn(|| echo_client(N, 64))
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(back.len(), N as usize, "every datagram came back");
    let counters = vnf.stop();
    assert!(
        counters.contains(&format!("\"tx_packets\":{N}")),
        "{counters}"
    );
}

/// DPDK with two queue pairs (`net_af_packet` fans flows out over them):
/// four clients on their own source ports, every datagram back, and the
/// VNF's summed counters count each once.
#[cfg(feature = "dpdk")]
#[test]
fn echo_on_dpdk_with_two_queues_returns_every_datagram() {
    require_root();
    let pair = Pair::new(
        "echodq",
        PairOptions {
            queues: 2,
            ..PairOptions::default()
        },
    )
    .unwrap();
    let vnf = Vnf::start_with(&pair, "dpdk", &["--queues", "2"]);
    const N: u32 = 5_000;
    let clients: Vec<_> = (0..4)
        .map(|_| pair.a.ns.spawn(|| echo_client(N, 32)))
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap().unwrap().len(), N as usize);
    }
    let counters = vnf.stop();
    assert!(
        counters.contains(&format!("\"tx_packets\":{}", 4 * N)),
        "{counters}"
    );
}

#[cfg(not(feature = "dpdk"))]
#[test]
fn dpdk_is_refused_without_the_feature() {
    let out = Command::new(env!("CARGO_BIN_EXE_vnf-echo"))
        .args(["--backend", "dpdk", "--iface", "lo", "--addr", "127.0.0.1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("built without the dpdk feature"), "{err}");
}

#[test]
fn bad_arguments_are_explained() {
    let out = Command::new(env!("CARGO_BIN_EXE_vnf-echo"))
        .args(["--iface", "no-such-if9", "--backend", "udp"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-if9") && err.contains("--addr"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_vnf-echo"))
        .args(["--queues", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
