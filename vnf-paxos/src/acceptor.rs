//! The acceptor: promises ballots and votes for values, and says what it
//! must persist before its answers may leave.
//!
//! With [`Durability::Wal`] every change of state is a [`Record`];
//! [`Acceptor::poll_persist`] hands out the records gathered since the last
//! call as one batch (group commit: one sync for a whole burst), and every
//! answer produced meanwhile is held until the shell reports the batch
//! synced with [`Acceptor::persisted`]. A promise or a vote that left
//! before its record was on disk could be forgotten by a crash, which is
//! exactly the amnesia Paxos cannot survive. [`Acceptor::recover`] rebuilds
//! the state from the records a log replays.
//!
//! With [`Durability::Memory`] nothing is persisted and answers leave at
//! once; after a restart the shell builds the acceptor with
//! [`Acceptor::rejoin`] under a new incarnation, and it votes on nothing
//! until a leader admits it.
//!
//! # The wire path
//!
//! Accepts are the acceptor's whole steady-state load, so it takes them
//! straight from the bytes ([`Acceptor::handle_nfv`]): the entries are
//! checked in place, each value's bytes are copied into the vote store
//! (a ring indexed by instance, see `store.rs`) and into the vote: in
//! memory the accept's own entry list behind an `Accepted` header, with
//! the log only its instances behind a `Voted` header. Answers are
//! kept encoded, as whole NFVinc messages in recycled buffers, and
//! [`Acceptor::poll_emit`] copies them out; in steady state an accept costs
//! no allocation. [`Acceptor::handle`] and [`Acceptor::poll_transmit`]
//! take and give [`Message`] values over the same state (they encode and
//! parse), for the simulations and for callers that hold values.

use std::collections::VecDeque;

use dataplane::wire::field::{check_len, get_u64};
use dataplane::wire::nfvinc::{self, NfvHeader, NfvRepr, Service};

use crate::config::{AcceptorConfig, Durability};
use crate::store::VoteStore;
use crate::transmit::{Dest, Transmit};
use crate::wire::value::{Entry, emit_value, entry_len, parse_value, scan_value};
use crate::wire::{
    Message, MsgError, MsgType, accept, accepted, admit, join, nack, prepare, promise, voted,
};
use crate::{AcceptorId, Ballot, Instance, NodeId, Time, Value};

/// Most instances one fetch is answered with.
const MAX_FETCH: u64 = 1024;
/// Instances the vote store may reach beyond `retain` above the trim point
/// (far more than any leader's window).
const AHEAD: u64 = 1 << 16;
/// Encoded answers' buffers kept for reuse.
const SPARE_BUFFERS: usize = 1024;

/// An answer, encoded: a whole NFVinc message (session 0) and where it
/// goes.
#[derive(Debug)]
struct Out {
    dest: Dest,
    bytes: Vec<u8>,
}

/// One change of an acceptor's state, as the write-ahead log stores it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Record {
    /// Who this acceptor is (the first record of a log).
    Identity(AcceptorId),
    /// It promised a ballot.
    Promise(Ballot),
    /// It accepted a value in an instance at a ballot.
    Accept {
        /// The instance.
        instance: Instance,
        /// The ballot.
        ballot: Ballot,
        /// The value.
        value: Value,
    },
    /// It dropped everything below an instance (all decided).
    Trim(Instance),
}

/// A batch of records to make durable before the answers that depend on
/// them are released.
///
/// The records come encoded, framed as the log stores them ([`crate::wal`]):
/// the acceptor writes an accept's record straight from the accept's bytes,
/// so a vote costs the log a copy, not a value built and encoded again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistBatch {
    /// Its number, to hand back to [`Acceptor::persisted`].
    pub id: u64,
    /// The records, in order, framed ([`crate::wal::encode_record`]).
    pub log: Vec<u8>,
    /// How many records `log` holds.
    pub count: usize,
}

impl PersistBatch {
    /// The records, decoded.
    pub fn records(&self) -> Vec<Record> {
        crate::wal::decode_records(&self.log).0
    }
}

