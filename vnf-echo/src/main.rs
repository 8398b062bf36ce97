//! `vnf-echo`: runs the echo VNF on a dataplane backend until SIGINT/SIGTERM.
//!
//! Prints `READY` on standard output once it can receive, and one JSON line of
//! counters when it stops.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::thread;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use dataplane::io::afxdp::{AfXdpConfig, AfXdpPort, BindMode};
use dataplane::io::udp::{UdpConfig, UdpIo};
use dataplane::io::{IoCounters, PacketIo};
use dataplane::runtime::{PollPolicy, Shutdown, pin_current_thread, run_to_completion};
use ebpf::FlowRoute;

/// Which dataplane backend to run on.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Backend {
    /// AF_XDP sockets fed by the XDP steering program (kernel bypass).
    Afxdp,
    /// Kernel UDP sockets with recvmmsg/sendmmsg (fallback and baseline).
    Udp,
}

/// How AF_XDP sockets bind to their queue.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Bind {
    /// Zero-copy where the driver supports it, else copy.
    Auto,
    /// Always copy mode.
    Copy,
    /// Zero-copy or fail.
    Zerocopy,
}

/// A UDP reflector VNF: sends every datagram back to its sender, rewriting
/// the frame in place.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// Dataplane backend.
    #[arg(long, value_enum, default_value = "afxdp")]
    backend: Backend,
    /// Interface to serve on (its IPv4 address is used unless --addr is given).
    #[arg(long, default_value = "eth0")]
    iface: String,
    /// IPv4 address to serve on; defaults to the interface's address.
    #[arg(long)]
    addr: Option<Ipv4Addr>,
    /// UDP port to serve on.
    #[arg(long, default_value_t = 7)]
    port: u16,
    /// Queues (one worker thread each, pinned to consecutive cores).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    queues: u32,
    /// First core to pin workers to; none: do not pin.
    #[arg(long)]
    core: Option<usize>,
    /// Polling policy: `adaptive` (spin, then wait on the socket) or `busy`.
    #[arg(long, default_value = "adaptive")]
    poll: PollPolicy,
    /// Frames per burst.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=64))]
    burst: u16,
    /// AF_XDP bind mode.
    #[arg(long, value_enum, default_value = "auto")]
    bind: Bind,
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Args::parse()) {
        eprintln!("vnf-echo: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    let stop = Shutdown::on_signals().context("installing signal handlers")?;
    let addr = match args.addr {
        Some(a) => a,
        None => dataplane::iface::ipv4(&args.iface).with_context(|| {
            format!(
                "interface {:?} has no IPv4 address (or does not exist); give --addr",
                args.iface
            )
        })?,
    };
    let listen = SocketAddrV4::new(addr, args.port);
    let burst = usize::from(args.burst);

    // Set-up happens here, in full, before READY; each worker then owns its
    // queue's backend and runs the same small loop.
    let mut ios: Vec<Box<dyn PacketIo>> = Vec::new();
    let mut _port = None;
    match args.backend {
        Backend::Afxdp => {
            let config = AfXdpConfig {
                burst,
                bind: match args.bind {
                    Bind::Auto => BindMode::Auto,
                    Bind::Copy => BindMode::Copy,
                    Bind::Zerocopy => BindMode::ZeroCopy,
                },
                ..AfXdpConfig::default()
            };
            let mut port = AfXdpPort::open(&args.iface, config)
                .with_context(|| format!("opening AF_XDP on {}", args.iface))?;
            if args.queues > port.queues() {
                bail!(
                    "{} has {} queues, {} asked for",
                    args.iface,
                    port.queues(),
                    args.queues
                );
            }
            for q in 0..args.queues {
                ios.push(Box::new(port.open_queue(0, q)?));
            }
            port.add_route(
                FlowRoute {
                    dst: addr,
                    dst_port: args.port,
                    src: None,
                },
                0,
            )?;
            _port = Some(port);
        }
        Backend::Udp => {
            for _ in 0..args.queues {
                let io = UdpIo::open(UdpConfig {
                    bind: listen,
                    burst,
                    reuse_port: args.queues > 1,
                    ..UdpConfig::default()
                })
                .with_context(|| format!("binding UDP {listen}"))?;
                ios.push(Box::new(io));
            }
        }
    }
    tracing::info!(backend = ?args.backend, %listen, queues = args.queues, "echo serving");
    println!("READY");

    let totals = thread::scope(|s| {
        let workers: Vec<_> = ios
            .into_iter()
            .enumerate()
            .map(|(i, mut io)| {
                let stop = stop.clone();
                let core = args.core.map(|c| c + i);
                s.spawn(move || {
                    if let Some(c) = core {
                        pin_current_thread(c);
                    }
                    let r = run_to_completion(
                        &mut *io,
                        &mut |_, b: &mut _| vnf_echo::reflect(b),
                        args.poll,
                        &stop,
                    );
                    if r.is_err() {
                        // One queue down takes the VNF down: better a clear
                        // exit than a silently partial service.
                        stop.trigger();
                    }
                    r
                })
            })
            .collect();
        let mut totals = IoCounters::default();
        for w in workers {
            match w.join() {
                Ok(Ok(c)) => totals.add(&c),
                Ok(Err(e)) => return Err(anyhow::Error::from(e).context("worker failed")),
                Err(_) => {
                    stop.trigger();
                    bail!("worker panicked")
                }
            }
        }
        Ok(totals)
    })?;
    println!(
        "{{\"rx_packets\":{},\"tx_packets\":{},\"rx_dropped\":{},\"tx_full\":{},\"tx_errors\":{},\"wakeups\":{}}}",
        totals.rx_packets,
        totals.tx_packets,
        totals.rx_dropped,
        totals.tx_full,
        totals.tx_errors,
        totals.wakeups
    );
    tracing::info!(?totals, "echo stopped");
    Ok(())
}
