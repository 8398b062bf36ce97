//! The client side that the client library embeds: submits commands to the
//! leader and retries until a coordinator says they are decided.
//!
//! Retries keep the command's sequence number, which is how coordinators
//! and learners recognise them: a command is decided, and delivered, at
//! most once however often it is sent. The client library pairs this with
//! a [`crate::Learner`] for the stream of decided values.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::config::ClientConfig;
use crate::transmit::{Dest, Transmit};
use crate::wire::{Message, reply, request};
use crate::{ClientId, Command, Instance, NodeId, Time};

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
    payload: Arc<[u8]>,
    sent_at: Time,
}

/// A client (see the module docs).
#[derive(Debug)]
pub struct Client {
    id: ClientId,
    cfg: ClientConfig,
    target: usize,
    next_seq: u64,
    outstanding: BTreeMap<u64, Outstanding>,
    events: VecDeque<Committed>,
    outbox: VecDeque<Transmit>,
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
            outstanding: BTreeMap::new(),
            events: VecDeque::new(),
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

    /// Commands submitted and not yet known decided.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Submits a command; returns its sequence number.
    pub fn submit(&mut self, now: Time, payload: impl Into<Arc<[u8]>>) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.outstanding.insert(
            seq,
            Outstanding {
                payload: payload.into(),
                sent_at: now,
            },
        );
        self.send(seq);
        seq
    }

    fn leader(&self) -> Option<NodeId> {
        self.cfg.coordinators.get(self.target).copied()
    }

    fn send(&mut self, seq: u64) {
        let (Some(to), Some(o)) = (self.leader(), self.outstanding.get(&seq)) else {
            return;
        };
        self.outbox.push_back(Transmit {
            dest: Dest::Node(to),
            msg: Message::Request(request::Repr {
                command: Command {
                    client: self.id,
                    seq,
                    payload: o.payload.clone(),
                },
            }),
        });
    }

    /// Takes one received message (replies).
    pub fn handle(&mut self, now: Time, from: NodeId, msg: Message) {
        let Message::Reply(r) = msg else {
            return;
        };
        if r.client != self.id {
            return;
        }
        match r.status {
            reply::Status::Decided(instance) => {
                if self.outstanding.remove(&r.seq).is_some() {
                    self.events.push_back(Committed {
                        seq: r.seq,
                        instance,
                    });
                }
            }
            reply::Status::NotLeader(hint) => {
                if !self.outstanding.contains_key(&r.seq) {
                    return;
                }
                let n = self.cfg.coordinators.len().max(1);
                let hinted = hint.and_then(|h| self.cfg.coordinators.iter().position(|&c| c == h));
                match hinted {
                    Some(i) if Some(from) != hint => self.target = i,
                    // No better idea: the next one, at the retry timeout,
                    // so that an election in progress is not hammered.
                    _ => {
                        if self.leader() == Some(from) {
                            self.target = (self.target + 1) % n;
                        }
                        return;
                    }
                }
                if let Some(o) = self.outstanding.get_mut(&r.seq) {
                    o.sent_at = now;
                }
                self.send(r.seq);
            }
        }
    }

    /// The next decided command.
    pub fn poll_event(&mut self) -> Option<Committed> {
        self.events.pop_front()
    }

    /// The next message to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
    }

    /// When [`Client::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.outstanding
            .values()
            .map(|o| o.sent_at + self.cfg.retry)
            .min()
    }

    /// Runs the timers due at `now`: unanswered commands go again, to the
    /// next coordinator.
    pub fn handle_timeout(&mut self, now: Time) {
        let due: Vec<u64> = self
            .outstanding
            .iter()
            .filter(|(_, o)| o.sent_at + self.cfg.retry <= now)
            .map(|(&s, _)| s)
            .collect();
        if due.is_empty() {
            return;
        }
        self.target = (self.target + 1) % self.cfg.coordinators.len().max(1);
        for seq in due {
            if let Some(o) = self.outstanding.get_mut(&seq) {
                o.sent_at = now;
            }
            self.send(seq);
        }
    }
}
