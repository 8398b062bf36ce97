//! The sequencer as a network function: the thin shell that runs a
//! [`Sequencer`] core on a dataplane worker.
//!
//! [`SeqService`] implements [`dataplane::runtime::Vnf`]. A received burst
//! is parsed in place and every sequencer message handed to the core; then
//! the core's output is drained into frames: first into the burst's own
//! frames (rewritten in place, so that at load the frames that brought the
//! messages carry the stamped batches out and no buffer changes hands),
//! the rest by [`Vnf::emit`] into fresh frames. Each NFVinc message the
//! core writes is written once into a scratch buffer, its checksum sum
//! taken once, and copied into the frames of its destinations. Nothing is
//! allocated per packet.
//!
//! Group delivery ([`Dest::Group`]) has two forms:
//!
//! * **IP multicast** ([`Book::with_multicast`], `--multicast`): one frame
//!   per group frame, to a multicast group every member joins; the network
//!   replicates it (a bridge or a veth link on one host, a switch with
//!   IGMP snooping or a multicast router beyond). The sequencer's cost per
//!   group frame stays one send whatever the group's size, which is what
//!   lets large groups keep up (`nfvinc-perf sequencer --multicast`). It
//!   needs members on one layer-2 segment or multicast routing between
//!   them.
//! * **Unicast copies** (the default): one frame per member of the
//!   [`Book`], for members behind plain routers (one router port each, no
//!   multicast routing, as in a routed NFVI or the router topology of the
//!   tests). Each copy costs a `memcpy` of at most one frame; batching keeps
//!   frames few.
//!
//! Repairs, TooOld answers and epoch-change messages always go to one
//! process.
//!
//! Timers are the core's `poll_timeout` (heartbeats, epoch-change
//! retries), turned into the worker's wake-up; the control socket is read
//! on a five-millisecond housekeeping tick.
//!
//! Control operations (JSON lines, see [`dataplane::control`]):
//!
//! | op | body | answer |
//! | --- | --- | --- |
//! | `health` | | `{"status": "ok", "epoch", "recovering"}` |
//! | `counters` | | the core's and the shell's counters |
//! | `epoch` | | `{"epoch", "next_seq", "recovering"}` |
//! | `group` | | `{"group", "id", "epoch", "members": [{"process", "addr"}]}` |
//! | `add` | `{"process": id, "addr": "ip:port"}` | the member list |
//! | `remove` | `{"process": id}` | the member list |
//! | `replace` | `{"epoch": n}` | takes over the group in epoch `n` (a new core, recovering) |
//!
//! With a session table ([`SeqService::with_sessions`], `--auth required`)
//! the control socket also answers `session.add` and `session.remove`, and
//! `counters` reports the refusals under `auth`.
//!
//! # Authentication
//!
//! Under `--auth required` (how `nfvinc serve` runs it) every received
//! message must carry a valid tag ([`dataplane::auth`]) under the key of
//! the session its header names, checked in place before the core or the
//! address book sees it: untagged, unknown-session and wrongly tagged
//! messages are counted and dropped, never answered, and teach the book no
//! next hop. Everything the sequencer sends is tagged under the key of the
//! session it carries, once per message in the scratch buffer, before its
//! checksum sum is taken, so unicast copies and multicast cost one tag.
//!
//! The session of a group is the group id (every frame carries it): one
//! key per group, shared by its members. Not one key per member, because a
//! group frame is one frame for all of them (multicast, or copies of one
//! scratch message) and members repair each other's gaps with frames that
//! each must be able to check. The group is one tenant's: the control
//! plane hands the key only to the tenant that created the instance, so
//! another tenant can neither send into the group nor forge its frames.
//!
//! Membership changes reach the address book at once; the core's own list
//! (whom an epoch change waits for) is the book's at the start and at each
//! `replace`, as the protocol wants: membership does not change during an
//! epoch change.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use dataplane::auth::Sessions;
use dataplane::control::{Inbox, Request};
use dataplane::io::{Batch, FrameMut};
use dataplane::runtime::{Emit, Vnf};
use dataplane::wire::checksum::{combine, pseudo_header_v4, sum};
use dataplane::wire::{
    FrameSpec, IPV4_OFFSET, MacAddr, UDP_PAYLOAD_OFFSET, UdpFrame, build_udp_frame, ipv4,
};
use serde_json::{Value as Json, json};

// Our MAC and next hops for raw frames: shared with every VNF in dataplane.
pub use dataplane::neigh::{arp_entry, iface_mac, next_hop, resolve};

use crate::{Dest, ProcessId, Sequencer, SequencerConfig, Time};

/// The default UDP port of the sequencer.
pub const DEFAULT_PORT: u16 = 7500;
/// How often the control socket is read.
pub const HOUSEKEEPING: Duration = Duration::from_millis(5);
/// Offset of the UDP header in the frames the shell writes.
const UDP_AT: usize = IPV4_OFFSET + ipv4::MIN_HEADER_LEN;

pub use dataplane::time::Clock;

