//! A deterministic simulation of a group: members and sequencers exchange
//! frames over an in-memory network that loses, duplicates, delays and
//! reorders them, driven by a seeded SplitMix64, so that a seed names one
//! run exactly. Sequencers can crash (or be cut off but keep running, a
//! "zombie") and be replaced by a new one in a higher epoch.

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use vnf_sequencer::{
    Dest, Event, Member, MemberConfig, Mode, ProcessId, SendError, Sequencer, SequencerConfig, Time,
};

pub const US: u64 = 1_000;
pub const MS: u64 = 1_000_000;
pub const GROUP: u64 = 0x5e9;
/// The sequencer shell's polling period.
pub const POLL: u64 = 20 * US;

pub use dataplane::sim::Rng;

/// What can go wrong in one run.
#[derive(Debug, Clone)]
pub struct Faults {
    /// Per frame and receiver, parts per million.
    pub loss_ppm: u64,
    pub dup_ppm: u64,
    pub delay_min: u64,
    pub delay_max: u64,
    /// Sequencer failures: when, whether it keeps running cut off from
    /// nobody (a zombie that still sends), and how long until the
    /// replacement starts.
    pub crashes: Vec<(u64, bool, u64)>,
    /// Loss and duplication stop here; delay and reordering go on.
    pub until: u64,
    /// One member cut off (every frame to it lost) from one time to
    /// another.
    pub cut: Option<(usize, u64, u64)>,
}

/// One run's shape.
#[derive(Debug, Clone)]
pub struct Plan {
    pub members: usize,
    pub msgs_per_member: usize,
    /// Sends are spread over `[0, send_span)`.
    pub send_span: u64,
    /// `None`: each message picks a mode at random.
    pub mode: Option<Mode>,
    pub batching: bool,
    /// Messages the sequencers' retransmission rings keep.
    pub seq_ring: usize,
    pub faults: Faults,
}

impl Plan {
    /// A random plan for `seed`: the simulation's search space.
    pub fn random(rng: &mut Rng) -> Self {
        let send_span = rng.between(5, 40) * MS;
        let mut crashes = Vec::new();
        match rng.below(4) {
            0 | 1 => {}
            2 => crashes.push((
                rng.between(MS, send_span),
                rng.below(2) == 0,
                rng.between(0, 3 * MS),
            )),
            _ => {
                let a = rng.between(MS, send_span);
                crashes.push((a, rng.below(2) == 0, rng.between(0, 2 * MS)));
                // The second may hit the first replacement mid-recovery.
                crashes.push((
                    a + rng.between(0, 10 * MS),
                    rng.below(2) == 0,
                    rng.between(0, 2 * MS),
                ));
            }
        }
        let delay_min = rng.between(5, 50) * US;
        Plan {
            members: rng.between(2, 6) as usize,
            msgs_per_member: rng.between(5, 40) as usize,
            send_span,
            mode: match rng.below(6) {
                0 => Some(Mode::Reliable),
                1 => Some(Mode::Atomic),
                2 => Some(Mode::Fifo),
                3 => Some(Mode::Causal),
                _ => None,
            },
            batching: rng.below(4) != 0,
            seq_ring: 1024,
            faults: Faults {
                loss_ppm: rng.between(0, 100_000),
                dup_ppm: rng.between(0, 50_000),
                delay_min,
                delay_max: delay_min + rng.between(0, 800) * US,
                crashes,
                until: send_span + 20 * MS,
                cut: None,
            },
        }
    }
}

/// A message as a member delivered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Got {
    pub seq: u64,
    pub sender: u64,
    pub sender_seq: u64,
    pub mode: Mode,
}

/// A message as its sender sent it.
#[derive(Debug, Clone)]
pub struct Sent {
    pub mode: Mode,
    pub payload: Vec<u8>,
    /// How many messages the sender had delivered when it sent this.
    pub delivered_before: usize,
}

/// A frame in flight: arrival, tie-breaker, destination id, bytes.
type InFlight = (u64, u64, u64, Vec<u8>);

struct Seq {
    id: ProcessId,
    core: Sequencer,
    /// Frames received and not yet handled: the shell takes them as one
    /// burst on its next poll.
    inbox: Vec<Vec<u8>>,
    /// False once crashed for good; a zombie stays alive.
    alive: bool,
}

pub struct Sim {
    pub now: u64,
    pub rng: Rng,
    pub plan: Plan,
    pub members: Vec<Member>,
    seqs: Vec<Seq>,
    epoch: u32,
    /// Frames in flight: arrival, tie-breaker, destination, bytes.
    net: BinaryHeap<Reverse<InFlight>>,
    order: u64,
    /// Per member: planned send times, in order, and the next one's index.
    schedule: Vec<Vec<u64>>,
    cursor: Vec<usize>,
    /// Per member: what it delivered, in order.
    pub log: Vec<Vec<Got>>,
    /// (sender, sender seq) → what was sent.
    pub sent: HashMap<(u64, u64), Sent>,
    pub lost_events: Vec<(usize, u64, u64)>,
    pending_crashes: Vec<(u64, bool, u64)>,
    replacements: Vec<u64>,
    buf: Vec<u8>,
    pub frames: u64,
}

