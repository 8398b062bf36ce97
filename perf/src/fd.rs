//! The failure-detector scenario: `nfvinc-perf fd`.
//!
//! For `afxdp` and `udp`, each run builds its own topology: a router
//! namespace (the NFVI host's switch) with one port per process host
//! (`p1`..`pH`, veths to host namespaces) and an uplink to the namespace
//! where `vnf-fd` runs, pinned, on the backend under test, following the
//! ports' link state (netlink). `--processes` monitored processes are
//! spread over the hosts; one generator thread per host sends every
//! process's heartbeats on its own period and phase (one `sendmmsg` per
//! due group, woken at most every `tick`, never per heartbeat).
//!
//! The timeline of a run:
//!
//! 1. heartbeats start, the processes are added (each behind its port),
//!    then `--warmup` seconds;
//! 2. the measured window of `--duration` seconds: `--crash` processes,
//!    picked at random, crash at random times (they stop sending). A
//!    crash counts from the send time of the crashed process's last
//!    heartbeat: it crashed right after it, the worst case for detection;
//! 3. after the window, the last host's port is set down (`SIOCSIFFLAGS`
//!    from a thread inside the router namespace, stamped just before the
//!    call), and every live process behind it must become `unreachable`.
//!
//! Figures (the detector's transitions carry `CLOCK_MONOTONIC` stamps, the
//! clock the generators and the link-down stamp read, so delays are
//! measured where they happen):
//!
//! * `heartbeats_per_s`: heartbeats the detector ingested in the window
//!   (its counter), per second;
//! * `detection_ns`: crash-to-suspect percentiles (`p50`, `p99`, `max`);
//!   `undetected` crashed processes never suspected fail the run;
//! * `false_suspicions`: suspicions, in the window, of processes that had
//!   not crashed;
//! * `link_down_ns`: link-down to `unreachable`, over the processes behind
//!   the last host's port, which goes down and up again `link_flaps` (5)
//!   times after the window;
//! * `cpu_s`: CPU time of the `vnf-fd` process in the window
//!   (`/proc/PID/stat`), and `cpu_util` = `cpu_s / duration_s`.
//!
//! For `mem`, the detector logic alone on one core, in process: 1,000
//! processes' heartbeat messages (NFVinc header and body) parsed and
//! ingested a burst of 32 at a time, timers served between bursts
//! (`heartbeats_per_s`); and the whole VNF shell on the in-memory backend,
//! frames (Ethernet, IPv4, UDP checksum) to detector
//! (`service_heartbeats_per_s`).
//!
//! The JSON report has the echo scenario's shape (`runs`: scenario,
//! backend, duration_s, sent, received, lost, pps, latency_ns…) plus those
//! fields.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use clap::Args;
use dataplane::control::{ControlClient, call};
use dataplane::netns::{End, Netns, Routed, veth};
use dataplane::time::{monotonic_nanos, thread_cpu_nanos};
use dataplane::wire::nfvinc::HEADER_LEN;
use serde_json::{Value, json};
use vnf_fd::wire::{Message, heartbeat};
use vnf_fd::{Config, Detector, ProcessId, ProcessSpec, Time};

use crate::cli::Backend;
use crate::report::{Latency, Report, Run, new_histogram};
use crate::run_dir::RunDir;
use crate::vnf::Vnf;

/// UDP port of the detector's direct channel in a run.
const PORT: u16 = 7300;
/// Address of the detector VNF.
const VNF_ADDR: Ipv4Addr = Ipv4Addr::new(10, 81, 0, 2);
/// Heartbeats per `sendmmsg`.
const SEND_BATCH: usize = 64;
/// How long after the window the crashes' suspicions and the link-down
/// events may take to arrive before they count as missing.
const SETTLE: Duration = Duration::from_secs(2);
/// Times the last host's port goes down (and up again) after the window:
/// one sample is at the mercy of one scheduling stall of this machine.
const LINK_FLAPS: usize = 5;

/// Options of `nfvinc-perf fd`.
#[derive(Debug, Clone, Args)]
pub struct FdArgs {
    /// Backends to run, in turn, comma separated (e.g. `afxdp,udp`).
    #[arg(long, value_enum, value_delimiter = ',', required = true)]
    pub backend: Vec<Backend>,
    /// Monitored processes (1..=100000), spread over the hosts.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub processes: u32,
    /// Heartbeat period of every process, in milliseconds (1..=10000).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub interval_ms: u64,
    /// The detector's safety margin, in milliseconds: how late past its
    /// expected arrival a heartbeat may be before the process is suspected.
    /// A crash is suspected about one interval plus the margin after the
    /// last heartbeat (Chen's configuration: margin = detection bound -
    /// interval); 10 ms at 10 ms heartbeats gives about 20 ms, and lets a
    /// sender or path be held up 10 ms (a busy 2-vCPU VM's scheduling
    /// stalls reach that) without a false suspicion.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub margin_ms: u64,
    /// Measured seconds per backend, warm-up excluded (at most 3600).
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = crate::cli::parse_duration)]
    pub duration: f64,
    /// Warm-up seconds before the measured window (at most 60).
    #[arg(long, value_name = "SECONDS", default_value = "2", value_parser = crate::cli::parse_warmup)]
    pub warmup: f64,
    /// Processes that crash at random times in the window (0: a crash-free
    /// run, where any suspicion is false).
    #[arg(long, default_value_t = 50)]
    pub crash: u32,
    /// Process hosts, each behind its own port of the router (1..=16); the
    /// last one's port goes down after the window.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=16))]
    pub hosts: u8,
    /// Core to pin the detector to (default: the last core).
    #[arg(long)]
    pub core: Option<usize>,
    /// Seed of the crash schedule.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write the results as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// The `vnf-fd` binary; default: next to this one.
    #[arg(long, value_name = "PATH")]
    pub vnf_bin: Option<PathBuf>,
    /// Directory for the VNF's log and each run's records (events.json:
    /// every state change; late.json: the generators' late sends); default:
    /// a temporary one, kept (its path is `run_dir` in the report).
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
}

