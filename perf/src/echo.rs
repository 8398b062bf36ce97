//! The `echo` scenario: each backend in turn, each in its own topology.
//!
//! For `afxdp` and `udp`: a veth pair between two fresh namespaces; the
//! `vnf-echo` process in `b`, started before the warm-up and stopped after
//! the drain; the generator in `a`, a thread pinned to `--core-gen` on its
//! own AF_XDP socket(s), whose steering program routes the replies (UDP to
//! a's address and the generator's port) back to it. For `mem`: the
//! in-process loop of [`crate::mem_bench`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use dataplane::netns::{Pair, PairOptions};
use dataplane::wire::FrameSpec;
use serde_json::json;

use crate::cli::{Backend, EchoArgs};
use crate::frame::{ECHO_PORT, Template};
use crate::generator::{self, GenConfig, GenResult, Phase, Progress};
use crate::mem_bench::{self, MemBenchConfig};
use crate::progress::Bar;
use crate::report::{Latency, Report, Run, curve};
use crate::sched::Pacing;
use crate::vnf::{Vnf, VnfSpec, log_tail};
use crate::xsk::GenPort;

/// The generator's UDP source port (replies are steered by it).
pub const GEN_PORT: u16 = 49152;

/// Frames circulating in the in-memory loop.
pub const MEM_FRAMES: u32 = 512;

/// What `latency_ns` means for the network backends.
pub const RTT_KIND: &str = "round_trip";

/// How often the progress bar and the VNF's health are looked at.
const WATCH_EVERY: Duration = Duration::from_millis(100);

/// Everything a run needs beyond the parsed flags.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The VNF binary (for network backends).
    pub vnf_bin: Option<PathBuf>,
    /// Where VNF logs go.
    pub log_dir: PathBuf,
    /// Set by a signal: finish the current run early and start no other.
    pub stop: Arc<AtomicBool>,
}

/// The runs that completed, and the errors of those that did not.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The report.
    pub report: Report,
    /// `backend: error` for each run that failed.
    pub errors: Vec<String>,
}

/// Runs every backend of `args` in turn.
pub fn run_all(args: &EchoArgs, setup: &Setup) -> Outcome {
    let mut out = Outcome::default();
    for &backend in &args.backend {
        if setup.stop.load(Ordering::Relaxed) {
            out.errors
                .push(format!("{}: not run (interrupted)", backend.name()));
            continue;
        }
        tracing::info!(backend = backend.name(), "starting run");
        let r = match backend {
            Backend::Mem => run_mem(args, setup),
            Backend::Dpdk if args.dpdk_null => run_dpdk_null(args, setup),
            Backend::Afxdp | Backend::Udp | Backend::Dpdk => run_net(args, backend, setup),
        };
        match r {
            Ok(run) => {
                tracing::info!(
                    backend = backend.name(),
                    pps = format!("{:.0}", run.pps),
                    p99_ns = run.latency_ns.p99,
                    lost = run.lost,
                    "run done"
                );
                out.report.runs.push(run);
            }
            Err(e) => {
                tracing::error!(backend = backend.name(), "run failed: {e:#}");
                out.errors.push(format!("{}: {e:#}", backend.name()));
            }
        }
    }
    out
}

fn total_time(args: &EchoArgs) -> Duration {
    Duration::from_secs_f64(args.warmup + args.duration) + Duration::from_millis(args.drain_ms)
}

/// A tag for this run's frames, so stray frames of another run are ignored.
fn run_tag() -> u32 {
    (std::process::id() << 16) ^ crate::clock::now_ns() as u32
}

