//! The consensus service from the application's side: submit values, and
//! follow the decided log.
//!
//! [`Consensus`] drives the service's own client and learner cores
//! ([`vnf_paxos::Client`], [`vnf_paxos::Learner`]) over one kernel UDP
//! socket (the direct channel). Submitting numbers the value, sends it to
//! the coordinator believed to lead, and retries (following `NotLeader`
//! hints, else the next coordinator) until a coordinator says it is
//! decided; the retries keep the number, so the service decides the value
//! at most once however often it is sent. With [`ConsensusConfig::learn`],
//! the handle is also a learner: it subscribes to the leader's
//! announcements of decided values and its heartbeats (a fetch every
//! [`KEEPALIVE`], which the VNFs take as a subscription for a second) and
//! yields every decided command
//! once, in instance order ([`Consensus::next_delivery`]), fetching what it
//! missed from the coordinators, learners and acceptors.
//!
//! A background thread receives and runs the timers; submissions are sent
//! from the caller's thread, so no latency is added for a hand-off.
//!
//! Submissions are coalesced ([`vnf_paxos::Client`]'s module docs): a
//! value submitted while none of the handle's earlier values awaits an
//! answer leaves at once, alone; values submitted while some do are queued
//! and leave together, many to a datagram, as soon as the next answer
//! arrives (the coordinator answers many values per message too). A burst
//! handed over at once ([`Consensus::submit_all`]) leaves together
//! straight away. So a lightly loaded handle adds no latency, and a loaded
//! one sends a datagram per answer rather than per value.
//!
//! With credentials ([`ConsensusConfig::auth`]; [`Consensus::connect_instance`]
//! takes them from the answer that created the instance) every message
//! the handle sends carries the instance's session and is tagged under its
//! key, and every message it receives is checked before the client or the
//! learner sees it: a forged reply or vote is dropped and counted
//! ([`Consensus::refused`]). `nfvinc serve` runs its consensus VNFs so, and
//! they drop untagged messages.

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dataplane::time::Time;
use dataplane::wire::nfvinc::NfvHeader;
use vnf_paxos::service::{acceptor_node, coordinator_node, learner_node};

use crate::datagrams::{Datagrams, wait_readable};
use crate::direct::{self, DirectAuth};
use vnf_paxos::wire::{Message, MsgType, fetch};
use vnf_paxos::{
    Client, ClientConfig, ClientId, Command, Dest, Instance, Learner, LearnerConfig, NodeId,
    Transmit,
};

/// How often a learning handle renews its subscription.
pub const KEEPALIVE: Duration = Duration::from_millis(100);
/// Deliveries queued for the application (past this the oldest are
/// dropped and counted, [`Consensus::lagged`]), and decided submissions
/// remembered for [`Consensus::wait`] (past this the oldest are forgotten).
pub const MAX_QUEUED: usize = 1 << 20;

