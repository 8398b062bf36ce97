//! `nfvinc-perf echo --backend dpdk --dpdk-null` (feature `dpdk`): the echo
//! pipeline's own cost on DPDK, with `dpdk-testpmd` as the reference, in
//! one run.
//!
//! Two `net_null` devices: each receive allocates mbufs from our pool and
//! each transmit frees them, with no wire and no copy, so what is measured
//! is our pipeline (burst receive through the shim, the echo VNF's
//! in-place rewrite of every frame, burst transmit). One thread polls both
//! ports, as testpmd's one forwarding core does in io mode. `net_null` does
//! not write frame data, so every chunk is prefilled with a UDP frame whose
//! source and destination are equal: the echo swap leaves it valid, and
//! every frame received is one the VNF turns around (none dropped).
//!
//! Then `dpdk-testpmd --forward-mode=io` (and `macswap`, which, like echo,
//! touches every frame) forwards between two `net_null` devices for the
//! same time on one core; its `Tx-pps` samples give its rate.
//!
//! Beside the rates, each side's CPU time per packet (`cpu_ns_per_packet`,
//! `testpmd_{mode}_cpu_ns`): the polling thread's own CPU time over the
//! packets it moved in the measured window. On a shared machine, where
//! other work takes the polling core away for a while, the rates fall with
//! the time lost, but CPU time per packet does not, so the CPU-time ratio
//! (`cpu_ratio_to_testpmd_{mode}`) compares the two pipelines even there.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use dataplane::io::PacketIo;
use dataplane::io::dpdk::{DpdkIo, DpdkPort, EalConfig, PortConfig, eal};
use dataplane::wire::FrameSpec;
use serde_json::json;

use crate::cli::EchoArgs;
use crate::echo::Setup;
use crate::frame::{ECHO_PORT, Template};
use crate::report::Run;

/// Runs our pipeline, then testpmd, on two `net_null` devices each.
pub fn run(args: &EchoArgs, setup: &Setup, mut run: Run) -> anyhow::Result<Run> {
    let ours = ours(args, setup, true)?;
    let secs = ours.window.as_secs_f64();
    run.mode = "max".into();
    run.rate_pps = None;
    run.in_flight = None;
    run.duration_s = secs;
    run.sent = ours.tx;
    run.received = ours.tx;
    run.pps = ours.tx as f64 / secs.max(1e-9);
    run.offered_pps = ours.rx as f64 / secs.max(1e-9);
    run.ns_per_packet = Some(secs * 1e9 / ours.tx.max(1) as f64);
    run.latency_kind = "none".into();
    run.extra.insert("devices".into(), json!("2 x net_null"));
    run.extra.insert("burst".into(), json!(args.burst));
    run.extra.insert("dropped".into(), json!(ours.rx - ours.tx));
    let ours_cpu_ns = ours.cpu.as_secs_f64() * 1e9 / ours.tx.max(1) as f64;
    run.extra
        .insert("cpu_ns_per_packet".into(), json!(ours_cpu_ns));
    // The same loop with a VNF that forwards frames untouched: the
    // backend's own cost, what testpmd's io mode measures for DPDK's.
    let untouched = ours_bare(args, setup)?;
    let bare = ours_rate(&untouched);
    run.extra.insert("untouched_pps".into(), json!(bare));
    run.extra.insert(
        "untouched_cpu_ns_per_packet".into(),
        json!(untouched.cpu.as_secs_f64() * 1e9 / untouched.tx.max(1) as f64),
    );
    for mode in ["io", "macswap"] {
        match testpmd(args, mode) {
            Ok(Testpmd { pps, cpu_ns }) => {
                run.extra.insert(format!("testpmd_{mode}_pps"), json!(pps));
                if let Some(c) = cpu_ns {
                    run.extra.insert(format!("testpmd_{mode}_cpu_ns"), json!(c));
                    // Packet rates per CPU-second: testpmd's CPU time per
                    // packet over ours.
                    run.extra.insert(
                        format!("cpu_ratio_to_testpmd_{mode}"),
                        json!(c / ours_cpu_ns),
                    );
                }
                run.extra
                    .insert(format!("ratio_to_testpmd_{mode}"), json!(run.pps / pps));
                run.extra.insert(
                    format!("untouched_ratio_to_testpmd_{mode}"),
                    json!(bare / pps),
                );
            }
            Err(e) => {
                tracing::warn!("testpmd --forward-mode={mode}: {e:#}");
                run.extra
                    .insert(format!("testpmd_{mode}_error"), json!(format!("{e:#}")));
            }
        }
    }
    Ok(run)
}

