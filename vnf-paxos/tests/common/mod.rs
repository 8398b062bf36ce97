//! A deterministic simulation of the whole service: coordinators,
//! acceptors, learners and clients exchanging real frames (every message is
//! emitted into bytes and parsed back) over a seeded random network that
//! loses, duplicates, delays and reorders them, with partitions and
//! crashes. Time is a number; every random choice comes from one
//! SplitMix64, so a seed names one run exactly.
//!
//! Clients submit in bursts of one to five commands at one instant; most
//! coalesce (many commands per `Submit`, answered by `Replies` runs), some
//! bursts flushed at once and some left to wait for an answer, and one
//! client per run uses the single-value `Request`/`Reply` messages.

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use vnf_paxos::wire::Message;
use vnf_paxos::{
    Acceptor, AcceptorConfig, AcceptorId, Client, ClientConfig, ClientId, Coordinator,
    CoordinatorConfig, Delivery, Dest, Durability, Learner, LearnerConfig, NodeId, Record, Time,
    Transmit,
};

pub const MS: u64 = 1_000_000;
pub const US: u64 = 1_000;

pub use dataplane::sim::Rng;

/// What the network and the environment do while faults are on.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    pub loss_per_mille: u64,
    pub dup_per_mille: u64,
    pub min_delay: u64,
    pub max_delay: u64,
    pub partitions: bool,
    pub crash_coordinators: bool,
    pub crash_acceptors: bool,
}

impl Faults {
    pub fn all() -> Self {
        Faults {
            loss_per_mille: 50,
            dup_per_mille: 30,
            min_delay: 20 * US,
            max_delay: 3 * MS,
            partitions: true,
            crash_coordinators: true,
            crash_acceptors: true,
        }
    }

    pub fn none() -> Self {
        Faults {
            loss_per_mille: 0,
            dup_per_mille: 0,
            min_delay: 20 * US,
            max_delay: 200 * US,
            partitions: false,
            crash_coordinators: false,
            crash_acceptors: false,
        }
    }
}

/// The shape of one run.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub durability: Durability,
    pub coordinators: u16,
    pub acceptors: u16,
    pub learners: u16,
    pub clients: u16,
    pub commands_per_client: u64,
    /// Faults are on from 0 to here; commands are submitted in that span.
    pub fault_end: u64,
    /// Time allowed after the faults for everything to be decided.
    pub settle: u64,
    pub faults: Faults,
    pub batching: bool,
    /// Clients (the first ones) that send one `Request` per command
    /// instead of coalescing.
    pub legacy_clients: u16,
}

impl Scenario {
    pub fn new(durability: Durability) -> Self {
        Scenario {
            durability,
            coordinators: 2,
            acceptors: 3,
            learners: 2,
            clients: 3,
            commands_per_client: 10,
            fault_end: 800 * MS,
            settle: 4_000 * MS,
            faults: Faults::all(),
            batching: true,
            legacy_clients: 1,
        }
    }
}

const COORD_BASE: u16 = 1;
const ACC_BASE: u16 = 100;
const LEARNER_BASE: u16 = 200;
const CLIENT_BASE: u16 = 300;

struct AccNode {
    acc: Option<Acceptor>,
    /// Records whose batch was synced: what survives a crash.
    durable: Vec<Record>,
    /// Batches written but not yet synced: sync time, id, records.
    syncing: Vec<(u64, u64, Vec<Record>)>,
    incarnation: u32,
    restart_at: Option<u64>,
}

struct CoordNode {
    c: Option<Coordinator>,
    incarnation: u16,
    restart_at: Option<u64>,
}

pub struct ClientNode {
    pub client: Client,
    /// Bursts still to come: time, commands, whether flushed at once;
    /// latest first.
    pub schedule: Vec<(u64, u64, bool)>,
    pub submitted: BTreeMap<u64, Arc<[u8]>>,
    /// The instance each command was reported decided in.
    pub committed: HashMap<u64, u64>,
    /// Commands reported decided more than once.
    pub recommitted: u64,
}