/// Why a consensus call failed.
#[derive(Debug, thiserror::Error)]
pub enum ConsensusError {
    /// The socket failed.
    #[error("consensus channel: {0}")]
    Io(#[from] io::Error),
    /// The value was not known decided in time (it may still be decided:
    /// the handle keeps retrying it).
    #[error("value {seq} not known decided within {within:?}")]
    Timeout {
        /// Its sequence number.
        seq: u64,
        /// How long was waited.
        within: Duration,
    },
    /// The configuration cannot work.
    #[error("consensus configuration: {0}")]
    Config(&'static str),
    /// The value does not fit a request datagram.
    #[error("value of {0} bytes is too large (at most 1,400)")]
    TooLarge(usize),
    /// The handle's thread stopped.
    #[error("the consensus handle is closed")]
    Closed,
}

/// Where the service is, and what the handle does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsensusConfig {
    /// Coordinators, in the same order as the VNFs' `--coordinators`.
    pub coordinators: Vec<SocketAddrV4>,
    /// Acceptors, by slot (for learning; may be empty when not learning).
    pub acceptors: Vec<SocketAddrV4>,
    /// Learner VNFs (asked for missed decisions; may be empty).
    pub learners: Vec<SocketAddrV4>,
    /// Follow the decided log ([`Consensus::next_delivery`]).
    pub learn: bool,
    /// An unanswered submission is sent again after this.
    pub retry: Duration,
    /// Local address to bind (port 0: any).
    pub bind: SocketAddrV4,
    /// The direct channel's credentials (the instance's session and key):
    /// messages sent are tagged under the key, messages received checked.
    /// `None` for VNFs run without authentication.
    pub auth: Option<DirectAuth>,
}

impl ConsensusConfig {
    /// A submitting and learning handle for this group, with defaults.
    pub fn new(coordinators: Vec<SocketAddrV4>, acceptors: Vec<SocketAddrV4>) -> Self {
        ConsensusConfig {
            coordinators,
            acceptors,
            learners: Vec::new(),
            learn: true,
            retry: Duration::from_millis(30),
            bind: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            auth: None,
        }
    }
}

/// A submitted value, known decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// Its sequence number (what [`Consensus::submit`] returned).
    pub seq: u64,
    /// The instance that decided it (`u64::MAX` when the coordinator that
    /// answered a retry no longer remembered which).
    pub instance: Instance,
}

/// One decided instance's new commands, in instance order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The instance.
    pub instance: Instance,
    /// Its commands not delivered before (empty for a no-op).
    pub commands: Vec<Command>,
}

/// Submissions known decided, for [`Consensus::wait`]: the instance of
/// each sequence number from `base` on, in a ring (numbers are dense and
/// mostly decided in order, so this costs a slot per value, not a tree
/// node); the oldest go first past [`MAX_QUEUED`].
#[derive(Default)]
struct Decided {
    base: u64,
    slots: VecDeque<Option<Instance>>,
}

impl Decided {
    fn insert(&mut self, seq: u64, instance: Instance) {
        if seq < self.base {
            return;
        }
        let i = (seq - self.base) as usize;
        if i >= MAX_QUEUED {
            // Far ahead: forget the oldest to make room.
            let drop = (i + 1 - MAX_QUEUED).min(self.slots.len());
            self.slots.drain(..drop);
            self.base += (i + 1 - MAX_QUEUED) as u64;
        }
        let i = (seq - self.base) as usize;
        if i >= self.slots.len() {
            self.slots.resize(i + 1, None);
        }
        self.slots[i] = Some(instance);
        // Nobody waits for these: keep memory bounded.
        while self.slots.len() > MAX_QUEUED {
            self.slots.pop_front();
            self.base += 1;
        }
    }

    fn take(&mut self, seq: u64) -> Option<Committed> {
        let i = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        let instance = self.slots.get_mut(i)?.take()?;
        Some(Committed { seq, instance })
    }
}

struct State {
    client: Client,
    learner: Option<Learner>,
    committed: Decided,
    deliveries: VecDeque<Delivery>,
    lagged: u64,
    /// Messages received that were not tagged under the instance's key.
    refused: u64,
    error: Option<String>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    socket: UdpSocket,
    book: Book,
    stop: AtomicBool,
}

/// Who is who: node ids as the VNFs number them.
struct Book {
    coordinators: Vec<SocketAddrV4>,
    acceptors: Vec<SocketAddrV4>,
    learners: Vec<SocketAddrV4>,
    auth: Option<DirectAuth>,
}

impl Book {
    fn node_of(&self, from: SocketAddrV4) -> Option<NodeId> {
        if let Some(i) = self.coordinators.iter().position(|a| *a == from) {
            return Some(coordinator_node(i));
        }
        if let Some(i) = self.acceptors.iter().position(|a| *a == from) {
            return Some(acceptor_node(i as u16));
        }
        self.learners
            .iter()
            .position(|a| *a == from)
            .map(learner_node)
    }

