//! `nfvinc-perf`: traffic generators, load scenarios, latency histograms and
//! reports for NFVinc's VNFs.
//!
//! * [`cli`]: the command line and its validation.
//! * [`sched`]: send pacing (as fast as possible, open loop, closed loop).
//! * [`seq`]: loss, duplicate and reordering accounting by sequence number.
//! * [`report`]: the JSON report, percentiles and the comparison table.
//! * [`plot`]: the SVG latency plot.
//! * [`clock`]: the process-wide monotonic clock for timestamps.

pub mod cli;
pub mod clock;
pub mod plot;
pub mod report;
pub mod sched;
pub mod seq;