impl FdArgs {
    /// Checks what clap cannot: crashes fit among the processes and leave
    /// some behind the port that goes down.
    pub fn validate(&self) -> Result<(), String> {
        if self.crash >= self.processes {
            return Err(format!(
                "--crash {} must be below --processes {}: live processes are needed for the link-down measurement",
                self.crash, self.processes
            ));
        }
        if u32::from(self.hosts) > self.processes {
            return Err(format!(
                "--hosts {} is more than --processes {}",
                self.hosts, self.processes
            ));
        }
        Ok(())
    }

    /// The `vnf-fd` binary to run.
    pub fn vnf_bin(&self) -> Result<PathBuf, String> {
        crate::cli::vnf_binary(self.vnf_bin.as_deref(), "vnf-fd")
    }
}

/// The runs that completed, and the errors of those that did not.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The report.
    pub report: Report,
    /// `backend: error` for each run that failed (a missed crash included).
    pub errors: Vec<String>,
}

/// Runs every backend of `args` in turn; `stop` (a signal) ends the current
/// run early and starts no other.
pub fn run_all(args: &FdArgs, stop: &AtomicBool) -> Outcome {
    let mut out = Outcome::default();
    for &backend in &args.backend {
        if stop.load(Ordering::Relaxed) {
            out.errors
                .push(format!("{}: not run (interrupted)", backend.name()));
            continue;
        }
        let r = match backend {
            Backend::Mem => run_mem(args, stop),
            Backend::Afxdp | Backend::Udp | Backend::Dpdk => run_net(args, backend, stop),
        };
        match r {
            Ok(run) => {
                if let Some(n) = run.extra.get("undetected").and_then(Value::as_u64)
                    && n > 0
                {
                    out.errors.push(format!(
                        "{}: {n} crashed processes were never suspected",
                        backend.name()
                    ));
                }
                out.report.runs.push(run);
            }
            Err(e) => out.errors.push(format!("{}: {e:#}", backend.name())),
        }
    }
    out
}

/// The one-line summary of each run printed under the table.
pub fn summary(run: &Run) -> String {
    let e = &run.extra;
    if run.backend == "mem" {
        return format!(
            "mem: detector logic {:.1} M heartbeats/s ({:.1} ns each), {:.1} M per CPU second; whole shell from frames {:.1} M/s",
            run.pps / 1e6,
            run.ns_per_packet.unwrap_or(f64::NAN),
            e["heartbeats_per_cpu_s"].as_f64().unwrap_or(0.0) / 1e6,
            e["service_heartbeats_per_s"].as_f64().unwrap_or(0.0) / 1e6,
        );
    }
    let ms = |k: &str, p: &str| e[k][p].as_f64().unwrap_or(f64::NAN) / 1e6;
    format!(
        "{}: {:.0} heartbeats/s, detection p50/p99/max {:.1}/{:.1}/{:.1} ms, false suspicions {} ({} of processes whose sender stalled past the margin; local pauses {}, shared silences {}), link down p50/max {:.2}/{:.2} ms, detector cpu {:.2} s ({:.0}% of a core), hypervisor steal {:.1}%",
        run.backend,
        e["heartbeats_per_s"].as_f64().unwrap_or(0.0),
        ms("detection_ns", "p50"),
        ms("detection_ns", "p99"),
        ms("detection_ns", "max"),
        e["false_suspicions"],
        e["sender_stalled"],
        e["local_pauses"],
        e["shared_silences"],
        ms("link_down_ns", "p50"),
        ms("link_down_ns", "max"),
        e["cpu_s"].as_f64().unwrap_or(f64::NAN),
        100.0 * e["cpu_util"].as_f64().unwrap_or(f64::NAN),
        e["host_steal_pct"].as_f64().unwrap_or(f64::NAN),
    )
}

fn base_run(args: &FdArgs, backend: Backend) -> Run {
    Run {
        scenario: "fd".into(),
        backend: backend.name().into(),
        duration_s: 0.0,
        sent: 0,
        received: 0,
        lost: 0,
        pps: 0.0,
        latency_ns: Latency::default(),
        latency_kind: "crash-to-suspect".into(),
        mode: "open-loop".into(),
        size: 0,
        offered_pps: 0.0,
        rate_pps: None,
        in_flight: None,
        ns_per_packet: None,
        duplicates: 0,
        reordered: 0,
        warmup_s: args.warmup,
        extra: serde_json::Map::new(),
        curve: Vec::new(),
    }
}

/// SplitMix64: the crash schedule and the in-memory ids.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

// ---------------------------------------------------------------- mem ---

const MEM_PROCESSES: usize = 1000;
const MEM_BURST: usize = 32;
const MEM_INTERVAL_NS: u64 = 10_000_000;

/// One heartbeat message per process, NFVinc header included.
fn heartbeat_messages(ids: &[ProcessId]) -> Vec<Vec<u8>> {
    ids.iter()
        .map(|&process| {
            let mut buf = vec![0u8; HEADER_LEN + heartbeat::LEN];
            let n = Message::Heartbeat(heartbeat::Repr {
                process,
                seq: 1,
                sent_ns: 1,
            })
            .emit(0, &mut buf)
            .expect("room for a heartbeat");
            buf.truncate(n);
            buf
        })
        .collect()
}

fn mem_processes() -> Vec<ProcessId> {
    let mut rng = 0x5eed;
    (0..MEM_PROCESSES)
        .map(|_| ProcessId(splitmix(&mut rng)))
        .collect()
}

