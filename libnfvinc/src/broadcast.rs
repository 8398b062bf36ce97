//! The broadcast service from the application's side: a member of a group
//! that sends messages in any of the four modes and receives the group's
//! messages in each mode's order.
//!
//! [`Broadcast`] drives the service's own member core
//! ([`vnf_sequencer::Member`]) over one kernel UDP socket (the direct
//! channel). [`Broadcast::send`] hands the message to the core and sends it
//! to the sequencer at once, from the caller's thread; the core keeps it
//! and retransmits it until this member has delivered it itself (so a
//! message survives the loss of its frame and a change of sequencer).
//! Sends block, up to a timeout, while 64 of the member's messages are not
//! yet delivered back to it: that is the service's back-pressure. What one
//! call sends to one place leaves packed, as many messages per datagram as
//! one Ethernet frame holds ([`Broadcast::send_batch`] of a window's worth:
//! six datagrams of 64-byte messages, not 64), and the sequencer
//! takes them apart ([`vnf_sequencer::wire::messages`]).
//!
//! With credentials ([`BroadcastConfig::auth`]; [`Broadcast::join_instance`]
//! takes them from the answer that created the instance) every frame the
//! member sends is tagged under the group's key, and every frame it
//! receives, from the sequencer or from a peer, is checked before the core
//! sees it: what fails is dropped and counted ([`Broadcast::refused`]).
//! `nfvinc serve` runs its sequencers so, and then drops untagged frames.
//!
//! When the sequencer sends group frames to an IP multicast group
//! ([`BroadcastConfig::multicast`]), the handle also joins that group on a
//! second socket and receives from both.
//!
//! A background thread receives (draining up to 64 datagrams per lock,
//! then sleeping in `ppoll` until the socket is readable or the core's
//! next timer; with [`BroadcastConfig::coalesce`], a fixed sleep between
//! reads while frames come fast, nobody waits on the handle and none of
//! its own messages are in flight), runs the
//! timers (retransmissions, NACKs after a gap, epoch
//! reports), answers peers' repair requests, and queues deliveries for
//! [`Broadcast::recv`]. Deliveries are queued in order, each with its
//! global sequence number; past [`MAX_QUEUED`] undelivered ones the oldest
//! are dropped and counted ([`Broadcast::lagged`]).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dataplane::time::Time;
use vnf_sequencer::{
    Dest, Event, Member, MemberConfig, MemberCounters, Mode, ProcessId, SendError, Transmit,
};

use crate::datagrams::{Datagrams, wait_readable};
use crate::direct::{self, DirectAuth};

/// Deliveries queued for the application before the oldest are dropped.
pub const MAX_QUEUED: usize = 1 << 20;
/// Datagrams taken per lock of the state.
const DRAIN: usize = 64;
/// Largest datagram received.
const BUF: usize = 2048;
/// Longest sleep of the background thread with no timer due.
const IDLE: Duration = Duration::from_millis(10);

/// Why a broadcast call failed.
#[derive(Debug, thiserror::Error)]
pub enum BroadcastError {
    /// The socket failed.
    #[error("broadcast channel: {0}")]
    Io(#[from] io::Error),
    /// The member's send window stayed full for the whole timeout.
    #[error("send window full for {0:?}: earlier messages are not delivered yet")]
    WindowFull(Duration),
    /// The payload does not fit a frame.
    #[error("payload of {len} bytes, at most {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The largest allowed.
        max: usize,
    },
    /// The configuration cannot work.
    #[error("broadcast configuration: {0}")]
    Config(&'static str),
    /// The handle's thread stopped.
    #[error("the broadcast handle is closed")]
    Closed,
}

/// Where the group is, and who this member is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcastConfig {
    /// The member core's settings: its id, the group, window and timers.
    pub member: MemberConfig,
    /// The sequencer's address (a replacement serves on the same one).
    pub sequencer: SocketAddrV4,
    /// The sequencer's process id (`vnf-sequencer --id`).
    pub sequencer_id: ProcessId,
    /// The epoch the group is in when this member joins (1 for a new
    /// group).
    pub epoch: u32,
    /// The other members, asked for messages the sequencer no longer
    /// holds (may be empty).
    pub peers: Vec<(ProcessId, SocketAddrV4)>,
    /// Local address to bind; the sequencer must know it as this member's.
    pub bind: SocketAddrV4,
    /// The IP multicast group and port the sequencer sends group frames
    /// to (`vnf-sequencer --multicast`), joined on the interface of
    /// `bind`'s address; `None` when the sequencer sends every member its
    /// own copy.
    pub multicast: Option<SocketAddrV4>,
    /// The direct channel's credentials (the group's session and key):
    /// frames sent are tagged under the key, frames received are checked.
    /// `None` for a sequencer run without authentication.
    pub auth: Option<DirectAuth>,
    /// Interrupt moderation of the background thread: while group frames
    /// come faster than this and no application thread waits on the
    /// handle, the thread sleeps this long between reads instead of waking
    /// for every frame, and takes what gathered in one go. Zero (the
    /// default): it wakes for every frame. For many members sharing few
    /// cores (a test bed), where a wake-up per frame per member costs more
    /// than the frames; it adds at most this much latency, only under
    /// load, and never to a member whose application is blocked on it (a
    /// reader waiting for a message) or that has messages of its own in
    /// flight (their delivery is what opens its send window).
    pub coalesce: Duration,
}

impl BroadcastConfig {
    /// Member `id` of `group`, whose sequencer (id 0) is at `sequencer`,
    /// bound to `bind`, with the core's defaults.
    pub fn new(id: ProcessId, group: u64, sequencer: SocketAddrV4, bind: SocketAddrV4) -> Self {
        BroadcastConfig {
            member: MemberConfig::new(id, group),
            sequencer,
            sequencer_id: ProcessId(0),
            epoch: 1,
            peers: Vec::new(),
            bind,
            multicast: None,
            auth: None,
            coalesce: Duration::ZERO,
        }
    }
}