/// Watches a worker thread until it finishes, drawing progress, forwarding
/// a stop, and running `check` (which may ask to stop) on each tick.
fn watch<T>(
    label: &str,
    total: Duration,
    progress: &Progress,
    handle: &JoinHandle<T>,
    setup: &Setup,
    run_stop: &AtomicBool,
    mut check: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut bar = Bar::new(label, total);
    let started = Instant::now();
    // A hard ceiling well past the run's planned length: the worker's own
    // loops are bounded by time, this bounds a worker that hangs in set-up.
    let ceiling = total * 2 + Duration::from_secs(60);
    let mut result = Ok(());
    while !handle.is_finished() {
        std::thread::sleep(WATCH_EVERY);
        bar.update(progress, started.elapsed(), WATCH_EVERY);
        if setup.stop.load(Ordering::Relaxed) {
            run_stop.store(true, Ordering::Relaxed);
        }
        if result.is_ok()
            && let Err(e) = check()
        {
            run_stop.store(true, Ordering::Relaxed);
            result = Err(e);
        }
        if started.elapsed() > ceiling && !run_stop.swap(true, Ordering::Relaxed) {
            tracing::error!("run still going after {ceiling:?}: stopping it");
        }
    }
    result
}

fn base_run(args: &EchoArgs, backend: Backend) -> Run {
    let pacing = args.pacing();
    Run {
        scenario: "echo".into(),
        backend: backend.name().into(),
        duration_s: 0.0,
        sent: 0,
        received: 0,
        lost: 0,
        pps: 0.0,
        latency_ns: Latency::default(),
        latency_kind: RTT_KIND.into(),
        mode: pacing.mode().into(),
        size: usize::from(args.size),
        offered_pps: 0.0,
        rate_pps: match pacing {
            Pacing::Rate(r) => Some(r),
            _ => None,
        },
        in_flight: match pacing {
            Pacing::Closed(n) => Some(n),
            _ => None,
        },
        ns_per_packet: None,
        duplicates: 0,
        reordered: 0,
        warmup_s: args.warmup,
        extra: serde_json::Map::new(),
        curve: Vec::new(),
    }
}

fn run_mem(args: &EchoArgs, setup: &Setup) -> anyhow::Result<Run> {
    let spec = FrameSpec {
        src_mac: [0x02, 0, 0, 0, 0, 1],
        dst_mac: [0x02, 0, 0, 0, 0, 2],
        src_ip: std::net::Ipv4Addr::new(198, 18, 0, 1),
        dst_ip: std::net::Ipv4Addr::new(198, 18, 0, 2),
        src_port: GEN_PORT,
        dst_port: ECHO_PORT,
    };
    let tpl = Template::new(spec, usize::from(args.size), run_tag(), args.checksum)?;
    let cfg = MemBenchConfig {
        frames: MEM_FRAMES,
        burst: usize::from(args.burst),
        warmup: Duration::from_secs_f64(args.warmup),
        duration: Duration::from_secs_f64(args.duration),
    };
    let progress = Arc::new(Progress::default());
    let run_stop = Arc::new(AtomicBool::new(false));
    let core = args.core_gen;
    let handle = {
        let (progress, run_stop) = (progress.clone(), run_stop.clone());
        std::thread::Builder::new()
            .name("perf-mem".into())
            .spawn(move || {
                let pinned = dataplane::runtime::pin_current_thread(core);
                mem_bench::run(&cfg, &tpl, &progress, &run_stop).map(|r| (r, pinned))
            })
            .context("spawning the in-memory loop")?
    };
    watch(
        "mem",
        total_time(args),
        &progress,
        &handle,
        setup,
        &run_stop,
        || Ok(()),
    )?;
    let (r, pinned) = handle
        .join()
        .map_err(|_| anyhow!("the in-memory loop panicked"))??;
    if r.corrupted > 0 {
        bail!(
            "{} of {MEM_FRAMES} frames came out of the echo loop invalid",
            r.corrupted
        );
    }
    let secs = r.window.as_secs_f64();
    let mut run = base_run(args, Backend::Mem);
    run.mode = "max".into();
    run.rate_pps = None;
    run.in_flight = None;
    run.latency_kind = mem_bench::LATENCY_KIND.into();
    run.duration_s = secs;
    run.sent = r.packets;
    run.received = r.packets;
    run.pps = r.packets as f64 / secs.max(1e-9);
    run.offered_pps = run.pps;
    run.ns_per_packet = Some(r.window.as_nanos() as f64 / r.packets.max(1) as f64);
    run.latency_ns = Latency::of(&r.hist);
    run.curve = curve(&r.hist);
    run.extra.insert("frames_in_loop".into(), json!(MEM_FRAMES));
    run.extra.insert("burst".into(), json!(args.burst));
    run.extra
        .insert("pinned_core".into(), json!(pinned.then_some(core)));
    run.extra
        .insert("checksum".into(), json!(args.checksum.name()));
    if r.interrupted {
        run.extra.insert("interrupted".into(), json!(true));
    }
    Ok(run)
}

