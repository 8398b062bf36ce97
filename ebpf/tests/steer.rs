//! The steering program on a veth in a namespace: what it drops, what it
//! lets through, its route table and its attachment life cycle.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use common::{drain, has_xdp, in_ns, link_details, pair, send_udp, udp_socket, wait_for};
use dataplane::netns::Host;
use ebpf::{AttachMode, EbpfError, FlowRoute, MAX_QUEUES, MAX_ROUTES, MAX_SLOTS, Steering};

fn attach(host: &Host, mode: AttachMode) -> Result<Steering, EbpfError> {
    let ifindex = host.ifindex().expect("ifindex");
    in_ns(&host.ns, move || Steering::attach(ifindex, mode))
}

fn route(dst: Ipv4Addr, dst_port: u16, src: Option<Ipv4Addr>) -> FlowRoute {
    FlowRoute { dst, dst_port, src }
}

#[test]
fn attaches_in_each_mode_and_auto_prefers_driver() {
    let p = pair("stmode");
    for mode in [AttachMode::Auto, AttachMode::Driver, AttachMode::Generic] {
        let s = attach(&p.b, mode).expect("attach");
        let want = if mode == AttachMode::Generic {
            AttachMode::Generic
        } else {
            AttachMode::Driver
        };
        assert_eq!(s.attach_mode(), want, "asked for {mode:?}");
        assert_eq!(s.ifindex(), p.b.ifindex().unwrap());
        let details = link_details(&p.b);
        let shown = if want == AttachMode::Generic {
            "xdpgeneric"
        } else {
            "xdp"
        };
        assert!(
            details.contains(&format!(" {shown} ")) || details.contains(&format!("prog/{shown}")),
            "{mode:?}: {details}"
        );
        drop(s);
        assert!(
            !has_xdp(&p.b),
            "{mode:?} left a program: {}",
            link_details(&p.b)
        );
    }
}

#[test]
fn routed_udp_without_socket_is_dropped_and_the_rest_passes() {
    let p = pair("stdrop");
    let mut s = attach(&p.b, AttachMode::Auto).expect("attach");
    let (a, b) = (p.a.ip, p.b.ip);
    s.add_route(route(b, 7000, None), 3).unwrap();
    s.add_route(route(b, 7002, Some(a)), 4).unwrap();
    s.add_route(route(b, 7003, Some(Ipv4Addr::new(198, 18, 0, 9))), 5)
        .unwrap();

    // Kernel sockets on every port: routed ones must see nothing.
    let routed_any = udp_socket(&p.b, 7000);
    let unrouted = udp_socket(&p.b, 7001);
    let routed_src = udp_socket(&p.b, 7002);
    let other_src = udp_socket(&p.b, 7003);

    let before = s.counters().unwrap();
    send_udp(&p.a, b, 7000, 20);
    send_udp(&p.a, b, 7001, 20);
    send_udp(&p.a, b, 7002, 20);
    send_udp(&p.a, b, 7003, 20);

    let quiet = Duration::from_millis(300);
    let limit = Duration::from_secs(5);
    assert_eq!(drain(&unrouted, 20, quiet, limit), 20, "unrouted port");
    assert_eq!(
        drain(&other_src, 20, quiet, limit),
        20,
        "route for another source"
    );
    assert_eq!(
        drain(&routed_any, 1, quiet, limit),
        0,
        "route for any source"
    );
    assert_eq!(
        drain(&routed_src, 1, quiet, limit),
        0,
        "route for this source"
    );

    let c = s.counters().unwrap();
    assert_eq!(c.dropped - before.dropped, 40, "{c:?}");
    assert_eq!(c.redirected, 0, "{c:?}");
    // Other frames (IPv6 neighbour discovery, ...) may pass as well.
    assert!(c.passed - before.passed >= 40, "{c:?}");
}

/// A UDP socket on a's side whose datagrams carry 4 bytes of IP options
/// (three no-ops and an end marker), so their IPv4 header is 24 bytes.
fn sender_with_ip_options(host: &Host) -> UdpSocket {
    let sock = udp_socket(host, 0);
    let opts = [1u8, 1, 1, 0];
    // SAFETY: `opts` is valid for the length passed; the socket is open.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_OPTIONS,
            opts.as_ptr().cast(),
            opts.len() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "IP_OPTIONS: {}", std::io::Error::last_os_error());
    sock
}

