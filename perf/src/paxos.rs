//! The consensus scenario: `nfvinc-perf paxos`.
//!
//! For `afxdp` and `udp`, each run builds its own topology (a router
//! namespace and one namespace per process): one coordinator, `--acceptors`
//! acceptors and two learners run `vnf-paxos` on the backend under test; a
//! client host runs libnfvinc's `Consensus` (submitting and learning) in a
//! closed loop of `--in-flight` values: whenever its learner delivers, the
//! loop tops the window up with one `submit_all`, which the handle
//! coalesces (the values leave many to a `Submit` datagram, at once when
//! nothing is awaiting an answer, else with the next `Replies`), and the
//! leader batches up to `--batch` values (and 1,340 bytes) per instance.
//! Figures of the measured window:
//!
//! * `decisions_per_s`: client values delivered at *every* learner VNF per
//!   second (the slower learner's count, read from their control sockets);
//! * `latency_ns`: submit-to-learn, from the client's submission of a value
//!   to its delivery by the client's own learner;
//! * `agreement_ok`: once the load stops and the learners have caught up,
//!   both delivered the same sequence (same length and digest); the run,
//!   and the command, fail if not;
//! * `values_per_instance`: client values per decided instance (the
//!   leader's counters), how far batching went.
//!
//! For `mem`, the acceptor logic alone on one core, in process: `Accept`
//! messages (one instance each, and eight instances each) are taken as
//! bytes by an in-memory acceptor (`Acceptor::handle_nfv`, which checks
//! them) and its votes copied out as bytes (`Acceptor::poll_emit`), as the
//! service shell does; `msgs_per_s` counts accepts handled per second.
//!
//! The JSON report has the echo scenario's shape (`runs`: scenario,
//! backend, duration_s, sent, received, lost, pps, latency_ns…) plus those
//! fields.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use clap::{Args, ValueEnum};
use dataplane::control::call;
use dataplane::netns::Routed;
use libnfvinc::consensus::{Consensus, ConsensusConfig};
use serde_json::{Value, json};
use vnf_paxos::wire::{Message, accept};
use vnf_paxos::{
    Acceptor, AcceptorConfig, AcceptorId, Ballot, ClientId, Command, Durability, NodeId,
    Time as PaxosTime, Value as PaxosValue,
};

use crate::cli::Backend;
use crate::report::{Latency, Report, Run, new_histogram};
use crate::run_dir::RunDir;
use crate::vnf::Vnf;

/// Where acceptors keep their state in a `paxos` run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArg {
    /// Write-ahead log, synced once per burst (the service's default).
    Wal,
    /// Memory only.
    Memory,
}

/// Options of `nfvinc-perf paxos`.
#[derive(Debug, Clone, Args)]
pub struct PaxosArgs {
    /// Backends to run, in turn, comma separated (e.g. `afxdp,udp`).
    #[arg(long, value_enum, value_delimiter = ',', required = true)]
    pub backend: Vec<Backend>,
    /// Acceptors (2f + 1; 1..=9).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=9))]
    pub acceptors: u16,
    /// Measured seconds per backend, warm-up excluded (at most 3600).
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = crate::cli::parse_duration)]
    pub duration: f64,
    /// Warm-up seconds before the measured window (at most 60).
    #[arg(long, value_name = "SECONDS", default_value = "1", value_parser = crate::cli::parse_warmup)]
    pub warmup: f64,
    /// Client values kept in flight (closed loop). A closed loop decides
    /// at most this many values per submit-to-learn time, and with the
    /// write-ahead log that time is at least an acceptor's `fdatasync`
    /// (milliseconds here): 512 held both backends near 512 values per
    /// sync, whatever the path cost, so the default keeps enough in flight
    /// for the batches to fill (70 values of 16 bytes an instance) and
    /// the processes, not the sync, to set the rate. 4,096 did not: a
    /// third of the host's CPU time stayed idle and the rate still grew
    /// with the window (on this 2-vCPU host, afxdp 1,024: 0.62 M/s at
    /// 1.6 ms p50; 4,096: 0.76 M/s at 5 ms; 16,384: 0.92 M/s at 18 ms,
    /// where it levelled off then: 32,768 gave no more). 16,384 values are
    /// 234 full instances, inside the leader's window of 256. Since the
    /// processes got cheaper per value, 16,384 gives 1.5 M/s at 10 ms p50
    /// and 32,768 (with `--window 512`) 1.6 M/s at 20 ms: most of the rate
    /// at half the latency, so the default stays. `--in-flight 1`
    /// measures the unloaded latency, and the latency at a lighter load
    /// is a smaller `--in-flight` away.
    #[arg(long, default_value_t = 16384, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub in_flight: u32,
    /// Bytes per client value.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1400))]
    pub value_bytes: u16,
    /// Where acceptors keep promises and votes.
    #[arg(long, value_enum, default_value = "wal")]
    pub durability: DurabilityArg,
    /// Coordinator: most client values per instance (1: no batching).
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Coordinator: most instances in flight. Values queue at the leader
    /// while the window is full, which is what makes batches grow.
    #[arg(long, default_value_t = 256)]
    pub window: usize,
    /// Empty polls before a VNF sleeps in its socket (`vnf-paxos
    /// --spins`): the roles share this host's cores, so spinning ones take
    /// them from the others.
    #[arg(long, default_value_t = 256)]
    pub spins: u32,
    /// Write the results as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// The `vnf-paxos` binary; default: next to this one.
    #[arg(long, value_name = "PATH")]
    pub vnf_bin: Option<PathBuf>,
    /// Directory for VNF logs and write-ahead logs; default: a temporary
    /// one, removed after each run whose learners agree. The write-ahead
    /// logs (hundreds of MB a run) are removed after such a run in either
    /// case; when the learners disagree everything is kept, as evidence.
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
}

