//! Link-layer addresses for frames a VNF originates itself.
//!
//! Every backend but kernel UDP writes whole Ethernet frames, so a VNF that
//! sends to peers (rather than answering a frame in place) must know its own
//! MAC and the MAC of the next hop towards every peer. The kernel still owns
//! ARP on the interface (the XDP program passes every packet it does not
//! steer, ARP included, to the kernel, and DPDK's `net_af_packet` leaves
//! the kernel's copy of each frame alone), so the next hop's MAC is read
//! from the kernel's neighbour table, after a datagram sent through an
//! ordinary socket has made the kernel resolve it.
//!
//! The table is read from `/proc/thread-self/net/arp` and the routes from
//! `/proc/thread-self/net/route`: those show the calling thread's network
//! namespace, where `/proc/net` (`/proc/self/net`) shows the main
//! thread's, which differs in a thread that entered a namespace on its
//! own (as [`crate::netns::Netns::spawn`] does).
//! A NIC bound to a poll-mode driver has no kernel interface: there its
//! peers' MACs must come from configuration.
//!
//! These are set-up calls (file reads, a probe datagram, short sleeps in
//! [`resolve`]), never for a packet path.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use crate::wire::MacAddr;

/// The MAC address of `iface` (`SIOCGIFHWADDR`) in the calling thread's
/// namespace, or `None` (no such interface, or a name the kernel cannot
/// take).
pub fn iface_mac(iface: &str) -> Option<MacAddr> {
    let bytes = iface.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return None;
    }
    // SAFETY: a plain datagram socket, closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: all-zero bytes are a valid ifreq.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq with a NUL-terminated name (the name is
    // shorter than the zeroed array); the kernel writes the hardware
    // address into its union.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut req) };
    // SAFETY: `fd` is ours and used no more.
    unsafe { libc::close(fd) };
    if rc != 0 {
        return None;
    }
    // SAFETY: after a successful SIOCGIFHWADDR the union holds a sockaddr.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *d = *s as u8;
    }
    Some(mac)
}

/// An address as `/proc/net/route` prints it: the address's bytes (network
/// order in memory) read as a host-order `u32`, in hex.
fn hex_ip(s: &str) -> Option<Ipv4Addr> {
    let v = u32::from_str_radix(s, 16).ok()?;
    Some(Ipv4Addr::from(v.to_ne_bytes()))
}

fn parse_mac(s: &str) -> Option<MacAddr> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// The next hop towards `dst` in a routing table in `/proc/net/route`'s
/// format, through `iface` only.
fn next_hop_in(table: &str, iface: &str, dst: Ipv4Addr) -> Option<Ipv4Addr> {
    let d = u32::from(dst);
    let mut best: Option<(u32, Ipv4Addr)> = None;
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 || f[0] != iface {
            continue;
        }
        let (Some(net), Some(gw), Some(mask)) = (hex_ip(f[1]), hex_ip(f[2]), hex_ip(f[7])) else {
            continue;
        };
        let (net, mask) = (u32::from(net), u32::from(mask));
        if d & mask != net & mask {
            continue;
        }
        let hop = if gw.is_unspecified() { dst } else { gw };
        if best.is_none_or(|(m, _)| mask.count_ones() > m.count_ones()) {
            best = Some((mask, hop));
        }
    }
    best.map(|(_, hop)| hop)
}

/// The complete entry for `ip` on `iface` in a neighbour table in
/// `/proc/net/arp`'s format. Malformed lines are skipped.
fn arp_entry_in(table: &str, iface: &str, ip: Ipv4Addr) -> Option<MacAddr> {
    /// ATF_COM: the entry is complete (resolved).
    const ATF_COM: u32 = 0x2;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || f[5] != iface || f[0].parse::<Ipv4Addr>().ok()? != ip {
            return None;
        }
        let flags = u32::from_str_radix(f[2].trim_start_matches("0x"), 16).ok()?;
        if flags & ATF_COM == 0 {
            return None;
        }
        parse_mac(f[3])
    })
}

/// One of the calling thread's namespace's tables under `/proc/.../net`
/// (`/proc/net` on kernels before 3.17, which lack `thread-self`).
fn net_table(name: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/thread-self/net/{name}"))
        .or_else(|_| std::fs::read_to_string(format!("/proc/net/{name}")))
        .ok()
}

/// The next hop towards `dst` through `iface`: `dst` itself when it is on a
/// directly connected network, else the gateway of the longest matching
/// route. `None` when no route through `iface` matches.
pub fn next_hop(iface: &str, dst: Ipv4Addr) -> Option<Ipv4Addr> {
    let table = net_table("route")?;
    next_hop_in(&table, iface, dst)
}