pub fn member_id(i: usize) -> ProcessId {
    ProcessId(i as u64 + 1)
}

fn seq_config(id: ProcessId, batching: bool, ring: usize) -> SequencerConfig {
    let mut c = SequencerConfig::new(id, GROUP);
    c.ring = ring;
    if !batching {
        c.max_batch = 1;
    }
    c
}

impl Sim {
    pub fn new(seed: u64, plan: Plan) -> Self {
        let mut rng = Rng::new(seed);
        let n = plan.members;
        let ids: Vec<ProcessId> = (0..n).map(member_id).collect();
        let first = ProcessId(1000 + 1);
        let members = ids
            .iter()
            .map(|&id| {
                let mut c = MemberConfig::new(id, GROUP);
                c.window = 512;
                Member::new(c, first, 1, &ids)
            })
            .collect();
        let schedule: Vec<Vec<u64>> = (0..n)
            .map(|_| {
                let mut v: Vec<u64> = (0..plan.msgs_per_member)
                    .map(|_| rng.below(plan.send_span.max(1)))
                    .collect();
                v.sort_unstable();
                v
            })
            .collect();
        let mut pending_crashes = plan.faults.crashes.clone();
        pending_crashes.sort_by_key(|c| c.0);
        pending_crashes.reverse();
        Sim {
            now: 0,
            seqs: vec![Seq {
                id: first,
                core: Sequencer::new(
                    seq_config(first, plan.batching, plan.seq_ring),
                    &ids,
                    Time::ZERO,
                ),
                inbox: Vec::new(),
                alive: true,
            }],
            epoch: 1,
            rng,
            members,
            net: BinaryHeap::new(),
            order: 0,
            cursor: vec![0; n],
            schedule,
            log: vec![Vec::new(); n],
            sent: HashMap::new(),
            lost_events: Vec::new(),
            pending_crashes,
            replacements: Vec::new(),
            buf: vec![0u8; 2048],
            frames: 0,
            plan,
        }
    }

    pub fn total_planned(&self) -> usize {
        self.plan.members * self.plan.msgs_per_member
    }

    /// Whether every member delivered every planned message.
    pub fn complete(&self) -> bool {
        let total = self.total_planned();
        self.sent.len() == total && self.log.iter().all(|l| l.len() == total)
    }

    fn faulty(&self) -> bool {
        self.now < self.plan.faults.until
    }

    fn route(&mut self, dest: Dest, len: usize) {
        self.frames += 1;
        let targets: Vec<u64> = match dest {
            Dest::Group => (0..self.members.len()).map(|i| member_id(i).0).collect(),
            Dest::Process(p) => vec![p.0],
        };
        let f = self.plan.faults.clone();
        for to in targets {
            let cut = f
                .cut
                .is_some_and(|(m, a, b)| member_id(m).0 == to && (a..b).contains(&self.now));
            let copies = if cut {
                0
            } else if self.faulty() {
                if self.rng.chance(f.loss_ppm, 1_000_000) {
                    0
                } else if self.rng.chance(f.dup_ppm, 1_000_000) {
                    2
                } else {
                    1
                }
            } else {
                1
            };
            for _ in 0..copies {
                let at = self.now + self.rng.between(f.delay_min, f.delay_max);
                self.order += 1;
                self.net
                    .push(Reverse((at, self.order, to, self.buf[..len].to_vec())));
            }
        }
    }

    fn flush_member(&mut self, i: usize) {
        let now = Time::from_nanos(self.now);
        while let Some(t) = self.members[i].poll_transmit(now, &mut self.buf) {
            self.route(t.dest, t.len);
        }
        while let Some(e) = self.members[i].poll_event() {
            match e {
                Event::Deliver(d) => {
                    let key = (d.sender.0, d.sender_seq);
                    if let Some(s) = self.sent.get(&key) {
                        assert_eq!(s.payload, d.payload, "payload of {key:?} altered");
                        assert_eq!(s.mode, d.mode, "mode of {key:?} altered");
                    } else {
                        panic!("member {i} delivered {key:?}, never sent");
                    }
                    self.log[i].push(Got {
                        seq: d.seq,
                        sender: d.sender.0,
                        sender_seq: d.sender_seq,
                        mode: d.mode,
                    });
                }
                Event::Lost { first, end } => self.lost_events.push((i, first, end)),
            }
        }
    }

