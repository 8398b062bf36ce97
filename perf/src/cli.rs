//! The command line: `nfvinc-perf <scenario> [options]`, and its validation.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::sched::Pacing;

/// The longest measured window accepted, in seconds: a hard ceiling on every
/// load loop, whatever the command line says.
pub const MAX_DURATION_S: f64 = 3600.0;
/// The longest warm-up accepted, in seconds.
pub const MAX_WARMUP_S: f64 = 60.0;
/// Smallest and largest frame, in bytes (Ethernet header to end of payload,
/// no FCS).
pub const FRAME_SIZES: std::ops::RangeInclusive<u16> = 64..=1500;
/// The highest open-loop rate accepted, in packets per second.
pub const MAX_RATE: u64 = 100_000_000;
/// The most packets a closed-loop run may keep in flight.
pub const MAX_IN_FLIGHT: u32 = 2048;

/// NFVinc's traffic generator and benchmark harness.
#[derive(Debug, Parser)]
#[command(name = "nfvinc-perf", version, propagate_version = true)]
#[command(
    about = "NFVinc traffic generator and benchmark harness",
    long_about = "NFVinc traffic generator and benchmark harness.\n\n\
Each scenario runs once per backend listed, in turn, each in a topology it \
builds itself (two network namespaces joined by a veth pair: the generator in \
one, the VNF in the other), then prints the results side by side with the \
ratio of each backend to kernel UDP. Needs root for the namespaces, except \
for the in-memory backend.\n\n\
Logging follows RUST_LOG (default: info)."
)]
pub struct Cli {
    /// The scenario to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Scenarios.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// UDP echo: the generator sends stamped UDP frames to the `vnf-echo`
    /// VNF, which reflects them; measures throughput, loss and round-trip
    /// latency.
    #[command(
        long_about = "UDP echo: the generator sends stamped UDP frames to the `vnf-echo` VNF, \
which reflects them; measures throughput, loss and round-trip latency.\n\n\
For afxdp and udp, each run builds two network namespaces joined by a veth pair: \
vnf-echo runs in one as a separate process (pinned to --core-vnf, on the backend \
under test), the generator in the other on its own AF_XDP socket (pinned to \
--core-gen). Each frame carries a sequence number and a timestamp; latency is the \
round trip from that timestamp (the intended send time in open loop, so time the \
generator spent behind schedule counts) to the reply's arrival. Losses are counted \
by sequence number; replies later than the drain period count as lost.\n\n\
For mem, 512 frames circulate in process through the in-memory backend and the \
echo logic alone; latency there is each burst's processing time divided by its \
packets, and ns/packet is wall time over packets.\n\n\
The JSON report is {\"runs\": [{scenario, backend, duration_s, sent, received, \
lost, pps, latency_ns: {p50, p90, p99, p999, max}, ...}, ...]}."
    )]
    #[command(after_help = "Examples:\n  \
nfvinc-perf echo --backend afxdp,udp --duration 5 --size 64 --json out.json\n  \
nfvinc-perf echo --backend afxdp,udp --rate 200000 --plot latency.svg\n  \
nfvinc-perf echo --backend udp --closed-loop 1\n  \
nfvinc-perf echo --backend mem --duration 2")]
    Echo(EchoArgs),
    /// Consensus: a client submits values to `vnf-paxos` (one coordinator,
    /// --acceptors acceptors, two learners) in a closed loop; measures
    /// decisions per second at every learner, submit-to-learn latency and
    /// the learners' agreement (exit status 1 if they disagree). `mem`: the
    /// acceptor logic alone on one core.
    #[command(after_help = "Examples:\n  \
nfvinc-perf paxos --backend afxdp,udp --acceptors 3 --duration 10 --json out.json\n  \
nfvinc-perf paxos --backend mem --duration 2")]
    Paxos(crate::paxos::PaxosArgs),
    /// Broadcast: `vnf-sequencer` and a group of --receivers members
    /// (libnfvinc's `Broadcast`), --senders of them sending atomic
    /// broadcasts in a closed loop; measures messages delivered per second
    /// at every member, send-to-deliver latency and whether every member
    /// delivered the same sequence (exit status 1 if not). `mem`: the
    /// stamping logic alone on one core.
    #[command(after_help = "Examples:\n  \
nfvinc-perf sequencer --backend afxdp,udp --receivers 1,5,50 --duration 10 --json out.json\n  \
nfvinc-perf sequencer --backend mem --duration 2")]
    Sequencer(crate::sequencer::SequencerArgs),
    /// Control plane: starts its own `nfvinc serve` and measures connect
    /// time (create request to usable instance), REST operations per second
    /// and latency at --clients concurrent clients, and the same operation's
    /// latency over the direct channel.
    #[command(after_help = "Example:\n  \
