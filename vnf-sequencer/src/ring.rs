//! A ring of stamped messages indexed by global sequence number.
//!
//! The sequencer's retransmission buffer and a member's reorder buffer are
//! both this: slot `seq % capacity`, each slot owning a payload buffer that
//! is reused, so that once every slot has seen a payload of the largest
//! size nothing on the message path allocates. A member's ring also keeps
//! delivered messages until their slot is reused, which is what lets peers
//! repair each other without any extra copy.

use crate::{Mode, ProcessId};

/// Sequence numbers start at 1; 0 marks an empty slot.
const EMPTY: u64 = 0;

/// One stamped message.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    /// Its global sequence number; `EMPTY` for none.
    pub seq: u64,
    pub sender: ProcessId,
    pub sender_seq: u64,
    /// `None`: a filler.
    pub mode: Option<Mode>,
    /// A member has handed it to the application (or it is a filler
    /// skipped).
    pub delivered: bool,
    pub payload: Vec<u8>,
}

/// The ring.
#[derive(Debug)]
pub(crate) struct Ring {
    slots: Vec<Slot>,
    mask: u64,
}

impl Ring {
    /// A ring of `capacity` slots (rounded up to a power of two), each
    /// with room for `payload` bytes reserved up front.
    pub fn new(capacity: usize, payload: usize) -> Self {
        let n = capacity.max(2).next_power_of_two();
        let slots = (0..n)
            .map(|_| Slot {
                seq: EMPTY,
                sender: ProcessId(0),
                sender_seq: 0,
                mode: None,
                delivered: false,
                payload: Vec::with_capacity(payload),
            })
            .collect();
        Self {
            slots,
            mask: n as u64 - 1,
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> u64 {
        self.mask + 1
    }

    #[inline]
    fn index(&self, seq: u64) -> usize {
        (seq & self.mask) as usize
    }

    /// The message `seq`, if its slot holds it.
    #[inline]
    pub fn get(&self, seq: u64) -> Option<&Slot> {
        self.slots
            .get(self.index(seq))
            .filter(|s| s.seq == seq && seq != EMPTY)
    }

    /// The same, writable.
    #[inline]
    pub fn get_mut(&mut self, seq: u64) -> Option<&mut Slot> {
        let i = self.index(seq);
        self.slots
            .get_mut(i)
            .filter(|s| s.seq == seq && seq != EMPTY)
    }

    /// Whether `seq` is held.
    #[inline]
    pub fn has(&self, seq: u64) -> bool {
        self.get(seq).is_some()
    }

    /// Stores a message at `seq`, replacing whatever its slot held.
    #[inline]
    pub fn put(
        &mut self,
        seq: u64,
        sender: ProcessId,
        sender_seq: u64,
        mode: Option<Mode>,
        payload: &[u8],
    ) -> &mut Slot {
        let i = self.index(seq);
        let s = &mut self.slots[i];
        s.seq = seq;
        s.sender = sender;
        s.sender_seq = sender_seq;
        s.mode = mode;
        s.delivered = false;
        s.payload.clear();
        s.payload.extend_from_slice(payload);
        s
    }

    /// Empties the slot of `seq`, if it holds it.
    pub fn clear(&mut self, seq: u64) {
        if let Some(s) = self.get_mut(seq) {
            s.seq = EMPTY;
        }
    }
}
