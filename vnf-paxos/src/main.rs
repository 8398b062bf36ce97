//! `vnf-paxos`: one role of the consensus service (coordinator, acceptor or
//! learner) on a dataplane backend, until SIGINT or SIGTERM.
//!
//! Every process of a group gets the same member lists
//! (`--coordinators`, `--acceptors`, `--learners`) and its own `--role`
//! and `--index` in them. Prints `READY` once serving, and one JSON line of
//! counters when it stops.

use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use clap::{Parser, ValueEnum};
use dataplane::auth::AuthArgs;
use dataplane::control::ControlSocket;
use dataplane::launch::{self, Backend, DataplaneArgs, Endpoint};
use dataplane::runtime::{PollPolicy, Shutdown};
use vnf_paxos::service::{
    AcceptorRole, Core, DEFAULT_PORT, LearnerRole, Members, PaxosService, Peers, acceptor_node,
    coordinator_node, iface_mac, learner_node, resolve,
};
use vnf_paxos::wal::Wal;
use vnf_paxos::{
    Acceptor, AcceptorConfig, AcceptorId, Coordinator, CoordinatorConfig, Durability, Learner,
    LearnerConfig, Time,
};

/// Which role this process plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Role {
    /// Proposer and leader candidate: the first live coordinator in the
    /// list leads, the others stand by and take over when its heartbeats
    /// stop (election by timeouts, ranked by position, with ballots).
    Coordinator,
    /// Promises ballots and votes for values; 2f + 1 of them tolerate f
    /// failures.
    Acceptor,
    /// Learns decisions from a majority of votes and delivers them in
    /// instance order.
    Learner,
}

/// Where an acceptor keeps its promises and votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DurabilityArg {
    /// A write-ahead log (`--wal`), synced once per burst: survives
    /// restarts under the same identity. The default.
    Wal,
    /// Memory only: a restart must come back with `--join` under a new
    /// identity and be admitted by the leader.
    Memory,
}

