//! The coordinator: proposer, leader candidate and (to know what is
//! decided) learner.
//!
//! A follower stands for election when the leader's heartbeats stop
//! (phase 1 with a ballot above every one it has seen); once a majority of
//! acceptor slots promised, it re-proposes what they reported accepted
//! (the value of the highest ballot per instance), fills holes with no-ops
//! and leads: client commands are batched into instances, a window of
//! instances in flight, accepts packed several to a packet. Any higher
//! ballot it hears of (a nack, a heartbeat, a vote) makes it step down.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::config::CoordinatorConfig;
use crate::dedup::{Dedup, FastMap};
use crate::learner::decided_pages;
use crate::pending::Pending;
use crate::transmit::{Dest, Rng, Transmit};
use crate::votes::{VoteValue, Votes};
use crate::wire::replies::{self, Run, push_run};
use crate::wire::value::{Entry, command_cost, entry_len};
use crate::wire::{
    Message, MsgError, MsgType, accept, accepted, admit, decided, fetch, heartbeat, prepare,
    promise, reply, voted,
};
use crate::{AcceptorId, Ballot, ClientId, Command, Instance, NodeId, Time, Value};
use dataplane::wire::nfvinc::{NfvHeader, Service};

/// Most instances one fetch asks for.
const MAX_FETCH: u64 = 1024;
/// Payload bytes of a `Replies` message at least (runs per message).
const REPLY_BYTES: usize = 1200;

/// Whom to answer for a command, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ReplyTo {
    node: NodeId,
    /// It came in a `Submit`: answered in `Replies` runs, else by a
    /// `Reply` of its own.
    runs: bool,
}

/// Runs of decided commands gathered for one client at one node, sent as
/// `Replies` when the coordinator is next polled: every command a burst of
/// input settled is answered in as few messages as possible.
#[derive(Debug)]
struct Acks {
    node: NodeId,
    client: ClientId,
    runs: Vec<Run>,
}

/// What the coordinator has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Instances it learned decided.
    pub instances_decided: u64,
    /// Commands in those instances.
    pub commands_decided: u64,
    /// Elections it stood in.
    pub elections: u64,
    /// Times it became leader.
    pub terms: u64,
    /// Instances it proposed (re-proposals after an election included).
    pub proposed: u64,
    /// Accepts it sent again for lack of votes.
    pub retransmits: u64,
    /// Acceptor identities it admitted.
    pub admissions: u64,
}

#[derive(Debug)]
struct SlotPromise {
    /// Instance ranges its pages covered.
    ranges: Vec<(Instance, Instance)>,
    done: bool,
}

#[derive(Debug)]
struct Phase1 {
    ballot: Ballot,
    from: Instance,
    last_sent: Time,
    give_up_at: Time,
    slots: Vec<SlotPromise>,
    recovered: BTreeMap<Instance, (Ballot, Value)>,
    trim: Instance,
    /// Run for an admission: the old members must report nothing at or
    /// above `from`.
    admitting: bool,
}

#[derive(Debug)]
enum Role {
    Follower,
    Candidate(Box<Phase1>),
    Leader(Ballot),
}

#[derive(Debug)]
struct InFlight {
    value: Value,
    sent_at: Time,
    /// Sent more than once: its decision time says nothing of the round
    /// trip (which copy was answered?), so it is no sample (Karn).
    resent: bool,
}

/// Longest retransmission timeout, in multiples of the configured one: a
/// lost accept is resent within this even after a slow spell.
const MAX_RTO_FACTOR: u32 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AdmitState {
    /// No new proposals until everything in flight is decided.
    Draining,
    /// Phase 1 on the old members is running.
    Preparing,
    /// Admitted; admits are repeated until the acceptor answers.
    Admitted { ballot: Ballot, trim: Instance },
}

#[derive(Debug, Clone, Copy)]
struct Admission {
    acceptor: AcceptorId,
    node: NodeId,
    state: AdmitState,
}