#[cfg(feature = "dpdk")]
fn run_dpdk_null(args: &EchoArgs, setup: &Setup) -> anyhow::Result<Run> {
    crate::dpdk_null::run(args, setup, base_run(args, Backend::Dpdk))
}

#[cfg(not(feature = "dpdk"))]
fn run_dpdk_null(_: &EchoArgs, _: &Setup) -> anyhow::Result<Run> {
    bail!(
        "--dpdk-null: nfvinc-perf was built without the dpdk feature (cargo build --features dpdk)"
    )
}

/// What the generator thread hands back.
struct GenOutcome {
    result: GenResult,
    zero_copy: bool,
    pinned: bool,
    steer: Option<String>,
}

fn run_net(args: &EchoArgs, backend: Backend, setup: &Setup) -> anyhow::Result<Run> {
    dataplane::netns::check_privileges()
        .context("the afxdp and udp backends build network namespaces")?;
    let vnf_bin = setup
        .vnf_bin
        .clone()
        .ok_or_else(|| anyhow!("no VNF binary"))?;
    let pair = Pair::new(
        &format!("perf{}", backend.name()),
        PairOptions {
            queues: args.queues,
            ..PairOptions::default()
        },
    )
    .context("building the veth pair")?;
    tracing::info!(
        gen_ns = pair.a.ns.name(),
        vnf_ns = pair.b.ns.name(),
        "topology ready"
    );
    let spec = FrameSpec {
        src_mac: pair.a.mac,
        dst_mac: pair.b.mac,
        src_ip: pair.a.ip,
        dst_ip: pair.b.ip,
        src_port: GEN_PORT,
        dst_port: ECHO_PORT,
    };
    let tpl = Template::new(spec, usize::from(args.size), run_tag(), args.checksum)?;
    let log = setup.log_dir.join(format!("vnf-{}.log", backend.name()));
    let mut vnf = Vnf::start(
        &pair.b,
        &VnfSpec {
            bin: vnf_bin,
            backend: backend.name(),
            port: ECHO_PORT,
            core: args.core_vnf,
            extra_args: vnf_args(args),
            log: log.clone(),
            ready_timeout: Duration::from_secs(args.ready_timeout),
        },
    )?;

    let cfg = GenConfig {
        pacing: args.pacing(),
        burst: usize::from(args.burst),
        warmup: Duration::from_secs_f64(args.warmup),
        duration: Duration::from_secs_f64(args.duration),
        drain: Duration::from_millis(args.drain_ms),
        closed_loop_timeout: Duration::from_millis(args.drain_ms),
    };
    let progress = Arc::new(Progress::default());
    let run_stop = Arc::new(AtomicBool::new(false));
    let handle = {
        let (progress, run_stop) = (progress.clone(), run_stop.clone());
        let (ifname, queues, burst, core) = (
            pair.a.ifname.clone(),
            args.queues,
            usize::from(args.burst),
            args.core_gen,
        );
        let (ip, tpl) = (pair.a.ip, tpl.clone());
        pair.a.ns.spawn(move || -> anyhow::Result<GenOutcome> {
            let pinned = dataplane::runtime::pin_current_thread(core);
            let mut port = GenPort::open(&ifname, queues, burst, ip, GEN_PORT)
                .context("opening the generator's AF_XDP port")?;
            let result = generator::run(&mut port.ios, &tpl, &cfg, &progress, &run_stop)
                .context("generator I/O")?;
            Ok(GenOutcome {
                result,
                zero_copy: port.zero_copy,
                pinned,
                steer: port.steer_counters(),
            })
        })
    };
    let mut vnf_died = None;
    let watched = watch(
        backend.name(),
        total_time(args),
        &progress,
        &handle,
        setup,
        &run_stop,
        || {
            if let Some(status) = vnf.exited()? {
                vnf_died = Some(status);
                bail!("the VNF exited ({status}) during the run");
            }
            Ok(())
        },
    );
    let joined = handle
        .join()
        .map_err(|_| anyhow!("the generator thread panicked"))?;
    let vnf_status = vnf.stop();
    if let Err(e) = watched {
        bail!("{e}; its log {}:\n{}", log.display(), log_tail(&log));
    }
    let g = joined
        .context("entering the generator's namespace")?
        .with_context(|| {
            format!(
                "generator failed (VNF log {}:\n{})",
                log.display(),
                log_tail(&log)
            )
        })?;
    let vnf_status = vnf_status?;
    if progress.phase() != Phase::Done {
        tracing::warn!("generator ended in phase {:?}", progress.phase());
    }
    Ok(net_run(args, backend, &g, vnf_status, &log, setup))
}

