//! The failure detector as a network function: the thin shell that runs a
//! [`Detector`] on a dataplane worker.
//!
//! [`FdService`] implements [`dataplane::runtime::Vnf`]. Received bursts
//! are parsed in place: heartbeats go to the detector as one batch (no
//! reply, nothing allocated); requests (add, remove, query, subscribe) are
//! answered through an outbox that [`Vnf::emit`] writes into fresh frames,
//! as are the state changes pushed to subscribers. Between bursts, on a
//! one-millisecond housekeeping tick, it reads the other evidence: passive
//! liveness ([`PassiveLiveness`], the XDP program's last-seen map) and link
//! events ([`LinkEvents`], netlink), and answers the control socket.
//!
//! The two evidence sources are traits so that the shell stays testable on
//! the in-memory backend; `main.rs` plugs in the eBPF and netlink ones.
//!
//! Times are nanoseconds of `CLOCK_MONOTONIC`, the clock the XDP program's
//! `bpf_ktime_get_ns` reads, so passive timestamps need no conversion.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use dataplane::auth::Sessions;
use dataplane::control::{Inbox, Request};
use dataplane::io::Batch;
use dataplane::runtime::{Emit, Vnf};
use dataplane::wire::{FrameSpec, UdpFrame, write_udp_frame};
use serde_json::{Value, json};

use crate::wire::{self, Message, Target, ack, event, reply};
use crate::{
    Cause, Config, Detector, Evidence, FdError, GroupId, LinkId, ProcessId, ProcessInfo,
    ProcessSpec, State, Time, Transition,
};

/// The direct channel's default UDP port.
pub const DEFAULT_PORT: u16 = 7300;
/// How often evidence sources and the control socket are read.
pub const HOUSEKEEPING: Duration = Duration::from_millis(1);
/// Transitions kept for the `history` control operation.
const HISTORY: usize = 4096;
/// Messages waiting to be sent; past this, new ones are dropped and counted.
const OUTBOX: usize = 65_536;
/// Subscribers on the direct channel.
const MAX_SUBSCRIBERS: usize = 1024;

/// The XDP program's record of when each watched source last sent anything.
pub trait PassiveLiveness: Send {
    /// Starts recording packets from `addr`; returns its slot.
    fn watch(&mut self, addr: Ipv4Addr) -> Result<u32, String>;
    /// Stops recording packets from `addr`.
    fn unwatch(&mut self, addr: Ipv4Addr);
    /// When the source in `slot` last sent a packet (ns, `CLOCK_MONOTONIC`).
    fn last_seen(&self, slot: u32) -> Option<u64>;
    /// The port (interface index) the source in `slot` was last seen on:
    /// where a process added without a link sits.
    fn last_port(&self, slot: u32) -> Option<u32>;
}

/// Link-state changes of the interfaces processes sit behind.
pub trait LinkEvents: Send {
    /// Hands every change since the last call to `on(ifindex, up)`.
    fn poll(&mut self, on: &mut dyn FnMut(u32, bool));
    /// The index of the interface called `name`, for requests that name it.
    fn ifindex(&self, name: &str) -> Option<u32>;
}

pub use dataplane::time::Clock;

/// `CLOCK_MONOTONIC` now, in nanoseconds.
pub use dataplane::time::monotonic_nanos as monotonic_ns;

/// Counters of the shell, beside the detector's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceCounters {
    /// Frames that were not a valid failure-detector message for our port.
    pub malformed: u64,
    /// Valid messages that a detector does not take (replies, events).
    pub unexpected: u64,
    /// Requests answered on the direct channel.
    pub requests: u64,
    /// State changes sent to direct-channel subscribers.
    pub events_sent: u64,
    /// Messages dropped because the outbox was full.
    pub outbox_dropped: u64,
    /// Times the detector found itself woken later than [`LOCAL_PAUSE`]
    /// past a suspicion deadline, and held its judgement (see
    /// [`FdService`]).
    pub local_pauses: u64,
}

/// How late past a suspicion deadline the service may run before it takes
/// the delay for a pause of its own (descheduled, host stalled) rather than
/// the processes'. Serving a burst takes microseconds: a millisecond late
/// means the worker, or the host with its senders and its kernel, stood
/// still.
pub const LOCAL_PAUSE: Duration = Duration::from_millis(1);
/// The longest judgement is held after a local pause.
pub const MAX_PAUSE_GRACE: Duration = Duration::from_secs(1);

/// A direct-channel subscriber.
#[derive(Debug, Clone, Copy)]
struct Subscriber {
    to: FrameSpec,
    session: u64,
    target: Target,
}

/// A message to send: where, and the whole UDP payload.
#[derive(Debug)]
struct Outgoing {
    to: FrameSpec,
    payload: Vec<u8>,
}

/// A process watched passively.
#[derive(Debug, Clone, Copy)]
struct Watched {
    id: ProcessId,
    addr: Ipv4Addr,
    slot: u32,
    fed: u64,
    /// Added without a link: take the port its traffic comes through.
    learn_link: bool,
}