/// One member of the group as the shell reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberAddr {
    /// Its process id (what the core names it by).
    pub id: ProcessId,
    /// Its UDP address.
    pub addr: SocketAddrV4,
    /// The MAC of the next hop towards it (AF_XDP); `None` until known,
    /// then frames go to the last router heard from.
    pub mac: Option<MacAddr>,
}

/// The address book: the group's members, and how frames to them are
/// addressed.
#[derive(Debug, Clone)]
pub struct Book {
    local: SocketAddrV4,
    local_mac: MacAddr,
    members: Vec<MemberAddr>,
    by_id: HashMap<ProcessId, usize>,
    by_ip: HashMap<Ipv4Addr, usize>,
    /// Source MAC of the last frame received: the next hop of anyone whose
    /// own is not known (members sit behind a router).
    last_hop: Option<MacAddr>,
    /// The IP multicast group group frames go to, as a pseudo-member.
    multicast: Option<MemberAddr>,
}

impl Book {
    /// A book for a sequencer serving on `local` with MAC `local_mac`
    /// (zero on the kernel UDP backend, where the kernel routes).
    pub fn new(local: SocketAddrV4, local_mac: MacAddr, members: &[MemberAddr]) -> Self {
        let mut b = Book {
            local,
            local_mac,
            members: Vec::new(),
            by_id: HashMap::new(),
            by_ip: HashMap::new(),
            last_hop: None,
            multicast: None,
        };
        for m in members {
            b.add(*m);
        }
        b
    }

    /// Adds `m`, or updates the member with its id.
    pub fn add(&mut self, m: MemberAddr) {
        match self.by_id.get(&m.id) {
            Some(&i) => self.members[i] = m,
            None => self.members.push(m),
        }
        self.reindex();
    }

    /// Sends group frames once, to IP multicast `group` (members join it),
    /// instead of one copy per member: the link (a bridge, a veth) or the
    /// switch replicates them. Repairs and epoch messages stay unicast.
    pub fn with_multicast(mut self, group: SocketAddrV4) -> Self {
        let ip = group.ip().octets();
        self.multicast = Some(MemberAddr {
            id: ProcessId(u64::MAX),
            addr: group,
            // RFC 1112: 01:00:5e and the group's low 23 bits.
            mac: Some([0x01, 0x00, 0x5e, ip[1] & 0x7f, ip[2], ip[3]]),
        });
        self
    }

    /// The multicast group group frames go to, if any.
    pub fn multicast(&self) -> Option<SocketAddrV4> {
        self.multicast.map(|m| m.addr)
    }

    /// Removes member `id`; false when there was none.
    pub fn remove(&mut self, id: ProcessId) -> bool {
        let before = self.members.len();
        self.members.retain(|m| m.id != id);
        self.reindex();
        before != self.members.len()
    }

    fn reindex(&mut self) {
        self.by_id = self
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id, i))
            .collect();
        self.by_ip = self
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| (*m.addr.ip(), i))
            .collect();
    }

    /// The members, in the order they were added.
    pub fn members(&self) -> &[MemberAddr] {
        &self.members
    }

    /// Their ids.
    pub fn ids(&self) -> Vec<ProcessId> {
        self.members.iter().map(|m| m.id).collect()
    }

    /// Learns the next hop from a received frame.
    fn heard(&mut self, src_ip: Ipv4Addr, src_mac: MacAddr) {
        self.last_hop = Some(src_mac);
        if let Some(&i) = self.by_ip.get(&src_ip) {
            self.members[i].mac = Some(src_mac);
        }
    }

    fn spec(&self, m: &MemberAddr) -> FrameSpec {
        FrameSpec {
            src_mac: self.local_mac,
            dst_mac: m.mac.or(self.last_hop).unwrap_or([0xff; 6]),
            src_ip: *self.local.ip(),
            dst_ip: *m.addr.ip(),
            src_port: self.local.port(),
            dst_port: m.addr.port(),
        }
    }
}

/// Counters of the shell, beside the core's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceCounters {
    /// Datagrams for our port (each may carry several messages).
    pub rx_frames: u64,
    /// Sequencer messages handed to the core.
    pub rx_messages: u64,
    /// Frames that were not a sequencer message for our port.
    pub malformed: u64,
    /// Frames sent.
    pub tx_frames: u64,
    /// Of them, written over a received frame.
    pub tx_in_place: u64,
    /// Messages the core sent to a process with no address.
    pub unroutable: u64,
    /// Messages too large for a frame (dropped).
    pub too_large: u64,
}

/// A message being copied to its destinations.
#[derive(Debug, Clone, Copy)]
struct Fanout {
    dest: Dest,
    /// Next member index (for `Group`); 0 or 1 for one process.
    next: usize,
    /// Length of the NFVinc message in the scratch buffer.
    len: usize,
    /// Its one's-complement sum, for every copy's UDP checksum.
    sum: u16,
}

