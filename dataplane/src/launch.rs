//! What every VNF binary shares: its dataplane command-line options, opening
//! the chosen backend (with the XDP steering route for its address and
//! port), logging, and the workers that run it until SIGINT or SIGTERM.
//!
//! A VNF's `main` flattens [`DataplaneArgs`] into its own clap parser, calls
//! [`Endpoint::open`], prints `READY`, and hands each queue to
//! [`run_workers`]. Keeping this in one place means `--backend`, `--poll`
//! and friends mean the same thing for every VNF.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::thread;

use clap::ValueEnum;
use ebpf::FlowRoute;

use crate::io::afxdp::{AfXdpConfig, AfXdpError, AfXdpPort, BindMode};
use crate::io::udp::{UdpConfig, UdpIo};
use crate::io::{IoCounters, IoError, PacketIo};
use crate::runtime::{
    PollPolicy, Shutdown, Vnf, pin_current_thread, run_to_completion, set_realtime,
};

/// Which dataplane backend to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// AF_XDP sockets fed by the XDP steering program (kernel bypass).
    Afxdp,
    /// Kernel UDP sockets with recvmmsg/sendmmsg (fallback and baseline).
    Udp,
    /// DPDK poll-mode drivers (builds with the `dpdk` feature only): a PCI
    /// NIC bound to vfio-pci, a `--vdev`, or a kernel interface through
    /// DPDK's `net_af_packet`.
    Dpdk,
}

/// How AF_XDP sockets bind to their queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Bind {
    /// Zero-copy where the driver supports it, else copy.
    Auto,
    /// Always copy mode.
    Copy,
    /// Zero-copy or fail.
    Zerocopy,
}

impl From<Bind> for BindMode {
    fn from(b: Bind) -> Self {
        match b {
            Bind::Auto => BindMode::Auto,
            Bind::Copy => BindMode::Copy,
            Bind::Zerocopy => BindMode::ZeroCopy,
        }
    }
}

/// The dataplane options of a VNF binary (flatten into its clap parser).
#[derive(Debug, Clone, clap::Args)]
pub struct DataplaneArgs {
    /// Dataplane backend.
    #[arg(long, value_enum, default_value = "afxdp")]
    pub backend: Backend,
    /// Interface to serve on (its IPv4 address is used unless --addr is given).
    #[arg(long, default_value = "eth0")]
    pub iface: String,
    /// IPv4 address to serve on; defaults to the interface's address.
    #[arg(long)]
    pub addr: Option<Ipv4Addr>,
    /// Queues (one worker thread each, pinned to consecutive cores).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub queues: u32,
    /// First core to pin workers to; none: do not pin.
    #[arg(long)]
    pub core: Option<usize>,
    /// Polling policy: `adaptive[:MICROSECONDS]` (spin, then wait on the
    /// socket; with a time, short pauses in the input are spun through for
    /// up to that long, see `PollPolicy::Adaptive`), `busy` (spin only: a
    /// dedicated core), or `paced[:MICROSECONDS]` (sleep that long after
    /// an empty poll, then read the backlog; default 500: for millisecond
    /// deadlines at a fraction of a core).
    #[arg(long, default_value = "adaptive")]
    pub poll: PollPolicy,
    /// Frames per burst.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub burst: u16,
    /// AF_XDP bind mode.
    #[arg(long, value_enum, default_value = "auto")]
    pub bind: Bind,
    /// AF_XDP: UMEM frames per socket (a power of two); half of them wait
    /// in the receive ring, which is how long a VNF may stall (at its
    /// packet rate) before the kernel drops what arrives. Each takes 2 KiB.
    #[arg(long, default_value_t = 4096, value_parser = parse_frames)]
    pub frames: u32,
    /// Real-time (SCHED_FIFO) priority of the worker threads, 1 to 99; 0
    /// keeps the normal scheduler. For a VNF whose lateness is an error (a
    /// failure detector) on a shared host; with `--poll adaptive` or `paced`, so that
    /// an idle worker sleeps.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..=99))]
    pub rt_priority: i32,
    /// DPDK virtual device to create (repeatable), e.g.
    /// `net_af_xdp0,iface=eth0`; `--iface` then names the one to serve on.
    /// Only with `--backend dpdk` (needs the `dpdk` feature).
    #[arg(long)]
    pub vdev: Vec<String>,
    /// Further DPDK EAL arguments, space separated (e.g. `-l 2 -m 512`).
    /// Only with `--backend dpdk` (needs the `dpdk` feature).
    #[arg(long, allow_hyphen_values = true)]
    pub dpdk_args: Option<String>,
}

