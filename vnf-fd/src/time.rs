//! Time as the detector sees it: a number the caller hands in, shared with
//! the other cores ([`dataplane::time`]).
//!
//! A passive-liveness timestamp from a BPF map is `CLOCK_MONOTONIC`, so the
//! shell uses that clock for every input. The detector's results are
//! meaningful while times stay below 2^62 ns (146 years of uptime); beyond,
//! they are absurd but nothing panics.

pub use dataplane::time::Time;
pub(crate) use dataplane::time::duration_nanos;