    fn addr_of(&self, n: NodeId) -> Option<SocketAddrV4> {
        (0..self.coordinators.len())
            .find(|&i| coordinator_node(i) == n)
            .map(|i| self.coordinators[i])
            .or_else(|| {
                (0..self.acceptors.len())
                    .find(|&i| acceptor_node(i as u16) == n)
                    .map(|i| self.acceptors[i])
            })
            .or_else(|| {
                (0..self.learners.len())
                    .find(|&i| learner_node(i) == n)
                    .map(|i| self.learners[i])
            })
    }

    fn send(&self, socket: &UdpSocket, t: &Transmit, buf: &mut [u8]) {
        let Ok(n) = t.msg.emit(self.session(), buf) else {
            return;
        };
        self.send_bytes(socket, t.dest, &mut buf[..n]);
    }

    /// The session messages are sent under (0 without credentials).
    fn session(&self) -> u64 {
        direct::session_of(self.auth.as_ref())
    }

    /// Everything the client has to send, written straight from it.
    fn send_client(&self, socket: &UdpSocket, client: &mut Client, buf: &mut [u8]) {
        while let Some((dest, n)) = client.poll_emit(self.session(), buf) {
            self.send_bytes(socket, dest, &mut buf[..n]);
        }
    }

    /// Tags `buf`, a whole message written under [`Book::session`], and
    /// sends it to `dest`.
    fn send_bytes(&self, socket: &UdpSocket, dest: Dest, buf: &mut [u8]) {
        direct::seal(self.auth.as_ref(), buf);
        let buf = &*buf;
        let one = |to: SocketAddrV4| {
            // Unreachable peers (ICMP errors) are what retries are for.
            let _ = socket.send_to(buf, to);
        };
        match dest {
            Dest::Node(id) => {
                if let Some(a) = self.addr_of(id) {
                    one(a);
                }
            }
            Dest::Acceptors => self.acceptors.iter().copied().for_each(one),
            Dest::Coordinators => self.coordinators.iter().copied().for_each(one),
            Dest::Learners => self
                .coordinators
                .iter()
                .chain(&self.learners)
                .copied()
                .for_each(one),
            Dest::Everyone => self
                .coordinators
                .iter()
                .chain(&self.acceptors)
                .chain(&self.learners)
                .copied()
                .for_each(one),
        }
    }
}

/// A handle on the consensus service (see the module docs).
pub struct Consensus {
    shared: Arc<Shared>,
    id: ClientId,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Consensus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consensus")
            .field("client", &self.id)
            .finish_non_exhaustive()
    }
}

fn random_u64() -> u64 {
    let mut v = [0u8; 8];
    // SAFETY: writes at most 8 bytes into `v`.
    let n = unsafe { libc::getrandom(v.as_mut_ptr().cast(), v.len(), 0) };
    if n == 8 {
        u64::from_ne_bytes(v)
    } else {
        // No getrandom: the clock and the process id still differ.
        dataplane::time::monotonic_nanos() ^ (u64::from(std::process::id()) << 40)
    }
}

const BUF: usize = 65_536;
/// Datagrams taken per lock of the state.
const DRAIN: usize = 64;