impl PaxosArgs {
    /// The `vnf-paxos` binary to run.
    pub fn vnf_bin(&self) -> Result<PathBuf, String> {
        crate::cli::vnf_binary(self.vnf_bin.as_deref(), "vnf-paxos")
    }
}

/// The runs that completed, and the errors of those that did not.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The report.
    pub report: Report,
    /// `backend: error` for each run that failed (disagreement included).
    pub errors: Vec<String>,
}

/// Runs every backend of `args` in turn; `stop` (a signal) ends the current
/// run early and starts no other.
pub fn run_all(args: &PaxosArgs, stop: &Arc<AtomicBool>) -> Outcome {
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
                if run.extra.get("agreement_ok") == Some(&Value::Bool(false)) {
                    out.errors
                        .push(format!("{}: learners disagree", backend.name()));
                }
                out.report.runs.push(run);
            }
            Err(e) => out.errors.push(format!("{}: {e:#}", backend.name())),
        }
    }
    out
}

fn base_run(args: &PaxosArgs, backend: Backend) -> Run {
    Run {
        scenario: "paxos".into(),
        backend: backend.name().into(),
        duration_s: 0.0,
        sent: 0,
        received: 0,
        lost: 0,
        pps: 0.0,
        latency_ns: Latency::default(),
        latency_kind: "submit-to-learn".into(),
        mode: "closed-loop".into(),
        size: usize::from(args.value_bytes),
        offered_pps: 0.0,
        rate_pps: None,
        in_flight: Some(args.in_flight),
        ns_per_packet: None,
        duplicates: 0,
        reordered: 0,
        warmup_s: args.warmup,
        extra: serde_json::Map::new(),
        curve: Vec::new(),
    }
}

/// An accept for `n` consecutive instances from `first`, as an NFVinc
/// message.
fn accept_frame(ballot: Ballot, first: u64, n: u64, value: &PaxosValue) -> Vec<u8> {
    let msg = Message::Accept(accept::Repr {
        ballot,
        committed: first.saturating_sub(1024),
        entries: (first..first + n)
            .map(|instance| vnf_paxos::wire::value::Entry {
                instance,
                ballot: Ballot::ZERO,
                value: value.clone(),
            })
            .collect(),
    });
    let mut buf = vec![0u8; 64 + msg.payload_len()];
    let len = msg.emit(0, &mut buf).expect("room for the accept");
    buf.truncate(len);
    buf
}