nfvinc-perf control --clients 100 --duration 10 --json out.json")]
    Control(crate::control::ControlArgs),
    /// Failure detection: `vnf-fd` monitors --processes heartbeating
    /// processes spread over --hosts ports; --crash of them crash at random
    /// times; after the window one port goes down. Measures heartbeats
    /// ingested per second, crash-to-suspect time, false suspicions,
    /// link-down-to-unreachable time and the detector's CPU time (exit
    /// status 1 if a crash goes undetected). `mem`: the detector logic
    /// alone on one core.
    #[command(after_help = "Examples:\n  \
nfvinc-perf fd --backend afxdp,udp --processes 1000 --interval-ms 10 --duration 30 --crash 50 --json out.json\n  \
nfvinc-perf fd --backend udp --crash 0 --duration 60\n  \
nfvinc-perf fd --backend mem --duration 4")]
    Fd(crate::fd::FdArgs),
}

/// A backend the VNF runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum Backend {
    /// AF_XDP sockets behind the XDP steering program.
    Afxdp,
    /// Kernel UDP sockets: the baseline.
    Udp,
    /// In-process, in-memory loopback: the VNF logic alone, no kernel, no
    /// generator process (no root needed).
    Mem,
    /// DPDK (the VNF built with the `dpdk` feature) reading the veth through
    /// `net_af_packet`; with `echo --dpdk-null`, the in-process pipeline on
    /// two `net_null` devices against dpdk-testpmd.
    Dpdk,
}

impl Backend {
    /// The name the VNF binary and the report use.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Afxdp => "afxdp",
            Backend::Udp => "udp",
            Backend::Mem => "mem",
            Backend::Dpdk => "dpdk",
        }
    }
}

/// How generated frames keep a valid UDP checksum after the sequence number
/// and timestamp are written into them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChecksumMode {
    /// Update the template's checksum incrementally (RFC 1624).
    Incremental,
    /// Send a zero UDP checksum ("none", allowed for UDP over IPv4).
    Zero,
    /// Recompute the whole UDP checksum per frame (for comparison).
    Full,
}

impl ChecksumMode {
    /// The name the report uses.
    pub fn name(self) -> &'static str {
        match self {
            ChecksumMode::Incremental => "incremental",
            ChecksumMode::Zero => "zero",
            ChecksumMode::Full => "full",
        }
    }
}

/// Options of `nfvinc-perf echo`.
#[derive(Debug, Clone, Args)]
pub struct EchoArgs {
    /// Backends to run, in turn, comma separated (e.g. `afxdp,udp`).
    #[arg(long, value_enum, value_delimiter = ',', required = true)]
    pub backend: Vec<Backend>,

    /// Measured seconds per backend, warm-up excluded (at most 3600).
    #[arg(long, value_name = "SECONDS", default_value = "5", allow_negative_numbers = true,
          value_parser = parse_duration)]
    pub duration: f64,

    /// Frame length in bytes, Ethernet header to end of UDP payload, no FCS
    /// (64..=1500).
    #[arg(long, value_name = "BYTES", default_value_t = 64,
          value_parser = clap::value_parser!(u16).range(64..=1500))]
    pub size: u16,

    /// Write the results as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,

    /// Draw the latency distribution of every run to this SVG file.
    #[arg(long, value_name = "PATH")]
    pub plot: Option<PathBuf>,

    /// Open loop at this many packets per second; latency is measured from
    /// each packet's intended send time, so it includes the generator's own
    /// queueing when it falls behind. Default: as fast as possible.
    #[arg(long, value_name = "PPS", conflicts_with = "closed_loop",
          value_parser = clap::value_parser!(u64).range(1..=MAX_RATE))]
    pub rate: Option<u64>,

    /// Closed loop: keep N packets in flight (N=1 measures unloaded latency).
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=MAX_IN_FLIGHT as i64))]
    pub closed_loop: Option<u32>,

    /// Warm-up seconds before the measured window (not counted; at most 60).
    #[arg(long, value_name = "SECONDS", default_value = "1", allow_negative_numbers = true,
          value_parser = parse_warmup)]
    pub warmup: f64,

    /// CPU core to pin the generator (or the in-memory loop) to.
    #[arg(long, value_name = "CORE", default_value_t = 0)]
    pub core_gen: usize,

    /// CPU core to pin the VNF to.
    #[arg(long, value_name = "CORE", default_value_t = 1)]
    pub core_vnf: usize,

    /// Receive/transmit queues on each veth end; the generator opens one
    /// AF_XDP socket per queue.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=16))]
    pub queues: u32,

    /// The VNF binary. Default: `vnf-echo` next to this executable.
    #[arg(long, value_name = "PATH")]
    pub vnf_bin: Option<PathBuf>,

    /// With `--backend dpdk`: measure the echo pipeline in process on two
    /// DPDK `net_null` devices, and dpdk-testpmd on the same, instead of
    /// the VNF process over the veth (needs the `dpdk` feature).
    #[arg(long)]
    pub dpdk_null: bool,

    /// The VNF's polling policy (`busy` or `adaptive`); it has its own
    /// core, so it busy-polls by default.
    #[arg(long, value_name = "POLICY", default_value = "busy",
          value_parser = ["busy", "adaptive"])]
    pub vnf_poll: String,

    /// Frames per burst on the generator's (or the in-memory loop's) receive
    /// and transmit calls.
    #[arg(long, value_name = "N", default_value_t = 32,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub burst: u16,

    /// How generated frames keep a valid UDP checksum.
    #[arg(long, value_enum, default_value_t = ChecksumMode::Incremental)]
    pub checksum: ChecksumMode,

    /// Milliseconds to keep receiving after the last send; replies later
    /// than that count as lost.
    #[arg(long, value_name = "MS", default_value_t = 200,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub drain_ms: u64,

    /// Seconds to wait for the VNF to print READY.
    #[arg(long, value_name = "SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=120))]
    pub ready_timeout: u64,

    /// Directory for the VNF's logs. Default: a fresh directory under the
    /// system's temporary directory.
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
}

