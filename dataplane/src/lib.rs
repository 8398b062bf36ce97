//! The NFVinc dataplane.
//!
//! * [`wire`]: zero-copy typed views over Ethernet II, IPv4, UDP and the common
//!   NFVinc header, with checksums (full and incremental, RFC 1624).
//! * [`io`]: the batched [`io::PacketIo`] trait and its backends: AF_XDP
//!   ([`io::afxdp`]), kernel UDP ([`io::udp`]), in-memory ([`io::mem`]) and,
//!   with the cargo feature `dpdk` (off by default), DPDK's poll-mode
//!   drivers (`io::dpdk`).
//! * [`runtime`]: pinned run-to-completion workers, the optional pipeline mode
//!   and the polling policies.
//! * [`control`]: the local control socket (JSON lines over a Unix socket)
//!   every VNF binary offers to the control plane.
//! * [`launch`]: what every VNF binary shares: dataplane options, opening
//!   the backend, workers, logging.
//! * [`neigh`]: our MAC and the next hop's, from the kernel's tables, for
//!   VNFs that originate frames on a raw-frame backend.
//! * [`netns`]: network namespaces joined by veth pairs, for tests and
//!   benchmarks that need real packets through real kernels.
//!
//! Every backend hands the VNF complete Ethernet frames, so a VNF is written
//! once, rewrites frames in place and sends them back without copying, and
//! runs unchanged on each backend.

pub mod auth;
pub mod control;
pub mod iface;
pub mod io;
pub mod launch;
pub mod neigh;
pub mod netns;
pub mod runtime;
#[cfg(feature = "sim")]
pub mod sim;
pub mod time;
pub mod wire;