/// Accepts handled by one in-memory acceptor, `per_msg` instances each,
/// wire parsing and vote emission included: accepts, wall time, votes
/// sent, and the thread's CPU time.
fn acceptor_rate(
    per_msg: u64,
    duration: Duration,
    stop: &AtomicBool,
) -> (u64, Duration, u64, Duration) {
    let cfg = AcceptorConfig {
        durability: Durability::Memory,
        retain: 1024,
        ..AcceptorConfig::default()
    };
    let mut acc = Acceptor::new(
        AcceptorId {
            slot: 0,
            incarnation: 1,
        },
        cfg,
    );
    let ballot = Ballot {
        round: 1,
        node: NodeId(1),
        incarnation: 1,
    };
    let value = PaxosValue::batch(vec![Command {
        client: ClientId(7),
        seq: 1,
        payload: (&[0xabu8; 16][..]).into(),
    }]);
    // One template; its instance numbers are rewritten in place, so the
    // loop builds nothing but what the acceptor itself does.
    let mut frame = accept_frame(ballot, 0, per_msg, &value);
    let hdr = dataplane::wire::nfvinc::HEADER_LEN;
    let entry_len = (frame.len() - hdr - accept::HEADER_LEN) / per_msg as usize;
    let mut out = vec![0u8; 65_536];
    let mut instance = 0u64;
    let mut msgs = 0u64;
    let mut votes_out = 0u64;
    let started = Instant::now();
    let cpu0 = dataplane::time::thread_cpu_nanos();
    let now = PaxosTime::from_nanos(1);
    while started.elapsed() < duration && !stop.load(Ordering::Relaxed) {
        // Time is read once per 1,024 messages.
        for _ in 0..1024 {
            for k in 0..per_msg as usize {
                let at = hdr + accept::HEADER_LEN + k * entry_len;
                frame[at..at + 8].copy_from_slice(&(instance + k as u64).to_be_bytes());
            }
            let committed = instance.saturating_sub(512);
            frame[hdr + 8..hdr + 16].copy_from_slice(&committed.to_be_bytes());
            instance += per_msg;
            // As the service shell does: the accept's bytes in, the vote's
            // bytes out.
            if acc.handle_nfv(now, NodeId(1), &frame).is_err() {
                continue;
            }
            while let Some((_, written)) = acc.poll_emit(&mut out) {
                if written.is_ok() {
                    votes_out += 1;
                }
            }
            msgs += 1;
        }
    }
    let cpu =
        std::time::Duration::from_nanos(dataplane::time::thread_cpu_nanos().saturating_sub(cpu0));
    (msgs, started.elapsed(), votes_out, cpu)
}

fn run_mem(args: &PaxosArgs, stop: &AtomicBool) -> anyhow::Result<Run> {
    let mut run = base_run(args, Backend::Mem);
    run.latency_kind = "none (acceptor logic alone)".into();
    run.mode = "max".into();
    run.in_flight = None;
    let d = Duration::from_secs_f64(args.duration);
    let _ = acceptor_rate(1, Duration::from_secs_f64(args.warmup.min(1.0)), stop);
    let (msgs, elapsed, votes, cpu) = acceptor_rate(1, d / 2, stop);
    let (msgs8, elapsed8, _, _) = acceptor_rate(8, d / 2, stop);
    ensure!(
        votes == msgs,
        "the acceptor refused accepts: {votes} votes for {msgs}"
    );
    let secs = elapsed.as_secs_f64();
    run.duration_s = secs + elapsed8.as_secs_f64();
    run.sent = msgs;
    run.received = votes;
    run.pps = msgs as f64 / secs;
    run.offered_pps = run.pps;
    run.ns_per_packet = Some(secs * 1e9 / msgs.max(1) as f64);
    run.extra.insert("msgs_per_s".into(), json!(run.pps));
    // The same per second of the thread's CPU time: what one core does
    // when other processes share it.
    run.extra.insert(
        "msgs_per_cpu_s".into(),
        json!(msgs as f64 / cpu.as_secs_f64().max(1e-9)),
    );
    run.extra.insert(
        "msgs_per_s_8_instances".into(),
        json!(msgs8 as f64 / elapsed8.as_secs_f64()),
    );
    run.extra.insert(
        "instances_per_s_8_instances".into(),
        json!(8.0 * msgs8 as f64 / elapsed8.as_secs_f64()),
    );
    run.extra.insert("agreement_ok".into(), json!(true));
    Ok(run)
}

fn counter(control: &Path, name: &str) -> anyhow::Result<u64> {
    let c = call(control, &json!({"op": "counters"}))
        .map_err(|e| anyhow!("{}: {e}", control.display()))?;
    c[name]
        .as_u64()
        .ok_or_else(|| anyhow!("{}: no counter {name} in {c}", control.display()))
}