struct Ours {
    rx: u64,
    tx: u64,
    window: Duration,
    /// The polling thread's CPU time in the window.
    cpu: Duration,
}

/// The calling thread's CPU time so far.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to write; the clock exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn ours_rate(o: &Ours) -> f64 {
    o.tx as f64 / o.window.as_secs_f64().max(1e-9)
}

fn ours_bare(args: &EchoArgs, setup: &Setup) -> anyhow::Result<Ours> {
    ours(args, setup, false)
}

/// Our loop over two fresh net_null ports; `echo`: the echo VNF rewrites
/// every frame, else frames go back out untouched.
fn ours(args: &EchoArgs, setup: &Setup, echo: bool) -> anyhow::Result<Ours> {
    eal::init(&EalConfig::default()).context("starting DPDK")?;
    let spec = FrameSpec {
        src_mac: [0x02, 0, 0, 0, 0, 2],
        dst_mac: [0x02, 0, 0, 0, 0, 2],
        src_ip: std::net::Ipv4Addr::new(198, 18, 0, 2),
        dst_ip: std::net::Ipv4Addr::new(198, 18, 0, 2),
        src_port: ECHO_PORT,
        dst_port: ECHO_PORT,
    };
    let tpl = Template::new(spec, usize::from(args.size), 0, args.checksum)?;
    let config = PortConfig {
        burst: usize::from(args.burst),
        ..PortConfig::default()
    };
    let tag = if echo { "e" } else { "u" };
    let mut ports: Vec<DpdkIo> = Vec::new();
    for i in 0..2 {
        let dev = format!("net_null_perf{tag}{i},size={}", args.size);
        let port = DpdkPort::open(&dev, config).with_context(|| format!("opening {dev}"))?;
        let mut io = port
            .into_queues()
            .pop()
            .ok_or_else(|| anyhow!("{dev} has no queue"))?;
        io.prefill(tpl.bytes())?;
        ports.push(io);
    }
    let core = args.core_vnf;
    let (warmup, duration) = (
        Duration::from_secs_f64(args.warmup),
        Duration::from_secs_f64(args.duration),
    );
    let stop = setup.stop.clone();
    std::thread::Builder::new()
        .name("perf-dpdk".into())
        .spawn(move || -> anyhow::Result<Ours> {
            dataplane::runtime::pin_current_thread(core);
            let mut batches: Vec<_> = ports.iter().map(|p| p.new_batch()).collect();
            let start = Instant::now();
            let mut base: Option<(Instant, u64, u64, Duration)> = None;
            let (mut rx, mut tx) = (0u64, 0u64);
            loop {
                // The clock is read once per 64 rounds: a bounded loop that
                // costs the pipeline next to nothing.
                for _ in 0..64 {
                    for (io, b) in ports.iter_mut().zip(batches.iter_mut()) {
                        rx += io.recv(b)? as u64;
                        if echo {
                            vnf_echo::reflect(b);
                        }
                        tx += io.send(b)? as u64;
                        if !b.is_empty() {
                            io.release(b)?;
                        }
                    }
                }
                let now = Instant::now();
                match base {
                    None if now - start >= warmup => base = Some((now, rx, tx, thread_cpu())),
                    Some((t0, rx0, tx0, cpu0))
                        if now - t0 >= duration
                            || stop.load(std::sync::atomic::Ordering::Relaxed) =>
                    {
                        return Ok(Ours {
                            rx: rx - rx0,
                            tx: tx - tx0,
                            window: now - t0,
                            cpu: thread_cpu().saturating_sub(cpu0),
                        });
                    }
                    _ => {}
                }
            }
        })
        .context("spawning the DPDK loop")?
        .join()
        .map_err(|_| anyhow!("the DPDK loop panicked"))?
}