impl Consensus {
    /// Opens a handle: binds its socket and starts its thread.
    pub fn connect(cfg: ConsensusConfig) -> Result<Self, ConsensusError> {
        if cfg.coordinators.is_empty() {
            return Err(ConsensusError::Config("no coordinators"));
        }
        if cfg.learn && cfg.acceptors.is_empty() {
            return Err(ConsensusError::Config("learning needs the acceptors"));
        }
        if cfg.acceptors.len() > 64 {
            return Err(ConsensusError::Config("at most 64 acceptors"));
        }
        let socket = UdpSocket::bind(cfg.bind)?;
        // The thread drains it without blocking and sleeps in ppoll.
        socket.set_nonblocking(true)?;
        // A learning handle takes a window of announcements (and, from
        // in-memory acceptors, every acceptor's vote) of full-size
        // datagrams at once: the default buffer (about 200 KB) overflowed
        // under load whenever the thread waited for its turn on a core,
        // and each loss cost a fetch or a retry, milliseconds to hundreds
        // (1,122 of 8,732 datagrams dropped in a loaded in-memory run).
        crate::broadcast::grow_rcvbuf(&socket, 8 << 20);
        let id = ClientId(random_u64());
        let nodes = (0..cfg.coordinators.len()).map(coordinator_node).collect();
        let mut ccfg = ClientConfig::new(nodes);
        ccfg.retry = cfg.retry;
        let learner = cfg.learn.then(|| {
            Learner::new(LearnerConfig {
                acceptors: cfg.acceptors.len() as u16,
                // Values are kept by the application; not served to others.
                retain: 0,
                ..LearnerConfig::default()
            })
        });
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                client: Client::new(id, ccfg),
                learner,
                committed: Decided::default(),
                deliveries: VecDeque::new(),
                lagged: 0,
                refused: 0,
                error: None,
            }),
            changed: Condvar::new(),
            socket,
            book: Book {
                coordinators: cfg.coordinators,
                acceptors: cfg.acceptors,
                learners: cfg.learners,
                auth: cfg.auth,
            },
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("nfvinc-consensus".into())
            .spawn(move || run(&s))?;
        Ok(Consensus {
            shared,
            id,
            thread: Some(thread),
        })
    }

    /// The client id the service knows this handle by.
    pub fn client_id(&self) -> ClientId {
        self.id
    }

    /// The socket's local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.shared.socket.local_addr()
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, ConsensusError> {
        let st = self
            .shared
            .state
            .lock()
            .map_err(|_| ConsensusError::Closed)?;
        if st.error.is_some() {
            return Err(ConsensusError::Closed);
        }
        Ok(st)
    }

    /// Submits a value; returns its sequence number at once. It leaves at
    /// once when none of this handle's values awaits an answer, else with
    /// the next answer, together with what queued meanwhile (see the module
    /// docs). The handle retries it until it is known decided
    /// ([`Consensus::wait`]).
    pub fn submit(&self, value: &[u8]) -> Result<u64, ConsensusError> {
        if value.len() > 1400 {
            return Err(ConsensusError::TooLarge(value.len()));
        }
        let mut st = self.lock()?;
        let seq = st.client.submit(Time::monotonic_now(), value);
        let mut buf = [0u8; 1536];
        self.shared
            .book
            .send_client(&self.shared.socket, &mut st.client, &mut buf);
        Ok(seq)
    }

    /// Submits several values together; returns their sequence numbers
    /// (consecutive, in order). If nothing of this handle is awaiting an
    /// answer they leave at once, together (as few datagrams as their size
    /// allows); else they join the queue that the next answer releases.
    /// Nothing is submitted if a value is too large.
    pub fn submit_all<V: AsRef<[u8]>>(
        &self,
        values: &[V],
    ) -> Result<std::ops::Range<u64>, ConsensusError> {
        if let Some(v) = values.iter().find(|v| v.as_ref().len() > 1400) {
            return Err(ConsensusError::TooLarge(v.as_ref().len()));
        }
        let mut st = self.lock()?;
        let first = st.client.next_seq();
        let idle = st.client.in_flight() == 0;
        for v in values {
            // Copied into the client's own payload buffer: no allocation
            // per value.
            st.client.queue(v);
        }
        if idle {
            st.client.flush(Time::monotonic_now());
        }
        let mut buf = [0u8; 1536];
        self.shared
            .book
            .send_client(&self.shared.socket, &mut st.client, &mut buf);
        Ok(first..st.client.next_seq())
    }

    /// Waits until submission `seq` is known decided.
    pub fn wait(&self, seq: u64, timeout: Duration) -> Result<Committed, ConsensusError> {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock()?;
        loop {
            if let Some(c) = st.committed.take(seq) {
                return Ok(c);
            }
            if st.error.is_some() {
                return Err(ConsensusError::Closed);
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Err(ConsensusError::Timeout {
                    seq,
                    within: timeout,
                });
            };
            st = self
                .shared
                .changed
                .wait_timeout(st, left)
                .map_err(|_| ConsensusError::Closed)?
                .0;
        }
    }

    /// Submits a value and waits until it is decided.
    pub fn propose(&self, value: &[u8], timeout: Duration) -> Result<Committed, ConsensusError> {
        let seq = self.submit(value)?;
        self.wait(seq, timeout)
    }

    /// Submissions not yet known decided.
    pub fn outstanding(&self) -> usize {
        self.shared
            .state
            .lock()
            .map_or(0, |st| st.client.outstanding())
    }

    /// The next decided instance, in order (learning handles), waiting up
    /// to `timeout`; `None` when nothing came.
    pub fn next_delivery(&self, timeout: Duration) -> Result<Option<Delivery>, ConsensusError> {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock()?;
        if st.learner.is_none() {
            return Err(ConsensusError::Config("this handle does not learn"));
        }
        loop {
            if let Some(d) = st.deliveries.pop_front() {
                return Ok(Some(d));
            }
            if st.error.is_some() {
                return Err(ConsensusError::Closed);
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Ok(None);
            };
            st = self
                .shared
                .changed
                .wait_timeout(st, left)
                .map_err(|_| ConsensusError::Closed)?
                .0;
        }
    }

    /// Deliveries dropped because the application did not take them.
    pub fn lagged(&self) -> u64 {
        self.shared.state.lock().map_or(0, |st| st.lagged)
    }

    /// Messages received and dropped because they were not tagged under
    /// the instance's key (with [`ConsensusConfig::auth`]; 0 without).
    pub fn refused(&self) -> u64 {
        self.shared.state.lock().map_or(0, |st| st.refused)
    }
}

