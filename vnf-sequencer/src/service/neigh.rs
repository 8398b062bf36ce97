//! Link-layer addresses for frames the VNF originates on AF_XDP.
//!
//! The same as `vnf_paxos::service::neigh` (kept apart so that the two
//! VNFs do not depend on each other; both belong in `dataplane` one day).
//!
//! A kernel-bypass socket writes whole Ethernet frames, so the shell must
//! know its own MAC and the MAC of the next hop towards every peer. The
//! kernel still owns ARP on the interface (the XDP program passes every
//! packet it does not steer, ARP included, to the kernel), so the next
//! hop's MAC is read from the kernel's neighbour table after a datagram
//! sent through an ordinary socket has made the kernel resolve it. The
//! table is read from `/proc/net/arp` and routes from `/proc/net/route`,
//! which show the calling thread's network namespace.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use dataplane::wire::MacAddr;

/// The MAC address of `iface` (`SIOCGIFHWADDR`), or `None`.
pub fn iface_mac(iface: &str) -> Option<MacAddr> {
    let bytes = iface.as_bytes();
    if bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return None;
    }
    // SAFETY: a plain datagram socket, closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: all-zero bytes are a valid ifreq.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq with a NUL-terminated name; the kernel
    // writes the hardware address into its union.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut req) };
    // SAFETY: `fd` is ours.
    unsafe { libc::close(fd) };
    if rc != 0 {
        return None;
    }
    // SAFETY: after SIOCGIFHWADDR the union holds a sockaddr.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *d = *s as u8;
    }
    Some(mac)
}

fn hex_ip(s: &str) -> Option<Ipv4Addr> {
    // /proc/net/route prints the address's bytes (network order in
    // memory) as a host-order u32.
    let v = u32::from_str_radix(s, 16).ok()?;
    Some(Ipv4Addr::from(v.to_ne_bytes()))
}

/// The next hop towards `dst` through `iface`: `dst` itself when it is on
/// a directly connected network, else the gateway of the longest matching
/// route. `None` when no route through `iface` matches.
pub fn next_hop(iface: &str, dst: Ipv4Addr) -> Option<Ipv4Addr> {
    let table = std::fs::read_to_string("/proc/net/route").ok()?;
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

/// The kernel's complete neighbour entry for `ip` on `iface`, if any.
pub fn arp_entry(iface: &str, ip: Ipv4Addr) -> Option<MacAddr> {
    let table = std::fs::read_to_string("/proc/net/arp").ok()?;
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || f[5] != iface || f[0].parse::<Ipv4Addr>().ok()? != ip {
            continue;
        }
        let flags = u32::from_str_radix(f[2].trim_start_matches("0x"), 16).ok()?;
        if flags & 0x2 == 0 {
            continue; // incomplete
        }
        let mut mac = [0u8; 6];
        let parts: Vec<&str> = f[3].split(':').collect();
        if parts.len() != 6 {
            continue;
        }
        for (d, p) in mac.iter_mut().zip(parts) {
            *d = u8::from_str_radix(p, 16).ok()?;
        }
        return Some(mac);
    }
    None
}

/// The MAC of the next hop towards `dst` through `iface`, asking the kernel
/// to resolve it (a datagram to `dst`'s discard port, 9, which no VNF
/// steers) and waiting up to `within`. `None` when it stays unresolved.
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

    #[test]
    fn route_addresses_are_read_in_host_order() {
        // 10.70.1.0 as /proc/net/route prints it on a little-endian host.
        let ip = hex_ip(&format!("{:08X}", u32::from_ne_bytes([10, 70, 1, 0]))).unwrap();
        assert_eq!(ip, Ipv4Addr::new(10, 70, 1, 0));
    }

    #[test]
    fn loopback_has_a_mac_and_missing_interfaces_do_not() {
        assert_eq!(iface_mac("lo"), Some([0; 6]));
        assert_eq!(iface_mac("no-such-if0"), None);
        assert_eq!(iface_mac("bad\0name"), None);
    }
}
