//! The process-wide monotonic clock that timestamps are taken from.
//!
//! Every timestamp the generator writes into a packet, and every receive time
//! it compares against, is nanoseconds since one [`Instant`] fixed the first
//! time anything asks. Both ends of a measurement run in this process, so no
//! clock synchronisation is needed.

use std::sync::OnceLock;
use std::time::Instant;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// The instant that timestamp 0 stands for.
pub fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since [`epoch`].
#[inline]
pub fn now_ns() -> u64 {
    // u64 nanoseconds last 584 years: the cast cannot truncate in practice.
    epoch().elapsed().as_nanos() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(now_ns() >= a + 2_000_000);
    }
}