/// The failure-detector VNF.
pub struct FdService {
    det: Detector,
    clock: Clock,
    port: u16,
    inbox: Option<Inbox>,
    passive: Option<Box<dyn PassiveLiveness>>,
    links: Option<Box<dyn LinkEvents>>,
    watched: Vec<Watched>,
    subscribers: Vec<Subscriber>,
    outbox: VecDeque<Outgoing>,
    history: VecDeque<Transition>,
    next_housekeeping: Instant,
    next_timeout: Option<Instant>,
    /// After a local pause, suspicion timers wait until then.
    pause_grace: Option<Instant>,
    heartbeats: Vec<(ProcessId, Time)>,
    counters: ServiceCounters,
    sessions: Sessions,
}

impl std::fmt::Debug for FdService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FdService")
            .field("processes", &self.det.len())
            .field("subscribers", &self.subscribers.len())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl FdService {
    /// A service for UDP `port` with `default` as the configuration of
    /// processes added without one.
    pub fn new(default: Config, port: u16) -> Result<Self, FdError> {
        Ok(Self {
            det: Detector::new(default)?,
            clock: Clock::new(),
            port,
            inbox: None,
            passive: None,
            links: None,
            watched: Vec::new(),
            subscribers: Vec::new(),
            outbox: VecDeque::new(),
            history: VecDeque::with_capacity(HISTORY),
            next_housekeeping: Instant::now(),
            next_timeout: None,
            pause_grace: None,
            heartbeats: Vec::with_capacity(dataplane::io::MAX_BURST),
            counters: ServiceCounters::default(),
            sessions: Sessions::default(),
        })
    }

    /// Checks direct-channel messages against these session keys (and tags
    /// what it sends under them); without, everything is accepted.
    pub fn with_sessions(mut self, sessions: Sessions) -> Self {
        self.sessions = sessions;
        self
    }

    /// Answers requests from this control socket inbox and publishes state
    /// changes to it.
    pub fn with_control(mut self, inbox: Inbox) -> Self {
        self.inbox = Some(inbox);
        self
    }

    /// Reads passive liveness from `source`.
    pub fn with_passive(mut self, source: Box<dyn PassiveLiveness>) -> Self {
        self.passive = Some(source);
        self
    }

    /// Holds judgement at most this long while every process behind a
    /// link is silent at once ([`Detector::set_max_hold`]).
    pub fn with_max_hold(mut self, max_hold: Duration) -> Self {
        self.det.set_max_hold(max_hold);
        self
    }

    /// Follows link state from `source`.
    pub fn with_links(mut self, source: Box<dyn LinkEvents>) -> Self {
        self.links = Some(source);
        self
    }

    /// The detector.
    pub fn detector(&self) -> &Detector {
        &self.det
    }

    /// The shell's counters.
    pub fn counters(&self) -> ServiceCounters {
        self.counters
    }

    /// The clock the service stamps evidence with.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// Adds a process; with `addr`, also watches its traffic passively
    /// (when a passive source is plugged in).
    pub fn add(
        &mut self,
        spec: ProcessSpec,
        addr: Option<Ipv4Addr>,
        now: Instant,
    ) -> Result<(), String> {
        if addr.is_some() && self.passive.is_none() {
            return Err(
                "passive liveness is not enabled on this VNF (start it with --passive)".into(),
            );
        }
        self.det
            .add_process(spec, self.clock.time(now))
            .map_err(|e| e.to_string())?;
        if let (Some(addr), Some(p)) = (addr, self.passive.as_mut()) {
            match p.watch(addr) {
                Ok(slot) => self.watched.push(Watched {
                    id: spec.id,
                    addr,
                    slot,
                    fed: 0,
                    learn_link: spec.link.is_none(),
                }),
                Err(e) => {
                    let _ = self.det.remove_process(spec.id);
                    return Err(format!("watching {addr}: {e}"));
                }
            }
        }
        self.after_input();
        Ok(())
    }

    /// Stops monitoring a process (and watching its traffic).
    pub fn remove(&mut self, id: ProcessId) -> Result<(), FdError> {
        self.det.remove_process(id)?;
        if let Some(i) = self.watched.iter().position(|w| w.id == id) {
            let w = self.watched.swap_remove(i);
            if let Some(p) = self.passive.as_mut() {
                p.unwatch(w.addr);
            }
        }
        self.subscribers
            .retain(|s| !matches!(s.target, Target::One(p) if p == id));
        self.after_input();
        Ok(())
    }

    /// Re-reads the detector's next deadline (which needs `&mut`) so that
    /// [`Vnf::next_wakeup`] can answer from `&self`.
    fn after_input(&mut self) {
        self.next_timeout = self.det.poll_timeout().map(|t| self.clock.instant(t));
    }

    /// Handles one frame; heartbeats are collected for one batched call.
    fn handle_frame(&mut self, frame: &[u8], now: Time) {
        let Ok(f) = UdpFrame::parse(frame) else {
            self.counters.malformed += 1;
            return;
        };
        if f.dst().port() != self.port || f.check_udp_checksum().is_err() {
            self.counters.malformed += 1;
            return;
        }
        if self.sessions.admit(f.payload()).is_err() {
            // Counted by the session table; nothing goes back to a sender
            // that could not prove its session.
            return;
        }
        if let Some(process) = Message::heartbeat_process(f.payload()) {
            self.heartbeats.push((process, now));
            return;
        }
        let (nfv, msg) = match Message::parse_nfv(f.payload()) {
            Ok(m) => m,
            Err(_) => {
                self.counters.malformed += 1;
                return;
            }
        };
        let from = f.spec().reversed();
        let ack = |request_id, status| Message::Ack(ack::Repr { request_id, status });
        match msg {
            Message::Heartbeat(h) => self.heartbeats.push((h.process, now)),
            Message::Add(a) => {
                let status = match self.det.add_process(a.spec, now) {
                    Ok(()) => ack::Status::Ok,
                    Err(e) => status_of(&e),
                };
                self.queue(from, nfv.session_id, &ack(a.request_id, status));
            }
            Message::Remove(r) => {
                let status = match self.remove(r.process) {
                    Ok(()) => ack::Status::Ok,
                    Err(e) => status_of(&e),
                };
                self.queue(from, nfv.session_id, &ack(r.request_id, status));
            }
            Message::Query(q) => self.answer_query(from, nfv.session_id, q),
            Message::Subscribe(s) => {
                let status = self.subscribe(from, nfv.session_id, s);
                self.queue(from, nfv.session_id, &ack(s.request_id, status));
            }
            Message::QueryReply(..) | Message::StateChange(_) | Message::Ack(_) => {
                self.counters.unexpected += 1;
            }
        }
    }

    fn subscribe(
        &mut self,
        from: FrameSpec,
        session: u64,
        s: wire::subscribe::Repr,
    ) -> ack::Status {
        let same = |x: &Subscriber| {
            x.to.dst_ip == from.dst_ip && x.to.dst_port == from.dst_port && x.target == s.target
        };
        if s.unsubscribe {
            self.subscribers.retain(|x| !same(x));
            return ack::Status::Ok;
        }
        if let Target::One(id) = s.target
            && self.det.state(id).is_none()
        {
            return ack::Status::UnknownProcess;
        }
        if self.subscribers.iter().any(same) {
            return ack::Status::DuplicateProcess;
        }
        if self.subscribers.len() >= MAX_SUBSCRIBERS {
            return ack::Status::Full;
        }
        self.subscribers.push(Subscriber {
            to: from,
            session,
            target: s.target,
        });
        ack::Status::Ok
    }

    fn answer_query(&mut self, to: FrameSpec, session: u64, q: wire::query::Repr) {
        self.counters.requests += 1;
        let entries: Vec<reply::EntryRepr> = match q.target {
            Target::One(id) => self.det.process(id).map(entry).into_iter().collect(),
            Target::All => self.det.processes().map(entry).collect(),
        };
        // One page per frame: what fits after the Ethernet/IPv4/UDP and
        // NFVinc headers of a standard 1500-byte MTU.
        const PAGE_ROOM: usize = 1500 - 28 - dataplane::wire::nfvinc::HEADER_LEN;
        let mut it = entries.into_iter().peekable();
        loop {
            let mut payload = vec![0u8; PAGE_ROOM];
            let n = match reply::emit_from(q.request_id, &mut it, &mut payload) {
                Ok(n) => n,
                Err(_) => return,
            };
            payload.truncate(n);
            self.queue_payload(to, session, wire::MsgType::QueryReply, payload);
            if it.peek().is_none() {
                return;
            }
        }
    }

    fn queue(&mut self, to: FrameSpec, session: u64, msg: &Message<'_>) {
        self.counters.requests += u64::from(matches!(msg, Message::Ack(_)));
        let mut payload = vec![0u8; dataplane::wire::nfvinc::HEADER_LEN + msg.payload_len()];
        if msg.emit(session, &mut payload).is_ok() {
            self.sessions.sign(&mut payload);
            self.push_out(Outgoing { to, payload });
        }
    }

    fn queue_payload(&mut self, to: FrameSpec, session: u64, ty: wire::MsgType, body: Vec<u8>) {
        use dataplane::wire::nfvinc::{HEADER_LEN, NfvHeader, NfvRepr, Service};
        let mut payload = vec![0u8; HEADER_LEN + body.len()];
        let repr = NfvRepr {
            service: Service::Fd,
            msg_type: ty.into(),
            session_id: session,
            tag: None,
            payload_len: body.len(),
        };
        if repr
            .emit(&mut NfvHeader::new_unchecked(&mut payload[..]))
            .is_ok()
        {
            payload[HEADER_LEN..].copy_from_slice(&body);
            self.sessions.sign(&mut payload);
            self.push_out(Outgoing { to, payload });
        }
    }

    fn push_out(&mut self, o: Outgoing) {
        if self.outbox.len() >= OUTBOX {
            self.counters.outbox_dropped += 1;
        } else {
            self.outbox.push_back(o);
        }
    }

    /// Takes the detector's transitions: history, control-socket event,
    /// and a message to each direct-channel subscriber that wants it.
    fn drain_transitions(&mut self) {
        while let Some(t) = self.det.poll_event() {
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(t);
            if let Some(inbox) = &self.inbox {
                inbox.publish(transition_json(&t));
            }
            let msg = Message::StateChange(event::Repr {
                seq: t.seq,
                process: t.process,
                from: t.from,
                to: t.to,
                at: t.at,
                cause: t.cause,
            });
            for i in 0..self.subscribers.len() {
                let s = self.subscribers[i];
                if matches!(s.target, Target::All)
                    || matches!(s.target, Target::One(p) if p == t.process)
                {
                    self.counters.events_sent += 1;
                    self.queue(s.to, s.session, &msg);
                }
            }
        }
    }

    /// Reads passive liveness, link events and control requests.
    fn housekeeping(&mut self, now: Instant) {
        if let Some(p) = &self.passive {
            for w in &mut self.watched {
                if let Some(seen) = p.last_seen(w.slot)
                    && seen > w.fed
                {
                    if w.fed == 0 && w.learn_link {
                        // Added without a link: the port its first packet
                        // came through is where it sits.
                        if let Some(port) = p.last_port(w.slot) {
                            let t = self.clock.time(now);
                            let _ = self.det.set_link(w.id, Some(LinkId(port)), t);
                            tracing::info!(process = w.id.0, port, "link learned from traffic");
                        }
                    }
                    w.fed = seen;
                    // Unknown only if removed meanwhile: nothing to do.
                    let _ = self.det.traffic_seen(w.id, Time::from_nanos(seen));
                }
            }
        }
        if let Some(mut links) = self.links.take() {
            let t = self.clock.time(now);
            links.poll(&mut |ifindex, up| {
                let link = LinkId(ifindex);
                if up {
                    self.det.link_up(link, t);
                } else {
                    let n = self.det.link_down(link, t);
                    tracing::info!(ifindex, processes = n, "link down");
                }
            });
            self.links = Some(links);
        }
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
            "health" => Ok(json!({"status": "ok", "processes": self.det.len()})),
            "counters" => Ok(self.counters_json()),
            "add" => self.control_add(r.body(), now),
            "remove" => process_arg(r.body()).and_then(|id| {
                self.remove(id)
                    .map(|()| json!({"removed": id.0}))
                    .map_err(|e| e.to_string())
            }),
            "query" => process_arg(r.body()).and_then(|id| {
                self.det
                    .process(id)
                    .map(|p| info_json(&p))
                    .ok_or_else(|| format!("process {} is not monitored", id.0))
            }),
            "list" => Ok(Value::Array(
                self.det.processes().map(|p| info_json(&p)).collect(),
            )),
            "history" => Ok(Value::Array(
                self.history.iter().map(transition_json).collect(),
            )),
            other => Err(format!(
                "unknown op {other:?}: expected health, counters, add, remove, query, list, history, session.add or session.remove"
            )),
        };
        r.answer(result);
    }

    fn control_add(&mut self, body: &Value, now: Instant) -> Result<Value, String> {
        let id = process_arg(body)?;
        let mut spec = ProcessSpec::new(id);
        match body.get("link") {
            None | Some(Value::Null) => {}
            Some(Value::String(name)) => {
                let links = self.links.as_ref().ok_or(
                    "no link events on this VNF (start it with --links) to place a process behind",
                )?;
                let i = links
                    .ifindex(name)
                    .ok_or_else(|| format!("no interface {name:?} among the watched links"))?;
                spec = spec.behind(LinkId(i));
            }
            Some(v) => {
                let i = v
                    .as_u64()
                    .and_then(|i| u32::try_from(i).ok())
                    .ok_or("\"link\" must be an interface name or index")?;
                spec = spec.behind(LinkId(i));
            }
        }
        if let Some(g) = body.get("group").filter(|g| !g.is_null()) {
            let g = g
                .as_u64()
                .and_then(|g| u32::try_from(g).ok())
                .ok_or("\"group\" must be a 32-bit number")?;
            spec = spec.in_group(GroupId(g));
        }
        let ms = |k: &str| -> Result<Option<Duration>, String> {
            match body.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_f64()
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .map(|x| Some(Duration::from_secs_f64(x / 1000.0)))
                    .ok_or(format!(
                        "\"{k}\" must be a non-negative number of milliseconds"
                    )),
            }
        };
        let (interval, margin) = (ms("interval_ms")?, ms("margin_ms")?);
        let window = match body.get("window") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .and_then(|w| u32::try_from(w).ok())
                    .ok_or("\"window\" must be a number")?,
            ),
        };
        if interval.is_some() || margin.is_some() || window.is_some() {
            let d = self.det.default_config();
            let mut c = Config::new(interval.unwrap_or(d.interval), margin.unwrap_or(d.margin));
            c.window = window.unwrap_or(d.window);
            c.validate().map_err(|e| e.to_string())?;
            spec = spec.with_config(c);
        }
        let addr = match body.get("addr") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_str()
                    .and_then(|s| s.parse::<Ipv4Addr>().ok())
                    .ok_or("\"addr\" must be an IPv4 address")?,
            ),
        };
        self.add(spec, addr, now)?;
        let info = self.det.process(id).map(|p| info_json(&p));
        Ok(info.unwrap_or(Value::Null))
    }

    fn counters_json(&self) -> Value {
        let d = self.det.counters();
        let s = self.counters;
        json!({
            "processes": self.det.len(),
            "heartbeats": d.heartbeats,
            "traffic": d.traffic,
            "ignored": d.ignored,
            "unknown": d.unknown,
            "transitions": d.transitions,
            "shared_silences": d.shared_silences,
            "held": d.held,
            "malformed": s.malformed,
            "unexpected": s.unexpected,
            "requests": s.requests,
            "events_sent": s.events_sent,
            "outbox_dropped": s.outbox_dropped,
            "local_pauses": s.local_pauses,
            "subscribers": self.subscribers.len(),
            "events_dropped": self.inbox.as_ref().map_or(0, Inbox::dropped_events),
            "auth": self.sessions.counters_json(),
        })
    }
}