/// A coordinator (see the crate docs for the protocol).
#[derive(Debug)]
pub struct Coordinator {
    cfg: CoordinatorConfig,
    rank: u32,
    rng: Rng,
    role: Role,
    max_seen: Ballot,
    leader_hint: Option<NodeId>,
    election_at: Time,
    incarnations: Vec<u32>,
    votes: Votes,
    log: BTreeMap<Instance, Value>,
    committed: Instance,
    horizon: Instance,
    gap_since: Option<(Time, Instance)>,
    decided_cmds: Dedup,
    queue: VecDeque<Command>,
    /// Commands queued or in flight, with whom to answer.
    pending: Pending<Option<ReplyTo>>,
    /// Answers gathered since the last poll, and where each group is.
    acks: Vec<Acks>,
    ack_index: FastMap<(NodeId, ClientId), usize>,
    /// The group the last answer went to, and where it is in `acks`.
    last_ack: Option<((NodeId, ClientId), usize)>,
    inflight: BTreeMap<Instance, InFlight>,
    next: Instance,
    /// Smoothed propose-to-decide time of instances sent once (nanos;
    /// 0: no sample yet), for the retransmission timeout.
    srtt: u64,
    /// The window is to be filled at the next poll (the latest input's
    /// time).
    refill: Option<Time>,
    fresh: VecDeque<Entry>,
    /// Instances it learned decided while leading, to announce to the
    /// learners (packed several to a `Decided` at the next poll).
    announce: VecDeque<Entry>,
    outbox: VecDeque<Transmit>,
    next_heartbeat: Time,
    next_scan: Time,
    admission: Option<Admission>,
    counters: Counters,
}

impl Coordinator {
    /// A coordinator starting as a follower at `now`.
    pub fn new(cfg: CoordinatorConfig, now: Time) -> Self {
        let rank = cfg
            .coordinators
            .iter()
            .position(|&n| n == cfg.node)
            .unwrap_or(cfg.coordinators.len()) as u32;
        let slots = cfg.acceptors.min(64);
        let mut c = Coordinator {
            rng: Rng::new(cfg.seed),
            rank,
            role: Role::Follower,
            max_seen: Ballot::ZERO,
            leader_hint: None,
            election_at: now,
            incarnations: vec![0; usize::from(slots)],
            votes: Votes::new(slots),
            log: BTreeMap::new(),
            committed: 0,
            horizon: 0,
            gap_since: None,
            decided_cmds: Dedup::default(),
            queue: VecDeque::new(),
            pending: Pending::default(),
            acks: Vec::new(),
            ack_index: FastMap::default(),
            last_ack: None,
            inflight: BTreeMap::new(),
            next: 0,
            srtt: 0,
            refill: None,
            fresh: VecDeque::new(),
            announce: VecDeque::new(),
            outbox: VecDeque::new(),
            next_heartbeat: Time::MAX,
            next_scan: Time::MAX,
            admission: None,
            counters: Counters::default(),
            cfg,
        };
        c.election_at = c.election_deadline(now);
        c
    }

