//! Link-state changes of a namespace's interfaces, from rtnetlink.
//!
//! The failure detector marks the processes behind a port `unreachable`
//! the moment the port goes down; the kernel announces that on the
//! `RTMGRP_LINK` multicast group, so a subscription learns it within
//! microseconds, without polling interface flags.
//!
//! A netlink socket belongs to the network namespace it was created in, so
//! [`LinkWatcher::open_in`] can watch the NFVI host's ports from a VNF that
//! runs in a namespace of its own.

use std::collections::HashMap;
use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use crate::netlink::{align4, attrs};

const HDR: usize = size_of::<libc::nlmsghdr>();
const IFI: usize = size_of::<libc::ifinfomsg>();
/// `IFF_LOWER_UP` from <linux/if.h> (carrier): the libc crate lacks it.
const IFF_LOWER_UP: u32 = 1 << 16;

/// One interface's state, as announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkEvent {
    /// Interface index in the watched namespace.
    pub ifindex: u32,
    /// Interface name.
    pub name: String,
    /// Administratively up and with carrier: a veth whose peer is down
    /// counts as down.
    pub up: bool,
}

/// A subscription to link-state changes in one network namespace.
#[derive(Debug)]
pub struct LinkWatcher {
    fd: OwnedFd,
    buf: Vec<u8>,
    /// Last state announced per interface, to report changes only.
    known: HashMap<u32, LinkEvent>,
}

impl LinkWatcher {
    /// Watches the calling thread's network namespace.
    pub fn open() -> io::Result<Self> {
        let fd = socket(libc::RTMGRP_LINK as u32)?;
        let mut w = Self {
            fd,
            buf: vec![0; 64 * 1024],
            known: HashMap::new(),
        };
        for e in w.snapshot()? {
            w.known.insert(e.ifindex, e);
        }
        Ok(w)
    }

    /// Watches the namespace at `netns` (such as `/run/netns/NAME`): the
    /// calling thread enters it to create the socket and comes back.
    pub fn open_in(netns: &Path) -> io::Result<Self> {
        in_netns(netns, Self::open)
    }

    /// The current state of every interface: a `RTM_GETLINK` dump, asked
    /// on this very socket because only it is in the watched namespace.
    /// Notifications read meanwhile are states too and are included; the
    /// next [`LinkWatcher::poll`] reports only what differs from what it
    /// knew.
    pub fn snapshot(&self) -> io::Result<Vec<LinkEvent>> {
        dump(&dup(&self.fd)?)
    }

    /// The index of interface `name`, from the last known state.
    pub fn ifindex(&self, name: &str) -> Option<u32> {
        self.known
            .values()
            .find(|e| e.name == name)
            .map(|e| e.ifindex)
    }

    /// The socket, to wait on with poll(2).
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Hands every change announced since the last call to `f`, without
    /// blocking. After an overrun (`ENOBUFS`: the kernel dropped
    /// notifications) it re-reads every interface's state and reports those
    /// that differ from what it knew.
    pub fn poll(&mut self, mut f: impl FnMut(LinkEvent)) -> io::Result<()> {
        loop {
            // SAFETY: reading into our own buffer of the given length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(libc::EAGAIN) => Ok(()),
                    Some(libc::EINTR) => continue,
                    Some(libc::ENOBUFS) => {
                        tracing::warn!("link notifications overran; re-reading link states");
                        let now = self.snapshot()?;
                        for e in now {
                            self.update(e, &mut f);
                        }
                        continue;
                    }
                    _ => Err(e),
                };
            }
            let events = parse_links(&self.buf[..n as usize]);
            for e in events {
                self.update(e, &mut f);
            }
        }
    }

    fn update(&mut self, e: LinkEvent, f: &mut impl FnMut(LinkEvent)) {
        let changed = self.known.get(&e.ifindex).is_none_or(|k| k.up != e.up);
        self.known.insert(e.ifindex, e.clone());
        if changed {
            f(e);
        }
    }
}

