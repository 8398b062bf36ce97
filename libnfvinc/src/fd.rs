//! The failure detector's direct channel, from the application's side.
//!
//! * [`Heartbeater`]: a thread that sends a process's heartbeats to the
//!   detector VNF on a fixed period.
//! * [`FdClient`]: requests (add, remove, query, subscribe) and the state
//!   changes pushed to a subscriber.
//!
//! Both speak the messages of [`vnf_fd::wire`] over a plain UDP socket:
//! the direct channel is UDP to the VNF's address and port, which the XDP
//! program on the NFVI host steers into the VNF's dataplane.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dataplane::wire::nfvinc::HEADER_LEN;

use crate::direct::{self, DirectAuth};
use vnf_fd::wire::{self, Message, Target, ack, event, reply};
use vnf_fd::{ProcessId, ProcessSpec};

/// Why a failure-detector request failed.
#[derive(Debug, thiserror::Error)]
pub enum FdClientError {
    /// The socket failed.
    #[error("failure detector channel: {0}")]
    Io(#[from] io::Error),
    /// No answer came in time (each request is retried before this).
    #[error("the failure detector at {0} did not answer")]
    NoAnswer(SocketAddrV4),
    /// The detector refused the request.
    #[error("the failure detector refused the request: {0:?}")]
    Refused(ack::Status),
}

/// Sends heartbeats for one process until stopped or dropped.
///
/// The period is kept on an absolute schedule (`clock_nanosleep` with
/// `TIMER_ABSTIME` on `CLOCK_MONOTONIC`): a late wake-up does not push the
/// following heartbeats later, and when the thread was held up for more
/// than a period it sends one heartbeat and rejoins the schedule rather
/// than a burst of stale ones (which would teach the detector a wrong
/// phase). The thread asks for real-time priority (`SCHED_FIFO`), which
/// keeps the period under CPU load where the process may have it; without
/// it (no privilege) it runs at normal priority and says so in the log.
#[derive(Debug)]
pub struct Heartbeater {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Heartbeater {
    /// Starts sending `process`'s heartbeats to `detector` every `interval`,
    /// untagged (a detector run without authentication).
    pub fn start(
        detector: SocketAddrV4,
        process: ProcessId,
        interval: Duration,
    ) -> io::Result<Self> {
        Self::start_with(detector, process, interval, None)
    }

    /// [`Heartbeater::start`], each heartbeat tagged under `auth`.
    pub fn start_with(
        detector: SocketAddrV4,
        process: ProcessId,
        interval: Duration,
        auth: Option<DirectAuth>,
    ) -> io::Result<Self> {
        if interval.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "heartbeat interval must be above zero",
            ));
        }
        let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
        socket.connect(detector)?;
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (stop2, sent2) = (stop.clone(), sent.clone());
        let thread = std::thread::Builder::new()
            .name(format!("heartbeat-{}", process.0))
            .spawn(move || beat(socket, process, interval, auth, &stop2, &sent2))?;
        Ok(Self {
            stop,
            sent,
            thread: Some(thread),
        })
    }

    /// Heartbeats sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops sending; returns how many were sent, or the error that ended
    /// the thread early.
    pub fn stop(mut self) -> io::Result<u64> {
        self.halt()
    }

    fn halt(&mut self) -> io::Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join()
                .map_err(|_| io::Error::other("heartbeat thread panicked"))??;
        }
        Ok(self.sent())
    }
}

impl Drop for Heartbeater {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}

fn monotonic() -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts
}

fn ns(ts: &libc::timespec) -> u64 {
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn timespec(ns: u64) -> libc::timespec {
    libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    }
}

fn beat(
    socket: UdpSocket,
    process: ProcessId,
    interval: Duration,
    auth: Option<DirectAuth>,
    stop: &AtomicBool,
    sent: &AtomicU64,
) -> io::Result<()> {
    if !dataplane::runtime::set_realtime(10) {
        tracing::debug!("heartbeat thread runs without real-time priority");
    }
    let period = interval.as_nanos() as u64;
    let mut buf = [0u8; HEADER_LEN + wire::heartbeat::LEN];
    let mut next = ns(&monotonic());
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let now = ns(&monotonic());
        let msg = Message::Heartbeat(wire::heartbeat::Repr {
            process,
            seq,
            sent_ns: now,
        });
        let n = msg
            .emit(direct::session_of(auth.as_ref()), &mut buf)
            .map_err(|e| io::Error::other(e.to_string()))?;
        direct::seal(auth.as_ref(), &mut buf[..n]);
        match socket.send(&buf[..n]) {
            Ok(_) => {
                sent.fetch_add(1, Ordering::Relaxed);
            }
            // The detector's host may be unreachable for a while (ICMP
            // errors surface here): keep beating, that is the point.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(e) if e.raw_os_error() == Some(libc::ENETUNREACH) => {}
            Err(e) if e.raw_os_error() == Some(libc::EHOSTUNREACH) => {}
            Err(e) => return Err(e),
        }
        seq += 1;
        next += period;
        let now = ns(&monotonic());
        if next <= now {
            // Held up past a whole period: rejoin the schedule.
            next = now + period - (now - next) % period;
        }
        let at = timespec(next);
        // SAFETY: `at` is a valid timespec; an interrupted sleep (EINTR)
        // just ends early, which the loop tolerates.
        unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &at,
                std::ptr::null_mut(),
            )
        };
    }
    Ok(())
}

/// Requests to a failure-detector VNF, and the state changes it pushes.
#[derive(Debug)]
pub struct FdClient {
    socket: UdpSocket,
    detector: SocketAddrV4,
    next_request: u32,
    auth: Option<DirectAuth>,
    /// State changes that arrived while waiting for an answer.
    early_events: Vec<event::Repr>,
}