/// What a testpmd run measured.
struct Testpmd {
    /// Mean transmit rate, both ports, after the warm-up.
    pps: f64,
    /// Its forwarding thread's CPU time per packet transmitted after the
    /// warm-up, where /proc showed the thread.
    cpu_ns: Option<f64>,
}

/// CPU time (user and system, in clock ticks) of the thread of `pid` whose
/// name starts with `prefix`.
fn task_ticks(pid: u32, prefix: &str) -> Option<u64> {
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let dir = t.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
        if !comm.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        // Fields after the parenthesised name: state is field 3, utime
        // and stime fields 14 and 15.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        return Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?);
    }
    None
}

/// Runs testpmd in `mode` on two net_null devices for warm-up plus
/// duration and returns its mean transmit rate (both ports) over the
/// samples after the warm-up, and its forwarding thread's CPU time per
/// packet over the same samples.
fn testpmd(args: &EchoArgs, mode: &str) -> anyhow::Result<Testpmd> {
    let bin = which("dpdk-testpmd").ok_or_else(|| {
        anyhow!("dpdk-testpmd not found in PATH (Debian: apt-get install dpdk-dev)")
    })?;
    let huge = if eal::free_huge_pages() > 0 {
        vec![]
    } else {
        vec!["--no-huge".to_string()]
    };
    let lcores = format!("{},{}", args.core_gen, args.core_vnf);
    let size = args.size.to_string();
    let mut child = Command::new(bin)
        .args(["-l", &lcores, "-m", "512", "--no-pci", "--no-telemetry"])
        .args(&huge)
        .args([
            "--file-prefix",
            &format!("nfvinc-testpmd-{}", std::process::id()),
        ])
        .args(["--vdev", &format!("net_null0,size={size}")])
        .args(["--vdev", &format!("net_null1,size={size}")])
        .args(["--", &format!("--forward-mode={mode}"), "--nb-cores=1"])
        .args(["--total-num-mbufs=8192", "--stats-period=1"])
        .arg(format!("--burst={}", args.burst))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting dpdk-testpmd")?;
    let out = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let pid = child.id();
    // Each period prints, per port, the port's total `TX-packets` and then
    // its `Tx-pps`; at each rate line the reader keeps (rate, total, the
    // forwarding thread's CPU ticks then).
    let reader = std::thread::spawn(move || {
        let mut samples: Vec<(f64, u64, Option<u64>)> = Vec::new();
        let mut total = 0u64;
        let number = |v: &str| v.split_whitespace().next().map(str::to_owned);
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let line = line.trim();
            if let Some(v) = line.strip_prefix("TX-packets:") {
                total = number(v).and_then(|n| n.parse().ok()).unwrap_or(0);
            } else if let Some(v) = line.strip_prefix("Tx-pps:") {
                if let Some(n) = number(v).and_then(|n| n.parse().ok()) {
                    samples.push((n, total, task_ticks(pid, "rte-worker-")));
                }
            }
        }
        samples
    });
    std::thread::sleep(Duration::from_secs_f64(args.warmup + args.duration + 1.0));
    // A newline on stdin makes testpmd stop forwarding and exit.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"\n");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.wait();
    let samples = reader.join().map_err(|_| anyhow!("reader panicked"))?;
    // Two lines (one per port) per one-second period; skip the warm-up's.
    let skip = 2 * (args.warmup.ceil() as usize + 1);
    // Per period: the rate and packet total of both ports, and the CPU
    // ticks read at the second port's line.
    let kept: Vec<(f64, u64, Option<u64>)> = samples
        .chunks_exact(2)
        .map(|c| (c[0].0 + c[1].0, c[0].1 + c[1].1, c[1].2))
        .skip(skip / 2)
        .collect();
    if kept.is_empty() {
        bail!(
            "testpmd printed no rate after the warm-up ({} samples)",
            samples.len()
        );
    }
    let pps = kept.iter().map(|k| k.0).sum::<f64>() / kept.len() as f64;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let cpu_ns = match (kept.first(), kept.last()) {
        (Some(&(_, p0, Some(t0))), Some(&(_, p1, Some(t1)))) if p1 > p0 && hz > 0 => {
            Some((t1 - t0) as f64 * 1e9 / hz as f64 / (p1 - p0) as f64)
        }
        _ => None,
    };
    Ok(Testpmd { pps, cpu_ns })
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.is_file())
}
