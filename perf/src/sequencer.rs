//! The broadcast scenario: `nfvinc-perf sequencer`.
//!
//! For `afxdp` and `udp`, each run (one per backend and `--receivers`
//! count) builds two namespaces joined by a veth pair: `vnf-sequencer` runs
//! in one on the backend under test; the group's members, libnfvinc's
//! `Broadcast` handles on kernel UDP sockets (one port each), in the other.
//! Every member receives; the first `--senders` of them also send
//! `--size`-byte atomic-broadcast messages as fast as their send window
//! lets them (closed loop: 64 messages each in flight until delivered back
//! to the sender). Each payload carries its send time. Figures of the
//! measured window:
//!
//! * `msgs_per_s`: messages delivered per second at *every* member (the
//!   slowest member's count);
//! * `latency_ns`: send-to-deliver, from the send time in the payload
//!   (taken once the sender's window has room, so that the wait for it is
//!   not counted) to the delivery at each member, over all members (every
//!   32nd message by global sequence number: [`LATENCY_SAMPLE`]);
//! * `order_ok`: once the senders stop and the members have caught up,
//!   every member delivered the same sequence (same count and the same
//!   digest of `(seq, sender, sender_seq)` in delivery order) and lost
//!   nothing; the run, and the command, fail if not.
//!
//! The sequencer sends each group frame once, to an IP multicast group
//! every member joins, and the veth link and the members' kernel replicate
//! it (`--delivery multicast`, the default); with `--delivery unicast` it
//! sends every member its own copy.
//!
//! Flow control: the protocol has none beyond a sender's window (its own
//! messages not yet delivered back to it), so a member that falls behind
//! the fastest sender falls further, and one a whole delivery window
//! (4,096 messages) behind drops every newer frame until repaired. The
//! senders therefore also wait (a 200 µs pause at a time, counted in
//! `flow_pauses`) while the group has [`GROUP_WINDOW`] messages sent and
//! not yet delivered at its slowest member: what an application that wants
//! every member to keep up does, and what makes `msgs_per_s` the rate the
//! whole group sustains. In large groups the members' background threads
//! coalesce wake-ups (`--coalesce-us`): fifty members share two cores here.
//!
//! For `mem`, the stamping logic alone on one core, in process: 50 members'
//! Data frames in bursts of 32 are parsed and stamped, and every group
//! frame is built (as `benches/stamp.rs` of `vnf-sequencer` does);
//! `msgs_per_s` counts messages stamped per second.
//!
//! The JSON report has the echo scenario's shape (`runs`: scenario,
//! backend, duration_s, sent, received, lost, pps, latency_ns…) plus
//! `receivers`, `senders`, `msgs_per_s`, `order_ok` and the sequencer's
//! counters, and `msgs_per_s_vs_udp` (the ratio to the kernel-UDP run of
//! the same group size).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::Args;
use dataplane::control::call;
use dataplane::netns::{End, Netns, veth};
use hdrhistogram::Histogram;
use libnfvinc::broadcast::{Broadcast, BroadcastConfig};
use serde_json::{Value, json};
use vnf_sequencer::wire::{Message, data};
use vnf_sequencer::{Event, Mode, ProcessId, Sequencer, SequencerConfig, Time};

use crate::cli::Backend;
use crate::report::{Latency, Report, Run, new_histogram};
use crate::run_dir::RunDir;
use crate::vnf::Vnf;

const GROUP: u64 = 7;
const SEQ_ID: u64 = 1_000_000;
const SEQ_PORT: u16 = 7500;
const MEMBER_PORT0: u16 = 7600;
const SEQ_IP: Ipv4Addr = Ipv4Addr::new(10, 84, 0, 1);
const MEMBERS_IP: Ipv4Addr = Ipv4Addr::new(10, 84, 0, 2);
const MULTICAST: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 7, 0, 1), 7599);