/// Why a VNF's dataplane could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The interface has no IPv4 address and none was given.
    #[error("interface {0:?} has no IPv4 address (or does not exist); give --addr")]
    NoAddress(String),
    /// More queues asked for than the interface has.
    #[error("{iface} has {has} queues, {asked} asked for")]
    Queues {
        /// The interface.
        iface: String,
        /// Its queue count.
        has: u32,
        /// The `--queues` value.
        asked: u32,
    },
    /// AF_XDP could not be set up.
    #[error("AF_XDP on {iface}: {source}")]
    AfXdp {
        /// The interface.
        iface: String,
        /// What failed.
        source: AfXdpError,
    },
    /// `--backend dpdk` (or a DPDK option) in a binary built without DPDK.
    #[error(
        "--backend dpdk, --vdev and --dpdk-args: this binary was built without the dpdk feature (cargo build --features dpdk)"
    )]
    NoDpdk,
    /// DPDK could not be set up.
    #[cfg(feature = "dpdk")]
    #[error("DPDK on {device}: {source}")]
    Dpdk {
        /// The device.
        device: String,
        /// What failed.
        source: crate::io::dpdk::DpdkError,
    },
    /// The UDP socket could not be opened.
    #[error("binding UDP {addr}: {source}")]
    Udp {
        /// The address.
        addr: SocketAddrV4,
        /// What failed.
        source: crate::io::udp::UdpError,
    },
}

/// An opened dataplane: one backend per queue, and the AF_XDP port (with its
/// steering route) kept alive for as long as the VNF runs.
pub struct Endpoint {
    /// The address the VNF serves on.
    pub listen: SocketAddrV4,
    /// One backend per queue, to hand to the workers.
    pub queues: Vec<Box<dyn PacketIo>>,
    port: Option<AfXdpPort>,
    /// A kernel socket bound to the served port while DPDK reads the
    /// interface through `net_af_packet`: the kernel sees the same frames,
    /// and without a socket there it would answer each with an ICMP "port
    /// unreachable" that races our reply.
    _shadow: Option<std::net::UdpSocket>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("listen", &self.listen)
            .field("queues", &self.queues.len())
            .finish()
    }
}

impl Endpoint {
    /// Opens `args.backend` to receive UDP datagrams for `port` on the
    /// interface's (or `--addr`) address: AF_XDP sockets with a steering
    /// route for that address and port, or kernel UDP sockets bound to it.
    pub fn open(args: &DataplaneArgs, port: u16) -> Result<Self, LaunchError> {
        let addr = match args.addr {
            Some(a) => a,
            None => crate::iface::ipv4(&args.iface)
                .ok_or_else(|| LaunchError::NoAddress(args.iface.clone()))?,
        };
        let listen = SocketAddrV4::new(addr, port);
        let burst = usize::from(args.burst);
        let mut queues: Vec<Box<dyn PacketIo>> = Vec::new();
        let xdp_err = |source| LaunchError::AfXdp {
            iface: args.iface.clone(),
            source,
        };
        let mut xdp_port = None;
        #[cfg_attr(not(feature = "dpdk"), allow(unused_mut))]
        let mut shadow = None;
        if args.backend != Backend::Dpdk && (!args.vdev.is_empty() || args.dpdk_args.is_some()) {
            return Err(LaunchError::NoDpdk);
        }
        match args.backend {
            #[cfg(not(feature = "dpdk"))]
            Backend::Dpdk => return Err(LaunchError::NoDpdk),
            #[cfg(feature = "dpdk")]
            Backend::Dpdk => {
                let (ios, kernel_iface) = open_dpdk(args, burst)?;
                if kernel_iface {
                    shadow = std::net::UdpSocket::bind(listen).ok();
                }
                queues.extend(ios);
            }
            Backend::Afxdp => {
                let config = AfXdpConfig {
                    burst,
                    frames: args.frames,
                    bind: args.bind.into(),
                    ..AfXdpConfig::default()
                };
                let mut p = AfXdpPort::open(&args.iface, config).map_err(xdp_err)?;
                if args.queues > p.queues() {
                    return Err(LaunchError::Queues {
                        iface: args.iface.clone(),
                        has: p.queues(),
                        asked: args.queues,
                    });
                }
                for q in 0..args.queues {
                    queues.push(Box::new(p.open_queue(0, q).map_err(xdp_err)?));
                }
                let route = FlowRoute {
                    dst: addr,
                    dst_port: port,
                    src: None,
                };
                p.add_route(route, 0).map_err(xdp_err)?;
                xdp_port = Some(p);
            }
            Backend::Udp => {
                for _ in 0..args.queues {
                    let io = UdpIo::open(UdpConfig {
                        bind: listen,
                        burst,
                        reuse_port: args.queues > 1,
                        ..UdpConfig::default()
                    })
                    .map_err(|source| LaunchError::Udp {
                        addr: listen,
                        source,
                    })?;
                    queues.push(Box::new(io));
                }
            }
        }
        Ok(Self {
            listen,
            queues,
            port: xdp_port,
            _shadow: shadow,
        })
    }

    /// The AF_XDP port, when that is the backend (for more steering routes).
    pub fn xdp_port(&mut self) -> Option<&mut AfXdpPort> {
        self.port.as_mut()
    }
}

