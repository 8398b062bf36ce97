//! AF_XDP backend on a real veth pair: steering follows routes changed at
//! run time, frames come in through the socket and go back out, and buffers
//! are not leaked.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use dataplane::io::PacketIo;
use dataplane::io::afxdp::{AfXdpConfig, AfXdpPort, BindMode};
use dataplane::netns::{Pair, PairOptions, check_privileges};
use ebpf::FlowRoute;

fn require_root() {
    if let Err(e) = check_privileges() {
        panic!("this test builds network namespaces and attaches XDP programs: {e}");
    }
}

/// Sends `n` datagrams from host a to 198.18.0.2:port.
fn send_from_a(pair: &Pair, port: u16, n: usize) {
    pair.a
        .ns
        .spawn(move || {
            let s = UdpSocket::bind("198.18.0.1:0").unwrap();
            for i in 0..n {
                s.send_to(
                    &(i as u32).to_be_bytes(),
                    (Ipv4Addr::new(198, 18, 0, 2), port),
                )
                .unwrap();
            }
        })
        .join()
        .unwrap()
        .unwrap();
}

#[test]
fn routes_added_and_removed_at_run_time_steer_and_stop_steering() {
    require_root();
    let pair = Pair::new("steer", PairOptions::default()).unwrap();
    const PORT: u16 = 9000;
    // Host b: a kernel socket on the port, and an AF_XDP socket, with the
    // steering program attached; the test thread lives in b's namespace.
    let (tx, rx) = std::sync::mpsc::channel::<&'static str>();
    let (res_tx, res_rx) = std::sync::mpsc::channel::<(usize, usize)>();
    let ready_tx = res_tx.clone();
    let worker = pair.b.ns.spawn(move || {
        let kernel =
            UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), PORT)).unwrap();
        kernel
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let config = AfXdpConfig {
            bind: BindMode::Copy,
            ..AfXdpConfig::default()
        };
        let mut port = AfXdpPort::open("veth0", config).unwrap();
        let mut io = port.open_queue(0, 0).unwrap();
        let route = FlowRoute {
            dst: Ipv4Addr::new(198, 18, 0, 2),
            dst_port: PORT,
            src: None,
        };
        let mut batch = io.new_batch();
        let mut buf = [0u8; 64];
        // Both sockets are bound and the program attached (which resets
        // the veth's queues): packets sent from now on have somewhere to go.
        ready_tx.send((0, 0)).unwrap();
        // Each phase: the driver thread sends, then tells us to count.
        while let Ok(cmd) = rx.recv() {
            match cmd {
                // Acknowledged, so that the driver sends only once the
                // route is in (or out of) the map.
                "add" => {
                    port.add_route(route, 0).unwrap();
                    res_tx.send((0, 0)).unwrap();
                }
                "remove" => {
                    port.remove_route(&route).unwrap();
                    res_tx.send((0, 0)).unwrap();
                }
                "count" => {
                    let (mut via_xdp, mut via_kernel) = (0, 0);
                    let deadline = Instant::now() + Duration::from_millis(300);
                    while Instant::now() < deadline {
                        if io.recv(&mut batch).unwrap() > 0 {
                            via_xdp += batch.len();
                            for i in 0..batch.len() {
                                assert_eq!(
                                    &batch.frame(i)[36..38],
                                    &PORT.to_be_bytes(),
                                    "UDP dst port"
                                );
                            }
                            batch.clear();
                        }
                        while kernel.recv(&mut buf).is_ok() {
                            via_kernel += 1;
                        }
                    }
                    res_tx.send((via_xdp, via_kernel)).unwrap();
                }
                _ => break,
            }
        }
        io.release(&mut batch).unwrap();
        let counters = port.steer_counters().unwrap();
        assert!(
            counters.redirected >= 50,
            "steering counted its redirects: {counters:?}"
        );
    });
    let phase = |cmd: Option<&'static str>| {
        if let Some(c) = cmd {
            tx.send(c).unwrap();
            res_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        }
        send_from_a(&pair, PORT, 50);
        tx.send("count").unwrap();
        res_rx.recv_timeout(Duration::from_secs(10)).unwrap()
    };
    res_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(phase(None), (0, 50), "no route: the kernel gets the flow");
    assert_eq!(
        phase(Some("add")),
        (50, 0),
        "route added: AF_XDP gets the flow"
    );
    assert_eq!(
        phase(Some("remove")),
        (0, 50),
        "route removed: back to the kernel"
    );
    tx.send("stop").unwrap();
    worker.join().unwrap().unwrap();
}