/// Options of `nfvinc-perf sequencer`.
#[derive(Debug, Clone, Args)]
pub struct SequencerArgs {
    /// Backends to run, in turn, comma separated (e.g. `afxdp,udp`).
    #[arg(long, value_enum, value_delimiter = ',', required = true)]
    pub backend: Vec<Backend>,
    /// Group sizes to run, comma separated (one run per backend and size).
    #[arg(long, value_delimiter = ',', default_value = "1,5,50",
          value_parser = clap::value_parser!(u16).range(1..=200))]
    pub receivers: Vec<u16>,
    /// Members that also send (at most the group size).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub senders: u16,
    /// Bytes per message payload (at least 16: send time and sender).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(16..=1400))]
    pub size: u16,
    /// Measured seconds per run, warm-up excluded (at most 3600).
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = crate::cli::parse_duration)]
    pub duration: f64,
    /// Warm-up seconds before the measured window (at most 60).
    #[arg(long, value_name = "SECONDS", default_value = "1", value_parser = crate::cli::parse_warmup)]
    pub warmup: f64,
    /// Most messages per group frame (`vnf-sequencer --max-batch`).
    #[arg(long, default_value_t = 64)]
    pub max_batch: usize,
    /// Core to pin the sequencer to; none: not pinned.
    #[arg(long)]
    pub core: Option<usize>,
    /// How group frames reach the members: `multicast`, once to an IP
    /// multicast group every member joins (`vnf-sequencer --multicast`:
    /// the veth link and the members' kernel replicate it; what the issue
    /// asks of group delivery), or `unicast`, one copy per member written
    /// by the sequencer.
    #[arg(long, default_value = "multicast", value_parser = ["multicast", "unicast"])]
    pub delivery: String,
    /// Same as `--delivery multicast` (the default; kept for old command
    /// lines).
    #[arg(long, hide = true)]
    pub multicast: bool,
    /// Members' interrupt moderation in microseconds
    /// (`BroadcastConfig::coalesce`): while frames come faster, a member
    /// that no thread waits on and with none of its own messages in flight
    /// reads every so often instead of waking for every frame. Default:
    /// 4000 when the group has more than four members per core (fifty on
    /// two cores: against none, about a fifth less CPU per message, and up
    /// to 4 ms more latency at the members that only receive; against
    /// 2000, 7-8% less members' CPU per message and fewer flow pauses in
    /// four pairs of 50-member AF_XDP runs here, p50 latency 2.8 -> 3.8
    /// ms), else 0 (off: with a few
    /// members per core wake-ups are cheap, and lingering members would
    /// hold the senders back through the group window).
    #[arg(long, value_name = "MICROSECONDS",
          value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pub coalesce_us: Option<u64>,
    /// Real-time (SCHED_FIFO) priority of the sequencer's worker
    /// (`vnf-sequencer --rt-priority`); 0: the normal scheduler.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..=99))]
    pub rt_priority: i32,
    /// The sequencer's polling (`busy` spins its core: for dedicated cores
    /// only).
    #[arg(long, default_value = "adaptive", value_parser = ["adaptive", "busy"])]
    pub poll: String,
    /// Group frames from raw-frame backends (AF_XDP) with UDP checksum
    /// zero (`vnf-sequencer --zero-udp-checksum`).
    #[arg(long)]
    pub zero_udp_checksum: bool,
    /// Write the results as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// The `vnf-sequencer` binary; default: next to this one.
    #[arg(long, value_name = "PATH")]
    pub vnf_bin: Option<PathBuf>,
    /// Directory for VNF logs; default: a temporary one, removed after
    /// each run whose members agree (else kept, and its path logged).
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
}

impl SequencerArgs {
    /// The members' interrupt moderation for a group of `receivers` (see
    /// `--coalesce-us`).
    pub fn coalesce(&self, receivers: u16) -> Duration {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let auto = if usize::from(receivers) > 4 * cores {
            4000
        } else {
            0
        };
        Duration::from_micros(self.coalesce_us.unwrap_or(auto))
    }

    /// Whether group frames go to an IP multicast group.
    pub fn multicast(&self) -> bool {
        self.multicast || self.delivery == "multicast"
    }

    /// The `vnf-sequencer` binary to run.
    pub fn vnf_bin(&self) -> Result<PathBuf, String> {
        crate::cli::vnf_binary(self.vnf_bin.as_deref(), "vnf-sequencer")
    }
}

/// The runs that completed, and the errors of those that did not.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The report.
    pub report: Report,
    /// `backend: error` for each run that failed (disorder included).
    pub errors: Vec<String>,
}