/// The kernel's complete neighbour entry for `ip` on `iface`, if any.
pub fn arp_entry(iface: &str, ip: Ipv4Addr) -> Option<MacAddr> {
    let table = net_table("arp")?;
    arp_entry_in(&table, iface, ip)
}

/// The MAC of the next hop towards `dst` through `iface`, asking the kernel
/// to resolve it (an empty datagram to `dst`'s discard port, 9, which no
/// VNF steers, every 100 ms) and waiting up to `within`. `None` when no
/// route through `iface` leads to `dst` or the hop stays unresolved.
pub fn resolve(iface: &str, dst: SocketAddrV4, within: Duration) -> Option<MacAddr> {
    let hop = next_hop(iface, *dst.ip())?;
    if let Some(mac) = arp_entry(iface, hop) {
        return Some(mac);
    }
    let probe = UdpSocket::bind("0.0.0.0:0").ok();
    let deadline = Instant::now() + within;
    let mut next_probe = Instant::now();
    while Instant::now() < deadline {
        if Instant::now() >= next_probe {
            if let Some(s) = &probe {
                let _ = s.send_to(b"", SocketAddrV4::new(*dst.ip(), 9));
            }
            next_probe = Instant::now() + Duration::from_millis(100);
        }
        // Resolution takes a round trip on the link: poll the table
        // gently rather than spin.
        std::thread::sleep(Duration::from_millis(2));
        if let Some(mac) = arp_entry(iface, hop) {
            return Some(mac);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netns::{End, Netns, check_privileges, veth};

    /// `/proc/net/route` prints an address's bytes as a host-order u32.
    fn route_hex(ip: [u8; 4]) -> String {
        format!("{:08X}", u32::from_ne_bytes(ip))
    }

    fn route_table() -> String {
        let head =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT";
        let row = |iface: &str, net: [u8; 4], gw: [u8; 4], mask: [u8; 4]| {
            format!(
                "{iface}\t{}\t{}\t0003\t0\t0\t0\t{}\t0\t0\t0",
                route_hex(net),
                route_hex(gw),
                route_hex(mask)
            )
        };
        [
            head.to_string(),
            row("eth0", [0, 0, 0, 0], [10, 81, 0, 1], [0, 0, 0, 0]),
            row("eth0", [10, 81, 0, 0], [0; 4], [255, 255, 255, 0]),
            row("eth0", [10, 90, 0, 0], [10, 81, 0, 7], [255, 255, 0, 0]),
            row("eth1", [10, 90, 1, 0], [0; 4], [255, 255, 255, 0]),
            "eth0\tnot-hex\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0".to_string(),
            "short line".to_string(),
        ]
        .join("\n")
    }

    #[test]
    fn route_addresses_are_read_in_host_order() {
        let ip = hex_ip(&route_hex([10, 70, 1, 0])).unwrap();
        assert_eq!(ip, Ipv4Addr::new(10, 70, 1, 0));
        assert_eq!(hex_ip("zz"), None);
    }

    #[test]
    fn the_longest_matching_route_through_the_interface_wins() {
        let t = route_table();
        let ip = Ipv4Addr::new;
        // Directly connected: the destination itself.
        assert_eq!(
            next_hop_in(&t, "eth0", ip(10, 81, 0, 9)),
            Some(ip(10, 81, 0, 9))
        );
        // The /16 through a gateway beats the default route.
        assert_eq!(
            next_hop_in(&t, "eth0", ip(10, 90, 1, 5)),
            Some(ip(10, 81, 0, 7))
        );
        // Only the default route matches.
        assert_eq!(
            next_hop_in(&t, "eth0", ip(192, 0, 2, 1)),
            Some(ip(10, 81, 0, 1))
        );
        // Routes through other interfaces do not count.
        assert_eq!(
            next_hop_in(&t, "eth1", ip(10, 90, 1, 5)),
            Some(ip(10, 90, 1, 5))
        );
        assert_eq!(next_hop_in(&t, "eth1", ip(10, 81, 0, 9)), None);
        assert_eq!(next_hop_in(&t, "eth2", ip(10, 81, 0, 9)), None);
        assert_eq!(next_hop_in("", "eth0", ip(10, 81, 0, 9)), None);
    }

    #[test]
    fn only_complete_entries_of_the_interface_are_taken() {
        let t = "IP address       HW type     Flags       HW address            Mask     Device\n\
                 10.81.0.1        0x1         0x2         02:aa:bb:cc:dd:01     *        eth0\n\
                 bad-address      0x1         0x2         02:aa:bb:cc:dd:09     *        eth0\n\
                 10.81.0.3        0x1         0x0         00:00:00:00:00:00     *        eth0\n\
                 10.81.0.4        0x1         0x2         02:aa:bb:cc:dd:04     *        eth1\n\
                 10.81.0.5        0x1         0x6         02:aa:bb:cc:dd:05     *        eth0\n\
                 10.81.0.6        0x1         0x2         02:aa:bb:cc:dd        *        eth0\n";
        let ip = |d| Ipv4Addr::new(10, 81, 0, d);
        assert_eq!(
            arp_entry_in(t, "eth0", ip(1)),
            Some([2, 0xaa, 0xbb, 0xcc, 0xdd, 1])
        );
        assert_eq!(arp_entry_in(t, "eth0", ip(3)), None, "incomplete");
        assert_eq!(arp_entry_in(t, "eth0", ip(4)), None, "another interface");
        assert_eq!(
            arp_entry_in(t, "eth1", ip(4)),
            Some([2, 0xaa, 0xbb, 0xcc, 0xdd, 4])
        );
        assert_eq!(
            arp_entry_in(t, "eth0", ip(5)),
            Some([2, 0xaa, 0xbb, 0xcc, 0xdd, 5]),
            "permanent entries are complete too"
        );
        assert_eq!(arp_entry_in(t, "eth0", ip(6)), None, "malformed MAC");
        assert_eq!(arp_entry_in(t, "eth0", ip(7)), None, "absent");
    }

    #[test]
    fn macs_parse_strictly() {
        assert_eq!(parse_mac("02:00:0a:ff:10:01"), Some([2, 0, 10, 255, 16, 1]));
        assert_eq!(parse_mac("02:00:0a:ff:10"), None);
        assert_eq!(parse_mac("02:00:0a:ff:10:01:02"), None);
        assert_eq!(parse_mac("2:00:0a:ff:10:01"), None);
        assert_eq!(parse_mac("02:00:0a:ff:10:zz"), None);
    }

    #[test]
    fn loopback_has_a_mac_and_missing_interfaces_do_not() {
        assert_eq!(iface_mac("lo"), Some([0; 6]));
        assert_eq!(iface_mac("no-such-if0"), None);
        assert_eq!(iface_mac("bad\0name"), None);
        assert_eq!(iface_mac(""), None);
        assert_eq!(iface_mac("a-name-longer-than-ifnamsiz"), None);
    }

    /// On a real link without static entries: the kernel resolves the
    /// peer on our probe, directly and through a gateway, and an address
    /// no route reaches gives `None` at once. Run in a thread that entered
    /// the namespace alone: the tables read must be that thread's.
    #[test]
    fn resolve_asks_the_kernel_for_the_next_hop() {
        if let Err(e) = check_privileges() {
            panic!("this test builds network namespaces joined by a veth, which needs root: {e}");
        }
        let a = Netns::new("ngha").unwrap();
        let b = Netns::new("nghb").unwrap();
        veth(
            End {
                ns: &a,
                ifname: "eth0",
                cidr: "10.77.0.1/24",
            },
            End {
                ns: &b,
                ifname: "eth0",
                cidr: "10.77.0.2/24",
            },
        )
        .unwrap();
        a.ip(&["route", "add", "10.78.0.0/16", "via", "10.77.0.2"])
            .unwrap();
        let b_mac = b.spawn(|| iface_mac("eth0")).join().unwrap().unwrap();
        assert!(b_mac.is_some(), "the peer's interface has a MAC");
        let got = a
            .spawn(|| {
                let within = Duration::from_secs(5);
                (
                    iface_mac("eth0"),
                    next_hop("eth0", Ipv4Addr::new(10, 78, 3, 4)),
                    resolve("eth0", "10.77.0.2:7".parse().unwrap(), within),
                    resolve("eth0", "10.78.3.4:7".parse().unwrap(), within),
                    resolve("eth0", "192.0.2.1:7".parse().unwrap(), within),
                )
            })
            .join()
            .unwrap()
            .unwrap();
        assert!(got.0.is_some_and(|m| m != [0; 6]), "our own MAC");
        assert_ne!(got.0, b_mac);
        assert_eq!(got.1, Some(Ipv4Addr::new(10, 77, 0, 2)), "the gateway");
        assert_eq!(got.2, b_mac, "directly connected peer");
        assert_eq!(got.3, b_mac, "behind the gateway: the gateway's MAC");
        assert_eq!(got.4, None, "no route through eth0");
    }
}
