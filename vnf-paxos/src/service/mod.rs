//! The consensus roles as network functions: the thin shell that runs a
//! [`Coordinator`], an [`Acceptor`] or a [`Learner`] on a dataplane worker.
//!
//! [`PaxosService`] implements [`dataplane::runtime::Vnf`]. A received
//! burst is parsed in place and each message handed to the core; the
//! burst's frames are then dropped (nothing is answered by rewriting: every
//! answer goes to an address of the core's choosing). An acceptor with a
//! write-ahead log writes what the burst changed as one batch and syncs
//! once (group commit) before its answers are released. What the core
//! wants sent is written by [`Vnf::emit`] straight into fresh frames: each
//! message is serialised once into a scratch buffer and copied into one
//! frame per destination ([`Dest`] fans out through the [`Peers`] address
//! book; the payload's checksum is summed once, each copy adds only its
//! headers), so the shell allocates nothing per packet. Timers are the core's
//! `poll_timeout`, turned into the worker's wake-up; the control socket is
//! answered on a five-millisecond housekeeping tick.
//!
//! Control operations (JSON lines, see [`dataplane::control`]):
//!
//! | op | answer |
//! | --- | --- |
//! | `health` | `{"status": "ok", "role": …}` |
//! | `counters` | the core's and the shell's counters |
//! | `membership` | configured members, acceptor identities, subscribed guests |
//! | `leader` | the leader this process believes in, the highest ballot it knows, whether it leads |
//! | `deliveries` | learners: `{"from": k, "max": n}` → the `(instance, client, seq)` of delivered commands `k..k+n`, with totals |
//! | `session.add`, `session.remove` | with a session table: a session's key added or forgotten ([`dataplane::auth`]) |
//!
//! # Authentication
//!
//! Under `--auth required` (how `nfvinc serve` runs every role) each
//! received message must carry a valid tag ([`dataplane::auth`]) under the
//! key of the session its header names. It is checked in place, before
//! anything else looks at it: the core, the acceptor's byte path for
//! Accepts, and the address book (a refused message makes no guest and
//! no subscription, so nothing is ever sent to its sender). Refusals are
//! counted (`counters` → `auth`) and dropped, never answered. Every
//! message a process sends carries the instance's session
//! ([`PaxosService::with_sessions`], `--session`) and is tagged under its
//! key, once in the scratch buffer before it is copied to its
//! destinations.
//!
//! One key per instance, for the traffic between its own processes as for
//! its clients'. Internal traffic cannot be left unauthenticated on the
//! grounds that it stays inside the tenant's namespace: the namespace is
//! reachable from the host, where every tenant's link ends, and a frame
//! read by AF_XDP has not been through the kernel's source-address checks,
//! so a forged Promise or vote from outside would count. And clients talk
//! to every role, not only to the coordinator (fetches and subscriptions
//! go to acceptors and learners, which send them votes and decisions),
//! while one vote goes to learners, coordinators and subscribed clients
//! alike: a separate key per destination would tag each copy again. The
//! instance belongs to one tenant, and the control plane hands its key
//! only to the tenant that created it.

mod peers;

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use dataplane::auth::Sessions;
use dataplane::control::{Inbox, Request};
use dataplane::io::Batch;
use dataplane::runtime::{Emit, Vnf};
use dataplane::wire::nfvinc::{HEADER_LEN, NfvHeader};
use dataplane::wire::{UdpFrame, build_udp_frame};
use serde_json::{Value as Json, json};

// Our MAC and next hops for raw frames: shared with every VNF in dataplane.
pub use dataplane::neigh::{arp_entry, iface_mac, next_hop, resolve};
pub use peers::{
    MAX_GUESTS, Members, Peers, SUBSCRIPTION, acceptor_node, coordinator_node, learner_node,
};

use crate::wal::Wal;
use crate::wire::{Message, MsgError, MsgType};
use crate::{Acceptor, Ballot, Coordinator, Dest, Learner, NodeId, Time};

/// The default UDP port of every consensus process.
pub const DEFAULT_PORT: u16 = 7400;
/// How often the control socket is read. Not much more often: the worker
/// sleeps in its socket until its next wake-up, and a wake-up always less
/// than a millisecond away would keep it polling (several roles sharing a
/// core then take turns at spinning, and packets wait for the scheduler).
pub const HOUSEKEEPING: Duration = Duration::from_millis(5);
/// Delivered commands a learner keeps for the `deliveries` operation.
pub const DELIVERY_LOG: usize = 1 << 21;
/// The largest NFVinc message the shell writes (a UDP payload).
const MAX_MESSAGE: usize = 65_507;

pub use dataplane::time::Clock;

/// An acceptor and, when durable, its write-ahead log.
#[derive(Debug)]
pub struct AcceptorRole {
    acceptor: Acceptor,
    wal: Option<Wal>,
    wal_failed: bool,
}