/// What the acceptor has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Prepares promised.
    pub promises: u64,
    /// Values voted for.
    pub votes: u64,
    /// Prepares and accepts refused.
    pub nacks: u64,
    /// Batches handed out to persist.
    pub batches: u64,
    /// Answers dropped because they do not fit in one message.
    pub too_large: u64,
}

/// An acceptor (see the crate docs for the protocol).
#[derive(Debug)]
pub struct Acceptor {
    id: AcceptorId,
    cfg: AcceptorConfig,
    /// False while a rejoining acceptor waits to be admitted.
    active: bool,
    promised: Ballot,
    votes: VoteStore,
    trim: Instance,
    /// Records not yet handed out, framed for the log, and their count.
    open: Vec<u8>,
    open_count: usize,
    open_id: u64,
    persisted_id: u64,
    held: VecDeque<(u64, Out)>,
    outbox: VecDeque<Out>,
    /// Buffers of answers already sent, for the next ones.
    spare: Vec<Vec<u8>>,
    /// Where each entry of the accept in hand ends (reused).
    ends: Vec<usize>,
    next_join: Time,
    counters: Counters,
}

impl Acceptor {
    /// An acceptor of the initial group, with empty state.
    pub fn new(id: AcceptorId, cfg: AcceptorConfig) -> Self {
        let mut a = Self::blank(id, cfg, true);
        a.record(Record::Identity(id));
        a
    }

    /// An acceptor that lost its state (an in-memory restart, a lost disk)
    /// and comes back under `id`, a new incarnation of its slot: it asks
    /// the coordinators to admit it and votes on nothing before.
    pub fn rejoin(id: AcceptorId, cfg: AcceptorConfig, now: Time) -> Self {
        let mut a = Self::blank(id, cfg, false);
        a.next_join = now;
        a
    }

    /// An acceptor rebuilt from the records its log replays, in order.
    /// `None` when the records do not start with an identity.
    pub fn recover(cfg: AcceptorConfig, records: impl IntoIterator<Item = Record>) -> Option<Self> {
        let mut records = records.into_iter();
        let Some(Record::Identity(id)) = records.next() else {
            return None;
        };
        let mut a = Self::blank(id, cfg, true);
        for r in records {
            match r {
                Record::Identity(_) => {}
                Record::Promise(b) => a.promised = a.promised.max(b),
                Record::Accept {
                    instance,
                    ballot,
                    value,
                } => {
                    let mut bytes = vec![0; value.wire_len()];
                    if emit_value(&value, &mut bytes).is_ok() {
                        // Below the trim point: decided, dropped. Beyond
                        // the store's reach: never written (live votes
                        // are refused there first).
                        let _ = a.votes.insert(instance, ballot, &bytes);
                    }
                }
                Record::Trim(t) => a.trim_to(t),
            }
        }
        Some(a)
    }

    fn blank(id: AcceptorId, cfg: AcceptorConfig, active: bool) -> Self {
        let reach = cfg
            .retain
            .min(1 << 30)
            .saturating_add(cfg.retain.min(1 << 30) / 8)
            .saturating_add(AHEAD);
        Acceptor {
            id,
            cfg,
            active,
            promised: Ballot::ZERO,
            votes: VoteStore::new(reach),
            trim: 0,
            open: Vec::new(),
            open_count: 0,
            open_id: 1,
            persisted_id: 0,
            held: VecDeque::new(),
            outbox: VecDeque::new(),
            spare: Vec::new(),
            ends: Vec::new(),
            next_join: Time::MAX,
            counters: Counters::default(),
        }
    }

    /// Its identity.
    pub fn id(&self) -> AcceptorId {
        self.id
    }

    /// Whether it votes (false while waiting for admission).
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// The highest ballot it promised.
    pub fn promised(&self) -> Ballot {
        self.promised
    }

    /// Every instance below this one was dropped as decided.
    pub fn trim_point(&self) -> Instance {
        self.trim
    }

