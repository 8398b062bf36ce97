//! The programs' per-CPU counters, summed over CPUs.

use aya::maps::{MapData, PerCpuArray};

use crate::error::EbpfError;

/// What the steering program did with the frames it saw, since it was
/// attached.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SteerCounters {
    /// Frames of a routed flow handed to an AF_XDP socket.
    pub redirected: u64,
    /// Frames handed on to the kernel: not IPv4/UDP, or no route.
    pub passed: u64,
    /// Frames of a routed flow with no socket registered for their queue.
    pub dropped: u64,
}

/// What the fault injector did with the frames it saw, since it was
/// attached.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FaultCounters {
    /// Eligible frames dropped.
    pub dropped: u64,
    /// Eligible frames let through.
    pub passed: u64,
    /// Frames the injector does not target (not IPv4/UDP, another port),
    /// all let through.
    pub ignored: u64,
}

/// Per-CPU `u64` counters, read as totals.
pub(crate) struct Counters {
    map: PerCpuArray<MapData, u64>,
    name: &'static str,
}

impl Counters {
    pub(crate) fn new(map: aya::maps::Map, name: &'static str) -> Result<Self, EbpfError> {
        let map = PerCpuArray::try_from(map).map_err(EbpfError::map(name))?;
        Ok(Self { map, name })
    }

    /// The total of counter `index` over all CPUs.
    pub(crate) fn total(&self, index: u32) -> Result<u64, EbpfError> {
        let values = self.map.get(&index, 0).map_err(EbpfError::map(self.name))?;
        Ok(values.iter().fold(0u64, |sum, v| sum.wrapping_add(*v)))
    }
}