#[test]
fn header_length_and_fragments_are_respected() {
    let p = pair("stihl");
    let mut s = attach(&p.b, AttachMode::Auto).expect("attach");
    s.add_route(route(p.b.ip, 7100, None), 0).unwrap();
    let routed = udp_socket(&p.b, 7100);
    let quiet = Duration::from_millis(300);
    let limit = Duration::from_secs(5);

    // Options move the UDP header; the route must still match.
    let before = s.counters().unwrap();
    let tx = sender_with_ip_options(&p.a);
    let dst = SocketAddrV4::new(p.b.ip, 7100);
    for i in 0..10u32 {
        tx.send_to(&i.to_be_bytes(), dst)
            .expect("send with options");
    }
    assert_eq!(drain(&routed, 1, quiet, limit), 0);
    let c = s.counters().unwrap();
    assert_eq!(c.dropped - before.dropped, 10, "{c:?}");

    // Fragments are not steered: only the first carries the port, so the
    // whole datagram goes to the kernel, which reassembles it.
    let before = s.counters().unwrap();
    let big = udp_socket(&p.a, 0);
    big.send_to(&[5u8; 4000], dst)
        .expect("send a fragmented datagram");
    let mut buf = [0u8; 8192];
    routed.set_read_timeout(Some(limit)).unwrap();
    let (n, _) = routed.recv_from(&mut buf).expect("reassembled datagram");
    assert_eq!(n, 4000);
    let c = s.counters().unwrap();
    assert_eq!(c.dropped, before.dropped, "{c:?}");
    assert!(c.passed - before.passed >= 3, "three fragments: {c:?}");
}

#[test]
fn ping_and_tcp_still_work() {
    let p = pair("sttcp");
    let mut s = attach(&p.b, AttachMode::Auto).expect("attach");
    s.add_route(route(p.b.ip, 5555, None), 0).unwrap();

    let out =
        p.a.ns
            .exec(
                "ping",
                &["-c", "3", "-i", "0.2", "-W", "2", &p.b.ip.to_string()],
            )
            .expect("ping through the steering program");
    assert!(out.contains("3 received"), "{out}");

    let addr = SocketAddrV4::new(p.b.ip, 5555);
    let listener = in_ns(&p.b.ns, move || TcpListener::bind(addr)).expect("listen");
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = vec![0u8; 100_000];
        conn.read_exact(&mut buf).expect("read");
        conn.write_all(&buf[..10]).expect("write");
    });
    let mut client = in_ns(&p.a.ns, move || {
        TcpStream::connect_timeout(&addr.into(), Duration::from_secs(5))
    })
    .expect("connect across the pair");
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // Big enough for several full-size segments, same port as a UDP route.
    client.write_all(&vec![7u8; 100_000]).expect("write");
    let mut echo = [0u8; 10];
    client.read_exact(&mut echo).expect("read");
    assert_eq!(echo, [7u8; 10]);
    server.join().expect("server");

    let c = s.counters().unwrap();
    assert_eq!(c.dropped, 0, "{c:?}");
    assert!(c.passed > 0, "{c:?}");
}

#[test]
fn routes_add_remove_list() {
    let p = pair("stroute");
    let mut s = attach(&p.b, AttachMode::Auto).expect("attach");
    let b = p.b.ip;
    let r1 = route(b, 9000, None);
    let r2 = route(b, 9000, Some(p.a.ip));
    let r3 = route(b, 9001, None);
    assert!(s.routes().unwrap().is_empty());
    s.add_route(r1, 1).unwrap();
    s.add_route(r2, 2).unwrap();
    s.add_route(r3, 3).unwrap();
    s.add_route(r3, 4).unwrap(); // moves the route
    let mut routes = s.routes().unwrap();
    routes.sort_by_key(|&(_, slot)| slot);
    assert_eq!(routes, vec![(r1, 1), (r2, 2), (r3, 4)]);

    s.remove_route(&r2).unwrap();
    assert!(matches!(s.remove_route(&r2), Err(EbpfError::RouteNotFound(r)) if r == r2));
    let mut routes = s.routes().unwrap();
    routes.sort_by_key(|&(_, slot)| slot);
    assert_eq!(routes, vec![(r1, 1), (r3, 4)]);

    assert!(matches!(
        s.add_route(route(b, 1, Some(Ipv4Addr::UNSPECIFIED)), 0),
        Err(EbpfError::UnspecifiedSource)
    ));
    assert!(matches!(
        s.add_route(r1, MAX_SLOTS),
        Err(EbpfError::SlotOutOfRange { slot: 64, max: 64 })
    ));
}

