//! `vnf-sequencer`: the broadcast service's sequencer on a dataplane
//! backend, until SIGINT or SIGTERM.
//!
//! Prints `READY` once serving, and one JSON line of counters when it stops.

use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use clap::Parser;
use dataplane::auth::AuthArgs;
use dataplane::control::ControlSocket;
use dataplane::launch::{self, Backend, DataplaneArgs, Endpoint};
use dataplane::runtime::{PollPolicy, Shutdown};
use vnf_sequencer::service::{
    Book, DEFAULT_PORT, MemberAddr, SeqService, iface_mac, parse_addr, resolve,
};
use vnf_sequencer::{ProcessId, SequencerConfig};

/// Reliable and ordered broadcast as a network service (NFV-RBCast).
///
/// Members of a group (libnfvinc's `Broadcast`) send their messages to
/// this sequencer, which stamps each with the next global sequence number
/// and sends it, packed with others into batches when load is high, to
/// every member; members deliver in the order the message's mode asks for
/// (reliable, atomic, FIFO-atomic, causal-atomic), NACK gaps, and answer
/// each other for what the sequencer no longer holds.
///
/// Every member gets one unicast copy of every group frame, or with
/// --multicast one frame goes to an IP multicast group and the network
/// replicates it. Give the members with --members (or add them later on
/// the control socket).
///
/// Replacing a failed sequencer: start the new one with --replace (or
/// --epoch N above every epoch the group has seen). It announces the new
/// epoch, collects where every member stands, fetches what only some
/// members hold, and only then stamps again: nothing delivered is lost,
/// nothing is delivered twice. Every member must answer, so remove dead
/// members first.
///
/// With --auth required every message must carry a valid tag under the
/// key of its session (the group id) from --auth-keys or the control
/// socket's session.add; the rest is counted and dropped. What the
/// sequencer sends is tagged under the same key.
///
/// Example:
///
///   vnf-sequencer --iface eth0 --group 7 --id 100 --control /run/seq.sock
///   --members 1=10.0.1.2:7600,2=10.0.2.2:7600,3=10.0.3.2:7600
#[derive(Debug, Parser)]
#[command(version, about, long_about, verbatim_doc_comment)]
struct Args {
    #[command(flatten)]
    dataplane: DataplaneArgs,
    /// UDP port to serve on.
    #[arg(long, default_value_t = DEFAULT_PORT)]
    port: u16,
    /// The group: the NFVinc session id of its frames (others are ignored).
    #[arg(long)]
    group: u64,
    /// This sequencer's process id (members answer epoch announcements to
    /// it); distinct from every member's.
    #[arg(long, default_value_t = 0)]
    id: u64,
    /// Members, as ID=IPv4[:port] (comma-separated; port default 7500).
    #[arg(long, value_delimiter = ',', value_parser = parse_member)]
    members: Vec<(ProcessId, SocketAddrV4)>,
    /// Send group frames once, to this IP multicast group and port, rather
    /// than one copy to each member: the network replicates them (members
    /// on one link or bridge, or behind a multicast router). Members must
    /// join it (libnfvinc `BroadcastConfig::multicast`); repairs and epoch
    /// messages stay unicast.
    #[arg(long, value_parser = parse_multicast)]
    multicast: Option<SocketAddrV4>,
    /// Take over the group from a sequencer that failed, in a new epoch
    /// (from the wall clock, tenths of a second since 2024, unless --epoch
    /// gives it).
    #[arg(long)]
    replace: bool,
    /// The epoch to take the group over in (implies --replace); must be
    /// above every epoch the group has seen. A new group starts in 1.
    #[arg(long, value_parser = clap::value_parser!(u32).range(2..))]
    epoch: Option<u32>,
    /// Most messages packed into one group frame (1: no batching).
    #[arg(long, default_value_t = 64)]
    max_batch: usize,
    /// Messages the retransmission ring keeps (rounded up to a power of two;
    /// at least twice the members' delivery window).
    #[arg(long, default_value_t = 16_384)]
    ring: usize,
    /// A heartbeat goes to the group after this long without a frame, in
    /// milliseconds (members notice a lost last frame by it).
    #[arg(long, default_value_t = 5)]
    heartbeat_ms: u64,
    /// Send UDP checksum zero ("none", which IPv4 allows) on raw-frame
    /// backends instead of filling it: for links that protect frames
    /// themselves, or groups under --auth required. On a veth, members'
    /// kernels then skip a software checksum of every copy they receive
    /// (what a NIC verifies in hardware). Received checksums are still
    /// checked.
    #[arg(long)]
    zero_udp_checksum: bool,
    /// With --poll adaptive: keep polling this many microseconds after the
    /// last frame before sleeping on the socket (0: the dataplane's count of
    /// empty polls alone). A member answers a group frame with its next
    /// messages within tens of microseconds; a worker that sleeps in the
    /// gap pays a wake-up per round trip (tens of microseconds more in a
    /// VM). A time, not a count, so that every backend spins alike.
    #[arg(long, default_value_t = SPIN_US, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    spin_us: u64,
    /// Control socket path (JSON lines; ops: health, counters, epoch,
    /// group, add, remove, replace, session.add, session.remove).
    #[arg(long)]
    control: Option<PathBuf>,
    #[command(flatten)]
    auth: AuthArgs,
}