/// The outcome of a run, for the checks.
pub struct Outcome {
    /// The state of every node at the end, for failure reports.
    pub summary: String,
    pub deliveries: Vec<Vec<Delivery>>,
    pub clients: Vec<ClientNode>,
    pub end: u64,
    pub messages: u64,
    pub admissions: u64,
    /// `Submit`s delivered that carried several commands.
    pub multi_submits: u64,
    /// `Replies` delivered that answered several commands.
    pub multi_replies: u64,
}

/// A frame in flight: arrival time, a tie-breaker, sender, receiver, bytes.
type InFlight = Reverse<(u64, u64, u16, u16, Vec<u8>)>;

pub struct Sim {
    pub now: u64,
    pub rng: Rng,
    sc: Scenario,
    net: BinaryHeap<InFlight>,
    seq: u64,
    coords: Vec<CoordNode>,
    accs: Vec<AccNode>,
    learners: Vec<Learner>,
    deliveries: Vec<Vec<Delivery>>,
    clients: Vec<ClientNode>,
    /// Nodes cut off from everyone until the time given.
    isolated: HashMap<u16, u64>,
    next_fault: u64,
    messages: u64,
    multi_submits: u64,
    multi_replies: u64,
    buf: Vec<u8>,
}

fn coordinator_config(sc: &Scenario, i: u16, incarnation: u16) -> CoordinatorConfig {
    let all = (0..sc.coordinators)
        .map(|k| NodeId(COORD_BASE + k))
        .collect();
    let mut cfg = CoordinatorConfig::new(NodeId(COORD_BASE + i), incarnation, all);
    cfg.acceptors = sc.acceptors;
    cfg.window = 8;
    cfg.retain = 1 << 20;
    if !sc.batching {
        cfg = cfg.unbatched();
    }
    cfg
}

fn acceptor_config(sc: &Scenario) -> AcceptorConfig {
    AcceptorConfig {
        durability: sc.durability,
        ..AcceptorConfig::default()
    }
}

impl Sim {
    pub fn new(seed: u64, sc: Scenario) -> Self {
        let mut rng = Rng::new(seed);
        let coords = (0..sc.coordinators)
            .map(|i| CoordNode {
                c: Some(Coordinator::new(coordinator_config(&sc, i, 1), Time::ZERO)),
                incarnation: 1,
                restart_at: None,
            })
            .collect();
        let accs = (0..sc.acceptors)
            .map(|slot| AccNode {
                acc: Some(Acceptor::new(
                    AcceptorId {
                        slot,
                        incarnation: 1,
                    },
                    acceptor_config(&sc),
                )),
                durable: Vec::new(),
                syncing: Vec::new(),
                incarnation: 1,
                restart_at: None,
            })
            .collect();
        let lcfg = LearnerConfig {
            acceptors: sc.acceptors,
            ..LearnerConfig::default()
        };
        let learners = (0..sc.learners)
            .map(|_| Learner::new(lcfg.clone()))
            .collect();
        let coordinator_ids: Vec<NodeId> = (0..sc.coordinators)
            .map(|k| NodeId(COORD_BASE + k))
            .collect();
        let clients = (0..sc.clients)
            .map(|k| {
                let mut schedule = Vec::new();
                let mut left = sc.commands_per_client;
                while left > 0 {
                    let n = rng.between(1, 5).min(left);
                    left -= n;
                    schedule.push((rng.below(sc.fault_end.max(1)), n, rng.chance(500, 1000)));
                }
                schedule.sort_unstable_by(|a, b| b.cmp(a));
                let mut cfg = ClientConfig::new(coordinator_ids.clone());
                cfg.coalesce = k >= sc.legacy_clients;
                // Small datagrams, so that bursts also split across them.
                cfg.max_request_bytes = 100;
                ClientNode {
                    client: Client::new(ClientId(0xc1_0000 + u64::from(k)), cfg),
                    schedule,
                    submitted: BTreeMap::new(),
                    committed: HashMap::new(),
                    recommitted: 0,
                }
            })
            .collect();
        let mut accs: Vec<AccNode> = accs;
        for node in &mut accs {
            // Provisioning writes the identity before the acceptor serves.
            if let Some(a) = &mut node.acc {
                while let Some(b) = a.poll_persist() {
                    node.durable.extend(b.records());
                    a.persisted(b.id);
                }
            }
        }
        let next_fault = rng.between(10 * MS, 40 * MS);
        Sim {
            now: 0,
            rng,
            net: BinaryHeap::new(),
            seq: 0,
            coords,
            accs,
            deliveries: vec![Vec::new(); usize::from(sc.learners)],
            learners,
            clients,
            isolated: HashMap::new(),
            next_fault,
            messages: 0,
            multi_submits: 0,
            multi_replies: 0,
            buf: vec![0u8; 65_536],
            sc,
        }
    }

