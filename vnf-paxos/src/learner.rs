//! The learner: learns decisions from a majority of votes, delivers them in
//! instance order, and fetches what it misses.
//!
//! Every command is delivered at most once: the log may hold a command
//! twice (a client retried after a leader change, and both the old and the
//! new leader proposed it), and every learner drops the later copy, the
//! same way, since they all see the same log in the same order.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::Ballot;
use crate::config::LearnerConfig;
use crate::dedup::Dedup;
use crate::transmit::{Dest, Transmit};
use crate::votes::{VoteValue, Votes};
use crate::wire::value::{Entry, entry_len, parse_value, parse_value_bytes};
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
    let end = answer_end(f);
    let values = log.range(f.from..end).map(|(&i, v)| (i, v.clone()));
    pages_of(values, to, max_bytes)
}

/// The end (exclusive) of what a fetch is answered with.
fn answer_end(f: fetch::Repr) -> Instance {
    f.to.min(f.from.saturating_add(MAX_ANSWER)).max(f.from)
}

/// `values` as `Decided` pages to `to` of at most `max_bytes` (at least
/// one entry each).
fn pages_of(
    values: impl Iterator<Item = (Instance, Value)>,
    to: NodeId,
    max_bytes: usize,
) -> Vec<Transmit> {
    let mut pages = Vec::new();
    let mut entries = Vec::new();
    let mut bytes = 0;
    let page = |entries| Transmit {
        dest: Dest::Node(to),
        msg: Message::Decided(decided::Repr { entries }),
    };
    for (instance, value) in values {
        let e = Entry {
            instance,
            ballot: Ballot::ZERO,
            value,
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

/// A decided value waiting for its turn.
#[derive(Debug)]
enum Decision {
    /// Built already (from votes, or handed over as a message).
    Built(Value),
    /// Read from an announcement's bytes: its commands, delivered as they
    /// are (no copy of the list, no reference count per command taken
    /// again), and the copy of the value's bytes they are cut from, which
    /// is what is kept for fetches.
    Read(Vec<Command>, Arc<[u8]>),
}

/// A delivered value kept for other learners' fetches.
#[derive(Debug)]
enum Kept {
    /// As built.
    Value(Value),
    /// As its bytes (checked), built again only to answer a fetch.
    Bytes(Arc<[u8]>),
}

impl Kept {
    /// The value (bytes were checked when they arrived, so they parse
    /// again; were they not to, the instance is left out of the answer
    /// rather than answered wrongly).
    fn value(&self) -> Option<Value> {
        match self {
            Kept::Value(v) => Some(v.clone()),
            Kept::Bytes(b) => parse_value(b).ok().map(|(v, _)| v),
        }
    }
}

/// A learner (see the crate docs for the protocol).
#[derive(Debug)]
pub struct Learner {
    cfg: LearnerConfig,
    votes: Votes,
    decided: BTreeMap<Instance, Decision>,
    /// Delivered values kept for other learners' fetches, of the
    /// instances from `next - kept.len()` on (instances are delivered one
    /// after another, so a ring holds them; no tree).
    kept: VecDeque<Kept>,
    next: Instance,
    horizon: Instance,
    gap_since: Option<(Time, Instance)>,
    dedup: Dedup,
    /// Announced values read from one message, held until the whole
    /// message has proved well formed (reused).
    read: Vec<(Instance, Vec<Command>, Arc<[u8]>)>,
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
            kept: VecDeque::new(),
            next: 0,
            horizon: 0,
            gap_since: None,
            dedup: Dedup::default(),
            read: Vec::new(),
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
                let first = self.next - self.kept.len() as u64;
                let (lo, hi) = (f.from.max(first), answer_end(f).min(self.next));
                let values = (lo..hi.max(lo))
                    .filter_map(|i| Some((i, self.kept[(i - first) as usize].value()?)));
                let pages = pages_of(values, from, self.cfg.max_packet_bytes);
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
                    self.on_decided(e.instance, || Decision::Built(e.value));
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

    /// An announcement that `instance` is decided, its value built by
    /// `value` only if still needed.
    fn on_decided(&mut self, instance: Instance, value: impl FnOnce() -> Decision) {
        // The leader's announcements are the steady flow: a later one
        // shows a gap where one was lost.
        self.horizon = self.horizon.max(instance.saturating_add(1));
        if instance >= self.next {
            self.votes.forget(instance);
            self.decided.entry(instance).or_insert_with(value);
        }
    }

    /// Takes one received NFVinc message (a UDP payload) as bytes: votes
    /// and announcements, a learner's whole steady load, by their bytes
    /// (an instance's value is built once, from the first vote of its
    /// ballot, rather than from each of a majority's votes; an
    /// announcement builds only the values not learned yet, straight into
    /// the list that is delivered), anything else parsed and handed to
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
        if h.msg_type() == u8::from(MsgType::Decided) {
            return self.on_decided_bytes(decided::Packet::new_checked(h.payload())?);
        }
        let msg = Message::parse(h.msg_type(), h.payload())?;
        self.handle(now, from, msg);
        Ok(())
    }

    /// An announcement by its bytes: the values not learned yet are read
    /// (and held back until the whole message proved well formed), the
    /// rest only checked.
    fn on_decided_bytes(&mut self, p: decided::Packet<&[u8]>) -> Result<(), MsgError> {
        let mut read = std::mem::take(&mut self.read);
        read.clear();
        let mut horizon = self.horizon;
        let mut checked = Ok(());
        for e in p.entry_bytes() {
            let (instance, bytes) = match e {
                Ok(e) => e,
                Err(e) => {
                    checked = Err(e);
                    break;
                }
            };
            horizon = horizon.max(instance.saturating_add(1));
            if instance < self.next || self.decided.contains_key(&instance) {
                continue;
            }
            match parse_value_bytes(bytes) {
                Ok((commands, bytes)) => read.push((instance, commands, bytes)),
                Err(e) => {
                    checked = Err(e);
                    break;
                }
            }
        }
        if checked.is_ok() {
            self.horizon = horizon;
            for (instance, commands, bytes) in read.drain(..) {
                if instance == self.next && self.decided.is_empty() {
                    // In order, the steady case: delivered at once, no
                    // stop in the tree.
                    self.votes.forget(instance);
                    self.deliver_one(Decision::Read(commands, bytes));
                } else {
                    self.on_decided(instance, || Decision::Read(commands, bytes));
                }
            }
            self.deliver();
        }
        read.clear();
        self.read = read;
        checked
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
                self.decided.insert(instance, Decision::Built(v));
            }
        }
    }

    fn deliver(&mut self) {
        while let Some(d) = self.decided.remove(&self.next) {
            self.deliver_one(d);
        }
        self.votes.forget_below(self.next);
    }

    /// Delivers `d` as instance `next`: its commands not seen before, in
    /// order.
    fn deliver_one(&mut self, d: Decision) {
        let instance = self.next;
        let (commands, kept) = match d {
            Decision::Built(v) => {
                // Copied whole (sized once), the few seen before dropped
                // after.
                let mut commands = v.commands().to_vec();
                self.dedup.retain_new(&mut commands, instance);
                (commands, Kept::Value(v))
            }
            Decision::Read(mut commands, bytes) => {
                // A lookup per run of a client's numbers, not per command.
                self.dedup.retain_new(&mut commands, instance);
                (commands, Kept::Bytes(bytes))
            }
        };
        self.events.push_back(Delivery { instance, commands });
        if self.cfg.retain > 0 {
            self.kept.push_back(kept);
            if self.kept.len() as u64 > self.cfg.retain {
                self.kept.pop_front();
            }
        }
        self.next += 1;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn command(client: u64, seq: u64) -> Command {
        Command::of(client, seq, b"pay")
    }

    fn decided(entries: &[(Instance, &[Command])]) -> Vec<u8> {
        let msg = Message::Decided(decided::Repr {
            entries: entries
                .iter()
                .map(|&(instance, cs)| Entry {
                    instance,
                    ballot: Ballot::ZERO,
                    value: Value::batch(cs.to_vec()),
                })
                .collect(),
        });
        let mut buf = vec![0u8; 4096];
        let n = msg.emit(0, &mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    fn delivered(l: &mut Learner) -> Vec<(Instance, Vec<(u64, u64)>)> {
        std::iter::from_fn(|| l.poll_event())
            .map(|d| {
                let cs = d.commands.iter().map(|c| (c.client.0, c.seq)).collect();
                (d.instance, cs)
            })
            .collect()
    }

    #[test]
    fn announcements_by_bytes_deliver_in_order_once_each() {
        let mut by_bytes = Learner::new(LearnerConfig::default());
        let mut by_value = Learner::new(LearnerConfig::default());
        let (t, from) = (Time::ZERO, NodeId(1));
        let a = [command(1, 1), command(1, 2)];
        // Instance 2 repeats (1, 2): a retry decided twice.
        let b = [command(1, 2), command(2, 1)];
        let msgs = [
            decided(&[(1, &b[..])]),
            decided(&[(0, &a[..]), (1, &b[..])]),
            decided(&[(2, &[command(1, 3)][..]), (0, &[][..])]),
        ];
        let mut got = Vec::new();
        for m in &msgs {
            by_bytes.handle_nfv(t, from, m).unwrap();
            let (_, msg) = Message::parse_nfv(m).unwrap();
            by_value.handle(t, from, msg);
            got.push(delivered(&mut by_bytes));
            assert_eq!(got.last(), Some(&delivered(&mut by_value)));
        }
        assert_eq!(
            got,
            vec![
                vec![],
                vec![(0, vec![(1, 1), (1, 2)]), (1, vec![(2, 1)])],
                vec![(2, vec![(1, 3)])],
            ]
        );
        assert_eq!(by_bytes.next_instance(), 3);
    }

    #[test]
    fn a_malformed_announcement_changes_nothing() {
        let mut l = Learner::new(LearnerConfig::default());
        let good = decided(&[(0, &[command(1, 1)][..]), (5, &[command(1, 2)][..])]);
        // The second entry cut short: the first must not be delivered, nor
        // the horizon moved by it.
        let cut = &good[..good.len() - 2];
        assert!(l.handle_nfv(Time::ZERO, NodeId(1), cut).is_err());
        assert_eq!(l.poll_event(), None);
        assert_eq!(l.poll_timeout(), None, "no gap seen");
        l.handle_nfv(Time::ZERO, NodeId(1), &good).unwrap();
        assert_eq!(delivered(&mut l), vec![(0, vec![(1, 1)])]);
        assert_eq!(
            l.poll_timeout(),
            Some(Time::ZERO),
            "instances 1 to 4 missing"
        );
    }

    #[test]
    fn values_kept_as_bytes_answer_fetches() {
        let cfg = LearnerConfig {
            retain: 2,
            ..LearnerConfig::default()
        };
        let mut l = Learner::new(cfg);
        let cs: Vec<Command> = (1..=3).map(|s| command(7, s)).collect();
        for (i, c) in cs.iter().enumerate() {
            let m = decided(&[(i as Instance, std::slice::from_ref(c))]);
            l.handle_nfv(Time::ZERO, NodeId(1), &m).unwrap();
        }
        assert_eq!(delivered(&mut l).len(), 3);
        let asker = NodeId(40);
        l.handle(
            Time::ZERO,
            asker,
            Message::Fetch(fetch::Repr { from: 0, to: 10 }),
        );
        let t = l.poll_transmit().expect("an answer");
        assert_eq!(t.dest, Dest::Node(asker));
        let Message::Decided(d) = t.msg else {
            panic!("{:?}", t.msg)
        };
        // Instance 0 is no longer kept (two are); 1 and 2 are, whole.
        let got: Vec<_> = d
            .entries
            .iter()
            .map(|e| (e.instance, e.value.commands().to_vec()))
            .collect();
        assert_eq!(
            got,
            vec![(1, vec![cs[1].clone()]), (2, vec![cs[2].clone()])]
        );
    }
}
