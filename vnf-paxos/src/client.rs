//! The client side that the client library embeds: submits commands to the
//! leader and retries until a coordinator says they are decided.
//!
//! Retries keep the command's sequence number, which is how coordinators
//! and learners recognise them: a command is decided, and delivered, at
//! most once however often it is sent. The client library pairs this with
//! a [`crate::Learner`] for the stream of decided values.
//!
//! # Coalescing
//!
//! With [`ClientConfig::coalesce`] (the default) commands travel many to a
//! `Submit` datagram and are answered many to a `Replies` message (runs of
//! sequence numbers), in the manner of Nagle's algorithm: a command
//! submitted while none of the client's sent commands awaits an answer
//! leaves at once, alone, so a lightly loaded client adds no latency;
//! commands submitted while some do are queued and leave together as soon
//! as an answer arrives (or [`Client::flush`] is called: a caller that
//! submits a burst flushes after it). Under load each answer thus releases
//! everything that queued meanwhile, and requests grow with the load, as
//! the leader's batches do. Retries and redirections after `NotLeader`
//! are coalesced the same way. Without it, every command is its own
//! `Request`, sent at once and answered by its own `Reply`.
//!
//! # Payloads
//!
//! The client keeps its commands' payloads in one buffer of its own, one
//! after another, and writes a `Submit` straight from it
//! ([`Client::poll_emit`]): no [`Payload`] (a shared buffer, counted
//! references) per command, so submitting, sending and settling a command
//! takes no atomic operation and no allocation. [`Client::poll_transmit`]
//! still hands the messages out as values, for callers that want them so.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use crate::config::ClientConfig;
use crate::transmit::{Dest, Transmit};
use crate::wire::value::{emit_client_value, run_cost};
use crate::wire::{Message, MsgError, MsgType, replies, reply, request, submit};
use crate::{ClientId, Command, Instance, NodeId, Payload, Time};
use dataplane::wire::nfvinc::{self, NfvHeader, NfvRepr, Service};

/// What became of a submitted command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// Its sequence number.
    pub seq: u64,
    /// The instance that decided it (`u64::MAX` when the coordinator that
    /// answered a retry no longer remembered it).
    pub instance: Instance,
}

#[derive(Debug)]
struct Outstanding {
    /// Where its payload is in [`Payloads`] (an absolute position).
    at: u64,
    /// Its payload's length.
    len: u32,
    /// When it was last sent; `None` while queued (never sent).
    sent_at: Option<Time>,
}

/// Bytes past which the payload buffer drops what no command needs.
const COMPACT_AT: usize = 4096;

/// The payloads of the outstanding commands, one after another in the
/// order submitted, addressed by absolute position (bytes ever added
/// before them), so that positions stay put when the front is dropped.
#[derive(Debug, Default)]
struct Payloads {
    /// The absolute position of `bytes[0]`.
    base: u64,
    bytes: Vec<u8>,
}

impl Payloads {
    /// Adds `p`; returns its position.
    fn push(&mut self, p: &[u8]) -> u64 {
        let at = self.base + self.bytes.len() as u64;
        self.bytes.extend_from_slice(p);
        at
    }

    /// The `len` bytes at position `at` (which must be kept).
    fn get(&self, at: u64, len: u32) -> &[u8] {
        let i = (at - self.base) as usize;
        &self.bytes[i..i + len as usize]
    }

    /// Drops the bytes before position `keep` (no command needs them), once
    /// they are most of the buffer: each byte is moved at most about once.
    fn drop_before(&mut self, keep: u64) {
        let dead = (keep - self.base) as usize;
        if dead == self.bytes.len() {
            self.bytes.clear();
        } else if dead >= COMPACT_AT && dead * 2 >= self.bytes.len() {
            self.bytes.drain(..dead);
        } else {
            return;
        }
        self.base = keep;
    }

    /// The position after the last byte.
    fn end(&self) -> u64 {
        self.base + self.bytes.len() as u64
    }
}

/// A message to send, its commands as `(seq, position, length)` in the
/// client's list of what is to be sent.
#[derive(Debug)]
enum Out {
    /// One `Submit` of the commands `cmds`.
    Submit { to: NodeId, cmds: Range<usize> },
    /// One `Request` of the command at `cmd`.
    Request { to: NodeId, cmd: usize },
}