    /// Whether it leads (phase 1 done for its ballot, no higher one seen).
    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }

    /// The highest ballot it has seen or used.
    pub fn ballot(&self) -> Ballot {
        self.max_seen
    }

    /// The coordinator it believes leads.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader_hint
    }

    /// Every instance below this one is decided and known to it.
    pub fn committed(&self) -> Instance {
        self.committed
    }

    /// The acceptor identity it counts in each slot.
    pub fn incarnations(&self) -> &[u32] {
        &self.incarnations
    }

    /// What it has done so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The value it knows decided in `instance`, while retained.
    pub fn decided(&self, instance: Instance) -> Option<&Value> {
        self.log.get(&instance)
    }

    fn quorum(&self) -> usize {
        self.incarnations.len() / 2 + 1
    }

    fn election_deadline(&mut self, now: Time) -> Time {
        let base = self.cfg.election_timeout * (self.rank + 1);
        let jitter = self
            .rng
            .below(crate::time::duration_nanos(self.cfg.election_timeout) / 2);
        now + base + Duration::from_nanos(jitter)
    }

    fn own_ballot(&self) -> Option<Ballot> {
        match &self.role {
            Role::Follower => None,
            Role::Candidate(p) => Some(p.ballot),
            Role::Leader(b) => Some(*b),
        }
    }

    /// Takes one received message.
    pub fn handle(&mut self, now: Time, from: NodeId, msg: Message) {
        match msg {
            Message::Promise(p) => self.on_promise(now, p),
            Message::Accepted(a) => self.on_accepted(
                now,
                a.ballot,
                a.acceptor,
                a.entries
                    .iter()
                    .map(|e| (e.instance, VoteValue::Built(&e.value))),
            ),
            Message::Voted(v) => self.on_accepted(
                now,
                v.ballot,
                v.acceptor,
                v.instances.iter().map(|&i| (i, VoteValue::Unknown)),
            ),
            Message::Nack(n) => self.observe(now, n.promised),
            Message::Heartbeat(h) => self.on_heartbeat(now, h),
            Message::Request(r) => self.submit(now, from, r.command),
            Message::Submit(r) => self.on_submit(now, from, r.commands),
            Message::Fetch(f) => self.serve_fetch(from, f),
            Message::Decided(d) => {
                for e in d.entries {
                    self.on_decided(now, e.instance, e.value);
                }
                self.after_progress(now);
            }
            Message::Join(j) => {
                self.on_join(from, j.acceptor);
                self.after_progress(now);
            }
            Message::Prepare(_)
            | Message::Accept(_)
            | Message::Reply(_)
            | Message::Replies(_)
            | Message::Admit(_) => {}
        }
    }

    /// Takes one received NFVinc message (a UDP payload) as bytes: votes,
    /// its steady load, by their bytes (the value of an instance is built
    /// once, from the first vote of its ballot, not from every vote; a
    /// `Voted` has only instances), anything else parsed and handed to
    /// [`Coordinator::handle`].
    /// Malformed input is an error and changes nothing.
    pub fn handle_nfv(&mut self, now: Time, from: NodeId, message: &[u8]) -> Result<(), MsgError> {
        let h = NfvHeader::new_checked(message)?;
        let service = h.service()?;
        if service != Service::Consensus {
            return Err(MsgError::WrongService(service));
        }
        if h.msg_type() == u8::from(MsgType::Accepted) {
            let p = accepted::Packet::new_checked(h.payload())?;
            let entries = p.entry_bytes()?;
            self.on_accepted(
                now,
                p.ballot(),
                p.acceptor(),
                entries.map(|(i, b)| (i, VoteValue::Bytes(b))),
            );
            return Ok(());
        }
        if h.msg_type() == u8::from(MsgType::Voted) {
            let p = voted::Packet::new_checked(h.payload())?;
            self.on_accepted(
                now,
                p.ballot(),
                p.acceptor(),
                p.instances().map(|i| (i, VoteValue::Unknown)),
            );
            return Ok(());
        }
        let msg = Message::parse(h.msg_type(), h.payload())?;
        self.handle(now, from, msg);
        Ok(())
    }

    /// A vote: counted per instance, deciding where it makes a majority. A
    /// vote without its value (`Voted`) counts where the value is known:
    /// in the leader's own ballot, for what it proposed, or beside a vote
    /// of its ballot that brought the value; elsewhere a coordinator
    /// learns the decision from the leader's announcement.
    fn on_accepted<'a>(
        &mut self,
        now: Time,
        ballot: Ballot,
        acceptor: AcceptorId,
        entries: impl Iterator<Item = (Instance, VoteValue<'a>)>,
    ) {
        self.observe(now, ballot);
        if let Some(adm) = self.admission
            && let AdmitState::Admitted { ballot: b, .. } = adm.state
            && acceptor == adm.acceptor
            && ballot == b
        {
            self.admission = None;
        }
        let leader = self.is_leader();
        // Votes in the leader's own ballot are for the values it proposed,
        // which it holds: nothing to build from the vote's bytes.
        let own = matches!(self.role, Role::Leader(b) if b == ballot);
        for (instance, value) in entries {
            if !leader {
                self.horizon = self.horizon.max(instance.saturating_add(1));
            }
            if instance < self.committed || self.log.contains_key(&instance) {
                continue;
            }
            let value = match self.inflight.get(&instance) {
                Some(f) if own => VoteValue::Built(&f.value),
                _ => value,
            };
            if let Some(v) = self.votes.vote_for(instance, ballot, acceptor.slot, value) {
                self.on_decided(now, instance, v);
            }
        }
        self.after_progress(now);
    }

    /// Notes a ballot seen anywhere; steps down if it is above its own.
    fn observe(&mut self, now: Time, b: Ballot) {
        if b > self.max_seen {
            self.max_seen = b;
        }
        if let Some(own) = self.own_ballot()
            && b > own
        {
            self.step_down(now, Some(b.node));
        }
    }

    fn step_down(&mut self, now: Time, leader: Option<NodeId>) {
        self.role = Role::Follower;
        self.leader_hint = leader;
        self.fresh.clear();
        self.inflight.clear();
        self.admission = None;
        self.next_heartbeat = Time::MAX;
        self.next_scan = Time::MAX;
        // Queued clients learn the news now rather than at their timeout.
        let mut refused: Vec<Acks> = Vec::new();
        for c in self.queue.drain(..) {
            match self.pending.get(c.client, c.seq) {
                Some(Some(ReplyTo { node, runs: false })) => self.outbox.push_back(Transmit {
                    dest: Dest::Node(*node),
                    msg: Message::Reply(reply::Repr {
                        client: c.client,
                        seq: c.seq,
                        status: reply::Status::NotLeader(leader),
                    }),
                }),
                Some(Some(ReplyTo { node, runs: true })) => {
                    match refused
                        .iter_mut()
                        .find(|a| a.node == *node && a.client == c.client)
                    {
                        Some(a) => push_run(&mut a.runs, c.seq, 0),
                        None => refused.push(Acks {
                            node: *node,
                            client: c.client,
                            runs: vec![Run {
                                first: c.seq,
                                last: c.seq,
                                instance: 0,
                            }],
                        }),
                    }
                }
                _ => {}
            }
        }
        for a in refused {
            self.send_runs(a, replies::Status::NotLeader(leader));
        }
        self.pending.clear();
        self.election_at = self.election_deadline(now);
    }

    fn on_heartbeat(&mut self, now: Time, h: heartbeat::Repr) {
        self.observe(now, h.ballot);
        for (slot, inc) in h.incarnations.iter().enumerate() {
            if let Some(mine) = self.incarnations.get_mut(slot) {
                *mine = (*mine).max(*inc);
            }
        }
        if h.ballot >= self.max_seen && !self.is_leader() {
            self.leader_hint = Some(h.ballot.node);
            if matches!(self.role, Role::Follower) {
                self.election_at = self.election_deadline(now);
            }
        }
        self.horizon = self.horizon.max(h.committed);
    }

    fn on_join(&mut self, from: NodeId, id: AcceptorId) {
        if !self.is_leader() {
            return;
        }
        let Some(&known) = self.incarnations.get(usize::from(id.slot)) else {
            return;
        };
        if id.incarnation <= known {
            return;
        }
        match self.admission {
            Some(a) if a.acceptor == id => {}
            _ => {
                self.admission = Some(Admission {
                    acceptor: id,
                    node: from,
                    state: AdmitState::Draining,
                })
            }
        }
    }

    /// A client's command: answered at once when this coordinator does
    /// not lead or knows it decided, else queued for the next instance
    /// (unless already queued or in flight). The caller fills the window.
    fn on_command(&mut self, from: NodeId, cmd: Command, runs: bool) {
        let to = ReplyTo { node: from, runs };
        if let Some(instance) = self.decided_cmds.get(cmd.client, cmd.seq) {
            self.answer(to, cmd.client, cmd.seq, instance.unwrap_or(Instance::MAX));
            return;
        }
        if self.pending.insert(cmd.client, cmd.seq, Some(to)) {
            self.queue.push_back(cmd);
        }
    }

    /// Many commands in one datagram: queued together, then the window is
    /// filled once, so that they share instances.
    fn on_submit(&mut self, now: Time, from: NodeId, commands: Vec<Command>) {
        if !self.is_leader() {
            let mut refused: Vec<Acks> = Vec::new();
            for c in &commands {
                match refused.iter_mut().find(|a| a.client == c.client) {
                    Some(a) => push_run(&mut a.runs, c.seq, 0),
                    None => refused.push(Acks {
                        node: from,
                        client: c.client,
                        runs: vec![Run {
                            first: c.seq,
                            last: c.seq,
                            instance: 0,
                        }],
                    }),
                }
            }
            for a in refused {
                self.send_runs(a, replies::Status::NotLeader(self.leader_hint));
            }
            return;
        }
        for c in commands {
            self.on_command(from, c, true);
        }
        self.refill_at(now);
    }

    /// Answers that `(client, seq)` was decided in `instance`: at once by a
    /// `Reply`, or gathered into the runs sent at the next poll.
    fn answer(&mut self, to: ReplyTo, client: ClientId, seq: u64, instance: Instance) {
        if !to.runs {
            self.outbox.push_back(Transmit {
                dest: Dest::Node(to.node),
                msg: Message::Reply(reply::Repr {
                    client,
                    seq,
                    status: reply::Status::Decided(instance),
                }),
            });
            return;
        }
        let key = (to.node, client);
        let at = match self.last_ack {
            // A batch's commands are mostly one client's: no lookup.
            Some((k, at)) if k == key => at,
            _ => {
                let at = *self.ack_index.entry(key).or_insert_with(|| {
                    self.acks.push(Acks {
                        node: to.node,
                        client,
                        runs: Vec::new(),
                    });
                    self.acks.len() - 1
                });
                self.last_ack = Some((key, at));
                at
            }
        };
        push_run(&mut self.acks[at].runs, seq, instance);
    }

    /// Sends `a`'s runs with `status`, as many `Replies` as they need.
    fn send_runs(&mut self, a: Acks, status: replies::Status) {
        let per = replies::runs_in(self.cfg.max_packet_bytes.max(REPLY_BYTES));
        let mut runs = a.runs;
        while runs.len() > per {
            let rest = runs.split_off(per);
            self.outbox.push_back(Transmit {
                dest: Dest::Node(a.node),
                msg: Message::Replies(replies::Repr {
                    client: a.client,
                    status,
                    runs,
                }),
            });
            runs = rest;
        }
        if !runs.is_empty() {
            self.outbox.push_back(Transmit {
                dest: Dest::Node(a.node),
                msg: Message::Replies(replies::Repr {
                    client: a.client,
                    status,
                    runs,
                }),
            });
        }
    }

    fn serve_fetch(&mut self, from: NodeId, f: fetch::Repr) {
        let pages = decided_pages(&self.log, from, f, self.cfg.max_packet_bytes);
        self.outbox.extend(pages);
    }

    fn on_decided(&mut self, now: Time, instance: Instance, value: Value) {
        if instance < self.committed || self.log.contains_key(&instance) {
            return;
        }
        if let Some(f) = self.inflight.get(&instance)
            && !f.resent
        {
            self.sample_rtt(now.as_nanos().saturating_sub(f.sent_at.as_nanos()));
        }
        self.votes.forget(instance);
        self.counters.instances_decided += 1;
        self.counters.commands_decided += value.commands().len() as u64;
        for c in value.commands() {
            self.decided_cmds.insert(c.client, c.seq, instance);
            if let Some(Some(to)) = self.pending.remove(c.client, c.seq) {
                self.answer(to, c.client, c.seq, instance);
            }
        }
        self.inflight.remove(&instance);
        if self.is_leader() {
            self.announce.push_back(Entry {
                instance,
                ballot: Ballot::ZERO,
                value: value.clone(),
            });
        }
        self.log.insert(instance, value);
        while self.log.contains_key(&self.committed) {
            self.committed += 1;
        }
        self.horizon = self.horizon.max(self.committed);
        let keep_from = self.committed.saturating_sub(self.cfg.retain);
        while let Some((&first, _)) = self.log.first_key_value() {
            if first >= keep_from {
                break;
            }
            self.log.pop_first();
        }
        self.votes.forget_below(self.committed);
    }

    /// After decisions: more room in the window, or an admission drained.
    fn after_progress(&mut self, now: Time) {
        if let Some(a) = self.admission
            && a.state == AdmitState::Draining
            && self.is_leader()
            && self.inflight.is_empty()
            && self.committed >= self.next
        {
            if let Some(a) = &mut self.admission {
                a.state = AdmitState::Preparing;
            }
            self.stand(now, true);
            return;
        }
        self.refill_at(now);
    }

    /// The window is filled when the coordinator is next polled rather
    /// than at once: what a whole burst of input queued (several submits,
    /// the room that a burst of votes made) then shares instances, and
    /// nothing waits longer than the burst it came in.
    fn refill_at(&mut self, now: Time) {
        self.refill = Some(self.refill.map_or(now, |t| t.max(now)));
    }

    fn fill_window(&mut self, now: Time) {
        if !self.is_leader()
            || matches!(
                self.admission,
                Some(Admission {
                    state: AdmitState::Draining | AdmitState::Preparing,
                    ..
                })
            )
        {
            return;
        }
        let max_cmds = self.cfg.max_batch_commands.max(1);
        let max_bytes = self.cfg.max_packet_bytes;
        while self.inflight.len() < self.cfg.window && !self.queue.is_empty() {
            // Never wait for a batch to fill: take what is queued now.
            let mut batch = Vec::with_capacity(self.queue.len().min(max_cmds));
            let mut bytes = 0;
            while let Some(c) = self.queue.front() {
                let cost = command_cost(batch.last(), c);
                if batch.len() >= max_cmds || (!batch.is_empty() && bytes + cost > max_bytes) {
                    break;
                }
                let c = self.queue.pop_front().expect("front exists");
                if self.decided_cmds.get(c.client, c.seq).is_some() {
                    continue;
                }
                bytes += cost;
                batch.push(c);
            }
            if batch.is_empty() {
                continue;
            }
            let i = self.next;
            self.next += 1;
            self.propose(now, i, Value::batch(batch));
        }
    }

    fn propose(&mut self, now: Time, instance: Instance, value: Value) {
        self.counters.proposed += 1;
        self.fresh.push_back(Entry {
            instance,
            ballot: Ballot::ZERO,
            value: value.clone(),
        });
        self.inflight.insert(
            instance,
            InFlight {
                value,
                sent_at: now,
                resent: false,
            },
        );
    }

    /// Folds one propose-to-decide time into the smoothed one (gain 1/8,
    /// as TCP's SRTT).
    fn sample_rtt(&mut self, nanos: u64) {
        self.srtt = match self.srtt {
            0 => nanos.max(1),
            s => (s - s / 8 + nanos / 8).max(1),
        };
    }

    /// How long an instance waits for its majority before it is sent
    /// again: the configured time, or four smoothed decision times when
    /// that is longer (at most [`MAX_RTO_FACTOR`] times the configured
    /// one). Under load an instance's votes queue behind a whole window
    /// (and the acceptors' log syncs), and a fixed timeout shorter than
    /// that resends accepts that were never lost: extra accepts, log
    /// writes and votes just when every role is busiest.
    fn rto(&self) -> Duration {
        let base = self.cfg.retransmit;
        let adaptive = Duration::from_nanos(self.srtt.saturating_mul(4));
        adaptive.clamp(base, base * MAX_RTO_FACTOR)
    }

    /// Starts phase 1 with a ballot above every one seen.
    fn stand(&mut self, now: Time, admitting: bool) {
        self.counters.elections += 1;
        let ballot = Ballot {
            round: self.max_seen.round.saturating_add(1),
            node: self.cfg.node,
            incarnation: self.cfg.incarnation,
        };
        self.max_seen = ballot;
        self.fresh.clear();
        self.inflight.clear();
        self.next_heartbeat = Time::MAX;
        self.next_scan = Time::MAX;
        let from = self.committed;
        let give_up_at = self.election_deadline(now);
        self.role = Role::Candidate(Box::new(Phase1 {
            ballot,
            from,
            last_sent: now,
            give_up_at,
            slots: (0..self.incarnations.len())
                .map(|_| SlotPromise {
                    ranges: Vec::new(),
                    done: false,
                })
                .collect(),
            recovered: BTreeMap::new(),
            trim: 0,
            admitting,
        }));
        if !admitting {
            self.admission = None;
        }
        self.outbox.push_back(Transmit {
            dest: Dest::Acceptors,
            msg: Message::Prepare(prepare::Repr { ballot, from }),
        });
    }

    fn on_promise(&mut self, now: Time, p: promise::Repr) {
        self.observe(now, p.ballot);
        if let Some(a) = self.admission
            && let AdmitState::Admitted { ballot, .. } = a.state
            && p.acceptor == a.acceptor
            && p.ballot == ballot
        {
            self.admission = None;
            self.fill_window(now);
            return;
        }
        let Role::Candidate(ph) = &mut self.role else {
            return;
        };
        let slot = usize::from(p.acceptor.slot);
        if p.ballot != ph.ballot || slot >= ph.slots.len() {
            return;
        }
        let known = &mut self.incarnations[slot];
        if p.acceptor.incarnation < *known {
            return;
        }
        *known = p.acceptor.incarnation;
        ph.trim = ph.trim.max(p.trim);
        for e in p.entries {
            if e.instance < ph.from {
                continue;
            }
            match ph.recovered.get(&e.instance) {
                Some((b, _)) if *b >= e.ballot => {}
                _ => {
                    ph.recovered.insert(e.instance, (e.ballot, e.value));
                }
            }
        }
        let sp = &mut ph.slots[slot];
        sp.ranges.push((p.lo, p.hi));
        sp.done = covers(&mut sp.ranges, ph.from);
        if ph.slots.iter().filter(|s| s.done).count() >= self.quorum() {
            self.become_leader(now);
        }
    }

    fn become_leader(&mut self, now: Time) {
        let Role::Candidate(ph) = std::mem::replace(&mut self.role, Role::Follower) else {
            return;
        };
        self.role = Role::Leader(ph.ballot);
        self.counters.terms += 1;
        self.leader_hint = Some(self.cfg.node);
        let start = ph.from.max(ph.trim);
        // Instances below `start` are decided; some may be unknown here.
        self.horizon = self.horizon.max(start);
        let top = ph
            .recovered
            .keys()
            .next_back()
            .copied()
            .into_iter()
            .chain(self.log.keys().next_back().copied())
            .filter(|&i| i >= start)
            .max();
        let recovered_any = ph.recovered.range(start..).next().is_some();
        self.next = start;
        if let Some(top) = top {
            for i in start..=top {
                if self.log.contains_key(&i) {
                    continue;
                }
                let value = ph
                    .recovered
                    .get(&i)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(Value::noop);
                for c in value.commands() {
                    if self.pending.get(c.client, c.seq).is_none() {
                        self.pending.insert(c.client, c.seq, None);
                    }
                }
                self.propose(now, i, value);
            }
            self.next = top + 1;
        }
        if ph.admitting {
            if let Some(a) = &mut self.admission {
                if recovered_any {
                    // Something may be chosen at or above the trim point:
                    // finish it and try again later.
                    a.state = AdmitState::Draining;
                } else {
                    a.state = AdmitState::Admitted {
                        ballot: ph.ballot,
                        trim: start,
                    };
                    self.incarnations[usize::from(a.acceptor.slot)] = a.acceptor.incarnation;
                    self.counters.admissions += 1;
                    let a = *a;
                    self.send_admit(a);
                }
            }
        }
        self.next_heartbeat = now;
        self.next_scan = now + self.cfg.retransmit;
        self.fill_window(now);
    }

    fn send_admit(&mut self, a: Admission) {
        if let AdmitState::Admitted { ballot, trim } = a.state {
            self.outbox.push_back(Transmit {
                dest: Dest::Node(a.node),
                msg: Message::Admit(admit::Repr {
                    ballot,
                    trim,
                    acceptor: a.acceptor,
                }),
            });
        }
    }

    /// Queues a command as if a client had sent it (for a shell that
    /// embeds clients); `reply_to` gets the reply.
    pub fn submit(&mut self, now: Time, reply_to: NodeId, cmd: Command) {
        if !self.is_leader() {
            self.outbox.push_back(Transmit {
                dest: Dest::Node(reply_to),
                msg: Message::Reply(reply::Repr {
                    client: cmd.client,
                    seq: cmd.seq,
                    status: reply::Status::NotLeader(self.leader_hint),
                }),
            });
            return;
        }
        self.on_command(reply_to, cmd, false);
        self.refill_at(now);
    }

    /// The next message to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(t) = self.outbox.pop_front() {
            return Some(t);
        }
        if let Some(t) = self.poll_announce() {
            return Some(t);
        }
        if let Some(a) = self.acks.pop() {
            self.ack_index.remove(&(a.node, a.client));
            self.last_ack = None;
            self.send_runs(a, replies::Status::Decided);
            return self.outbox.pop_front();
        }
        if let Some(now) = self.refill.take() {
            self.fill_window(now);
        }
        let Role::Leader(ballot) = self.role else {
            self.fresh.clear();
            return None;
        };
        let entries = take_packet(&mut self.fresh, self.cfg.max_packet_bytes)?;
        Some(Transmit {
            dest: Dest::Acceptors,
            msg: Message::Accept(accept::Repr {
                ballot,
                committed: self.committed,
                entries,
            }),
        })
    }

    /// The next `Decided` announcement to every learner, coordinator and
    /// subscribed client: instances it learned decided, as many to a
    /// message as fit in `max_packet_bytes` (at least one).
    fn poll_announce(&mut self) -> Option<Transmit> {
        let entries = take_packet(&mut self.announce, self.cfg.max_packet_bytes)?;
        Some(Transmit {
            dest: Dest::Learners,
            msg: Message::Decided(decided::Repr { entries }),
        })
    }

    /// When [`Coordinator::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Time> {
        let role = match &self.role {
            Role::Follower => self.election_at,
            Role::Candidate(ph) => (ph.last_sent + self.cfg.retransmit).min(ph.give_up_at),
            Role::Leader(_) => self.next_heartbeat.min(self.next_scan),
        };
        let gap = match self.gap_since {
            Some((t, _)) if self.committed < self.horizon => t + self.cfg.retransmit,
            _ if self.committed < self.horizon => Time::ZERO,
            _ => Time::MAX,
        };
        Some(role.min(gap))
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        match &mut self.role {
            Role::Follower => {
                if now >= self.election_at {
                    self.stand(now, false);
                }
            }
            Role::Candidate(ph) => {
                if now >= ph.give_up_at {
                    // A duel or lost messages: a higher ballot, later.
                    let admitting = ph.admitting;
                    self.stand(now, admitting);
                } else if now >= ph.last_sent + self.cfg.retransmit {
                    ph.last_sent = now;
                    let (ballot, from) = (ph.ballot, ph.from);
                    self.outbox.push_back(Transmit {
                        dest: Dest::Acceptors,
                        msg: Message::Prepare(prepare::Repr { ballot, from }),
                    });
                }
            }
            Role::Leader(ballot) => {
                let ballot = *ballot;
                if now >= self.next_heartbeat {
                    self.next_heartbeat = now + self.cfg.heartbeat;
                    self.outbox.push_back(Transmit {
                        dest: Dest::Everyone,
                        msg: Message::Heartbeat(heartbeat::Repr {
                            ballot,
                            committed: self.committed,
                            incarnations: self.incarnations.clone(),
                        }),
                    });
                    if let Some(a) = self.admission {
                        self.send_admit(a);
                    }
                }
                if now >= self.next_scan {
                    self.next_scan = now + self.cfg.retransmit;
                    let rto = self.rto();
                    for (&instance, f) in self.inflight.iter_mut() {
                        if f.sent_at + rto <= now {
                            f.sent_at = now;
                            f.resent = true;
                            self.counters.retransmits += 1;
                            self.fresh.push_back(Entry {
                                instance,
                                ballot: Ballot::ZERO,
                                value: f.value.clone(),
                            });
                        }
                    }
                }
            }
        }
        self.fetch_gap(now);
    }

    fn fetch_gap(&mut self, now: Time) {
        if self.is_leader() {
            // A leader's own instances count as a gap too when the commit
            // point stalls: acceptors admitted with a later trim point
            // refuse to vote on instances they know decided, and only a
            // fetch tells the leader their values.
            self.horizon = self.horizon.max(self.next);
        }
        if self.committed >= self.horizon {
            self.gap_since = None;
            return;
        }
        match self.gap_since {
            Some((t, at)) if at == self.committed && now < t + self.cfg.retransmit => {}
            Some((_, at)) if at == self.committed => {
                let f = fetch::Repr {
                    from: self.committed,
                    to: self.horizon.min(self.committed.saturating_add(MAX_FETCH)),
                };
                for dest in [Dest::Acceptors, Dest::Learners] {
                    self.outbox.push_back(Transmit {
                        dest,
                        msg: Message::Fetch(f),
                    });
                }
                self.gap_since = Some((now, self.committed));
            }
            _ => self.gap_since = Some((now, self.committed)),
        }
    }
}