/// Where the shell writes frames: over the received burst, or into fresh
/// frames from the runtime.
enum Sink<'a, 'b> {
    Burst { batch: &'a mut Batch, used: usize },
    Emit(&'a mut Emit<'b>),
}

impl Sink<'_, '_> {
    fn frame(&mut self) -> Option<FrameMut<'_>> {
        match self {
            Sink::Burst { batch, used } => {
                if *used >= batch.len() {
                    return None;
                }
                *used += 1;
                Some(batch.frame_mut(*used - 1))
            }
            Sink::Emit(e) => e.frame(),
        }
    }
}

/// The sequencer on a dataplane worker (see the module docs).
pub struct SeqService {
    core: Sequencer,
    cfg: SequencerConfig,
    book: Book,
    clock: Clock,
    port: u16,
    /// Check received UDP checksums and fill those sent (raw frames:
    /// AF_XDP, DPDK); the kernel does both on the UDP backend.
    checksums: bool,
    /// Send UDP checksum zero instead of filling it (raw frames only; see
    /// [`SeqService::with_zero_udp_checksums`]).
    zero_checksums: bool,
    inbox: Option<Inbox>,
    scratch: Vec<u8>,
    fanout: Option<Fanout>,
    pending_out: bool,
    next_timeout: Option<Instant>,
    next_housekeeping: Instant,
    counters: ServiceCounters,
    sessions: Sessions,
}