fn parse_secs(s: &str, max: f64, zero_ok: bool) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !v.is_finite() || v < 0.0 || (!zero_ok && v == 0.0) {
        let bound = if zero_ok { "0 or more" } else { "more than 0" };
        return Err(format!("must be {bound} seconds, got {s}"));
    }
    if v > max {
        return Err(format!("at most {max} seconds, got {s}"));
    }
    Ok(v)
}

/// `--duration`: seconds, above 0, at most [`MAX_DURATION_S`].
pub fn parse_duration(s: &str) -> Result<f64, String> {
    parse_secs(s, MAX_DURATION_S, false)
}

/// `--warmup`: seconds, 0 or more, at most [`MAX_WARMUP_S`].
pub fn parse_warmup(s: &str) -> Result<f64, String> {
    parse_secs(s, MAX_WARMUP_S, true)
}

impl EchoArgs {
    /// The pacing the flags ask for.
    pub fn pacing(&self) -> Pacing {
        match (self.rate, self.closed_loop) {
            (Some(r), _) => Pacing::Rate(r),
            (None, Some(n)) => Pacing::Closed(n),
            (None, None) => Pacing::Max,
        }
    }

    /// Checks what clap cannot check alone: repeated backends and the cores
    /// against the `cores` this machine has. Returns warnings worth logging.
    pub fn validate(&self, cores: usize) -> Result<Vec<String>, String> {
        let mut warnings = Vec::new();
        for (i, b) in self.backend.iter().enumerate() {
            if self.backend[..i].contains(b) {
                return Err(format!("--backend lists `{}` twice", b.name()));
            }
        }
        for (flag, core) in [("--core-gen", self.core_gen), ("--core-vnf", self.core_vnf)] {
            if core >= cores {
                return Err(format!(
                    "{flag} {core}: this machine has {cores} cores (0..={})",
                    cores.saturating_sub(1)
                ));
            }
        }
        let needs_vnf = self.backend.iter().any(|b| *b != Backend::Mem);
        if needs_vnf {
            // vnf-echo pins one worker per queue to consecutive cores.
            let vnf_cores = self.core_vnf..self.core_vnf + self.queues as usize;
            if vnf_cores.end > cores {
                warnings.push(format!(
                    "--queues {} puts VNF workers on cores {}..={}, but this machine has {cores}: \
                     the extra workers run unpinned and share cores",
                    self.queues,
                    vnf_cores.start,
                    vnf_cores.end - 1
                ));
            }
            if vnf_cores.contains(&self.core_gen) {
                warnings.push(format!(
                    "generator and VNF share core {}: figures will measure contention",
                    self.core_gen
                ));
            }
        }
        if self.backend.contains(&Backend::Mem) && self.rate.is_some() {
            warnings
                .push("--rate does not apply to the mem backend (it always runs flat out)".into());
        }
        Ok(warnings)
    }

    /// The VNF binary to run: `--vnf-bin`, or `vnf-echo` beside the running
    /// executable.
    pub fn vnf_bin(&self) -> Result<PathBuf, String> {
        vnf_binary(self.vnf_bin.as_deref(), "vnf-echo")
    }
}