impl Drop for Consensus {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The receiving thread: messages in, timers, subscription keepalives.
fn run(shared: &Shared) {
    // Up to a whole UDP payload each, as `recv_from` took: only the pages
    // datagrams reach are touched.
    let mut inbox = Datagrams::with_senders(DRAIN, BUF);
    let mut out = vec![0u8; BUF];
    let mut next_keepalive = Instant::now();
    let fail = |e: io::Error| {
        if let Ok(mut st) = shared.state.lock() {
            st.error = Some(e.to_string());
        }
        shared.changed.notify_all();
    };
    let fd = shared.socket.as_raw_fd();
    let mut idle = true;
    while !shared.stop.load(Ordering::Relaxed) {
        if idle {
            // Sleep in the socket until the earliest timer, at most 10 ms
            // so that a stop is noticed.
            let wait = {
                let Ok(st) = shared.state.lock() else { return };
                let now = Time::monotonic_now();
                let mut due = st.client.poll_timeout().unwrap_or(Time::MAX);
                if let Some(l) = &st.learner {
                    due = due.min(l.poll_timeout().unwrap_or(Time::MAX));
                }
                due.saturating_duration_since(now)
                    .min(Duration::from_millis(10))
                    .max(Duration::from_micros(50))
            };
            if let Err(e) = wait_readable(&[fd], wait) {
                return fail(e);
            }
        }
        let Ok(mut st) = shared.state.lock() else {
            return;
        };
        let now = Time::monotonic_now();
        let mut woke = false;
        // Everything queued, up to a bound, under one lock: a
        // `recvmmsg` takes all that is there (up to the bound) at once.
        // Datagrams (and errors) taken, each counted as the `recv_from`
        // it used to be.
        let mut taken = 0;
        while taken < inbox.capacity() {
            let n = match inbox.recv(&shared.socket, taken) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionRefused
                    ) =>
                {
                    taken += 1;
                    continue;
                }
                Err(e) => {
                    drop(st);
                    return fail(e);
                }
            };
            for i in taken..taken + n {
                let Some(from) = inbox.sender(i) else {
                    continue;
                };
                let Some(node) = shared.book.node_of(from) else {
                    continue;
                };
                let msg = inbox.get(i);
                if !direct::genuine(shared.book.auth.as_ref(), msg) {
                    // A forged reply or vote must count for nothing.
                    st.refused += 1;
                    continue;
                }
                let to_client = NfvHeader::new_checked(msg).is_ok_and(|h| {
                    h.msg_type() == u8::from(MsgType::Reply)
                        || h.msg_type() == u8::from(MsgType::Replies)
                });
                if to_client {
                    if let Ok((_, msg)) = Message::parse_nfv(msg) {
                        st.client.handle(now, node, msg);
                    }
                } else if let Some(l) = st.learner.as_mut() {
                    // Votes by their bytes: an instance's value is built
                    // once, not once per vote. Malformed input changes
                    // nothing.
                    let _ = l.handle_nfv(now, node, msg);
                }
            }
            let asked = inbox.capacity() - taken;
            taken += n;
            if n < asked {
                // The queue ran dry during the read: asking again would
                // only find it empty.
                break;
            }
        }
        // Stopped by the bound, more may be queued: read again at once.
        // Else the queue ran dry: wait in ppoll, which returns at once
        // for what arrived meanwhile (a read that finds nothing would
        // cost the same call and a pass more).
        idle = taken < inbox.capacity();
        if st.client.poll_timeout().is_some_and(|t| t <= now) {
            st.client.handle_timeout(now);
        }
        let keepalive = Instant::now() >= next_keepalive;
        if let Some(l) = st.learner.as_mut() {
            if l.poll_timeout().is_some_and(|t| t <= now) {
                l.handle_timeout(now);
            }
            if keepalive {
                let at = l.next_instance();
                let t = Transmit {
                    dest: Dest::Everyone,
                    msg: Message::Fetch(fetch::Repr { from: at, to: at }),
                };
                shared.book.send(&shared.socket, &t, &mut out);
            }
        }
        if keepalive {
            next_keepalive = Instant::now() + KEEPALIVE;
        }
        let State {
            client,
            learner,
            committed,
            deliveries,
            lagged,
            ..
        } = &mut *st;
        while let Some(c) = client.poll_event() {
            committed.insert(c.seq, c.instance);
            woke = true;
        }
        shared.book.send_client(&shared.socket, client, &mut out);
        if let Some(l) = learner.as_mut() {
            while let Some(d) = l.poll_event() {
                if deliveries.len() >= MAX_QUEUED {
                    deliveries.pop_front();
                    *lagged += 1;
                }
                deliveries.push_back(Delivery {
                    instance: d.instance,
                    commands: d.commands,
                });
                woke = true;
            }
            while let Some(t) = l.poll_transmit() {
                shared.book.send(&shared.socket, &t, &mut out);
            }
        }
        drop(st);
        if woke {
            shared.changed.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decided_numbers_are_taken_once_and_the_oldest_forgotten() {
        let mut d = Decided::default();
        d.insert(5, 50);
        d.insert(7, 70);
        d.insert(3, 30); // out of order
        assert_eq!(
            d.take(7),
            Some(Committed {
                seq: 7,
                instance: 70
            })
        );
        assert_eq!(d.take(7), None, "taken");
        assert_eq!(d.take(6), None, "not decided");
        assert_eq!(
            d.take(3),
            Some(Committed {
                seq: 3,
                instance: 30
            })
        );
        let far = 5 + MAX_QUEUED as u64;
        d.insert(far, 1);
        assert_eq!(d.take(5), None, "forgotten past the bound");
        assert_eq!(
            d.take(far),
            Some(Committed {
                seq: far,
                instance: 1
            })
        );
        assert!(d.slots.len() <= MAX_QUEUED);
    }
}

impl ConsensusConfig {
    /// A submitting and learning handle for consensus instance `inst` (as
    /// `nfvinc serve` describes it), bound to the address the instance
    /// reaches this host at, with the channel's credentials when `inst` is
    /// the answer that created the instance (the only one that carries
    /// them).
    pub fn for_instance(inst: &crate::rest::Instance) -> Result<Self, crate::rest::Error> {
        let d = &inst.direct;
        let coordinators = d.role_addrs("coordinator")?;
        if coordinators.is_empty() {
            return Err(crate::rest::Error::Decode(format!(
                "instance {} is not a consensus instance",
                inst.id
            )));
        }
        let mut cfg = ConsensusConfig::new(coordinators, d.role_addrs("acceptor")?);
        cfg.learners = d.role_addrs("learner")?;
        cfg.bind = d.client_bind()?;
        cfg.auth = direct::of_endpoint(d)?;
        Ok(cfg)
    }
}

impl Consensus {
    /// A handle on consensus instance `inst` over the direct channel.
    pub fn connect_instance(inst: &crate::rest::Instance) -> Result<Self, ConsensusError> {
        let cfg = ConsensusConfig::for_instance(inst)
            .map_err(|_| ConsensusError::Config("the instance has no consensus endpoints"))?;
        Self::connect(cfg)
    }
}

/// Longest wait of a REST proposal that was scheduled (the instance was
/// being healed).
const REST_WAIT: Duration = Duration::from_secs(10);

/// A consensus instance used over REST (low volume): values are proposed by
/// the daemon's own client, and every decision comes on the instance's
/// event stream.
#[derive(Debug, Clone)]
pub struct RestConsensus {
    client: crate::rest::Client,
    instance: String,
}

impl RestConsensus {
    /// The consensus instance `instance_id` through `client`'s session.
    pub fn new(client: crate::rest::Client, instance_id: &str) -> Self {
        RestConsensus {
            client,
            instance: instance_id.to_owned(),
        }
    }