/// What the group delivers to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A message, in its mode's order.
    Message(Message),
    /// Messages `[first, end)` could be recovered from nobody: catch up by
    /// state transfer from a peer; delivery goes on after them.
    Lost {
        /// First global sequence number lost.
        first: u64,
        /// One past the last.
        end: u64,
    },
}

/// One delivered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its global sequence number (the same at every member).
    pub seq: u64,
    /// Who sent it.
    pub sender: ProcessId,
    /// The sender's own number for it (from 1).
    pub sender_seq: u64,
    /// The mode it was sent in.
    pub mode: Mode,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// A function the background thread hands every event to, instead of
/// queueing it (see [`Broadcast::join_with`]).
pub type Handler = Box<dyn FnMut(Event<'_>) + Send>;

struct State {
    member: Member,
    handler: Option<Handler>,
    queue: VecDeque<Received>,
    lagged: u64,
    /// Application threads waiting on `changed`.
    waiters: u32,
    /// Datagrams being filled by application threads; `None` while one of
    /// them is sending (outside the lock), which then also sends what
    /// others queued meanwhile.
    out: Option<Box<Outgoing>>,
    /// Where the core writes each message, before it joins a datagram.
    scratch: Vec<u8>,
    /// Frames received that were not tagged under the group's key.
    refused: u64,
    error: Option<String>,
}

/// Datagrams being filled for one `sendmmsg`.
struct Outgoing {
    bufs: Vec<Vec<u8>>,
    lens: [usize; DRAIN],
    to: [SocketAddrV4; DRAIN],
}

impl Outgoing {
    fn new(max_frame: usize) -> Box<Self> {
        Box::new(Outgoing {
            bufs: (0..DRAIN).map(|_| vec![0; max_frame.max(64)]).collect(),
            lens: [0; DRAIN],
            to: [SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0); DRAIN],
        })
    }

    fn send(&self, socket: &UdpSocket, n: usize) {
        send_many(socket, &self.bufs[..n], &self.lens[..n], &self.to[..n]);
    }
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    socket: UdpSocket,
    /// Bound to the multicast group, when the group has one.
    mcast: Option<UdpSocket>,
    sequencer: SocketAddrV4,
    peers: HashMap<ProcessId, SocketAddrV4>,
    auth: Option<DirectAuth>,
    coalesce: Duration,
    stop: AtomicBool,
}

impl Shared {
    /// Waits on `changed` for at most `left`, counted as a waiter so that
    /// the background thread wakes someone only when someone waits (a
    /// futex call per received burst otherwise).
    fn wait<'a>(
        &self,
        mut st: MutexGuard<'a, State>,
        left: Duration,
    ) -> Result<MutexGuard<'a, State>, BroadcastError> {
        st.waiters += 1;
        let mut st = self
            .changed
            .wait_timeout(st, left)
            .map_err(|_| BroadcastError::Closed)?
            .0;
        st.waiters -= 1;
        Ok(st)
    }

    /// Moves what the core has to send into `o`, up to [`DRAIN`]
    /// datagrams; returns how many it filled. Messages to the same place in
    /// a row share a datagram as far as it holds them (`max_frame` bytes:
    /// one Ethernet frame), so that a window of Data messages costs the
    /// kernel paths, ours and the sequencer's, a few datagrams rather than
    /// one per message; the receiver takes them apart
    /// ([`vnf_sequencer::wire::messages`]).
    fn pack(&self, member: &mut Member, scratch: &mut [u8], o: &mut Outgoing) -> usize {
        let now = Time::monotonic_now();
        let mut n = 0;
        while n < DRAIN {
            let Some(Transmit { dest, len }) = member.poll_transmit(now, scratch) else {
                break;
            };
            let Some(msg) = scratch.get_mut(..len) else {
                continue;
            };
            direct::seal(self.auth.as_ref(), msg);
            let addr = match dest {
                Dest::Process(p) => self.peers.get(&p).copied().unwrap_or(self.sequencer),
                // Members never address the group; the sequencer does.
                Dest::Group => self.sequencer,
            };
            if n > 0 && o.to[n - 1] == addr {
                let at = o.lens[n - 1];
                if let Some(room) = o.bufs[n - 1].get_mut(at..at + len) {
                    room.copy_from_slice(msg);
                    o.lens[n - 1] += len;
                    continue;
                }
            }
            let Some(room) = o.bufs[n].get_mut(..len) else {
                continue;
            };
            room.copy_from_slice(msg);
            o.to[n] = addr;
            o.lens[n] = len;
            n += 1;
        }
        n
    }

    /// Sends everything the core has to send, under the lock (the
    /// background thread, with buffers of its own).
    fn flush(&self, st: &mut State, o: &mut Outgoing) {
        loop {
            let n = self.pack(&mut st.member, &mut st.scratch, o);
            if n > 0 {
                o.send(&self.socket, n);
            }
            if n < DRAIN {
                return;
            }
        }
    }

    /// Sends everything the core has to send from an application thread:
    /// packed under the lock, sent without it, so that the background
    /// thread goes on receiving (and delivering what opens the send
    /// window) during the system call instead of waiting for the lock.
    /// When another application thread is sending, it is left to that
    /// one, which packs again before it gives the buffers back.
    fn flush_from_app<'a>(&'a self, mut st: MutexGuard<'a, State>) {
        let Some(mut o) = st.out.take() else {
            return;
        };
        loop {
            let n = {
                let State {
                    member, scratch, ..
                } = &mut *st;
                self.pack(member, scratch, &mut o)
            };
            if n == 0 {
                break;
            }
            drop(st);
            o.send(&self.socket, n);
            st = match self.state.lock() {
                Ok(st) => st,
                // Poisoned: the handle is closed for good.
                Err(_) => return,
            };
        }
        st.out = Some(o);
    }
}