impl AcceptorRole {
    /// An acceptor; `wal` must be given for [`crate::Durability::Wal`].
    pub fn new(acceptor: Acceptor, wal: Option<Wal>) -> Self {
        AcceptorRole {
            acceptor,
            wal,
            wal_failed: false,
        }
    }
}

/// A learner and the record of what it delivered.
#[derive(Debug)]
pub struct LearnerRole {
    learner: Learner,
    /// `(instance, client, seq)` of each delivered command, in order.
    log: Vec<(u64, u64, u64)>,
    instances: u64,
    commands: u64,
    noops: u64,
    /// A digest over every delivered `(instance, client, seq, payload)`,
    /// in order ([`digest_word`], eight bytes at a time).
    digest: u64,
}

impl LearnerRole {
    /// A learner that has delivered nothing.
    pub fn new(learner: Learner) -> Self {
        LearnerRole {
            learner,
            log: Vec::new(),
            instances: 0,
            commands: 0,
            noops: 0,
            digest: 0xcbf2_9ce4_8422_2325,
        }
    }

    fn drain(&mut self) {
        while let Some(d) = self.learner.poll_event() {
            self.instances += 1;
            if d.commands.is_empty() {
                self.noops += 1;
            }
            for c in &d.commands {
                self.commands += 1;
                if self.log.len() < DELIVERY_LOG {
                    self.log.push((d.instance, c.client.0, c.seq));
                }
                let mut h = self.digest;
                for w in [d.instance, c.client.0, c.seq, c.payload.len() as u64] {
                    h = digest_word(h, w);
                }
                let mut words = c.payload.chunks_exact(8);
                for w in &mut words {
                    h = digest_word(h, u64::from_le_bytes(w.try_into().expect("8 bytes")));
                }
                let mut tail = [0u8; 8];
                tail[..words.remainder().len()].copy_from_slice(words.remainder());
                self.digest = digest_word(h, u64::from_le_bytes(tail));
            }
        }
    }
}

/// Folds one word into a learner's delivery digest: an order-sensitive
/// multiplicative hash (FxHash's step), so that two learners that delivered
/// the same commands in the same instances, and only they, agree. Eight
/// bytes a step: the byte-wise FNV it replaced was a learner's largest
/// cost after the packets.
#[inline]
fn digest_word(h: u64, w: u64) -> u64 {
    (h.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95)
}

/// The protocol core a process runs.
#[derive(Debug)]
pub enum Core {
    /// A coordinator (leader or standby).
    Coordinator(Box<Coordinator>),
    /// An acceptor.
    Acceptor(Box<AcceptorRole>),
    /// A learner.
    Learner(Box<LearnerRole>),
}

impl Core {
    fn role(&self) -> &'static str {
        match self {
            Core::Coordinator(_) => "coordinator",
            Core::Acceptor(_) => "acceptor",
            Core::Learner(_) => "learner",
        }
    }

    fn handle(&mut self, now: Time, from: NodeId, msg: Message) {
        match self {
            Core::Coordinator(c) => c.handle(now, from, msg),
            Core::Acceptor(a) => a.acceptor.handle(now, from, msg),
            Core::Learner(l) => {
                l.learner.handle(now, from, msg);
                l.drain();
            }
        }
    }

    fn handle_timeout(&mut self, now: Time) {
        match self {
            Core::Coordinator(c) => c.handle_timeout(now),
            Core::Acceptor(a) => a.acceptor.handle_timeout(now),
            Core::Learner(l) => {
                l.learner.handle_timeout(now);
                l.drain();
            }
        }
    }

    fn poll_timeout(&self) -> Option<Time> {
        match self {
            Core::Coordinator(c) => c.poll_timeout(),
            Core::Acceptor(a) => a.acceptor.poll_timeout(),
            Core::Learner(l) => l.learner.poll_timeout(),
        }
    }

    /// The next message to send, written as an NFVinc message into `buf`
    /// (an acceptor's answers are already encoded: it copies them).
    fn poll_emit(&mut self, buf: &mut [u8]) -> Option<(Dest, Result<usize, MsgError>)> {
        let t = match self {
            Core::Coordinator(c) => c.poll_transmit(),
            Core::Acceptor(a) => return a.acceptor.poll_emit(buf),
            Core::Learner(l) => l.learner.poll_transmit(),
        }?;
        Some((t.dest, t.msg.emit(0, buf)))
    }

    /// Group commit: what the last input changed, written and synced once.
    fn persist(&mut self, counters: &mut ServiceCounters) {
        let Core::Acceptor(a) = self else { return };
        while let Some(batch) = a.acceptor.poll_persist() {
            let Some(wal) = a.wal.as_mut() else {
                // Configured durable without a log: never release answers.
                continue;
            };
            if a.wal_failed {
                continue;
            }
            match wal.write_batch(&batch) {
                Ok(()) => {
                    counters.wal_batches += 1;
                    counters.wal_records += batch.count as u64;
                    a.acceptor.persisted(batch.id);
                }
                Err(e) => {
                    // Answers that depend on the batch stay held forever:
                    // the acceptor falls silent rather than forget a vote.
                    tracing::error!(error = %e, "write-ahead log failed; this acceptor stops answering");
                    a.wal_failed = true;
                    counters.wal_errors += 1;
                }
            }
        }
    }
}