    /// Proposes `value` and returns once it is decided.
    pub fn propose(&self, value: &str) -> Result<Committed, crate::rest::Error> {
        let v = self.client.op_wait(
            &self.instance,
            "propose",
            serde_json::json!({ "value": value }),
            REST_WAIT,
        )?;
        Ok(Committed {
            seq: v["seq"]
                .as_u64()
                .ok_or_else(|| crate::rest::Error::Decode(format!("no seq in {v}")))?,
            instance: v["instance"].as_u64().unwrap_or(u64::MAX),
        })
    }

    /// The decisions from now on, in instance order.
    pub fn subscribe(&self) -> Result<RestDecisions, crate::rest::Error> {
        Ok(RestDecisions {
            events: self.client.events(&self.instance)?,
        })
    }
}

/// Decisions of a consensus instance, from its event stream.
#[derive(Debug)]
pub struct RestDecisions {
    events: crate::rest::EventStream,
}

impl RestDecisions {
    /// The next decided instance, waiting up to `timeout`; `None` when none
    /// came. Other events of the stream are skipped.
    pub fn next(&self, timeout: Duration) -> Result<Option<Delivery>, crate::rest::Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(e) = self.events.next_timeout(left)? else {
                return Ok(None);
            };
            let Some(d) = e.data.get("decided").filter(|_| e.kind == "vnf") else {
                continue;
            };
            let commands = d["commands"]
                .as_array()
                .map(|cs| {
                    cs.iter()
                        .map(|c| Command {
                            client: ClientId(c["client"].as_u64().unwrap_or(0)),
                            seq: c["seq"].as_u64().unwrap_or(0),
                            payload: c["value"].as_str().unwrap_or("").as_bytes().into(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            return Ok(Some(Delivery {
                instance: d["instance"].as_u64().unwrap_or(0),
                commands,
            }));
        }
    }
}
