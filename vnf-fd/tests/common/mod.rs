//! A deterministic simulation of processes heartbeating to one detector.
//!
//! Time is a number; every random choice comes from a seeded SplitMix64, so
//! a seed names one run exactly. Each process sends a heartbeat every
//! interval from a random phase; each heartbeat takes a delay drawn from a
//! [`Jitter`] law. The detector's timers are served either exactly (at
//! `poll_timeout`) or on a periodic tick, as a shell that polls would.

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use vnf_fd::{Config, Detector, ProcessId, ProcessSpec, State, Time, Transition};

pub const MS: u64 = 1_000_000;

pub use dataplane::sim::Rng;

/// How a heartbeat's delay is drawn, in `min..=max`.
#[derive(Debug, Clone, Copy)]
pub enum Jitter {
    /// Always the same.
    Fixed(u64),
    /// Uniform.
    Uniform { min: u64, max: u64 },
    /// One bound or the other at random: the worst case for an estimator,
    /// consecutive arrivals as far apart in delay as allowed.
    Extremes { min: u64, max: u64 },
}

impl Jitter {
    pub fn max(&self) -> u64 {
        match *self {
            Jitter::Fixed(d) => d,
            Jitter::Uniform { max, .. } | Jitter::Extremes { max, .. } => max,
        }
    }

    fn draw(&self, rng: &mut Rng) -> u64 {
        match *self {
            Jitter::Fixed(d) => d,
            Jitter::Uniform { min, max } => rng.between(min, max),
            Jitter::Extremes { min, max } => {
                if rng.below(2) == 0 {
                    min
                } else {
                    max
                }
            }
        }
    }
}

/// When the shell serves the detector's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// At exactly `poll_timeout`.
    Exact,
    /// On every multiple of this period.
    Tick(u64),
}

impl Wake {
    /// How late past a deadline the shell may serve it.
    pub fn lateness(self) -> u64 {
        match self {
            Wake::Exact => 0,
            Wake::Tick(p) => p,
        }
    }
}

/// One simulated process.
#[derive(Debug, Clone)]
pub struct Sender {
    pub id: ProcessId,
    pub interval: u64,
    pub jitter: Jitter,
    /// Send time of the next heartbeat.
    pub next_send: u64,
    /// It sends nothing after this time.
    pub crash_at: Option<u64>,
    /// Send time of its latest heartbeat that was delivered.
    pub last_send: Option<u64>,
    /// Arrival time of its latest heartbeat.
    pub last_arrival: Option<u64>,
    /// Heartbeats are dropped while this is set (its link is down).
    pub cut: bool,
    /// Removed from the detector: still sends, the detector refuses.
    pub removed: bool,
}

pub struct Sim {
    pub det: Detector,
    pub now: u64,
    pub rng: Rng,
    pub senders: Vec<Sender>,
    pub wake: Wake,
    /// Every transition so far, in order.
    pub events: Vec<Transition>,
    /// Path stalls: heartbeats of the senders in the range that would
    /// arrive in the time range are held and come out after its end,
    /// spread in their order over the drain time (the third member).
    pub stalls: Vec<(std::ops::Range<u64>, std::ops::Range<usize>, u64)>,
    /// Phase of the senders added next (random when `None`).
    pub phase: Option<u64>,
    /// Heartbeats in flight: arrival time, a tie-breaker, sender, send
    /// time.
    arrivals: BinaryHeap<Reverse<(u64, u64, usize, u64)>>,
    order: u64,
    next_tick: u64,
}

impl Sim {
    /// A detector with `default` as its configuration and nothing to
    /// monitor yet.
    pub fn new(seed: u64, default: Config, wake: Wake) -> Self {
        Sim {
            det: Detector::new(default).expect("valid configuration"),
            now: 0,
            rng: Rng::new(seed),
            senders: Vec::new(),
            wake,
            events: Vec::new(),
            stalls: Vec::new(),
            phase: None,
            arrivals: BinaryHeap::new(),
            order: 0,
            next_tick: 0,
        }
    }

