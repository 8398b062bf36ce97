//! Kernel UDP backend (recvmmsg/sendmmsg).
//!
//! The fallback where XDP is unavailable, and the baseline every benchmark
//! compares the kernel-bypass backends against, so it does what the kernel
//! allows to be fast: one non-blocking socket, a whole burst per system call
//! in each direction, message headers, I/O vectors and addresses allocated
//! once in the backend (nothing per packet or per burst), and datagrams
//! received straight into packet memory, never copied.
//!
//! Frames look like every other backend's. A datagram is received at
//! [`UDP_PAYLOAD_OFFSET`] (42) of a chunk, and the Ethernet, IPv4 and UDP
//! headers are synthesized in front of it: source = the datagram's sender,
//! destination = the address it was sent to (the socket's address, or with a
//! wildcard bind the one `IP_PKTINFO` reports), MACs from [`UdpConfig`]
//! (zero by default), a valid IPv4 header checksum, and a UDP checksum of 0
//! ("none", which RFC 768 allows over IPv4): the kernel has verified the real
//! one already, and computing one that nobody checks would cost a pass over
//! the payload.
//!
//! To transmit, each frame is parsed with [`UdpFrame`] and its UDP payload
//! sent to the frame's destination address and port. The datagram leaves
//! from the socket's own address and port whatever the frame's source says,
//! and its UDP checksum is the kernel's. A frame that is not a valid
//! Ethernet/IPv4/UDP frame (IPv4 header checksum included) is dropped and
//! counted in `tx_errors`, as is a datagram the kernel refuses outright
//! (too long, unreachable); when the kernel is out of room (`EAGAIN`,
//! `ENOBUFS`), the frames not yet sent stay in the batch and count in
//! `tx_full`.

use std::fmt;
use std::mem::size_of;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use super::{
    Batch, Desc, FreeList, IoCounters, IoError, MAX_BURST, PacketIo, PacketMemory, PoolError, adopt,
};
use crate::wire::{self, FrameSpec, MacAddr, UDP_PAYLOAD_OFFSET, UdpFrame};

// Socket options libc does not export for every Linux target. Values from
// <asm-generic/socket.h>, which all the usual architectures use (alpha, MIPS,
// PA-RISC and SPARC have their own).
const SO_SNDBUFFORCE: libc::c_int = 32;
const SO_RCVBUFFORCE: libc::c_int = 33;
const SO_RXQ_OVFL: libc::c_int = 40;

/// Room for the control messages of one received datagram: `IP_PKTINFO`
/// (32 bytes with its header) and `SO_RXQ_OVFL` (20, padded to 24).
const CTRL_WORDS: usize = 8;

/// Settings of a [`UdpIo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpConfig {
    /// Address to bind. Port 0 picks a free port ([`UdpIo::local_addr`] says
    /// which); address 0.0.0.0 receives on every local address and reports
    /// each datagram's real destination.
    pub bind: SocketAddrV4,
    /// Datagrams per receive system call (at most [`MAX_BURST`]).
    pub burst: usize,
    /// Chunks of packet memory.
    pub chunks: u32,
    /// Bytes per chunk (a power of two, 2048 to 65536). Datagrams longer
    /// than `chunk_size - 42` are dropped and counted.
    pub chunk_size: u32,
    /// Socket receive buffer (SO_RCVBUF); room for bursts to queue while the
    /// worker is busy.
    pub recv_buffer_bytes: usize,
    /// Socket send buffer (SO_SNDBUF).
    pub send_buffer_bytes: usize,
    /// Let several sockets bind the same address and port (SO_REUSEPORT):
    /// the kernel spreads flows across them, one per worker.
    pub reuse_port: bool,
    /// MAC address put in received frames as the destination.
    pub local_mac: MacAddr,
    /// MAC address put in received frames as the source.
    pub peer_mac: MacAddr,
}

impl Default for UdpConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            burst: 32,
            chunks: 4096,
            chunk_size: 2048,
            recv_buffer_bytes: 4 << 20,
            send_buffer_bytes: 4 << 20,
            reuse_port: false,
            local_mac: [0; 6],
            peer_mac: [0; 6],
        }
    }
}