/// Runs the scenario and prints its results: the whole of
/// `nfvinc-perf sequencer`. Exits non-zero when a run failed or its members
/// disagreed.
pub fn main(args: &SequencerArgs) -> anyhow::Result<ExitCode> {
    if let Some(p) = &args.json {
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => std::path::Path::new("."),
        };
        if !dir.is_dir() || p.is_dir() {
            bail!("--json {}: cannot write there", p.display());
        }
    }
    // First SIGINT/SIGTERM: end the current run early and report it.
    // Second: exit at once.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())
            .context("installing signal handlers")?;
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let stop = &stop;
    let title = format!(
        "sequencer: {}-byte atomic broadcasts, {} sender(s), {} s per run after {} s warm-up",
        args.size, args.senders, args.duration, args.warmup
    );
    tracing::info!("{title}");
    let outcome = run_all(args, stop);
    println!("{title}");
    if outcome.report.runs.is_empty() {
        println!("(no run completed)");
    } else {
        print!("{}", outcome.report.table());
        for r in &outcome.report.runs {
            let x = |k: &str| r.extra.get(k).cloned().unwrap_or(Value::Null);
            let vs = match x("msgs_per_s_vs_udp").as_f64() {
                Some(v) => format!(" ({v:.2}x udp)"),
                None => String::new(),
            };
            let cpu = match (
                x("cpu_ns_per_msg")["members"].as_f64(),
                x("cpu_ns_per_msg")["vnf"].as_f64(),
            ) {
                (Some(m), Some(v)) => format!(", CPU/msg members {m:.0} ns + VNF {v:.0} ns"),
                _ => String::new(),
            };
            println!(
                "{} receivers={}: msgs/s {:.0}{vs} at every receiver, p50 {} ns, p99 {} ns, order_ok {}{cpu}",
                r.backend,
                x("receivers"),
                r.pps,
                r.latency_ns.p50,
                r.latency_ns.p99,
                x("order_ok")
            );
        }
    }
    if let Some(p) = &args.json {
        let text = serde_json::to_string_pretty(&outcome.report)?;
        std::fs::write(p, text + "\n").with_context(|| format!("writing {}", p.display()))?;
    }
    if outcome.errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for e in &outcome.errors {
            eprintln!("error: {e}");
        }
        Ok(ExitCode::FAILURE)
    }
}

/// Runs every backend and group size of `args` in turn; `stop` (a signal)
/// ends the current run early and starts no other.
pub fn run_all(args: &SequencerArgs, stop: &Arc<AtomicBool>) -> Outcome {
    let mut out = Outcome::default();
    for &backend in &args.backend {
        let sizes: Vec<u16> = if backend == Backend::Mem {
            vec![50]
        } else {
            args.receivers.clone()
        };
        for receivers in sizes {
            let what = format!("{} receivers={receivers}", backend.name());
            if stop.load(Ordering::Relaxed) {
                out.errors.push(format!("{what}: not run (interrupted)"));
                continue;
            }
            let r = match backend {
                Backend::Mem => run_mem(args, stop),
                Backend::Afxdp | Backend::Udp | Backend::Dpdk => {
                    run_net(args, backend, receivers, stop)
                }
            };
            match r {
                Ok(run) => {
                    if run.extra.get("order_ok") == Some(&Value::Bool(false)) {
                        out.errors
                            .push(format!("{what}: receivers delivered different sequences"));
                    }
                    out.report.runs.push(run);
                }
                Err(e) => out.errors.push(format!("{what}: {e:#}")),
            }
        }
    }
    // The table's ratios are to the first kernel-UDP run; the fair
    // comparison is with the UDP run of the same group size.
    let udp: Vec<(Value, f64)> = out
        .report
        .runs
        .iter()
        .filter(|r| r.backend == "udp")
        .map(|r| {
            (
                r.extra.get("receivers").cloned().unwrap_or(Value::Null),
                r.pps,
            )
        })
        .collect();
    for r in &mut out.report.runs {
        let receivers = r.extra.get("receivers").cloned().unwrap_or(Value::Null);
        if let Some((_, base)) = udp.iter().find(|(n, _)| *n == receivers)
            && *base > 0.0
        {
            r.extra
                .insert("msgs_per_s_vs_udp".into(), json!(r.pps / base));
        }
    }
    out
}

fn base_run(args: &SequencerArgs, backend: Backend) -> Run {
    Run {
        scenario: "sequencer".into(),
        backend: backend.name().into(),
        duration_s: 0.0,
        sent: 0,
        received: 0,
        lost: 0,
        pps: 0.0,
        latency_ns: Latency::default(),
        latency_kind: "send-to-deliver".into(),
        mode: "closed-loop".into(),
        size: usize::from(args.size),
        offered_pps: 0.0,
        rate_pps: None,
        in_flight: Some(64 * u32::from(args.senders)),
        ns_per_packet: None,
        duplicates: 0,
        reordered: 0,
        warmup_s: args.warmup,
        extra: serde_json::Map::new(),
        curve: Vec::new(),
    }
}