impl std::fmt::Debug for SeqService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeqService")
            .field("epoch", &self.core.epoch())
            .field("members", &self.book.members.len())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl SeqService {
    /// A sequencer for `cfg.group` serving on UDP `port`: a new group in
    /// epoch 1 (`epoch` `None`), or a replacement that takes the group over
    /// in `epoch` (which must be higher than any epoch the group has seen).
    pub fn new(
        cfg: SequencerConfig,
        epoch: Option<u32>,
        book: Book,
        port: u16,
        checksums: bool,
    ) -> Self {
        let clock = Clock::new();
        let now = clock.time(Instant::now());
        let ids = book.ids();
        let core = match epoch {
            None => Sequencer::new(cfg, &ids, now),
            Some(e) => Sequencer::replacing(cfg, e, &ids, now),
        };
        let mut s = SeqService {
            core,
            cfg,
            book,
            clock,
            port,
            checksums,
            zero_checksums: false,
            inbox: None,
            scratch: vec![0; cfg.max_frame.max(64)],
            fanout: None,
            pending_out: true,
            next_timeout: None,
            next_housekeeping: Instant::now(),
            counters: ServiceCounters::default(),
            sessions: Sessions::default(),
        };
        s.after_input();
        s
    }

    /// Checks received messages against these session keys (dropping and
    /// counting what fails under [`dataplane::auth::AuthPolicy::Required`])
    /// and tags what it sends under them; without, everything is accepted
    /// and nothing tagged.
    pub fn with_sessions(mut self, sessions: Sessions) -> Self {
        self.sessions = sessions;
        self
    }

    /// Sends every frame with UDP checksum zero ("no checksum", which
    /// IPv4 allows) instead of filling it; received frames are still
    /// checked. For links that protect frames themselves (Ethernet's CRC,
    /// a veth that copies memory) or groups under `--auth required`
    /// (every message carries a tag, a stronger check): a member's kernel
    /// then skips the software checksum of every copy it receives, which
    /// a NIC would verify in hardware but a veth leaves to each socket's
    /// receive (fifty times per group frame with fifty members on one
    /// host), and the sequencer skips the sum per frame. Raw-frame
    /// backends only; the kernel fills checksums on the UDP backend.
    pub fn with_zero_udp_checksums(mut self, zero: bool) -> Self {
        self.zero_checksums = zero;
        self
    }

    /// Answers requests from this control-socket inbox.
    pub fn with_control(mut self, inbox: Inbox) -> Self {
        self.inbox = Some(inbox);
        self
    }

    /// The core.
    pub fn core(&self) -> &Sequencer {
        &self.core
    }

    /// The address book.
    pub fn book(&self) -> &Book {
        &self.book
    }

    /// The shell's counters.
    pub fn counters(&self) -> ServiceCounters {
        self.counters
    }

    fn after_input(&mut self) {
        self.pending_out = true;
        self.next_timeout = self.core.poll_timeout().map(|t| self.clock.instant(t));
    }

    fn handle_frame(&mut self, frame: &[u8], t: Time) {
        let Ok(f) = UdpFrame::parse(frame) else {
            self.counters.malformed += 1;
            return;
        };
        if f.dst().port() != self.port || (self.checksums && f.check_udp_checksum().is_err()) {
            self.counters.malformed += 1;
            return;
        }
        self.counters.rx_frames += 1;
        if f.payload().is_empty() {
            self.counters.malformed += 1;
            return;
        }
        // Members pack several messages into one datagram: each is
        // checked and handled on its own.
        let mut heard = false;
        for m in crate::wire::messages(f.payload()) {
            if self.sessions.admit(m).is_err() {
                // Counted by the session table; a sender that cannot prove
                // its session changes nothing, not even the next hops.
                continue;
            }
            if self.checksums && !heard {
                heard = true;
                self.book
                    .heard(f.ipv4().src_addr(), f.ethernet().src_addr());
            }
            match self.core.handle(t, m) {
                Ok(()) => self.counters.rx_messages += 1,
                Err(_) => self.counters.malformed += 1,
            }
        }
    }

    /// Drains the core's output into `sink` until either runs out.
    fn write_out(&mut self, t: Time, sink: &mut Sink<'_, '_>) {
        loop {
            let mut fan = match self.fanout.take() {
                Some(f) => f,
                None => {
                    let Some(tx) = self.core.poll_transmit(t, &mut self.scratch) else {
                        self.pending_out = false;
                        return;
                    };
                    // Tagged once, before the sum every copy shares.
                    self.sessions.sign(&mut self.scratch[..tx.len]);
                    let sum = if self.checksums && !self.zero_checksums {
                        sum(&self.scratch[..tx.len])
                    } else {
                        0
                    };
                    Fanout {
                        dest: tx.dest,
                        next: 0,
                        len: tx.len,
                        sum,
                    }
                }
            };
            loop {
                let member = match fan.dest {
                    Dest::Group if self.book.multicast.is_some() => {
                        self.book.multicast.filter(|_| fan.next == 0)
                    }
                    Dest::Group => self.book.members.get(fan.next).copied(),
                    Dest::Process(p) if fan.next == 0 => match self.book.by_id.get(&p) {
                        Some(&i) => Some(self.book.members[i]),
                        None => {
                            self.counters.unroutable += 1;
                            None
                        }
                    },
                    Dest::Process(_) => None,
                };
                let Some(m) = member else { break };
                let Some(mut f) = sink.frame() else {
                    // No frame now: resume this fan-out on the next call.
                    self.fanout = Some(fan);
                    return;
                };
                let spec = self.book.spec(&m);
                let payload = &self.scratch[..fan.len];
                let fill = self.checksums && !self.zero_checksums;
                match write_frame(&mut f, &spec, payload, fan.sum, fill) {
                    Some(_) => self.counters.tx_frames += 1,
                    None => {
                        let _ = f.set_len(0);
                        self.counters.too_large += 1;
                    }
                }
                if matches!(sink, Sink::Burst { .. }) {
                    self.counters.tx_in_place += 1;
                }
                fan.next += 1;
            }
        }
    }

    fn housekeeping(&mut self) {
        if let Some(inbox) = self.inbox.take() {
            // Bounded per tick: a flood of requests cannot hold up packets.
            for _ in 0..64 {
                let Some(r) = inbox.try_next() else { break };
                self.control(r);
            }
            self.inbox = Some(inbox);
        }
    }

    /// Answers one control-socket request.
    fn control(&mut self, r: Request) {
        if let Some(result) = self.sessions.control_op(r.op(), r.body()) {
            r.answer(result);
            return;
        }
        let result = match r.op() {
            "health" => Ok(json!({"status": "ok", "epoch": self.core.epoch(),
                                  "recovering": self.core.is_recovering()})),
            "counters" => Ok(self.counters_json()),
            "epoch" => Ok(
                json!({"epoch": self.core.epoch(), "next_seq": self.core.next_seq(),
                                 "recovering": self.core.is_recovering()}),
            ),
            "group" => Ok(self.group_json()),
            "add" => self.add_member(r.body()),
            "remove" => self.remove_member(r.body()),
            "replace" => self.replace(r.body()),
            other => Err(format!(
                "unknown op {other:?}: expected health, counters, epoch, group, add, remove, replace, session.add or session.remove"
            )),
        };
        r.answer(result);
    }

    fn counters_json(&self) -> Json {
        let s = self.counters;
        let k = self.core.counters();
        json!({
            "rx_frames": s.rx_frames,
            "rx_messages": s.rx_messages,
            "malformed": s.malformed,
            "tx_frames": s.tx_frames,
            "tx_in_place": s.tx_in_place,
            "unroutable": s.unroutable,
            "too_large": s.too_large,
            "stamped": k.stamped,
            "duplicates": k.duplicates,
            "held": k.held,
            "refused": k.refused,
            "frames": k.frames,
            "nacks": k.nacks,
            "repaired": k.repaired,
            "ignored": k.ignored,
            "epoch": self.core.epoch(),
            "next_seq": self.core.next_seq(),
            "auth": self.sessions.counters_json(),
        })
    }

    fn group_json(&self) -> Json {
        let members: Vec<Json> = self
            .book
            .members
            .iter()
            .map(|m| json!({"process": m.id.0, "addr": m.addr.to_string()}))
            .collect();
        json!({
            "group": self.cfg.group,
            "id": self.cfg.id.0,
            "epoch": self.core.epoch(),
            "recovering": self.core.is_recovering(),
            "members": members,
            "multicast": self.book.multicast().map(|g| g.to_string()),
        })
    }

    fn add_member(&mut self, body: &Json) -> Result<Json, String> {
        let id = body["process"]
            .as_u64()
            .ok_or("add: \"process\" must be an unsigned number")?;
        let addr: SocketAddrV4 = body["addr"]
            .as_str()
            .and_then(|s| parse_addr(s).ok())
            .ok_or("add: \"addr\" must be \"IPv4[:port]\"")?;
        // No ARP wait on the worker: the next hop is learned from the
        // member's traffic, and until then is the last router heard from.
        self.book.add(MemberAddr {
            id: ProcessId(id),
            addr,
            mac: None,
        });
        Ok(self.group_json())
    }

    fn remove_member(&mut self, body: &Json) -> Result<Json, String> {
        let id = body["process"]
            .as_u64()
            .ok_or("remove: \"process\" must be an unsigned number")?;
        if !self.book.remove(ProcessId(id)) {
            return Err(format!("remove: no member {id}"));
        }
        Ok(self.group_json())
    }

    fn replace(&mut self, body: &Json) -> Result<Json, String> {
        let epoch = body["epoch"]
            .as_u64()
            .and_then(|e| u32::try_from(e).ok())
            .ok_or("replace: \"epoch\" must be a number below 2^32")?;
        if epoch <= self.core.epoch() {
            return Err(format!(
                "replace: epoch {epoch} is not above the current {}",
                self.core.epoch()
            ));
        }
        let now = self.clock.time(Instant::now());
        self.core = Sequencer::replacing(self.cfg, epoch, &self.book.ids(), now);
        self.fanout = None;
        self.after_input();
        Ok(self.group_json())
    }
}