fn run_net(args: &PaxosArgs, backend: Backend, stop: &AtomicBool) -> anyhow::Result<Run> {
    let bin = args.vnf_bin().map_err(|e| anyhow!(e))?;
    dataplane::netns::check_privileges().context("the afxdp and udp backends build namespaces")?;
    let n_acc = usize::from(args.acceptors);
    // Hosts: 1 coordinator, acceptors, 2 learners, 1 client.
    let total = 1 + n_acc + 2 + 1;
    // Hosts: coordinator 1, acceptors 2.., learners, client last.
    let topo = Routed::new("pxp", [10, 72], total)?;
    let run_dir = RunDir::create(args.log_dir.as_deref(), "paxos", backend.name())?;
    let dir = run_dir.path().to_path_buf();
    let ips = |r: std::ops::Range<usize>| -> Vec<String> {
        r.map(|k| topo.host_ip(k).to_string()).collect()
    };
    let coordinators = ips(1..2).join(",");
    let acceptors = ips(2..2 + n_acc).join(",");
    let learners = ips(2 + n_acc..4 + n_acc).join(",");
    let control = |k: usize| dir.join(format!("h{k}.sock"));
    let mut vnfs = Vec::new();
    // Acceptors and learners first, so that the coordinator's first
    // prepare finds them.
    for k in (2..4 + n_acc).chain([1]) {
        let (role, index) = match k {
            1 => ("coordinator", 0),
            k if k < 2 + n_acc => ("acceptor", k - 2),
            k => ("learner", k - 2 - n_acc),
        };
        let mut cmd = topo.hosts[k - 1].command(&bin);
        cmd.args([
            "--backend",
            backend.name(),
            "--iface",
            "eth0",
            "--bind",
            "copy",
        ])
        .args(["--role", role, "--index", &index.to_string()])
        .args(["--coordinators", &coordinators])
        .args(["--acceptors", &acceptors])
        .args(["--learners", &learners])
        .args(["--batch", &args.batch.to_string()])
        .args(["--window", &args.window.to_string()])
        .args(["--spins", &args.spins.to_string()])
        .arg("--control")
        .arg(control(k))
        .env("RUST_LOG", "warn");
        if role == "acceptor" {
            match args.durability {
                DurabilityArg::Wal => {
                    cmd.arg("--wal").arg(dir.join(format!("a{index}.wal")));
                }
                DurabilityArg::Memory => {
                    cmd.args(["--durability", "memory"]);
                }
            }
        }
        let log = dir.join(format!("{role}{index}.log"));
        vnfs.push(Vnf::spawn(cmd, &log, Duration::from_secs(10))?);
    }
    let addr = |ip: Ipv4Addr| SocketAddrV4::new(ip, vnf_paxos::service::DEFAULT_PORT);
    let cfg = ConsensusConfig {
        learners: (2 + n_acc..4 + n_acc)
            .map(|k| addr(topo.host_ip(k)))
            .collect(),
        retry: Duration::from_millis(200),
        ..ConsensusConfig::new(
            vec![addr(topo.host_ip(1))],
            (2..2 + n_acc).map(|k| addr(topo.host_ip(k))).collect(),
        )
    };
    let handle = topo.hosts[total - 1]
        .spawn(move || Consensus::connect(cfg))
        .join()
        .map_err(|_| anyhow!("client set-up panicked"))??
        .context("client")?;
    let me = handle.client_id();
    let learner_ctl = [control(2 + n_acc), control(3 + n_acc)];

    // Closed loop in one thread: top up to --in-flight submissions (handed
    // over together, so that they leave together), then take what the
    // client's learner delivered.
    let in_flight = u64::from(args.in_flight);
    let mut sent_at = vec![0u64; (in_flight as usize * 4).next_power_of_two()];
    let mask = sent_at.len() as u64 - 1;
    let payload = vec![0x5au8; usize::from(args.value_bytes)];
    let burst: Vec<&[u8]> = vec![&payload[..]; in_flight as usize];
    let mut hist = new_histogram();
    let (mut submitted, mut learned) = (0u64, 0u64);
    let t0 = Instant::now();
    let warm = Duration::from_secs_f64(args.warmup);
    let end = warm + Duration::from_secs_f64(args.duration);
    let mut window: Option<(u64, u64, [u64; 2], Instant)> = None;
    let mut last_progress = Instant::now();
    while t0.elapsed() < end && !stop.load(Ordering::Relaxed) {
        if window.is_none() && t0.elapsed() >= warm {
            let at = [
                counter(&learner_ctl[0], "commands")?,
                counter(&learner_ctl[1], "commands")?,
            ];
            window = Some((submitted, learned, at, Instant::now()));
        }
        let room = in_flight.saturating_sub(submitted - learned) as usize;
        if room > 0 {
            let seqs = handle.submit_all(&burst[..room])?;
            let now = dataplane::time::monotonic_nanos();
            for seq in seqs {
                sent_at[(seq & mask) as usize] = now;
            }
            submitted += room as u64;
        }
        if let Some(d) = handle.next_delivery(Duration::from_millis(100))? {
            let now = dataplane::time::monotonic_nanos();
            for c in d.commands.iter().filter(|c| c.client == me) {
                learned += 1;
                if window.is_some() {
                    let lat = now.saturating_sub(sent_at[(c.seq & mask) as usize]);
                    let _ = hist.record(lat.max(1));
                }
            }
            last_progress = Instant::now();
        }
        if last_progress.elapsed() > Duration::from_secs(5) {
            bail!(
                "no value learned for 5 s (see the logs in {})",
                dir.display()
            );
        }
    }
    let Some((sub0, learn0, at0, w0)) = window else {
        bail!("interrupted before the measured window");
    };
    let at1 = [
        counter(&learner_ctl[0], "commands")?,
        counter(&learner_ctl[1], "commands")?,
    ];
    let secs = w0.elapsed().as_secs_f64();
    drop(handle);

    // Agreement: both learners caught up to the same point, same digest.
    let mut agreement_ok = false;
    let mut states = Vec::new();
    let caught_up = Instant::now() + Duration::from_secs(10);
    while Instant::now() < caught_up {
        states = learner_ctl
            .iter()
            .map(|c| call(c, &json!({"op": "counters"})))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow!("learner counters: {e}"))?;
        if states[0]["next_instance"] == states[1]["next_instance"] {
            agreement_ok = states[0]["digest"] == states[1]["digest"]
                && states[0]["commands"] == states[1]["commands"];
            std::thread::sleep(Duration::from_millis(200));
            let again = call(&learner_ctl[0], &json!({"op": "counters"}))
                .map_err(|e| anyhow!("learner counters: {e}"))?;
            if again["next_instance"] == states[0]["next_instance"] {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let coord = call(&control(1), &json!({"op": "counters"})).unwrap_or(Value::Null);
    drop(vnfs);
    // The acceptors' logs grow by a hundred MB a second.
    let wals: Vec<String> = (0..n_acc).map(|i| format!("a{i}.wal")).collect();
    run_dir.finish(agreement_ok, &wals);

    let decided = (0..2).map(|i| at1[i] - at0[i]).min().unwrap_or(0);
    let mut run = base_run(args, backend);
    run.duration_s = secs;
    run.sent = submitted - sub0;
    run.received = learned - learn0;
    run.lost = run.sent.saturating_sub(run.received);
    run.pps = decided as f64 / secs;
    run.offered_pps = run.sent as f64 / secs;
    run.latency_ns = Latency::of(&hist);
    run.curve = crate::report::curve(&hist);
    let x = &mut run.extra;
    x.insert("decisions_per_s".into(), json!(decided as f64 / secs));
    x.insert("agreement_ok".into(), json!(agreement_ok));
    x.insert("acceptors".into(), json!(args.acceptors));
    x.insert(
        "durability".into(),
        json!(match args.durability {
            DurabilityArg::Wal => "wal",
            DurabilityArg::Memory => "memory",
        }),
    );
    x.insert("learners".into(), json!(states));
    let per = coord["commands_decided"].as_f64().unwrap_or(0.0)
        / coord["instances_decided"].as_f64().unwrap_or(0.0).max(1.0);
    x.insert("values_per_instance".into(), json!(per));
    x.insert("coordinator".into(), coord);
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_in_memory_acceptor_votes_for_every_accept() {
        let stop = AtomicBool::new(false);
        for per in [1, 8] {
            let (msgs, _, votes, _) = acceptor_rate(per, Duration::from_millis(50), &stop);
            assert!(msgs > 0);
            assert_eq!(votes, msgs);
        }
    }

    #[test]
    fn durations_are_bounded() {
        assert!(crate::cli::parse_duration("0").is_err());
        assert!(crate::cli::parse_duration("4000").is_err());
        assert!(crate::cli::parse_duration("nan").is_err());
        assert_eq!(crate::cli::parse_duration("2.5"), Ok(2.5));
        assert!(crate::cli::parse_warmup("61").is_err());
    }
}