/// Counters of the shell, beside the core's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceCounters {
    /// Messages handed to the core.
    pub rx_messages: u64,
    /// Frames that were not a consensus message for our port.
    pub malformed: u64,
    /// Frames sent.
    pub tx_frames: u64,
    /// Messages the core sent to a node id with no address.
    pub unroutable: u64,
    /// Messages too large for a frame (dropped).
    pub too_large: u64,
    /// Write-ahead-log batches synced.
    pub wal_batches: u64,
    /// Records in them.
    pub wal_records: u64,
    /// Write-ahead-log failures.
    pub wal_errors: u64,
}

/// A fan-out in progress: the next member index, then the next guest.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    dest: Dest,
    member: usize,
    guest: usize,
    len: usize,
    /// The one's-complement sum of the message, summed once for every
    /// copy: a copy's UDP checksum only adds its own header and addresses.
    sum: u16,
}

/// Fills the UDP checksum of the frame `buf` (built by `build_udp_frame`
/// for `spec`, checksum field zero) whose payload sums to `payload_sum`.
fn fill_checksum(buf: &mut [u8], spec: &dataplane::wire::FrameSpec, payload_sum: u16) {
    use dataplane::wire::UDP_PAYLOAD_OFFSET;
    use dataplane::wire::checksum::{combine, pseudo_header_v4, sum};
    let udp = UDP_PAYLOAD_OFFSET - 8;
    let udp_len = (buf.len() - udp) as u16;
    // The header is 8 bytes, so the payload's words keep their alignment
    // and its sum adds to the header's.
    let s = combine(&[
        pseudo_header_v4(spec.src_ip, spec.dst_ip, 17, udp_len),
        sum(&buf[udp..UDP_PAYLOAD_OFFSET]),
        payload_sum,
    ]);
    // Zero means "no checksum" in UDP: a computed zero is sent as ones.
    let c = match !s {
        0 => 0xffff,
        c => c,
    };
    buf[UDP_PAYLOAD_OFFSET - 2..UDP_PAYLOAD_OFFSET].copy_from_slice(&c.to_be_bytes());
}

/// A consensus process on a dataplane worker (see the module docs).
pub struct PaxosService {
    core: Core,
    peers: Peers,
    members: Members,
    clock: Clock,
    port: u16,
    inbox: Option<Inbox>,
    scratch: Vec<u8>,
    cursor: Option<Cursor>,
    pending_out: bool,
    next_timeout: Option<Instant>,
    next_housekeeping: Instant,
    counters: ServiceCounters,
    sessions: Sessions,
    /// The session id every message sent carries (the instance's).
    session: u64,
}