/// Consensus as a network service (VNF-Consensus): Multi-Paxos with a
/// leader, standby coordinators, 2f + 1 acceptors and learners, each role
/// a process on the kernel-bypass dataplane. Clients (libnfvinc's
/// `Consensus`) send values to the leader and follow the decided log.
///
/// With --auth required every received message must carry a valid tag
/// under the key of its session (from --auth-keys or the control socket's
/// session.add), clients' and the other roles' alike; the rest is counted
/// and dropped. Every message sent carries --session and is tagged under
/// its key: give every process of an instance the same --session and keys.
///
/// Example, three acceptors, two coordinators and a learner, each started
/// with the same lists and its own role and index:
///
///   vnf-paxos --role acceptor --index 0 --wal /var/lib/a0.wal
///   --coordinators 10.0.0.1,10.0.0.2 --acceptors 10.0.1.1,10.0.1.2,10.0.1.3
///   --learners 10.0.2.1
#[derive(Debug, Parser)]
#[command(version, about, long_about, verbatim_doc_comment)]
struct Args {
    #[command(flatten)]
    dataplane: DataplaneArgs,
    /// This process's role.
    #[arg(long, value_enum)]
    role: Role,
    /// This process's position in its role's list (an acceptor's slot).
    #[arg(long)]
    index: usize,
    /// Coordinators, in rank order (IPv4[:port], comma-separated; port
    /// default 7400). The first live one leads.
    #[arg(long, value_delimiter = ',', required = true, value_parser = parse_addr)]
    coordinators: Vec<SocketAddrV4>,
    /// Acceptors, by slot (2f + 1 of them, at most 64).
    #[arg(long, value_delimiter = ',', required = true, value_parser = parse_addr)]
    acceptors: Vec<SocketAddrV4>,
    /// Learners (they, and the coordinators, receive every vote).
    #[arg(long, value_delimiter = ',', value_parser = parse_addr)]
    learners: Vec<SocketAddrV4>,
    /// Acceptors: where promises and votes are kept.
    #[arg(long, value_enum, default_value = "wal")]
    durability: DurabilityArg,
    /// Acceptors with `--durability wal`: the log file (created if absent,
    /// replayed if present).
    #[arg(long)]
    wal: Option<PathBuf>,
    /// Acceptors in memory: this is a replacement of a lost acceptor; it
    /// votes on nothing until the leader admits its new identity.
    #[arg(long)]
    join: bool,
    /// Incarnation of this process (coordinators: of its ballots;
    /// in-memory acceptors: of its identity). Must grow across restarts;
    /// default: derived from the wall clock, which does.
    #[arg(long)]
    incarnation: Option<u32>,
    /// Control socket path (JSON lines; ops: health, counters, membership,
    /// leader, deliveries, session.add, session.remove).
    #[arg(long)]
    control: Option<PathBuf>,
    #[command(flatten)]
    auth: AuthArgs,
    /// The instance's session id: every message sent carries it (and with
    /// --auth is tagged under its key). The same in every process of the
    /// instance and its clients.
    #[arg(long, default_value_t = 0)]
    session: u64,
    /// Empty polls before a worker on adaptive polling sleeps in the
    /// socket (default: the dataplane's). Fewer suits hosts where several
    /// roles share a core: a spinning role takes the core from the others.
    #[arg(long)]
    spins: Option<u32>,
    /// Coordinators: most instances in flight.
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// Coordinators: most client values per instance (1: no batching).
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Coordinators: most bytes of values per packet (0: one instance per
    /// packet).
    #[arg(long, default_value_t = vnf_paxos::MAX_VALUE_BYTES)]
    packet_bytes: usize,
    /// Coordinators: leader heartbeat interval, in milliseconds.
    #[arg(long, default_value_t = 5)]
    heartbeat_ms: u64,
    /// Coordinators: leader silence after which the first standby stands,
    /// in milliseconds (the k-th waits k + 1 times this).
    #[arg(long, default_value_t = 50)]
    election_timeout_ms: u64,
}

fn parse_addr(s: &str) -> Result<SocketAddrV4, String> {
    if let Ok(a) = s.parse::<SocketAddrV4>() {
        return Ok(a);
    }
    s.parse()
        .map(|ip| SocketAddrV4::new(ip, DEFAULT_PORT))
        .map_err(|_| format!("{s:?} is not IPv4[:port]"))
}

fn main() {
    launch::init_logging();
    if let Err(e) = run(Args::parse()) {
        eprintln!("vnf-paxos: {e:#}");
        std::process::exit(1);
    }
}

/// A number that grows across restarts: tenths of seconds of the wall
/// clock (wrapping after about 13 years).
fn clock_incarnation() -> u32 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_millis() / 100) as u32
}