/// Outstanding commands by sequence number: numbers are handed out one
/// after another and mostly answered in order, so a ring from the oldest
/// outstanding one costs a slot per command where a tree would cost a
/// node, and a run of numbers is a stretch of slots. The price: a command
/// that stays undecided for long keeps a (mostly empty) slot for every
/// command submitted after it until it is decided.
#[derive(Debug, Default)]
struct Ring {
    /// The number of the first slot.
    base: u64,
    slots: VecDeque<Option<Outstanding>>,
    len: usize,
}

impl Ring {
    /// Adds the next number (one above every number added before).
    fn push(&mut self, seq: u64, o: Outstanding) {
        if self.slots.is_empty() {
            self.base = seq;
        }
        debug_assert_eq!(seq, self.base + self.slots.len() as u64);
        self.slots.push_back(Some(o));
        self.len += 1;
    }

    fn index(&self, seq: u64) -> Option<usize> {
        usize::try_from(seq.checked_sub(self.base)?).ok()
    }

    fn get(&self, seq: u64) -> Option<&Outstanding> {
        self.slots.get(self.index(seq)?)?.as_ref()
    }

    fn get_mut(&mut self, seq: u64) -> Option<&mut Outstanding> {
        let i = self.index(seq)?;
        self.slots.get_mut(i)?.as_mut()
    }

    fn remove(&mut self, seq: u64) -> Option<Outstanding> {
        let i = self.index(seq)?;
        let o = self.slots.get_mut(i)?.take()?;
        self.len -= 1;
        while let Some(None) = self.slots.front() {
            self.slots.pop_front();
            self.base += 1;
        }
        Some(o)
    }

    /// The payload position of the oldest outstanding command.
    fn front_at(&self) -> Option<u64> {
        self.slots.front()?.as_ref().map(|o| o.at)
    }

    /// The outstanding numbers in `first..=last` (clipped to the ring, so a
    /// run's length costs nothing beyond what is outstanding).
    fn range(&self, first: u64, last: u64) -> impl Iterator<Item = (u64, &Outstanding)> {
        let end = self.base + self.slots.len() as u64;
        let lo = first.max(self.base);
        let hi = last.saturating_add(1).min(end).max(lo);
        let (a, b) = ((lo - self.base) as usize, (hi - self.base) as usize);
        self.slots
            .range(a..b)
            .zip(lo..)
            .filter_map(|(o, seq)| Some((seq, o.as_ref()?)))
    }
}

/// A client (see the module docs).
#[derive(Debug)]
pub struct Client {
    id: ClientId,
    cfg: ClientConfig,
    target: usize,
    next_seq: u64,
    /// Commands from this number on are queued, not yet sent.
    unsent_from: u64,
    outstanding: Ring,
    /// Outstanding commands that were sent at least once.
    sent: usize,
    /// `(sent at, seq)` in the order sent; an entry is stale once its
    /// command is answered or sent again (its `sent_at` differs).
    timers: VecDeque<(Time, u64)>,
    /// Reused list of sequence numbers (answers, retries).
    scratch: Vec<u64>,
    events: VecDeque<Committed>,
    payloads: Payloads,
    /// Commands of the messages in `outbox`: `(seq, payload position,
    /// payload length)`; emptied with the outbox. Their payloads stay in
    /// `payloads` until then (the buffer drops nothing while the outbox
    /// holds anything), even those of commands decided meanwhile: a
    /// message goes out as it was composed.
    outgoing: Vec<(u64, u64, u32)>,
    outbox: VecDeque<Out>,
}

impl Client {
    /// A client named `id`, which must be unique among the clients of the
    /// service (a random 64-bit number per session will do).
    pub fn new(id: ClientId, cfg: ClientConfig) -> Self {
        Client {
            id,
            cfg,
            target: 0,
            next_seq: 1,
            unsent_from: 1,
            outstanding: Ring::default(),
            sent: 0,
            timers: VecDeque::new(),
            scratch: Vec::new(),
            events: VecDeque::new(),
            payloads: Payloads::default(),
            outgoing: Vec::new(),
            outbox: VecDeque::new(),
        }
    }

