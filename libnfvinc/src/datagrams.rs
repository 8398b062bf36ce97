//! Datagrams received in batches: one `recvmmsg` takes as many as are
//! queued and fit, instead of a `recv_from` each, and [`wait_readable`]
//! sleeps until there are some. The broadcast member's and the consensus
//! handle's background threads read so.

use std::io;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Waits until one of `fds` (at most two) is readable or `timeout` passes:
/// how a background thread sleeps between reads.
pub(crate) fn wait_readable(fds: &[std::os::fd::RawFd], timeout: Duration) -> io::Result<()> {
    let mut p = [libc::pollfd {
        fd: -1,
        events: libc::POLLIN,
        revents: 0,
    }; 2];
    let n = fds.len().min(2);
    for (p, &fd) in p.iter_mut().zip(fds) {
        p.fd = fd;
    }
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: `n` valid pollfds and a valid timespec; no signal mask.
    let r = unsafe { libc::ppoll(p.as_mut_ptr(), n as libc::nfds_t, &ts, std::ptr::null()) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// A background thread's receive buffers, with the `recvmmsg` headers
/// that point at them built once rather than zeroed and filled in at
/// every read (two reads per wake-up; fifty members wake thousands of
/// times a second). Built on the thread that uses it: it holds pointers
/// into its own buffers.
pub(crate) struct Datagrams {
    /// All the buffers, `size` bytes each, in one allocation: a large one
    /// is mapped zeroed on demand, so only the pages datagrams reach are
    /// ever touched.
    buf: Vec<u8>,
    size: usize,
    /// One per buffer, pointing at it; never reallocated.
    iov: Vec<libc::iovec>,
    /// One per buffer where senders are asked for (else empty); the
    /// kernel writes each datagram's sender there.
    addrs: Vec<libc::sockaddr_in>,
    /// One per buffer, pointing at its `iov` (and address); the kernel
    /// writes each datagram's length into `msg_len`.
    msgs: Vec<libc::mmsghdr>,
}

impl Datagrams {
    /// `count` buffers of `size` bytes, without the senders' addresses.
    pub(crate) fn new(count: usize, size: usize) -> Self {
        Self::build(count, size, false)
    }

    /// `count` buffers of `size` bytes, each with its sender's address
    /// ([`Datagrams::sender`]).
    pub(crate) fn with_senders(count: usize, size: usize) -> Self {
        Self::build(count, size, true)
    }

    fn build(count: usize, size: usize, senders: bool) -> Self {
        let mut buf = vec![0u8; count * size];
        let mut iov: Vec<libc::iovec> = buf
            .chunks_exact_mut(size.max(1))
            .take(count)
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        // SAFETY: all-zero bytes are valid for this plain C struct.
        let zero: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut addrs = vec![zero; if senders { iov.len() } else { 0 }];
        let msgs = iov
            .iter_mut()
            .enumerate()
            .map(|(i, v)| {
                // SAFETY: all-zero bytes are valid for this plain C struct.
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
                if let Some(a) = addrs.get_mut(i) {
                    m.msg_hdr.msg_name = (a as *mut libc::sockaddr_in).cast();
                }
                m
            })
            .collect();
        Datagrams {
            buf,
            size,
            iov,
            addrs,
            msgs,
        }
    }

    /// How many datagrams one read can take.
    pub(crate) fn capacity(&self) -> usize {
        self.iov.len()
    }

    /// Receives into the buffers from `from` on, as many datagrams as are
    /// there and fit, with one `recvmmsg`, without blocking. Returns how
    /// many (at least one), or the socket's error (`WouldBlock` when
    /// nothing is there, an ICMP error from a peer that is down…).
    pub(crate) fn recv(&mut self, socket: &UdpSocket, from: usize) -> io::Result<usize> {
        let n = self.iov.len().saturating_sub(from);
        if n == 0 {
            return Ok(0);
        }
        if !self.addrs.is_empty() {
            // The kernel writes each address's length over this.
            for m in &mut self.msgs[from..] {
                m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            }
        }
        // SAFETY: `msgs[from..]` are `n` headers, each pointing at its own
        // live, writable buffer through `iov`, and at its own address when
        // senders are asked for (none of them is ever resized); no timeout
        // is passed.
        let r = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.msgs[from..].as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r as usize)
    }

    /// Datagram `i` of the last reads.
    pub(crate) fn get(&self, i: usize) -> &[u8] {
        let len = (self.msgs[i].msg_len as usize).min(self.size);
        &self.buf[i * self.size..i * self.size + len]
    }

    /// Who sent datagram `i` of the last reads; `None` without senders
    /// ([`Datagrams::new`]) or from other than IPv4.
    pub(crate) fn sender(&self, i: usize) -> Option<SocketAddrV4> {
        let a = self.addrs.get(i)?;
        let len = self.msgs[i].msg_hdr.msg_namelen as usize;
        if len < std::mem::size_of::<libc::sockaddr_in>()
            || a.sin_family != libc::AF_INET as libc::sa_family_t
        {
            return None;
        }
        Some(SocketAddrV4::new(
            u32::from_be(a.sin_addr.s_addr).into(),
            u16::from_be(a.sin_port),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_read_in_order_with_its_senders() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut inbox = Datagrams::with_senders(4, 16);
        assert_eq!(
            inbox.recv(&rx, 0).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        a.send_to(b"one", to).unwrap();
        b.send_to(b"two", to).unwrap();
        a.send_to(&[7; 40], to).unwrap();
        // Loopback delivers at once, but leave it a moment.
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(inbox.recv(&rx, 1).unwrap(), 3);
        assert_eq!(inbox.get(1), b"one");
        assert_eq!(inbox.get(2), b"two");
        assert_eq!(inbox.get(3), &[7; 16], "cut to the buffer");
        let addr = |s: &UdpSocket| match s.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            _ => unreachable!(),
        };
        assert_eq!(inbox.sender(1), Some(addr(&a)));
        assert_eq!(inbox.sender(2), Some(addr(&b)));
        assert_eq!(inbox.recv(&rx, 4).unwrap(), 0, "no room");
        let plain = Datagrams::new(2, 8);
        assert_eq!(plain.sender(0), None);
        assert_eq!(plain.capacity(), 2);
    }
}
