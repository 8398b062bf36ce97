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

use std::collections::{BTreeMap, VecDeque};

use crate::config::{AcceptorConfig, Durability};
use crate::transmit::{Dest, Transmit};
use crate::wire::value::{Entry, entry_len};
use crate::wire::{Message, accept, accepted, admit, join, nack, prepare, promise};
use crate::{AcceptorId, Ballot, Instance, NodeId, Time, Value};

/// Most instances one fetch is answered with.
const MAX_FETCH: u64 = 1024;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistBatch {
    /// Its number, to hand back to [`Acceptor::persisted`].
    pub id: u64,
    /// The records, in order.
    pub records: Vec<Record>,
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
}

/// An acceptor (see the crate docs for the protocol).
#[derive(Debug)]
pub struct Acceptor {
    id: AcceptorId,
    cfg: AcceptorConfig,
    /// False while a rejoining acceptor waits to be admitted.
    active: bool,
    promised: Ballot,
    accepted: BTreeMap<Instance, (Ballot, Value)>,
    trim: Instance,
    open: Vec<Record>,
    open_id: u64,
    persisted_id: u64,
    held: VecDeque<(u64, Transmit)>,
    outbox: VecDeque<Transmit>,
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
                    if instance >= a.trim {
                        a.accepted.insert(instance, (ballot, value));
                    }
                }
                Record::Trim(t) => a.trim_to(t),
            }
        }
        Some(a)
    }

    fn blank(id: AcceptorId, cfg: AcceptorConfig, active: bool) -> Self {
        Acceptor {
            id,
            cfg,
            active,
            promised: Ballot::ZERO,
            accepted: BTreeMap::new(),
            trim: 0,
            open: Vec::new(),
            open_id: 1,
            persisted_id: 0,
            held: VecDeque::new(),
            outbox: VecDeque::new(),
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
            self.open.push(r);
        }
    }

    /// Queues an answer: at once, or after the records it depends on.
    fn send(&mut self, t: Transmit) {
        let after = if self.open.is_empty() {
            self.open_id - 1
        } else {
            self.open_id
        };
        if after <= self.persisted_id && self.held.is_empty() {
            self.outbox.push_back(t);
        } else {
            self.held.push_back((after, t));
        }
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
        self.send(Transmit {
            dest: Dest::Node(to),
            msg: Message::Nack(nack::Repr {
                refused,
                promised: self.promised,
                acceptor: self.id,
            }),
        });
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
            .accepted
            .range(p.from..)
            .map(|(&instance, (ballot, value))| {
                (
                    instance,
                    Entry {
                        instance,
                        ballot: *ballot,
                        value: value.clone(),
                    },
                )
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
        self.send(Transmit {
            dest: Dest::Node(to),
            msg: Message::Promise(promise::Repr {
                ballot,
                acceptor: self.id,
                trim: self.trim,
                lo,
                hi,
                entries,
            }),
        });
    }

    fn on_accept(&mut self, from: NodeId, a: accept::Repr) {
        if a.ballot < self.promised {
            return self.nack(from, a.ballot);
        }
        self.promise_ballot(a.ballot);
        // The vote carries the accept's own entries: no second list.
        let mut voted = a.entries;
        let trim = self.trim;
        voted.retain(|e| e.instance >= trim);
        for e in &voted {
            self.counters.votes += 1;
            if self.durable() {
                self.open.push(Record::Accept {
                    instance: e.instance,
                    ballot: a.ballot,
                    value: e.value.clone(),
                });
            }
            self.accepted
                .insert(e.instance, (a.ballot, e.value.clone()));
        }
        if !voted.is_empty() {
            self.send(Transmit {
                dest: Dest::Learners,
                msg: Message::Accepted(accepted::Repr {
                    ballot: a.ballot,
                    acceptor: self.id,
                    entries: voted,
                }),
            });
        }
        self.on_commit_point(a.committed);
    }

    /// Re-sends its votes in a range, grouped by ballot, to a learner that
    /// misses decisions.
    fn on_fetch(&mut self, to: NodeId, from: Instance, end: Instance) {
        let end = end.min(from.saturating_add(MAX_FETCH));
        let mut batch: Option<(Ballot, Vec<Entry>, usize)> = None;
        let found: Vec<(Instance, Ballot, Value)> = self
            .accepted
            .range(from..end)
            .map(|(&i, (b, v))| (i, *b, v.clone()))
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
        self.send(Transmit {
            dest: Dest::Node(to),
            msg: Message::Accepted(accepted::Repr {
                ballot,
                acceptor: self.id,
                entries,
            }),
        });
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
            self.accepted = self.accepted.split_off(&t);
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
        if self.open.is_empty() {
            return None;
        }
        let id = self.open_id;
        self.open_id += 1;
        self.counters.batches += 1;
        Some(PersistBatch {
            id,
            records: std::mem::take(&mut self.open),
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

    /// The next message to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
    }

    /// When [`Acceptor::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Time> {
        (!self.active).then_some(self.next_join)
    }

    /// Runs the timers due at `now`: a joining acceptor asks again.
    pub fn handle_timeout(&mut self, now: Time) {
        if !self.active && now >= self.next_join {
            self.next_join = now + self.cfg.join_interval;
            self.outbox.push_back(Transmit {
                dest: Dest::Coordinators,
                msg: Message::Join(join::Repr { acceptor: self.id }),
            });
        }
    }
}