/// Sends `bufs[i][..lens[i]]` to `to[i]` for every `i`, in as few
/// `sendmmsg` calls as the kernel takes. Errors (ICMP from a peer that is
/// down, a full socket buffer) drop the rest of the call's datagrams:
/// retransmissions and NACKs are what recover them.
fn send_many(socket: &UdpSocket, bufs: &[Vec<u8>], lens: &[usize], to: &[SocketAddrV4]) {
    let n = bufs.len().min(DRAIN);
    // SAFETY: all-zero bytes are valid for these plain C structs.
    let mut addrs: [libc::sockaddr_in; DRAIN] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut iov: [libc::iovec; DRAIN] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut msgs: [libc::mmsghdr; DRAIN] = unsafe { std::mem::zeroed() };
    for i in 0..n {
        addrs[i].sin_family = libc::AF_INET as libc::sa_family_t;
        addrs[i].sin_port = to[i].port().to_be();
        addrs[i].sin_addr.s_addr = u32::from_ne_bytes(to[i].ip().octets());
        iov[i].iov_base = bufs[i].as_ptr() as *mut libc::c_void;
        iov[i].iov_len = lens[i].min(bufs[i].len());
        msgs[i].msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_in).cast();
        msgs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        msgs[i].msg_hdr.msg_iov = &mut iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    let mut done = 0;
    while done < n {
        // SAFETY: `msgs[done..n]` are valid headers pointing at live
        // buffers, addresses and iovecs of this frame.
        let r = unsafe {
            libc::sendmmsg(
                socket.as_raw_fd(),
                msgs[done..].as_mut_ptr(),
                (n - done) as libc::c_uint,
                0,
            )
        };
        if r <= 0 {
            // The datagram at `done` failed: skip it, try the rest.
            done += 1;
        } else {
            done += r as usize;
        }
    }
}

/// Moves the core's events into the queue; true when there were any.
fn drain_events(st: &mut State) -> bool {
    let mut any = false;
    let State {
        member, handler, ..
    } = st;
    if let Some(h) = handler {
        while let Some(e) = member.poll_event() {
            any = true;
            h(e);
        }
        return any;
    }
    while let Some(e) = st.member.poll_event() {
        any = true;
        let r = match e {
            Event::Deliver(d) => Received::Message(Message {
                seq: d.seq,
                sender: d.sender,
                sender_seq: d.sender_seq,
                mode: d.mode,
                payload: d.payload.to_vec(),
            }),
            Event::Lost { first, end } => Received::Lost { first, end },
        };
        if st.queue.len() >= MAX_QUEUED {
            st.queue.pop_front();
            st.lagged += 1;
        }
        st.queue.push_back(r);
    }
    any
}

/// A member of a broadcast group (see the module docs).
pub struct Broadcast {
    shared: Arc<Shared>,
    id: ProcessId,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Broadcast {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broadcast")
            .field("member", &self.id)
            .finish_non_exhaustive()
    }
}

/// A socket bound to multicast `group` (shared with other members on this
/// host: `SO_REUSEADDR`), joined on the interface with address `iface`.
fn multicast_socket(group: SocketAddrV4, iface: std::net::Ipv4Addr) -> io::Result<UdpSocket> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket creation; the descriptor is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket nobody else owns.
    let socket = unsafe { UdpSocket::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    // SAFETY: a valid socket and a c_int option value of the right size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: all-zero bytes are a valid sockaddr_in.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = group.port().to_be();
    sa.sin_addr.s_addr = u32::from_ne_bytes(group.ip().octets());
    // SAFETY: a valid sockaddr_in of the length given.
    let r = unsafe {
        libc::bind(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    socket.join_multicast_v4(group.ip(), &iface)?;
    grow_rcvbuf(&socket, 8 << 20);
    Ok(socket)
}

/// Asks for a larger receive buffer: a burst of group frames must not
/// overflow the socket while the thread waits for the lock or its turn on
/// a busy core (a frame lost is a NACK and a repair, and a member that
/// falls a window behind drops everything newer until repaired). Past
/// `net.core.rmem_max` when the process may (`SO_RCVBUFFORCE`, with
/// `CAP_NET_ADMIN`), else up to it. Best effort. The consensus handle
/// uses it too.
pub(crate) fn grow_rcvbuf(socket: &UdpSocket, bytes: libc::c_int) {
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: a valid socket and a c_int option value of the right
        // size.
        let r = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&bytes as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            return;
        }
    }
}

impl Broadcast {
    /// Joins the group: binds the socket and starts the thread; deliveries
    /// are queued for [`Broadcast::recv`].
    pub fn join(cfg: BroadcastConfig) -> Result<Self, BroadcastError> {
        Self::start(cfg, None)
    }

