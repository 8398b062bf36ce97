//! Seeded randomness for the deterministic simulations of the protocol
//! cores (sequencer, Paxos, failure detector), behind the `sim` feature.
//!
//! A simulation names a run by its seed, and tests keep seeds that once
//! failed; so the stream a seed gives must never change. The generator is
//! SplitMix64 (`rand_xoshiro`), seeded with the seed itself, and the ranges
//! are drawn by one multiplication (Lemire's method, without the
//! rejection step: a bias under 2^-32 for the small ranges simulations
//! use), which these streams were recorded with.

use rand_xoshiro::SplitMix64;
use rand_xoshiro::rand_core::{Rng as _, SeedableRng};

/// A simulation's source of randomness: one seed, one stream.
#[derive(Debug, Clone)]
pub struct Rng(SplitMix64);

impl Rng {
    /// The stream of `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(SplitMix64::seed_from_u64(seed))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (`n > 0`; zero gives zero).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi` (`lo <= hi`).
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `n / out_of` (`out_of > 0`).
    pub fn chance(&mut self, n: u64, out_of: u64) -> bool {
        self.below(out_of) < n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_splitmix64_reference_stream() {
        // The first outputs of Vigna's reference `splitmix64.c` from state 0.
        let mut r = Rng::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(r.next_u64(), 0x06c4_5d18_8009_454f);
    }

    #[test]
    fn ranges_stay_in_bounds() {
        let mut r = Rng::new(7);
        for _ in 0..10_000 {
            assert!(r.below(10) < 10);
            let x = r.between(5, 9);
            assert!((5..=9).contains(&x));
        }
        assert!(!(0..1000).any(|_| r.chance(0, 1000)));
        assert!((0..1000).all(|_| r.chance(1000, 1000)));
    }
}