/// The VNF binary a scenario runs: `given` (`--vnf-bin`), or the binary
/// `name` (also its package's name) beside the running executable; an
/// error that says how to build it when it is not there.
pub fn vnf_binary(given: Option<&std::path::Path>, name: &str) -> Result<PathBuf, String> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .map_err(|e| format!("cannot find the current executable: {e}"))?
            .with_file_name(name),
    };
    if !path.is_file() {
        return Err(format!(
            "VNF binary {} not found: build it (`cargo build --release -p {name}`) or pass --vnf-bin",
            path.display()
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &str) -> Result<EchoArgs, clap::Error> {
        let cli =
            Cli::try_parse_from(std::iter::once("nfvinc-perf").chain(args.split_whitespace()))?;
        match cli.command {
            Command::Echo(a) => Ok(a),
            _ => panic!("not an echo command line"),
        }
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_issue_command_line_parses() {
        let a = parse("echo --backend afxdp,udp --duration 5 --size 64 --json out.json").unwrap();
        assert_eq!(a.backend, [Backend::Afxdp, Backend::Udp]);
        assert_eq!(a.duration, 5.0);
        assert_eq!(a.size, 64);
        assert_eq!(a.json.as_deref(), Some(std::path::Path::new("out.json")));
        assert_eq!(a.pacing(), Pacing::Max);
        assert_eq!((a.core_gen, a.core_vnf, a.queues, a.warmup), (0, 1, 1, 1.0));
        assert!(a.validate(2).unwrap().is_empty());
    }

    #[test]
    fn pacing_flags() {
        assert_eq!(
            parse("echo --backend udp --rate 1000").unwrap().pacing(),
            Pacing::Rate(1000)
        );
        assert_eq!(
            parse("echo --backend udp --closed-loop 4")
                .unwrap()
                .pacing(),
            Pacing::Closed(4)
        );
        let e = parse("echo --backend udp --rate 1000 --closed-loop 4").unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn bad_input_is_refused_with_a_reason() {
        for (args, needle) in [
            ("echo --backend udp --size 63", "64..=1500"),
            ("echo --backend udp --size 1501", "64..=1500"),
            ("echo --backend udp --duration 3601", "at most 3600"),
            ("echo --backend udp --duration 0", "more than 0"),
            ("echo --backend udp --duration -1", "more than 0"),
            ("echo --backend udp --duration soon", "not a number"),
            ("echo --backend udp --duration inf", "more than 0"),
            ("echo --backend udp --warmup 61", "at most 60"),
            ("echo --backend udp --rate 0", "rate"),
            ("echo --backend udp --closed-loop 0", "closed-loop"),
            ("echo --backend udp --queues 0", "queues"),
            ("echo --backend udp --burst 65", "burst"),
            ("echo", "--backend"),
        ] {
            let e = parse(args).expect_err(args).to_string();
            assert!(e.contains(needle), "{args}: {e}");
        }
    }

    #[test]
    fn dpdk_is_a_backend_like_the_others() {
        let a = parse("echo --backend dpdk,afxdp,udp --duration 2").unwrap();
        assert_eq!(a.backend, [Backend::Dpdk, Backend::Afxdp, Backend::Udp]);
        assert!(!a.dpdk_null);
        assert!(parse("echo --backend dpdk --dpdk-null").unwrap().dpdk_null);
        assert_eq!(Backend::Dpdk.name(), "dpdk");
    }

    #[test]
    fn validation_beyond_clap() {
        let a = parse("echo --backend udp,afxdp,udp").unwrap();
        assert!(a.validate(2).unwrap_err().contains("twice"));
        let a = parse("echo --backend udp --core-vnf 5").unwrap();
        let e = a.validate(2).unwrap_err();
        assert!(e.contains("--core-vnf 5") && e.contains("2 cores"), "{e}");
        let a = parse("echo --backend udp --core-gen 1").unwrap();
        assert!(a.validate(2).unwrap()[0].contains("share core 1"));
        // The in-memory backend has no VNF process to share a core with.
        let a = parse("echo --backend mem --core-gen 1").unwrap();
        assert!(a.validate(2).unwrap().is_empty());
        // Two VNF workers from core 1 need cores 1 and 2.
        let a = parse("echo --backend afxdp --queues 2").unwrap();
        let w = a.validate(2).unwrap();
        assert!(w.len() == 1 && w[0].contains("cores 1..=2"), "{w:?}");
        assert!(a.validate(4).unwrap().is_empty());
        let a = parse("echo --backend afxdp --queues 2 --core-vnf 0 --core-gen 1").unwrap();
        assert!(a.validate(4).unwrap()[0].contains("share core 1"));
    }

    #[test]
    fn a_missing_vnf_binary_is_explained() {
        let a = parse("echo --backend udp --vnf-bin /nonexistent/vnf-echo").unwrap();
        let e = a.vnf_bin().unwrap_err();
        assert!(
            e.contains("/nonexistent/vnf-echo") && e.contains("--vnf-bin"),
            "{e}"
        );
    }
}