    /// Joins the group with every delivery (and loss) handed to `handler`
    /// on the background thread, payload lent from the member's ring:
    /// nothing is copied or queued, for applications that keep up with the
    /// group at full rate. [`Broadcast::recv`] then stays empty.
    pub fn join_with(
        cfg: BroadcastConfig,
        handler: impl FnMut(Event<'_>) + Send + 'static,
    ) -> Result<Self, BroadcastError> {
        Self::start(cfg, Some(Box::new(handler)))
    }

    fn start(cfg: BroadcastConfig, handler: Option<Handler>) -> Result<Self, BroadcastError> {
        if cfg.sequencer.ip().is_unspecified() {
            return Err(BroadcastError::Config("no sequencer address"));
        }
        if cfg.member.id == cfg.sequencer_id {
            return Err(BroadcastError::Config("the member's id is the sequencer's"));
        }
        let socket = UdpSocket::bind(cfg.bind)?;
        socket.set_nonblocking(true)?;
        grow_rcvbuf(&socket, 8 << 20);
        let mcast = match cfg.multicast {
            Some(g) if !g.ip().is_multicast() => {
                return Err(BroadcastError::Config("the group address is not multicast"));
            }
            Some(g) => Some(multicast_socket(g, *cfg.bind.ip())?),
            None => None,
        };
        let peer_ids: Vec<ProcessId> = cfg.peers.iter().map(|p| p.0).collect();
        let member = Member::new(cfg.member, cfg.sequencer_id, cfg.epoch, &peer_ids);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                member,
                handler,
                queue: VecDeque::new(),
                lagged: 0,
                waiters: 0,
                out: Some(Outgoing::new(cfg.member.max_frame)),
                scratch: vec![0; cfg.member.max_frame.max(64)],
                refused: 0,
                error: None,
            }),
            changed: Condvar::new(),
            socket,
            mcast,
            sequencer: cfg.sequencer,
            peers: cfg.peers.iter().copied().collect(),
            auth: cfg.auth,
            coalesce: cfg.coalesce,
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("nfvinc-broadcast".into())
            .spawn(move || run(&s))?;
        Ok(Broadcast {
            shared,
            id: cfg.member.id,
            thread: Some(thread),
        })
    }

    /// This member's id.
    pub fn id(&self) -> ProcessId {
        self.id
    }

    /// The socket's local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.shared.socket.local_addr()
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, BroadcastError> {
        let st = self
            .shared
            .state
            .lock()
            .map_err(|_| BroadcastError::Closed)?;
        if st.error.is_some() {
            return Err(BroadcastError::Closed);
        }
        Ok(st)
    }

    /// Broadcasts `payload` in `mode`, waiting up to `timeout` while the
    /// send window is full; returns the message's sender sequence number.
    pub fn send(
        &self,
        mode: Mode,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<u64, BroadcastError> {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock()?;
        loop {
            match st.member.send(mode, payload) {
                Ok(q) => {
                    self.shared.flush_from_app(st);
                    return Ok(q);
                }
                Err(SendError::TooLarge { len, max }) => {
                    return Err(BroadcastError::TooLarge { len, max });
                }
                Err(SendError::WindowFull) => {
                    let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                        return Err(BroadcastError::WindowFull(timeout));
                    };
                    st = self.shared.wait(st, left)?;
                    if st.error.is_some() {
                        return Err(BroadcastError::Closed);
                    }
                }
            }
        }
    }

    /// Broadcasts as many of `payloads` in `mode`, in order, as the send
    /// window has room for, waiting up to `timeout` for room for the
    /// first; all of them leave in one system call. Returns how many were
    /// sent (a prefix of `payloads`; send the rest again).
    pub fn send_batch<P: AsRef<[u8]>>(
        &self,
        mode: Mode,
        payloads: &[P],
        timeout: Duration,
    ) -> Result<usize, BroadcastError> {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock()?;
        loop {
            let mut n = 0;
            for p in payloads {
                match st.member.send(mode, p.as_ref()) {
                    Ok(_) => n += 1,
                    Err(SendError::WindowFull) => break,
                    Err(SendError::TooLarge { len, max }) if n == 0 => {
                        return Err(BroadcastError::TooLarge { len, max });
                    }
                    Err(SendError::TooLarge { .. }) => break,
                }
            }
            if n > 0 || payloads.is_empty() {
                self.shared.flush_from_app(st);
                return Ok(n);
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Err(BroadcastError::WindowFull(timeout));
            };
            st = self.shared.wait(st, left)?;
            if st.error.is_some() {
                return Err(BroadcastError::Closed);
            }
        }
    }

    /// Waits, up to `timeout`, until the send window has room, so that a
    /// send right after does not wait (as long as no other thread sends on
    /// this handle meanwhile). For senders that stamp a time into their
    /// messages, or build them, only once they can go.
    pub fn wait_for_room(&self, timeout: Duration) -> Result<(), BroadcastError> {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock()?;
        loop {
            if st.error.is_some() {
                return Err(BroadcastError::Closed);
            }
            if st.member.can_send() {
                return Ok(());
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Err(BroadcastError::WindowFull(timeout));
            };
            st = self.shared.wait(st, left)?;
        }
    }

    /// The next delivery, waiting up to `timeout`; `None` when none came.
    pub fn recv(&self, timeout: Duration) -> Result<Option<Received>, BroadcastError> {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock()?;
        loop {
            if let Some(r) = st.queue.pop_front() {
                return Ok(Some(r));
            }
            if st.error.is_some() {
                return Err(BroadcastError::Closed);
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Ok(None);
            };
            st = self.shared.wait(st, left)?;
        }
    }

    /// Every delivery queued now, without waiting (appended to `out`);
    /// returns how many.
    pub fn recv_all(&self, out: &mut Vec<Received>) -> Result<usize, BroadcastError> {
        let mut st = self.lock()?;
        let n = st.queue.len();
        out.extend(st.queue.drain(..));
        Ok(n)
    }

    /// Own messages not yet delivered back to this member.
    pub fn outstanding(&self) -> usize {
        self.shared
            .state
            .lock()
            .map_or(0, |st| st.member.outstanding())
    }

    /// Every global sequence number below this is delivered.
    pub fn next_seq(&self) -> u64 {
        self.shared
            .state
            .lock()
            .map_or(0, |st| st.member.next_seq())
    }

    /// The epoch the member is in.
    pub fn epoch(&self) -> u32 {
        self.shared.state.lock().map_or(0, |st| st.member.epoch())
    }

    /// The member core's counters.
    pub fn counters(&self) -> MemberCounters {
        self.shared
            .state
            .lock()
            .map_or(MemberCounters::default(), |st| st.member.counters())
    }

    /// Deliveries dropped because the application did not take them.
    pub fn lagged(&self) -> u64 {
        self.shared.state.lock().map_or(0, |st| st.lagged)
    }

    /// Frames received and dropped because they were not tagged under the
    /// group's key (with [`BroadcastConfig::auth`]; 0 without).
    pub fn refused(&self) -> u64 {
        self.shared.state.lock().map_or(0, |st| st.refused)
    }

    /// The largest payload [`Broadcast::send`] takes.
    pub fn max_payload(&self) -> usize {
        self.shared
            .state
            .lock()
            .map_or(0, |st| st.member.max_payload())
    }
}

