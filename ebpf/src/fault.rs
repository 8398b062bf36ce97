//! The fault-injection program (`bpf/fault.c`) and its handle.
//!
//! The kernel here has no netem, so tests that need loss get it from this
//! XDP program: it drops IPv4/UDP frames, optionally only those to one port,
//! with a given probability.
//!
//! XDP runs on receive, and an interface runs one XDP program at a time. So
//! the injector cannot share an interface with the steering program: put it
//! on the other end of the veth (it then drops what the steered side sends,
//! e.g. replies), or on another interface on the path (e.g. the receiving
//! end of a second veth pair). Attaching it where [`crate::Steering`] runs
//! fails with [`EbpfError::Busy`], and the other way round.

use std::fmt;

use aya::Pod;
use aya::maps::{Array, MapData};

use crate::attach::{AttachMode, Attached};
use crate::counters::{Counters, FaultCounters};
use crate::error::EbpfError;

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fault.o"));

const PROGRAM: &str = "fault";
const CONFIG: &str = "fault_config";
const COUNTERS: &str = "fault_counters";

// Indices into `fault_counters`, as `enum fault_counter` in fault.c.
const DROPPED: u32 = 0;
const PASSED: u32 = 1;
const IGNORED: u32 = 2;

/// `struct fault_config` in fault.c.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct FaultConfig {
    threshold: u64,
    dst_port: [u8; 2],
    pad: [u16; 3],
}

// SAFETY: repr(C), 16 bytes of integers with no padding; every bit pattern
// is valid.
unsafe impl Pod for FaultConfig {}

/// The fault injector attached to one interface. Starts out dropping
/// nothing; detaches when dropped (or when the process dies).
pub struct FaultInjector {
    config: Array<MapData, FaultConfig>,
    counters: Counters,
    attached: Attached,
}

impl fmt::Debug for FaultInjector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultInjector")
            .field("ifindex", &self.attached.ifindex())
            .field("mode", &self.attached.mode())
            .finish_non_exhaustive()
    }
}

impl FaultInjector {
    /// Loads the injector and attaches it to interface `ifindex` of the
    /// calling thread's network namespace, as [`crate::Steering::attach`]
    /// does (same clean-up of netlink-attached programs, same
    /// [`EbpfError::Busy`]).
    pub fn attach(ifindex: u32, mode: AttachMode) -> Result<FaultInjector, EbpfError> {
        let mut attached = Attached::new(PROGRAM, OBJECT, ifindex, mode)?;
        let config = Array::try_from(attached.take_map(CONFIG)?).map_err(EbpfError::map(CONFIG))?;
        let counters = Counters::new(attached.take_map(COUNTERS)?, COUNTERS)?;
        tracing::info!(ifindex, mode = ?attached.mode(), "fault injector attached");
        Ok(FaultInjector {
            config,
            counters,
            attached,
        })
    }

    /// Drops each IPv4/UDP frame with `probability` (0 drops none, 1 drops
    /// all), only frames to UDP port `port` when given. Fragments are not
    /// touched.
    pub fn set_drop(&mut self, probability: f64, port: Option<u16>) -> Result<(), EbpfError> {
        let threshold = threshold(probability)?;
        let dst_port = match port {
            Some(0) => return Err(EbpfError::BadPort),
            Some(p) => p.to_be_bytes(),
            None => [0; 2],
        };
        let config = FaultConfig {
            threshold,
            dst_port,
            pad: [0; 3],
        };
        self.config
            .set(0, config, 0)
            .map_err(EbpfError::map(CONFIG))
    }

    /// The injector's counters, summed over CPUs.
    pub fn counters(&self) -> Result<FaultCounters, EbpfError> {
        Ok(FaultCounters {
            dropped: self.counters.total(DROPPED)?,
            passed: self.counters.total(PASSED)?,
            ignored: self.counters.total(IGNORED)?,
        })
    }

    /// The interface the injector is attached to.
    pub fn ifindex(&self) -> u32 {
        self.attached.ifindex()
    }

    /// The mode the injector runs in: [`AttachMode::Driver`] or
    /// [`AttachMode::Generic`], never `Auto`.
    pub fn attach_mode(&self) -> AttachMode {
        self.attached.mode()
    }
}

/// The value a random u32 must fall below for a drop: `probability` of the
/// 2^32 possible values.
fn threshold(probability: f64) -> Result<u64, EbpfError> {
    if !(0.0..=1.0).contains(&probability) {
        return Err(EbpfError::BadProbability(probability));
    }
    // Exact at both ends: 0 drops nothing, 1 << 32 drops every frame.
    Ok((probability * (1u64 << 32) as f64).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_covers_the_range_and_refuses_the_rest() {
        assert_eq!(threshold(0.0).unwrap(), 0);
        assert_eq!(threshold(1.0).unwrap(), 1 << 32);
        assert_eq!(threshold(0.5).unwrap(), 1 << 31);
        assert_eq!(threshold(0.01).unwrap(), 42_949_673);
        for bad in [-0.1, 1.000_001, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(
                matches!(threshold(bad), Err(EbpfError::BadProbability(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn config_layout_matches_c() {
        assert_eq!(std::mem::size_of::<FaultConfig>(), 16);
    }
}
