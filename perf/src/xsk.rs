//! The generator's own AF_XDP port, in the generator's namespace.
//!
//! TEMPORARY stub until `dataplane::io::afxdp` and the `ebpf` crate land.

use std::net::Ipv4Addr;

use anyhow::bail;

/// The generator's sockets and the steering that routes replies to them.
pub struct GenPort {
    /// One socket per queue.
    pub ios: Vec<dataplane::io::mem::MemIo>,
    /// Bound in zero-copy mode.
    pub zero_copy: bool,
}

impl GenPort {
    /// Attaches the steering program to `ifname`, opens a socket on each of
    /// `queues` queues, and routes UDP to `dst:dst_port` to them.
    pub fn open(
        _ifname: &str,
        _queues: u32,
        _burst: usize,
        _dst: Ipv4Addr,
        _dst_port: u16,
    ) -> anyhow::Result<Self> {
        bail!("the AF_XDP backend is not built into this dataplane yet")
    }

    /// The steering program's counters, for the report.
    pub fn steer_counters(&self) -> Option<String> {
        None
    }
}
