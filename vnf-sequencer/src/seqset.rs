//! A set of sequence numbers that grows almost contiguously: everything up
//! to a point, and a 64-bit window after it.
//!
//! The sequencer keeps one per sender (which sender sequence numbers are
//! stamped) and a member one for itself (which of its own messages it has
//! delivered). A sender never has more than [`WINDOW`] messages beyond the
//! contiguous point, so 64 bits are always enough.

/// How far past the contiguous point the set can hold numbers.
pub const WINDOW: u64 = 64;

/// Every number up to `through`, and `through + 1 + i` for each set bit i.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeqSet {
    /// Every number up to this one is in the set (0: none, numbering starts
    /// at 1).
    pub through: u64,
    /// Bit i: `through + 1 + i` is in the set. Bit 0 is never set (it
    /// would have been folded into `through`).
    pub bits: u64,
}

impl SeqSet {
    /// Whether `q` is in the set.
    #[inline]
    pub fn contains(&self, q: u64) -> bool {
        if q <= self.through {
            return true;
        }
        let off = q - self.through - 1;
        off < WINDOW && self.bits >> off & 1 == 1
    }

    /// Whether `q` is past what the window can hold.
    #[inline]
    pub fn beyond(&self, q: u64) -> bool {
        q > self.through.saturating_add(WINDOW)
    }

    /// Adds `q`; false when it was there already or is beyond the window
    /// (which the caller must have excluded with [`SeqSet::beyond`]).
    #[inline]
    pub fn insert(&mut self, q: u64) -> bool {
        if self.contains(q) || self.beyond(q) {
            return false;
        }
        self.bits |= 1 << (q - self.through - 1);
        let run = self.bits.trailing_ones();
        self.through += u64::from(run);
        self.bits = self.bits.checked_shr(run).unwrap_or(0);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_runs_and_bounds_the_window() {
        let mut s = SeqSet::default();
        assert!(s.insert(2) && s.insert(3));
        assert_eq!((s.through, s.bits), (0, 0b110));
        assert!(s.insert(1));
        assert_eq!((s.through, s.bits), (3, 0));
        assert!(!s.insert(2), "already");
        assert!(s.beyond(68) && !s.beyond(67));
        assert!(!s.insert(68));
        assert!(s.insert(67) && s.contains(67) && !s.contains(66));
        for q in 4..67 {
            s.insert(q);
        }
        assert_eq!((s.through, s.bits), (67, 0));
    }
}