    /// `n` processes with ids `first..first + n`, added now as `template`
    /// says (its id aside), sending every `interval` from a random phase.
    /// Returns their indices in `senders`.
    pub fn add_senders(
        &mut self,
        first: u64,
        n: usize,
        interval: u64,
        jitter: Jitter,
        template: ProcessSpec,
    ) -> std::ops::Range<usize> {
        let start = self.senders.len();
        for k in 0..n as u64 {
            let id = ProcessId(first + k);
            let spec = ProcessSpec { id, ..template };
            self.det
                .add_process(spec, Time::from_nanos(self.now))
                .expect("new id");
            let phase = self.phase.unwrap_or_else(|| self.rng.below(interval));
            self.senders.push(Sender {
                id,
                interval,
                jitter,
                next_send: self.now + phase,
                crash_at: None,
                last_send: None,
                last_arrival: None,
                cut: false,
                removed: false,
            });
            self.schedule(start + k as usize);
        }
        start..self.senders.len()
    }

    /// Queues the next heartbeat of sender `i`, unless it has crashed by
    /// then.
    fn schedule(&mut self, i: usize) {
        let s = &mut self.senders[i];
        let send = s.next_send;
        if s.crash_at.is_some_and(|c| send > c) {
            return;
        }
        s.next_send += s.interval;
        let mut at = send + s.jitter.draw(&mut self.rng);
        for (when, who, drain) in &self.stalls {
            if who.contains(&i) && when.contains(&at) {
                at = when.end + (at - when.start) * drain / (when.end - when.start);
            }
        }
        self.order += 1;
        self.arrivals.push(Reverse((at, self.order, i, send)));
    }

    /// Runs until `end`, serving arrivals and timers in time order.
    pub fn run_until(&mut self, end: u64) {
        loop {
            let arrival = self.arrivals.peek().map(|Reverse((at, ..))| *at);
            let timer = match self.wake {
                Wake::Exact => self.det.poll_timeout().map(Time::as_nanos),
                Wake::Tick(p) => {
                    while self.next_tick < self.now {
                        self.next_tick += p;
                    }
                    Some(self.next_tick)
                }
            };
            let next = match (arrival, timer) {
                (Some(a), Some(t)) => a.min(t),
                (a, t) => a.or(t).unwrap_or(u64::MAX),
            };
            if next > end {
                self.now = end;
                self.drain();
                return;
            }
            self.now = next;
            if timer == Some(next) {
                self.det.handle_timeout(Time::from_nanos(next));
                if let Wake::Tick(p) = self.wake {
                    self.next_tick = next + p;
                }
            } else if let Some(Reverse((at, _, i, send))) = self.arrivals.pop() {
                self.deliver(i, at, send);
            }
            self.drain();
        }
    }

    fn deliver(&mut self, i: usize, at: u64, send: u64) {
        let s = &mut self.senders[i];
        if !s.cut {
            let r = self.det.heartbeat(s.id, Time::from_nanos(at));
            assert_eq!(r.is_ok(), !s.removed, "heartbeat of {:?}: {r:?}", s.id);
            s.last_send = Some(send);
            s.last_arrival = Some(at);
        }
        self.schedule(i);
    }

    /// Moves the detector's new transitions into `events`.
    pub fn drain(&mut self) {
        while let Some(e) = self.det.poll_event() {
            assert_eq!(e.seq, self.events.len() as u64, "transitions are numbered");
            self.events.push(e);
        }
    }

    /// A spec to use as a template: no link, group or configuration.
    pub fn plain() -> ProcessSpec {
        ProcessSpec::new(ProcessId(0))
    }

    /// Transitions of one process.
    pub fn events_of(&self, id: ProcessId) -> Vec<Transition> {
        self.events
            .iter()
            .filter(|e| e.process == id)
            .copied()
            .collect()
    }

    /// Processes not in `State::Correct`.
    pub fn not_correct(&self) -> Vec<ProcessId> {
        self.det
            .processes()
            .filter(|p| p.state != State::Correct)
            .map(|p| p.id)
            .collect()
    }
}
