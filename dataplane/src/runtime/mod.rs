//! Pinned workers that run a VNF on a backend.
//!
//! The shape is DPDK's l2fwd: set-up happens elsewhere; the per-core loop is
//! one short function: receive a burst, let the VNF rewrite it in place,
//! transmit what it kept, and when idle apply the [`PollPolicy`].
//!
//! * [`run_to_completion`]: one thread does I/O and logic for one queue.
//! * [`run_pipeline`]: the I/O thread hands bursts to a logic thread over
//!   bounded lock-free rings and gets them back to transmit, for VNFs whose
//!   logic is heavier than the I/O.
//!
//! Both stop when their [`Shutdown`] is triggered (SIGINT or SIGTERM for
//! binaries, see [`Shutdown::on_signals`]), transmit what they still hold,
//! and return their counters.

mod pipeline;
mod shutdown;

use std::time::{Duration, Instant};

pub use pipeline::run_pipeline;
pub use shutdown::Shutdown;

use crate::io::{Batch, IoCounters, IoError, PacketIo};

/// A network function: rewrites bursts of frames in place.
pub trait Vnf: Send {
    /// Handles one received burst. Frames left in `burst` are transmitted
    /// after the call, in order; frames removed (with
    /// [`Batch::retain_mut`] or [`Batch::clear`]) are dropped.
    fn process(&mut self, now: Instant, burst: &mut Batch);
}

impl<F: FnMut(Instant, &mut Batch) + Send> Vnf for F {
    fn process(&mut self, now: Instant, burst: &mut Batch) {
        self(now, burst)
    }
}

/// What a worker does when a receive finds nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollPolicy {
    /// Poll again at once: lowest latency, one core fully used. For cores
    /// dedicated to the dataplane.
    Busy,
    /// Poll again `spins` times, then wait on the backend (the socket's
    /// readiness) for at most `wait`. The default: shared machines, tests and
    /// CI must never have a core spun for nothing.
    Adaptive {
        /// Empty polls before waiting.
        spins: u32,
        /// Longest single wait.
        wait: Duration,
    },
}

impl Default for PollPolicy {
    fn default() -> Self {
        PollPolicy::Adaptive {
            spins: 256,
            wait: Duration::from_millis(10),
        }
    }
}

impl std::str::FromStr for PollPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "busy" => Ok(PollPolicy::Busy),
            "adaptive" => Ok(PollPolicy::default()),
            other => Err(format!(
                "unknown poll policy {other:?}: expected busy or adaptive"
            )),
        }
    }
}

/// Tracks empty polls and applies the policy.
#[derive(Debug)]
struct Idle {
    policy: PollPolicy,
    empty: u32,
}

impl Idle {
    fn new(policy: PollPolicy) -> Self {
        Self { policy, empty: 0 }
    }

    fn busy(&mut self) {
        self.empty = 0;
    }

    /// Called after an empty poll; `wait` blocks for at most the given time.
    fn idle(&mut self, wait: impl FnOnce(Duration) -> Result<(), IoError>) -> Result<(), IoError> {
        match self.policy {
            PollPolicy::Busy => std::hint::spin_loop(),
            PollPolicy::Adaptive { spins, wait: max } => {
                self.empty = self.empty.saturating_add(1);
                if self.empty > spins {
                    wait(max)?;
                } else {
                    std::hint::spin_loop();
                }
            }
        }
        Ok(())
    }
}

/// Pins the calling thread to `core`; returns false (and logs) when the core
/// does not exist or pinning is refused.
pub fn pin_current_thread(core: usize) -> bool {
    let ok = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.id == core)
        .is_some_and(core_affinity::set_for_current);
    if !ok {
        tracing::warn!(core, "could not pin thread to core; running unpinned");
    }
    ok
}

/// Transmits every frame of `batch`, retrying while the TX ring is full.
/// Gives up (and releases the rest, counted by the caller) only on shutdown.
fn send_all<I: PacketIo + ?Sized>(
    io: &mut I,
    batch: &mut Batch,
    stop: &Shutdown,
) -> Result<u64, IoError> {
    let mut unsent = 0;
    while !batch.is_empty() {
        if io.send(batch)? == 0 {
            if stop.is_triggered() {
                unsent = batch.len() as u64;
                io.release(batch)?;
                break;
            }
            io.flush()?;
            std::hint::spin_loop();
        }
    }
    Ok(unsent)
}

/// Runs `vnf` on `io` in the calling thread until `stop` triggers; returns
/// the backend's counters, with frames abandoned at shutdown in `tx_errors`.
pub fn run_to_completion<I: PacketIo + ?Sized, V: Vnf + ?Sized>(
    io: &mut I,
    vnf: &mut V,
    policy: PollPolicy,
    stop: &Shutdown,
) -> Result<IoCounters, IoError> {
    let mut batch = io.new_batch();
    let mut idle = Idle::new(policy);
    let mut abandoned = 0;
    while !stop.is_triggered() {
        if io.recv(&mut batch)? == 0 {
            idle.idle(|t| io.wait(t))?;
            continue;
        }
        idle.busy();
        vnf.process(Instant::now(), &mut batch);
        abandoned += send_all(io, &mut batch, stop)?;
    }
    io.release(&mut batch)?;
    io.flush()?;
    let mut c = io.counters();
    c.tx_errors += abandoned;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::mem::{MemConfig, MemIo};

    #[test]
    fn run_to_completion_processes_everything_then_stops() {
        let mut io = MemIo::new(MemConfig::default()).unwrap();
        for i in 0..500u32 {
            io.inject(&i.to_be_bytes()).unwrap();
        }
        let stop = Shutdown::new();
        let seen = std::sync::atomic::AtomicU32::new(0);
        let mut vnf = |_: Instant, b: &mut Batch| {
            // Drop odd frames, mark even ones.
            b.retain_mut(|f| f.data()[3] % 2 == 0);
            for mut f in b.iter_mut() {
                f.data_mut()[0] = 0xff;
            }
            if seen.fetch_add(b.len() as u32, std::sync::atomic::Ordering::Relaxed) + b.len() as u32
                >= 250
            {
                stop.trigger();
            }
        };
        let c = run_to_completion(&mut io, &mut vnf, PollPolicy::default(), &stop).unwrap();
        assert_eq!(c.rx_packets, 500);
        assert_eq!(c.tx_packets, 250);
        let mut out = Vec::new();
        io.drain_sent(|f| out.push(u32::from_be_bytes(f.try_into().unwrap())));
        assert_eq!(out.len(), 250);
        assert!(out.iter().all(|v| v >> 24 == 0xff && v % 2 == 0));
        assert_eq!(
            io.free_buffers(),
            MemConfig::default().chunks as usize,
            "no buffer leaked"
        );
    }

    #[test]
    fn poll_policy_parses() {
        assert_eq!("busy".parse::<PollPolicy>().unwrap(), PollPolicy::Busy);
        assert!(matches!(
            "adaptive".parse::<PollPolicy>().unwrap(),
            PollPolicy::Adaptive { .. }
        ));
        assert!("spin".parse::<PollPolicy>().is_err());
    }

    #[test]
    fn adaptive_policy_waits_after_spinning() {
        let mut idle = Idle::new(PollPolicy::Adaptive {
            spins: 3,
            wait: Duration::from_millis(1),
        });
        let mut waits = 0;
        for _ in 0..10 {
            idle.idle(|_| {
                waits += 1;
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(waits, 7);
        idle.busy();
        idle.idle(|_| panic!("must spin first")).unwrap();
    }
}