fn parse_member(s: &str) -> Result<(ProcessId, SocketAddrV4), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not ID=IPv4[:port]"))?;
    let id = id
        .parse::<u64>()
        .map_err(|_| format!("{id:?} is not a process id"))?;
    Ok((ProcessId(id), parse_addr(addr)?))
}

fn parse_multicast(s: &str) -> Result<SocketAddrV4, String> {
    let a: SocketAddrV4 = s.parse().map_err(|_| format!("{s:?} is not IPv4:port"))?;
    if !a.ip().is_multicast() {
        return Err(format!("{} is not a multicast address", a.ip()));
    }
    Ok(a)
}

fn main() {
    launch::init_logging();
    if let Err(e) = run(Args::parse()) {
        eprintln!("vnf-sequencer: {e:#}");
        std::process::exit(1);
    }
}

/// A number that grows across restarts: tenths of seconds since
/// 2024-01-01 (fits an epoch until 2037).
fn clock_epoch() -> u32 {
    const Y2024: u64 = 1_704_067_200;
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let tenths = d.as_millis() / 100 - u128::from(Y2024) * 10;
    u32::try_from(tenths).unwrap_or(u32::MAX).max(2)
}

/// Default of `--spin-us`.
const SPIN_US: u64 = 200;

fn run(mut args: Args) -> Result<()> {
    // `--poll adaptive:MICROSECONDS` says it already.
    if let PollPolicy::Adaptive { spin_for, .. } = &mut args.dataplane.poll
        && spin_for.is_zero()
    {
        *spin_for = Duration::from_micros(args.spin_us);
    }
    let stop = Shutdown::on_signals().context("installing signal handlers")?;
    ensure!(
        args.dataplane.queues == 1,
        "a sequencer keeps one state machine and runs on one queue; --queues must be 1"
    );
    ensure!(
        args.members.iter().all(|(id, _)| id.0 != args.id),
        "--id {} is also a member's id",
        args.id
    );
    let mut cfg = SequencerConfig::new(ProcessId(args.id), args.group);
    cfg.max_batch = args.max_batch.max(1);
    cfg.ring = args.ring.max(64);
    cfg.heartbeat = Duration::from_millis(args.heartbeat_ms.max(1));
    let epoch = match (args.epoch, args.replace) {
        (Some(e), _) => Some(e),
        (None, true) => Some(clock_epoch()),
        (None, false) => None,
    };

    let mut endpoint = Endpoint::open(&args.dataplane, args.port)?;
    let queues = std::mem::take(&mut endpoint.queues);
    let iface = args.dataplane.iface.as_str();
    // Every backend but kernel UDP sends whole Ethernet frames: they need
    // the next hop's MAC and a UDP checksum of our own.
    let raw_frames = args.dataplane.backend != Backend::Udp;
    let local_mac = if raw_frames {
        iface_mac(iface).with_context(|| format!("reading the MAC address of {iface}"))?
    } else {
        [0; 6]
    };
    let members: Vec<MemberAddr> = args
        .members
        .iter()
        .map(|&(id, addr)| MemberAddr {
            id,
            addr,
            // Raw frames carry the next hop's MAC; the kernel
            // resolves it (members behind one router resolve once).
            mac: raw_frames
                .then(|| resolve(iface, addr, Duration::from_millis(500)))
                .flatten(),
        })
        .collect();
    let mut book = Book::new(endpoint.listen, local_mac, &members);
    if let Some(g) = args.multicast {
        book = book.with_multicast(g);
    }
    let sessions = args.auth.sessions().map_err(anyhow::Error::msg)?;
    let mut service = SeqService::new(cfg, epoch, book, args.port, raw_frames)
        .with_sessions(sessions)
        .with_zero_udp_checksums(args.zero_udp_checksum);
    let _control = match &args.control {
        Some(path) => {
            let (sock, inbox) = ControlSocket::bind(path)
                .with_context(|| format!("control socket {}", path.display()))?;
            service = service.with_control(inbox);
            Some(sock)
        }
        None => None,
    };
    tracing::info!(
        backend = ?args.dataplane.backend,
        listen = %endpoint.listen,
        group = args.group,
        epoch = service.core().epoch(),
        members = members.len(),
        "sequencer serving"
    );
    println!("READY");
    let mut service = Some(service);
    let totals = launch::run_workers(queues, &args.dataplane, &stop, |_| {
        service.take().expect("one queue, one service")
    })?;
    println!("{}", launch::counters_json(&totals));
    Ok(())
}
