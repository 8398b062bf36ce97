//! A ring of stamped messages indexed by global sequence number.
//!
//! The sequencer's retransmission buffer and a member's reorder buffer are
//! both this: slot `seq % capacity`, each slot owning a payload buffer that
//! is reused, so that once every slot has seen a payload of the largest
//! size nothing on the message path allocates. A member's ring also keeps
//! delivered messages until their slot is reused, which is what lets peers
//! repair each other without any extra copy.
//!
//! A slot is two cache lines, aligned, with room for a payload of up to
//! [`INLINE`] bytes in the slot itself; larger payloads go to the slot's
//! own heap buffer (kept for reuse). The ring is written once per message
//! at line rate and is larger than the core's caches, so a small message
//! then costs two line fills instead of the three or four of a slot and a
//! separately allocated payload.

use crate::{Mode, ProcessId};

/// Sequence numbers start at 1; 0 marks an empty slot.
const EMPTY: u64 = 0;

/// Payload bytes a slot holds without its heap buffer.
pub(crate) const INLINE: usize = 72;

/// One stamped message.
#[derive(Debug, Clone)]
#[repr(C, align(64))]
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
    /// Payload length; the bytes are in `inline` up to [`INLINE`], in
    /// `heap` beyond.
    len: u16,
    inline: [u8; INLINE],
    heap: Vec<u8>,
}

impl Slot {
    /// The payload.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let n = usize::from(self.len);
        if n <= INLINE {
            &self.inline[..n]
        } else {
            &self.heap[..]
        }
    }

    /// Replaces the payload (at most `u16::MAX` bytes: a datagram's).
    #[inline]
    fn set_payload(&mut self, payload: &[u8]) {
        let n = payload.len().min(usize::from(u16::MAX));
        if n <= INLINE {
            self.inline[..n].copy_from_slice(&payload[..n]);
        } else {
            self.heap.clear();
            self.heap.extend_from_slice(&payload[..n]);
        }
        self.len = n as u16;
    }
}

// Two cache lines: see the module docs.
const _: () = assert!(std::mem::size_of::<Slot>() == 128);

/// The ring.
#[derive(Debug)]
pub(crate) struct Ring {
    slots: Vec<Slot>,
    mask: u64,
}

impl Ring {
    /// A ring of `capacity` slots (rounded up to a power of two). Payloads
    /// up to [`INLINE`] bytes live in the slots; a slot's heap buffer is
    /// allocated by its first larger payload and kept.
    pub fn new(capacity: usize) -> Self {
        let n = capacity.max(2).next_power_of_two();
        let slots = (0..n)
            .map(|_| Slot {
                seq: EMPTY,
                sender: ProcessId(0),
                sender_seq: 0,
                mode: None,
                delivered: false,
                len: 0,
                inline: [0; INLINE],
                heap: Vec::new(),
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
        s.set_payload(payload);
        s
    }

    /// Empties the slot of `seq`, if it holds it.
    pub fn clear(&mut self, seq: u64) {
        if let Some(s) = self.get_mut(seq) {
            s.seq = EMPTY;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_of_every_size_come_back_whole() {
        let mut r = Ring::new(4);
        // Inline, on the heap, inline again in the same slot, empty.
        for (seq, len) in [
            (1u64, 3usize),
            (5, 1000),
            (9, INLINE),
            (13, INLINE + 1),
            (17, 0),
        ] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            r.put(seq, ProcessId(2), seq * 10, Some(Mode::Atomic), &payload);
            let s = r.get(seq).unwrap();
            assert_eq!(s.payload(), &payload[..], "{len} bytes");
            assert_eq!(s.sender_seq, seq * 10);
            assert!(
                seq < 5 || !r.has(seq - 4),
                "the slot's previous message is gone"
            );
        }
    }
}