/// Heartbeats parsed and ingested per second by the detector alone, on
/// `MEM_PROCESSES` processes, simulated time advancing one period per
/// round; returns (heartbeats, elapsed, transitions, CPU seconds of this
/// thread).
fn detector_rate(
    duration: Duration,
    stop: &AtomicBool,
) -> anyhow::Result<(u64, Duration, u64, f64)> {
    let ids = mem_processes();
    let msgs = heartbeat_messages(&ids);
    let mut det = Detector::with_capacity(Config::default(), ids.len())?;
    for &id in &ids {
        det.add_process(ProcessSpec::new(id), Time::ZERO)?;
    }
    let spacing = MEM_INTERVAL_NS / ids.len() as u64;
    let mut burst: Vec<(ProcessId, Time)> = Vec::with_capacity(MEM_BURST);
    let started = Instant::now();
    let cpu0 = thread_cpu_nanos();
    let mut n = 0u64;
    let mut round = 0u64;
    while started.elapsed() < duration && !stop.load(Ordering::Relaxed) {
        let base = 1_000_000 + round * MEM_INTERVAL_NS;
        for first in (0..msgs.len()).step_by(MEM_BURST) {
            burst.clear();
            for (i, m) in msgs
                .iter()
                .enumerate()
                .skip(first)
                .take(MEM_BURST.min(msgs.len() - first))
            {
                if let Some(process) = Message::heartbeat_process(m) {
                    burst.push((process, Time::from_nanos(base + i as u64 * spacing)));
                }
            }
            det.heartbeats(&burst);
            let now = burst.last().map_or(Time::ZERO, |b| b.1);
            if det.poll_timeout().is_some_and(|t| t <= now) {
                det.handle_timeout(now);
            }
            while det.poll_event().is_some() {}
        }
        n += msgs.len() as u64;
        round += 1;
    }
    let cpu = (thread_cpu_nanos() - cpu0) as f64 / 1e9;
    let c = det.counters();
    ensure!(
        c.heartbeats == n,
        "the detector ingested {} heartbeats of {n}",
        c.heartbeats
    );
    Ok((n, started.elapsed(), c.transitions, cpu))
}

/// Heartbeat frames through the whole VNF shell on the in-memory backend;
/// returns (heartbeats, elapsed).
fn service_rate(duration: Duration, stop: &AtomicBool) -> anyhow::Result<(u64, Duration)> {
    use dataplane::io::PacketIo;
    use dataplane::io::mem::{MemConfig, MemIo};
    use dataplane::runtime::Vnf as _;
    use dataplane::wire::{FrameSpec, write_udp_frame};

    let ids = mem_processes();
    let mut svc = vnf_fd::service::FdService::new(Config::default(), PORT)?;
    let t0 = Instant::now();
    for &id in &ids {
        svc.add(ProcessSpec::new(id), None, t0)
            .map_err(|e| anyhow!("{e}"))?;
    }
    let spec = FrameSpec {
        src_mac: [2; 6],
        dst_mac: [4; 6],
        src_ip: Ipv4Addr::new(10, 0, 0, 1),
        dst_ip: VNF_ADDR,
        src_port: 40_000,
        dst_port: PORT,
    };
    let frames: Vec<Vec<u8>> = heartbeat_messages(&ids)
        .iter()
        .map(|m| {
            let mut f = vec![0u8; 256];
            let n = write_udp_frame(&mut f, &spec, m).expect("room for a frame");
            f.truncate(n);
            f
        })
        .collect();
    let mut io = MemIo::new(MemConfig {
        chunks: 256,
        chunk_size: 2048,
        burst: MEM_BURST,
        loopback: false,
    })?;
    let mut batch = io.new_batch();
    let started = Instant::now();
    let mut n = 0u64;
    let mut next = 0usize;
    while started.elapsed() < duration && !stop.load(Ordering::Relaxed) {
        for _ in 0..64 {
            for _ in 0..MEM_BURST {
                io.inject(&frames[next])?;
                next = (next + 1) % frames.len();
            }
            let got = io.recv(&mut batch)?;
            svc.process(Instant::now(), &mut batch);
            if !batch.is_empty() {
                io.send(&mut batch)?;
                io.drain_sent(|_| {});
            }
            n += got as u64;
        }
    }
    let ingested = svc.detector().counters().heartbeats;
    ensure!(
        ingested == n,
        "the service ingested {ingested} heartbeats of {n} frames"
    );
    Ok((n, started.elapsed()))
}

fn run_mem(args: &FdArgs, stop: &AtomicBool) -> anyhow::Result<Run> {
    let mut run = base_run(args, Backend::Mem);
    run.latency_kind = "none (detector logic alone)".into();
    run.mode = "max".into();
    run.size = 14 + 20 + 8 + HEADER_LEN + heartbeat::LEN;
    let d = Duration::from_secs_f64(args.duration);
    let _ = detector_rate(Duration::from_secs_f64(args.warmup.min(1.0)), stop)?;
    let (n, elapsed, transitions, cpu) = detector_rate(d / 2, stop)?;
    let (sn, selapsed) = service_rate(d / 2, stop)?;
    let secs = elapsed.as_secs_f64();
    run.duration_s = secs + selapsed.as_secs_f64();
    run.sent = n;
    run.received = n;
    run.pps = n as f64 / secs;
    run.offered_pps = run.pps;
    run.ns_per_packet = Some(secs * 1e9 / n.max(1) as f64);
    let service = sn as f64 / selapsed.as_secs_f64();
    let e = &mut run.extra;
    e.insert("processes".into(), json!(MEM_PROCESSES));
    e.insert("heartbeats_per_s".into(), json!(run.pps));
    // The machine is shared: per second of CPU the thread had is what one
    // core sustains.
    e.insert(
        "heartbeats_per_cpu_s".into(),
        json!(n as f64 / cpu.max(1e-9)),
    );
    e.insert("cpu_s".into(), json!(cpu));
    e.insert("service_heartbeats_per_s".into(), json!(service));
    e.insert(
        "service_ns_per_heartbeat".into(),
        json!(selapsed.as_secs_f64() * 1e9 / sn.max(1) as f64),
    );
    e.insert("false_suspicions".into(), json!(transitions));
    Ok(run)
}

