//! Waiting for a socket to become readable, with sub-millisecond timeouts.
//!
//! `poll(2)` counts its timeout in whole milliseconds: a 300 µs wait would
//! round down to zero and turn an adaptive worker's sleep into a busy spin.
//! `ppoll(2)` takes a `timespec`, so the wait lasts as long as asked.

use std::os::fd::RawFd;
use std::time::Duration;

use super::IoError;

/// Blocks until `fd` is readable or `timeout` passes (an interrupted wait
/// returns early, which the callers' loops absorb); `op` names the socket
/// in the error.
pub(crate) fn wait_readable(fd: RawFd, timeout: Duration, op: &'static str) -> Result<(), IoError> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: one valid pollfd, a valid timespec, no signal mask.
    if unsafe { libc::ppoll(&mut p, 1, &ts, std::ptr::null()) } < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(IoError::Os { op, source: e });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::time::Instant;

    #[test]
    fn a_sub_millisecond_wait_sleeps_instead_of_returning_at_once() {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        // 50 waits of 400 µs: with poll(2)'s millisecond rounding they took
        // no time at all.
        let t = Instant::now();
        for _ in 0..50 {
            wait_readable(s.as_raw_fd(), Duration::from_micros(400), "test").unwrap();
        }
        assert!(
            t.elapsed() >= Duration::from_millis(20),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn data_ends_the_wait() {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.send_to(b"x", s.local_addr().unwrap()).unwrap();
        let t = Instant::now();
        wait_readable(s.as_raw_fd(), Duration::from_secs(5), "test").unwrap();
        assert!(t.elapsed() < Duration::from_secs(1));
    }
}
