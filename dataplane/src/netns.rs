//! Network namespaces joined by veth pairs: the test and benchmark substrate.
//!
//! Tests that cross the network build their own hosts here, with names unique
//! to the test process, and the hosts vanish when the values are dropped,
//! panics included. Namespaces left behind by a process that was killed are
//! reaped the next time any process creates one. Addresses come from
//! 198.18.0.0/15, the range RFC 2544 sets aside for benchmarking, so traffic
//! never leaves the namespaces a test made.
//!
//! Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and `ip` from iproute2;
//! [`check_privileges`] says why when they are missing.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// Prefix of every namespace this module creates.
const PREFIX: &str = "nfv";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Errors building or using a topology.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// A command could not be started.
    #[error("could not run `{cmd}`: {source}")]
    Spawn {
        /// The command line.
        cmd: String,
        /// Why it could not start.
        source: std::io::Error,
    },
    /// A command ran and failed.
    #[error("`{cmd}` failed: {stderr}")]
    Failed {
        /// The command line.
        cmd: String,
        /// What it printed on standard error.
        stderr: String,
    },
    /// Entering a namespace failed.
    #[error("cannot enter network namespace {name}: {source}")]
    Enter {
        /// The namespace.
        name: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The caller lacks the privileges network namespaces need.
    #[error("network namespaces need root (CAP_SYS_ADMIN, CAP_NET_ADMIN): {0}")]
    NotPrivileged(String),
}

/// Whether this process may build namespaces; `Err` says why not.
pub fn check_privileges() -> Result<(), NetnsError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(NetnsError::NotPrivileged("not running as root".into()));
    }
    run(Command::new("ip").args(["netns", "list"]))
        .map(|_| ())
        .map_err(|e| NetnsError::NotPrivileged(e.to_string()))
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