    /// What it has done so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    fn durable(&self) -> bool {
        self.cfg.durability == Durability::Wal
    }

    fn record(&mut self, r: Record) {
        if self.durable() {
            crate::wal::encode_record(&r, &mut self.open);
            self.open_count += 1;
        }
    }

    /// A buffer for an answer, from the spares when there are some.
    fn buffer(&mut self) -> Vec<u8> {
        let mut b = self.spare.pop().unwrap_or_default();
        b.clear();
        b
    }

    fn recycle(&mut self, b: Vec<u8>) {
        if self.spare.len() < SPARE_BUFFERS {
            self.spare.push(b);
        }
    }

    /// Encodes `msg` for `dest` and queues it.
    fn send(&mut self, dest: Dest, msg: &Message) {
        let mut b = self.buffer();
        b.resize(nfvinc::HEADER_LEN + msg.payload_len(), 0);
        match msg.emit(0, &mut b) {
            Ok(n) => {
                b.truncate(n);
                self.queue(Out { dest, bytes: b });
            }
            Err(_) => {
                self.counters.too_large += 1;
                self.recycle(b);
            }
        }
    }

    /// Queues an encoded answer: at once, or after the records it depends
    /// on.
    fn queue(&mut self, out: Out) {
        let after = if self.open_count == 0 {
            self.open_id - 1
        } else {
            self.open_id
        };
        if after <= self.persisted_id && self.held.is_empty() {
            self.outbox.push_back(out);
        } else {
            self.held.push_back((after, out));
        }
    }

    /// Takes one received NFVinc message (a UDP payload) as bytes: accepts
    /// by the wire path (see the module docs), anything else parsed and
    /// handed to [`Acceptor::handle`]. Malformed input is an error and
    /// changes nothing.
    pub fn handle_nfv(&mut self, now: Time, from: NodeId, message: &[u8]) -> Result<(), MsgError> {
        let h = NfvHeader::new_checked(message)?;
        let service = h.service()?;
        if service != Service::Consensus {
            return Err(MsgError::WrongService(service));
        }
        if h.msg_type() == u8::from(MsgType::Accept) {
            return self.on_accept_bytes(from, h.payload());
        }
        let msg = Message::parse(h.msg_type(), h.payload())?;
        self.handle(now, from, msg);
        Ok(())
    }

    /// Takes one received message.
    pub fn handle(&mut self, now: Time, from: NodeId, msg: Message) {
        match msg {
            Message::Admit(a) => self.on_admit(from, a),
            _ if !self.active => {}
            Message::Prepare(p) => self.on_prepare(from, p),
            Message::Accept(a) => self.on_accept(from, a),
            Message::Fetch(f) => self.on_fetch(from, f.from, f.to),
            Message::Heartbeat(h) => self.on_commit_point(h.committed),
            _ => {}
        }
        let _ = now;
    }

    fn nack(&mut self, to: NodeId, refused: Ballot) {
        self.counters.nacks += 1;
        let msg = Message::Nack(nack::Repr {
            refused,
            promised: self.promised,
            acceptor: self.id,
        });
        self.send(Dest::Node(to), &msg);
    }

    fn promise_ballot(&mut self, b: Ballot) {
        if b > self.promised {
            self.promised = b;
            self.record(Record::Promise(b));
        }
    }

    fn on_prepare(&mut self, from: NodeId, p: prepare::Repr) {
        if p.ballot < self.promised {
            return self.nack(from, p.ballot);
        }
        self.counters.promises += 1;
        self.promise_ballot(p.ballot);
        // One page per datagram's worth of values; the last page's end is
        // open, so that the coordinator knows nothing lies beyond it.
        let mut lo = p.from;
        let mut entries = Vec::new();
        let mut bytes = 0;
        let pages: Vec<(Instance, Entry)> = self
            .votes
            .range(p.from, Instance::MAX)
            .filter_map(|(instance, ballot, value)| {
                // Stored values were checked on the way in.
                let (value, _) = parse_value(value).ok()?;
                Some((
                    instance,
                    Entry {
                        instance,
                        ballot,
                        value,
                    },
                ))
            })
            .collect();
        for (instance, e) in pages {
            let len = entry_len(&e, true);
            if !entries.is_empty() && bytes + len > self.cfg.max_packet_bytes {
                self.send_promise(from, p.ballot, lo, instance, std::mem::take(&mut entries));
                lo = instance;
                bytes = 0;
            }
            bytes += len;
            entries.push(e);
        }
        self.send_promise(from, p.ballot, lo, Instance::MAX, entries);
    }

    fn send_promise(
        &mut self,
        to: NodeId,
        ballot: Ballot,
        lo: Instance,
        hi: Instance,
        entries: Vec<Entry>,
    ) {
        let msg = Message::Promise(promise::Repr {
            ballot,
            acceptor: self.id,
            trim: self.trim,
            lo,
            hi,
            entries,
        });
        self.send(Dest::Node(to), &msg);
    }

    /// An accept as values: encoded and taken by the wire path, so that
    /// both ways in share one implementation.
    fn on_accept(&mut self, from: NodeId, a: accept::Repr) {
        let mut b = self.buffer();
        b.resize(a.buffer_len(), 0);
        if a.emit(&mut accept::Packet::new_unchecked(&mut b[..]))
            .is_ok()
        {
            let _ = self.on_accept_bytes(from, &b);
        }
        self.recycle(b);
    }

    /// An accept's payload: checks every entry first (a malformed accept
    /// changes nothing), then votes for each entry it can keep, copying
    /// the entry's bytes into the store and into the vote.
    fn on_accept_bytes(&mut self, from: NodeId, p: &[u8]) -> Result<(), MsgError> {
        let packet = accept::Packet::new_checked(p)?;
        let list = &p[accept::HEADER_LEN..];
        let mut ends = std::mem::take(&mut self.ends);
        ends.clear();
        let mut at = 0;
        for _ in 0..packet.count() {
            let checked = check_len("entry", at + 8, list.len())
                .map_err(MsgError::from)
                .and_then(|()| scan_value(&list[at + 8..]));
            match checked {
                Ok(n) => at += 8 + n,
                Err(e) => {
                    self.ends = ends;
                    return Err(e);
                }
            }
            ends.push(at);
        }
        if self.active {
            self.vote(from, packet.ballot(), packet.committed(), list, &ends);
        }
        self.ends = ends;
        Ok(())
    }

    /// Votes for the entries of `list` (each ending at the offset in
    /// `ends`) in `ballot`, or refuses them.
    fn vote(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        committed: Instance,
        list: &[u8],
        ends: &[usize],
    ) {
        if ballot < self.promised {
            return self.nack(from, ballot);
        }
        self.promise_ballot(ballot);
        // The commit point first: instances it puts below the trim point
        // are decided, so neither kept nor voted for.
        self.on_commit_point(committed);
        let durable = self.durable();
        let mut out = self.buffer();
        out.resize(nfvinc::HEADER_LEN + accepted::HEADER_LEN, 0);
        let mut count: u16 = 0;
        let mut start = 0;
        for &end in ends {
            let instance = get_u64(list, start..start + 8);
            let value = &list[start + 8..end];
            if self.votes.insert(instance, ballot, value) {
                // With the log the vote goes to the coordinators only,
                // which hold the values they proposed: a `Voted` names
                // the instance. In memory it is an `Accepted` carrying
                // the accept's own entry bytes, for the learners.
                let entry = if durable { start + 8 } else { end };
                out.extend_from_slice(&list[start..entry]);
                count += 1;
                self.counters.votes += 1;
                if durable {
                    // The value's bytes were checked with the accept.
                    crate::wal::encode_accept(instance, ballot, value, &mut self.open);
                    self.open_count += 1;
                }
            }
            start = end;
        }
        if count == 0 || (durable && self.merge_vote(ballot, &out, count)) {
            return self.recycle(out);
        }
        // As long as the accept's own entries behind as long a header: the
        // lengths fit wherever the accept's did.
        let header = NfvRepr {
            service: Service::Consensus,
            msg_type: if durable {
                MsgType::Voted
            } else {
                MsgType::Accepted
            }
            .into(),
            session_id: 0,
            tag: None,
            payload_len: out.len() - nfvinc::HEADER_LEN,
        };
        let written = header
            .emit(&mut NfvHeader::new_unchecked(&mut out[..]))
            .map_err(MsgError::from)
            .and_then(|()| {
                let fixed = &mut out[nfvinc::HEADER_LEN..];
                if durable {
                    voted::emit_header(fixed, ballot, self.id, count)
                } else {
                    accepted::emit_header(fixed, ballot, self.id, count)
                }
            });
        // With the log, to the coordinators only: the leader announces
        // what a majority decided to the learners (and subscribed
        // clients) itself, one message per instance instead of one vote
        // per acceptor, and a learner that misses an announcement rebuilds
        // the decision from the votes every acceptor keeps. In memory a
        // replaced identity takes its votes along, so the learners take
        // them as they are cast (crate docs, Learning).
        let dest = if self.durable() {
            Dest::Coordinators
        } else {
            Dest::Learners
        };
        match written {
            Ok(()) => self.queue(Out { dest, bytes: out }),
            Err(_) => {
                self.counters.too_large += 1;
                self.recycle(out);
            }
        }
    }

    /// Adds a durable vote's instances (`vote`: a `Voted` being built, its
    /// headers not yet written) to the `Voted` of the same ballot at the
    /// back of the held answers, if that one waits for the same batch and
    /// has room; true when it did. The accepts of a burst are synced
    /// together and so answered together: in one message, where each
    /// took a frame of its own (15 a sync in a loaded run), which the
    /// leader then took one by one.
    fn merge_vote(&mut self, ballot: Ballot, vote: &[u8], count: u16) -> bool {
        let fixed = nfvinc::HEADER_LEN;
        let instances = &vote[fixed + voted::HEADER_LEN..];
        let Some((after, last)) = self.held.back_mut() else {
            return false;
        };
        if *after != self.open_id || last.dest != Dest::Coordinators {
            return false;
        }
        let b = &mut last.bytes;
        let is_voted =
            NfvHeader::new_checked(&b[..]).is_ok_and(|h| h.msg_type() == u8::from(MsgType::Voted));
        let Some(p) = is_voted
            .then(|| voted::Packet::new_checked(&b[fixed..]).ok())
            .flatten()
        else {
            return false;
        };
        let total = p.count() + usize::from(count);
        if p.ballot() != ballot || total * voted::INSTANCE_LEN > self.cfg.max_packet_bytes {
            return false;
        }
        let old_len = b.len();
        b.extend_from_slice(instances);
        let header = NfvRepr {
            service: Service::Consensus,
            msg_type: MsgType::Voted.into(),
            session_id: 0,
            tag: None,
            payload_len: b.len() - fixed,
        };
        let merged = header
            .emit(&mut NfvHeader::new_unchecked(&mut b[..]))
            .map_err(MsgError::from)
            .and_then(|()| voted::emit_header(&mut b[fixed..], ballot, self.id, total as u16))
            .is_ok();
        if !merged {
            // Nothing was written (both check their room first): the
            // message stands as it was, and the vote goes on its own.
            b.truncate(old_len);
        }
        merged
    }

    /// Re-sends its votes in a range, grouped by ballot, to a learner that
    /// misses decisions.
    fn on_fetch(&mut self, to: NodeId, from: Instance, end: Instance) {
        let end = end.min(from.saturating_add(MAX_FETCH));
        let mut batch: Option<(Ballot, Vec<Entry>, usize)> = None;
        let found: Vec<(Instance, Ballot, Value)> = self
            .votes
            .range(from, end)
            .filter_map(|(i, b, v)| Some((i, b, parse_value(v).ok()?.0)))
            .collect();
        for (instance, ballot, value) in found {
            let e = Entry {
                instance,
                ballot: Ballot::ZERO,
                value,
            };
            let len = entry_len(&e, false);
            if let Some((b, entries, bytes)) = &mut batch {
                if *b == ballot && *bytes + len <= self.cfg.max_packet_bytes {
                    *bytes += len;
                    entries.push(e);
                    continue;
                }
            }
            if let Some((b, entries, _)) = batch.take() {
                self.send_votes(to, b, entries);
            }
            batch = Some((ballot, vec![e], len));
        }
        if let Some((b, entries, _)) = batch {
            self.send_votes(to, b, entries);
        }
    }

    fn send_votes(&mut self, to: NodeId, ballot: Ballot, entries: Vec<Entry>) {
        let msg = Message::Accepted(accepted::Repr {
            ballot,
            acceptor: self.id,
            entries,
        });
        self.send(Dest::Node(to), &msg);
    }

    /// Drops votes far enough below the leader's commit point, in steps of
    /// a sixteenth of `retain`: trimming a map on every accept would cost
    /// more than the accept (keeping a few more decided values is safe).
    fn on_commit_point(&mut self, committed: Instance) {
        let t = committed.saturating_sub(self.cfg.retain);
        let step = (self.cfg.retain / 16).max(1);
        if t >= self.trim.saturating_add(step) {
            self.trim_to(t);
            self.record(Record::Trim(t));
        }
    }

    fn trim_to(&mut self, t: Instance) {
        if t > self.trim {
            self.trim = t;
            self.votes.trim(t);
        }
    }

    fn on_admit(&mut self, from: NodeId, a: admit::Repr) {
        if a.acceptor != self.id {
            return;
        }
        if !self.active {
            self.active = true;
            self.next_join = Time::MAX;
            self.record(Record::Identity(self.id));
            self.trim_to(a.trim);
            self.record(Record::Trim(a.trim));
        }
        if a.ballot < self.promised {
            return;
        }
        self.promise_ballot(a.ballot);
        self.send_promise(from, a.ballot, a.trim, Instance::MAX, Vec::new());
    }

    /// The records to persist since the last call, as one batch; `None`
    /// when there are none (always, in memory).
    pub fn poll_persist(&mut self) -> Option<PersistBatch> {
        if self.open_count == 0 {
            return None;
        }
        let id = self.open_id;
        self.open_id += 1;
        self.counters.batches += 1;
        Some(PersistBatch {
            id,
            log: std::mem::take(&mut self.open),
            count: std::mem::take(&mut self.open_count),
        })
    }

    /// Reports batches up to `id` durable: the answers waiting for them
    /// may leave.
    pub fn persisted(&mut self, id: u64) {
        self.persisted_id = self.persisted_id.max(id);
        while let Some((after, _)) = self.held.front() {
            if *after > self.persisted_id {
                break;
            }
            let (_, t) = self.held.pop_front().expect("front exists");
            self.outbox.push_back(t);
        }
    }

    /// The next message to send, if any, as a value.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        while let Some(out) = self.outbox.pop_front() {
            let parsed = Message::parse_nfv(&out.bytes);
            let dest = out.dest;
            self.recycle(out.bytes);
            // Always parses: the acceptor wrote it.
            if let Ok((_, msg)) = parsed {
                return Some(Transmit { dest, msg });
            }
        }
        None
    }

    /// Writes the next message to send, a whole NFVinc message (session
    /// 0), at the front of `buf`: its destination and length, or
    /// `NoRoom` (the message is then dropped) when `buf` is too short.
    /// `None` when there is nothing to send.
    pub fn poll_emit(&mut self, buf: &mut [u8]) -> Option<(Dest, Result<usize, MsgError>)> {
        let out = self.outbox.pop_front()?;
        let n = out.bytes.len();
        let written = match buf.get_mut(..n) {
            Some(b) => {
                b.copy_from_slice(&out.bytes);
                Ok(n)
            }
            None => Err(MsgError::Wire(dataplane::wire::WireError::NoRoom {
                what: "consensus message",
                needed: n,
                got: buf.len(),
            })),
        };
        let dest = out.dest;
        self.recycle(out.bytes);
        Some((dest, written))
    }

    /// When [`Acceptor::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Time> {
        (!self.active).then_some(self.next_join)
    }

    /// Runs the timers due at `now`: a joining acceptor asks again.
    pub fn handle_timeout(&mut self, now: Time) {
        if !self.active && now >= self.next_join {
            self.next_join = now + self.cfg.join_interval;
            let msg = Message::Join(join::Repr { acceptor: self.id });
            let mut b = self.buffer();
            b.resize(nfvinc::HEADER_LEN + msg.payload_len(), 0);
            match msg.emit(0, &mut b) {
                Ok(n) => {
                    b.truncate(n);
                    self.outbox.push_back(Out {
                        dest: Dest::Coordinators,
                        bytes: b,
                    });
                }
                Err(_) => self.recycle(b),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Command;

    fn accept(ballot: Ballot, instance: Instance) -> Message {
        Message::Accept(accept::Repr {
            ballot,
            committed: 0,
            entries: vec![Entry {
                instance,
                ballot: Ballot::ZERO,
                value: Value::batch(vec![Command::of(9, instance + 1, b"set x 1")]),
            }],
        })
    }

    fn voted(ballot: Ballot, acceptor: AcceptorId, instances: Vec<Instance>) -> Transmit {
        Transmit {
            dest: Dest::Coordinators,
            msg: Message::Voted(voted::Repr {
                ballot,
                acceptor,
                instances,
            }),
        }
    }

    #[test]
    fn the_votes_of_one_synced_batch_leave_in_one_voted_per_ballot() {
        let id = AcceptorId {
            slot: 1,
            incarnation: 1,
        };
        let mut a = Acceptor::new(id, AcceptorConfig::default());
        let b = |round| Ballot {
            round,
            node: NodeId(1),
            incarnation: 0,
        };
        let (now, leader) = (Time::ZERO, NodeId(1));
        for i in 0..3 {
            a.handle(now, leader, accept(b(2), i));
        }
        a.handle(now, leader, accept(b(3), 3));
        a.handle(now, leader, accept(b(3), 4));
        let first = a.poll_persist().expect("a batch");
        a.handle(now, leader, accept(b(3), 5));
        let second = a.poll_persist().expect("another batch");
        assert_eq!(a.poll_transmit(), None, "nothing before the sync");
        a.persisted(first.id);
        let sent: Vec<_> = std::iter::from_fn(|| a.poll_transmit()).collect();
        assert_eq!(
            sent,
            vec![voted(b(2), id, vec![0, 1, 2]), voted(b(3), id, vec![3, 4])],
            "one message per ballot for the batch"
        );
        a.persisted(second.id);
        assert_eq!(a.poll_transmit(), Some(voted(b(3), id, vec![5])));
        assert_eq!(a.poll_transmit(), None);
    }

    #[test]
    fn a_merged_vote_stays_within_the_packet_size() {
        let id = AcceptorId {
            slot: 0,
            incarnation: 1,
        };
        let cfg = AcceptorConfig {
            max_packet_bytes: 2 * voted::INSTANCE_LEN,
            ..AcceptorConfig::default()
        };
        let mut a = Acceptor::new(id, cfg);
        let b = Ballot {
            round: 1,
            node: NodeId(1),
            incarnation: 0,
        };
        for i in 0..5 {
            a.handle(Time::ZERO, NodeId(1), accept(b, i));
        }
        let batch = a.poll_persist().expect("a batch");
        a.persisted(batch.id);
        let sent: Vec<_> = std::iter::from_fn(|| a.poll_transmit()).collect();
        assert_eq!(
            sent,
            vec![
                voted(b, id, vec![0, 1]),
                voted(b, id, vec![2, 3]),
                voted(b, id, vec![4])
            ]
        );
    }
}