#[test]
fn route_table_full_is_an_error() {
    let p = pair("stfull");
    let mut s = attach(&p.b, AttachMode::Generic).expect("attach");
    let r = |i: u32| route(Ipv4Addr::from(0x0a00_0000 + i), 4000, None);
    for i in 0..MAX_ROUTES {
        s.add_route(r(i), i % MAX_SLOTS).expect("within capacity");
    }
    assert!(matches!(
        s.add_route(r(MAX_ROUTES), 0),
        Err(EbpfError::RouteTableFull { capacity: 4096 })
    ));
    // Updating an existing route still works when full.
    s.add_route(r(0), 7).unwrap();
    assert_eq!(s.routes().unwrap().len(), MAX_ROUTES as usize);
}

#[test]
fn socket_registration_checks_its_arguments() {
    let p = pair("stsock");
    let mut s = attach(&p.b, AttachMode::Auto).expect("attach");
    // Any descriptor does for the range checks, which come first.
    let not_xsk = UdpSocket::bind("127.0.0.1:0").unwrap();
    assert!(matches!(
        s.register_socket(MAX_SLOTS, 0, not_xsk.as_fd()),
        Err(EbpfError::SlotOutOfRange { slot: 64, max: 64 })
    ));
    assert!(matches!(
        s.register_socket(0, MAX_QUEUES, not_xsk.as_fd()),
        Err(EbpfError::QueueOutOfRange { queue: 64, max: 64 })
    ));
    assert!(matches!(
        s.unregister_socket(MAX_SLOTS, 0),
        Err(EbpfError::SlotOutOfRange { .. })
    ));
    assert!(matches!(
        s.unregister_socket(0, MAX_QUEUES),
        Err(EbpfError::QueueOutOfRange { .. })
    ));
    // The kernel takes only AF_XDP sockets.
    assert!(matches!(
        s.register_socket(1, 0, not_xsk.as_fd()),
        Err(EbpfError::Map { map: "xsks", .. })
    ));
    s.unregister_socket(1, 0)
        .expect("removing an empty entry is fine");
}

#[test]
fn detaches_on_drop_and_reattaches() {
    let p = pair("stdrop2");
    assert!(!has_xdp(&p.b));
    let s = attach(&p.b, AttachMode::Auto).expect("attach");
    assert!(has_xdp(&p.b), "{}", link_details(&p.b));
    // A second owner is refused while the first lives.
    assert!(matches!(
        attach(&p.b, AttachMode::Auto),
        Err(EbpfError::Busy { .. })
    ));
    drop(s);
    assert!(!has_xdp(&p.b), "{}", link_details(&p.b));
    let s = attach(&p.b, AttachMode::Auto).expect("attach again");
    // The handle may be used from any thread, whatever its namespace.
    std::thread::spawn(move || s.counters().expect("counters from another thread"))
        .join()
        .unwrap();
    assert!(!has_xdp(&p.b), "{}", link_details(&p.b));
}

#[test]
fn missing_interface_is_an_error() {
    let p = pair("stnoif");
    let r = in_ns(&p.b.ns, || Steering::attach(999_999, AttachMode::Auto));
    assert!(
        matches!(r, Err(EbpfError::NoSuchInterface { ifindex: 999_999 })),
        "{r:?}"
    );
    let r = in_ns(&p.b.ns, || Steering::attach(0, AttachMode::Generic));
    assert!(
        matches!(r, Err(EbpfError::NoSuchInterface { ifindex: 0 })),
        "{r:?}"
    );
}

#[test]
fn replaces_a_program_attached_through_netlink() {
    let p = pair("stnl");
    // The old way, as an operator or an older version of us would have.
    let obj = concat!(env!("OUT_DIR"), "/steer.o");
    p.b.ns
        .ip(&[
            "link",
            "set",
            "dev",
            &p.b.ifname,
            "xdpgeneric",
            "obj",
            obj,
            "sec",
            "xdp",
        ])
        .expect("ip link set xdpgeneric obj");
    assert!(
        link_details(&p.b).contains("xdpgeneric"),
        "{}",
        link_details(&p.b)
    );

    let s = attach(&p.b, AttachMode::Auto).expect("attach over a netlink program");
    assert_eq!(s.attach_mode(), AttachMode::Driver);
    let details = link_details(&p.b);
    assert!(!details.contains("xdpgeneric"), "{details}");
    assert!(has_xdp(&p.b), "{details}");
    drop(s);
    assert!(
        wait_for(Duration::from_secs(2), || (!has_xdp(&p.b)).then_some(())).is_some(),
        "{}",
        link_details(&p.b)
    );
}
