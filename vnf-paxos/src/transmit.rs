//! What the cores hand the shell to send, and where.

use crate::NodeId;
use crate::wire::Message;

/// Where a message goes; the shell maps these to addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dest {
    /// One process.
    Node(NodeId),
    /// Every acceptor slot.
    Acceptors,
    /// Every coordinator.
    Coordinators,
    /// Every learner and every coordinator: the receivers of votes, since
    /// coordinators learn decisions too.
    Learners,
    /// Every acceptor, coordinator and learner (not clients).
    Everyone,
}

/// One message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Its destination.
    pub dest: Dest,
    /// The message; [`Message::emit`] writes it into a frame.
    pub msg: Message,
}

/// SplitMix64: the cores' only randomness (election jitter), seeded by the
/// shell so that simulations replay exactly.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`; 0 when `n` is 0.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}
