//! Settings of the two cores, with defaults sized for one NFVI host.

use std::time::Duration;

use crate::ProcessId;

/// Settings of a [`crate::Sequencer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequencerConfig {
    /// The sequencer's own id (members answer epoch announcements to it).
    pub id: ProcessId,
    /// The group: the NFVinc session id of every frame; others are ignored.
    pub group: u64,
    /// Messages the retransmission ring keeps (rounded up to a power of
    /// two). It must be at least twice a member's delivery window for an
    /// epoch change to find the whole old tail in one place.
    pub ring: usize,
    /// Most messages packed into one group frame; 1 turns batching off.
    pub max_batch: usize,
    /// Largest frame (NFVinc message, the UDP payload) it writes; the
    /// buffer handed to `poll_transmit` must be at least this long.
    pub max_frame: usize,
    /// A heartbeat goes to the group after this long without a frame.
    pub heartbeat: Duration,
    /// How often an epoch change repeats its requests.
    pub retry: Duration,
    /// Most messages one NACK is answered with.
    pub max_repair: u32,
    /// Rounds an epoch change spends fetching messages below the most
    /// advanced member's cursor before it gives up on them (the laggards
    /// then recover from peers); reliable messages past that cursor, which
    /// their holders delivered on arrival and still hold (frozen), are
    /// fetched without limit.
    pub fetch_rounds: u32,
}

impl SequencerConfig {
    /// Defaults for `id` serving `group`.
    pub fn new(id: ProcessId, group: u64) -> Self {
        Self {
            id,
            group,
            ring: 16_384,
            max_batch: 64,
            max_frame: 1472,
            heartbeat: Duration::from_millis(5),
            retry: Duration::from_millis(5),
            max_repair: 1024,
            fetch_rounds: 50,
        }
    }
}

/// Settings of a [`crate::Member`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberConfig {
    /// The member's id: its messages carry it, its NACKs are answered to it.
    pub id: ProcessId,
    /// The group (NFVinc session id).
    pub group: u64,
    /// Delivery window: messages held ahead of the in-order point, and
    /// delivered ones kept for peers (rounded up to a power of two).
    pub window: usize,
    /// Largest frame it writes; `poll_transmit`'s buffer must be this long.
    pub max_frame: usize,
    /// A message not yet delivered back to its sender is sent again after
    /// this long.
    pub rto: Duration,
    /// A gap waits this long before it is NACKed: reordering heals itself.
    pub nack_delay: Duration,
    /// A gap still open is NACKed again after this long.
    pub nack_interval: Duration,
    /// Most messages one NACK asks for.
    pub max_nack: u32,
    /// Rounds over all peers for messages the sequencer no longer holds,
    /// before the application is told to catch up by state transfer.
    pub peer_rounds: u32,
}

impl MemberConfig {
    /// Defaults for `id` in `group`.
    pub fn new(id: ProcessId, group: u64) -> Self {
        Self {
            id,
            group,
            window: 4096,
            max_frame: 1472,
            rto: Duration::from_millis(4),
            nack_delay: Duration::from_micros(200),
            nack_interval: Duration::from_millis(2),
            max_nack: 512,
            peer_rounds: 3,
        }
    }
}
