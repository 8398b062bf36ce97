//! `nfvinc-perf`: traffic generators, load scenarios, latency histograms and
//! reports for NFVinc's VNFs.
//!
//! * [`cli`]: the command line and its validation.
//! * [`echo`]: the echo scenario, run per backend in its own topology.
//! * [`generator`]: the load generator's loop over any packet backend.
//! * [`frame`]: the generator's stamped frames.
//! * [`sched`]: send pacing (as fast as possible, open loop, closed loop).
//! * [`seq`]: loss, duplicate and reordering accounting by sequence number.
//! * [`mem_bench`]: the in-memory scenario (the VNF's logic alone).
//! * [`paxos`]: the consensus scenario.
//! * [`fd`]: the failure-detector scenario.
//! * [`sequencer`]: the broadcast scenario.
//! * [`control`]: the control-plane scenario (`nfvinc serve` under load).
//! * [`vnf`]: the VNF under test as a child process.
//! * [`run_dir`]: a run's directory of logs and state, removed after a run
//!   that went well.
//! * [`report`]: the JSON report, percentiles and the comparison table.
//! * [`plot`]: the SVG latency plot.
//! * [`clock`]: the process-wide monotonic clock for timestamps.
//! * [`progress`]: the progress bar and a log writer that respects it.

pub mod cli;
pub mod clock;
pub mod control;
#[cfg(feature = "dpdk")]
pub mod dpdk_null;
pub mod echo;
pub mod fd;
pub mod frame;
pub mod generator;
pub mod mem_bench;
pub mod paxos;
pub mod plot;
pub mod progress;
pub mod report;
pub mod run_dir;
pub mod sched;
pub mod seq;
pub mod sequencer;
pub mod vnf;
pub mod xsk;