// ---------------------------------------------------------------- net ---

/// The process hosts behind the router's ports, and the detector's
/// namespace on the router's uplink.
struct Topology {
    net: Routed,
    vnf: Netns,
}

impl Topology {
    fn new(hosts: usize) -> anyhow::Result<Self> {
        let net = Routed::new("fdph", [10, 82], hosts)?;
        let vnf = Netns::new("fdpvnf")?;
        veth(
            End {
                ns: &net.router,
                ifname: "uplink",
                cidr: "10.81.0.1/24",
            },
            End {
                ns: &vnf,
                ifname: "eth0",
                cidr: &format!("{VNF_ADDR}/24"),
            },
        )?;
        vnf.ip(&["route", "add", "default", "via", "10.81.0.1"])?;
        Ok(Topology { net, vnf })
    }
}

/// One process as its host's generator drives it.
#[derive(Debug, Clone, Copy)]
struct Proc {
    id: u64,
    /// Offset of its heartbeats within the period.
    phase_ns: u64,
    /// It sends nothing due at or after this time.
    crash_at: Option<u64>,
}

/// What a generator thread did.
#[derive(Debug, Default)]
struct GenOut {
    /// Send time of each process's last heartbeat: (id, time), for those
    /// that sent one.
    last_sent: Vec<(u64, u64)>,
    /// Heartbeats sent in the measured window.
    window_sent: u64,
    /// Heartbeats the kernel refused (sendmmsg short or failed).
    send_errors: u64,
    /// Heartbeats of the measured window sent more than `late_ns` after
    /// they were due: the generator itself was held up (a suspicion of
    /// such a process is the sender's fault, not the detector's).
    late_sends: u64,
    /// The latest a heartbeat of the window was sent, past its due time.
    max_late_ns: u64,
    /// (process, due time, lateness) of the late sends, the first
    /// `MAX_LATE_RECORDS`: written to `late.json` beside the events.
    late: Vec<(u64, u64, u64)>,
}

/// Late sends recorded per generator.
const MAX_LATE_RECORDS: usize = 100_000;

/// When a generator sends (all `CLOCK_MONOTONIC` nanoseconds).
#[derive(Debug, Clone, Copy)]
struct Schedule {
    /// Heartbeat period.
    interval_ns: u64,
    /// Longest sleep between two looks at what is due.
    tick_ns: u64,
    /// First period's start.
    start: u64,
    /// The measured window.
    window: (u64, u64),
    /// Nothing is sent from then on.
    end: u64,
    /// Sends later than this past their due time count as late.
    late_ns: u64,
}

/// Sends heartbeats for `procs` to the detector from `start` until `end`
/// (or `stop`), every `interval_ns`, each on its phase; wakes at most every
/// `tick_ns` and sends what is due in batches.
fn generate(procs: Vec<Proc>, at: Schedule, stop: &AtomicBool) -> anyhow::Result<GenOut> {
    let Schedule {
        interval_ns,
        tick_ns,
        start,
        window,
        end,
        late_ns,
    } = at;
    let sock =
        UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)).context("generator socket")?;
    sock.connect(SocketAddrV4::new(VNF_ADDR, PORT))
        .context("connecting the generator socket")?;
    // Real-time priority, as libnfvinc's Heartbeater asks for: a sender
    // held up by other load would make its processes look late, and the
    // run would measure the generator instead of the detector.
    if !dataplane::runtime::set_realtime(10) {
        tracing::warn!(
            "generator thread runs without real-time priority: late heartbeats may count as false suspicions"
        );
    }
    let mut procs = procs;
    procs.sort_by_key(|p| p.phase_ns);
    let mut next_due: Vec<u64> = procs.iter().map(|p| start + p.phase_ns).collect();
    let mut seq = vec![0u64; procs.len()];
    // Indexed like `procs`: no map work per heartbeat.
    let mut last_sent = vec![None; procs.len()];
    let mut bufs = vec![[0u8; HEADER_LEN + heartbeat::LEN]; SEND_BATCH];
    let mut out = GenOut::default();
    // Processes are sorted by phase, so within a period the due ones are a
    // run from a cursor that goes round.
    let mut cursor = 0usize;
    let mut wake = start;
    while wake < end && !stop.load(Ordering::Relaxed) {
        sleep_until(wake);
        let now = monotonic_nanos();
        let mut n = 0;
        let mut scanned = 0;
        while scanned < procs.len() && next_due[cursor] <= now {
            let p = procs[cursor];
            let due = next_due[cursor];
            next_due[cursor] = due + interval_ns;
            let alive = p.crash_at.is_none_or(|c| due < c);
            if alive {
                if now >= window.0 && now < window.1 {
                    let late = now - due;
                    out.max_late_ns = out.max_late_ns.max(late);
                    if late > late_ns {
                        out.late_sends += 1;
                        if out.late.len() < MAX_LATE_RECORDS {
                            out.late.push((p.id, due, late));
                        }
                    }
                }
                let msg = Message::Heartbeat(heartbeat::Repr {
                    process: ProcessId(p.id),
                    seq: seq[cursor],
                    sent_ns: now,
                });
                seq[cursor] += 1;
                msg.emit(0, &mut bufs[n])
                    .map_err(|e| anyhow!("heartbeat: {e}"))?;
                last_sent[cursor] = Some(now);
                n += 1;
                if n == SEND_BATCH {
                    send_batch(&sock, &bufs[..n], &mut out, now, window);
                    n = 0;
                }
            }
            cursor = (cursor + 1) % procs.len();
            scanned += 1;
        }
        send_batch(&sock, &bufs[..n], &mut out, now, window);
        let next = next_due[cursor];
        wake = next.max(now + tick_ns);
    }
    out.last_sent = procs
        .iter()
        .zip(last_sent)
        .filter_map(|(p, t)| Some((p.id, t?)))
        .collect();
    Ok(out)
}