fn dup(fd: &OwnedFd) -> io::Result<OwnedFd> {
    // SAFETY: dup of an fd we own; the result is a new fd we then own.
    let d = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if d < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `d` is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(d) })
}

/// Runs `f` with the calling thread inside the network namespace at
/// `netns` (such as `/run/netns/NAME`), then moves it back: for creating
/// sockets and attachments that belong to another namespace.
pub fn in_netns<T>(netns: &Path, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let home = File::open("/proc/thread-self/ns/net")?;
    let target = File::open(netns)?;
    // SAFETY: setns with an open namespace file changes only this thread.
    if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let r = f();
    // SAFETY: as above, back to where the thread was.
    if unsafe { libc::setns(home.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        // The thread is now in the wrong namespace: nothing sane is left.
        let e = io::Error::last_os_error();
        panic!("cannot return to the original network namespace: {e}");
    }
    r
}

fn socket(groups: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2).
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain data; zeroed is a valid value.
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as u16;
    sa.nl_groups = groups;
    // SAFETY: binding our socket to a valid sockaddr_nl of the right size.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_nl).cast(),
            size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Asks for every link on `fd` and reads the whole multipart answer;
/// notifications that arrive meanwhile are parsed as states too, which is
/// what they are.
fn dump(fd: &OwnedFd) -> io::Result<Vec<LinkEvent>> {
    let mut req = [0u8; HDR + IFI];
    let h = libc::nlmsghdr {
        nlmsg_len: (HDR + IFI) as u32,
        nlmsg_type: libc::RTM_GETLINK,
        nlmsg_flags: (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16,
        nlmsg_seq: 1,
        nlmsg_pid: 0,
    };
    // SAFETY: nlmsghdr is plain data; copying its bytes into a buffer of
    // at least its size.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (&h as *const libc::nlmsghdr).cast::<u8>(),
            req.as_mut_ptr(),
            HDR,
        )
    };
    req[HDR] = libc::AF_UNSPEC as u8;
    // SAFETY: sending our own buffer.
    if unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    loop {
        // SAFETY: reading into our own buffer.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        let msgs = &buf[..n as usize];
        out.extend(parse_links(msgs));
        if messages(msgs)
            .any(|(t, _)| t == libc::NLMSG_DONE as u16 || t == libc::NLMSG_ERROR as u16)
        {
            return Ok(out);
        }
    }
}

/// The netlink messages in `buf`, as (type, whole message).
fn messages(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < HDR {
            return None;
        }
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        if len < HDR || len > buf.len() {
            return None;
        }
        let msg = &buf[..len];
        buf = &buf[align4(len).min(buf.len())..];
        Some((kind, msg))
    })
}

/// The link states in `RTM_NEWLINK` messages of `buf` (a deleted link,
/// `RTM_DELLINK`, is reported down).
fn parse_links(buf: &[u8]) -> Vec<LinkEvent> {
    let mut out = Vec::new();
    for (kind, msg) in messages(buf) {
        if (kind != libc::RTM_NEWLINK && kind != libc::RTM_DELLINK) || msg.len() < HDR + IFI {
            continue;
        }
        let ifi = &msg[HDR..HDR + IFI];
        let ifindex = i32::from_ne_bytes([ifi[4], ifi[5], ifi[6], ifi[7]]) as u32;
        let flags = u32::from_ne_bytes([ifi[8], ifi[9], ifi[10], ifi[11]]);
        let name = attrs(&msg[HDR + IFI..])
            .find(|(t, _)| *t == libc::IFLA_IFNAME)
            .and_then(|(_, v)| CStr::from_bytes_until_nul(v).ok())
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default();
        let up = kind == libc::RTM_NEWLINK
            && flags & libc::IFF_UP as u32 != 0
            && flags & IFF_LOWER_UP != 0;
        out.push(LinkEvent { ifindex, name, up });
    }
    out
}
