//! Chen's arrival-time estimator over a sliding window, in integers.
//!
//! Chen, Toueg and Aguilera (2002) estimate the arrival of heartbeat `l+1`
//! as `EA(l+1) = (1/n) Σ (A(i) − i·Δ) + (l+1)·Δ` over the last `n` arrivals:
//! each arrival, shifted back by its own index times the period, is a sample
//! of the sender's phase plus its delay; their mean plus the next index
//! times the period is where the next one should land.
//!
//! Samples are kept relative to `nominal`, the phase-less time of the
//! latest index, so they stay small (a delay, not an absolute time), and
//! their sum is maintained incrementally: one add and one subtract per
//! arrival, whatever the window. The ring of samples lives outside this
//! struct (in the detector's arena) so that what a heartbeat touches of a
//! process fits one cache line.
//!
//! Heartbeats are not numbered here: the sender's sequence numbers cannot
//! be trusted across its restarts, and passive evidence has none. The index
//! of an arrival is inferred instead: the one whose expected time it is
//! nearest. An arrival more than half a period before the expected time is
//! an extra (a duplicate, a burst) and not a sample; one that comes later
//! than `k − ½` periods after it stands for the `k`th heartbeat, the
//! missing ones lost. An arrival after the freshness point (expected time
//! plus margin) starts the history afresh: the sender was silent long
//! enough to be suspected, and whatever phase it had before says nothing
//! about the one it has now (a restart picks a new one). Until a second
//! sample confirms it, that phase rests on one arrival, which may have
//! waited in a stalled queue: an arrival more than half a period early
//! then anchors it instead.

/// The arrival history of one process, less its ring of samples.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Chen {
    /// Nominal arrival time of the latest sample's index.
    nominal: u64,
    /// Expected arrival of the next heartbeat; meaningful when `len > 0`.
    expected: u64,
    /// Sum of the samples, kept exact by wrapping arithmetic: only absurd
    /// inputs (times centuries apart) could make the true sum overflow.
    sum: i64,
    /// Where the next sample goes in the ring.
    head: u16,
    /// How many samples the ring holds.
    len: u16,
}

impl Chen {
    /// No history.
    pub(crate) const EMPTY: Chen = Chen {
        nominal: 0,
        expected: 0,
        sum: 0,
        head: 0,
        len: 0,
    };