/// Messages stamped by one sequencer core on this thread, with the wall
/// and CPU time it took: 50 members' Data frames in bursts of 32, every
/// group frame built.
fn stamp_rate(
    args: &SequencerArgs,
    duration: Duration,
    stop: &AtomicBool,
) -> (u64, Duration, Duration) {
    const SENDERS: u64 = 50;
    const BURST: usize = 32;
    // Offset of the sender sequence number: NFVinc header, then sender id.
    const SEQ_AT: usize = dataplane::wire::nfvinc::HEADER_LEN + 8;
    let payload = vec![0x5au8; usize::from(args.size)];
    let mut frames: Vec<Vec<u8>> = (1..=SENDERS)
        .map(|s| {
            let m = Message::Data(
                data::Repr {
                    sender: ProcessId(s),
                    sender_seq: 1,
                    barrier: 0,
                    mode: Mode::Atomic,
                },
                &payload,
            );
            let mut b = vec![0u8; 2048];
            let n = m.emit(GROUP, &mut b).expect("room for a Data message");
            b.truncate(n);
            b
        })
        .collect();
    let members: Vec<ProcessId> = (1..=SENDERS).map(ProcessId).collect();
    let mut cfg = SequencerConfig::new(ProcessId(SEQ_ID), GROUP);
    cfg.max_batch = args.max_batch.max(1);
    let mut s = Sequencer::new(cfg, &members, Time::ZERO);
    let mut out = vec![0u8; 2048];
    let (mut round, mut k, mut n) = (1u64, 0usize, 0u64);
    let started = Instant::now();
    let cpu0 = dataplane::time::thread_cpu_nanos();
    while started.elapsed() < duration && !stop.load(Ordering::Relaxed) {
        // Time is read once per 1,000 bursts.
        for _ in 0..1000 {
            let now = Time::from_nanos(n * 100 + 1);
            for _ in 0..BURST {
                let f = &mut frames[k];
                f[SEQ_AT..SEQ_AT + 8].copy_from_slice(&round.to_be_bytes());
                let _ = s.handle(now, f);
                k += 1;
                if k == frames.len() {
                    k = 0;
                    round += 1;
                }
            }
            while let Some(t) = s.poll_transmit(now, &mut out) {
                std::hint::black_box(&out[..t.len]);
            }
            n += BURST as u64;
        }
    }
    let cpu =
        std::time::Duration::from_nanos(dataplane::time::thread_cpu_nanos().saturating_sub(cpu0));
    (s.counters().stamped, started.elapsed(), cpu)
}

fn run_mem(args: &SequencerArgs, stop: &AtomicBool) -> anyhow::Result<Run> {
    let mut run = base_run(args, Backend::Mem);
    run.latency_kind = "none (stamping logic alone)".into();
    run.mode = "max".into();
    run.in_flight = None;
    let _ = stamp_rate(args, Duration::from_secs_f64(args.warmup.min(1.0)), stop);
    let (stamped, elapsed, cpu) = stamp_rate(args, Duration::from_secs_f64(args.duration), stop);
    if stamped == 0 {
        bail!("nothing stamped");
    }
    let secs = elapsed.as_secs_f64();
    run.duration_s = secs;
    run.sent = stamped;
    run.received = stamped;
    run.pps = stamped as f64 / secs;
    run.offered_pps = run.pps;
    run.ns_per_packet = Some(secs * 1e9 / stamped as f64);
    let x = &mut run.extra;
    x.insert("receivers".into(), json!(50));
    x.insert("senders".into(), json!(50));
    x.insert("msgs_per_s".into(), json!(run.pps));
    // The same per second of the thread's CPU time: what one core does
    // when other processes share it.
    x.insert(
        "msgs_per_cpu_s".into(),
        json!(stamped as f64 / cpu.as_secs_f64().max(1e-9)),
    );
    x.insert("order_ok".into(), json!(true));
    Ok(run)
}

/// Messages the senders may have sent that the slowest member has not yet
/// delivered (see the module docs): half a member's delivery window, so
/// that no member falls out of it while it catches up.
pub const GROUP_WINDOW: u64 = 2048;

/// A sender's pause while the group window is full.
const FLOW_PAUSE: Duration = Duration::from_micros(200);