    fn flush_seq(&mut self, k: usize) {
        let now = Time::from_nanos(self.now);
        while let Some(t) = self.seqs[k].core.poll_transmit(now, &mut self.buf) {
            self.route(t.dest, t.len);
        }
    }

    fn deliver(&mut self, to: u64, bytes: &[u8]) {
        let now = Time::from_nanos(self.now);
        if (1..=self.members.len() as u64).contains(&to) {
            let i = to as usize - 1;
            self.members[i]
                .handle(now, bytes)
                .expect("well-formed frame");
            self.flush_member(i);
        } else if let Some(k) = self.seqs.iter().position(|s| s.id.0 == to && s.alive) {
            self.seqs[k].inbox.push(bytes.to_vec());
        }
    }

    /// The sequencer's shell polls every `POLL`: what arrived since is
    /// handled as one burst, then its output drained, as a dataplane loop
    /// does (`rx_burst`, process, `tx_burst`).
    fn poll_sequencers(&mut self) {
        if self.now % POLL != 0 {
            return;
        }
        let now = Time::from_nanos(self.now);
        for k in 0..self.seqs.len() {
            if self.seqs[k].inbox.is_empty() {
                continue;
            }
            let inbox = std::mem::take(&mut self.seqs[k].inbox);
            for bytes in &inbox {
                self.seqs[k]
                    .core
                    .handle(now, bytes)
                    .expect("well-formed frame");
            }
            self.flush_seq(k);
        }
    }

    fn app_send(&mut self, i: usize) {
        let mode = self.plan.mode.unwrap_or_else(|| match self.rng.below(4) {
            0 => Mode::Reliable,
            1 => Mode::Atomic,
            2 => Mode::Fifo,
            _ => Mode::Causal,
        });
        let q = self.members[i].outstanding(); // only for the payload's length
        let id = member_id(i).0;
        let mut payload = Vec::new();
        let pad = (self.rng.below(48) as usize + q) % 64;
        payload.extend_from_slice(&id.to_be_bytes());
        // The sender sequence number is the count sent so far plus one.
        let q_next = self.sent.keys().filter(|k| k.0 == id).count() as u64 + 1;
        payload.extend_from_slice(&q_next.to_be_bytes());
        payload.resize(16 + pad, 0xab);
        match self.members[i].send(mode, &payload) {
            Ok(q) => {
                assert_eq!(q, q_next);
                self.sent.insert(
                    (id, q),
                    Sent {
                        mode,
                        payload,
                        delivered_before: self.log[i].len(),
                    },
                );
                self.cursor[i] += 1;
                self.flush_member(i);
            }
            Err(SendError::WindowFull) => {
                // Back-pressure: try again a little later.
                let c = self.cursor[i];
                self.schedule[i][c] = self.now + 500 * US;
            }
            Err(e) => panic!("{e}"),
        }
    }

    fn crash_and_replace(&mut self) {
        let Some(&(at, zombie, gap)) = self.pending_crashes.last() else {
            return;
        };
        if at > self.now {
            return;
        }
        self.pending_crashes.pop();
        // The newest sequencer is the one that fails.
        if let Some(s) = self.seqs.last_mut() {
            s.alive = zombie;
            if !zombie {
                s.inbox.clear();
            }
        }
        self.replacements.push(self.now + gap);
    }

    fn start_replacement(&mut self) {
        let Some(i) = self.replacements.iter().position(|&t| t <= self.now) else {
            return;
        };
        self.replacements.remove(i);
        self.epoch += 1;
        let id = ProcessId(1000 + u64::from(self.epoch));
        let ids: Vec<ProcessId> = (0..self.members.len()).map(member_id).collect();
        let core = Sequencer::replacing(
            seq_config(id, self.plan.batching, self.plan.seq_ring),
            self.epoch,
            &ids,
            Time::from_nanos(self.now),
        );
        self.seqs.push(Seq {
            id,
            core,
            inbox: Vec::new(),
            alive: true,
        });
        let k = self.seqs.len() - 1;
        self.flush_seq(k);
    }