fn sleep_until(ns: u64) {
    let ts = libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: a valid timespec; an early return (EINTR) only wakes the
    // loop early, which it tolerates.
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    };
}

/// One `sendmmsg` for `bufs` on the connected socket.
fn send_batch(
    sock: &UdpSocket,
    bufs: &[[u8; HEADER_LEN + heartbeat::LEN]],
    out: &mut GenOut,
    now: u64,
    window: (u64, u64),
) {
    if bufs.is_empty() {
        return;
    }
    let mut iov: [libc::iovec; SEND_BATCH] = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; SEND_BATCH];
    // SAFETY: an all-zero mmsghdr is a valid "no address, no control" header.
    let mut hdrs: [libc::mmsghdr; SEND_BATCH] = unsafe { std::mem::zeroed() };
    for (i, b) in bufs.iter().enumerate() {
        iov[i].iov_base = b.as_ptr() as *mut libc::c_void;
        iov[i].iov_len = b.len();
        hdrs[i].msg_hdr.msg_iov = &mut iov[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: `hdrs[..len]` point at `iov` entries that point at `bufs`,
    // all alive for the call.
    let r = unsafe {
        libc::sendmmsg(
            sock.as_raw_fd(),
            hdrs.as_mut_ptr(),
            bufs.len() as libc::c_uint,
            0,
        )
    };
    let sent = if r < 0 { 0 } else { r as u64 };
    out.send_errors += bufs.len() as u64 - sent;
    if now >= window.0 && now < window.1 {
        out.window_sent += sent;
    }
}

/// CPU time of `pid` so far, in seconds.
/// Whether `process`, suspected at `at`, had a heartbeat due before then
/// that its generator had not sent yet (or sent less than a millisecond
/// before): it was silent, whatever the detector did.
fn sender_was_stalled(late: &HashMap<u64, Vec<(u64, u64)>>, process: u64, at: u64) -> bool {
    late.get(&process).is_some_and(|sends| {
        sends
            .iter()
            .any(|&(due, late)| due <= at && at <= due + late + 1_000_000)
    })
}

/// The machine's CPU time in `/proc/stat` ticks: all of it, and the part
/// the hypervisor stole.
#[derive(Debug, Clone, Copy)]
struct HostTicks {
    total: u64,
    steal: u64,
}

impl HostTicks {
    fn steal_pct_until(&self, later: &HostTicks) -> f64 {
        let total = later.total.saturating_sub(self.total);
        if total == 0 {
            return 0.0;
        }
        100.0 * later.steal.saturating_sub(self.steal) as f64 / total as f64
    }
}

/// Reads the `cpu` line of `/proc/stat`; None where it cannot (the figure
/// is then left out).
fn host_cpu_ticks() -> Option<HostTicks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_cpu_ticks(stat.lines().next()?)
}

/// `cpu  user nice system idle iowait irq softirq steal ...`
fn parse_cpu_ticks(line: &str) -> Option<HostTicks> {
    let mut fields = line.split_whitespace();
    (fields.next()? == "cpu").then_some(())?;
    let values: Vec<u64> = fields.map(|f| f.parse().ok()).collect::<Option<_>>()?;
    // guest and guest_nice (fields 9, 10) are already in user and nice.
    let total = values.iter().take(8).sum();
    Some(HostTicks {
        total,
        steal: *values.get(7)?,
    })
}

fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold
    // spaces: state is field 3, utime 14, stime 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("unexpected /proc/{pid}/stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        f.get(i)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("unexpected /proc/{pid}/stat"))
    };
    // `rest` starts at field 3.
    let t = ticks(14 - 3)? + ticks(15 - 3)?;
    // SAFETY: plain sysconf query.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(t as f64 / hz)
}

fn counter(control: &Path, name: &str) -> anyhow::Result<u64> {
    let c = call(control, &json!({"op": "counters"}))
        .map_err(|e| anyhow!("{}: {e}", control.display()))?;
    c[name]
        .as_u64()
        .ok_or_else(|| anyhow!("{}: no counter {name} in {c}", control.display()))
}

/// One transition the detector published.
#[derive(Debug, Clone)]
struct Event {
    process: u64,
    to: String,
    at_ns: u64,
}

