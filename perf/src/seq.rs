//! Loss, duplicate and reordering accounting by sequence number.
//!
//! A sliding bitmap remembers which of the last `window` sequence numbers
//! (counted back from the highest seen) have arrived. Memory is fixed at
//! set-up (`window / 8` bytes), whatever the run's length; a reply older than
//! the window cannot be told from a duplicate and is counted as `late`
//! instead of received.

/// What one reply turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqOutcome {
    /// First arrival of this sequence number.
    New,
    /// This sequence number had already arrived.
    Duplicate,
    /// Older than the window: cannot tell whether it is a duplicate.
    Late,
}

/// Counts of what arrived, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeqCounts {
    /// Distinct sequence numbers received.
    pub received: u64,
    /// Replies whose sequence number had already arrived.
    pub duplicates: u64,
    /// Replies that arrived after a higher sequence number (counted in
    /// `received` too).
    pub reordered: u64,
    /// Replies too old for the window (not counted in `received`).
    pub late: u64,
}

/// The sliding-window tracker.
#[derive(Debug)]
pub struct SeqTracker {
    bits: Vec<u64>,
    mask: u64,
    /// One past the highest sequence number seen.
    top: u64,
    counts: SeqCounts,
}

impl SeqTracker {
    /// A tracker that remembers the last `window` sequence numbers (rounded
    /// up to a power of two, at least 64). Allocates once, here.
    pub fn new(window: u64) -> Self {
        let window = window.max(64).next_power_of_two();
        Self {
            bits: vec![0; (window / 64) as usize],
            mask: window - 1,
            top: 0,
            counts: SeqCounts::default(),
        }
    }

    fn window(&self) -> u64 {
        self.mask + 1
    }

    #[inline]
    fn slot(&self, seq: u64) -> (usize, u64) {
        let i = seq & self.mask;
        ((i / 64) as usize, 1 << (i % 64))
    }

    /// Records the arrival of `seq`.
    #[inline]
    pub fn record(&mut self, seq: u64) -> SeqOutcome {
        let older = seq < self.top;
        if !older {
            // Advance the window, forgetting the slots that now stand for
            // sequence numbers in [top, seq]. Each slot is cleared at most
            // once per advance past it, so the cost is amortised per packet.
            if seq - self.top >= self.window() {
                self.bits.fill(0);
            } else {
                for s in self.top..=seq {
                    let (w, b) = self.slot(s);
                    self.bits[w] &= !b;
                }
            }
            self.top = seq + 1;
        } else if self.top - seq > self.window() {
            self.counts.late += 1;
            return SeqOutcome::Late;
        }
        let (w, b) = self.slot(seq);
        if self.bits[w] & b != 0 {
            self.counts.duplicates += 1;
            return SeqOutcome::Duplicate;
        }
        self.bits[w] |= b;
        self.counts.received += 1;
        if older {
            self.counts.reordered += 1;
        }
        SeqOutcome::New
    }

    /// Counts so far.
    pub fn counts(&self) -> SeqCounts {
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_arrivals_are_all_new() {
        let mut t = SeqTracker::new(64);
        for s in 0..1000 {
            assert_eq!(t.record(s), SeqOutcome::New);
        }
        assert_eq!(
            t.counts(),
            SeqCounts {
                received: 1000,
                ..SeqCounts::default()
            }
        );
    }

    #[test]
    fn duplicates_and_reordering_are_told_apart() {
        let mut t = SeqTracker::new(64);
        assert_eq!(t.record(0), SeqOutcome::New);
        assert_eq!(t.record(2), SeqOutcome::New);
        assert_eq!(t.record(1), SeqOutcome::New); // reordered
        assert_eq!(t.record(2), SeqOutcome::Duplicate); // the top again
        assert_eq!(t.record(1), SeqOutcome::Duplicate); // an older one again
        let c = t.counts();
        assert_eq!(c.received, 3);
        assert_eq!(c.duplicates, 2);
        assert_eq!(c.reordered, 1);
        assert_eq!(c.late, 0);
    }

    #[test]
    fn gaps_are_losses_and_slots_are_reused() {
        let mut t = SeqTracker::new(64);
        for s in (0..10_000).step_by(3) {
            assert_eq!(t.record(s), SeqOutcome::New);
        }
        assert_eq!(t.counts().received, 3334);
        // A slot reused by a later sequence number is not a duplicate.
        assert_eq!(t.record(10_000 + 64 * 100), SeqOutcome::New);
        assert_eq!(t.record(10_000 + 64 * 100 + 64), SeqOutcome::New);
        assert_eq!(t.counts().duplicates, 0);
    }

    #[test]
    fn too_old_is_late_not_received() {
        let mut t = SeqTracker::new(64);
        t.record(1000);
        assert_eq!(t.record(1000 - 63), SeqOutcome::New);
        // 1000 - 64 shares its slot with 1000: out of the window.
        assert_eq!(t.record(1000 - 64), SeqOutcome::Late);
        assert_eq!(t.counts().late, 1);
        assert_eq!(t.counts().received, 2);
    }
}