/// Errors opening a [`UdpIo`].
#[derive(Debug, thiserror::Error)]
pub enum UdpError {
    /// The packet memory could not be created.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// A setting is out of range.
    #[error("invalid UDP backend setting: {0}")]
    Config(String),
    /// A socket call failed.
    #[error("UDP socket {op} failed: {source}")]
    Os {
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

impl UdpError {
    fn last_os(op: &'static str) -> Self {
        UdpError::Os {
            op,
            source: std::io::Error::last_os_error(),
        }
    }
}

/// Receive-side drops particular to this backend; their sum is part of
/// [`IoCounters::rx_dropped`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpStats {
    /// Datagrams the kernel dropped because the socket's receive buffer was
    /// full, as `SO_RXQ_OVFL` reports them (learnt with the next datagram
    /// received after the drops).
    pub rx_kernel_dropped: u64,
    /// Datagrams longer than a chunk can hold after the headers.
    pub rx_truncated: u64,
    /// Datagrams from UDP source port 0 or a non-IPv4 sender, which no reply
    /// could reach.
    pub rx_bad_source: u64,
}

/// Per-message system-call arguments for one direction, allocated once.
/// Each header points at its own I/O vector, address and control buffer.
struct Msgs {
    hdrs: [libc::mmsghdr; MAX_BURST],
    iovs: [libc::iovec; MAX_BURST],
    names: [libc::sockaddr_in; MAX_BURST],
    ctrl: [[u64; CTRL_WORDS]; MAX_BURST],
}

// SAFETY: the raw pointers in `hdrs` and `iovs` point into this same heap
// allocation (which moves with the `Box` that owns it) or, only for the
// duration of a call through `&mut UdpIo`, into packet memory that the
// backend owns. Nothing else holds them, so sending the value to another
// thread cannot create shared access.
unsafe impl Send for Msgs {}

impl Msgs {
    fn new(with_ctrl: bool) -> Box<Self> {
        // SAFETY: mmsghdr, iovec, sockaddr_in and u64 are plain C data for
        // which all-zero bytes are valid values (null pointers, zero lengths).
        let mut m: Box<Self> = Box::new(unsafe { std::mem::zeroed() });
        for i in 0..MAX_BURST {
            let iov: *mut libc::iovec = &mut m.iovs[i];
            let name: *mut libc::sockaddr_in = &mut m.names[i];
            let ctrl: *mut [u64; CTRL_WORDS] = &mut m.ctrl[i];
            let h = &mut m.hdrs[i].msg_hdr;
            h.msg_iov = iov;
            h.msg_iovlen = 1;
            h.msg_name = name.cast();
            h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            if with_ctrl {
                h.msg_control = ctrl.cast();
                h.msg_controllen = size_of::<[u64; CTRL_WORDS]>() as _;
            }
        }
        m
    }
}

/// The kernel UDP backend: one non-blocking UDP socket.
pub struct UdpIo {
    sock: OwnedFd,
    local: SocketAddrV4,
    mem: Arc<PacketMemory>,
    free: FreeList,
    burst: usize,
    local_mac: MacAddr,
    peer_mac: MacAddr,
    /// The socket is bound to 0.0.0.0 and asks for `IP_PKTINFO`.
    wildcard: bool,
    rx: Box<Msgs>,
    rx_addrs: [u64; MAX_BURST],
    tx: Box<Msgs>,
    /// Last cumulative drop count `SO_RXQ_OVFL` reported.
    kernel_drops_seen: u32,
    stats: UdpStats,
    counters: IoCounters,
}

impl fmt::Debug for UdpIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpIo")
            .field("fd", &self.sock.as_raw_fd())
            .field("local", &self.local)
            .field("burst", &self.burst)
            .field("free", &self.free.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn sockaddr_in(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn set_int_opt(fd: RawFd, level: libc::c_int, opt: libc::c_int, val: libc::c_int) -> bool {
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from `&val`.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&val as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

/// Sets a buffer size, beyond `net.core.[rw]mem_max` where we may (root,
/// CAP_NET_ADMIN), within it otherwise.
fn set_buffer(
    fd: RawFd,
    force: libc::c_int,
    plain: libc::c_int,
    bytes: usize,
    op: &'static str,
) -> Result<(), UdpError> {
    let val = libc::c_int::try_from(bytes)
        .map_err(|_| UdpError::Config(format!("{op}: {bytes} bytes is too large")))?;
    if set_int_opt(fd, libc::SOL_SOCKET, force, val) {
        return Ok(());
    }
    if set_int_opt(fd, libc::SOL_SOCKET, plain, val) {
        tracing::debug!(bytes, op, "socket buffer capped by the sysctl maximum");
        return Ok(());
    }
    Err(UdpError::last_os(op))
}

impl UdpIo {
    /// Opens a socket bound to `config.bind` and its packet memory.
    pub fn open(config: UdpConfig) -> Result<Self, UdpError> {
        if config.burst == 0 || config.burst > MAX_BURST {
            return Err(UdpError::Config(format!(
                "burst {} is not in 1..={MAX_BURST}",
                config.burst
            )));
        }
        let mem = Arc::new(PacketMemory::new(config.chunks, config.chunk_size)?);
        if (config.chunks as usize) < config.burst {
            return Err(UdpError::Config(format!(
                "{} chunks cannot hold a burst of {}",
                config.chunks, config.burst
            )));
        }

        // SAFETY: socket has no memory preconditions; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if fd < 0 {
            return Err(UdpError::last_os("socket"));
        }
        // SAFETY: `fd` is a descriptor we just opened and own alone.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };

        set_buffer(
            fd,
            SO_RCVBUFFORCE,
            libc::SO_RCVBUF,
            config.recv_buffer_bytes,
            "SO_RCVBUF",
        )?;
        set_buffer(
            fd,
            SO_SNDBUFFORCE,
            libc::SO_SNDBUF,
            config.send_buffer_bytes,
            "SO_SNDBUF",
        )?;
        if config.reuse_port && !set_int_opt(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1) {
            return Err(UdpError::last_os("SO_REUSEPORT"));
        }
        // The drop count rides along with received datagrams, so the
        // benchmarks can see kernel-side loss without extra system calls.
        if !set_int_opt(fd, libc::SOL_SOCKET, SO_RXQ_OVFL, 1) {
            return Err(UdpError::last_os("SO_RXQ_OVFL"));
        }
        let wildcard = config.bind.ip().is_unspecified();
        if wildcard && !set_int_opt(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1) {
            return Err(UdpError::last_os("IP_PKTINFO"));
        }

        let addr = sockaddr_in(config.bind);
        // SAFETY: `addr` is a valid sockaddr_in of the length given.
        let r = unsafe {
            libc::bind(
                fd,
                (&addr as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(UdpError::last_os("bind"));
        }
        // SAFETY: all-zero is a valid sockaddr_in.
        let mut bound: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: getsockname writes at most `len` bytes into `bound`.
        let r = unsafe {
            libc::getsockname(fd, (&mut bound as *mut libc::sockaddr_in).cast(), &mut len)
        };
        if r != 0 {
            return Err(UdpError::last_os("getsockname"));
        }
        let local = SocketAddrV4::new(
            Ipv4Addr::from(u32::from_be(bound.sin_addr.s_addr)),
            u16::from_be(bound.sin_port),
        );

        let n = config.chunks as usize;
        let free = FreeList::new(n, (0..config.chunks).rev().map(|i| mem.chunk_addr(i)));
        Ok(Self {
            sock,
            local,
            mem,
            free,
            burst: config.burst,
            local_mac: config.local_mac,
            peer_mac: config.peer_mac,
            wildcard,
            rx: Msgs::new(true),
            rx_addrs: [0; MAX_BURST],
            tx: Msgs::new(false),
            kernel_drops_seen: 0,
            stats: UdpStats::default(),
            counters: IoCounters::default(),
        })
    }

    /// The address the socket is bound to, with the port the kernel chose
    /// when the configured one was 0.
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local
    }

    /// Receive-side drops by cause.
    pub fn stats(&self) -> UdpStats {
        self.stats
    }

    /// Chunks neither lent out in batches nor in flight: when every batch is
    /// empty, this equals the configured chunk count.
    pub fn free_buffers(&self) -> usize {
        self.free.len()
    }

    /// Reads the control messages of received message `i`: the cumulative
    /// drop count, and (wildcard bind) the datagram's destination address.
    fn read_ctrl(&mut self, i: usize) -> Option<Ipv4Addr> {
        let mut dst = None;
        let hdr: *const libc::msghdr = &self.rx.hdrs[i].msg_hdr;
        // SAFETY: `hdr` describes control buffer `i`, whose length the kernel
        // set to what it wrote; the CMSG_* macros never step outside it.
        let mut c = unsafe { libc::CMSG_FIRSTHDR(hdr) };
        while !c.is_null() {
            // SAFETY: `c` is a non-null header inside the buffer (see above).
            let (level, kind) = unsafe { ((*c).cmsg_level, (*c).cmsg_type) };
            // SAFETY: the data of a header of this level and type is the
            // value the kernel documents for it; read unaligned to be safe.
            unsafe {
                let data = libc::CMSG_DATA(c);
                if level == libc::SOL_SOCKET && kind == SO_RXQ_OVFL {
                    let total = data.cast::<u32>().read_unaligned();
                    self.stats.rx_kernel_dropped +=
                        u64::from(total.wrapping_sub(self.kernel_drops_seen));
                    self.kernel_drops_seen = total;
                } else if level == libc::IPPROTO_IP && kind == libc::IP_PKTINFO {
                    let info = data.cast::<libc::in_pktinfo>().read_unaligned();
                    dst = Some(Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr)));
                }
                c = libc::CMSG_NXTHDR(hdr, c);
            }
        }
        dst
    }
}

impl AsRawFd for UdpIo {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

impl AsFd for UdpIo {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// Send errors that concern one datagram only: it is dropped, the rest go on.
fn is_per_datagram(errno: i32) -> bool {
    matches!(
        errno,
        libc::EMSGSIZE
            | libc::EINVAL
            | libc::EACCES
            | libc::EPERM
            | libc::ENETUNREACH
            | libc::EHOSTUNREACH
            | libc::ENETDOWN
            | libc::EHOSTDOWN
            | libc::ECONNREFUSED
            | libc::EADDRNOTAVAIL
    )
}

/// Send errors that mean "no room now": the caller retries later.
fn is_transient(errno: i32) -> bool {
    errno == libc::EAGAIN || errno == libc::ENOBUFS || errno == libc::EINTR || errno == libc::ENOMEM
}

/// Marks a frame of a send batch that did not parse.
const INVALID: u8 = u8::MAX;

impl PacketIo for UdpIo {
    fn name(&self) -> &'static str {
        "udp"
    }

    fn new_batch(&self) -> Batch {
        Batch::new(self.mem.clone(), self.burst)
    }

    fn recv(&mut self, batch: &mut Batch) -> Result<usize, IoError> {
        adopt(batch, &self.mem, |a| self.free.put(a))?;
        let want = batch.spare().min(self.burst);
        let room = self.mem.chunk_size() as usize - UDP_PAYLOAD_OFFSET;
        let ctrl_len = size_of::<[u64; CTRL_WORDS]>();
        let mut bufs = 0;
        while bufs < want {
            let Some(addr) = self.free.take() else { break };
            self.rx_addrs[bufs] = addr;
            self.rx.iovs[bufs] = libc::iovec {
                // SAFETY: the chunk came off the free list, so only this
                // backend refers to it, and offset 42 lies inside it.
                iov_base: unsafe { self.mem.ptr(addr + UDP_PAYLOAD_OFFSET as u64) }.cast(),
                iov_len: room,
            };
            let h = &mut self.rx.hdrs[bufs].msg_hdr;
            h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_controllen = ctrl_len as _;
            h.msg_flags = 0;
            bufs += 1;
        }
        if bufs == 0 {
            return Ok(0);
        }
        // SAFETY: the first `bufs` headers point at their own address and
        // control buffers and at I/O vectors into chunks we own, each of the
        // length given; the kernel writes nothing beyond them.
        let r = unsafe {
            libc::recvmmsg(
                self.sock.as_raw_fd(),
                self.rx.hdrs.as_mut_ptr(),
                bufs as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            for &a in &self.rx_addrs[..bufs] {
                self.free.put(a);
            }
            return match e.raw_os_error() {
                Some(libc::EAGAIN | libc::EINTR) => Ok(0),
                // A send error the kernel parked on the socket (an error
                // after the first datagram of a sendmmsg, an ICMP report);
                // reading it cleared it, and it says nothing about receiving.
                Some(errno) if is_per_datagram(errno) => Ok(0),
                _ => Err(IoError::Os {
                    op: "recvmmsg",
                    source: e,
                }),
            };
        }
        let got = r as usize;
        let mut n = 0;
        for i in 0..got {
            let addr = self.rx_addrs[i];
            let pktinfo_dst = self.read_ctrl(i);
            let h = &self.rx.hdrs[i];
            let len = h.msg_len as usize;
            if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 || len > room {
                self.stats.rx_truncated += 1;
                self.free.put(addr);
                continue;
            }
            let name = &self.rx.names[i];
            let src_port = u16::from_be(name.sin_port);
            if name.sin_family != libc::AF_INET as libc::sa_family_t || src_port == 0 {
                self.stats.rx_bad_source += 1;
                self.free.put(addr);
                continue;
            }
            let dst_ip = match pktinfo_dst {
                Some(ip) if self.wildcard => ip,
                _ => *self.local.ip(),
            };
            let spec = FrameSpec {
                src_mac: self.peer_mac,
                dst_mac: self.local_mac,
                src_ip: Ipv4Addr::from(u32::from_be(name.sin_addr.s_addr)),
                dst_ip,
                src_port,
                dst_port: self.local.port(),
            };
            let frame_len = UDP_PAYLOAD_OFFSET + len;
            // SAFETY: the chunk is ours (taken off the free list above) and
            // `frame_len <= chunk_size` because `len <= room`.
            let frame = unsafe { std::slice::from_raw_parts_mut(self.mem.ptr(addr), frame_len) };
            // Writes the 42 header bytes only; the payload is already there.
            if wire::build_udp_frame(frame, &spec, len).is_err() {
                // Unreachable with chunks of at most 64 KiB, but a frame we
                // could not describe is a drop, not a panic.
                self.stats.rx_truncated += 1;
                self.free.put(addr);
                continue;
            }
            batch.push(Desc {
                addr,
                len: frame_len as u32,
            });
            self.counters.rx_bytes += frame_len as u64;
            n += 1;
        }
        for &a in &self.rx_addrs[got..bufs] {
            self.free.put(a);
        }
        self.counters.rx_packets += n as u64;
        Ok(n)
    }

    /// Sends the UDP payload of each frame to its destination. Returns how
    /// many datagrams the kernel took; frames dropped as malformed or refused
    /// are removed from the batch too, and counted in `tx_errors`.
    fn send(&mut self, batch: &mut Batch) -> Result<usize, IoError> {
        adopt(batch, &self.mem, |a| self.free.put(a))?;
        let frames = batch.len();
        if frames == 0 {
            return Ok(0);
        }
        // Which message each frame became, and each message's frame length.
        let mut msg_of = [INVALID; MAX_BURST];
        let mut frame_len = [0u32; MAX_BURST];
        let mut msgs = 0;
        for (i, slot) in msg_of.iter_mut().enumerate().take(frames) {
            let frame = batch.frame(i);
            let Ok(f) = UdpFrame::parse(frame) else {
                self.counters.tx_errors += 1;
                continue;
            };
            let dst = f.dst();
            if dst.port() == 0 {
                self.counters.tx_errors += 1;
                continue;
            }
            let payload = &frame[f.payload_range()];
            self.tx.iovs[msgs] = libc::iovec {
                // The kernel only reads through this pointer.
                iov_base: payload.as_ptr().cast_mut().cast(),
                iov_len: payload.len(),
            };
            self.tx.names[msgs] = sockaddr_in(dst);
            let h = &mut self.tx.hdrs[msgs].msg_hdr;
            h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_flags = 0;
            frame_len[msgs] = frame.len() as u32;
            *slot = msgs as u8;
            msgs += 1;
        }

        // `done` messages are resolved: sent, or refused for good.
        let mut done = 0;
        let mut sent = 0;
        let mut fatal = None;
        while done < msgs {
            // SAFETY: headers `done..msgs` point at their own addresses and at
            // I/O vectors into frames this batch holds, which stay put for
            // the call; the kernel only reads them.
            let r = unsafe {
                libc::sendmmsg(
                    self.sock.as_raw_fd(),
                    self.tx.hdrs.as_mut_ptr().add(done),
                    (msgs - done) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                let r = r as usize;
                let bytes: u64 = frame_len[done..done + r]
                    .iter()
                    .map(|&l| u64::from(l))
                    .sum();
                self.counters.tx_bytes += bytes;
                sent += r;
                done += r;
                continue;
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(errno) if is_transient(errno) => break,
                Some(errno) if is_per_datagram(errno) => {
                    self.counters.tx_errors += 1;
                    done += 1;
                }
                _ => {
                    fatal = Some(e);
                    break;
                }
            }
        }

        // Keep exactly the unresolved frames, in order; the rest go back to
        // the free list (the kernel has copied what it sent).
        let mut i = 0;
        batch.retain_mut(|_| {
            let m = msg_of[i];
            i += 1;
            m != INVALID && usize::from(m) >= done
        });
        batch.take_dropped(|a| self.free.put(a));
        self.counters.tx_packets += sent as u64;
        self.counters.tx_full += batch.len() as u64;
        match fatal {
            Some(source) => Err(IoError::Os {
                op: "sendmmsg",
                source,
            }),
            None => Ok(sent),
        }
    }

    fn alloc(&mut self, batch: &mut Batch, n: usize) -> usize {
        self.free.alloc(batch, &self.mem, n)
    }

    fn release(&mut self, batch: &mut Batch) -> Result<(), IoError> {
        self.free.release(batch, &self.mem)
    }

    fn wait(&mut self, timeout: Duration) -> Result<(), IoError> {
        self.counters.wakeups += 1;
        super::poll::wait_readable(self.sock.as_raw_fd(), timeout, "poll on UDP socket")
    }

    fn counters(&self) -> IoCounters {
        let mut c = self.counters;
        c.rx_dropped =
            self.stats.rx_kernel_dropped + self.stats.rx_truncated + self.stats.rx_bad_source;
        c
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;

    use super::*;

    fn loopback(config: UdpConfig) -> UdpIo {
        UdpIo::open(UdpConfig {
            bind: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
            chunks: 256,
            ..config
        })
        .expect("open a UDP backend on loopback")
    }

    fn client() -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    /// Receives until `n` frames are in `batch` or five seconds pass.
    fn recv_n(io: &mut UdpIo, batch: &mut Batch, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while batch.len() < n && std::time::Instant::now() < deadline {
            if io.recv(batch).unwrap() == 0 {
                io.wait(Duration::from_millis(50)).unwrap();
            }
        }
        assert_eq!(batch.len(), n, "frames received");
    }

    #[test]
    fn received_datagrams_become_complete_frames() {
        let mut io = loopback(UdpConfig {
            local_mac: [2, 0, 0, 0, 0, 0xb],
            peer_mac: [2, 0, 0, 0, 0, 0xa],
            ..UdpConfig::default()
        });
        let local = io.local_addr();
        assert_eq!(*local.ip(), Ipv4Addr::LOCALHOST);
        assert_ne!(local.port(), 0);
        let c = client();
        for i in 0..3u8 {
            c.send_to(&[i; 100], local).unwrap();
        }
        let mut b = io.new_batch();
        recv_n(&mut io, &mut b, 3);
        for i in 0..3 {
            let f = UdpFrame::parse(b.frame(i)).expect("a synthesized frame parses");
            assert_eq!(f.payload(), &[i as u8; 100][..]);
            assert_eq!(f.payload_range().start, UDP_PAYLOAD_OFFSET);
            assert_eq!(f.len(), b.frame(i).len());
            assert_eq!(std::net::SocketAddr::V4(f.src()), c.local_addr().unwrap());
            assert_eq!(f.dst(), local);
            assert_eq!(f.ethernet().src_addr(), [2, 0, 0, 0, 0, 0xa]);
            assert_eq!(f.ethernet().dst_addr(), [2, 0, 0, 0, 0, 0xb]);
            assert!(f.ipv4().verify_checksum());
            assert_eq!(f.udp().checksum(), 0, "no UDP checksum");
        }
        let c = io.counters();
        assert_eq!((c.rx_packets, c.rx_bytes), (3, 3 * 142));
    }

    #[test]
    fn swapped_frames_are_echoed_to_the_sender() {
        let mut io = loopback(UdpConfig::default());
        let c = client();
        for i in 0..10u8 {
            c.send_to(&[i; 33], io.local_addr()).unwrap();
        }
        let mut b = io.new_batch();
        recv_n(&mut io, &mut b, 10);
        for mut f in b.iter_mut() {
            wire::swap_udp_frame_addresses(f.data_mut()).unwrap();
        }
        assert_eq!(io.send(&mut b).unwrap(), 10);
        assert!(b.is_empty());
        let mut buf = [0u8; 100];
        for i in 0..10u8 {
            let (n, from) = c.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[i; 33][..]);
            assert_eq!(from, std::net::SocketAddr::V4(io.local_addr()));
        }
        let k = io.counters();
        assert_eq!((k.tx_packets, k.tx_errors, k.tx_full), (10, 0, 0));
        assert_eq!(k.tx_bytes, 10 * (42 + 33));
        assert_eq!(io.free_buffers(), 256, "sent buffers are free again");
    }

    #[test]
    fn frames_built_from_scratch_are_sent() {
        let mut io = loopback(UdpConfig::default());
        let c = client();
        let dst = match c.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            other => panic!("{other}"),
        };
        let mut b = io.new_batch();
        assert_eq!(io.alloc(&mut b, 2), 2);
        for (i, mut f) in b.iter_mut().enumerate() {
            let spec = FrameSpec {
                src_mac: [0; 6],
                dst_mac: [0; 6],
                src_ip: Ipv4Addr::LOCALHOST,
                dst_ip: *dst.ip(),
                src_port: 1,
                dst_port: dst.port(),
            };
            f.set_len(f.room()).unwrap();
            let len = wire::write_udp_frame(f.data_mut(), &spec, &[i as u8 + 1; 5]).unwrap();
            f.set_len(len).unwrap();
        }
        assert_eq!(io.send(&mut b).unwrap(), 2);
        let mut buf = [0u8; 16];
        for i in 0..2u8 {
            let (n, from) = c.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[i + 1; 5]);
            assert_eq!(
                from,
                std::net::SocketAddr::V4(io.local_addr()),
                "the socket's own port, not the frame's source port"
            );
        }
    }

    #[test]
    fn malformed_frames_are_dropped_and_counted_in_order() {
        let mut io = loopback(UdpConfig::default());
        let c = client();
        let dst = match c.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            other => panic!("{other}"),
        };
        let spec = FrameSpec {
            src_mac: [0; 6],
            dst_mac: [0; 6],
            src_ip: Ipv4Addr::LOCALHOST,
            dst_ip: *dst.ip(),
            src_port: 1,
            dst_port: dst.port(),
        };
        let mut b = io.new_batch();
        assert_eq!(io.alloc(&mut b, 6), 6);
        for (i, mut f) in b.iter_mut().enumerate() {
            f.set_len(f.room()).unwrap();
            let len = wire::write_udp_frame(f.data_mut(), &spec, &[i as u8]).unwrap();
            f.set_len(len).unwrap();
            match i {
                // Not a frame at all.
                1 => f.fill(&[0xff; 60]).unwrap(),
                // TTL changed without the checksum.
                3 => f.data_mut()[14 + 8] = 1,
                4 => f.set_len(20).unwrap(),
                // Destination port 0, which no datagram can be sent to.
                5 => f.data_mut()[36..38].copy_from_slice(&[0, 0]),
                _ => {}
            }
        }
        assert_eq!(io.send(&mut b).unwrap(), 2, "frames 0 and 2 go out");
        assert!(b.is_empty());
        let k = io.counters();
        assert_eq!((k.tx_packets, k.tx_errors), (2, 4));
        let mut buf = [0u8; 16];
        for want in [0u8, 2] {
            let (n, _) = c.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[want]);
        }
        assert_eq!(io.free_buffers(), 256);
    }

    #[test]
    fn oversized_datagrams_are_dropped_and_counted() {
        let mut io = loopback(UdpConfig::default());
        let c = client();
        c.send_to(&[1; 3000], io.local_addr()).unwrap();
        c.send_to(&[2; 2048 - 42], io.local_addr()).unwrap();
        c.send_to(&[3; 2048 - 41], io.local_addr()).unwrap();
        let mut b = io.new_batch();
        recv_n(&mut io, &mut b, 1);
        assert_eq!(UdpFrame::parse(b.frame(0)).unwrap().payload().len(), 2006);
        assert_eq!(
            b.frame(0).len(),
            2048,
            "a datagram may fill its chunk exactly"
        );
        assert_eq!(io.stats().rx_truncated, 2);
        assert_eq!(io.counters().rx_dropped, 2);
        io.release(&mut b).unwrap();
        assert_eq!(io.free_buffers(), 256);
    }

    #[test]
    fn wildcard_bind_reports_the_real_destination() {
        let mut io = UdpIo::open(UdpConfig {
            chunks: 64,
            ..UdpConfig::default()
        })
        .unwrap();
        assert!(io.local_addr().ip().is_unspecified());
        let to = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), io.local_addr().port());
        client().send_to(b"x", to).unwrap();
        let mut b = io.new_batch();
        recv_n(&mut io, &mut b, 1);
        let f = UdpFrame::parse(b.frame(0)).unwrap();
        assert_eq!(f.dst(), to);
        assert!(f.ipv4().verify_checksum());
    }

    #[test]
    fn kernel_drops_are_counted() {
        // A tiny receive buffer overflows after a few datagrams; SO_RXQ_OVFL
        // reports how many the kernel threw away.
        let mut io = loopback(UdpConfig {
            recv_buffer_bytes: 4096,
            ..UdpConfig::default()
        });
        let c = client();
        for _ in 0..200 {
            c.send_to(&[0; 512], io.local_addr()).unwrap();
        }
        let mut b = io.new_batch();
        let mut got = 0;
        while io.recv(&mut b).unwrap() > 0 {
            got += b.len();
            b.clear();
        }
        c.send_to(b"after", io.local_addr()).unwrap();
        recv_n(&mut io, &mut b, 1);
        got += 1;
        let dropped = io.stats().rx_kernel_dropped;
        assert!(dropped > 0, "a 4 KiB buffer cannot hold 200 datagrams");
        assert_eq!(
            got as u64 + dropped,
            201,
            "every datagram is received or counted"
        );
        assert_eq!(io.counters().rx_dropped, dropped);
    }

    #[test]
    fn source_port_zero_is_dropped_and_counted() {
        if let Err(e) = crate::netns::check_privileges() {
            panic!(
                "this test sends a hand-made UDP header through a raw socket, which needs root: {e}"
            );
        }
        let mut io = loopback(UdpConfig::default());
        // SAFETY: socket has no memory preconditions; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_UDP) };
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        // SAFETY: a descriptor we just opened and own alone.
        let raw = unsafe { OwnedFd::from_raw_fd(fd) };
        let port = io.local_addr().port();
        let mut dgram = [0u8; 12];
        dgram[2..4].copy_from_slice(&port.to_be_bytes());
        dgram[4..6].copy_from_slice(&12u16.to_be_bytes());
        dgram[8..].copy_from_slice(b"zero");
        let to = sockaddr_in(io.local_addr());
        // SAFETY: `dgram` and `to` are valid for the lengths given.
        let r = unsafe {
            libc::sendto(
                raw.as_raw_fd(),
                dgram.as_ptr().cast(),
                dgram.len(),
                0,
                (&to as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 12, "raw send: {}", std::io::Error::last_os_error());
        client().send_to(b"ok", io.local_addr()).unwrap();
        let mut b = io.new_batch();
        recv_n(&mut io, &mut b, 1);
        assert_eq!(UdpFrame::parse(b.frame(0)).unwrap().payload(), b"ok");
        assert_eq!(io.stats().rx_bad_source, 1);
    }

    #[test]
    fn foreign_batches_and_bad_settings_are_refused() {
        let mut a = loopback(UdpConfig::default());
        let b = loopback(UdpConfig::default());
        let mut foreign = b.new_batch();
        assert!(matches!(a.recv(&mut foreign), Err(IoError::ForeignBatch)));
        assert!(matches!(a.send(&mut foreign), Err(IoError::ForeignBatch)));
        assert_eq!(a.alloc(&mut foreign, 1), 0);
        for bad in [
            UdpConfig {
                burst: 0,
                ..UdpConfig::default()
            },
            UdpConfig {
                burst: MAX_BURST + 1,
                ..UdpConfig::default()
            },
            UdpConfig {
                chunks: 4,
                burst: 8,
                ..UdpConfig::default()
            },
        ] {
            assert!(matches!(UdpIo::open(bad), Err(UdpError::Config(_))));
        }
        assert!(matches!(
            UdpIo::open(UdpConfig {
                chunk_size: 1000,
                ..UdpConfig::default()
            }),
            Err(UdpError::Pool(_))
        ));
        let taken = UdpIo::open(UdpConfig {
            bind: a.local_addr(),
            ..UdpConfig::default()
        });
        assert!(matches!(taken, Err(UdpError::Os { op: "bind", .. })));
    }

    #[test]
    fn reuse_port_shares_an_address() {
        let cfg = UdpConfig {
            bind: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
            reuse_port: true,
            chunks: 64,
            ..UdpConfig::default()
        };
        let a = UdpIo::open(cfg).unwrap();
        let b = UdpIo::open(UdpConfig {
            bind: a.local_addr(),
            ..cfg
        })
        .unwrap();
        assert_eq!(a.local_addr(), b.local_addr());
        assert!(a.as_raw_fd() != b.as_fd().as_raw_fd());
    }

    #[test]
    fn wait_returns_when_data_arrives_and_times_out_otherwise() {
        let mut io = loopback(UdpConfig::default());
        let t = std::time::Instant::now();
        io.wait(Duration::from_millis(30)).unwrap();
        assert!(t.elapsed() >= Duration::from_millis(25));
        client().send_to(b"x", io.local_addr()).unwrap();
        let t = std::time::Instant::now();
        io.wait(Duration::from_secs(5)).unwrap();
        assert!(t.elapsed() < Duration::from_secs(1));
        assert_eq!(io.counters().wakeups, 2);
    }
}