    /// Forgets every arrival.
    #[inline]
    pub(crate) fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
        self.sum = 0;
    }

    /// Expected arrival of the next heartbeat, when there is a history.
    #[inline]
    pub(crate) fn expected(&self) -> Option<u64> {
        (self.len > 0).then_some(self.expected)
    }

    /// Arrival of the latest sample, when there is a history.
    pub(crate) fn last_arrival(&self, ring: &[i64]) -> Option<u64> {
        if self.len == 0 || ring.is_empty() {
            return None;
        }
        let last = (usize::from(self.head) + ring.len() - 1) % ring.len();
        Some(self.nominal.wrapping_add_signed(ring[last]))
    }

    /// Records a heartbeat that arrived at `t` and returns the expected
    /// arrival of the next one. `ring` holds the window's samples; its
    /// length is the window (at most `u16::MAX`).
    ///
    /// Differences of times are taken with wrapping arithmetic, exact while
    /// the times are less than 2^63 ns apart; beyond that (no clock gets
    /// there) the estimate is meaningless but nothing panics.
    #[inline]
    pub(crate) fn observe(&mut self, ring: &mut [i64], t: u64, interval: u64, margin: u64) -> u64 {
        // How late this arrival is; negative when early.
        let late = t.wrapping_sub(self.expected) as i64;
        let half = (interval / 2) as i64;
        // Right after a restart the phase rests on one arrival, which may
        // have been a late one flushed out of a stalled queue together
        // with others: an arrival more than half a period before the
        // expected one is the sender's schedule showing through, and the
        // better anchor (delays only ever make arrivals later).
        if self.len == 0 || late >= margin as i64 || (self.len == 1 && late < -half) {
            return self.restart(ring, t, interval);
        }
        // The common case first: within half a period of the expected time,
        // this is the next heartbeat, and no division is needed.
        if late >= half {
            let k = 1 + (late as u64 + half as u64) / interval.max(1);
            self.nominal = self
                .nominal
                .wrapping_add(k.wrapping_sub(1).wrapping_mul(interval));
        } else if late < -half {
            return self.expected;
        }
        self.nominal = self.nominal.wrapping_add(interval);
        self.push(ring, t.wrapping_sub(self.nominal) as i64);
        self.expected = self
            .nominal
            .wrapping_add(interval)
            .wrapping_add_signed(self.sum / i64::from(self.len.max(1)));
        self.expected
    }

    fn restart(&mut self, ring: &mut [i64], t: u64, interval: u64) -> u64 {
        self.clear();
        self.nominal = t;
        self.push(ring, 0);
        self.expected = t.wrapping_add(interval);
        self.expected
    }

    #[inline]
    fn push(&mut self, ring: &mut [i64], sample: i64) {
        // `head < ring.len()` always holds, so the `get_mut` cannot miss;
        // using it rather than indexing keeps a panic path out of the hot
        // loop. An empty ring records nothing and the estimate degrades to
        // "latest arrival plus one period".
        let cap = ring.len();
        let Some(slot) = ring.get_mut(usize::from(self.head)) else {
            self.head = 0;
            self.len = 0;
            self.sum = 0;
            return;
        };
        if usize::from(self.len) == cap {
            self.sum = self.sum.wrapping_sub(*slot);
        } else {
            self.len += 1;
        }
        *slot = sample;
        self.sum = self.sum.wrapping_add(sample);
        self.head += 1;
        if usize::from(self.head) == cap {
            self.head = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const IV: u64 = 10 * MS;

    #[test]
    fn periodic_arrivals_predict_the_next() {
        let mut ring = [0; 4];
        let mut c = Chen::default();
        assert_eq!(c.expected(), None);
        assert_eq!(c.observe(&mut ring, 3 * MS, IV, 5 * MS), 13 * MS);
        for i in 1..20 {
            assert_eq!(
                c.observe(&mut ring, 3 * MS + i * IV, IV, 5 * MS),
                3 * MS + (i + 1) * IV
            );
        }
        assert_eq!(c.last_arrival(&ring), Some(3 * MS + 19 * IV));
    }

    #[test]
    fn mean_smooths_jitter() {
        let mut ring = [0; 4];
        let mut c = Chen::default();
        let mut at = |t| c.observe(&mut ring, t, IV, 5 * MS);
        at(0);
        assert_eq!(at(10 * MS + 2 * MS), 21 * MS); // samples 0, +2
        assert_eq!(at(20 * MS - 2 * MS), 30 * MS); // 0, +2, −2
        assert_eq!(at(30 * MS + 4 * MS), 41 * MS); // 0, 2, −2, 4
        // The window is full: the next sample evicts the first (0).
        assert_eq!(at(40 * MS + 4 * MS), 52 * MS); // 2, −2, 4, 4
    }

    #[test]
    fn extras_are_not_samples_and_losses_keep_the_phase() {
        let mut ring = [0; 8];
        let mut c = Chen::default();
        let mut at = |t| c.observe(&mut ring, t, IV, 35 * MS);
        at(0);
        at(10 * MS);
        // A duplicate right after: ignored.
        assert_eq!(at(11 * MS), 20 * MS);
        // Two heartbeats lost: the one at 41 is the third after 10.
        assert_eq!(at(41 * MS), 50 * MS + MS / 3);
    }

    #[test]
    fn silence_past_the_margin_restarts() {
        let mut ring = [0; 8];
        let mut c = Chen::default();
        c.observe(&mut ring, 0, IV, 5 * MS);
        c.observe(&mut ring, 10 * MS, IV, 5 * MS);
        // Expected at 20, freshness point 25: at 27 the phase is new.
        assert_eq!(c.observe(&mut ring, 27 * MS, IV, 5 * MS), 37 * MS);
        assert_eq!(c.len, 1);
    }

    #[test]
    fn a_restart_on_a_flushed_arrival_takes_the_next_on_schedule() {
        let mut ring = [0; 8];
        let mut c = Chen::default();
        c.observe(&mut ring, 4 * MS, IV, 5 * MS);
        // A stalled queue lets three heartbeats out at 60: one restart.
        for _ in 0..3 {
            assert_eq!(c.observe(&mut ring, 60 * MS, IV, 5 * MS), 70 * MS);
        }
        // The sender's schedule (…4) shows through at 64.
        assert_eq!(c.observe(&mut ring, 64 * MS, IV, 5 * MS), 74 * MS);
        assert_eq!(c.observe(&mut ring, 74 * MS, IV, 5 * MS), 84 * MS);
        assert_eq!(c.len, 2);
        // With two samples, an early one is a duplicate again.
        assert_eq!(c.observe(&mut ring, 76 * MS, IV, 5 * MS), 84 * MS);
    }

    #[test]
    fn absurd_inputs_do_not_panic() {
        let mut ring = [0; 3];
        let mut c = Chen::default();
        for t in [u64::MAX, 0, u64::MAX - 1, 1 << 63, u64::MAX, 5] {
            c.observe(&mut ring, t, IV, 5 * MS);
            c.observe(&mut ring, t, 1, u64::MAX);
        }
        let mut empty: [i64; 0] = [];
        c.observe(&mut empty, 7, IV, 0);
        c.observe(&mut empty, 8, IV, 0);
        assert_eq!(c.last_arrival(&empty), None);
    }
}