/// Whether `ranges` cover every instance from `from` on (sorts them).
fn covers(ranges: &mut [(Instance, Instance)], from: Instance) -> bool {
    ranges.sort_unstable();
    let mut reach = from;
    for &(lo, hi) in ranges.iter() {
        if lo > reach {
            return false;
        }
        reach = reach.max(hi);
        if reach == Instance::MAX {
            return true;
        }
    }
    false
}

/// Takes entries off the front of `queue` for one packet: as many as fit
/// in `max_bytes` (at least one; at most a `u16` count); `None` when the
/// queue is empty.
fn take_packet(queue: &mut VecDeque<Entry>, max_bytes: usize) -> Option<Vec<Entry>> {
    let first = queue.pop_front()?;
    let mut bytes = entry_len(&first, false);
    let mut entries = vec![first];
    while let Some(e) = queue.front() {
        let len = entry_len(e, false);
        if bytes + len > max_bytes || entries.len() >= usize::from(u16::MAX) {
            break;
        }
        bytes += len;
        entries.push(queue.pop_front().expect("front exists"));
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cover_in_any_order() {
        assert!(covers(&mut [(5, 9), (9, u64::MAX)], 5));
        assert!(covers(&mut [(9, u64::MAX), (5, 9)], 5));
        assert!(!covers(&mut [(5, 9)], 5));
        assert!(!covers(&mut [(6, u64::MAX)], 5));
        assert!(covers(&mut [(0, u64::MAX)], 5));
    }
}