/// Starts EAL and the port `args.iface` names: a `--vdev` or PCI address
/// EAL knows, a kernel interface (read through `net_af_packet`, one queue
/// pair per `--queues`), or else a devargs string. Returns the queues and
/// whether the port is a kernel interface.
#[cfg(feature = "dpdk")]
fn open_dpdk(
    args: &DataplaneArgs,
    burst: usize,
) -> Result<(Vec<Box<dyn PacketIo>>, bool), LaunchError> {
    use crate::io::dpdk::{DpdkPort, EalConfig, PortConfig, eal};
    let iface = args.iface.as_str();
    let dpdk_err = |device: &str| {
        let device = device.to_string();
        move |source| LaunchError::Dpdk { device, source }
    };
    let mut config = EalConfig {
        vdevs: args.vdev.clone(),
        extra: args
            .dpdk_args
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .map(String::from)
            .collect(),
        ..EalConfig::default()
    };
    let is_pci = iface.contains(':') && iface.contains('.');
    if is_pci {
        config.pci.push(iface.to_string());
    }
    eal::init(&config).map_err(dpdk_err(iface))?;
    let named_vdev = args.vdev.iter().any(|v| v.split(',').next() == Some(iface));
    let kernel =
        !is_pci && !named_vdev && std::path::Path::new("/sys/class/net").join(iface).exists();
    let device = if kernel {
        format!("net_af_packet_{iface},iface={iface},qpairs={}", args.queues)
    } else {
        iface.to_string()
    };
    let port = DpdkPort::open(
        &device,
        PortConfig {
            queues: args.queues as u16,
            burst,
            ..PortConfig::default()
        },
    )
    .map_err(dpdk_err(&device))?;
    let ios = port
        .into_queues()
        .into_iter()
        .map(|q| Box::new(q) as Box<dyn PacketIo>)
        .collect();
    Ok((ios, kernel))
}

/// Why the workers stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A queue's backend failed.
    #[error("worker of queue {queue} failed: {source}")]
    Io {
        /// The queue.
        queue: usize,
        /// What failed.
        source: IoError,
    },
    /// A worker panicked.
    #[error("worker of queue {0} panicked")]
    Panicked(usize),
}

/// Runs one worker thread per queue, each with the VNF `make_vnf(queue)`
/// builds, pinned from `args.core` on, until `stop` triggers; returns the
/// summed counters. One worker failing stops them all: a clear exit beats a
/// silently partial service.
pub fn run_workers<V: Vnf>(
    queues: Vec<Box<dyn PacketIo>>,
    args: &DataplaneArgs,
    stop: &Shutdown,
    mut make_vnf: impl FnMut(usize) -> V,
) -> Result<IoCounters, WorkerError> {
    let vnfs: Vec<V> = (0..queues.len()).map(&mut make_vnf).collect();
    thread::scope(|s| {
        let workers: Vec<_> = queues
            .into_iter()
            .zip(vnfs)
            .enumerate()
            .map(|(i, (mut io, mut vnf))| {
                let stop = stop.clone();
                let core = args.core.map(|c| c + i);
                let poll = args.poll;
                let rt = args.rt_priority;
                s.spawn(move || {
                    if let Some(c) = core {
                        pin_current_thread(c);
                    }
                    if rt > 0 && !set_realtime(rt) {
                        tracing::warn!(priority = rt, "worker runs without real-time priority");
                    }
                    let r = run_to_completion(&mut *io, &mut vnf, poll, &stop);
                    if r.is_err() {
                        stop.trigger();
                    }
                    r
                })
            })
            .collect();
        let mut totals = IoCounters::default();
        let mut first_error = None;
        for (queue, w) in workers.into_iter().enumerate() {
            let e = match w.join() {
                Ok(Ok(c)) => {
                    totals.add(&c);
                    continue;
                }
                Ok(Err(source)) => WorkerError::Io { queue, source },
                Err(_) => {
                    stop.trigger();
                    WorkerError::Panicked(queue)
                }
            };
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(totals), Err)
    })
}

/// Logs to standard error, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// The counters as the one JSON line a VNF prints when it stops.
pub fn counters_json(c: &IoCounters) -> String {
    serde_json::json!({
        "rx_packets": c.rx_packets,
        "tx_packets": c.tx_packets,
        "rx_dropped": c.rx_dropped,
        "tx_full": c.tx_full,
        "tx_errors": c.tx_errors,
        "wakeups": c.wakeups,
    })
    .to_string()
}

/// `--frames`: a power of two from 64 to 262,144 (512 MiB of UMEM).
fn parse_frames(s: &str) -> Result<u32, String> {
    let n: u32 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of frames"))?;
    if n.is_power_of_two() && (64..=1 << 18).contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "{n} frames: must be a power of two from 64 to 262144"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_a_power_of_two_in_range() {
        assert_eq!(parse_frames("4096"), Ok(4096));
        assert_eq!(parse_frames("64"), Ok(64));
        assert_eq!(parse_frames("262144"), Ok(262_144));
        for bad in ["0", "32", "100", "524288", "-1", "many"] {
            assert!(parse_frames(bad).is_err(), "{bad}");
        }
    }
}