    fn faulty(&self) -> bool {
        self.now < self.sc.fault_end
    }

    fn faults(&self) -> Faults {
        if self.faulty() {
            self.sc.faults
        } else {
            Faults::none()
        }
    }

    fn expand(&self, dest: Dest) -> Vec<u16> {
        let coords = (0..self.sc.coordinators).map(|k| COORD_BASE + k);
        let accs = (0..self.sc.acceptors).map(|k| ACC_BASE + k);
        let learners = (0..self.sc.learners).map(|k| LEARNER_BASE + k);
        match dest {
            Dest::Node(n) => vec![n.0],
            Dest::Acceptors => accs.collect(),
            Dest::Coordinators => coords.collect(),
            Dest::Learners => learners.chain(coords).collect(),
            Dest::Everyone => accs.chain(coords).chain(learners).collect(),
        }
    }

    fn cut(&self, node: u16) -> bool {
        self.isolated.get(&node).is_some_and(|&t| t > self.now)
    }

    fn send(&mut self, from: u16, t: Transmit) {
        let n = t
            .msg
            .emit(0x5e55, &mut self.buf)
            .expect("every message fits");
        let bytes = self.buf[..n].to_vec();
        self.send_bytes(from, t.dest, bytes);
    }

    fn send_bytes(&mut self, from: u16, dest: Dest, bytes: Vec<u8>) {
        let f = self.faults();
        for to in self.expand(dest) {
            if to == from {
                continue;
            }
            if self.cut(from) || self.cut(to) || self.rng.chance(f.loss_per_mille, 1000) {
                continue;
            }
            let copies = if self.rng.chance(f.dup_per_mille, 1000) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                let at = self.now + self.rng.between(f.min_delay, f.max_delay);
                self.seq += 1;
                self.net
                    .push(Reverse((at, self.seq, from, to, bytes.clone())));
            }
        }
    }

    /// Sends what node `id` has to send (and, for an acceptor, starts
    /// syncing what it has to persist).
    fn drain(&mut self, id: u16) {
        let mut out = Vec::new();
        match id {
            ACC_BASE.. if id < LEARNER_BASE => {
                let k = usize::from(id - ACC_BASE);
                let sync_delay = self.rng.between(10 * US, 300 * US);
                let node = &mut self.accs[k];
                if let Some(a) = &mut node.acc {
                    while let Some(b) = a.poll_persist() {
                        node.syncing
                            .push((self.now + sync_delay, b.id, b.records()));
                    }
                    while let Some(t) = a.poll_transmit() {
                        out.push(t);
                    }
                }
            }
            LEARNER_BASE.. if id < CLIENT_BASE => {
                let k = usize::from(id - LEARNER_BASE);
                let l = &mut self.learners[k];
                while let Some(d) = l.poll_event() {
                    self.deliveries[k].push(d);
                }
                while let Some(t) = l.poll_transmit() {
                    out.push(t);
                }
            }
            CLIENT_BASE.. => {
                let k = usize::from(id - CLIENT_BASE);
                let c = &mut self.clients[k];
                while let Some(e) = c.client.poll_event() {
                    if c.committed.insert(e.seq, e.instance).is_some() {
                        c.recommitted += 1;
                    }
                }
                if k % 2 == 0 {
                    // Even clients write their messages straight to bytes,
                    // as the client library does; odd ones hand out values.
                    let mut bytes = Vec::new();
                    while let Some((dest, n)) = c.client.poll_emit(0x5e55, &mut self.buf) {
                        bytes.push((dest, self.buf[..n].to_vec()));
                    }
                    for (dest, b) in bytes {
                        self.send_bytes(id, dest, b);
                    }
                } else {
                    while let Some(t) = c.client.poll_transmit() {
                        out.push(t);
                    }
                }
            }
            _ => {
                if let Some(c) = &mut self.coords[usize::from(id - COORD_BASE)].c {
                    while let Some(t) = c.poll_transmit() {
                        out.push(t);
                    }
                }
            }
        }
        for t in out {
            self.send(id, t);
        }
    }

    fn deliver(&mut self, from: u16, to: u16, bytes: &[u8]) {
        self.messages += 1;
        let (_, msg) = Message::parse_nfv(bytes).expect("frames we emitted parse");
        match &msg {
            Message::Submit(s) if s.commands.len() > 1 => self.multi_submits += 1,
            Message::Replies(r) if r.runs.iter().map(|r| r.last - r.first + 1).sum::<u64>() > 1 => {
                self.multi_replies += 1
            }
            _ => {}
        }
        let now = Time::from_nanos(self.now);
        let from = NodeId(from);
        match to {
            ACC_BASE.. if to < LEARNER_BASE => {
                if let Some(a) = &mut self.accs[usize::from(to - ACC_BASE)].acc {
                    a.handle(now, from, msg);
                }
            }
            LEARNER_BASE.. if to < CLIENT_BASE => {
                // Even learners take every message by its bytes, as the
                // service does (votes and announcements on their own
                // paths), odd ones as values: the agreement check holds
                // the two paths to the same deliveries.
                let k = usize::from(to - LEARNER_BASE);
                if k % 2 == 0 {
                    self.learners[k]
                        .handle_nfv(now, from, bytes)
                        .expect("frames we emitted are well formed");
                } else {
                    self.learners[k].handle(now, from, msg)
                }
            }
            CLIENT_BASE.. => self.clients[usize::from(to - CLIENT_BASE)]
                .client
                .handle(now, from, msg),
            _ => {
                if let Some(c) = &mut self.coords[usize::from(to - COORD_BASE)].c {
                    c.handle(now, from, msg);
                }
            }
        }
        self.drain(to);
    }

    fn all_ids(&self) -> Vec<u16> {
        (0..self.sc.coordinators)
            .map(|k| COORD_BASE + k)
            .chain((0..self.sc.acceptors).map(|k| ACC_BASE + k))
            .chain((0..self.sc.learners).map(|k| LEARNER_BASE + k))
            .chain((0..self.sc.clients).map(|k| CLIENT_BASE + k))
            .collect()
    }

    fn timeout_of(&self, id: u16) -> Option<Time> {
        match id {
            ACC_BASE.. if id < LEARNER_BASE => self.accs[usize::from(id - ACC_BASE)]
                .acc
                .as_ref()?
                .poll_timeout(),
            LEARNER_BASE.. if id < CLIENT_BASE => {
                self.learners[usize::from(id - LEARNER_BASE)].poll_timeout()
            }
            CLIENT_BASE.. => self.clients[usize::from(id - CLIENT_BASE)]
                .client
                .poll_timeout(),
            _ => self.coords[usize::from(id - COORD_BASE)]
                .c
                .as_ref()?
                .poll_timeout(),
        }
    }

    fn fire(&mut self, id: u16) {
        let now = Time::from_nanos(self.now);
        match id {
            ACC_BASE.. if id < LEARNER_BASE => {
                if let Some(a) = &mut self.accs[usize::from(id - ACC_BASE)].acc {
                    a.handle_timeout(now);
                }
            }
            LEARNER_BASE.. if id < CLIENT_BASE => {
                self.learners[usize::from(id - LEARNER_BASE)].handle_timeout(now)
            }
            CLIENT_BASE.. => self.clients[usize::from(id - CLIENT_BASE)]
                .client
                .handle_timeout(now),
            _ => {
                if let Some(c) = &mut self.coords[usize::from(id - COORD_BASE)].c {
                    c.handle_timeout(now);
                }
            }
        }
        self.drain(id);
    }

    /// A random fault, while they are on.
    fn inject_fault(&mut self) {
        let f = self.sc.faults;
        match self.rng.below(3) {
            0 if f.crash_coordinators => {
                let k = self.rng.below(u64::from(self.sc.coordinators)) as usize;
                let up = self.coords.iter().filter(|c| c.c.is_some()).count();
                if self.coords[k].c.is_some() && up > 1 {
                    self.coords[k].c = None;
                    self.coords[k].restart_at = Some(self.now + self.rng.between(5 * MS, 80 * MS));
                }
            }
            1 if f.crash_acceptors => {
                let k = self.rng.below(u64::from(self.sc.acceptors)) as usize;
                let all_up_and_voting = self
                    .accs
                    .iter()
                    .all(|a| a.acc.as_ref().is_some_and(Acceptor::is_active));
                // In memory, one identity lost at a time: losing a second
                // before the first is replaced leaves no majority of live
                // identities, and the group can never recover (safely).
                let allowed = match self.sc.durability {
                    Durability::Wal => {
                        self.accs.iter().filter(|a| a.acc.is_none()).count()
                            < usize::from(self.sc.acceptors / 2)
                    }
                    Durability::Memory => all_up_and_voting,
                };
                if allowed && self.accs[k].acc.is_some() {
                    let node = &mut self.accs[k];
                    node.acc = None;
                    // A crash loses what was written but not synced.
                    node.syncing.clear();
                    node.restart_at = Some(self.now + self.rng.between(5 * MS, 80 * MS));
                }
            }
            2 if f.partitions => {
                let ids = self.all_ids();
                let node = ids[self.rng.below(ids.len() as u64) as usize];
                let until = self.now + self.rng.between(10 * MS, 100 * MS);
                self.isolated.insert(node, until);
            }
            _ => {}
        }
    }

    fn restarts(&mut self) {
        let now = self.now;
        for k in 0..self.coords.len() {
            if self.coords[k].restart_at.is_some_and(|t| t <= now) {
                let node = &mut self.coords[k];
                node.restart_at = None;
                node.incarnation += 1;
                let cfg = coordinator_config(&self.sc, k as u16, node.incarnation);
                node.c = Some(Coordinator::new(cfg, Time::from_nanos(now)));
            }
        }
        for k in 0..self.accs.len() {
            if self.accs[k].restart_at.is_some_and(|t| t <= now) {
                let cfg = acceptor_config(&self.sc);
                let node = &mut self.accs[k];
                node.restart_at = None;
                node.acc = Some(match self.sc.durability {
                    Durability::Wal => Acceptor::recover(cfg, node.durable.iter().cloned())
                        .expect("the log starts with the identity"),
                    Durability::Memory => {
                        node.incarnation += 1;
                        Acceptor::rejoin(
                            AcceptorId {
                                slot: k as u16,
                                incarnation: node.incarnation,
                            },
                            cfg,
                            Time::from_nanos(now),
                        )
                    }
                });
                self.drain(ACC_BASE + k as u16);
            }
        }
    }

    fn syncs_due(&mut self) {
        for k in 0..self.accs.len() {
            let now = self.now;
            let node = &mut self.accs[k];
            let mut done = None;
            while let Some(&(at, id, _)) = node.syncing.first() {
                if at > now {
                    break;
                }
                let (_, _, records) = node.syncing.remove(0);
                node.durable.extend(records);
                done = Some(id);
            }
            if let (Some(id), Some(a)) = (done, &mut node.acc) {
                a.persisted(id);
                self.drain(ACC_BASE + k as u16);
            }
        }
    }

    fn submissions(&mut self) {
        for k in 0..self.clients.len() {
            let now = self.now;
            let c = &mut self.clients[k];
            while c.schedule.last().is_some_and(|&(t, ..)| t <= now) {
                let (_, n, flush) = c.schedule.pop().expect("peeked");
                for _ in 0..n {
                    let seq = c.client.next_seq();
                    let payload: Arc<[u8]> =
                        Arc::from(format!("c{k}-s{seq}-{}", now % 1000).into_bytes());
                    let got = c.client.submit(Time::from_nanos(now), payload.clone());
                    assert_eq!(got, seq);
                    c.submitted.insert(seq, payload);
                }
                if flush {
                    c.client.flush(Time::from_nanos(now));
                }
            }
            self.drain(CLIENT_BASE + k as u16);
        }
    }

    fn done(&self) -> bool {
        let total: usize = self.clients.iter().map(|c| c.submitted.len()).sum();
        let all_submitted = self.clients.iter().all(|c| c.schedule.is_empty());
        all_submitted
            && self
                .clients
                .iter()
                .all(|c| c.committed.len() == c.submitted.len())
            && self
                .deliveries
                .iter()
                .all(|d| d.iter().map(|x| x.commands.len()).sum::<usize>() == total)
    }

    /// Runs to the end of the settling time or until everything submitted
    /// is decided everywhere.
    pub fn run(mut self) -> Outcome {
        let end = self.sc.fault_end + self.sc.settle;
        let ids = self.all_ids();
        let mut next_check = self.sc.fault_end;
        while self.now < end {
            if self.now >= next_check {
                if self.done() {
                    break;
                }
                next_check = self.now + 5 * MS;
            }
            // The next thing to happen.
            let mut t = end.min(next_check.max(self.now));
            if let Some(Reverse((at, ..))) = self.net.peek() {
                t = t.min(*at);
            }
            for &id in &ids {
                if let Some(x) = self.timeout_of(id) {
                    t = t.min(x.as_nanos().max(self.now));
                }
            }
            for a in &self.accs {
                if let Some(&(at, ..)) = a.syncing.first() {
                    t = t.min(at);
                }
                if let Some(at) = a.restart_at {
                    t = t.min(at);
                }
            }
            for c in &self.coords {
                if let Some(at) = c.restart_at {
                    t = t.min(at);
                }
            }
            for c in &self.clients {
                if let Some(&(at, ..)) = c.schedule.last() {
                    t = t.min(at);
                }
            }
            if self.faulty() {
                t = t.min(self.next_fault);
            }
            self.now = t.max(self.now);

            if self.faulty() && self.now >= self.next_fault {
                self.inject_fault();
                self.next_fault = self.now + self.rng.between(10 * MS, 60 * MS);
            }
            self.restarts();
            self.syncs_due();
            self.submissions();
            while let Some(Reverse((at, ..))) = self.net.peek() {
                if *at > self.now {
                    break;
                }
                let Reverse((_, _, from, to, bytes)) = self.net.pop().expect("peeked");
                self.deliver(from, to, &bytes);
            }
            for &id in &ids {
                if self
                    .timeout_of(id)
                    .is_some_and(|x| x.as_nanos() <= self.now)
                {
                    self.fire(id);
                }
            }
        }
        let mut summary = String::new();
        for c in self.coords.iter() {
            match &c.c {
                Some(c) => {
                    summary += &format!(
                        "coordinator leader={} ballot={:?} committed={} incarnations={:?} {:?}\n",
                        c.is_leader(),
                        c.ballot(),
                        c.committed(),
                        c.incarnations(),
                        c.counters()
                    )
                }
                None => summary += "coordinator down\n",
            }
        }
        for a in self.accs.iter() {
            match &a.acc {
                Some(a) => {
                    summary += &format!(
                        "acceptor {:?} active={} promised={:?} trim={} {:?}\n",
                        a.id(),
                        a.is_active(),
                        a.promised(),
                        a.trim_point(),
                        a.counters()
                    )
                }
                None => summary += "acceptor down\n",
            }
        }
        for (k, l) in self.learners.iter().enumerate() {
            summary += &format!("learner {k} next={}\n", l.next_instance());
        }
        Outcome {
            summary,
            admissions: self
                .coords
                .iter()
                .filter_map(|c| c.c.as_ref())
                .map(|c| c.counters().admissions)
                .sum(),
            deliveries: self.deliveries,
            clients: self.clients,
            end: self.now,
            messages: self.messages,
            multi_submits: self.multi_submits,
            multi_replies: self.multi_replies,
        }
    }
}

