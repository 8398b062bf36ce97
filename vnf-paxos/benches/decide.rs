//! Decisions per second of the protocol logic alone, on one core: a leader,
//! three in-memory acceptors and one learner exchanging `Message` values
//! in memory (no frames, no network), with a closed loop of clients keeping
//! a fixed number of commands outstanding.
//!
//! Scenarios:
//!
//! * `batched`: the default configuration (up to 64 commands an instance,
//!   instances packed into 1200-byte accepts, a window of 256);
//! * `unbatched`: one command an instance, one instance a packet;
//! * `batched+wire`: as `batched`, but every message is also emitted into
//!   an NFVinc frame and parsed back, as the dataplane shell will do.
//!
//! A decision is a client command delivered by the learner. Run with
//! `cargo bench -p vnf-paxos --bench decide`; name scenarios after `--` to
//! run only those.

use std::collections::VecDeque;
use std::hint::black_box;
use std::time::{Duration, Instant};

use vnf_paxos::wire::Message;
use vnf_paxos::{
    Acceptor, AcceptorConfig, AcceptorId, ClientId, Command, Coordinator, CoordinatorConfig, Dest,
    Durability, Learner, LearnerConfig, NodeId, Time,
};

const RUN: Duration = Duration::from_millis(1500);
const TRIALS: usize = 3;
const OUTSTANDING: usize = 4096;
const PAYLOAD: usize = 16;

const LEADER: NodeId = NodeId(1);
const CLIENTS: NodeId = NodeId(300);
const LEARNER: NodeId = NodeId(200);

struct Group {
    leader: Coordinator,
    acceptors: Vec<Acceptor>,
    learner: Learner,
    queue: VecDeque<(NodeId, Dest, Message)>,
    wire: bool,
    buf: Vec<u8>,
    delivered: u64,
    instances: u64,
    messages: u64,
    epoch: Instant,
}

impl Group {
    fn new(batched: bool, wire: bool) -> Self {
        let mut cfg = CoordinatorConfig::new(LEADER, 1, vec![LEADER]);
        if !batched {
            cfg = cfg.unbatched();
        }
        let acfg = AcceptorConfig {
            durability: Durability::Memory,
            ..AcceptorConfig::default()
        };
        let mut g = Group {
            leader: Coordinator::new(cfg, Time::ZERO),
            acceptors: (0..3)
                .map(|slot| {
                    Acceptor::new(
                        AcceptorId {
                            slot,
                            incarnation: 1,
                        },
                        acfg.clone(),
                    )
                })
                .collect(),
            learner: Learner::new(LearnerConfig::default()),
            queue: VecDeque::new(),
            wire,
            buf: vec![0; 65_536],
            delivered: 0,
            instances: 0,
            messages: 0,
            epoch: Instant::now(),
        };
        // Elect the leader.
        while !g.leader.is_leader() {
            let t = g.leader.poll_timeout().unwrap_or(Time::ZERO);
            g.leader.handle_timeout(t);
            g.route(t);
        }
        g
    }

    fn now(&self) -> Time {
        Time::from_nanos(self.epoch.elapsed().as_nanos() as u64 + 1_000_000_000)
    }

    fn collect(&mut self) {
        while let Some(t) = self.leader.poll_transmit() {
            self.queue.push_back((LEADER, t.dest, t.msg));
        }
        for (slot, a) in self.acceptors.iter_mut().enumerate() {
            while let Some(t) = a.poll_transmit() {
                self.queue
                    .push_back((NodeId(100 + slot as u16), t.dest, t.msg));
            }
        }
        while let Some(t) = self.learner.poll_transmit() {
            self.queue.push_back((LEARNER, t.dest, t.msg));
        }
        while let Some(d) = self.learner.poll_event() {
            self.instances += 1;
            self.delivered += d.commands.len() as u64;
        }
    }

    fn deliver(&mut self, now: Time, from: NodeId, to: NodeId, msg: Message) {
        self.messages += 1;
        let msg = if self.wire {
            let n = msg.emit(1, &mut self.buf).expect("fits");
            Message::parse_nfv(&self.buf[..n]).expect("parses").1
        } else {
            msg
        };
        match to.0 {
            1 => self.leader.handle(now, from, msg),
            100..=102 => self.acceptors[usize::from(to.0 - 100)].handle(now, from, msg),
            200 => self.learner.handle(now, from, msg),
            _ => {
                black_box(msg);
            }
        }
    }

    /// Moves messages until nobody has anything to send.
    fn route(&mut self, now: Time) {
        self.collect();
        while let Some((from, dest, msg)) = self.queue.pop_front() {
            match dest {
                Dest::Node(n) => self.deliver(now, from, n, msg),
                Dest::Acceptors => {
                    for k in 0..3 {
                        self.deliver(now, from, NodeId(100 + k), msg.clone());
                    }
                }
                Dest::Coordinators => self.deliver(now, from, LEADER, msg),
                Dest::Learners => {
                    self.deliver(now, from, LEADER, msg.clone());
                    self.deliver(now, from, LEARNER, msg);
                }
                Dest::Everyone => {
                    for k in 0..3 {
                        self.deliver(now, from, NodeId(100 + k), msg.clone());
                    }
                    self.deliver(now, from, LEARNER, msg);
                }
            }
            self.collect();
        }
    }
}

/// One trial: decisions/s, instances/s, messages/s.
fn trial(batched: bool, wire: bool) -> (f64, f64, f64) {
    let mut g = Group::new(batched, wire);
    let payload = vnf_paxos::Payload::from(vec![7u8; PAYLOAD]);
    let mut seq = 0;
    let start = Instant::now();
    let (d0, i0, m0) = (g.delivered, g.instances, g.messages);
    while start.elapsed() < RUN {
        let now = g.now();
        // Closed loop: keep OUTSTANDING commands submitted and undelivered.
        let outstanding = seq - (g.delivered - d0) as usize;
        for _ in outstanding..OUTSTANDING {
            seq += 1;
            g.leader.submit(
                now,
                CLIENTS,
                Command {
                    client: ClientId(1),
                    seq: seq as u64,
                    payload: payload.clone(),
                },
            );
        }
        if g.leader.poll_timeout().is_some_and(|t| t <= now) {
            g.leader.handle_timeout(now);
        }
        g.route(now);
    }
    let s = start.elapsed().as_secs_f64();
    (
        (g.delivered - d0) as f64 / s,
        (g.instances - i0) as f64 / s,
        (g.messages - m0) as f64 / s,
    )
}

fn main() {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    for (name, batched, wire) in [
        ("batched", true, false),
        ("unbatched", false, false),
        ("batched+wire", true, true),
    ] {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let mut runs: Vec<(f64, f64, f64)> = (0..TRIALS).map(|_| trial(batched, wire)).collect();
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (d, i, m) = runs[TRIALS / 2];
        println!(
            "{name:>14}: {:>10.0} decisions/s  {:>9.0} instances/s  {:>10.0} messages/s  (median of {TRIALS}, best {:.0} decisions/s)",
            d,
            i,
            m,
            runs[TRIALS - 1].0
        );
    }
}
