//! `vnf-echo`: runs the echo VNF on a dataplane backend until SIGINT/SIGTERM.
//!
//! Prints `READY` on standard output once it can receive, and one JSON line of
//! counters when it stops.

use anyhow::{Context, Result};
use clap::Parser;
use dataplane::io::Batch;
use dataplane::launch::{self, DataplaneArgs, Endpoint};
use dataplane::runtime::Shutdown;

/// A UDP reflector VNF: sends every datagram back to its sender, rewriting
/// the frame in place.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    #[command(flatten)]
    dataplane: DataplaneArgs,
    /// UDP port to serve on.
    #[arg(long, default_value_t = 7)]
    port: u16,
}

fn main() {
    launch::init_logging();
    if let Err(e) = run(Args::parse()) {
        eprintln!("vnf-echo: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    let stop = Shutdown::on_signals().context("installing signal handlers")?;
    // Set-up happens here, in full, before READY; each worker then owns its
    // queue's backend and runs the same small loop.
    let mut endpoint = Endpoint::open(&args.dataplane, args.port)?;
    let queues = std::mem::take(&mut endpoint.queues);
    tracing::info!(
        backend = ?args.dataplane.backend,
        listen = %endpoint.listen,
        queues = queues.len(),
        "echo serving"
    );
    println!("READY");
    let totals = launch::run_workers(queues, &args.dataplane, &stop, |_| {
        |_, b: &mut Batch| vnf_echo::reflect(b)
    })?;
    println!("{}", launch::counters_json(&totals));
    tracing::info!(?totals, "echo stopped");
    Ok(())
}