/// Every how many messages (by global sequence number) the send-to-deliver
/// latency is taken, at every member: a systematic sample, so that the
/// clock read and the histogram (cache misses in fifty of them) cost the
/// members a 32nd of what they would; a 10-second run still takes
/// hundreds of thousands of samples, millions with fifty members.
pub const LATENCY_SAMPLE: u64 = 32;

/// What one member has delivered so far, published by its handler for the
/// senders' flow control and the measurement (no lock per delivery). Each
/// on its own cache lines: the senders read all of them at every batch.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Progress {
    delivered: AtomicU64,
    /// [`mix`] over `(seq, sender, sender_seq)` in delivery order.
    digest: AtomicU64,
    lost: AtomicU64,
}

/// A member's handler state: its latencies are recorded without a lock
/// and handed over to `out` when the member closes (its handler dropped).
struct Recorder {
    progress: Arc<Progress>,
    measuring: Arc<AtomicBool>,
    delivered: u64,
    digest: u64,
    lost: u64,
    hist: Histogram<u64>,
    out: Arc<Mutex<Histogram<u64>>>,
}

impl Recorder {
    fn on(&mut self, e: Event<'_>) {
        match e {
            Event::Deliver(d) => {
                self.delivered += 1;
                self.digest = mix(mix(mix(self.digest, d.seq), d.sender.0), d.sender_seq);
                if d.seq % LATENCY_SAMPLE == 0
                    && self.measuring.load(Ordering::Relaxed)
                    && d.payload.len() >= 8
                {
                    let mut t = [0u8; 8];
                    t.copy_from_slice(&d.payload[..8]);
                    let lat =
                        dataplane::time::monotonic_nanos().saturating_sub(u64::from_be_bytes(t));
                    let _ = self.hist.record(lat.max(1));
                }
                self.progress.digest.store(self.digest, Ordering::Relaxed);
                self.progress
                    .delivered
                    .store(self.delivered, Ordering::Release);
            }
            Event::Lost { first, end } => {
                self.lost += end - first;
                self.progress.lost.store(self.lost, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Ok(mut h) = self.out.lock() {
            let _ = h.add(&self.hist);
        }
    }
}

/// One step of an order-sensitive digest of 64-bit words (FNV-1a's
/// constants, a word at a time rather than a byte: three multiplications
/// per delivery instead of twenty-four).
fn mix(h: u64, x: u64) -> u64 {
    (h ^ x).wrapping_mul(0x100_0000_01b3).rotate_left(29)
}

const FNV_BASIS: u64 = 0xcbf2_9ce4_8422_2325;

fn member_cfg(k: u16, receivers: u16, args: &SequencerArgs) -> BroadcastConfig {
    let mut cfg = BroadcastConfig::new(
        ProcessId(u64::from(k)),
        GROUP,
        SocketAddrV4::new(SEQ_IP, SEQ_PORT),
        SocketAddrV4::new(MEMBERS_IP, MEMBER_PORT0 + k),
    );
    cfg.sequencer_id = ProcessId(SEQ_ID);
    cfg.multicast = args.multicast().then_some(MULTICAST);
    cfg.coalesce = args.coalesce(receivers);
    cfg.peers = (1..=receivers)
        .filter(|&j| j != k)
        .map(|j| {
            (
                ProcessId(u64::from(j)),
                SocketAddrV4::new(MEMBERS_IP, MEMBER_PORT0 + j),
            )
        })
        .collect();
    cfg
}

/// The UDP error counters of `ns` (`/proc/net/snmp`): datagrams its
/// sockets dropped, a full receive buffer among them.
fn udp_errors(ns: &Netns) -> Value {
    let Ok(text) = ns.exec("cat", &["/proc/net/snmp"]) else {
        return Value::Null;
    };
    let mut rows = text.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (rows.next(), rows.next()) else {
        return Value::Null;
    };
    let mut out = serde_json::Map::new();
    for (n, v) in names
        .split_whitespace()
        .zip(values.split_whitespace())
        .skip(1)
    {
        if matches!(n, "InErrors" | "RcvbufErrors" | "InDatagrams") {
            out.insert(n.to_owned(), json!(v.parse::<u64>().unwrap_or(0)));
        }
    }
    Value::Object(out)
}

/// CPU time (user and system, every thread) this process has used so far.
fn own_cpu() -> Duration {
    // SAFETY: all-zero bytes are a valid rusage, which getrusage fills.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out pointer for RUSAGE_SELF.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// CPU time (user and system) process `pid` has used so far, from
/// `/proc/<pid>/stat` (clock ticks); zero once it is gone.
fn proc_cpu(pid: Option<u32>) -> Duration {
    let read = || -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
        // After the parenthesised command name: utime and stime are the
        // 12th and 13th fields.
        let f: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
        let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Some(Duration::from_nanos(
            ticks.saturating_mul(1_000_000_000) / hz,
        ))
    };
    read().unwrap_or_default()
}

fn run_net(
    args: &SequencerArgs,
    backend: Backend,
    receivers: u16,
    stop: &AtomicBool,
) -> anyhow::Result<Run> {
    let bin = args.vnf_bin().map_err(|e| anyhow!(e))?;
    dataplane::netns::check_privileges().context("the afxdp and udp backends build namespaces")?;
    let senders = args.senders.min(receivers);
    let multicast = args.multicast();
    let vnf_ns = Netns::new("sqpv")?;
    let members_ns = Netns::new("sqpm")?;
    veth(
        End {
            ns: &vnf_ns,
            ifname: "eth0",
            cidr: &format!("{SEQ_IP}/24"),
        },
        End {
            ns: &members_ns,
            ifname: "eth0",
            cidr: &format!("{MEMBERS_IP}/24"),
        },
    )?;
    for ns in [&vnf_ns, &members_ns] {
        // Where multicast goes (kernel UDP sends need a route for it).
        ns.ip(&["route", "add", "224.0.0.0/4", "dev", "eth0"])?;
    }
    let run_dir = RunDir::create(
        args.log_dir.as_deref(),
        "seq",
        &format!("{}-{receivers}", backend.name()),
    )?;
    let dir = run_dir.path().to_path_buf();

    // Members first, so that the sequencer's first frames find them.
    let measuring = Arc::new(AtomicBool::new(false));
    let hist = Arc::new(Mutex::new(new_histogram()));
    let mut handles = Vec::new();
    let mut progress = Vec::new();
    for k in 1..=receivers {
        let p = Arc::new(Progress::default());
        p.digest.store(FNV_BASIS, Ordering::Relaxed);
        let mut rec = Recorder {
            progress: p.clone(),
            measuring: measuring.clone(),
            delivered: 0,
            digest: FNV_BASIS,
            lost: 0,
            hist: new_histogram(),
            out: hist.clone(),
        };
        let cfg = member_cfg(k, receivers, args);
        let h = members_ns
            .spawn(move || Broadcast::join_with(cfg, move |e| rec.on(e)))
            .join()
            .map_err(|_| anyhow!("member set-up panicked"))??
            .context("member")?;
        handles.push(Arc::new(h));
        progress.push(p);
    }
    let progress = Arc::new(progress);
    let members = (1..=receivers)
        .map(|k| format!("{k}={MEMBERS_IP}:{}", MEMBER_PORT0 + k))
        .collect::<Vec<_>>()
        .join(",");
    let control = dir.join("seq.sock");
    let mut cmd = vnf_ns.command(&bin);
    cmd.args([
        "--backend",
        backend.name(),
        "--iface",
        "eth0",
        "--bind",
        "copy",
    ])
    .args(["--port", &SEQ_PORT.to_string()])
    .args(["--group", &GROUP.to_string(), "--id", &SEQ_ID.to_string()])
    .args(["--members", &members])
    .args(["--max-batch", &args.max_batch.to_string()])
    .args(["--poll", &args.poll])
    .arg("--control")
    .arg(&control)
    .env("RUST_LOG", "warn");
    if multicast {
        cmd.args(["--multicast", &MULTICAST.to_string()]);
    }
    if let Some(c) = args.core {
        cmd.args(["--core", &c.to_string()]);
    }
    if args.zero_udp_checksum {
        cmd.arg("--zero-udp-checksum");
    }
    if args.rt_priority > 0 {
        cmd.args(["--rt-priority", &args.rt_priority.to_string()]);
    }
    let mut vnf = Vnf::spawn(cmd, &dir.join("vnf-sequencer.log"), Duration::from_secs(10))?;

    // Senders: closed loop, as fast as the window (theirs, and the
    // group's) lets each.
    let sending = Arc::new(AtomicBool::new(true));
    let sent_total = Arc::new(AtomicU64::new(0));
    let flow_pauses = Arc::new(AtomicU64::new(0));
    let size = usize::from(args.size);
    let mut threads = Vec::new();
    for (i, h) in handles.iter().take(usize::from(senders)).enumerate() {
        let (h, sending, sent_total) = (h.clone(), sending.clone(), sent_total.clone());
        let (progress, flow_pauses) = (progress.clone(), flow_pauses.clone());
        threads.push(std::thread::spawn(move || -> anyhow::Result<()> {
            // A window's worth at a time, in one system call.
            let mut batch = vec![vec![0u8; size]; 64];
            for p in &mut batch {
                p[8..16].copy_from_slice(&(i as u64).to_be_bytes());
            }
            while sending.load(Ordering::Relaxed) {
                let slowest = progress
                    .iter()
                    .map(|p| p.delivered.load(Ordering::Relaxed))
                    .min()
                    .unwrap_or(0);
                if sent_total.load(Ordering::Relaxed).saturating_sub(slowest) >= GROUP_WINDOW {
                    flow_pauses.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(FLOW_PAUSE);
                    continue;
                }
                // The send time is taken once the window has room: a
                // closed-loop sender is always waiting for it, and a time
                // taken before that wait would add it (up to a round trip)
                // to the send-to-deliver latency.
                match h.wait_for_room(Duration::from_millis(500)) {
                    Ok(()) => {}
                    Err(libnfvinc::broadcast::BroadcastError::WindowFull(_)) => continue,
                    Err(e) => return Err(e.into()),
                }
                let now = dataplane::time::monotonic_nanos().to_be_bytes();
                for p in &mut batch {
                    p[..8].copy_from_slice(&now);
                }
                match h.send_batch(Mode::Atomic, &batch, Duration::from_millis(500)) {
                    Ok(n) => {
                        sent_total.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(libnfvinc::broadcast::BroadcastError::WindowFull(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        }));
    }

    let delivered = |p: &[Arc<Progress>]| -> Vec<u64> {
        p.iter()
            .map(|p| p.delivered.load(Ordering::Acquire))
            .collect()
    };
    let t0 = Instant::now();
    let warm = Duration::from_secs_f64(args.warmup);
    let end = warm + Duration::from_secs_f64(args.duration);
    // At the start of the measured window: deliveries, sends, flow pauses,
    // the time, and the CPU time of the members' process and the VNF.
    type Window = (Vec<u64>, u64, u64, Instant, Duration, Duration);
    let mut window: Option<Window> = None;
    let mut last = (0u64, Instant::now());
    let mut stalled = None;
    while t0.elapsed() < end && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
        if window.is_none() && t0.elapsed() >= warm {
            window = Some((
                delivered(&progress),
                sent_total.load(Ordering::Relaxed),
                flow_pauses.load(Ordering::Relaxed),
                Instant::now(),
                own_cpu(),
                proc_cpu(vnf.pid()),
            ));
            measuring.store(true, Ordering::Relaxed);
        }
        let now_min = delivered(&progress).into_iter().min().unwrap_or(0);
        if now_min > last.0 {
            last = (now_min, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(5) {
            stalled = Some(format!(
                "no message delivered at every member for 5 s (see {})",
                dir.display()
            ));
            break;
        }
    }
    let at_end = delivered(&progress);
    let sent_at_end = sent_total.load(Ordering::Relaxed);
    let pauses_at_end = flow_pauses.load(Ordering::Relaxed);
    let cpu_at_end = (own_cpu(), proc_cpu(vnf.pid()));
    measuring.store(false, Ordering::Relaxed);
    sending.store(false, Ordering::Relaxed);
    for t in threads {
        t.join().map_err(|_| anyhow!("a sender panicked"))??;
    }
    if let Some(e) = stalled {
        bail!(e);
    }
    let Some((at0, sent0, pauses0, w0, own0, vnf0)) = window else {
        bail!("interrupted before the measured window");
    };
    let secs = w0.elapsed().as_secs_f64();

    // Order: every member catches up to everything sent, same digest.
    let total = sent_total.load(Ordering::Relaxed);
    let caught_up = Instant::now() + Duration::from_secs(10);
    while Instant::now() < caught_up && delivered(&progress).iter().any(|&d| d < total) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let seq_counters = call(&control, &json!({"op": "counters"})).unwrap_or(Value::Null);
    let member_counters: Vec<Value> = handles
        .iter()
        .take(3)
        .map(|h| {
            let c = h.counters();
            json!({"delivered": c.delivered, "nacks": c.nacks, "peer_nacks": c.peer_nacks,
                   "data_sent": c.data_sent, "duplicates": c.duplicates})
        })
        .collect();
    let repairs: u64 = handles.iter().map(|h| h.counters().repairs).sum();
    let nacks: u64 = handles
        .iter()
        .map(|h| {
            let c = h.counters();
            c.nacks + c.peer_nacks
        })
        .sum();
    // Closing the members joins their threads (so everything they
    // published is seen) and hands their latencies over.
    drop(handles);
    let drops = udp_errors(&members_ns);
    let _ = vnf.stop();
    let finals: Vec<(u64, u64, u64)> = progress
        .iter()
        .map(|p| {
            (
                p.delivered.load(Ordering::Acquire),
                p.digest.load(Ordering::Relaxed),
                p.lost.load(Ordering::Relaxed),
            )
        })
        .collect();
    let order_ok = finals
        .iter()
        .all(|f| f.0 == total && f.1 == finals[0].1 && f.2 == 0);
    run_dir.finish(order_ok, &[]);
    let hist = hist.lock().map_err(|_| anyhow!("a member panicked"))?;

    let per_member: Vec<u64> = at_end.iter().zip(&at0).map(|(a, b)| a - b).collect();
    let slowest = per_member.iter().copied().min().unwrap_or(0);
    let mut run = base_run(args, backend);
    run.duration_s = secs;
    run.sent = sent_at_end - sent0;
    run.received = slowest;
    run.lost = 0;
    run.pps = slowest as f64 / secs;
    run.offered_pps = run.sent as f64 / secs;
    run.latency_ns = Latency::of(&hist);
    run.curve = crate::report::curve(&hist);
    let x = &mut run.extra;
    x.insert("receivers".into(), json!(receivers));
    x.insert("senders".into(), json!(senders));
    x.insert("msgs_per_s".into(), json!(run.pps));
    x.insert("order_ok".into(), json!(order_ok));
    x.insert("poll".into(), json!(args.poll));
    x.insert("rt_priority".into(), json!(args.rt_priority));
    x.insert("multicast".into(), json!(multicast));
    x.insert("zero_udp_checksum".into(), json!(args.zero_udp_checksum));
    x.insert(
        "coalesce_us".into(),
        json!(args.coalesce(receivers).as_micros() as u64),
    );
    x.insert("latency_every".into(), json!(LATENCY_SAMPLE));
    x.insert("group_window".into(), json!(GROUP_WINDOW));
    x.insert("flow_pauses".into(), json!(pauses_at_end - pauses0));
    // CPU per message delivered at every member, in nanoseconds: what the
    // run costs whatever else the (shared) machine does meanwhile. The
    // members' process holds every member and sender thread; kernel work
    // done on their behalf in their context (receives, and the sequencer's
    // ingress path under their sends) counts there.
    let per_msg = |d: Duration| d.as_nanos() as f64 / slowest.max(1) as f64;
    x.insert(
        "cpu_ns_per_msg".into(),
        json!({
            "members": per_msg(cpu_at_end.0.saturating_sub(own0)),
            "vnf": per_msg(cpu_at_end.1.saturating_sub(vnf0)),
        }),
    );
    x.insert("total_sent".into(), json!(total));
    x.insert(
        "final_delivered_min".into(),
        json!(finals.iter().map(|f| f.0).min()),
    );
    x.insert("sequencer".into(), seq_counters);
    x.insert("members_sample".into(), json!(member_counters));
    x.insert("members_nacks".into(), json!(nacks));
    x.insert("members_repairs".into(), json!(repairs));
    x.insert("members_udp".into(), drops);
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: SequencerArgs,
    }

    #[test]
    fn the_stamping_logic_runs_and_the_issue_command_line_parses() {
        let t = T::try_parse_from(
            "x --backend afxdp,udp --receivers 1,5,50 --duration 10 --json out.json"
                .split_whitespace(),
        )
        .unwrap();
        assert_eq!(t.a.receivers, [1, 5, 50]);
        assert_eq!(t.a.backend, [Backend::Afxdp, Backend::Udp]);
        assert!(t.a.multicast(), "one send per group frame by default");
        let u = T::try_parse_from("x --backend udp --delivery unicast".split_whitespace()).unwrap();
        assert!(!u.a.multicast());
        let m =
            T::try_parse_from("x --backend udp --delivery unicast --multicast".split_whitespace())
                .unwrap();
        assert!(m.a.multicast(), "the old flag still asks for multicast");
        let (n, _, _) = stamp_rate(&t.a, Duration::from_millis(50), &AtomicBool::new(false));
        assert!(n > 1000, "stamped {n}");
        assert!(T::try_parse_from("x --backend udp --receivers 0".split_whitespace()).is_err());
    }
}
