//! The learner: learns decisions from a majority of votes, delivers them in
//! instance order, and fetches what it misses.
//!
//! Every command is delivered at most once: the log may hold a command
//! twice (a client retried after a leader change, and both the old and the
//! new leader proposed it), and every learner drops the later copy, the
//! same way, since they all see the same log in the same order.

use std::collections::{BTreeMap, VecDeque};

use crate::Ballot;
use crate::config::LearnerConfig;
use crate::dedup::Dedup;
use crate::transmit::{Dest, Transmit};
use crate::votes::{VoteValue, Votes};
use crate::wire::value::{Entry, entry_len};
use crate::wire::{Message, MsgError, MsgType, accepted, decided, fetch};
use dataplane::wire::nfvinc::{NfvHeader, Service};

/// Most instances one fetch is answered with.
const MAX_ANSWER: u64 = 1024;

/// The answer to a fetch from `log`: decided values in pages of at most
/// `max_bytes` (at least one entry each).
pub(crate) fn decided_pages(
    log: &BTreeMap<Instance, Value>,
    to: NodeId,
    f: fetch::Repr,
    max_bytes: usize,
) -> Vec<Transmit> {
    let end = f.to.min(f.from.saturating_add(MAX_ANSWER)).max(f.from);
    let mut pages = Vec::new();
    let mut entries = Vec::new();
    let mut bytes = 0;
    let page = |entries| Transmit {
        dest: Dest::Node(to),
        msg: Message::Decided(decided::Repr { entries }),
    };
    for (&instance, value) in log.range(f.from..end) {
        let e = Entry {
            instance,
            ballot: Ballot::ZERO,
            value: value.clone(),
        };
        let len = entry_len(&e, false);
        if !entries.is_empty() && bytes + len > max_bytes {
            pages.push(page(std::mem::take(&mut entries)));
            bytes = 0;
        }
        bytes += len;
        entries.push(e);
    }
    if !entries.is_empty() {
        pages.push(page(entries));
    }
    pages
}
use crate::{Command, Instance, NodeId, Time, Value};

/// One decided instance, delivered in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The instance.
    pub instance: Instance,
    /// Its commands not delivered before (empty for a no-op).
    pub commands: Vec<Command>,
}

/// A learner (see the crate docs for the protocol).
#[derive(Debug)]
pub struct Learner {
    cfg: LearnerConfig,
    votes: Votes,
    decided: BTreeMap<Instance, Value>,
    /// Delivered values kept for other learners' fetches.
    kept: BTreeMap<Instance, Value>,
    next: Instance,
    horizon: Instance,
    gap_since: Option<(Time, Instance)>,
    dedup: Dedup,
    events: VecDeque<Delivery>,
    outbox: VecDeque<Transmit>,
    leader: Option<NodeId>,
}

impl Learner {
    /// A learner that has delivered nothing.
    pub fn new(cfg: LearnerConfig) -> Self {
        Learner {
            votes: Votes::new(cfg.acceptors.min(64)),
            cfg,
            decided: BTreeMap::new(),
            kept: BTreeMap::new(),
            next: 0,
            horizon: 0,
            gap_since: None,
            dedup: Dedup::default(),
            events: VecDeque::new(),
            outbox: VecDeque::new(),
            leader: None,
        }
    }

    /// The next instance to deliver: every one below was delivered.
    pub fn next_instance(&self) -> Instance {
        self.next
    }

