//! The generator's own AF_XDP port, in the generator's namespace.
//!
//! The generator sends and receives on AF_XDP sockets of its own (one per
//! queue) so that it is cheaper per packet than the VNF it loads. The
//! steering program on its interface routes the replies, UDP to the
//! generator's address and port, to those sockets; everything else goes to
//! the kernel as usual.

use std::net::Ipv4Addr;

use anyhow::Context;
use dataplane::io::afxdp::{AfXdpConfig, AfXdpIo, AfXdpPort};
use ebpf::FlowRoute;

/// UMEM chunks per generator socket: half prime the fill ring, the other
/// half are for frames in flight on transmit.
pub const GEN_FRAMES: u32 = 4096;

/// The generator's sockets and the steering that routes replies to them.
pub struct GenPort {
    /// One socket per queue.
    pub ios: Vec<AfXdpIo>,
    /// Bound in zero-copy mode.
    pub zero_copy: bool,
    // Dropped after the sockets (field order), which detaches the program.
    port: AfXdpPort,
}

impl GenPort {
    /// Attaches the steering program to `ifname`, opens a socket on each of
    /// `queues` queues, and routes UDP to `dst:dst_port` to them.
    pub fn open(
        ifname: &str,
        queues: u32,
        burst: usize,
        dst: Ipv4Addr,
        dst_port: u16,
    ) -> anyhow::Result<Self> {
        let mut port = AfXdpPort::open(
            ifname,
            AfXdpConfig {
                burst,
                frames: GEN_FRAMES,
                ..AfXdpConfig::default()
            },
        )
        .with_context(|| format!("attaching the steering program to {ifname}"))?;
        let ios = (0..queues)
            .map(|q| {
                port.open_queue(0, q)
                    .with_context(|| format!("opening an XDP socket on {ifname} queue {q}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        port.add_route(
            FlowRoute {
                dst,
                dst_port,
                src: None,
            },
            0,
        )
        .context("routing replies to the generator")?;
        let zero_copy = ios.iter().all(AfXdpIo::is_zero_copy);
        Ok(Self {
            ios,
            zero_copy,
            port,
        })
    }

    /// The steering program's counters, for the report.
    pub fn steer_counters(&self) -> Option<String> {
        self.port.steer_counters().ok().map(|c| format!("{c:?}"))
    }
}