impl Vnf for FdService {
    fn process(&mut self, now: Instant, burst: &mut Batch) {
        let t = self.clock.time(now);
        // Each frame is read in place; none goes back as it is (answers go
        // through the outbox), so the whole burst is then dropped.
        for i in 0..burst.len() {
            self.handle_frame(burst.frame(i), t);
        }
        burst.clear();
        if !self.heartbeats.is_empty() {
            self.det.heartbeats(&self.heartbeats);
            self.heartbeats.clear();
        }
        self.drain_transitions();
        self.after_input();
    }

    /// Suspicion timers judge by the heartbeats that have arrived: after a
    /// stall, the queued ones are read before any timer fires.
    fn wakeups_wait_for_backlog(&self) -> bool {
        true
    }

    fn next_wakeup(&self) -> Option<Instant> {
        if !self.outbox.is_empty() {
            return Some(self.next_housekeeping.min(Instant::now()));
        }
        let timeout = match (self.next_timeout, self.pause_grace) {
            (Some(t), Some(g)) => Some(t.max(g)),
            (t, _) => t,
        };
        Some(match timeout {
            Some(t) => t.min(self.next_housekeeping),
            None => self.next_housekeeping,
        })
    }

    fn emit(&mut self, now: Instant, out: &mut Emit<'_>) {
        if now >= self.next_housekeeping {
            self.housekeeping(now);
            self.next_housekeeping = now + HOUSEKEEPING;
        }
        if let Some(due) = self.next_timeout.filter(|t| *t <= now) {
            self.serve_timeout(due, now);
        }
        self.drain_transitions();
        self.after_input();
        while let Some(o) = self.outbox.front() {
            let Some(mut f) = out.frame() else { return };
            let room = f.room();
            let written = f
                .set_len(room)
                .ok()
                .and_then(|()| write_udp_frame(f.data_mut(), &o.to, &o.payload).ok());
            // A frame too small for the message: drop it rather than stall.
            let _ = f.set_len(written.unwrap_or(0));
            if written.is_none() {
                self.counters.outbox_dropped += 1;
            }
            self.outbox.pop_front();
        }
    }
}

