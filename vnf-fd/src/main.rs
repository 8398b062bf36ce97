//! `vnf-fd`: the failure detector VNF on a dataplane backend, until SIGINT
//! or SIGTERM.
//!
//! Processes send heartbeats (and requests: add, remove, query, subscribe)
//! to its UDP port on the direct channel; the control socket (`--control`)
//! offers the same operations as JSON lines to the control plane, and
//! streams state changes to `subscribe`rs. Prints `READY` once serving, and
//! one JSON line of counters when it stops.

mod evidence;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{CommandFactory, FromArgMatches, Parser};
use dataplane::auth::AuthArgs;
use dataplane::control::ControlSocket;
use dataplane::launch::{self, DataplaneArgs, Endpoint};
use dataplane::runtime::Shutdown;
use vnf_fd::Config;
use vnf_fd::service::FdService;

/// Failure detection as a network service (NFV-FD): monitors processes by
/// their heartbeats, by any traffic they send (passive liveness, read from
/// an XDP program on the NFVI ports) and by the state of the links they sit
/// behind (netlink), and tells applications which are `correct`,
/// `suspected` or `unreachable`.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    #[command(flatten)]
    dataplane: DataplaneArgs,
    #[command(flatten)]
    auth: AuthArgs,
    /// UDP port of the direct channel.
    #[arg(long, default_value_t = vnf_fd::service::DEFAULT_PORT)]
    port: u16,
    /// Control socket path (JSON lines; ops: health, counters, add, remove,
    /// query, list, history, subscribe, session.add, session.remove).
    #[arg(long)]
    control: Option<PathBuf>,
    /// Default heartbeat interval of monitored processes, in milliseconds.
    #[arg(long, default_value_t = 10.0)]
    interval_ms: f64,
    /// Default safety margin, in milliseconds: how late past its expected
    /// arrival a heartbeat may be before the process is suspected. With the
    /// default interval, a crash is suspected about 20 ms after the last
    /// heartbeat, and a sender or path held up 10 ms is not suspected.
    #[arg(long, default_value_t = 10.0)]
    margin_ms: f64,
    /// Longest hold, in milliseconds, of the judgement of processes behind a
    /// link (or behind none) that all fall silent at once: a stalled path
    /// or host rather than crashes. They are judged when the link speaks
    /// again, or after this long; 0 never holds.
    #[arg(long, default_value_t = 200.0)]
    max_hold_ms: f64,
    /// Default number of arrivals the expected arrival is averaged over.
    #[arg(long, default_value_t = 32)]
    window: u32,
    /// Interfaces to watch passively: an XDP program on each records when
    /// every monitored address last sent anything (comma-separated).
    #[arg(long, value_delimiter = ',')]
    passive: Vec<String>,
    /// Follow the link state of the interfaces processes sit behind
    /// (netlink); processes added with a `link` become `unreachable` when
    /// it goes down.
    #[arg(long)]
    links: bool,
    /// Network namespace (a path such as /run/netns/NAME) of the NFVI ports
    /// that --passive and --links refer to; default: the VNF's own.
    #[arg(long)]
    ports_netns: Option<PathBuf>,
}

fn main() {
    launch::init_logging();
    // Paced by default, not adaptive: heartbeats arrive a few microseconds
    // apart and deadlines are milliseconds away, so spinning between
    // packets would cost a core for nothing.
    let matches = Args::command()
        .mut_arg("poll", |a| a.default_value("paced"))
        .get_matches();
    let args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Err(e) = run(args) {
        eprintln!("vnf-fd: {e:#}");
        std::process::exit(1);
    }
}

fn duration_ms(what: &str, ms: f64) -> Result<Duration> {
    anyhow::ensure!(
        ms.is_finite() && ms >= 0.0,
        "--{what} must be a non-negative number of milliseconds, not {ms}"
    );
    Ok(Duration::from_secs_f64(ms / 1000.0))
}

fn run(args: Args) -> Result<()> {
    let stop = Shutdown::on_signals().context("installing signal handlers")?;
    let mut config = Config::new(
        duration_ms("interval-ms", args.interval_ms)?,
        duration_ms("margin-ms", args.margin_ms)?,
    );
    config.window = args.window;
    config.validate().context("default configuration")?;
    anyhow::ensure!(
        args.dataplane.queues == 1,
        "vnf-fd keeps one detector and runs on one queue; --queues must be 1"
    );

    let sessions = args.auth.sessions().map_err(anyhow::Error::msg)?;
    let mut service = FdService::new(config, args.port)?
        .with_sessions(sessions)
        .with_max_hold(duration_ms("max-hold-ms", args.max_hold_ms)?);
    let ports_ns = args.ports_netns.as_deref();
    if !args.passive.is_empty() {
        let p = evidence::passive(&args.passive, ports_ns)
            .with_context(|| format!("passive liveness on {}", args.passive.join(",")))?;
        service = service.with_passive(p);
    }
    if args.links {
        service = service.with_links(evidence::links(ports_ns).context("link events")?);
    }
    let _control = match &args.control {
        Some(path) => {
            let (sock, inbox) = ControlSocket::bind(path)
                .with_context(|| format!("control socket {}", path.display()))?;
            service = service.with_control(inbox);
            Some(sock)
        }
        None => None,
    };
    let mut endpoint = Endpoint::open(&args.dataplane, args.port)?;
    let queues = std::mem::take(&mut endpoint.queues);
    tracing::info!(
        backend = ?args.dataplane.backend,
        listen = %endpoint.listen,
        passive = ?args.passive,
        links = args.links,
        "failure detector serving"
    );
    println!("READY");
    let mut service = Some(service);
    let totals = launch::run_workers(queues, &args.dataplane, &stop, |_| {
        service.take().expect("one queue, one service")
    })?;
    println!("{}", launch::counters_json(&totals));
    tracing::info!(?totals, "failure detector stopped");
    Ok(())
}