    /// The coordinator the latest heartbeat came from.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// Takes one received message: votes, decided values and heartbeats
    /// feed the log; fetches from other learners are answered from the
    /// values kept.
    pub fn handle(&mut self, now: Time, from: NodeId, msg: Message) {
        match msg {
            Message::Fetch(f) => {
                let pages = decided_pages(&self.kept, from, f, self.cfg.max_packet_bytes);
                self.outbox.extend(pages);
            }
            Message::Accepted(a) => self.on_accepted(
                a.ballot,
                a.acceptor.slot,
                a.entries
                    .iter()
                    .map(|e| (e.instance, VoteValue::Built(&e.value))),
            ),
            Message::Decided(d) => {
                for e in d.entries {
                    // The leader's announcements are the steady flow: a
                    // later one shows a gap where one was lost.
                    self.horizon = self.horizon.max(e.instance.saturating_add(1));
                    if e.instance >= self.next {
                        self.votes.forget(e.instance);
                        self.decided.entry(e.instance).or_insert(e.value);
                    }
                }
            }
            Message::Heartbeat(h) => {
                self.leader = Some(h.ballot.node);
                self.horizon = self.horizon.max(h.committed);
            }
            _ => {}
        }
        self.deliver();
        let _ = now;
    }

    /// Takes one received NFVinc message (a UDP payload) as bytes: votes,
    /// a learner's whole steady load, by their bytes (an instance's value
    /// is built once, from the first vote of its ballot, rather than from
    /// each of a majority's votes), anything else parsed and handed to
    /// [`Learner::handle`]. Malformed input is an error and changes
    /// nothing.
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
                p.ballot(),
                p.acceptor().slot,
                entries.map(|(i, b)| (i, VoteValue::Bytes(b))),
            );
            self.deliver();
            return Ok(());
        }
        let msg = Message::parse(h.msg_type(), h.payload())?;
        self.handle(now, from, msg);
        Ok(())
    }

    fn on_accepted<'a>(
        &mut self,
        ballot: Ballot,
        slot: u16,
        entries: impl Iterator<Item = (Instance, VoteValue<'a>)>,
    ) {
        for (instance, value) in entries {
            self.horizon = self.horizon.max(instance.saturating_add(1));
            if instance < self.next || self.decided.contains_key(&instance) {
                continue;
            }
            if let Some(v) = self.votes.vote_for(instance, ballot, slot, value) {
                self.decided.insert(instance, v);
            }
        }
    }

    fn deliver(&mut self) {
        while let Some(v) = self.decided.remove(&self.next) {
            let instance = self.next;
            // Sized once: a filtered iterator would grow it step by step.
            let mut commands = Vec::with_capacity(v.commands().len());
            commands.extend(
                v.commands()
                    .iter()
                    .filter(|c| self.dedup.insert(c.client, c.seq, instance))
                    .cloned(),
            );
            self.events.push_back(Delivery { instance, commands });
            if self.cfg.retain > 0 {
                self.kept.insert(instance, v);
                if self.kept.len() as u64 > self.cfg.retain {
                    self.kept.pop_first();
                }
            }
            self.next += 1;
        }
        self.votes.forget_below(self.next);
    }

    /// The next delivery, in instance order.
    pub fn poll_event(&mut self) -> Option<Delivery> {
        self.events.pop_front()
    }

    /// The next message to send (fetches), if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
    }

    /// When [`Learner::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Time> {
        if self.next >= self.horizon {
            return None;
        }
        Some(match self.gap_since {
            Some((t, _)) => t + self.cfg.fetch_timeout,
            None => Time::ZERO,
        })
    }

    /// Runs the timers due at `now`: a gap that has not filled by itself
    /// is fetched from the other learners, the coordinators (decided
    /// values) and the acceptors (their votes again).
    pub fn handle_timeout(&mut self, now: Time) {
        if self.next >= self.horizon {
            self.gap_since = None;
            return;
        }
        match self.gap_since {
            Some((t, at)) if at == self.next && now < t + self.cfg.fetch_timeout => {}
            Some((_, at)) if at == self.next => {
                let f = fetch::Repr {
                    from: self.next,
                    to: self
                        .horizon
                        .min(self.next.saturating_add(self.cfg.max_fetch)),
                };
                for dest in [Dest::Learners, Dest::Acceptors] {
                    self.outbox.push_back(Transmit {
                        dest,
                        msg: Message::Fetch(f),
                    });
                }
                self.gap_since = Some((now, self.next));
            }
            _ => self.gap_since = Some((now, self.next)),
        }
    }
}