/// Writes one unicast frame carrying `payload` (whose one's-complement sum
/// is `payload_sum`) into `f`; returns its length.
fn write_frame(
    f: &mut FrameMut<'_>,
    spec: &FrameSpec,
    payload: &[u8],
    payload_sum: u16,
    checksums: bool,
) -> Option<usize> {
    let room = f.room();
    f.set_len(room).ok()?;
    let buf = f.data_mut();
    let n = build_udp_frame(buf, spec, payload.len()).ok()?;
    buf[UDP_PAYLOAD_OFFSET..n].copy_from_slice(payload);
    if checksums {
        // The payload's sum was taken once for every copy; only the
        // pseudo-header and the UDP header differ.
        let udp_len = (n - UDP_AT) as u16;
        let c = !combine(&[
            pseudo_header_v4(spec.src_ip, spec.dst_ip, ipv4::PROTO_UDP, udp_len),
            sum(&buf[UDP_AT..UDP_AT + 8]),
            payload_sum,
        ]);
        let c = if c == 0 { 0xffff } else { c };
        buf[UDP_AT + 6..UDP_AT + 8].copy_from_slice(&c.to_be_bytes());
    }
    f.set_len(n).ok()?;
    Some(n)
}

/// `IPv4[:port]`, the port defaulting to [`DEFAULT_PORT`].
pub fn parse_addr(s: &str) -> Result<SocketAddrV4, String> {
    if let Ok(a) = s.parse::<SocketAddrV4>() {
        return Ok(a);
    }
    s.parse()
        .map(|ip| SocketAddrV4::new(ip, DEFAULT_PORT))
        .map_err(|_| format!("{s:?} is not IPv4[:port]"))
}

impl Vnf for SeqService {
    fn process(&mut self, now: Instant, burst: &mut Batch) {
        let t = self.clock.time(now);
        for i in 0..burst.len() {
            self.handle_frame(burst.frame(i), t);
        }
        self.after_input();
        // The burst's frames carry the output out, as far as they go; the
        // rest are dropped (given back) and `emit` sends what is left.
        let mut sink = Sink::Burst {
            batch: burst,
            used: 0,
        };
        self.write_out(t, &mut sink);
        let Sink::Burst { batch, used } = sink else {
            unreachable!("built above")
        };
        batch.truncate(used);
        batch.retain_mut(|f| !f.is_empty());
    }