fn run(mut args: Args) -> Result<()> {
    if let (Some(n), PollPolicy::Adaptive { spins, .. }) = (args.spins, &mut args.dataplane.poll) {
        *spins = n;
    }
    let stop = Shutdown::on_signals().context("installing signal handlers")?;
    ensure!(
        args.dataplane.queues == 1,
        "a consensus role keeps one state machine and runs on one queue; --queues must be 1"
    );
    let members = Members {
        coordinators: args.coordinators.clone(),
        acceptors: args.acceptors.clone(),
        learners: args.learners.clone(),
    };
    ensure!(
        (1..=64).contains(&members.acceptors.len()),
        "between 1 and 64 acceptors, not {}",
        members.acceptors.len()
    );
    ensure!(
        members.coordinators.len() < 0x100,
        "at most 255 coordinators"
    );
    let (list, me) = match args.role {
        Role::Coordinator => (&members.coordinators, coordinator_node(args.index)),
        Role::Acceptor => (&members.acceptors, acceptor_node(args.index as u16)),
        Role::Learner => (&members.learners, learner_node(args.index)),
    };
    let Some(&own) = list.get(args.index) else {
        bail!(
            "--index {} is outside the {} list of {}",
            args.index,
            format!("{:?}", args.role).to_lowercase(),
            list.len()
        );
    };
    let mut endpoint = Endpoint::open(&args.dataplane, own.port())?;
    if *endpoint.listen.ip() != *own.ip() {
        tracing::warn!(listen = %endpoint.listen, configured = %own,
            "serving on another address than the member list gives for this process");
    }
    let queues = std::mem::take(&mut endpoint.queues);
    let iface = args.dataplane.iface.as_str();
    let afxdp = args.dataplane.backend == Backend::Afxdp;
    let local_mac = if afxdp {
        iface_mac(iface).with_context(|| format!("reading the MAC address of {iface}"))?
    } else {
        [0; 6]
    };
    let peers = Peers::new(me, endpoint.listen, local_mac, &members, |addr| {
        if !afxdp {
            return [0; 6];
        }
        // Frames from the peer teach its next hop too; until then, ask.
        resolve(iface, addr, Duration::from_millis(500)).unwrap_or_else(|| {
            tracing::warn!(%addr, "next hop not resolved yet; learning it from its traffic");
            [0xff; 6]
        })
    });
    // The core starts now, after the (possibly slow) set-up: its
    // election timer must not have run out before it can hear a leader.
    let now = Time::monotonic_now();
    let incarnation = args.incarnation.unwrap_or_else(clock_incarnation);
    let core = match args.role {
        Role::Coordinator => {
            let nodes = (0..members.coordinators.len())
                .map(coordinator_node)
                .collect();
            let mut c = CoordinatorConfig::new(me, incarnation as u16, nodes);
            c.acceptors = members.acceptors.len() as u16;
            c.window = args.window.max(1);
            c.max_batch_commands = args.batch.max(1);
            c.max_packet_bytes = args.packet_bytes;
            c.heartbeat = Duration::from_millis(args.heartbeat_ms.max(1));
            c.election_timeout = Duration::from_millis(args.election_timeout_ms.max(1));
            c.retransmit = c.retransmit.max(c.heartbeat * 2);
            Core::Coordinator(Box::new(Coordinator::new(c, now)))
        }
        Role::Acceptor => {
            let slot = args.index as u16;
            match args.durability {
                DurabilityArg::Wal => {
                    ensure!(
                        !args.join,
                        "--join is for in-memory acceptors; a logged one recovers"
                    );
                    let path = args
                        .wal
                        .as_ref()
                        .context("--durability wal needs --wal PATH")?;
                    let (wal, records) =
                        Wal::open(path).with_context(|| format!("opening {}", path.display()))?;
                    let cfg = AcceptorConfig::default();
                    let acceptor = if records.is_empty() {
                        Acceptor::new(
                            AcceptorId {
                                slot,
                                incarnation: 0,
                            },
                            cfg,
                        )
                    } else {
                        let n = records.len();
                        let a = Acceptor::recover(cfg, records).with_context(|| {
                            format!("{} does not start with an identity", path.display())
                        })?;
                        ensure!(
                            a.id().slot == slot,
                            "{} belongs to slot {}, not {slot}",
                            path.display(),
                            a.id().slot
                        );
                        tracing::info!(records = n, promised = ?a.promised(), "recovered from the log");
                        a
                    };
                    Core::Acceptor(Box::new(AcceptorRole::new(acceptor, Some(wal))))
                }
                DurabilityArg::Memory => {
                    let cfg = AcceptorConfig {
                        durability: Durability::Memory,
                        ..AcceptorConfig::default()
                    };
                    let id = AcceptorId { slot, incarnation };
                    let a = if args.join {
                        Acceptor::rejoin(id, cfg, now)
                    } else {
                        Acceptor::new(id, cfg)
                    };
                    Core::Acceptor(Box::new(AcceptorRole::new(a, None)))
                }
            }
        }
        Role::Learner => {
            let cfg = LearnerConfig {
                acceptors: members.acceptors.len() as u16,
                ..LearnerConfig::default()
            };
            Core::Learner(Box::new(LearnerRole::new(Learner::new(cfg))))
        }
    };

    let sessions = args.auth.sessions().map_err(anyhow::Error::msg)?;
    let mut service =
        PaxosService::new(core, peers, members, own.port()).with_sessions(sessions, args.session);
    let _control = match &args.control {
        Some(path) => {
            let (sock, inbox) = ControlSocket::bind(path)
                .with_context(|| format!("control socket {}", path.display()))?;
            service = service.with_control(inbox);
            Some(sock)
        }
        None => None,
    };
    tracing::info!(role = ?args.role, index = args.index, node = me.0,
        backend = ?args.dataplane.backend, listen = %endpoint.listen, "consensus serving");
    println!("READY");
    let mut service = Some(service);
    let totals = launch::run_workers(queues, &args.dataplane, &stop, |_| {
        service.take().expect("one queue, one service")
    })?;
    println!("{}", launch::counters_json(&totals));
    Ok(())
}
