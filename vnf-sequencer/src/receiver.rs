//! The delivery engine a member embeds: holds stamped messages in a ring,
//! hands them out in global order (reliable ones at once), and finds the
//! gaps to NACK.

use std::collections::VecDeque;

use crate::ring::Ring;
use crate::wire::batch::EntryRepr;
use crate::{Mode, ProcessId};

/// A message handed to the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery<'a> {
    /// Its global sequence number.
    pub seq: u64,
    /// Who sent it.
    pub sender: ProcessId,
    /// The sender's number for it.
    pub sender_seq: u64,
    /// Its mode.
    pub mode: Mode,
    /// Its payload, borrowed from the member's ring until the next call.
    pub payload: &'a [u8],
}

/// The receiving half of a member.
#[derive(Debug)]
pub(crate) struct Receiver {
    pub ring: Ring,
    window: u64,
    /// Everything below is delivered (or skipped), in order.
    pub next: u64,
    /// First sequence number at or after `next` that is not held.
    contig: u64,
    /// One past the highest sequence number known to be stamped.
    pub known_end: u64,
    /// Reliable messages to hand out before anything else.
    early: VecDeque<u64>,
    /// Highest sequence number delivered: a causal message's barrier.
    pub max_delivered: u64,
    /// Ranges given up on, for the application to state-transfer.
    pub lost: VecDeque<(u64, u64)>,
    /// The sequencer no longer holds anything below this.
    pub too_old_below: u64,
}

impl Receiver {
    pub fn new(window: usize) -> Self {
        let ring = Ring::new(window);
        let window = ring.capacity();
        Self {
            ring,
            window,
            next: 1,
            contig: 1,
            known_end: 1,
            early: VecDeque::with_capacity(window as usize),
            max_delivered: 0,
            lost: VecDeque::new(),
            too_old_below: 0,
        }
    }

    /// Notes that everything below `end` is stamped.
    #[inline]
    pub fn note_end(&mut self, end: u64) {
        self.known_end = self.known_end.max(end);
    }

    /// Takes one stamped message; false when it was a duplicate or outside
    /// the window (it will be asked for again).
    pub fn accept(&mut self, e: &EntryRepr, payload: &[u8]) -> bool {
        let g = e.seq;
        if g < self.next || g >= self.next + self.window || self.ring.has(g) {
            return false;
        }
        let slot = self.ring.put(g, e.sender, e.sender_seq, e.mode, payload);
        if e.mode == Some(Mode::Reliable) {
            // Delivered from now on, whatever the order: the in-order
            // cursor will step over it.
            slot.delivered = true;
            self.early.push_back(g);
        }
        self.note_end(g + 1);
        if g == self.contig {
            self.advance_contig();
        }
        true
    }

    fn advance_contig(&mut self) {
        self.contig = self.contig.max(self.next);
        while self.ring.has(self.contig) {
            self.contig += 1;
        }
    }

    /// The next message to hand out, marked delivered; its slot stays
    /// valid until the next `accept`.
    pub fn next_delivery(&mut self) -> Option<u64> {
        if let Some(g) = self.early.pop_front() {
            self.max_delivered = self.max_delivered.max(g);
            return Some(g);
        }
        loop {
            let g = self.next;
            let s = self.ring.get_mut(g)?;
            self.next += 1;
            if s.delivered || s.mode.is_none() {
                s.delivered = true;
                continue;
            }
            s.delivered = true;
            self.max_delivered = self.max_delivered.max(g);
            return Some(g);
        }
    }

    /// The first missing run, `[first, end)`, at most `max` long.
    pub fn gap(&self, max: u32) -> Option<(u64, u64)> {
        let limit = self.known_end.min(self.next + self.window);
        let first = self.contig.max(self.next);
        if first >= limit {
            return None;
        }
        let cap = first.saturating_add(u64::from(max.max(1))).min(limit);
        let end = (first..cap).find(|&g| self.ring.has(g)).unwrap_or(cap);
        Some((first, end))
    }

    /// Starts a new epoch at `base`: everything held and not delivered is
    /// dropped, below the base as well as from it on. What a member held
    /// undelivered came from whatever epoch it last installed, and an
    /// epoch it never installed may since have decided those numbers
    /// afresh (fillers in place of its tentative stamps); only delivered
    /// content is known final. The new sequencer holds (and re-broadcasts)
    /// the decided content from the laggards' cursor on. Delivered entries
    /// (reliable ones delivered on arrival) are kept: the new sequencer
    /// keeps them too.
    pub fn install(&mut self, base: u64) {
        self.known_end = base.max(self.next);
        for g in self.next..self.next + self.window {
            match self.ring.get(g) {
                Some(s) if s.delivered => self.note_end(g + 1),
                Some(_) => self.ring.clear(g),
                None => {}
            }
        }
        self.contig = self.next;
        self.advance_contig();
    }

    /// Whether `g` is held with content known final: delivered (or a
    /// filler stepped over). Only these may be given to a new sequencer or
    /// to a peer while this member is between epochs.
    pub fn is_final(&self, g: u64) -> bool {
        self.ring.get(g).is_some_and(|s| s.delivered)
    }

    /// Gives up on `[first, end)`: fillers in place of what is missing,
    /// and a `Lost` event for the application.
    pub fn skip_lost(&mut self, first: u64, end: u64) {
        for g in first.max(self.next)..end.min(self.next + self.window) {
            if !self.ring.has(g) {
                self.ring.put(g, ProcessId(0), 0, None, &[]);
            }
        }
        self.lost.push_back((first, end));
        self.advance_contig();
    }

    /// Writes the bitmap of delivered messages from `next` on (reliable
    /// ones delivered on arrival; most significant bit first) into `out`;
    /// returns its length up to the last set bit. Held but undelivered
    /// messages are left out: their content may be an older epoch's
    /// tentative stamp (see [`Receiver::install`]), and the new sequencer
    /// turns every undelivered number from its base on into a filler
    /// anyway.
    pub fn write_held(&self, out: &mut [u8]) -> usize {
        out.fill(0);
        let mut len = 0;
        let span = (out.len() as u64 * 8).min(self.window);
        for i in 0..span {
            if self.is_final(self.next + i) {
                out[(i / 8) as usize] |= 0x80 >> (i % 8);
                len = (i / 8) as usize + 1;
            }
        }
        len
    }
}