impl FdService {
    /// Serves a suspicion deadline `due` that has passed, unless this
    /// service was itself paused: woken more than [`LOCAL_PAUSE`] late, it
    /// cannot tell late heartbeats from heartbeats that the pause (of this
    /// process, or of the whole host, senders included) kept from being
    /// sent or read. It then holds its judgement for twice as long plus
    /// one default heartbeat interval (at most [`MAX_PAUSE_GRACE`]),
    /// reading what arrives meanwhile, as Cassandra's detector ignores
    /// intervals after a local pause: the senders and the kernel paths the
    /// heartbeats take were held up too, and catch up after this process
    /// does, each sender within its period. A crash during a pause is
    /// detected that much later.
    fn serve_timeout(&mut self, due: Instant, now: Instant) {
        match self.pause_grace {
            Some(g) if now < g => return,
            Some(_) => self.pause_grace = None,
            None => {
                let late = now.saturating_duration_since(due);
                if late > LOCAL_PAUSE {
                    self.counters.local_pauses += 1;
                    let hold = 2 * late + self.det.default_config().interval;
                    self.pause_grace = Some(now + hold.min(MAX_PAUSE_GRACE));
                    tracing::debug!(?late, ?hold, "woken late: judgement held");
                    return;
                }
            }
        }
        self.det.handle_timeout(self.clock.time(now));
    }
}