/// How long one attempt waits for its answer.
const ATTEMPT: Duration = Duration::from_millis(200);
/// Attempts per request.
const ATTEMPTS: u32 = 5;

impl FdClient {
    /// A client of the detector at `detector`, on a fresh UDP socket.
    pub fn connect(detector: SocketAddrV4) -> io::Result<Self> {
        let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
        socket.connect(detector)?;
        Ok(Self {
            socket,
            detector,
            next_request: 1,
            auth: None,
            early_events: Vec::new(),
        })
    }

    /// Tags every request under `auth` and believes only answers and events
    /// tagged under it (how a channel opened through `nfvinc serve` works).
    pub fn with_auth(mut self, auth: DirectAuth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// The local address answers and events come to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Starts monitoring a process.
    pub fn add(&mut self, spec: ProcessSpec) -> Result<(), FdClientError> {
        let request_id = self.request_id();
        self.acked(
            &Message::Add(wire::add::Repr { request_id, spec }),
            request_id,
        )
    }

    /// Stops monitoring a process.
    pub fn remove(&mut self, process: ProcessId) -> Result<(), FdClientError> {
        let request_id = self.request_id();
        let msg = Message::Remove(wire::remove::Repr {
            request_id,
            process,
        });
        self.acked(&msg, request_id)
    }

    /// Asks for state changes of `target` to be pushed to this client.
    pub fn subscribe(&mut self, target: Target) -> Result<(), FdClientError> {
        let request_id = self.request_id();
        let msg = Message::Subscribe(wire::subscribe::Repr {
            request_id,
            target,
            unsubscribe: false,
        });
        self.acked(&msg, request_id)
    }

    /// The state of one process (an empty answer: not monitored) or all.
    pub fn query(&mut self, target: Target) -> Result<Vec<reply::EntryRepr>, FdClientError> {
        let request_id = self.request_id();
        let msg = Message::Query(wire::query::Repr { request_id, target });
        let mut buf = [0u8; 2048];
        'attempt: for _ in 0..ATTEMPTS {
            self.send(&msg)?;
            let mut entries = Vec::new();
            let deadline = Instant::now() + ATTEMPT;
            loop {
                let Some(n) = self.recv_until(&mut buf, deadline)? else {
                    continue 'attempt;
                };
                match Message::parse_nfv(&buf[..n]) {
                    Ok((_, Message::QueryReply(r, e))) if r.request_id == request_id => {
                        entries.extend(e);
                        if !r.more {
                            return Ok(entries);
                        }
                    }
                    Ok((_, Message::StateChange(e))) => self.early_events.push(e),
                    _ => {}
                }
            }
        }
        Err(FdClientError::NoAnswer(self.detector))
    }

    /// The next pushed state change, waiting at most `timeout`.
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<event::Repr>, FdClientError> {
        if !self.early_events.is_empty() {
            return Ok(Some(self.early_events.remove(0)));
        }
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 2048];
        while let Some(n) = self.recv_until(&mut buf, deadline)? {
            if let Ok((_, Message::StateChange(e))) = Message::parse_nfv(&buf[..n]) {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }

    fn request_id(&mut self) -> u32 {
        let id = self.next_request;
        self.next_request = self.next_request.wrapping_add(1).max(1);
        id
    }

    fn send(&self, msg: &Message<'_>) -> Result<(), FdClientError> {
        let mut buf = vec![0u8; HEADER_LEN + msg.payload_len()];
        let n = msg
            .emit(direct::session_of(self.auth.as_ref()), &mut buf)
            .map_err(|e| io::Error::other(e.to_string()))?;
        direct::seal(self.auth.as_ref(), &mut buf[..n]);
        self.socket.send(&buf[..n])?;
        Ok(())
    }

    /// The next message believed genuine (see [`FdClient::with_auth`]),
    /// or `None` at `deadline`; messages that fail the check are skipped.
    fn recv_until(&self, buf: &mut [u8], deadline: Instant) -> io::Result<Option<usize>> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.socket.set_read_timeout(Some(left))?;
            match self.socket.recv(buf) {
                Ok(n) if direct::genuine(self.auth.as_ref(), &buf[..n]) => return Ok(Some(n)),
                Ok(_) => {
                    tracing::warn!("dropped a failure-detector message that failed authentication")
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None);
                }
                // An ICMP error from an earlier send: the next attempt retries.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends `msg` until its acknowledgement comes. Retries are safe: a
    /// repeated add answers `DuplicateProcess`, a repeated remove
    /// `UnknownProcess`, and both count as done when an earlier attempt
    /// may have been applied.
    fn acked(&mut self, msg: &Message<'_>, request_id: u32) -> Result<(), FdClientError> {
        let mut buf = [0u8; 2048];
        for attempt in 0..ATTEMPTS {
            self.send(msg)?;
            let deadline = Instant::now() + ATTEMPT;
            while let Some(n) = self.recv_until(&mut buf, deadline)? {
                match Message::parse_nfv(&buf[..n]) {
                    Ok((_, Message::Ack(a))) if a.request_id == request_id => {
                        let retried = attempt > 0;
                        return match (a.status, msg) {
                            (ack::Status::Ok, _) => Ok(()),
                            (ack::Status::DuplicateProcess, Message::Add(_)) if retried => Ok(()),
                            (ack::Status::UnknownProcess, Message::Remove(_)) if retried => Ok(()),
                            (s, _) => Err(FdClientError::Refused(s)),
                        };
                    }
                    Ok((_, Message::StateChange(e))) => self.early_events.push(e),
                    _ => {}
                }
            }
        }
        Err(FdClientError::NoAnswer(self.detector))
    }
}
