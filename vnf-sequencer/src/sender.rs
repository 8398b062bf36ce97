//! The sending half of a member: its own messages until it has delivered
//! each of them itself, retransmitted on a timer.
//!
//! Why "delivered by itself" rather than an acknowledgement from the
//! sequencer: a stamp that no member received can be undone by an epoch
//! change (the new sequencer fills its number), and the sender is the one
//! that must then send the message again. Its own delivery is the only
//! evidence that survives every sequencer.

use std::collections::VecDeque;

use crate::Mode;
use crate::seqset::{SeqSet, WINDOW};
use crate::time::Time;

/// Why a message cannot be sent now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// 64 of this member's messages are not yet delivered back to it; try
    /// again after delivering more (back-pressure).
    #[error("the send window is full")]
    WindowFull,
    /// The payload does not fit one frame.
    #[error("payload of {len} bytes, at most {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The largest allowed.
        max: usize,
    },
}

#[derive(Debug, Default)]
pub(crate) struct Outgoing {
    /// 0: free.
    pub q: u64,
    pub mode: Option<Mode>,
    pub barrier: u64,
    pub payload: Vec<u8>,
    due: Time,
    queued: bool,
}

/// This member's messages in flight.
#[derive(Debug)]
pub(crate) struct Outbox {
    next_q: u64,
    /// Own messages delivered.
    pub stable: SeqSet,
    slots: Vec<Outgoing>,
    queue: VecDeque<u64>,
}

impl Outbox {
    pub fn new() -> Self {
        Self {
            next_q: 1,
            stable: SeqSet::default(),
            slots: (0..WINDOW).map(|_| Outgoing::default()).collect(),
            queue: VecDeque::with_capacity(WINDOW as usize),
        }
    }

    pub fn send(&mut self, mode: Mode, barrier: u64, payload: &[u8]) -> Result<u64, SendError> {
        let q = self.next_q;
        if self.stable.beyond(q) {
            return Err(SendError::WindowFull);
        }
        let o = &mut self.slots[(q % WINDOW) as usize];
        o.q = q;
        o.mode = Some(mode);
        o.barrier = barrier;
        o.payload.clear();
        o.payload.extend_from_slice(payload);
        o.queued = true;
        self.queue.push_back(q);
        self.next_q += 1;
        Ok(q)
    }

    /// Its own message `q` came back: done.
    pub fn delivered(&mut self, q: u64) {
        self.stable.insert(q);
        if let Some(o) = self
            .slots
            .get_mut((q % WINDOW) as usize)
            .filter(|o| o.q == q)
        {
            o.q = 0;
        }
    }

    /// Messages not yet delivered back.
    /// Whether [`Outbox::send`] would take a message now.
    pub fn has_room(&self) -> bool {
        !self.stable.beyond(self.next_q)
    }

    pub fn outstanding(&self) -> usize {
        self.slots.iter().filter(|o| o.q != 0).count()
    }

    /// The next message to put on the wire, if any; its timer restarts.
    pub fn next_to_send(&mut self, now: Time, rto: std::time::Duration) -> Option<&Outgoing> {
        while let Some(q) = self.queue.pop_front() {
            let i = (q % WINDOW) as usize;
            if self.slots[i].q == q {
                let o = &mut self.slots[i];
                o.queued = false;
                o.due = now + rto;
                return Some(&self.slots[i]);
            }
        }
        None
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        self.slots
            .iter()
            .filter(|o| o.q != 0 && !o.queued)
            .map(|o| o.due)
            .min()
    }

    /// Queues for retransmission what is due (or everything, after an
    /// epoch change: the new sequencer has none of it).
    pub fn handle_timeout(&mut self, now: Time, all: bool) {
        let mut due = [0u64; WINDOW as usize];
        let mut n = 0;
        for o in &mut self.slots {
            if o.q != 0 && !o.queued && (all || o.due <= now) {
                o.queued = true;
                due[n] = o.q;
                n += 1;
            }
        }
        // Oldest first: a FIFO sequencer stamps nothing of ours past a gap.
        due[..n].sort_unstable();
        self.queue.extend(&due[..n]);
    }
}
