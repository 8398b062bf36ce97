//! Configuration of each role, with defaults for a one-hop network.

use std::time::Duration;

use crate::NodeId;

/// The most bytes of commands one instance's value holds by default, so
/// that every message carrying it, alone, fits a 1,500-byte MTU: the
/// largest is a promise (IPv4 and UDP 28, NFVinc header with its tag 32,
/// promise header 48, instance and ballot 16, value header 4: 1,468 bytes
/// with 1,340 of commands). Accepts and votes pack instances up to it.
pub const MAX_VALUE_BYTES: usize = 1340;

/// Configuration of a coordinator (proposer and leader candidate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorConfig {
    /// This coordinator.
    pub node: NodeId,
    /// Its incarnation: must differ from every earlier run's (a boot
    /// counter or a random number), since it forgets its ballots.
    pub incarnation: u16,
    /// Every coordinator, in rank order: a lower rank stands for election
    /// sooner, so the first live one usually wins without a duel.
    pub coordinators: Vec<NodeId>,
    /// Acceptor slots, 2f + 1 (at most 64).
    pub acceptors: u16,
    /// Most instances in flight (proposed, not known decided).
    pub window: usize,
    /// Most commands one instance decides (1: no batching of commands).
    pub max_batch_commands: usize,
    /// Most bytes of values one packet carries (instances per packet are
    /// packed up to this; 0: one instance per packet).
    pub max_packet_bytes: usize,
    /// Leader heartbeat interval.
    pub heartbeat: Duration,
    /// Silence from the leader after which the first-ranked coordinator
    /// stands; rank *k* waits *k* + 1 times this, plus jitter.
    pub election_timeout: Duration,
    /// Unanswered prepares and accepts are sent again after this.
    pub retransmit: Duration,
    /// Decided instances kept below the commit point, for learners that
    /// fetch them.
    pub retain: u64,
    /// Seed of the election jitter.
    pub seed: u64,
}

impl CoordinatorConfig {
    /// Defaults for coordinator `node` among `coordinators` with three
    /// acceptors.
    pub fn new(node: NodeId, incarnation: u16, coordinators: Vec<NodeId>) -> Self {
        CoordinatorConfig {
            node,
            incarnation,
            coordinators,
            acceptors: 3,
            window: 256,
            max_batch_commands: 256,
            max_packet_bytes: MAX_VALUE_BYTES,
            heartbeat: Duration::from_millis(5),
            election_timeout: Duration::from_millis(50),
            retransmit: Duration::from_millis(20),
            retain: 1 << 16,
            seed: u64::from(node.0) << 16 | u64::from(incarnation),
        }
    }

    /// No batching: one command per instance, one instance per packet.
    pub fn unbatched(mut self) -> Self {
        self.max_batch_commands = 1;
        self.max_packet_bytes = 0;
        self
    }
}

/// How an acceptor keeps its promises and votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Durability {
    /// In memory only: a restart loses everything, so the acceptor comes
    /// back under a new identity and must be admitted again.
    Memory,
    /// Records are handed out by [`crate::Acceptor::poll_persist`] and the
    /// replies that depend on them are held until
    /// [`crate::Acceptor::persisted`]: the shell writes them to a
    /// write-ahead log ([`crate::wal`]) and syncs it. The default.
    #[default]
    Wal,
}

/// Configuration of an acceptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptorConfig {
    /// Where its state lives.
    pub durability: Durability,
    /// Accepted values kept below the leader's commit point.
    pub retain: u64,
    /// Most bytes of values in one promise page or re-sent vote.
    pub max_packet_bytes: usize,
    /// How often a joining acceptor asks to be admitted.
    pub join_interval: Duration,
}

impl Default for AcceptorConfig {
    fn default() -> Self {
        AcceptorConfig {
            durability: Durability::default(),
            retain: 1 << 16,
            max_packet_bytes: 1200,
            join_interval: Duration::from_millis(20),
        }
    }
}

/// Configuration of a learner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnerConfig {
    /// Acceptor slots.
    pub acceptors: u16,
    /// A gap in the log unfilled for this long is fetched.
    pub fetch_timeout: Duration,
    /// Most instances one fetch asks for.
    pub max_fetch: u64,
    /// Delivered values kept to answer other learners' fetches (0: none).
    pub retain: u64,
    /// Most bytes of values in one answer to a fetch.
    pub max_packet_bytes: usize,
}

impl Default for LearnerConfig {
    fn default() -> Self {
        LearnerConfig {
            acceptors: 3,
            fetch_timeout: Duration::from_millis(10),
            max_fetch: 256,
            retain: 1 << 16,
            max_packet_bytes: 1200,
        }
    }
}

/// Configuration of a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The coordinators, tried in this order when the leader is unknown.
    pub coordinators: Vec<NodeId>,
    /// A request unanswered for this long is sent again, to the next
    /// coordinator.
    pub retry: Duration,
    /// Coalesce submissions: commands go out many to a `Submit` datagram
    /// and come back answered many to a `Replies` message. A command
    /// submitted while none of the client's sent commands awaits an
    /// answer leaves at once; commands submitted while some do wait for
    /// the next answer (or [`crate::Client::flush`]) and then leave
    /// together. False: one `Request` per command, sent at once, answered
    /// by one `Reply` each (the single-value messages).
    pub coalesce: bool,
    /// Most bytes of commands (headers and payloads) in one `Submit`
    /// datagram; a single command always goes, however large.
    pub max_request_bytes: usize,
}

impl ClientConfig {
    /// Defaults for these coordinators.
    pub fn new(coordinators: Vec<NodeId>) -> Self {
        ClientConfig {
            coordinators,
            retry: Duration::from_millis(30),
            coalesce: true,
            max_request_bytes: 1400,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::value::Entry;
    use crate::wire::{Message, accept, promise};
    use crate::{AcceptorId, Ballot, ClientId, Command, Value};

    #[test]
    fn the_largest_default_value_fits_an_mtu_in_every_message() {
        // One run of one client: 18 bytes of header, then 2 + payload each;
        // one command sized to fill the budget exactly.
        let payload = MAX_VALUE_BYTES - 18 - 2;
        let value = Value::batch(vec![Command {
            client: ClientId(1),
            seq: 1,
            payload: vec![7u8; payload].into(),
        }]);
        assert_eq!(value.wire_len(), 4 + MAX_VALUE_BYTES);
        let entry = Entry {
            instance: 9,
            ballot: Ballot::ZERO,
            value,
        };
        let b = Ballot::from_u64(1 << 32);
        let msgs = [
            Message::Accept(accept::Repr {
                ballot: b,
                committed: 0,
                entries: vec![entry.clone()],
            }),
            Message::Promise(promise::Repr {
                ballot: b,
                acceptor: AcceptorId::default(),
                trim: 0,
                lo: 0,
                hi: u64::MAX,
                entries: vec![entry],
            }),
        ];
        for m in msgs {
            let mut buf = vec![0u8; 2048];
            let n = m.emit(1, &mut buf).unwrap();
            // IPv4 (20) and UDP (8) headers around the NFVinc message.
            assert!(28 + n <= 1500, "{:?}: {} bytes", m.msg_type(), 28 + n);
        }
    }
}