impl Outcome {
    /// Agreement, validity, integrity, and (when `live`) liveness; an error
    /// names what broke.
    pub fn check(&self, live: bool) -> Result<(), String> {
        // Agreement: the learners' streams are prefixes of one another.
        for (k, d) in self.deliveries.iter().enumerate() {
            for (i, x) in d.iter().enumerate() {
                if x.instance != i as u64 {
                    return Err(format!("learner {k} delivered {} at {i}", x.instance));
                }
            }
        }
        let longest = self
            .deliveries
            .iter()
            .max_by_key(|d| d.len())
            .expect("learners");
        for (k, d) in self.deliveries.iter().enumerate() {
            if let Some(i) = (0..d.len()).find(|&i| d[i] != longest[i]) {
                return Err(format!(
                    "agreement: learner {k} instance {i}: {:?} vs {:?}",
                    d[i], longest[i]
                ));
            }
        }
        for (k, d) in self.deliveries.iter().enumerate() {
            let mut seen = HashSet::new();
            for x in d {
                for c in &x.commands {
                    // Validity: only submitted commands, intact.
                    let client = (c.client.0 - 0xc1_0000) as usize;
                    let submitted = self
                        .clients
                        .get(client)
                        .and_then(|cl| cl.submitted.get(&c.seq));
                    if submitted.map(|p| &p[..]) != Some(&c.payload[..]) {
                        return Err(format!("validity: learner {k} delivered {c:?}"));
                    }
                    // Integrity: at most once.
                    if !seen.insert((c.client, c.seq)) {
                        return Err(format!("integrity: learner {k} delivered {c:?} twice"));
                    }
                }
            }
            if live {
                let total: usize = self.clients.iter().map(|c| c.submitted.len()).sum();
                if seen.len() != total {
                    return Err(format!(
                        "liveness: learner {k} delivered {} of {total} commands by {:?}",
                        seen.len(),
                        Time::from_nanos(self.end)
                    ));
                }
            }
        }
        // Replies: each command reported decided once, in an instance that
        // holds it (the first copy in the log is the one delivered; the
        // answer may name a later copy, or none when forgotten).
        let delivered: HashMap<(u64, u64), u64> = longest
            .iter()
            .flat_map(|x| x.commands.iter().map(|c| ((c.client.0, c.seq), x.instance)))
            .collect();
        for (k, c) in self.clients.iter().enumerate() {
            if c.recommitted > 0 {
                return Err(format!(
                    "replies: client {k} saw {} commands decided twice",
                    c.recommitted
                ));
            }
            for (&seq, &instance) in &c.committed {
                if !c.submitted.contains_key(&seq) {
                    return Err(format!(
                        "replies: client {k} told {seq} decided, never sent"
                    ));
                }
                let id = 0xc1_0000 + k as u64;
                if let Some(&at) = delivered.get(&(id, seq))
                    && instance != u64::MAX
                    && instance < at
                {
                    return Err(format!(
                        "replies: client {k} told {seq} decided in {instance}, delivered in {at}"
                    ));
                }
            }
        }
        if live {
            for (k, c) in self.clients.iter().enumerate() {
                if c.committed.len() != c.submitted.len() {
                    return Err(format!(
                        "liveness: client {k} saw {} of {} commands decided",
                        c.committed.len(),
                        c.submitted.len()
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Outcome {
    /// Commands whose reply named another instance than the one learners
    /// delivered them in (a retried command decided twice, or forgotten):
    /// none in a calm run. Lists the first few.
    pub fn reply_mismatches(&self) -> (usize, String) {
        let longest = self
            .deliveries
            .iter()
            .max_by_key(|d| d.len())
            .expect("learners");
        let delivered: HashMap<(u64, u64), u64> = longest
            .iter()
            .flat_map(|x| x.commands.iter().map(|c| ((c.client.0, c.seq), x.instance)))
            .collect();
        let mut n = 0;
        let mut list = String::new();
        for (k, c) in self.clients.iter().enumerate() {
            for (&seq, &instance) in &c.committed {
                let at = delivered.get(&(0xc1_0000 + k as u64, seq));
                if at != Some(&instance) {
                    n += 1;
                    if n <= 5 {
                        let _ = write!(list, " client {k} seq {seq}: {instance} vs {at:?};");
                    }
                }
            }
        }
        (n, list)
    }
}

/// Seeds to run: `NFVINC_SIM_SEEDS`, or `default`.
pub fn seeds(default: u64) -> u64 {
    std::env::var("NFVINC_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