fn run(cmd: &mut Command) -> Result<Output, NetnsError> {
    let out = cmd.output().map_err(|source| NetnsError::Spawn {
        cmd: describe(cmd),
        source,
    })?;
    if !out.status.success() {
        return Err(NetnsError::Failed {
            cmd: describe(cmd),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

/// Deletes namespaces of ours whose creating process is gone.
fn reap_stale() {
    let Ok(out) = run(Command::new("ip").args(["netns", "list"])) else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(PREFIX).and_then(|r| r.strip_prefix('-')) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            tracing::info!(
                netns = name,
                pid,
                "removing namespace left by a dead process"
            );
            let _ = run(Command::new("ip").args(["netns", "del", name]));
        }
    }
}

/// How long [`Netns::wait_up`] waits for a link.
const LINK_UP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A network namespace, deleted on drop with every interface inside it.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace named `nfv-<pid>-<n>-<tag>`, with loopback up.
    pub fn new(tag: &str) -> Result<Self, NetnsError> {
        reap_stale();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tag: String = tag
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(12)
            .collect();
        let name = format!("{PREFIX}-{}-{n}-{tag}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <ns> <args>`.
    pub fn ip(&self, args: &[&str]) -> Result<(), NetnsError> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args)).map(|_| ())
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `program args` inside the namespace and returns its standard output.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String, NetnsError> {
        let out = run(self.command(program).args(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Moves the calling thread into this namespace. Threads it spawns
    /// afterwards start there too.
    pub fn enter(&self) -> Result<(), NetnsError> {
        let path = format!("/var/run/netns/{}", self.name);
        let enter_err = |source| NetnsError::Enter {
            name: self.name.clone(),
            source,
        };
        let file = std::fs::File::open(&path).map_err(enter_err)?;
        // SAFETY: `file` is an open namespace file; setns only changes the
        // calling thread's network namespace.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(enter_err(std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Waits until `ifname` is operationally up with its queueing
    /// discipline attached. `ip link set up` returns before the kernel's
    /// link watcher has run (it may wait up to a second under load), and
    /// until then the device's qdisc is `noop`, which drops every packet
    /// sent: a test's first packets would vanish.
    pub fn wait_up(&self, ifname: &str) -> Result<(), NetnsError> {
        let deadline = std::time::Instant::now() + LINK_UP_TIMEOUT;
        loop {
            let out =
                run(Command::new("ip")
                    .args(["-n", &self.name, "-o", "link", "show", "dev", ifname]))?;
            let line = String::from_utf8_lossy(&out.stdout);
            if line.contains("state UP") && !line.contains("qdisc noop") {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(NetnsError::Failed {
                    cmd: format!("wait for {ifname} to come up in {}", self.name),
                    stderr: format!("still not up after {LINK_UP_TIMEOUT:?}: {}", line.trim()),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Sets `ifname` down from a thread inside this namespace (one ioctl,
    /// no `ip` process to start) and returns the `CLOCK_MONOTONIC` time
    /// just before the call: what link-down latencies are measured from.
    pub fn set_link_down(&self, ifname: &str) -> Result<u64, NetnsError> {
        self.set_link(ifname, false)
    }

    /// [`Self::set_link_down`]'s counterpart.
    pub fn set_link_up(&self, ifname: &str) -> Result<u64, NetnsError> {
        self.set_link(ifname, true)
    }

    fn set_link(&self, ifname: &str, up: bool) -> Result<u64, NetnsError> {
        let name = ifname.to_owned();
        let state = if up { "up" } else { "down" };
        let cmd = format!("set {ifname} {state} in {}", self.name);
        let failed = |what: &str| NetnsError::Failed {
            cmd: cmd.clone(),
            stderr: format!("{what}: {}", std::io::Error::last_os_error()),
        };
        let r = self
            .spawn(move || -> Result<u64, &'static str> {
                // SAFETY: plain socket call.
                let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
                if fd < 0 {
                    return Err("socket");
                }
                // SAFETY: an all-zero ifreq is valid; the name fits (checked).
                let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
                let result = if name.len() >= req.ifr_name.len() {
                    Err("interface name too long")
                } else {
                    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
                        *d = s as libc::c_char;
                    }
                    // SAFETY: `req` is a valid ifreq for these ioctls on `fd`.
                    if unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) } < 0 {
                        Err("SIOCGIFFLAGS")
                    } else {
                        let flag = libc::IFF_UP as libc::c_short;
                        // SAFETY: SIOCGIFFLAGS filled the flags member.
                        unsafe {
                            if up {
                                req.ifr_ifru.ifru_flags |= flag;
                            } else {
                                req.ifr_ifru.ifru_flags &= !flag;
                            }
                        }
                        let at = crate::time::monotonic_nanos();
                        // SAFETY: as above.
                        if unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) } < 0 {
                            Err("SIOCSIFFLAGS")
                        } else {
                            Ok(at)
                        }
                    }
                };
                // SAFETY: our own descriptor.
                unsafe { libc::close(fd) };
                result
            })
            .join()
            .map_err(|_| failed("the thread panicked"))??;
        r.map_err(failed)
    }

    /// Spawns a thread that runs `f` inside this namespace.
    pub fn spawn<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> std::thread::JoinHandle<Result<R, NetnsError>> {
        let ns = Self {
            name: self.name.clone(),
        };
        std::thread::spawn(move || {
            let r = ns.enter();
            std::mem::forget(ns); // a borrowed name, not an owner
            r.map(|()| f())
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = run(Command::new("ip").args(["netns", "del", &self.name])) {
            tracing::warn!(netns = %self.name, error = %e, "could not delete namespace");
        }
    }
}

/// One end of a veth link: its namespace, interface and address.
#[derive(Debug)]
pub struct Host {
    /// The namespace the interface lives in.
    pub ns: Netns,
    /// Interface name inside the namespace.
    pub ifname: String,
    /// IPv4 address on the interface (a /24).
    pub ip: Ipv4Addr,
    /// MAC address of the interface.
    pub mac: [u8; 6],
}

impl Host {
    /// Interface index of the interface, inside its namespace.
    pub fn ifindex(&self) -> Result<u32, NetnsError> {
        let s = self
            .ns
            .exec("cat", &[&format!("/sys/class/net/{}/ifindex", self.ifname)])?;
        s.trim().parse().map_err(|_| NetnsError::Failed {
            cmd: format!("read ifindex of {}", self.ifname),
            stderr: s,
        })
    }
}

/// Options for [`Pair::new`].
#[derive(Debug, Clone, Copy)]
pub struct PairOptions {
    /// Receive and transmit queues on each veth end.
    pub queues: u32,
    /// Leave checksum offload on. Off by default so that frames carry real
    /// UDP checksums, which AF_XDP receivers and kernel receivers both need.
    pub checksum_offload: bool,
}

impl Default for PairOptions {
    fn default() -> Self {
        Self {
            queues: 1,
            checksum_offload: false,
        }
    }
}

/// Two namespaces joined by a veth link, `a` at 198.18.0.1 and `b` at
/// 198.18.0.2, with static ARP entries so the first packet is not an ARP
/// request.
#[derive(Debug)]
pub struct Pair {
    /// The first host.
    pub a: Host,
    /// The second host.
    pub b: Host,
}

impl Pair {
    /// Builds the pair; `tag` makes the names recognisable in `ip netns`.
    pub fn new(tag: &str, opts: PairOptions) -> Result<Self, NetnsError> {
        let ns_a = Netns::new(&format!("{tag}a"))?;
        let ns_b = Netns::new(&format!("{tag}b"))?;
        let (tmp_a, tmp_b) = create_veth(&ns_a, &ns_b, opts.queues)?;
        let a = Self::configure(ns_a, &tmp_a, "veth0", Ipv4Addr::new(198, 18, 0, 1), opts)?;
        let b = Self::configure(ns_b, &tmp_b, "veth0", Ipv4Addr::new(198, 18, 0, 2), opts)?;
        for (from, to) in [(&a, &b), (&b, &a)] {
            from.ns.ip(&[
                "neigh",
                "replace",
                &to.ip.to_string(),
                "lladdr",
                &fmt_mac(&to.mac),
                "dev",
                &from.ifname,
                "nud",
                "permanent",
            ])?;
        }
        a.ns.wait_up(&a.ifname)?;
        b.ns.wait_up(&b.ifname)?;
        Ok(Self { a, b })
    }

    fn configure(
        ns: Netns,
        tmp: &str,
        ifname: &str,
        ip: Ipv4Addr,
        opts: PairOptions,
    ) -> Result<Host, NetnsError> {
        ns.ip(&["link", "set", tmp, "name", ifname])?;
        ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", ifname])?;
        ns.ip(&["link", "set", ifname, "up"])?;
        if !opts.checksum_offload {
            ns.exec("ethtool", &["-K", ifname, "tx", "off", "rx", "off"])?;
        }
        let mac_s = ns.exec("cat", &[&format!("/sys/class/net/{ifname}/address")])?;
        let mac = parse_mac(mac_s.trim()).ok_or_else(|| NetnsError::Failed {
            cmd: format!("read MAC of {ifname}"),
            stderr: mac_s.clone(),
        })?;
        Ok(Host {
            ns,
            ifname: ifname.to_string(),
            ip,
            mac,
        })
    }
}

/// Creates a veth pair with `queues` queues each way, one end moved into
/// `a` and the other into `b`; returns their (temporary) names there.
fn create_veth(a: &Netns, b: &Netns, queues: u32) -> Result<(String, String), NetnsError> {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // Interface names are at most 15 bytes and must be unique in the
    // namespace they are created in (the caller's) until moved.
    let tmp_a = format!("nv{:x}x{n:x}a", std::process::id() & 0xffff);
    let tmp_b = format!("nv{:x}x{n:x}b", std::process::id() & 0xffff);
    let q = queues.max(1).to_string();
    run(Command::new("ip").args([
        "link",
        "add",
        &tmp_a,
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
        "type",
        "veth",
        "peer",
        "name",
        &tmp_b,
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
    ]))?;
    let placed = (|| {
        run(Command::new("ip").args(["link", "set", &tmp_a, "netns", a.name()]))?;
        run(Command::new("ip").args(["link", "set", &tmp_b, "netns", b.name()]))
    })();
    if let Err(e) = placed {
        let _ = run(Command::new("ip").args(["link", "del", &tmp_a]));
        return Err(e);
    }
    Ok((tmp_a, tmp_b))
}

/// One end of a [`veth`] link.
#[derive(Debug, Clone, Copy)]
pub struct End<'a> {
    /// The namespace it goes into.
    pub ns: &'a Netns,
    /// Its interface name there.
    pub ifname: &'a str,
    /// Its address with prefix length, such as `10.0.1.1/24`.
    pub cidr: &'a str,
}

/// Joins two namespaces with a veth link, each end named, addressed and up,
/// checksum offload off (see [`PairOptions::checksum_offload`]). For
/// topologies beyond a [`Pair`]: routers, switches, several hosts. The link
/// goes away with either namespace.
pub fn veth(a: End<'_>, b: End<'_>) -> Result<(), NetnsError> {
    let (tmp_a, tmp_b) = create_veth(a.ns, b.ns, 1)?;
    for (end, tmp) in [(a, tmp_a), (b, tmp_b)] {
        end.ns.ip(&["link", "set", &tmp, "name", end.ifname])?;
        end.ns.ip(&["addr", "add", end.cidr, "dev", end.ifname])?;
        end.ns.ip(&["link", "set", end.ifname, "up"])?;
        end.ns
            .exec("ethtool", &["-K", end.ifname, "tx", "off", "rx", "off"])?;
    }
    a.ns.wait_up(a.ifname)?;
    b.ns.wait_up(b.ifname)
}

/// A router namespace with one port per host namespace: host `k` (from 1)
/// has `eth0` at `A.B.k.2/24`, its default route via the router's port
/// `p{k}` at `A.B.k.1`, and the router forwards between them. The shape of
/// an NFVI host's switch with processes behind its ports.
#[derive(Debug)]
pub struct Routed {
    /// The hosts: host `k` at index `k - 1`.
    pub hosts: Vec<Netns>,
    /// The router namespace.
    pub router: Netns,
    prefix: [u8; 2],
}

impl Routed {
    /// `n` hosts (at most 254) behind a router, addresses under `A.B`
    /// (`prefix`); `tag` names the namespaces.
    pub fn new(tag: &str, prefix: [u8; 2], n: usize) -> Result<Self, NetnsError> {
        let router = Netns::new(&format!("{tag}sw"))?;
        let mut hosts = Vec::with_capacity(n);
        for k in 1..=n.min(254) {
            let h = Netns::new(&format!("{tag}{k}"))?;
            let [a, b] = prefix;
            veth(
                End {
                    ns: &router,
                    ifname: &format!("p{k}"),
                    cidr: &format!("{a}.{b}.{k}.1/24"),
                },
                End {
                    ns: &h,
                    ifname: "eth0",
                    cidr: &format!("{a}.{b}.{k}.2/24"),
                },
            )?;
            h.ip(&["route", "add", "default", "via", &format!("{a}.{b}.{k}.1")])?;
            hosts.push(h);
        }
        router.exec("sh", &["-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])?;
        Ok(Self {
            hosts,
            router,
            prefix,
        })
    }

    /// The address of host `k` (from 1).
    pub fn host_ip(&self, k: usize) -> Ipv4Addr {
        let [a, b] = self.prefix;
        Ipv4Addr::new(a, b, k as u8, 2)
    }
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Formats a MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn fmt_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip() {
        let m = parse_mac("02:ab:00:10:ff:7e").unwrap();
        assert_eq!(m, [2, 0xab, 0, 0x10, 0xff, 0x7e]);
        assert_eq!(fmt_mac(&m), "02:ab:00:10:ff:7e");
        assert!(parse_mac("02:ab:00:10:ff").is_none());
        assert!(parse_mac("02:ab:00:10:ff:7e:01").is_none());
        assert!(parse_mac("zz:ab:00:10:ff:7e").is_none());
    }

    #[test]
    fn set_link_sets_an_interface_down_and_up_and_refuses_a_missing_one() {
        if let Err(e) = check_privileges() {
            eprintln!("skipped: {e}");
            return;
        }
        let ns = Netns::new("linkdown").unwrap();
        let before = crate::time::monotonic_nanos();
        let at = ns.set_link_down("lo").unwrap();
        assert!(at >= before);
        let shown = ns.exec("ip", &["-o", "link", "show", "lo"]).unwrap();
        assert!(!shown.contains(",UP"), "lo still up: {shown}");
        assert!(ns.set_link_up("lo").unwrap() >= at);
        let shown = ns.exec("ip", &["-o", "link", "show", "lo"]).unwrap();
        assert!(shown.contains(",UP"), "lo still down: {shown}");
        let e = ns.set_link_down("nope0").unwrap_err().to_string();
        assert!(e.contains("nope0") && e.contains("SIOCGIFFLAGS"), "{e}");
        assert!(ns.set_link_down("a-name-far-too-long-for-linux").is_err());
    }
}