    fn next_wakeup(&self) -> Option<Instant> {
        if self.pending_out || self.fanout.is_some() {
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
            self.housekeeping();
            self.next_housekeeping = now + HOUSEKEEPING;
        }
        let t = self.clock.time(now);
        if self.next_timeout.is_some_and(|x| x <= now) {
            self.core.handle_timeout(t);
            self.after_input();
        }
        self.write_out(t, &mut Sink::Emit(out));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mode;
    use crate::wire::{Message, data};
    use dataplane::io::PacketIo;
    use dataplane::io::mem::{MemConfig, MemIo};
    use dataplane::runtime::emit_into;
    use dataplane::wire::write_udp_frame;

    const GROUP: u64 = 7;
    const SEQ: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), DEFAULT_PORT);

    fn member(k: u8) -> MemberAddr {
        MemberAddr {
            id: ProcessId(u64::from(k)),
            addr: SocketAddrV4::new(Ipv4Addr::new(10, 0, k, 2), 7600),
            mac: None,
        }
    }

    fn service(members: &[MemberAddr]) -> SeqService {
        let mut cfg = SequencerConfig::new(ProcessId(100), GROUP);
        // Frames counted below are the ones the input caused: on a loaded
        // machine more than the default 5 ms may pass between two steps,
        // and an idle-group heartbeat must not slip in.
        cfg.heartbeat = Duration::from_secs(3600);
        SeqService::new(cfg, None, Book::new(SEQ, [2; 6], members), SEQ.port(), true)
    }

    fn data_frame(from: &MemberAddr, q: u64) -> Vec<u8> {
        data_frame_in(from, q, GROUP, None)
    }

    /// A Data frame of `session`, tagged under `key` when given.
    fn data_frame_in(
        from: &MemberAddr,
        q: u64,
        session: u64,
        key: Option<&dataplane::auth::SessionKey>,
    ) -> Vec<u8> {
        let payload = [q as u8; 64];
        let m = Message::Data(
            data::Repr {
                sender: from.id,
                sender_seq: q,
                barrier: 0,
                mode: Mode::Atomic,
            },
            &payload,
        );
        let mut msg = vec![0u8; 256];
        let n = m.emit(session, &mut msg).unwrap();
        if let Some(k) = key {
            k.sign(&mut msg[..n]).unwrap();
        }
        let spec = FrameSpec {
            src_mac: [3; 6],
            dst_mac: [2; 6],
            src_ip: *from.addr.ip(),
            dst_ip: *SEQ.ip(),
            src_port: from.addr.port(),
            dst_port: SEQ.port(),
        };
        let mut buf = vec![0u8; 2048];
        let len = write_udp_frame(&mut buf, &spec, &msg[..n]).unwrap();
        buf.truncate(len);
        buf
    }

    /// One datagram carrying every message of `msgs` back to back.
    fn packed_frame(from: &MemberAddr, msgs: &[Vec<u8>]) -> Vec<u8> {
        let spec = FrameSpec {
            src_mac: [3; 6],
            dst_mac: [2; 6],
            src_ip: *from.addr.ip(),
            dst_ip: *SEQ.ip(),
            src_port: from.addr.port(),
            dst_port: SEQ.port(),
        };
        let mut buf = vec![0u8; 2048];
        let len = write_udp_frame(&mut buf, &spec, &msgs.concat()).unwrap();
        buf.truncate(len);
        buf
    }

    /// A Data message (the UDP payload) of `from`'s `q`, tagged under `key`
    /// when given.
    fn data_message(
        from: &MemberAddr,
        q: u64,
        key: Option<&dataplane::auth::SessionKey>,
    ) -> Vec<u8> {
        let f = data_frame_in(from, q, GROUP, key);
        UdpFrame::parse(&f[..]).unwrap().payload().to_vec()
    }

    /// The group's key, another key, and a session table that requires
    /// tags and knows only the group's key.
    fn group_keys() -> (
        dataplane::auth::SessionKey,
        dataplane::auth::SessionKey,
        Sessions,
    ) {
        use dataplane::auth::{AuthPolicy, SessionKey};
        let key = SessionKey::from_bytes([5; 32]);
        let mut sessions = Sessions::new(AuthPolicy::Required);
        sessions.insert(GROUP, key.clone());
        (key, SessionKey::from_bytes([6; 32]), sessions)
    }

    #[test]
    fn messages_packed_in_one_datagram_are_each_checked_and_stamped() {
        let (key, other, sessions) = group_keys();
        let members = [member(1), member(2)];
        let mut svc = service(&members).with_sessions(sessions);
        let mut io = MemIo::new(MemConfig::default()).unwrap();
        // Four messages in one datagram, the third tagged under another
        // key, then a tail that is no message.
        let mut msgs: Vec<Vec<u8>> = vec![
            data_message(&members[0], 1, Some(&key)),
            data_message(&members[0], 2, Some(&key)),
            data_message(&members[0], 3, Some(&other)),
            data_message(&members[0], 4, Some(&key)),
        ];
        msgs.push(vec![0xab; 7]);
        io.inject(&packed_frame(&members[0], &msgs)).unwrap();
        let sent = step(&mut svc, &mut io);
        assert_eq!(svc.core().counters().stamped, 3, "{:?}", svc.counters());
        assert_eq!(svc.counters().rx_frames, 1);
        assert_eq!(svc.counters().rx_messages, 3);
        // The other key's message and the tail (no header to check).
        assert_eq!(svc.counters_json()["auth"]["bad_tag"], 2);
        // One group frame of the three, one copy per member.
        assert_eq!(sent.len(), 2);
        for f in &sent {
            let f = UdpFrame::parse(&f[..]).unwrap();
            key.verify(f.payload()).expect("tagged");
            let (_, m) = Message::parse_nfv(f.payload()).unwrap();
            let Message::Batch(r, e) = m else {
                panic!("not a batch: {m:?}")
            };
            assert_eq!(r.count, 3);
            let qs: Vec<u64> = e.map(|(e, _)| e.sender_seq).collect();
            assert_eq!(qs, [1, 2, 4]);
        }
    }

    /// Runs one burst through the service, then its emits; returns every
    /// frame sent.
    fn step(svc: &mut SeqService, io: &mut MemIo) -> Vec<Vec<u8>> {
        let now = Instant::now();
        let mut b = io.new_batch();
        if io.recv(&mut b).unwrap() > 0 {
            svc.process(now, &mut b);
            io.send(&mut b).unwrap();
        }
        let mut out = io.new_batch();
        for _ in 0..8 {
            emit_into(io, &mut out, now, svc);
            while !out.is_empty() {
                io.send(&mut out).unwrap();
            }
        }
        let mut sent = Vec::new();
        io.drain_sent(|f| sent.push(f.to_vec()));
        sent
    }

    #[test]
    fn a_stamped_message_goes_to_every_member_in_a_valid_frame() {
        let members = [member(1), member(2), member(3)];
        let mut svc = service(&members);
        let mut io = MemIo::new(MemConfig::default()).unwrap();
        for q in 1..=5 {
            io.inject(&data_frame(&members[0], q)).unwrap();
        }
        let sent = step(&mut svc, &mut io);
        assert_eq!(svc.core().counters().stamped, 5);
        // One batch of five, one copy per member, written over the burst.
        assert_eq!(sent.len(), 3, "{:?}", svc.counters());
        assert_eq!(svc.counters().tx_in_place, 3);
        let mut to: Vec<SocketAddrV4> = Vec::new();
        for f in &sent {
            let f = UdpFrame::parse(&f[..]).unwrap();
            f.check_udp_checksum().expect("UDP checksum");
            assert_eq!(f.src(), SEQ);
            assert_eq!(f.ethernet().dst_addr(), [3; 6], "next hop learned");
            let (_, m) = Message::parse_nfv(f.payload()).unwrap();
            let Message::Batch(r, _) = m else {
                panic!("not a batch: {m:?}")
            };
            assert_eq!((r.epoch, r.first), (1, 1));
            to.push(f.dst());
        }
        to.sort();
        assert_eq!(to, members.iter().map(|m| m.addr).collect::<Vec<_>>());
        assert_eq!(io.free_buffers(), MemConfig::default().chunks as usize);
    }

    #[test]
    fn with_auth_required_only_tagged_messages_of_the_group_are_stamped() {
        let (key, other, sessions) = group_keys();
        let members = [member(1), member(2)];
        let mut svc = service(&members).with_sessions(sessions);
        let mut io = MemIo::new(MemConfig::default()).unwrap();
        // Untagged, tagged under another key, another session's.
        io.inject(&data_frame(&members[0], 1)).unwrap();
        io.inject(&data_frame_in(&members[0], 1, GROUP, Some(&other)))
            .unwrap();
        io.inject(&data_frame_in(&members[0], 1, GROUP + 1, Some(&other)))
            .unwrap();
        assert!(
            step(&mut svc, &mut io).is_empty(),
            "refusals are not answered"
        );
        assert_eq!(svc.core().counters().stamped, 0);
        assert_eq!(svc.counters().rx_messages, 0);
        let c = svc.counters_json();
        assert_eq!(c["auth"]["untagged"], 1, "{c}");
        assert_eq!(c["auth"]["bad_tag"], 1, "{c}");
        assert_eq!(c["auth"]["unknown_session"], 1, "{c}");
        assert_eq!(c["auth"]["passed"], 0, "{c}");

        // Tagged under the group's key: stamped, and what goes out is
        // tagged under it too.
        io.inject(&data_frame_in(&members[0], 1, GROUP, Some(&key)))
            .unwrap();
        let sent = step(&mut svc, &mut io);
        assert_eq!(svc.core().counters().stamped, 1);
        assert_eq!(sent.len(), 2);
        for f in &sent {
            let f = UdpFrame::parse(&f[..]).unwrap();
            f.check_udp_checksum().expect("UDP checksum over the tag");
            key.verify(f.payload())
                .expect("tagged under the group's key");
            assert!(other.verify(f.payload()).is_err());
        }
        assert_eq!(svc.counters_json()["auth"]["passed"], 1);
    }

    #[test]
    fn junk_is_counted_and_membership_follows_the_book() {
        let mut svc = service(&[member(1)]);
        let mut io = MemIo::new(MemConfig::default()).unwrap();
        let mut junk = data_frame(&member(1), 1);
        junk[UDP_PAYLOAD_OFFSET] ^= 0xff; // breaks the magic and the checksum
        io.inject(&junk).unwrap();
        io.inject(&[0u8; 20]).unwrap();
        assert!(step(&mut svc, &mut io).is_empty());
        assert_eq!(svc.counters().malformed, 2);

        svc.book.add(member(2));
        assert!(svc.book.remove(ProcessId(1)));
        assert!(!svc.book.remove(ProcessId(1)));
        io.inject(&data_frame(&member(2), 1)).unwrap();
        let sent = step(&mut svc, &mut io);
        assert_eq!(sent.len(), 1);
        assert_eq!(UdpFrame::parse(&sent[0][..]).unwrap().dst(), member(2).addr);
    }

    #[test]
    fn with_zero_udp_checksums_frames_go_out_without_and_come_in_checked() {
        let members = [member(1), member(2)];
        let mut svc = service(&members).with_zero_udp_checksums(true);
        let mut io = MemIo::new(MemConfig::default()).unwrap();
        io.inject(&data_frame(&members[0], 1)).unwrap();
        let sent = step(&mut svc, &mut io);
        assert_eq!(sent.len(), 2, "one copy per member");
        for f in &sent {
            assert_eq!(&f[UDP_AT + 6..UDP_AT + 8], &[0, 0], "no UDP checksum");
            let u = UdpFrame::parse(&f[..]).unwrap();
            assert!(matches!(
                Message::parse_nfv(u.payload()),
                Ok((_, Message::Batch(..)))
            ));
        }
        // What comes in is still checked: a payload bit flipped is
        // refused, not stamped.
        let mut bad = data_frame(&members[0], 2);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        io.inject(&bad).unwrap();
        let before = svc.counters();
        assert!(step(&mut svc, &mut io).is_empty());
        assert_eq!(svc.counters().malformed, before.malformed + 1);
        assert_eq!(svc.core().counters().stamped, 1);
    }

    #[test]
    fn with_multicast_a_group_frame_is_sent_once() {
        let members = [member(1), member(2), member(3)];
        let group = SocketAddrV4::new(Ipv4Addr::new(239, 8, 0, 1), 7599);
        let cfg = SequencerConfig::new(ProcessId(100), GROUP);
        let book = Book::new(SEQ, [2; 6], &members).with_multicast(group);
        let mut svc = SeqService::new(cfg, None, book, SEQ.port(), true);
        let mut io = MemIo::new(MemConfig::default()).unwrap();
        for q in 1..=5 {
            io.inject(&data_frame(&members[0], q)).unwrap();
        }
        let sent = step(&mut svc, &mut io);
        assert_eq!(sent.len(), 1);
        let f = UdpFrame::parse(&sent[0][..]).unwrap();
        f.check_udp_checksum().expect("UDP checksum");
        assert_eq!(f.dst(), group);
        assert_eq!(
            f.ethernet().dst_addr(),
            [0x01, 0x00, 0x5e, 0x08, 0x00, 0x01]
        );
    }

    #[test]
    fn control_operations_change_the_group_and_the_epoch() {
        use dataplane::control::{CallError, ControlSocket, call};
        let dir = std::env::temp_dir().join(format!("seq-svc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.sock");
        let (_sock, inbox) = ControlSocket::bind(&path).unwrap();
        let mut svc = service(&[member(1)]).with_control(inbox);
        let mut io = MemIo::new(MemConfig::default()).unwrap();
        let p = path.clone();
        let client = std::thread::spawn(move || {
            let ask = |v: Json| call(&p, &v);
            let g = ask(json!({"op": "add", "process": 2, "addr": "10.0.2.2:7600"})).unwrap();
            assert_eq!(g["members"].as_array().unwrap().len(), 2);
            let g = ask(json!({"op": "remove", "process": 1})).unwrap();
            assert_eq!(
                g["members"],
                json!([{"process": 2, "addr": "10.0.2.2:7600"}])
            );
            assert!(matches!(
                ask(json!({"op": "remove", "process": 1})),
                Err(CallError::Refused(_))
            ));
            assert!(ask(json!({"op": "add", "process": 3, "addr": "nowhere"})).is_err());
            assert!(
                ask(json!({"op": "replace", "epoch": 1})).is_err(),
                "not above"
            );
            let g = ask(json!({"op": "replace", "epoch": 5})).unwrap();
            assert_eq!(
                (g["epoch"].clone(), g["recovering"].clone()),
                (json!(5), json!(true))
            );
            assert_eq!(ask(json!({"op": "health"})).unwrap()["status"], "ok");
            assert!(ask(json!({"op": "counters"})).unwrap()["stamped"].is_u64());
            assert!(ask(json!({"op": "launch"})).is_err());
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while !client.is_finished() {
            assert!(Instant::now() < deadline, "control operations not answered");
            step(&mut svc, &mut io);
            std::thread::sleep(HOUSEKEEPING);
        }
        client.join().unwrap();
        assert_eq!(svc.book().ids(), [ProcessId(2)]);
        assert_eq!(svc.core().epoch(), 5);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn addresses_parse_with_a_default_port() {
        assert_eq!(
            parse_addr("10.1.2.3").unwrap(),
            SocketAddrV4::new(Ipv4Addr::new(10, 1, 2, 3), DEFAULT_PORT)
        );
        assert_eq!(parse_addr("10.1.2.3:9").unwrap().port(), 9);
        assert!(parse_addr("nope").is_err());
    }
}