/// Collects the detector's published transitions until `stop`.
fn collect_events(
    mut client: ControlClient,
    stop: Arc<AtomicBool>,
    sink: Arc<Mutex<Vec<Event>>>,
    errors: Arc<AtomicU64>,
) {
    while !stop.load(Ordering::Relaxed) {
        match client.next_event(Duration::from_millis(50)) {
            Ok(Some(e)) => {
                let ev = Event {
                    process: e["process"].as_u64().unwrap_or(u64::MAX),
                    to: e["to"].as_str().unwrap_or("").to_owned(),
                    at_ns: e["at_ns"].as_u64().unwrap_or(0),
                };
                sink.lock().expect("events lock").push(ev);
            }
            Ok(None) => {}
            Err(_) => {
                errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
}

fn latency_of(values: &[u64]) -> Latency {
    let mut h = new_histogram();
    for &v in values {
        h.saturating_record(v.max(1));
    }
    Latency::of(&h)
}

fn latency_json(l: &Latency) -> Value {
    json!({"p50": l.p50, "p90": l.p90, "p99": l.p99, "p999": l.p999, "max": l.max})
}

fn run_net(args: &FdArgs, backend: Backend, stop: &AtomicBool) -> anyhow::Result<Run> {
    args.validate().map_err(|e| anyhow!(e))?;
    let bin = args.vnf_bin().map_err(|e| anyhow!(e))?;
    dataplane::netns::check_privileges().context("the afxdp and udp backends build namespaces")?;
    let hosts = usize::from(args.hosts);
    let topo = Topology::new(hosts)?;
    // Kept after the run, temporary or not: its events.json and late.json
    // are the run's records (`run_dir` in the report).
    let dir = RunDir::create(args.log_dir.as_deref(), "fd", backend.name())?
        .path()
        .to_path_buf();
    let control = dir.join("fd.sock");
    let cores = core_affinity::get_core_ids().map_or(1, |c| c.len());
    let core = args.core.unwrap_or(cores.saturating_sub(1));
    let router_path = Path::new("/run/netns").join(topo.net.router.name());
    let mut cmd = topo.vnf.command(&bin);
    cmd.args([
        "--backend",
        backend.name(),
        "--iface",
        "eth0",
        "--bind",
        "copy",
    ])
    // A receive ring of 8,192 frames: 80 ms of a thousand processes'
    // heartbeats, so that a detector stalled by the host loses none (the
    // default 2,048 overflowed in 20 ms, and lost heartbeats are suspicions).
    .args(["--frames", "16384"])
    // Above the generators' priority: as a failure detector is deployed,
    // so that the host's other load does not make it late.
    .args(["--rt-priority", "20"])
    .args(["--port", &PORT.to_string()])
    .args(["--core", &core.to_string()])
    .args(["--interval-ms", &args.interval_ms.to_string()])
    .args(["--margin-ms", &args.margin_ms.to_string()])
    .arg("--control")
    .arg(&control)
    .arg("--links")
    .arg("--ports-netns")
    .arg(&router_path)
    .env("RUST_LOG", "warn");
    let mut vnf = Vnf::spawn(cmd, &dir.join("vnf-fd.log"), Duration::from_secs(10))?;
    let pid = vnf.pid().ok_or_else(|| anyhow!("vnf-fd has no pid"))?;

    // Events first, so that nothing published is missed.
    let events = Arc::new(Mutex::new(Vec::new()));
    let event_errors = Arc::new(AtomicU64::new(0));
    let events_stop = Arc::new(AtomicBool::new(false));
    let mut sub = ControlClient::connect(&control).map_err(|e| anyhow!("{e}"))?;
    sub.subscribe().map_err(|e| anyhow!("{e}"))?;
    let collector = {
        let (s, e, x) = (events_stop.clone(), events.clone(), event_errors.clone());
        std::thread::spawn(move || collect_events(sub, s, e, x))
    };

    // Processes, round-robin over the hosts, phases spread over the period;
    // crashes at random times of the window, leaving the last `3 periods +
    // margin` free so that every one can be detected inside it.
    let n = args.processes as usize;
    let interval_ns = args.interval_ms * 1_000_000;
    let margin_ns = args.margin_ms * 1_000_000;
    let host_of = |i: usize| i % hosts;
    let mut rng = args.seed;
    let mut crashing: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (splitmix(&mut rng) % (i as u64 + 1)) as usize;
        crashing.swap(i, j);
    }
    crashing.truncate(args.crash as usize);
    let start = monotonic_nanos() + 200_000_000;
    let warmup_ns = (args.warmup * 1e9) as u64;
    let duration_ns = (args.duration * 1e9) as u64;
    let window = (start + warmup_ns, start + warmup_ns + duration_ns);
    let crash_span = duration_ns
        .saturating_sub(3 * interval_ns + margin_ns)
        .max(1);
    let mut crash_at: HashMap<u64, u64> = HashMap::new();
    for &i in &crashing {
        crash_at.insert(i as u64 + 1, window.0 + splitmix(&mut rng) % crash_span);
    }
    let mut per_host: Vec<Vec<Proc>> = vec![Vec::new(); hosts];
    for i in 0..n {
        let id = i as u64 + 1;
        per_host[host_of(i)].push(Proc {
            id,
            phase_ns: (i as u64 * interval_ns) / n as u64,
            crash_at: crash_at.get(&id).copied(),
        });
    }
    // Generators stop a settling time after the window, so that the link
    // down after it still has heartbeating processes behind the port.
    let gen_end = window.1 + (2 * LINK_FLAPS as u64 + 1) * SETTLE.as_nanos() as u64 + 500_000_000;
    let gen_stop = Arc::new(AtomicBool::new(false));
    let schedule = Schedule {
        interval_ns,
        tick_ns: (interval_ns / 10).clamp(100_000, 1_000_000),
        start,
        window,
        end: gen_end,
        late_ns: margin_ns,
    };
    let mut gens = Vec::new();
    for (k, procs) in per_host.into_iter().enumerate() {
        let s = gen_stop.clone();
        gens.push(topo.net.hosts[k].spawn(move || generate(procs, schedule, &s)));
    }
    let abort = |gen_stop: &AtomicBool, e: anyhow::Error| {
        gen_stop.store(true, Ordering::Relaxed);
        e
    };

    for i in 0..n {
        let id = i as u64 + 1;
        call(
            &control,
            &json!({"op": "add", "process": id, "link": format!("p{}", host_of(i) + 1)}),
        )
        .map_err(|e| abort(&gen_stop, anyhow!("adding process {id}: {e}")))?;
    }
    tracing::info!(processes = n, hosts, "processes added, warming up");

    let wait_until = |t: u64| {
        while monotonic_nanos() < t && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_until(window.0);
    let hb0 = counter(&control, "heartbeats").map_err(|e| abort(&gen_stop, e))?;
    let cpu0 = cpu_seconds(pid).map_err(|e| abort(&gen_stop, e))?;
    let host0 = host_cpu_ticks();
    let t0 = monotonic_nanos();
    wait_until(window.1);
    let hb1 = counter(&control, "heartbeats").map_err(|e| abort(&gen_stop, e))?;
    let cpu1 = cpu_seconds(pid).map_err(|e| abort(&gen_stop, e))?;
    let host1 = host_cpu_ticks();
    let t1 = monotonic_nanos();
    let interrupted = stop.load(Ordering::Relaxed);

    // Link down on the last host's port, once the crashes have settled.
    std::thread::sleep(Duration::from_millis(200));
    let behind: Vec<u64> = (0..n)
        .filter(|&i| host_of(i) == hosts - 1)
        .map(|i| i as u64 + 1)
        .filter(|id| !crash_at.contains_key(id))
        .collect();
    // The port goes down (every process behind it must turn unreachable),
    // then up (heartbeats restore them), LINK_FLAPS times; the last time
    // it stays down while the crashes of the window are awaited.
    let port = format!("p{hosts}");
    let mut downs = Vec::new();
    let wait_for = |from: u64, to: &str, all: usize| {
        let until = Instant::now() + SETTLE;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            let seen = {
                let ev = events.lock().expect("events lock");
                let n = ev.iter().filter(|e| e.to == to && e.at_ns >= from).count();
                let suspected = ev.iter().filter(|e| e.to == "suspected").count();
                n >= all && suspected >= crash_at.len()
            };
            if seen {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    for flap in 0..LINK_FLAPS {
        if interrupted || stop.load(Ordering::Relaxed) {
            break;
        }
        let down = topo
            .net
            .router
            .set_link_down(&port)
            .map_err(|e| abort(&gen_stop, e.into()))?;
        downs.push(down);
        wait_for(down, "unreachable", behind.len());
        if flap + 1 < LINK_FLAPS {
            let up = topo
                .net
                .router
                .set_link_up(&port)
                .map_err(|e| abort(&gen_stop, e.into()))?;
            wait_for(up, "correct", behind.len());
        }
    }
    gen_stop.store(true, Ordering::Relaxed);
    let mut gen_out = Vec::new();
    for g in gens {
        gen_out.push(
            g.join()
                .map_err(|_| anyhow!("a generator thread panicked"))?
                .map_err(|e| anyhow!("{e}"))??,
        );
    }
    let dropped = counter(&control, "events_dropped").unwrap_or(0);
    let pauses = counter(&control, "local_pauses").unwrap_or(0);
    let silences = counter(&control, "shared_silences").unwrap_or(0);
    events_stop.store(true, Ordering::Relaxed);
    let _ = collector.join();
    let status = vnf.stop()?;
    if event_errors.load(Ordering::Relaxed) > 0 {
        bail!(
            "the detector's event stream broke; its log: {}",
            vnf.log().display()
        );
    }
    if let Some(s) = status
        && !s.success()
    {
        tracing::warn!(%s, log = %vnf.log().display(), "vnf-fd exited with an error");
    }

    // Figures.
    let events = std::mem::take(&mut *events.lock().expect("events lock"));
    let dump: Vec<Value> = events
        .iter()
        .map(|e| json!({"process": e.process, "to": e.to, "at_ns": e.at_ns}))
        .collect();
    let _ = std::fs::write(dir.join("events.json"), Value::Array(dump).to_string());
    let mut last_sent: HashMap<u64, u64> = HashMap::new();
    let mut window_sent = 0;
    let mut send_errors = 0;
    let (mut late_sends, mut max_late_ns) = (0, 0);
    let late: Vec<Value> = gen_out
        .iter()
        .flat_map(|g| &g.late)
        .map(|&(process, due_ns, late_ns)| json!({"process": process, "due_ns": due_ns, "late_ns": late_ns}))
        .collect();
    let _ = std::fs::write(dir.join("late.json"), Value::Array(late).to_string());
    let mut late_by_process: HashMap<u64, Vec<(u64, u64)>> = HashMap::new();
    for &(process, due, late) in gen_out.iter().flat_map(|g| &g.late) {
        late_by_process
            .entry(process)
            .or_default()
            .push((due, late));
    }
    for g in gen_out {
        late_sends += g.late_sends;
        max_late_ns = max_late_ns.max(g.max_late_ns);
        last_sent.extend(g.last_sent);
        window_sent += g.window_sent;
        send_errors += g.send_errors;
    }
    let mut detection = Vec::new();
    let mut undetected = 0u64;
    for &id in crash_at.keys() {
        let Some(&crashed) = last_sent.get(&id) else {
            undetected += 1;
            continue;
        };
        match events
            .iter()
            .find(|e| e.process == id && e.to == "suspected" && e.at_ns >= crashed)
        {
            Some(e) => detection.push(e.at_ns - crashed),
            None => undetected += 1,
        }
    }
    let false_suspected: Vec<&Event> = events
        .iter()
        .filter(|e| e.to == "suspected" && e.at_ns >= t0 && e.at_ns <= t1)
        .filter(|e| {
            crash_at.get(&e.process).is_none_or(|_| {
                last_sent
                    .get(&e.process)
                    .is_none_or(|&crashed| e.at_ns < crashed)
            })
        })
        .collect();
    let false_suspicions = false_suspected.len() as u64;
    let sender_stalled = false_suspected
        .iter()
        .filter(|e| sender_was_stalled(&late_by_process, e.process, e.at_ns))
        .count() as u64;
    let mut link_delays = Vec::new();
    for (k, &d) in downs.iter().enumerate() {
        // Each flap's transitions, before the next flap began.
        let next = downs.get(k + 1).copied().unwrap_or(u64::MAX);
        for id in &behind {
            if let Some(e) = events.iter().find(|e| {
                e.process == *id && e.to == "unreachable" && e.at_ns >= d && e.at_ns < next
            }) {
                link_delays.push(e.at_ns - d);
            }
        }
    }
    let link_missing = downs.len() * behind.len() - link_delays.len();

    let secs = (t1 - t0) as f64 / 1e9;
    let ingested = hb1.saturating_sub(hb0);
    let cpu = cpu1 - cpu0;
    let detection_l = latency_of(&detection);
    let link_l = latency_of(&link_delays);
    let mut run = base_run(args, backend);
    run.duration_s = secs;
    run.sent = window_sent;
    run.received = ingested;
    run.lost = window_sent.saturating_sub(ingested);
    run.pps = ingested as f64 / secs;
    run.offered_pps = window_sent as f64 / secs;
    run.latency_ns = detection_l;
    run.size = 14 + 20 + 8 + HEADER_LEN + heartbeat::LEN;
    let e = &mut run.extra;
    e.insert("processes".into(), json!(n));
    e.insert("interval_ms".into(), json!(args.interval_ms));
    e.insert("window_start_ns".into(), json!(t0));
    e.insert("margin_ms".into(), json!(args.margin_ms));
    e.insert("heartbeats_per_s".into(), json!(run.pps));
    e.insert("detection_ns".into(), latency_json(&detection_l));
    e.insert("crashed".into(), json!(crash_at.len()));
    e.insert("detected".into(), json!(detection.len()));
    e.insert("undetected".into(), json!(undetected));
    e.insert("false_suspicions".into(), json!(false_suspicions));
    // Of those, the ones whose process was in fact silent past the margin:
    // its generator sent the heartbeat due before the suspicion more than a
    // margin late (the host held the sender up). The detector cannot tell
    // them from a crash, and should not.
    e.insert("sender_stalled".into(), json!(sender_stalled));
    e.insert("link_down_ns".into(), latency_json(&link_l));
    e.insert("link_down_processes".into(), json!(behind.len()));
    e.insert("link_flaps".into(), json!(downs.len()));
    e.insert("link_down_missing".into(), json!(link_missing));
    e.insert("cpu_s".into(), json!(cpu));
    e.insert("cpu_util".into(), json!(cpu / secs));
    e.insert("send_errors".into(), json!(send_errors));
    // The generators' own lateness: heartbeats sent more than a margin
    // late are suspicions this host caused, not the detector.
    e.insert("late_sends".into(), json!(late_sends));
    e.insert("run_dir".into(), json!(dir.display().to_string()));
    e.insert("max_late_ns".into(), json!(max_late_ns));
    // CPU time the hypervisor took from this machine's vCPUs in the window
    // (percent of all): stalls no process here controls.
    if let (Some(a), Some(b)) = (host0, host1) {
        e.insert("host_steal_pct".into(), json!(a.steal_pct_until(&b)));
    }
    e.insert("events_dropped".into(), json!(dropped));
    // Times the detector held judgement after finding itself woken late
    // (whole run): how often this machine stalled it.
    e.insert("local_pauses".into(), json!(pauses));
    // Silences of a whole link (a host or path stalled) during which
    // judgement was held (whole run).
    e.insert("shared_silences".into(), json!(silences));
    if interrupted {
        e.insert("interrupted".into(), json!(true));
    }
    if link_missing > 0 {
        tracing::warn!(
            missing = link_missing,
            "processes behind the downed port never became unreachable"
        );
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: FdArgs,
    }

    #[test]
    fn defaults_and_bad_input() {
        let t = T::try_parse_from(["x", "--backend", "afxdp,udp"]).unwrap();
        assert_eq!(
            (t.a.processes, t.a.interval_ms, t.a.crash, t.a.hosts),
            (1000, 10, 50, 4)
        );
        assert!(t.a.validate().is_ok());
        assert!(T::try_parse_from(["x", "--backend", "udp", "--processes", "0"]).is_err());
        assert!(T::try_parse_from(["x", "--backend", "udp", "--duration", "-1"]).is_err());
        let t = T::try_parse_from([
            "x",
            "--backend",
            "udp",
            "--processes",
            "10",
            "--crash",
            "10",
        ])
        .unwrap();
        assert!(t.a.validate().unwrap_err().contains("--crash"));
    }

    #[test]
    fn steal_is_read_from_the_cpu_line() {
        let a = parse_cpu_ticks("cpu  100 0 50 800 0 0 10 40 0 0").unwrap();
        assert_eq!((a.total, a.steal), (1000, 40));
        let b = parse_cpu_ticks("cpu  150 0 100 1600 0 0 20 130 5 0").unwrap();
        assert!((a.steal_pct_until(&b) - 9.0).abs() < 1e-9);
        assert_eq!(a.steal_pct_until(&a), 0.0);
        assert!(parse_cpu_ticks("cpu0 1 2 3").is_none());
        assert!(parse_cpu_ticks("cpu  1 2 x").is_none());
        assert!(host_cpu_ticks().is_some(), "this machine has /proc/stat");
    }

    #[test]
    fn a_suspicion_is_the_senders_when_its_heartbeat_was_not_sent_yet() {
        let late = HashMap::from([(7, vec![(100_000_000, 20_000_000)])]);
        // Due at 100 ms, sent at 120 ms: a suspicion at 110 ms is the sender's.
        assert!(sender_was_stalled(&late, 7, 110_000_000));
        // Heard within a millisecond of being sent.
        assert!(sender_was_stalled(&late, 7, 120_500_000));
        assert!(!sender_was_stalled(&late, 7, 99_000_000));
        assert!(!sender_was_stalled(&late, 7, 125_000_000));
        assert!(!sender_was_stalled(&late, 8, 110_000_000));
    }

    #[test]
    fn cpu_seconds_reads_this_process() {
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(50) {
            std::hint::black_box(splitmix(&mut 1));
        }
        let s = cpu_seconds(std::process::id()).unwrap();
        assert!(s > 0.0 && s < 1e6, "{s}");
    }

    #[test]
    fn the_in_memory_run_ingests_every_heartbeat_without_suspicion() {
        let stop = AtomicBool::new(false);
        let (n, elapsed, transitions, cpu) =
            detector_rate(Duration::from_millis(50), &stop).unwrap();
        assert!(cpu > 0.0);
        assert!(n >= MEM_PROCESSES as u64 && !elapsed.is_zero());
        assert_eq!(transitions, 0);
        let (sn, _) = service_rate(Duration::from_millis(50), &stop).unwrap();
        assert!(sn > 0);
    }
}