fn status_of(e: &FdError) -> ack::Status {
    match e {
        FdError::UnknownProcess(_) => ack::Status::UnknownProcess,
        FdError::DuplicateProcess(_) => ack::Status::DuplicateProcess,
        FdError::Config(_) => ack::Status::BadConfig,
        FdError::Full => ack::Status::Full,
    }
}

fn entry(p: ProcessInfo) -> reply::EntryRepr {
    reply::EntryRepr {
        process: p.id,
        state: p.state,
        link: p.link,
        group: p.group,
        since: p.since,
    }
}

fn process_arg(body: &Value) -> Result<ProcessId, String> {
    body.get("process")
        .and_then(Value::as_u64)
        .map(ProcessId)
        .ok_or_else(|| "\"process\" must be an unsigned 64-bit number".into())
}

/// The JSON name of a state.
pub fn state_name(s: State) -> &'static str {
    match s {
        State::Correct => "correct",
        State::Suspected => "suspected",
        State::Unreachable => "unreachable",
    }
}

/// The JSON name of a cause.
pub fn cause_name(c: Cause) -> &'static str {
    match c {
        Cause::Timeout => "timeout",
        Cause::Heartbeat => "heartbeat",
        Cause::Traffic => "traffic",
        Cause::LinkDown => "link_down",
        Cause::LinkUp(Evidence::Heartbeat) => "link_up_heartbeat",
        Cause::LinkUp(Evidence::Traffic) => "link_up_traffic",
    }
}

fn transition_json(t: &Transition) -> Value {
    json!({
        "seq": t.seq,
        "process": t.process.0,
        "from": state_name(t.from),
        "to": state_name(t.to),
        "at_ns": t.at.as_nanos(),
        "cause": cause_name(t.cause),
    })
}

