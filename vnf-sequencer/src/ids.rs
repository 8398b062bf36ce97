//! Names shared by the cores: processes, modes, and where output goes.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A member of the group (or a sequencer), as the control plane names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcessId(pub u64);

/// How a message is delivered, chosen per message by its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Mode {
    /// Reliable broadcast: every member delivers it exactly once, as soon
    /// as it arrives, in no particular order.
    Reliable = 0,
    /// Atomic broadcast: delivered in global sequence order, the same at
    /// every member.
    Atomic = 1,
    /// FIFO-atomic: total order, and after every earlier message of the
    /// same sender.
    Fifo = 2,
    /// Causal-atomic: total order, after every earlier message of the same
    /// sender and every message the sender had delivered when it sent it.
    Causal = 3,
}

/// Where a frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dest {
    /// Every member of the group: one send, replicated by the network.
    Group,
    /// One process (a member, or the sequencer).
    Process(ProcessId),
}

/// A frame written by `poll_transmit` into the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Transmit {
    /// Where to send it.
    pub dest: Dest,
    /// Its length at the front of the buffer (a whole NFVinc message, the
    /// UDP payload).
    pub len: usize,
}

/// A multiplicative hash for `ProcessId`s: a per-message lookup must cost a
/// few nanoseconds, which SipHash does not. Ids come from the control
/// plane; an unknown id costs one failed lookup.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0 ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }
}

/// A map keyed by process id with [`IdHasher`].
pub(crate) type IdMap<V> = HashMap<ProcessId, V, BuildHasherDefault<IdHasher>>;
