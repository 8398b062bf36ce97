//! `nfvinc-perf`: NFVinc's traffic generator and benchmark harness.
//!
//! ```text
//! nfvinc-perf echo --backend afxdp,udp --duration 5 --size 64 --json out.json
//! ```

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, anyhow, bail};
use clap::Parser;
use perf::cli::{Backend, Cli, Command, EchoArgs};
use perf::echo::{self, Setup};
use perf::progress::LogWriter;
use perf::sched::Pacing;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(LogWriter::default)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Echo(args) => run_echo(&args),
        Command::Paxos(args) => run_paxos(&args),
        Command::Sequencer(args) => perf::sequencer::main(&args),
        Command::Control(args) => run_control(&args),
        Command::Fd(args) => run_fd(&args),
    }
}

fn run_control(args: &perf::control::ControlArgs) -> anyhow::Result<ExitCode> {
    if let Some(p) = &args.json {
        check_writable("--json", p)?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let report = perf::control::run(args, &stop)?;
    print!("{}", perf::control::table(&report));
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    // Failed operations make the run a failure (the report is written
    // all the same): scripts must not take its figures for a clean run's.
    if perf::control::errors(&report) > 0 {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn run_fd(args: &perf::fd::FdArgs) -> anyhow::Result<ExitCode> {
    args.validate().map_err(|e| anyhow!(e))?;
    if let Some(p) = &args.json {
        check_writable("--json", p)?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())
            .context("installing signal handlers")?;
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let title = format!(
        "fd: {} processes, {} ms heartbeats, {} ms margin, {} crashes, {} s per backend after {} s warm-up",
        args.processes, args.interval_ms, args.margin_ms, args.crash, args.duration, args.warmup
    );
    tracing::info!("{title}");
    let outcome = perf::fd::run_all(args, &stop);
    println!("{title}");
    if outcome.report.runs.is_empty() {
        println!("(no run completed)");
    } else {
        print!("{}", outcome.report.table());
        for r in &outcome.report.runs {
            println!("{}", perf::fd::summary(r));
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

fn run_paxos(args: &perf::paxos::PaxosArgs) -> anyhow::Result<ExitCode> {
    if let Some(p) = &args.json {
        check_writable("--json", p)?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())
            .context("installing signal handlers")?;
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let title = format!(
        "paxos: {} acceptors, {}-byte values, {} in flight, {} s per backend after {} s warm-up",
        args.acceptors, args.value_bytes, args.in_flight, args.duration, args.warmup
    );
    tracing::info!("{title}");
    let outcome = perf::paxos::run_all(args, &stop);
    println!("{title}");
    if outcome.report.runs.is_empty() {
        println!("(no run completed)");
    } else {
        print!("{}", outcome.report.table());
        for r in &outcome.report.runs {
            println!(
                "{}: decisions/s {:.0}, agreement_ok {}",
                r.backend,
                r.pps,
                r.extra
                    .get("agreement_ok")
                    .unwrap_or(&serde_json::Value::Null)
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

/// Fails early when `path` cannot be written, before minutes of benchmark.
fn check_writable(flag: &str, path: &Path) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        bail!(
            "{flag} {}: directory {} does not exist",
            path.display(),
            dir.display()
        );
    }
    if path.is_dir() {
        bail!("{flag} {}: is a directory", path.display());
    }
    Ok(())
}

fn run_echo(args: &EchoArgs) -> anyhow::Result<ExitCode> {
    let cores = core_affinity::get_core_ids()
        .map(|c| c.len())
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1);
    for w in args.validate(cores).map_err(|e| anyhow!(e))? {
        tracing::warn!("{w}");
    }
    if let Some(p) = &args.json {
        check_writable("--json", p)?;
    }
    if let Some(p) = &args.plot {
        check_writable("--plot", p)?;
    }
    let needs_net = args.backend.iter().any(|b| *b != Backend::Mem);
    let vnf_bin = if needs_net {
        let bin = args.vnf_bin().map_err(|e| anyhow!(e))?;
        dataplane::netns::check_privileges()
            .context("the afxdp and udp backends build network namespaces")?;
        Some(bin)
    } else {
        None
    };
    let log_dir = match &args.log_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("nfvinc-perf-{}", std::process::id())),
    };
    if needs_net {
        std::fs::create_dir_all(&log_dir)
            .with_context(|| format!("creating log directory {}", log_dir.display()))?;
    }

    // First SIGINT/SIGTERM: finish the current run early, report what was
    // measured. Second: exit at once (namespaces are reaped by the next run,
    // the VNF gets SIGTERM from the kernel as its parent dies).
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())
            .context("installing signal handlers")?;
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }

    let pacing = match args.pacing() {
        Pacing::Max => "as fast as possible".to_string(),
        Pacing::Rate(r) => format!("open loop at {r} pps"),
        Pacing::Closed(n) => format!("closed loop, {n} in flight"),
    };
    let title = format!(
        "echo: {}-byte frames, {} s per backend after {} s warm-up, {pacing}",
        args.size, args.duration, args.warmup
    );
    tracing::info!("{title}");
    let setup = Setup {
        vnf_bin,
        log_dir,
        stop,
    };
    let outcome = echo::run_all(args, &setup);

    println!("{title}");
    if outcome.report.runs.is_empty() {
        println!("(no run completed)");
    } else {
        print!("{}", outcome.report.table());
    }
    if let Some(p) = &args.json {
        let text = serde_json::to_string_pretty(&outcome.report)?;
        std::fs::write(p, text + "\n").with_context(|| format!("writing {}", p.display()))?;
        tracing::info!(path = %p.display(), "JSON report written");
    }
    if let Some(p) = &args.plot {
        let svg = perf::plot::svg(
            &format!("{title}: latency by percentile"),
            &outcome.report.runs,
        );
        std::fs::write(p, svg).with_context(|| format!("writing {}", p.display()))?;
        tracing::info!(path = %p.display(), "latency plot written");
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