fn info_json(p: &ProcessInfo) -> Value {
    json!({
        "process": p.id.0,
        "state": state_name(p.state),
        "since_ns": p.since.as_nanos(),
        "link": p.link.map(|l| l.0),
        "group": p.group.map(|g| g.0),
        "interval_ms": p.config.interval.as_secs_f64() * 1e3,
        "margin_ms": p.config.margin.as_secs_f64() * 1e3,
        "window": p.config.window,
        "last_heartbeat_ns": p.last_heartbeat.map(Time::as_nanos),
        "last_traffic_ns": p.last_traffic.map(Time::as_nanos),
        "deadline_ns": p.deadline.map(Time::as_nanos),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::io::PacketIo;
    use dataplane::io::mem::{MemConfig, MemIo};
    use std::sync::{Arc, Mutex};

    const PORT: u16 = 7300;

    fn spec() -> FrameSpec {
        FrameSpec {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: Ipv4Addr::new(198, 18, 0, 1),
            dst_ip: Ipv4Addr::new(198, 18, 0, 2),
            src_port: 4000,
            dst_port: PORT,
        }
    }

    fn frame(msg: &Message<'_>) -> Vec<u8> {
        let mut payload = vec![0; 2048];
        let n = msg.emit(9, &mut payload).unwrap();
        let mut f = vec![0; 2048];
        let len = write_udp_frame(&mut f, &spec(), &payload[..n]).unwrap();
        f.truncate(len);
        f
    }

    /// Feeds `frames` to the service as one burst at `now`, runs its emit
    /// step, and returns the messages it sent (with their frames' specs).
    fn step(svc: &mut FdService, io: &mut MemIo, frames: &[Vec<u8>], now: Instant) -> Vec<Vec<u8>> {
        for f in frames {
            io.inject(f).unwrap();
        }
        let mut b = io.new_batch();
        io.recv(&mut b).unwrap();
        svc.process(now, &mut b);
        io.release(&mut b).unwrap();
        let mut out = io.new_batch();
        run_emit(svc, io, &mut out, now);
        let mut sent = Vec::new();
        io.drain_sent(|f| sent.push(f.to_vec()));
        sent
    }

    fn run_emit(svc: &mut FdService, io: &mut MemIo, out: &mut Batch, now: Instant) {
        // The runtime's emit contract, by hand: frames taken one by one.
        for _ in 0..8 {
            dataplane::runtime::emit_into(io, out, now, svc);
            io.send(out).unwrap();
        }
    }

    fn parse(sent: &[u8]) -> (FrameSpec, Message<'_>) {
        let f = UdpFrame::parse(sent).unwrap();
        assert!(f.verify_udp_checksum());
        let spec = f.spec();
        let off = f.payload_range();
        let (_, m) = Message::parse_nfv(&sent[off]).unwrap();
        (spec, m)
    }

    fn add(id: u64) -> Message<'static> {
        Message::Add(wire::add::Repr {
            request_id: 1,
            spec: ProcessSpec::new(ProcessId(id)).with_config(Config::new(
                Duration::from_millis(10),
                Duration::from_millis(5),
            )),
        })
    }

    /// `frame`, with the NFVinc message tagged under `key`.
    fn signed_frame(msg: &Message<'_>, key: &dataplane::auth::SessionKey) -> Vec<u8> {
        let mut payload = vec![0; 2048];
        let n = msg.emit(9, &mut payload).unwrap();
        key.sign(&mut payload[..n]).unwrap();
        let mut f = vec![0; 2048];
        let len = write_udp_frame(&mut f, &spec(), &payload[..n]).unwrap();
        f.truncate(len);
        f
    }

    #[test]
    fn with_auth_required_only_tagged_requests_of_known_sessions_are_answered() {
        use dataplane::auth::{AuthPolicy, SessionKey};
        let key = SessionKey::from_bytes([5; 32]);
        let mut sessions = Sessions::new(AuthPolicy::Required);
        sessions.insert(9, key.clone());
        let mut io = MemIo::new(MemConfig::default()).unwrap();
        let mut svc = FdService::new(Config::default(), PORT)
            .unwrap()
            .with_sessions(sessions);
        let t0 = Instant::now();

        // Untagged, and tagged under another key: dropped, nothing answered.
        let forged = signed_frame(&add(7), &SessionKey::from_bytes([6; 32]));
        assert!(step(&mut svc, &mut io, &[frame(&add(7)), forged], t0).is_empty());
        assert_eq!(svc.detector().len(), 0);
        let c = svc.counters_json();
        assert_eq!(c["auth"]["untagged"], 1);
        assert_eq!(c["auth"]["bad_tag"], 1);

        // Tagged under the session's key: applied, and the ack is tagged.
        let sent = step(&mut svc, &mut io, &[signed_frame(&add(7), &key)], t0);
        assert_eq!(sent.len(), 1);
        assert_eq!(svc.detector().len(), 1);
        let f = UdpFrame::parse(&sent[0]).unwrap();
        key.verify(f.payload()).unwrap();
        assert!(matches!(parse(&sent[0]).1, Message::Ack(_)));
    }

    #[test]
    fn requests_heartbeats_queries_and_pushed_events() {
        let mut io = MemIo::new(MemConfig::default()).unwrap();
        let mut svc = FdService::new(Config::default(), PORT).unwrap();
        let t0 = Instant::now();

        let sent = step(&mut svc, &mut io, &[frame(&add(7))], t0);
        assert_eq!(sent.len(), 1);
        let (to, m) = parse(&sent[0]);
        assert_eq!(to, spec().reversed(), "answered to the requester");
        assert_eq!(
            m,
            Message::Ack(ack::Repr {
                request_id: 1,
                status: ack::Status::Ok
            })
        );

        // A duplicate add is refused with a status, not a crash.
        let sent = step(&mut svc, &mut io, &[frame(&add(7))], t0);
        assert!(
            matches!(parse(&sent[0]).1, Message::Ack(a) if a.status == ack::Status::DuplicateProcess)
        );

        let sub = Message::Subscribe(wire::subscribe::Repr {
            request_id: 2,
            target: Target::All,
            unsubscribe: false,
        });
        let sent = step(&mut svc, &mut io, &[frame(&sub)], t0);
        assert!(matches!(parse(&sent[0]).1, Message::Ack(a) if a.status == ack::Status::Ok));

        // Heartbeats every 10 ms keep it correct; garbage is counted.
        let hb = |seq| {
            frame(&Message::Heartbeat(wire::heartbeat::Repr {
                process: ProcessId(7),
                seq,
                sent_ns: 0,
            }))
        };
        for i in 1..=20u64 {
            let now = t0 + Duration::from_millis(10 * i);
            let sent = step(&mut svc, &mut io, &[hb(i), vec![1, 2, 3]], now);
            assert!(sent.is_empty(), "heartbeats get no answer: {sent:?}");
        }
        assert_eq!(svc.detector().state(ProcessId(7)), Some(State::Correct));
        assert_eq!(svc.counters().malformed, 20);

        // Silence: suspected by the bound, and the subscriber is told.
        // (Served on time, every half millisecond, as the runtime would:
        // woken much later, the service would take it for its own pause.)
        let mut late = t0 + Duration::from_millis(200);
        let mut sent = Vec::new();
        while late < t0 + Duration::from_millis(200 + 10 + 5 + 2) {
            late += Duration::from_micros(500);
            sent.extend(step(&mut svc, &mut io, &[], late));
        }
        assert_eq!(sent.len(), 1, "one pushed state change");
        match parse(&sent[0]).1 {
            Message::StateChange(e) => {
                assert_eq!(e.process, ProcessId(7));
                assert_eq!(
                    (e.from, e.to, e.cause),
                    (State::Correct, State::Suspected, Cause::Timeout)
                );
            }
            other => panic!("expected a state change, got {other:?}"),
        }

        let q = Message::Query(wire::query::Repr {
            request_id: 3,
            target: Target::One(ProcessId(7)),
        });
        let sent = step(&mut svc, &mut io, &[frame(&q)], late);
        match parse(&sent[0]).1 {
            Message::QueryReply(r, entries) => {
                assert_eq!((r.request_id, r.count, r.more), (3, 1, false));
                assert_eq!(entries.clone().next().unwrap().state, State::Suspected);
            }
            other => panic!("expected a reply, got {other:?}"),
        }
        assert_eq!(
            io.free_buffers(),
            MemConfig::default().chunks as usize,
            "no leak"
        );
    }

    #[test]
    fn woken_long_past_a_deadline_the_service_holds_judgement_for_twice_as_long_and_a_period() {
        let mut io = MemIo::new(MemConfig::default()).unwrap();
        let mut svc = FdService::new(Config::default(), PORT).unwrap();
        let t0 = Instant::now();
        step(&mut svc, &mut io, &[frame(&add(7))], t0);
        let hb = |seq| {
            frame(&Message::Heartbeat(wire::heartbeat::Repr {
                process: ProcessId(7),
                seq,
                sent_ns: 0,
            }))
        };
        for i in 1..=20u64 {
            step(
                &mut svc,
                &mut io,
                &[hb(i)],
                t0 + Duration::from_millis(10 * i),
            );
        }
        // The next deadline is near 215 ms; the service runs again only at
        // 260 ms (it was descheduled, or the host stalled): 45 ms late.
        let woke = t0 + Duration::from_millis(260);
        step(&mut svc, &mut io, &[], woke);
        assert_eq!(svc.detector().state(ProcessId(7)), Some(State::Correct));
        assert_eq!(svc.counters().local_pauses, 1);
        let held = svc.pause_grace.unwrap();
        assert!(
            held >= woke + Duration::from_millis(90),
            "held for twice as long"
        );
        // The heartbeat the stall held back arrives meanwhile, and the
        // next ones on time: never suspected.
        let mut seq = 21;
        let mut now = woke + Duration::from_millis(1);
        while now <= held + Duration::from_millis(20) {
            step(&mut svc, &mut io, &[hb(seq)], now);
            assert_eq!(svc.detector().state(ProcessId(7)), Some(State::Correct));
            seq += 1;
            now += Duration::from_millis(10);
        }
        let held = now - Duration::from_millis(10);
        // Then silence, the service on time: suspected as usual.
        let mut now = held;
        while svc.detector().state(ProcessId(7)) == Some(State::Correct) {
            now += Duration::from_millis(1);
            assert!(now < held + Duration::from_millis(100), "never suspected");
            step(&mut svc, &mut io, &[], now);
        }
        assert_eq!(svc.counters().local_pauses, 1);
    }

    #[test]
    fn query_of_many_processes_is_paged() {
        let mut io = MemIo::new(MemConfig::default()).unwrap();
        let mut svc = FdService::new(Config::default(), PORT).unwrap();
        let t0 = Instant::now();
        for id in 0..100 {
            svc.add(ProcessSpec::new(ProcessId(id)), None, t0).unwrap();
        }
        let q = Message::Query(wire::query::Repr {
            request_id: 4,
            target: Target::All,
        });
        let sent = step(&mut svc, &mut io, &[frame(&q)], t0);
        assert!(sent.len() > 1, "100 entries need more than one page");
        let mut ids = Vec::new();
        for (i, s) in sent.iter().enumerate() {
            let Message::QueryReply(r, entries) = parse(s).1 else {
                panic!()
            };
            assert_eq!(r.more, i + 1 < sent.len());
            ids.extend(entries.map(|e| e.process.0));
        }
        ids.sort_unstable();
        assert_eq!(ids, (0..100).collect::<Vec<_>>());
    }

    /// Watched addresses and when each was last seen, by slot.
    type Seen = Arc<Mutex<Vec<(Ipv4Addr, Option<u64>)>>>;

    struct FakePassive(Seen);

    impl PassiveLiveness for FakePassive {
        fn watch(&mut self, addr: Ipv4Addr) -> Result<u32, String> {
            let mut v = self.0.lock().unwrap();
            v.push((addr, None));
            Ok(v.len() as u32 - 1)
        }
        fn unwatch(&mut self, addr: Ipv4Addr) {
            self.0.lock().unwrap().retain(|(a, _)| *a != addr);
        }
        fn last_seen(&self, slot: u32) -> Option<u64> {
            self.0.lock().unwrap().get(slot as usize).and_then(|e| e.1)
        }
        fn last_port(&self, slot: u32) -> Option<u32> {
            // Every fake source sits behind port 40 + its slot.
            self.last_seen(slot).map(|_| 40 + slot)
        }
    }

    struct FakeLinks(Arc<Mutex<Vec<(u32, bool)>>>);

    impl LinkEvents for FakeLinks {
        fn poll(&mut self, on: &mut dyn FnMut(u32, bool)) {
            for (i, up) in self.0.lock().unwrap().drain(..) {
                on(i, up);
            }
        }
        fn ifindex(&self, name: &str) -> Option<u32> {
            name.strip_prefix("p").and_then(|n| n.parse().ok())
        }
    }

    #[test]
    fn passive_traffic_and_link_events_through_the_control_socket() {
        let path = std::env::temp_dir().join(format!("nfv-fd-{}.sock", std::process::id()));
        let (_sock, inbox) = dataplane::control::ControlSocket::bind(&path).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let links = Arc::new(Mutex::new(Vec::new()));
        let mut svc = FdService::new(Config::default(), PORT)
            .unwrap()
            .with_control(inbox)
            .with_passive(Box::new(FakePassive(seen.clone())))
            .with_links(Box::new(FakeLinks(links.clone())));
        let mut io = MemIo::new(MemConfig::default()).unwrap();
        let t0 = Instant::now();
        let clock = svc.clock();

        // The control client blocks for its answer: serve it from a thread
        // that steps the service meanwhile, as the worker would.
        let p = path.clone();
        let client = std::thread::spawn(move || {
            let call = |v| dataplane::control::call(&p, &v);
            let a = call(json!({"op": "add", "process": 5, "addr": "10.0.0.5", "link": "p3"}))?;
            call(json!({"op": "add", "process": 6, "addr": "10.0.0.6"}))?;
            let bad = call(json!({"op": "add", "process": "x"}))
                .unwrap_err()
                .to_string();
            let list = call(json!({"op": "list"}))?;
            Ok::<_, dataplane::control::CallError>((a, bad, list))
        });
        // The service's time moves 10 µs a step: a loaded machine may take
        // many steps to run the client, and none of them may reach process
        // 5's first deadline (15 ms) before its traffic is shown below.
        let mut now = t0;
        while !client.is_finished() {
            now += Duration::from_micros(10);
            step(&mut svc, &mut io, &[], now);
            std::thread::sleep(Duration::from_millis(1));
        }
        let (a, bad, list) = client.join().unwrap().unwrap();
        assert!(
            now < t0 + Duration::from_millis(15),
            "the client took too many steps"
        );
        assert_eq!(a["state"], "correct");
        assert_eq!(a["link"], 3);
        assert!(bad.contains("\"process\" must be"), "{bad}");
        assert_eq!(list.as_array().unwrap().len(), 2, "{list}");

        // Traffic seen by the (fake) XDP map keeps it correct past its
        // heartbeat deadline.
        let mut t = now;
        for _ in 0..30 {
            t += Duration::from_millis(5);
            for s in seen.lock().unwrap().iter_mut() {
                s.1 = Some(clock.time(t).as_nanos());
            }
            step(&mut svc, &mut io, &[], t + Duration::from_millis(1));
        }
        assert_eq!(svc.detector().state(ProcessId(5)), Some(State::Correct));
        assert!(svc.detector().counters().traffic > 0);
        let learned = svc.detector().process(ProcessId(6)).unwrap().link;
        assert_eq!(learned, Some(LinkId(41)), "link learned from its traffic");
        let given = svc.detector().process(ProcessId(5)).unwrap().link;
        assert_eq!(given, Some(LinkId(3)), "a given link is kept");

        // Its link goes down: unreachable at the next tick.
        links.lock().unwrap().push((3, false));
        t += Duration::from_millis(2);
        step(&mut svc, &mut io, &[], t);
        assert_eq!(svc.detector().state(ProcessId(5)), Some(State::Unreachable));
        let causes: Vec<_> = svc.history.iter().map(|t| t.cause).collect();
        assert_eq!(causes, vec![Cause::LinkDown]);
    }
}