impl std::fmt::Debug for PaxosService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaxosService")
            .field("role", &self.core.role())
            .field("me", &self.peers.me())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl PaxosService {
    /// A process running `core` as member `peers.me()` on UDP `port`.
    pub fn new(core: Core, peers: Peers, members: Members, port: u16) -> Self {
        let mut s = PaxosService {
            core,
            peers,
            members,
            clock: Clock::new(),
            port,
            inbox: None,
            scratch: vec![0; MAX_MESSAGE],
            cursor: None,
            pending_out: true,
            next_timeout: None,
            next_housekeeping: Instant::now(),
            counters: ServiceCounters::default(),
            sessions: Sessions::default(),
            session: 0,
        };
        s.after_input();
        s
    }

    /// Checks received messages against these session keys (dropping and
    /// counting what fails under [`dataplane::auth::AuthPolicy::Required`]),
    /// and sends every message as one of `session` (the instance's), tagged
    /// under its key when the table has it. Without, everything is accepted
    /// and messages leave untagged in session 0.
    pub fn with_sessions(mut self, sessions: Sessions, session: u64) -> Self {
        self.sessions = sessions;
        self.session = session;
        self
    }

    /// Answers requests from this control-socket inbox.
    pub fn with_control(mut self, inbox: Inbox) -> Self {
        self.inbox = Some(inbox);
        self
    }

    /// The clock the service stamps input with.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// The core.
    pub fn core(&self) -> &Core {
        &self.core
    }

    /// The shell's counters.
    pub fn counters(&self) -> ServiceCounters {
        self.counters
    }

    fn after_input(&mut self) {
        self.core.persist(&mut self.counters);
        self.pending_out = true;
        self.next_timeout = self.core.poll_timeout().map(|t| self.clock.instant(t));
    }

    fn handle_frame(&mut self, frame: &[u8], t: Time, now: Instant) {
        let Ok(f) = UdpFrame::parse(frame) else {
            self.counters.malformed += 1;
            return;
        };
        if f.dst().port() != self.port || f.check_udp_checksum().is_err() {
            self.counters.malformed += 1;
            return;
        }
        if self.sessions.admit(f.payload()).is_err() {
            // Counted by the session table. Before the address book: a
            // sender that cannot prove its session becomes no guest.
            return;
        }
        // Each role's steady load goes in as bytes, checked by the core:
        // accepts at acceptors (which build no message values for them),
        // votes at coordinators and learners (which build an instance's
        // value once, not once per vote, and a coordinator none for a
        // `Voted`), announcements at learners (which build only the values
        // they had not learned).
        let msg_type = NfvHeader::new_checked(f.payload()).map_or(0, |h| h.msg_type());
        let by_bytes = match &self.core {
            Core::Acceptor(_) => msg_type == u8::from(MsgType::Accept),
            Core::Coordinator(_) => {
                msg_type == u8::from(MsgType::Accepted) || msg_type == u8::from(MsgType::Voted)
            }
            Core::Learner(_) => {
                msg_type == u8::from(MsgType::Accepted) || msg_type == u8::from(MsgType::Decided)
            }
        };
        if by_bytes {
            let from = self.peers.sender(&f.spec().reversed(), false, now);
            let done = match &mut self.core {
                Core::Acceptor(a) => a.acceptor.handle_nfv(t, from, f.payload()),
                Core::Coordinator(c) => c.handle_nfv(t, from, f.payload()),
                Core::Learner(l) => {
                    let r = l.learner.handle_nfv(t, from, f.payload());
                    l.drain();
                    r
                }
            };
            match done {
                Ok(()) => self.counters.rx_messages += 1,
                Err(_) => self.counters.malformed += 1,
            }
            return;
        }
        let Ok((_, msg)) = Message::parse_nfv(f.payload()) else {
            self.counters.malformed += 1;
            return;
        };
        let from = self
            .peers
            .sender(&f.spec().reversed(), matches!(msg, Message::Fetch(_)), now);
        self.counters.rx_messages += 1;
        self.core.handle(t, from, msg);
    }

    /// Puts the instance's session on the message in the scratch buffer
    /// and tags it under the session's key (once for every copy).
    fn seal(&mut self, len: usize) {
        let Some(msg) = self.scratch.get_mut(..len) else {
            return;
        };
        if msg.len() >= HEADER_LEN {
            NfvHeader::new_unchecked(&mut *msg).set_session_id(self.session);
            self.sessions.sign(msg);
        }
    }

    /// The next destination of the fan-out in progress, without moving on.
    fn peek_target(&self, c: &Cursor, now: Instant) -> Option<(NodeId, Cursor)> {
        let mut c = *c;
        if let Dest::Node(n) = c.dest {
            if c.member > 0 {
                return None;
            }
            c.member = 1;
            return Some((n, c));
        }
        let members = self.peers.members_of(c.dest);
        if let Some(&n) = members.get(c.member) {
            c.member += 1;
            return Some((n, c));
        }
        if !Peers::reaches_subscribers(c.dest) {
            return None;
        }
        let (i, n) = self.peers.subscriber(c.guest, now)?;
        c.guest = i + 1;
        Some((n, c))
    }

    fn housekeeping(&mut self, now: Instant) {
        if let Some(inbox) = self.inbox.take() {
            // Bounded per tick: a flood of requests cannot hold up packets.
            for _ in 0..64 {
                let Some(r) = inbox.try_next() else { break };
                self.control(r, now);
            }
            self.inbox = Some(inbox);
        }
    }

    /// Answers one control-socket request.
    fn control(&mut self, r: Request, now: Instant) {
        if let Some(result) = self.sessions.control_op(r.op(), r.body()) {
            r.answer(result);
            return;
        }
        let result = match r.op() {
            "health" => Ok(json!({"status": "ok", "role": self.core.role(),
                                  "node": self.peers.me().0})),
            "counters" => Ok(self.counters_json()),
            "membership" => Ok(self.membership_json(now)),
            "leader" => Ok(self.leader_json()),
            "deliveries" => self.deliveries_json(r.body()),
            other => Err(format!(
                "unknown op {other:?}: expected health, counters, membership, leader, deliveries, session.add or session.remove"
            )),
        };
        r.answer(result);
    }

    fn counters_json(&self) -> Json {
        let s = self.counters;
        let mut j = json!({
            "rx_messages": s.rx_messages,
            "malformed": s.malformed,
            "tx_frames": s.tx_frames,
            "unroutable": s.unroutable,
            "too_large": s.too_large,
            "auth": self.sessions.counters_json(),
        });
        let core = match &self.core {
            Core::Coordinator(c) => {
                let k = c.counters();
                json!({
                    "instances_decided": k.instances_decided,
                    "commands_decided": k.commands_decided,
                    "elections": k.elections,
                    "terms": k.terms,
                    "proposed": k.proposed,
                    "retransmits": k.retransmits,
                    "admissions": k.admissions,
                    "committed": c.committed(),
                })
            }
            Core::Acceptor(a) => {
                let k = a.acceptor.counters();
                json!({
                    "promises": k.promises,
                    "votes": k.votes,
                    "nacks": k.nacks,
                    "batches": k.batches,
                    "wal_batches": s.wal_batches,
                    "wal_records": s.wal_records,
                    "wal_errors": s.wal_errors,
                    "wal_syncs": a.wal.as_ref().map_or(0, Wal::syncs),
                })
            }
            Core::Learner(l) => json!({
                "instances": l.instances,
                "commands": l.commands,
                "noops": l.noops,
                "next_instance": l.learner.next_instance(),
                "digest": format!("{:016x}", l.digest),
            }),
        };
        if let (Some(j), Json::Object(core)) = (j.as_object_mut(), core) {
            j.extend(core);
        }
        j
    }

    fn membership_json(&self, now: Instant) -> Json {
        let list = |v: &[SocketAddrV4]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        let mut j = json!({
            "role": self.core.role(),
            "node": self.peers.me().0,
            "coordinators": list(&self.members.coordinators),
            "acceptors": list(&self.members.acceptors),
            "learners": list(&self.members.learners),
            "subscribers": self.peers.subscribers(now),
            "guests": self.peers.guests(),
        });
        match &self.core {
            Core::Coordinator(c) => j["incarnations"] = json!(c.incarnations()),
            Core::Acceptor(a) => {
                let id = a.acceptor.id();
                j["acceptor"] = json!({"slot": id.slot, "incarnation": id.incarnation,
                                       "active": a.acceptor.is_active(),
                                       "trim": a.acceptor.trim_point()});
            }
            Core::Learner(_) => {}
        }
        j
    }

    fn leader_json(&self) -> Json {
        let ballot =
            |b: Ballot| json!({"round": b.round, "node": b.node.0, "incarnation": b.incarnation});
        let index = |n: NodeId| {
            (n.0 >= 1 && usize::from(n.0) <= self.members.coordinators.len())
                .then(|| usize::from(n.0) - 1)
        };
        match &self.core {
            Core::Coordinator(c) => json!({
                "leader": c.leader().map(|n| n.0),
                "leader_index": c.leader().and_then(index),
                "is_leader": c.is_leader(),
                "ballot": ballot(c.ballot()),
                "committed": c.committed(),
            }),
            Core::Acceptor(a) => json!({"promised": ballot(a.acceptor.promised()),
                                         "leader": a.acceptor.promised().node.0}),
            Core::Learner(l) => json!({
                "leader": l.learner.leader().map(|n| n.0),
                "leader_index": l.learner.leader().and_then(index),
            }),
        }
    }

    fn deliveries_json(&self, body: &Json) -> Result<Json, String> {
        let Core::Learner(l) = &self.core else {
            return Err("deliveries: only learners deliver".into());
        };
        let num = |k: &str, d: u64| match body.get(k) {
            None | Some(Json::Null) => Ok(d),
            Some(v) => v
                .as_u64()
                .ok_or(format!("\"{k}\" must be an unsigned number")),
        };
        let from = num("from", 0)? as usize;
        let max = num("max", 10_000)?.min(100_000) as usize;
        let entries: Vec<Json> = l
            .log
            .iter()
            .skip(from)
            .take(max)
            .map(|(i, c, s)| json!([i, c, s]))
            .collect();
        Ok(json!({
            "from": from,
            "total": l.log.len(),
            "commands": l.commands,
            "next_instance": l.learner.next_instance(),
            "entries": entries,
        }))
    }
}