#[test]
fn frames_are_echoed_in_place_and_buffers_are_not_leaked() {
    require_root();
    let pair = Pair::new("xsk", PairOptions::default()).unwrap();
    const PORT: u16 = 7;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let stop = dataplane::runtime::Shutdown::new();
    let stop2 = stop.clone();
    let vnf = pair.b.ns.spawn(move || {
        let config = AfXdpConfig {
            bind: BindMode::Copy,
            frames: 256,
            burst: 32,
            ..AfXdpConfig::default()
        };
        let mut port = AfXdpPort::open("veth0", config).unwrap();
        let mut io = port.open_queue(0, 0).unwrap();
        let free_at_start = io.free_frames();
        port.add_route(
            FlowRoute {
                dst: Ipv4Addr::new(198, 18, 0, 2),
                dst_port: PORT,
                src: None,
            },
            0,
        )
        .unwrap();
        ready_tx.send(()).unwrap();
        let c = dataplane::runtime::run_to_completion(
            &mut io,
            &mut |_, b: &mut dataplane::io::Batch| {
                b.retain_mut(|f| dataplane::wire::swap_udp_frame_addresses(f.data_mut()).is_ok())
            },
            dataplane::runtime::PollPolicy::default(),
            &stop2,
        )
        .unwrap();
        // Every buffer must be home: on the free list or in the fill ring.
        // Completions of the last burst may lag the send by a moment.
        let deadline = Instant::now() + Duration::from_secs(2);
        while io.frames_at_rest() < 256 && Instant::now() < deadline {
            io.flush().unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        (c, free_at_start, io.frames_at_rest())
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    // Far more packets than the 256-frame UMEM holds: buffers must recycle.
    let n = 5_000u32;
    let got = pair
        .a
        .ns
        .spawn(move || {
            let s = UdpSocket::bind("198.18.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = [0u8; 64];
            let mut got = 0u32;
            for i in 0..n {
                s.send_to(&i.to_be_bytes(), "198.18.0.2:7").unwrap();
                let len = s.recv(&mut buf).unwrap();
                assert_eq!(&buf[..len], &i.to_be_bytes(), "payload intact, in order");
                got += 1;
            }
            got
        })
        .join()
        .unwrap()
        .unwrap();
    stop.trigger();
    let (c, free_at_start, at_rest) = vnf.join().unwrap().unwrap();
    assert_eq!(free_at_start, 128, "half the UMEM primes the fill ring");
    assert_eq!(at_rest, 256, "no UMEM chunk leaked");
    assert_eq!(got, n);
    assert_eq!(c.rx_packets, u64::from(n));
    assert_eq!(c.tx_packets, u64::from(n));
}

#[test]
fn several_queues_each_get_their_own_socket() {
    require_root();
    let pair = Pair::new(
        "mq",
        PairOptions {
            queues: 2,
            ..PairOptions::default()
        },
    )
    .unwrap();
    const PORT: u16 = 9100;
    const FLOWS: u16 = 16;
    const PER_FLOW: usize = 20;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let vnf = pair.b.ns.spawn(move || {
        let config = AfXdpConfig {
            bind: BindMode::Copy,
            ..AfXdpConfig::default()
        };
        let mut port = AfXdpPort::open("veth0", config).unwrap();
        assert_eq!(port.queues(), 2);
        let mut ios = [
            port.open_queue(0, 0).unwrap(),
            port.open_queue(0, 1).unwrap(),
        ];
        port.add_route(
            FlowRoute {
                dst: Ipv4Addr::new(198, 18, 0, 2),
                dst_port: PORT,
                src: None,
            },
            0,
        )
        .unwrap();
        ready_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        let mut per_queue = [0usize; 2];
        let deadline = Instant::now() + Duration::from_secs(5);
        while per_queue.iter().sum::<usize>() < usize::from(FLOWS) * PER_FLOW
            && Instant::now() < deadline
        {
            for (q, io) in ios.iter_mut().enumerate() {
                let mut b = io.new_batch();
                per_queue[q] += io.recv(&mut b).unwrap();
                io.release(&mut b).unwrap();
            }
        }
        per_queue
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    pair.a
        .ns
        .spawn(move || {
            for flow in 0..FLOWS {
                let s = UdpSocket::bind(("198.18.0.1", 20_000 + flow)).unwrap();
                for _ in 0..PER_FLOW {
                    s.send_to(b"x", ("198.18.0.2", PORT)).unwrap();
                }
            }
        })
        .join()
        .unwrap()
        .unwrap();
    go_tx.send(()).unwrap();
    let per_queue = vnf.join().unwrap().unwrap();
    assert_eq!(
        per_queue.iter().sum::<usize>(),
        usize::from(FLOWS) * PER_FLOW,
        "{per_queue:?}"
    );
    assert!(
        per_queue.iter().all(|&n| n > 0),
        "flows spread over both queues: {per_queue:?}"
    );
}
