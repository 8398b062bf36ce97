//! Just enough rtnetlink to see and remove XDP programs attached the old way
//! (`ip link set dev X xdp...`, libbpf's `bpf_xdp_attach`), which a bpf_link
//! attachment cannot replace. aya keeps its netlink code private.
//!
//! Sockets open in the calling thread's network namespace, so interface
//! indices mean what they mean to the caller.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

// From <linux/if_link.h>; the libc crate does not export them for glibc.
const IFLA_XDP: u16 = 43;
const IFLA_EXT_MASK: u16 = 29;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_DRV_PROG_ID: u16 = 5;
const IFLA_XDP_SKB_PROG_ID: u16 = 6;
const IFLA_XDP_HW_PROG_ID: u16 = 7;
const RTEXT_FILTER_SKIP_STATS: u32 = 1 << 3;
const NLA_F_NESTED: u16 = 1 << 15;
const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | (1 << 14));
// From <linux/netlink.h>.
const NETLINK_EXT_ACK: libc::c_int = 11;
const NETLINK_CAP_ACK: libc::c_int = 10;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;

/// `XDP_FLAGS_SKB_MODE` from <linux/if_link.h>.
pub(crate) const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// `XDP_FLAGS_DRV_MODE`.
pub(crate) const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
/// `XDP_FLAGS_HW_MODE`.
pub(crate) const XDP_FLAGS_HW_MODE: u32 = 1 << 3;

const HDR: usize = size_of::<libc::nlmsghdr>();
const IFI: usize = size_of::<libc::ifinfomsg>();

/// The XDP programs on an interface, by attach mode; 0 means none.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct XdpState {
    pub drv: u32,
    pub skb: u32,
    pub hw: u32,
}

impl XdpState {
    /// Each attached program with the flag that names its mode.
    pub(crate) fn programs(&self) -> impl Iterator<Item = (u32, u32)> {
        [
            (self.skb, XDP_FLAGS_SKB_MODE),
            (self.drv, XDP_FLAGS_DRV_MODE),
            (self.hw, XDP_FLAGS_HW_MODE),
        ]
        .into_iter()
        .filter(|&(id, _)| id != 0)
    }
}

/// Which XDP programs `ifindex` runs. `ENODEV` when there is no such
/// interface.
pub(crate) fn xdp_query(ifindex: u32) -> io::Result<XdpState> {
    let mut msg = Message::new(libc::RTM_GETLINK, libc::NLM_F_REQUEST as u16, ifindex)?;
    msg.attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
    let sock = Socket::open()?;
    let reply = sock.request(&msg.finish())?;
    let mut state = XdpState::default();
    if let Some(xdp) = attrs(&reply[HDR + IFI..]).find(|(t, _)| *t == IFLA_XDP) {
        for (t, v) in attrs(xdp.1) {
            let id = read_u32(v);
            match t {
                IFLA_XDP_DRV_PROG_ID => state.drv = id,
                IFLA_XDP_SKB_PROG_ID => state.skb = id,
                IFLA_XDP_HW_PROG_ID => state.hw = id,
                _ => {}
            }
        }
    }
    Ok(state)
}

/// Detaches the netlink-attached program in the mode `flags` names.
/// `EBUSY` when that program is held by a bpf_link instead.
pub(crate) fn xdp_detach(ifindex: u32, flags: u32) -> io::Result<()> {
    let mut msg = Message::new(
        libc::RTM_SETLINK,
        (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16,
        ifindex,
    )?;
    let nest = msg.begin_nest(IFLA_XDP);
    msg.attr_u32(IFLA_XDP_FD, -1i32 as u32);
    msg.attr_u32(IFLA_XDP_FLAGS, flags);
    msg.end_nest(nest);
    Socket::open()?.request(&msg.finish()).map(|_| ())
}

struct Message {
    buf: Vec<u8>,
}

impl Message {
    fn new(kind: u16, flags: u16, ifindex: u32) -> io::Result<Self> {
        let index =
            i32::try_from(ifindex).map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))?;
        let mut buf = vec![0u8; HDR + IFI];
        buf[4..6].copy_from_slice(&kind.to_ne_bytes());
        buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        buf[8..12].copy_from_slice(&1u32.to_ne_bytes()); // sequence number
        // ifinfomsg: family (u8), pad (u8), type (u16), index (i32), ...
        buf[HDR + 4..HDR + 8].copy_from_slice(&index.to_ne_bytes());
        Ok(Self { buf })
    }

    fn attr_u32(&mut self, kind: u16, value: u32) {
        self.buf.extend_from_slice(&8u16.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(&value.to_ne_bytes());
    }

    fn begin_nest(&mut self, kind: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        at
    }

    fn end_nest(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

struct Socket {
    fd: OwnedFd,
}

impl Socket {
    fn open() -> io::Result<Self> {
        // SAFETY: plain socket creation; the result is checked below.
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
        // SAFETY: `fd` was just returned by socket() and is owned by no one else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let sock = Self { fd };
        // Extended acks carry the kernel's reason ("Can't replace active BPF
        // XDP link"); capped acks keep the request out of the reply. Both are
        // best effort: older kernels answer without them.
        let _ = sock.setsockopt(NETLINK_EXT_ACK, 1);
        let _ = sock.setsockopt(NETLINK_CAP_ACK, 1);
        // A kernel that never answers must not hang the caller.
        let timeout = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        // SAFETY: `timeout` is a valid timeval of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                sock.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sock)
    }

    fn setsockopt(&self, opt: libc::c_int, value: libc::c_int) -> io::Result<()> {
        // SAFETY: `value` is a valid c_int of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_NETLINK,
                opt,
                (&raw const value).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Sends one request and returns the reply message (header included),
    /// or the error the kernel acknowledged it with. An ack of success
    /// comes back as an empty reply.
    fn request(&self, msg: &[u8]) -> io::Result<Vec<u8>> {
        // SAFETY: an all-zero sockaddr_nl is valid; the fields that matter
        // are set below.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `msg` and `addr` are valid for the lengths passed.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; 64 * 1024];
        // Bounded: each pass consumes a datagram, and an idle socket times out.
        for _ in 0..64 {
            // SAFETY: `buf` is valid for writes of its length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut rest = &buf[..n as usize];
            while rest.len() >= HDR {
                let len = read_u32(&rest[0..4]) as usize;
                let kind = u16::from_ne_bytes([rest[4], rest[5]]);
                let flags = u16::from_ne_bytes([rest[6], rest[7]]);
                let seq = read_u32(&rest[8..12]);
                if len < HDR || len > rest.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "truncated netlink message",
                    ));
                }
                let this = &rest[..len];
                rest = &rest[align4(len).min(rest.len())..];
                if seq != 1 {
                    continue;
                }
                if kind == libc::NLMSG_ERROR as u16 {
                    return ack(this, flags);
                }
                if kind == libc::NLMSG_DONE as u16 {
                    return Ok(Vec::new());
                }
                if this.len() >= HDR + IFI {
                    return Ok(this.to_vec());
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no netlink reply to our request",
        ))
    }
}

/// Turns an `NLMSG_ERROR` message into `Ok` (a plain ack) or the error,
/// with the kernel's extended message when there is one.
fn ack(msg: &[u8], flags: u16) -> io::Result<Vec<u8>> {
    let Some(code) = msg.get(HDR..HDR + 4) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "short netlink ack",
        ));
    };
    let errno = -i32::from_ne_bytes([code[0], code[1], code[2], code[3]]);
    if errno == 0 {
        return Ok(Vec::new());
    }
    let os = io::Error::from_raw_os_error(errno);
    // With NETLINK_CAP_ACK the ack holds our header only, then the TLVs.
    let tlvs = msg.get(HDR + 4 + HDR..).unwrap_or(&[]);
    let text = (flags & NLM_F_ACK_TLVS != 0)
        .then(|| attrs(tlvs).find(|(t, _)| *t == NLMSGERR_ATTR_MSG))
        .flatten()
        .map(|(_, v)| {
            String::from_utf8_lossy(v.split(|&b| b == 0).next().unwrap_or(&[])).into_owned()
        });
    Err(match text {
        Some(text) if !text.is_empty() => with_errno(errno, format!("{text} ({os})")),
        _ => os,
    })
}