    /// Its id.
    pub fn id(&self) -> ClientId {
        self.id
    }

    /// The sequence number the next submission gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Commands submitted and not yet known decided (queued ones included).
    pub fn outstanding(&self) -> usize {
        self.outstanding.len
    }

    /// Commands submitted and not sent yet (coalescing).
    pub fn queued(&self) -> usize {
        self.outstanding.len - self.sent
    }

    /// Commands sent and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.sent
    }

    /// Submits a command; returns its sequence number. It is sent at once
    /// unless the client coalesces and has commands awaiting an answer
    /// (see the module docs).
    pub fn submit(&mut self, now: Time, payload: impl AsRef<[u8]>) -> u64 {
        let idle = self.sent == 0;
        let seq = self.queue(payload);
        if !self.cfg.coalesce || idle {
            self.flush(now);
        }
        seq
    }

    /// Queues a command without sending it; returns its sequence number.
    /// [`Client::flush`], or the next answer, sends it: a caller with a
    /// burst of commands queues them all and flushes once, so that they
    /// leave together even when nothing else is in flight.
    /// (A payload longer than a command can carry,
    /// [`crate::wire::value::MAX_PAYLOAD`], is never sent: its messages
    /// fail to emit.)
    ///
    /// # Panics
    ///
    /// When the payload is 4 GiB or longer.
    pub fn queue(&mut self, payload: impl AsRef<[u8]>) -> u64 {
        let payload = payload.as_ref();
        let len = u32::try_from(payload.len()).expect("a payload under 4 GiB");
        if self.outbox.is_empty() {
            // What was decided since no longer needs its bytes.
            let keep = self
                .outstanding
                .front_at()
                .unwrap_or_else(|| self.payloads.end());
            self.payloads.drop_before(keep);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let at = self.payloads.push(payload);
        self.outstanding.push(
            seq,
            Outstanding {
                at,
                len,
                sent_at: None,
            },
        );
        seq
    }

    /// Sends every queued command now, together (as few datagrams as
    /// their size allows).
    pub fn flush(&mut self, now: Time) {
        if self.unsent_from == self.next_seq {
            return;
        }
        let mut seqs = std::mem::take(&mut self.scratch);
        seqs.clear();
        seqs.extend(
            self.outstanding
                .range(self.unsent_from, u64::MAX)
                .map(|(s, _)| s),
        );
        self.unsent_from = self.next_seq;
        self.send(now, &seqs);
        self.scratch = seqs;
    }

    fn leader(&self) -> Option<NodeId> {
        self.cfg.coordinators.get(self.target).copied()
    }

    /// Sends the outstanding commands among `seqs` to the coordinator
    /// believed to lead.
    fn send(&mut self, now: Time, seqs: &[u64]) {
        let to = self.leader();
        let max = self.cfg.max_request_bytes;
        // The open batch: from `start` in `outgoing`, `bytes` long as a
        // value so far, its last number.
        let mut start = self.outgoing.len();
        let mut bytes = 0;
        let mut last: Option<u64> = None;
        for &seq in seqs {
            let Some(o) = self.outstanding.get_mut(seq) else {
                continue;
            };
            if o.sent_at.is_none() {
                self.sent += 1;
            }
            o.sent_at = Some(now);
            let (at, len) = (o.at, o.len);
            self.timers.push_back((now, seq));
            let Some(to) = to else { continue };
            self.outgoing.push((seq, at, len));
            if !self.cfg.coalesce {
                self.outbox.push_back(Out::Request {
                    to,
                    cmd: self.outgoing.len() - 1,
                });
                continue;
            }
            let cost = run_cost(last.map(|l| (self.id, l)), self.id, seq, len as usize);
            let n = self.outgoing.len() - 1 - start;
            if n > 0 && (bytes + cost > max || n >= usize::from(u16::MAX)) {
                self.outbox.push_back(Out::Submit {
                    to,
                    cmds: start..self.outgoing.len() - 1,
                });
                start = self.outgoing.len() - 1;
                // Alone in a new batch, it opens a run.
                bytes = run_cost(None, self.id, seq, len as usize);
            } else {
                bytes += cost;
            }
            last = Some(seq);
        }
        if let (Some(to), true) = (to, self.cfg.coalesce && start < self.outgoing.len()) {
            self.outbox.push_back(Out::Submit {
                to,
                cmds: start..self.outgoing.len(),
            });
        }
    }

    /// Drops timer entries of commands answered or sent again since.
    fn prune_timers(&mut self) {
        while let Some(&(t, seq)) = self.timers.front() {
            if self
                .outstanding
                .get(seq)
                .is_some_and(|o| o.sent_at == Some(t))
            {
                break;
            }
            self.timers.pop_front();
        }
    }

    fn decided(&mut self, seq: u64, instance: Instance) -> bool {
        let Some(o) = self.outstanding.remove(seq) else {
            return false;
        };
        if o.sent_at.is_some() {
            self.sent -= 1;
        }
        self.events.push_back(Committed { seq, instance });
        true
    }

    /// After `NotLeader` from `from` with `hint` for `seqs`: go to the hinted
    /// leader at once, or (no better idea) to the next coordinator at the
    /// retry timeout, so that an election in progress is not hammered.
    fn not_leader(&mut self, now: Time, from: NodeId, hint: Option<NodeId>, seqs: &[u64]) {
        let n = self.cfg.coordinators.len().max(1);
        let hinted = hint.and_then(|h| self.cfg.coordinators.iter().position(|&c| c == h));
        match hinted {
            Some(i) if Some(from) != hint => {
                self.target = i;
                self.send(now, seqs);
            }
            _ => {
                if self.leader() == Some(from) {
                    self.target = (self.target + 1) % n;
                }
            }
        }
    }

    /// Takes one received message (replies).
    pub fn handle(&mut self, now: Time, from: NodeId, msg: Message) {
        match msg {
            Message::Reply(r) if r.client == self.id => match r.status {
                reply::Status::Decided(instance) => {
                    if self.decided(r.seq, instance) {
                        self.flush(now);
                    }
                }
                reply::Status::NotLeader(hint) => {
                    if self
                        .outstanding
                        .get(r.seq)
                        .is_some_and(|o| o.sent_at.is_some())
                    {
                        self.not_leader(now, from, hint, &[r.seq]);
                    }
                }
            },
            Message::Replies(r) if r.client == self.id => {
                // Only numbers outstanding are looked at: a run's length is
                // the sender's to choose, the work is ours.
                let mut seqs = std::mem::take(&mut self.scratch);
                seqs.clear();
                match r.status {
                    replies::Status::Decided => {
                        for run in r.runs.iter().filter(|r| r.first <= r.last) {
                            seqs.extend(
                                self.outstanding.range(run.first, run.last).map(|(s, _)| s),
                            );
                            for &seq in &seqs {
                                self.decided(seq, run.instance);
                            }
                            seqs.clear();
                        }
                        // An answer: what queued meanwhile leaves now.
                        self.flush(now);
                    }
                    replies::Status::NotLeader(hint) => {
                        for run in r.runs.iter().filter(|r| r.first <= r.last) {
                            seqs.extend(
                                self.outstanding
                                    .range(run.first, run.last)
                                    .filter(|(_, o)| o.sent_at.is_some())
                                    .map(|(s, _)| s),
                            );
                        }
                        if !seqs.is_empty() {
                            self.not_leader(now, from, hint, &seqs);
                        }
                    }
                }
                self.scratch = seqs;
            }
            _ => return,
        }
        self.prune_timers();
    }

    /// The next decided command.
    pub fn poll_event(&mut self) -> Option<Committed> {
        self.events.pop_front()
    }

    /// Takes the next message from the outbox, with its commands.
    fn pop_out(&mut self) -> Option<(NodeId, Range<usize>, bool)> {
        let out = self.outbox.pop_front()?;
        Some(match out {
            Out::Submit { to, cmds } => (to, cmds, true),
            Out::Request { to, cmd } => (to, cmd..cmd + 1, false),
        })
    }

    /// After a message was taken: an empty outbox needs no commands kept.
    fn popped(&mut self) {
        if self.outbox.is_empty() {
            self.outgoing.clear();
        }
    }

    /// The message to `to` of the commands `cmds` of `outgoing`, as a
    /// value.
    fn build(&self, to: NodeId, cmds: Range<usize>, many: bool) -> Transmit {
        // One buffer for the message's payloads, which each is cut from.
        let items = &self.outgoing[cmds];
        let mut bytes = Vec::with_capacity(items.iter().map(|&(.., l)| l as usize).sum());
        for &(_, at, len) in items {
            bytes.extend_from_slice(self.payloads.get(at, len));
        }
        let buf: Arc<[u8]> = Arc::from(bytes);
        let mut from = 0;
        let mut commands: Vec<Command> = items
            .iter()
            .map(|&(seq, _, len)| {
                let payload = Payload::slice_of(&buf, from, len as usize);
                from += len as usize;
                Command {
                    client: self.id,
                    seq,
                    payload,
                }
            })
            .collect();
        let msg = if many {
            Message::Submit(submit::Repr { commands })
        } else {
            let command = commands.pop().expect("a request has its command");
            Message::Request(request::Repr { command })
        };
        Transmit {
            dest: Dest::Node(to),
            msg,
        }
    }

    /// The next message to send, if any, as a value. (A caller that sends
    /// bytes takes [`Client::poll_emit`], which builds no value.)
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let (to, cmds, many) = self.pop_out()?;
        let t = self.build(to, cmds, many);
        self.popped();
        Some(t)
    }

    /// Writes the next message to send, if any, as a whole NFVinc message
    /// (header without tag, under `session_id`) at the front of `buf`;
    /// returns where it goes and its length. A `Submit` is written
    /// straight from the client's payload buffer, byte for byte what
    /// [`Client::poll_transmit`]'s value emits. A message that cannot be
    /// written (it does not fit `buf`, a payload is too long) is dropped,
    /// as a lost datagram would be.
    pub fn poll_emit(&mut self, session_id: u64, buf: &mut [u8]) -> Option<(Dest, usize)> {
        loop {
            let (to, cmds, many) = self.pop_out()?;
            let written = if many {
                self.emit_submit(session_id, cmds, buf)
            } else {
                // Not the loaded path (coalescing is): built as a value.
                self.build(to, cmds, many).msg.emit(session_id, buf)
            };
            self.popped();
            if let Ok(n) = written {
                return Some((Dest::Node(to), n));
            }
        }
    }

    fn emit_submit(
        &self,
        session_id: u64,
        cmds: Range<usize>,
        buf: &mut [u8],
    ) -> Result<usize, MsgError> {
        let commands = self.outgoing[cmds]
            .iter()
            .map(|&(seq, at, len)| (seq, self.payloads.get(at, len)));
        // The value first, which gives the header its length.
        let payload_len = match buf.get_mut(nfvinc::HEADER_LEN..) {
            Some(value) => emit_client_value(self.id, commands, value)?,
            // No room for the header either: its emit says so.
            None => 0,
        };
        let repr = NfvRepr {
            service: Service::Consensus,
            msg_type: MsgType::Submit.into(),
            session_id,
            tag: None,
            payload_len,
        };
        repr.emit(&mut NfvHeader::new_unchecked(&mut *buf))?;
        Ok(repr.buffer_len())
    }

    /// When [`Client::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.timers.front().map(|&(t, _)| t + self.cfg.retry)
    }

    /// Runs the timers due at `now`: unanswered commands go again, to the
    /// next coordinator.
    pub fn handle_timeout(&mut self, now: Time) {
        let mut due = std::mem::take(&mut self.scratch);
        due.clear();
        while let Some(&(t, seq)) = self.timers.front() {
            if t + self.cfg.retry > now {
                break;
            }
            self.timers.pop_front();
            if let Some(o) = self.outstanding.get_mut(seq)
                && o.sent_at == Some(t)
            {
                // Marked now, so that a second entry for it is stale.
                o.sent_at = Some(now);
                due.push(seq);
            }
        }
        let retried = !due.is_empty();
        if retried {
            self.target = (self.target + 1) % self.cfg.coordinators.len().max(1);
            self.send(now, &due);
        }
        self.scratch = due;
        if retried {
            // Nothing came back in time: what queued goes along, to the
            // same coordinator, rather than wait for an answer that may be
            // far off.
            self.flush(now);
        }
        self.prune_timers();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn client(coalesce: bool) -> Client {
        let mut cfg = ClientConfig::new(vec![NodeId(1), NodeId(2)]);
        cfg.coalesce = coalesce;
        // Room for one run of four 2-byte commands.
        cfg.max_request_bytes = 18 + 4 * (2 + 2);
        Client::new(ClientId(9), cfg)
    }

    fn sent(c: &mut Client) -> Vec<(Dest, Vec<u64>)> {
        std::iter::from_fn(|| c.poll_transmit())
            .map(|t| match t.msg {
                Message::Submit(s) => (t.dest, s.commands.iter().map(|c| c.seq).collect()),
                Message::Request(r) => (t.dest, vec![r.command.seq]),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn decided(runs: &[(u64, u64, u64)]) -> Message {
        Message::Replies(replies::Repr {
            client: ClientId(9),
            status: replies::Status::Decided,
            runs: runs
                .iter()
                .map(|&(first, last, instance)| replies::Run {
                    first,
                    last,
                    instance,
                })
                .collect(),
        })
    }

    #[test]
    fn the_first_command_leaves_at_once_and_later_ones_wait_for_an_answer() {
        let mut c = client(true);
        let t = Time::from_nanos(1_000);
        assert_eq!(c.submit(t, &b"aa"[..]), 1);
        assert_eq!(sent(&mut c), vec![(Dest::Node(NodeId(1)), vec![1])]);
        for _ in 0..5 {
            c.submit(t, &b"bb"[..]);
        }
        assert_eq!(sent(&mut c), vec![], "queued while 1 is in flight");
        assert_eq!((c.queued(), c.in_flight()), (5, 1));
        c.handle(t, NodeId(1), decided(&[(1, 1, 0)]));
        // The answer releases the queue, four commands to a datagram.
        assert_eq!(
            sent(&mut c),
            vec![
                (Dest::Node(NodeId(1)), vec![2, 3, 4, 5]),
                (Dest::Node(NodeId(1)), vec![6])
            ]
        );
        assert_eq!(
            c.poll_event(),
            Some(Committed {
                seq: 1,
                instance: 0
            })
        );
        // A forged run over every number costs only what is outstanding.
        c.handle(t, NodeId(1), decided(&[(2, 3, 4), (5, u64::MAX, 5)]));
        let got: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
        assert_eq!(
            got.iter().map(|e| (e.seq, e.instance)).collect::<Vec<_>>(),
            vec![(2, 4), (3, 4), (5, 5), (6, 5)]
        );
        assert_eq!(c.outstanding(), 1);
    }

    #[test]
    fn flush_sends_a_burst_together_and_retries_are_coalesced() {
        let mut c = client(true);
        let t = Time::from_nanos(1_000);
        c.submit(t, &b"aa"[..]);
        c.submit(t, &b"bb"[..]);
        c.submit(t, &b"cc"[..]);
        c.flush(t);
        assert_eq!(
            sent(&mut c),
            vec![
                (Dest::Node(NodeId(1)), vec![1]),
                (Dest::Node(NodeId(1)), vec![2, 3])
            ]
        );
        assert_eq!(c.poll_timeout(), Some(t + Duration::from_millis(30)));
        let later = t + Duration::from_millis(30);
        c.handle_timeout(later);
        assert_eq!(sent(&mut c), vec![(Dest::Node(NodeId(2)), vec![1, 2, 3])]);
        assert_eq!(c.poll_timeout(), Some(later + Duration::from_millis(30)));
        // Not the leader, hint 1: straight there.
        c.handle(
            later,
            NodeId(2),
            Message::Replies(replies::Repr {
                client: ClientId(9),
                status: replies::Status::NotLeader(Some(NodeId(1))),
                runs: vec![replies::Run {
                    first: 2,
                    last: 3,
                    instance: 0,
                }],
            }),
        );
        assert_eq!(sent(&mut c), vec![(Dest::Node(NodeId(1)), vec![2, 3])]);
    }

    #[test]
    fn the_ring_clips_ranges_and_compacts_from_the_front() {
        let mut r = Ring::default();
        let o = || Outstanding {
            at: 0,
            len: 0,
            sent_at: None,
        };
        for seq in 5..10 {
            r.push(seq, o());
        }
        assert!(r.remove(6).is_some());
        assert!(r.remove(6).is_none());
        let seqs = |r: &Ring, a, b| r.range(a, b).map(|(s, _)| s).collect::<Vec<_>>();
        assert_eq!(seqs(&r, 0, u64::MAX), vec![5, 7, 8, 9]);
        assert_eq!(seqs(&r, 7, 8), vec![7, 8]);
        assert_eq!(seqs(&r, 9, 3), Vec::<u64>::new());
        assert!(r.remove(5).is_some());
        assert_eq!((r.base, r.len, r.slots.len()), (7, 3, 3), "5 and 6 dropped");
        for seq in [7, 8, 9] {
            assert!(r.get(seq).is_some());
            r.remove(seq);
        }
        assert_eq!((r.len, r.slots.len()), (0, 0));
        r.push(20, o());
        assert_eq!(seqs(&r, 0, 100), vec![20]);
    }

    #[test]
    fn messages_written_from_the_payload_buffer_are_the_values_emitted() {
        for coalesce in [true, false] {
            let (mut a, mut b) = (client(coalesce), client(coalesce));
            let t = Time::from_nanos(1_000);
            for c in [&mut a, &mut b] {
                for p in [&b"aa"[..], b"b", b"", b"cccc", b"dd", b"ee"] {
                    c.submit(t, p);
                }
                c.flush(t);
            }
            let mut buf = [0u8; 512];
            let mut want = [0u8; 512];
            let mut n_msgs = 0;
            while let Some(v) = a.poll_transmit() {
                let (dest, n) = b.poll_emit(7, &mut buf).expect("as many messages");
                let m = v.msg.emit(7, &mut want).unwrap();
                assert_eq!((dest, &buf[..n]), (v.dest, &want[..m]));
                n_msgs += 1;
            }
            assert_eq!(b.poll_emit(7, &mut buf), None);
            assert!(n_msgs >= 2, "{n_msgs} messages");
            // Too small a buffer: the message is dropped, not sent cut.
            b.handle_timeout(t + Duration::from_millis(30));
            assert_eq!(b.poll_emit(7, &mut buf[..40]), None);
            // Not even room for the header.
            b.handle_timeout(t + Duration::from_millis(90));
            assert_eq!(b.poll_emit(7, &mut buf[..8]), None);
            b.handle_timeout(t + Duration::from_millis(150));
            assert!(b.poll_emit(7, &mut buf).is_some(), "retried whole");
        }
    }

    #[test]
    fn payloads_of_settled_commands_are_dropped_and_the_rest_kept() {
        let mut c = client(true);
        let t = Time::from_nanos(1_000);
        let big = [7u8; 1000];
        for _ in 0..10 {
            c.queue(&big[..]);
        }
        c.queue(b"last");
        c.flush(t);
        while c.poll_transmit().is_some() {}
        c.handle(t, NodeId(1), decided(&[(1, 10, 3)]));
        // The next submission finds the outbox empty: the settled bytes go.
        c.queue(b"next");
        assert!(c.payloads.bytes.len() < 100, "{}", c.payloads.bytes.len());
        assert_eq!(
            c.payloads.get(c.outstanding.get(11).unwrap().at, 4),
            b"last"
        );
        assert_eq!(
            c.payloads.get(c.outstanding.get(12).unwrap().at, 4),
            b"next"
        );
    }

    #[test]
    fn without_coalescing_each_command_is_a_request() {
        let mut c = client(false);
        let t = Time::from_nanos(1_000);
        c.submit(t, &b"aa"[..]);
        c.submit(t, &b"bb"[..]);
        let msgs: Vec<_> = std::iter::from_fn(|| c.poll_transmit()).collect();
        assert_eq!(msgs.len(), 2);
        assert!(msgs.iter().all(|m| matches!(m.msg, Message::Request(_))));
        c.handle(
            t,
            NodeId(1),
            Message::Reply(reply::Repr {
                client: ClientId(9),
                seq: 2,
                status: reply::Status::Decided(3),
            }),
        );
        assert_eq!(
            c.poll_event(),
            Some(Committed {
                seq: 2,
                instance: 3
            })
        );
        assert_eq!(c.outstanding(), 1);
    }
}