impl Vnf for PaxosService {
    fn process(&mut self, now: Instant, burst: &mut Batch) {
        let t = self.clock.time(now);
        for i in 0..burst.len() {
            self.handle_frame(burst.frame(i), t, now);
        }
        burst.clear();
        self.after_input();
    }

    fn next_wakeup(&self) -> Option<Instant> {
        if self.pending_out || self.cursor.is_some() {
            // Already due: anything not after now will do.
            return Some(self.clock.anchor());
        }
        Some(match self.next_timeout {
            Some(t) => t.min(self.next_housekeeping),
            None => self.next_housekeeping,
        })
    }

    fn emit(&mut self, now: Instant, out: &mut Emit<'_>) {
        if now >= self.next_housekeeping {
            self.housekeeping(now);
            self.next_housekeeping = now + HOUSEKEEPING;
        }
        if self.next_timeout.is_some_and(|t| t <= now) {
            self.core.handle_timeout(self.clock.time(now));
            self.after_input();
        }
        loop {
            let mut cursor = match self.cursor.take() {
                Some(c) => c,
                None => {
                    let Some((dest, written)) = self.core.poll_emit(&mut self.scratch) else {
                        self.pending_out = false;
                        return;
                    };
                    match written {
                        Ok(len) => {
                            self.seal(len);
                            Cursor {
                                dest,
                                member: 0,
                                guest: 0,
                                len,
                                sum: dataplane::wire::checksum::sum(&self.scratch[..len]),
                            }
                        }
                        Err(_) => {
                            self.counters.too_large += 1;
                            continue;
                        }
                    }
                }
            };
            while let Some((node, next)) = self.peek_target(&cursor, now) {
                let Some(spec) = self.peers.spec(node) else {
                    self.counters.unroutable += 1;
                    cursor = next;
                    continue;
                };
                let Some(mut f) = out.frame() else {
                    // No frame now: resume this fan-out on the next call.
                    self.cursor = Some(cursor);
                    return;
                };
                let payload = &self.scratch[..cursor.len];
                let room = f.room();
                let written = f.set_len(room).ok().and_then(|()| {
                    let buf = f.data_mut();
                    let n = build_udp_frame(buf, &spec, payload.len()).ok()?;
                    buf[dataplane::wire::UDP_PAYLOAD_OFFSET..n].copy_from_slice(payload);
                    fill_checksum(&mut buf[..n], &spec, cursor.sum);
                    Some(n)
                });
                let _ = f.set_len(written.unwrap_or(0));
                match written {
                    Some(_) => self.counters.tx_frames += 1,
                    None => self.counters.too_large += 1,
                }
                cursor = next;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{reply, request};
    use crate::{
        AcceptorConfig, AcceptorId, ClientId, Command, CoordinatorConfig, Durability, LearnerConfig,
    };
    use dataplane::auth::{AuthPolicy, SessionKey};
    use dataplane::io::PacketIo;
    use dataplane::io::mem::{MemConfig, MemIo};
    use dataplane::runtime::emit_into;
    use dataplane::wire::{FrameSpec, write_udp_frame};
    use std::net::Ipv4Addr;

    fn at(a: u8, b: u8) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(10, 0, a, b), DEFAULT_PORT)
    }

    const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 9, 9), 5000);

    fn frame(from: SocketAddrV4, to: SocketAddrV4, msg: &Message) -> Vec<u8> {
        frame_in(from, to, msg, 0, None)
    }

    /// The session of the authenticated groups below.
    const SESSION: u64 = 77;

    /// A frame of `session`, tagged under `key` when given.
    fn frame_in(
        from: SocketAddrV4,
        to: SocketAddrV4,
        msg: &Message,
        session: u64,
        key: Option<&SessionKey>,
    ) -> Vec<u8> {
        let mut payload = vec![0u8; 2048];
        let n = msg.emit(session, &mut payload).unwrap();
        if let Some(k) = key {
            k.sign(&mut payload[..n]).unwrap();
        }
        let spec = FrameSpec {
            src_mac: [2; 6],
            dst_mac: [2; 6],
            src_ip: *from.ip(),
            dst_ip: *to.ip(),
            src_port: from.port(),
            dst_port: to.port(),
        };
        let mut buf = vec![0u8; 2048];
        let len = write_udp_frame(&mut buf, &spec, &payload[..n]).unwrap();
        buf.truncate(len);
        buf
    }

    struct Node {
        addr: SocketAddrV4,
        svc: PaxosService,
        io: MemIo,
    }

    /// One coordinator, three in-memory acceptors and a learner, each a
    /// service on its own in-memory backend; frames are routed between
    /// them by destination address.
    fn group() -> Vec<Node> {
        group_with(None)
    }

    /// The same group, every process requiring tags under `key` for
    /// [`SESSION`] when it is given.
    fn group_with(key: Option<&SessionKey>) -> Vec<Node> {
        let members = Members {
            coordinators: vec![at(1, 1)],
            acceptors: vec![at(2, 1), at(2, 2), at(2, 3)],
            learners: vec![at(3, 1)],
        };
        let now = Time::monotonic_now();
        let mut nodes = Vec::new();
        let mut add = |me: NodeId, addr: SocketAddrV4, core: Core| {
            let peers = Peers::new(me, addr, [1; 6], &members, |_| [2; 6]);
            let mut svc = PaxosService::new(core, peers, members.clone(), DEFAULT_PORT);
            if let Some(k) = key {
                let mut sessions = Sessions::new(AuthPolicy::Required);
                sessions.insert(SESSION, k.clone());
                svc = svc.with_sessions(sessions, SESSION);
            }
            nodes.push(Node {
                addr,
                svc,
                io: MemIo::new(MemConfig::default()).unwrap(),
            });
        };
        let mut cfg = CoordinatorConfig::new(coordinator_node(0), 1, vec![coordinator_node(0)]);
        cfg.election_timeout = Duration::from_millis(5);
        add(
            coordinator_node(0),
            at(1, 1),
            Core::Coordinator(Box::new(Coordinator::new(cfg, now))),
        );
        for slot in 0..3u16 {
            let cfg = AcceptorConfig {
                durability: Durability::Memory,
                ..AcceptorConfig::default()
            };
            let a = Acceptor::new(
                AcceptorId {
                    slot,
                    incarnation: 1,
                },
                cfg,
            );
            add(
                acceptor_node(slot),
                at(2, slot as u8 + 1),
                Core::Acceptor(Box::new(AcceptorRole::new(a, None))),
            );
        }
        let l = Learner::new(LearnerConfig::default());
        add(
            learner_node(0),
            at(3, 1),
            Core::Learner(Box::new(LearnerRole::new(l))),
        );
        nodes
    }

    /// Runs every node once; returns the frames addressed to the client.
    fn step(nodes: &mut [Node]) -> Vec<Vec<u8>> {
        let mut wire = Vec::new();
        for n in nodes.iter_mut() {
            let now = Instant::now();
            let mut b = n.io.new_batch();
            if n.io.recv(&mut b).unwrap() > 0 {
                n.svc.process(now, &mut b);
                n.io.send(&mut b).unwrap();
            }
            if n.svc.next_wakeup().is_some_and(|t| t <= now) {
                let mut out = n.io.new_batch();
                emit_into(&mut n.io, &mut out, now, &mut n.svc);
                while !out.is_empty() {
                    n.io.send(&mut out).unwrap();
                }
            }
            n.io.drain_sent(|f| wire.push(f.to_vec()));
        }
        let mut to_client = Vec::new();
        for f in wire {
            let dst = UdpFrame::parse(&f[..]).unwrap().dst();
            match nodes.iter_mut().find(|n| n.addr == dst) {
                Some(n) => n.io.inject(&f).unwrap(),
                None if dst == CLIENT => to_client.push(f),
                None => panic!("frame to an unknown address {dst}"),
            }
        }
        to_client
    }

    #[test]
    fn a_group_on_the_in_memory_backend_decides_and_answers_the_client() {
        let mut nodes = group();
        let request = Message::Request(request::Repr {
            command: Command {
                client: ClientId(42),
                seq: 1,
                payload: (&b"set x"[..]).into(),
            },
        });
        let req = frame(CLIENT, at(1, 1), &request);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut next_try = Instant::now();
        let mut decided = None;
        while decided.is_none() {
            assert!(Instant::now() < deadline, "no decision within 5 s");
            if Instant::now() >= next_try {
                // Retried like a client would, until the leader is elected.
                nodes[0].io.inject(&req).unwrap();
                next_try = Instant::now() + Duration::from_millis(20);
            }
            for f in step(&mut nodes) {
                let f = UdpFrame::parse(&f[..]).unwrap();
                if let Ok((_, Message::Reply(r))) = Message::parse_nfv(f.payload())
                    && let reply::Status::Decided(i) = r.status
                {
                    assert_eq!((r.client, r.seq), (ClientId(42), 1));
                    decided = Some(i);
                }
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        // The learner delivers it once, however often it was sent.
        let t = Instant::now();
        loop {
            step(&mut nodes);
            let Core::Learner(l) = &nodes[4].svc.core else {
                unreachable!()
            };
            if l.commands > 0 {
                assert_eq!(l.log, vec![(decided.unwrap(), 42, 1)]);
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(2), "learner got nothing");
        }
        let c = nodes[0].svc.counters();
        assert!(
            c.tx_frames > 0 && c.malformed == 0 && c.unroutable == 0,
            "{c:?}"
        );
        for n in &mut nodes {
            n.io.drain_sent(|_| {});
        }
    }

    /// Sends `req` to the coordinator until a reply says it is decided;
    /// returns the instance and the reply's frame.
    fn decide(nodes: &mut [Node], req: &[u8]) -> (u64, Vec<u8>) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut next_try = Instant::now();
        loop {
            assert!(Instant::now() < deadline, "no decision within 5 s");
            if Instant::now() >= next_try {
                // Retried like a client would, until the leader is elected.
                nodes[0].io.inject(req).unwrap();
                next_try = Instant::now() + Duration::from_millis(20);
            }
            for f in step(nodes) {
                let p = UdpFrame::parse(&f[..]).unwrap();
                if let Ok((_, Message::Reply(r))) = Message::parse_nfv(p.payload())
                    && let reply::Status::Decided(i) = r.status
                {
                    return (i, f);
                }
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    #[test]
    fn with_auth_required_only_tagged_messages_count_and_answers_are_tagged() {
        let key = SessionKey::from_bytes([9; 32]);
        let mut nodes = group_with(Some(&key));
        let command = |client: u64| {
            Message::Request(request::Repr {
                command: Command {
                    client: ClientId(client),
                    seq: 1,
                    payload: (&b"set x"[..]).into(),
                },
            })
        };
        // A tagged request is decided: the processes' own traffic passes
        // too, as each of them requires tags.
        let good = frame_in(CLIENT, at(1, 1), &command(42), SESSION, Some(&key));
        let (decided, reply) = decide(&mut nodes, &good);
        let reply = UdpFrame::parse(&reply[..]).unwrap();
        key.verify(reply.payload())
            .expect("the answer is tagged under the instance's key");
        assert_eq!(
            NfvHeader::new_checked(reply.payload())
                .unwrap()
                .session_id(),
            SESSION
        );

        // Untagged, tagged under another key, of another session: never
        // decided, never answered, and the learner takes no subscriber.
        let forged = SessionKey::from_bytes([8; 32]);
        let coordinator = at(1, 1);
        nodes[0]
            .io
            .inject(&frame(CLIENT, coordinator, &command(43)))
            .unwrap();
        nodes[0]
            .io
            .inject(&frame_in(
                CLIENT,
                coordinator,
                &command(43),
                SESSION,
                Some(&forged),
            ))
            .unwrap();
        nodes[0]
            .io
            .inject(&frame_in(
                CLIENT,
                coordinator,
                &command(43),
                SESSION + 1,
                Some(&forged),
            ))
            .unwrap();
        let fetch = Message::Fetch(crate::wire::fetch::Repr { from: 0, to: 8 });
        nodes[4]
            .io
            .inject(&frame_in(CLIENT, at(3, 1), &fetch, SESSION, Some(&forged)))
            .unwrap();
        for _ in 0..50 {
            assert!(
                step(&mut nodes).is_empty(),
                "a refused message was answered"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        let c = nodes[0].svc.counters_json();
        assert_eq!(c["auth"]["untagged"], 1, "{c}");
        assert_eq!(c["auth"]["bad_tag"], 1, "{c}");
        assert_eq!(c["auth"]["unknown_session"], 1, "{c}");
        let l = nodes[4].svc.counters_json();
        assert_eq!(l["auth"]["bad_tag"], 1, "{l}");
        assert_eq!(nodes[4].svc.peers.guests(), 0, "no guest from a forgery");
        let Core::Learner(learner) = &nodes[4].svc.core else {
            unreachable!()
        };
        assert_eq!(learner.log, vec![(decided, 42, 1)], "43's never decided");
        for n in &mut nodes {
            n.io.drain_sent(|_| {});
        }
    }

    #[test]
    fn frames_that_are_not_consensus_messages_are_counted_and_dropped() {
        let mut nodes = group();
        let mut junk = frame(CLIENT, at(2, 1), &request_for_test());
        let payload_at = dataplane::wire::UDP_PAYLOAD_OFFSET;
        junk[payload_at + 3] = 99; // an unknown service
        dataplane::wire::finish_udp_checksum(&mut junk).unwrap();
        nodes[1].io.inject(&junk).unwrap();
        nodes[1].io.inject(&[0u8; 20]).unwrap();
        step(&mut nodes);
        assert_eq!(nodes[1].svc.counters().malformed, 2);
        assert_eq!(nodes[1].svc.counters().rx_messages, 0);
    }

    fn request_for_test() -> Message {
        Message::Request(request::Repr {
            command: Command {
                client: ClientId(1),
                seq: 1,
                payload: (&b"x"[..]).into(),
            },
        })
    }

    #[test]
    fn a_checksum_from_the_payload_sum_matches_one_over_the_frame() {
        let spec = FrameSpec {
            src_mac: [2; 6],
            dst_mac: [3; 6],
            src_ip: Ipv4Addr::new(10, 0, 1, 1),
            dst_ip: Ipv4Addr::new(10, 0, 2, 7),
            src_port: 7400,
            dst_port: 5123,
        };
        for len in [0usize, 1, 2, 7, 33, 1201] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let mut a = vec![0u8; 2048];
            let n = build_udp_frame(&mut a, &spec, len).unwrap();
            a[dataplane::wire::UDP_PAYLOAD_OFFSET..n].copy_from_slice(&payload);
            let mut b = a.clone();
            dataplane::wire::finish_udp_checksum(&mut a[..n]).unwrap();
            fill_checksum(&mut b[..n], &spec, dataplane::wire::checksum::sum(&payload));
            assert_eq!(a[..n], b[..n], "payload of {len} bytes");
            assert!(UdpFrame::parse(&b[..n]).unwrap().verify_udp_checksum());
        }
    }
}