/// An `io::Error` that keeps the kernel's message; [`errno`] still finds
/// the errno inside it.
fn with_errno(errno: i32, text: String) -> io::Error {
    io::Error::new(
        io::Error::from_raw_os_error(errno).kind(),
        Errno { errno, text },
    )
}

/// An errno with the kernel's explanation of it.
#[derive(Debug)]
pub(crate) struct Errno {
    pub errno: i32,
    text: String,
}

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for Errno {}

/// The errno of an error from this module, extended message or not.
pub(crate) fn errno(e: &io::Error) -> Option<i32> {
    e.raw_os_error().or_else(|| {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<Errno>())
            .map(|x| x.errno)
    })
}

pub(crate) fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn read_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    let n = b.len().min(4);
    a[..n].copy_from_slice(&b[..n]);
    u32::from_ne_bytes(a)
}

/// The attributes in `buf`, as (type without flags, payload); stops at the
/// first malformed one.
pub(crate) fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            return None;
        }
        let payload = &buf[4..len];
        buf = &buf[align4(len).min(buf.len())..];
        Some((kind, payload))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_parse_nested_and_stop_on_garbage() {
        let mut msg = Message::new(libc::RTM_SETLINK, 0, 7).unwrap();
        let nest = msg.begin_nest(IFLA_XDP);
        msg.attr_u32(IFLA_XDP_SKB_PROG_ID, 42);
        msg.attr_u32(IFLA_XDP_DRV_PROG_ID, 9);
        msg.end_nest(nest);
        let buf = msg.finish();
        assert_eq!(read_u32(&buf[0..4]) as usize, buf.len());
        let outer: Vec<_> = attrs(&buf[HDR + IFI..]).collect();
        assert_eq!(outer.len(), 1);
        assert_eq!(outer[0].0, IFLA_XDP);
        let inner: Vec<_> = attrs(outer[0].1).map(|(t, v)| (t, read_u32(v))).collect();
        assert_eq!(
            inner,
            vec![(IFLA_XDP_SKB_PROG_ID, 42), (IFLA_XDP_DRV_PROG_ID, 9)]
        );
        assert_eq!(attrs(&[200, 0, 1, 0, 0]).count(), 0);
        assert_eq!(attrs(&[2, 0, 1, 0]).count(), 0);
    }

    #[test]
    fn ack_keeps_errno_and_kernel_message() {
        let mut m = vec![0u8; HDR];
        m.extend_from_slice(&(-libc::EBUSY).to_ne_bytes());
        m.extend_from_slice(&[0u8; HDR]);
        let text = b"Can't replace active BPF XDP link\0";
        m.extend_from_slice(&((4 + text.len()) as u16).to_ne_bytes());
        m.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        m.extend_from_slice(text);
        let e = ack(&m, NLM_F_ACK_TLVS).unwrap_err();
        assert_eq!(errno(&e), Some(libc::EBUSY));
        assert!(e.to_string().contains("active BPF XDP link"), "{e}");

        let mut ok = vec![0u8; HDR];
        ok.extend_from_slice(&0i32.to_ne_bytes());
        assert!(ack(&ok, 0).unwrap().is_empty());
    }
}