    /// Runs until every member has delivered everything or `deadline`.
    pub fn run(&mut self, deadline: u64) {
        while self.now < deadline && !self.complete() {
            let mut next = deadline;
            if let Some(Reverse((at, ..))) = self.net.peek() {
                next = next.min(*at);
            }
            for (i, s) in self.schedule.iter().enumerate() {
                if let Some(&t) = s.get(self.cursor[i]) {
                    next = next.min(t);
                }
            }
            for m in &self.members {
                if let Some(t) = m.poll_timeout() {
                    next = next.min(t.as_nanos());
                }
            }
            for s in self.seqs.iter().filter(|s| s.alive) {
                if let Some(t) = s.core.poll_timeout() {
                    next = next.min(t.as_nanos());
                }
            }
            if let Some(&(t, ..)) = self.pending_crashes.last() {
                next = next.min(t);
            }
            for &t in &self.replacements {
                next = next.min(t);
            }
            if self.seqs.iter().any(|s| !s.inbox.is_empty()) {
                next = next.min(self.now.div_ceil(POLL) * POLL);
            }
            self.now = self.now.max(next);

            self.crash_and_replace();
            self.start_replacement();
            for i in 0..self.members.len() {
                if self.schedule[i]
                    .get(self.cursor[i])
                    .is_some_and(|&t| t <= self.now)
                {
                    self.app_send(i);
                }
            }
            while let Some(Reverse((at, ..))) = self.net.peek() {
                if *at > self.now {
                    break;
                }
                let Some(Reverse((_, _, to, bytes))) = self.net.pop() else {
                    break;
                };
                self.deliver(to, &bytes);
            }
            self.poll_sequencers();
            let now = Time::from_nanos(self.now);
            for i in 0..self.members.len() {
                if self.members[i].poll_timeout().is_some_and(|t| t <= now) {
                    self.members[i].handle_timeout(now);
                    self.flush_member(i);
                }
            }
            for k in 0..self.seqs.len() {
                if self.seqs[k].alive && self.seqs[k].core.poll_timeout().is_some_and(|t| t <= now)
                {
                    self.seqs[k].core.handle_timeout(now);
                    self.flush_seq(k);
                }
            }
        }
    }

    /// Every property the protocol promises, over the whole run.
    pub fn check(&self) -> Result<(), String> {
        let n = self.members.len();
        let total = self.total_planned();
        if !self.lost_events.is_empty() {
            return Err(format!("state transfer needed: {:?}", self.lost_events));
        }
        // Validity: every message of every (correct) sender, everywhere.
        if self.sent.len() != total {
            return Err(format!("only {} of {total} messages sent", self.sent.len()));
        }
        let mut seq_of: HashMap<(u64, u64), u64> = HashMap::new();
        let mut pos: Vec<HashMap<(u64, u64), usize>> = vec![HashMap::new(); n];
        for (i, log) in self.log.iter().enumerate() {
            // Integrity: nothing twice (nothing invented is checked at
            // delivery).
            for (p, g) in log.iter().enumerate() {
                if pos[i].insert((g.sender, g.sender_seq), p).is_some() {
                    return Err(format!("member {i} delivered {g:?} twice"));
                }
                // Every member sees the same stamp for a message.
                let s = *seq_of.entry((g.sender, g.sender_seq)).or_insert(g.seq);
                if s != g.seq {
                    return Err(format!("{g:?} stamped {s} elsewhere"));
                }
            }
            if log.len() != total {
                return Err(format!(
                    "member {i} delivered {} of {total} (next {})",
                    log.len(),
                    self.members[i].next_seq()
                ));
            }
        }
        // Agreement and total order for the ordered modes.
        let ordered = |log: &Vec<Got>| -> Vec<Got> {
            log.iter()
                .copied()
                .filter(|g| g.mode != Mode::Reliable)
                .collect()
        };
        let reference = ordered(&self.log[0]);
        if reference.windows(2).any(|w| w[0].seq >= w[1].seq) {
            return Err("ordered deliveries out of sequence order".into());
        }
        for i in 1..n {
            if ordered(&self.log[i]) != reference {
                return Err(format!("member {i} ordered differently from member 0"));
            }
        }
        // FIFO and causal precedence, at every member.
        for (i, log) in self.log.iter().enumerate() {
            for (p, g) in log.iter().enumerate() {
                if !matches!(g.mode, Mode::Fifo | Mode::Causal) {
                    continue;
                }
                for q in 1..g.sender_seq {
                    match pos[i].get(&(g.sender, q)) {
                        Some(&pq) if pq < p => {}
                        _ => {
                            return Err(format!(
                                "member {i}: {g:?} before the sender's message {q}"
                            ));
                        }
                    }
                }
                if g.mode == Mode::Causal {
                    let s = &self.sent[&(g.sender, g.sender_seq)];
                    let sender = g.sender as usize - 1;
                    for d in &self.log[sender][..s.delivered_before] {
                        if pos[i][&(d.sender, d.sender_seq)] > p {
                            return Err(format!(
                                "member {i}: causal {g:?} before {d:?}, which its sender had delivered"
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Seeds to run: `NFVINC_SIM_SEEDS` or `default`.
pub fn seed_count(default: u64) -> u64 {
    std::env::var("NFVINC_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Runs one seed's random plan to completion and checks it.
pub fn run_seed(seed: u64) -> Result<Sim, String> {
    let mut rng = Rng::new(seed ^ 0xa5a5_5a5a);
    let plan = Plan::random(&mut rng);
    let deadline = plan.faults.until + 2_000 * MS;
    let mut sim = Sim::new(seed, plan);
    sim.run(deadline);
    sim.check().map(|()| sim)
}