/// Arguments for the VNF beyond the standard ones.
fn vnf_args(args: &EchoArgs) -> Vec<String> {
    let mut v = vec!["--poll".to_string(), args.vnf_poll.clone()];
    if args.queues > 1 {
        v.extend(["--queues".to_string(), args.queues.to_string()]);
    }
    v
}

/// The counters the VNF prints as its last JSON line when it stops.
fn vnf_counters(log: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .filter(|l| l.trim_start().starts_with('{'))
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(serde_json::Value::is_object)
}

fn net_run(
    args: &EchoArgs,
    backend: Backend,
    g: &GenOutcome,
    vnf_status: Option<std::process::ExitStatus>,
    log: &Path,
    _setup: &Setup,
) -> Run {
    let r = &g.result;
    let secs = r.window.as_secs_f64();
    let mut run = base_run(args, backend);
    run.duration_s = secs;
    run.sent = r.sent;
    run.received = r.seq.received;
    run.lost = r.sent.saturating_sub(r.seq.received);
    run.pps = r.seq.received as f64 / secs.max(1e-9);
    run.offered_pps = r.sent as f64 / secs.max(1e-9);
    run.latency_ns = Latency::of(&r.hist);
    run.curve = curve(&r.hist);
    run.duplicates = r.seq.duplicates;
    run.reordered = r.seq.reordered;
    let x = &mut run.extra;
    x.insert("checksum".into(), json!(args.checksum.name()));
    x.insert("burst".into(), json!(args.burst));
    x.insert("queues".into(), json!(args.queues));
    x.insert("drain_ms".into(), json!(args.drain_ms));
    x.insert("warmup_sent".into(), json!(r.warmup_sent));
    x.insert("late".into(), json!(r.seq.late));
    x.insert("foreign".into(), json!(r.foreign));
    x.insert("corrupt".into(), json!(r.corrupt));
    x.insert("generator_xdp_zero_copy".into(), json!(g.zero_copy));
    x.insert(
        "generator_pinned".into(),
        json!(g.pinned.then_some(args.core_gen)),
    );
    x.insert("generator_tx_full".into(), json!(r.io.tx_full));
    x.insert("generator_rx_dropped".into(), json!(r.io.rx_dropped));
    x.insert("generator_wakeups".into(), json!(r.io.wakeups));
    x.insert("vnf_core".into(), json!(args.core_vnf));
    x.insert("vnf_log".into(), json!(log.display().to_string()));
    if let Some(status) = vnf_status {
        x.insert("vnf_exit".into(), json!(status.to_string()));
    }
    if let Some(c) = vnf_counters(log) {
        x.insert("vnf_counters".into(), c);
    }
    if let Some(s) = &g.steer {
        x.insert("generator_steering".into(), json!(s));
    }
    if let Pacing::Closed(_) = args.pacing() {
        x.insert("closed_loop_timeouts".into(), json!(r.closed_loop_timeouts));
    }
    if r.backlog > 0 {
        x.insert("backlog".into(), json!(r.backlog));
        tracing::warn!(
            backlog = r.backlog,
            "the generator could not keep up with --rate: {} packets due in the window were never sent",
            r.backlog
        );
    }
    if r.interrupted {
        x.insert("interrupted".into(), json!(true));
    }
    run
}