impl Drop for Broadcast {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The background thread: receive, run timers, send, queue deliveries.
fn run(shared: &Shared) {
    let mut inbox = Datagrams::new(DRAIN, BUF);
    let mut out = match shared.state.lock() {
        Ok(st) => Outgoing::new(st.scratch.len()),
        Err(_) => return,
    };
    let mut fds = vec![shared.socket.as_raw_fd()];
    fds.extend(shared.mcast.as_ref().map(|m| m.as_raw_fd()));
    // Interrupt moderation (`BroadcastConfig::coalesce`): when the last
    // two reads that found datagrams came less than two periods apart,
    // the next wait is a plain sleep of one period.
    let mut last_data: Option<Instant> = None;
    let mut linger = false;
    while !shared.stop.load(Ordering::Relaxed) {
        let wait = {
            let Ok(st) = shared.state.lock() else { return };
            st.member.poll_timeout().map_or(IDLE, |t| {
                Duration::from_nanos(
                    t.as_nanos()
                        .saturating_sub(Time::monotonic_now().as_nanos()),
                )
                .min(IDLE)
            })
        };
        if linger {
            std::thread::sleep(wait.min(shared.coalesce));
        } else if !wait.is_zero()
            && let Err(e) = wait_readable(&fds, wait)
        {
            if let Ok(mut st) = shared.state.lock() {
                st.error = Some(e.to_string());
            }
            shared.changed.notify_all();
            return;
        }
        // Errors (nothing there, an ICMP error from a peer that is down)
        // read as nothing.
        let mut n = inbox.recv(&shared.socket, 0).unwrap_or(0);
        if let Some(m) = &shared.mcast {
            n += inbox.recv(m, n).unwrap_or(0);
        }
        let Ok(mut st) = shared.state.lock() else {
            return;
        };
        let now = Time::monotonic_now();
        for i in 0..n {
            // A peer packs what it sends one place; each message is
            // checked on its own.
            for m in vnf_sequencer::wire::messages(inbox.get(i)) {
                if !direct::genuine(shared.auth.as_ref(), m) {
                    // Not the group's: it must not count as a stamp, a
                    // repair or a NACK to answer.
                    st.refused += 1;
                    continue;
                }
                // Malformed messages change nothing.
                let _ = st.member.handle(now, m);
            }
        }
        if st.member.poll_timeout().is_some_and(|t| t <= now) {
            st.member.handle_timeout(now);
        }
        let delivered = drain_events(&mut st);
        shared.flush(&mut st, &mut out);
        let waiting = st.waiters > 0;
        // Own messages in flight: their delivery is what opens the send
        // window, so they are read at once.
        let sending = !shared.coalesce.is_zero() && st.member.outstanding() > 0;
        drop(st);
        if waiting && (delivered || n > 0) {
            shared.changed.notify_all();
        }
        linger = false;
        if n > 0 && !shared.coalesce.is_zero() {
            let t = Instant::now();
            // A full read leaves more behind: read again at once. Someone
            // waiting on the handle, or for its own messages, is served at
            // once too.
            linger = n < DRAIN
                && !waiting
                && !sending
                && last_data.is_some_and(|l| t.duration_since(l) < 2 * shared.coalesce);
            last_data = Some(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::auth::{AuthPolicy, SessionKey, Sessions};
    use std::net::Ipv4Addr;
    use vnf_sequencer::{Sequencer, SequencerConfig};

    const GROUP: u64 = 9;
    const SEQ: ProcessId = ProcessId(100);

    /// A sequencer core on a loopback socket, sending group frames to every
    /// member address in turn, until `stop`; with `key`, it takes only
    /// frames tagged under it and tags its own, as `vnf-sequencer --auth
    /// required` does.
    fn sequencer(
        socket: UdpSocket,
        members: Vec<(ProcessId, SocketAddr)>,
        stop: Arc<AtomicBool>,
        key: Option<SessionKey>,
    ) -> JoinHandle<()> {
        std::thread::spawn(move || {
            let mut sessions = Sessions::new(match key {
                Some(_) => AuthPolicy::Required,
                None => AuthPolicy::Off,
            });
            if let Some(k) = key {
                sessions.insert(GROUP, k);
            }
            let ids: Vec<ProcessId> = members.iter().map(|m| m.0).collect();
            let mut s = Sequencer::new(
                SequencerConfig::new(SEQ, GROUP),
                &ids,
                Time::monotonic_now(),
            );
            socket
                .set_read_timeout(Some(Duration::from_millis(1)))
                .unwrap();
            let (mut buf, mut out) = (vec![0u8; 2048], vec![0u8; 2048]);
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, _)) = socket.recv_from(&mut buf) {
                    // Members pack their messages, as the VNF expects.
                    for m in vnf_sequencer::wire::messages(&buf[..n]) {
                        if sessions.admit(m).is_ok() {
                            let _ = s.handle(Time::monotonic_now(), m);
                        }
                    }
                }
                let now = Time::monotonic_now();
                if s.poll_timeout().is_some_and(|t| t <= now) {
                    s.handle_timeout(now);
                }
                while let Some(t) = s.poll_transmit(now, &mut out) {
                    sessions.sign(&mut out[..t.len]);
                    for (id, addr) in &members {
                        if t.dest == Dest::Group || t.dest == Dest::Process(*id) {
                            let _ = socket.send_to(&out[..t.len], addr);
                        }
                    }
                }
            }
        })
    }

    #[test]
    fn two_members_deliver_the_same_sequence_of_everything_sent() {
        let (seq_socket, seq_addr) = sequencer_socket();
        let join = |id: u64| {
            let mut cfg = member_config(id, seq_addr);
            // The second member moderates its wake-ups: same deliveries.
            if id == 2 {
                cfg.coalesce = Duration::from_millis(1);
            }
            Broadcast::join(cfg).unwrap()
        };
        let (a, b) = (join(1), join(2));
        let members = vec![
            (ProcessId(1), a.local_addr().unwrap()),
            (ProcessId(2), b.local_addr().unwrap()),
        ];
        let stop = Arc::new(AtomicBool::new(false));
        let seq = sequencer(seq_socket, members, stop.clone(), None);
        const N: u64 = 300;
        let t = Duration::from_secs(5);
        for i in 0..N {
            a.send(Mode::Atomic, &i.to_be_bytes(), t).unwrap();
            let batch = [i.to_be_bytes(); 1];
            assert_eq!(b.send_batch(Mode::Fifo, &batch, t).unwrap(), 1);
        }
        let mut logs = Vec::new();
        for m in [&a, &b] {
            let mut log = Vec::new();
            while (log.len() as u64) < 2 * N {
                match m.recv(t).unwrap() {
                    Some(Received::Message(d)) => {
                        assert_eq!(d.payload, (d.sender_seq - 1).to_be_bytes());
                        log.push((d.seq, d.sender, d.sender_seq));
                    }
                    other => panic!("member {:?}: {other:?}", m.id()),
                }
            }
            logs.push(log);
        }
        stop.store(true, Ordering::Relaxed);
        seq.join().unwrap();
        assert_eq!(logs[0], logs[1], "the members disagree");
        for s in [ProcessId(1), ProcessId(2)] {
            let mut qs: Vec<u64> = logs[0].iter().filter(|e| e.1 == s).map(|e| e.2).collect();
            // Member 1 sends atomic broadcasts: every one once, in an order
            // that a retransmission may change (a datagram lost on a
            // loaded machine); member 2's FIFO ones keep their send order.
            if s == ProcessId(1) {
                qs.sort_unstable();
            }
            assert_eq!(qs, (1..=N).collect::<Vec<_>>(), "sender {s:?}'s messages");
        }
        assert_eq!(a.outstanding(), 0);
        assert!(matches!(
            a.send(Mode::Atomic, &[0u8; 4000], t),
            Err(BroadcastError::TooLarge { .. })
        ));
    }

    /// Member 1 of a group whose sequencer is a plain socket that answers
    /// nothing: what the member sends can be read off it.
    fn member_of_a_silent_sequencer() -> (UdpSocket, Broadcast) {
        let (seq, seq_addr) = sequencer_socket();
        (seq, Broadcast::join(member_config(1, seq_addr)).unwrap())
    }

    /// A socket on loopback standing for the sequencer, and its address.
    fn sequencer_socket() -> (UdpSocket, SocketAddrV4) {
        let seq = UdpSocket::bind("127.0.0.1:0").unwrap();
        let SocketAddr::V4(addr) = seq.local_addr().unwrap() else {
            unreachable!("bound to IPv4")
        };
        (seq, addr)
    }

    /// Member `id` of the test group, on loopback, behind `seq`.
    fn member_config(id: u64, seq: SocketAddrV4) -> BroadcastConfig {
        let mut cfg = BroadcastConfig::new(
            ProcessId(id),
            GROUP,
            seq,
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
        );
        cfg.sequencer_id = SEQ;
        cfg
    }

    #[test]
    fn a_batch_of_sends_leaves_packed_in_few_datagrams() {
        let (seq, a) = member_of_a_silent_sequencer();
        let batch = vec![[7u8; 64]; 40];
        assert_eq!(
            a.send_batch(Mode::Atomic, &batch, Duration::from_secs(5))
                .unwrap(),
            40
        );
        seq.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = vec![0u8; 65536];
        let (mut datagrams, mut qs) = (0, Vec::new());
        while qs.len() < 40 {
            let (n, _) = seq.recv_from(&mut buf).expect("the member's Data");
            assert!(n <= 1472, "one Ethernet frame at most: {n}");
            datagrams += 1;
            for m in vnf_sequencer::wire::messages(&buf[..n]) {
                match vnf_sequencer::wire::Message::parse_nfv(m) {
                    Ok((_, vnf_sequencer::wire::Message::Data(r, p))) => {
                        assert_eq!(p, [7u8; 64]);
                        qs.push(r.sender_seq);
                    }
                    other => panic!("not a Data message: {other:?}"),
                }
            }
        }
        assert_eq!(qs, (1..=40).collect::<Vec<u64>>(), "in order, once");
        // 128 bytes a message (NFVinc and Data headers, payload): 11 per
        // datagram.
        assert!(datagrams <= 4, "{datagrams} datagrams for 40 messages");
    }

    #[test]
    fn waiting_for_room_returns_at_once_until_the_window_is_full() {
        let (_seq, a) = member_of_a_silent_sequencer();
        let short = Duration::from_millis(50);
        a.wait_for_room(short).unwrap();
        // A silent sequencer stamps nothing: a window's worth fills it.
        let batch = vec![[7u8; 16]; 64];
        assert_eq!(a.send_batch(Mode::Atomic, &batch, short).unwrap(), 64);
        let t = Instant::now();
        assert!(matches!(
            a.wait_for_room(short),
            Err(BroadcastError::WindowFull(_))
        ));
        assert!(t.elapsed() >= short);
        assert!(matches!(
            a.send(Mode::Atomic, &[1], Duration::ZERO),
            Err(BroadcastError::WindowFull(_))
        ));
    }

    #[test]
    fn a_handle_whose_thread_died_says_closed_everywhere() {
        let (_seq, a) = member_of_a_silent_sequencer();
        // What the background thread records as it gives up (its socket
        // wait failed), without waiting for that to happen.
        a.shared.state.lock().unwrap().error = Some("socket wait failed".into());
        let short = Duration::from_millis(50);
        assert!(matches!(
            a.wait_for_room(short),
            Err(BroadcastError::Closed)
        ));
        assert!(matches!(
            a.send(Mode::Atomic, &[1], short),
            Err(BroadcastError::Closed)
        ));
        assert!(matches!(a.recv(short), Err(BroadcastError::Closed)));
    }

    #[test]
    fn concurrent_senders_on_one_handle_strand_nothing() {
        let (seq, a) = member_of_a_silent_sequencer();
        let a = Arc::new(a);
        // Four threads, 15 messages each, one at a time: 60 of the 64 the
        // window holds (nothing is delivered back here).
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let a = a.clone();
                std::thread::spawn(move || {
                    for _ in 0..15 {
                        a.send(Mode::Atomic, &[t; 32], Duration::from_secs(5))
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        seq.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = vec![0u8; 65536];
        // A set: on a slow machine the core may retransmit (after 4 ms).
        let mut qs = std::collections::BTreeSet::new();
        while qs.len() < 60 {
            let (n, _) = seq.recv_from(&mut buf).expect("every message sent");
            for m in vnf_sequencer::wire::messages(&buf[..n]) {
                if let Ok((_, vnf_sequencer::wire::Message::Data(r, _))) =
                    vnf_sequencer::wire::Message::parse_nfv(m)
                {
                    qs.insert(r.sender_seq);
                }
            }
        }
        assert_eq!(qs, (1..=60).collect(), "every message, and no other");
    }

    /// A group frame stamping `payload` as the group's first message, as
    /// a sequencer other than the group's would send it.
    fn rogue_batch(payload: &[u8]) -> Vec<u8> {
        let now = Time::monotonic_now();
        let mut m = Member::new(MemberConfig::new(ProcessId(7), GROUP), SEQ, 1, &[]);
        m.send(Mode::Atomic, payload).unwrap();
        let mut data = vec![0u8; 2048];
        let t = m.poll_transmit(now, &mut data).unwrap();
        let mut s = Sequencer::new(SequencerConfig::new(SEQ, GROUP), &[ProcessId(2)], now);
        s.handle(now, &data[..t.len]).unwrap();
        let mut out = vec![0u8; 2048];
        let t = s.poll_transmit(now, &mut out).unwrap();
        out.truncate(t.len);
        out
    }

    #[test]
    fn with_credentials_members_tag_what_they_send_and_drop_what_is_not_tagged() {
        let key = SessionKey::from_bytes([4; 32]);
        let auth = DirectAuth {
            session: GROUP,
            key: key.clone(),
        };
        let (seq_socket, seq_addr) = sequencer_socket();
        let join = |id: u64| {
            let mut cfg = member_config(id, seq_addr);
            cfg.auth = Some(auth.clone());
            Broadcast::join(cfg).unwrap()
        };
        let (a, b) = (join(1), join(2));
        // Frames stamping a message as the group's first, untagged and
        // tagged under another key, straight to member 2: dropped.
        let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = b.local_addr().unwrap();
        attacker.send_to(&rogue_batch(b"forged"), to).unwrap();
        let mut forged = rogue_batch(b"forged");
        SessionKey::from_bytes([5; 32]).sign(&mut forged).unwrap();
        attacker.send_to(&forged, to).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while b.refused() < 2 {
            assert!(Instant::now() < deadline, "refused {}", b.refused());
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(b.recv(Duration::from_millis(50)).unwrap(), None);

        // The group's sequencer takes only tagged frames: members' sends
        // go through, and its tagged batches are delivered.
        let members = vec![
            (ProcessId(1), a.local_addr().unwrap()),
            (ProcessId(2), b.local_addr().unwrap()),
        ];
        let stop = Arc::new(AtomicBool::new(false));
        let seq = sequencer(seq_socket, members, stop.clone(), Some(key));
        let t = Duration::from_secs(5);
        a.send(Mode::Atomic, b"hello", t).unwrap();
        for m in [&a, &b] {
            match m.recv(t).unwrap() {
                Some(Received::Message(d)) => {
                    assert_eq!((d.seq, &d.payload[..]), (1, &b"hello"[..]));
                }
                other => panic!("member {:?}: {other:?}", m.id()),
            }
        }
        stop.store(true, Ordering::Relaxed);
        seq.join().unwrap();
        assert_eq!(a.refused(), 0);
        assert_eq!(b.refused(), 2);
    }
}

/// Why joining or using a sequencer instance of `nfvinc serve` failed.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// The REST call failed.
    #[error(transparent)]
    Rest(#[from] crate::rest::Error),
    /// The direct channel failed.
    #[error(transparent)]
    Broadcast(#[from] BroadcastError),
    /// The socket's address could not be read.
    #[error("broadcast channel: {0}")]
    Io(#[from] io::Error),
}

impl BroadcastConfig {
    /// Member `id` of the group of sequencer instance `inst` (as
    /// `nfvinc serve` describes it), bound to the address the instance
    /// reaches this host at, in epoch 1 ([`Broadcast::join_instance`] reads
    /// the group's current one), with the channel's credentials when `inst`
    /// is the answer that created the instance (the only one that carries
    /// them).
    pub fn for_instance(
        inst: &crate::rest::Instance,
        id: ProcessId,
    ) -> Result<Self, crate::rest::Error> {
        let d = &inst.direct;
        let group = d.group.ok_or_else(|| {
            crate::rest::Error::Decode(format!("instance {} is not a sequencer", inst.id))
        })?;
        let sequencer = d
            .role_addrs("sequencer")?
            .first()
            .copied()
            .ok_or_else(|| crate::rest::Error::Decode("no sequencer endpoint".into()))?;
        let mut cfg = BroadcastConfig::new(id, group, sequencer, d.client_bind()?);
        cfg.auth = direct::of_endpoint(d)?;
        Ok(cfg)
    }
}

/// Longest wait for a membership change that was scheduled (the instance
/// was being healed).
const MEMBERSHIP_WAIT: Duration = Duration::from_secs(10);

impl Broadcast {
    /// Joins the group of sequencer instance `inst` as member `id` over the
    /// direct channel: binds a socket, reads the group's epoch and has the
    /// sequencer add this member's address (the `add` operation). Leave
    /// with [`Broadcast::leave_instance`], or the member stays in the
    /// group (and a replacement sequencer waits for it).
    pub fn join_instance(
        client: &crate::rest::Client,
        inst: &crate::rest::Instance,
        id: ProcessId,
    ) -> Result<Self, InstanceError> {
        let mut cfg = BroadcastConfig::for_instance(inst, id)?;
        let epoch = client.op_wait(&inst.id, "epoch", serde_json::json!({}), MEMBERSHIP_WAIT)?;
        cfg.epoch = epoch["epoch"]
            .as_u64()
            .and_then(|e| u32::try_from(e).ok())
            .unwrap_or(1);
        let b = Broadcast::join(cfg)?;
        let addr = b.local_addr()?;
        client.op_wait(
            &inst.id,
            "add",
            serde_json::json!({"process": id.0, "addr": addr.to_string()}),
            MEMBERSHIP_WAIT,
        )?;
        Ok(b)
    }

    /// Leaves the group of instance `instance_id`: the socket closes and
    /// the sequencer forgets this member.
    pub fn leave_instance(
        self,
        client: &crate::rest::Client,
        instance_id: &str,
    ) -> Result<(), crate::rest::Error> {
        let id = self.id;
        drop(self);
        client
            .op_wait(
                instance_id,
                "remove",
                serde_json::json!({"process": id.0}),
                MEMBERSHIP_WAIT,
            )
            .map(drop)
    }
}

/// A mode's name in the REST API.
pub fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Reliable => "reliable",
        Mode::Atomic => "atomic",
        Mode::Fifo => "fifo",
        Mode::Causal => "causal",
    }
}

fn mode_of(name: &str) -> Option<Mode> {
    Some(match name {
        "reliable" => Mode::Reliable,
        "atomic" => Mode::Atomic,
        "fifo" => Mode::Fifo,
        "causal" => Mode::Causal,
        _ => return None,
    })
}

/// A sequencer instance used over REST (low volume): messages are sent by
/// the daemon's own member of the group, and every delivery comes on the
/// instance's event stream.
#[derive(Debug, Clone)]
pub struct RestBroadcast {
    client: crate::rest::Client,
    instance: String,
}

impl RestBroadcast {
    /// The sequencer instance `instance_id` through `client`'s session.
    pub fn new(client: crate::rest::Client, instance_id: &str) -> Self {
        RestBroadcast {
            client,
            instance: instance_id.to_owned(),
        }
    }

    /// Broadcasts `message` in `mode`; returns its sender sequence number
    /// (the daemon's member is the sender). While the instance is being
    /// healed the request is logged and replayed, and this waits for it.
    pub fn send(&self, mode: Mode, message: &str) -> Result<u64, crate::rest::Error> {
        let v = self.client.op_wait(
            &self.instance,
            "broadcast",
            serde_json::json!({"message": message, "mode": mode_name(mode)}),
            MEMBERSHIP_WAIT,
        )?;
        v["sender_seq"]
            .as_u64()
            .ok_or_else(|| crate::rest::Error::Decode(format!("no sender_seq in {v}")))
    }

    /// The group's deliveries from now on, in order.
    pub fn subscribe(&self) -> Result<RestDeliveries, crate::rest::Error> {
        Ok(RestDeliveries {
            events: self.client.events(&self.instance)?,
        })
    }
}

/// Deliveries of a sequencer instance's group, from its event stream.
#[derive(Debug)]
pub struct RestDeliveries {
    events: crate::rest::EventStream,
}

impl RestDeliveries {
    /// The next delivery (or loss), waiting up to `timeout`; `None` when
    /// none came. Other events of the stream are skipped.
    pub fn next(&self, timeout: Duration) -> Result<Option<Received>, crate::rest::Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(e) = self.events.next_timeout(left)? else {
                return Ok(None);
            };
            if e.kind != "vnf" {
                continue;
            }
            if let Some(d) = e.data.get("delivered") {
                return Ok(Some(Received::Message(Message {
                    seq: d["seq"].as_u64().unwrap_or(0),
                    sender: ProcessId(d["sender"].as_u64().unwrap_or(0)),
                    sender_seq: d["sender_seq"].as_u64().unwrap_or(0),
                    mode: d["mode"].as_str().and_then(mode_of).unwrap_or(Mode::Atomic),
                    payload: d["message"].as_str().unwrap_or("").as_bytes().to_vec(),
                })));
            }
            if let Some(l) = e.data.get("lost") {
                return Ok(Some(Received::Lost {
                    first: l["first"].as_u64().unwrap_or(0),
                    end: l["end"].as_u64().unwrap_or(0),
                }));
            }
        }
    }
}
