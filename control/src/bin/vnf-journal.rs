//! `vnf-journal`: a test service for the control plane. It keeps the VNF
//! contract (dataplane options, `--port`, `--control`, `READY`, clean stop on
//! SIGTERM) and reflects UDP datagrams like `vnf-echo`, and its control
//! socket offers a durable journal: `append {"value": …}` writes the value
//! to `<control>.journal` (fsynced) and publishes `{"appended": n, "value": …}`;
//! `read` returns every value in order. Because the journal outlives the
//! process, tests can check that requests scheduled while it was down were
//! applied in order and exactly once after it came back.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use dataplane::control::{ControlSocket, Request};
use dataplane::io::Batch;
use dataplane::launch::{self, DataplaneArgs, Endpoint};
use dataplane::runtime::Shutdown;
use serde_json::{Value, json};

/// A durable journal behind a control socket, plus a UDP reflector.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    #[command(flatten)]
    dataplane: DataplaneArgs,
    /// UDP port to serve on.
    #[arg(long, default_value_t = 7)]
    port: u16,
    /// Control socket path.
    #[arg(long)]
    control: PathBuf,
}

fn main() {
    launch::init_logging();
    if let Err(e) = run(Args::parse()) {
        eprintln!("vnf-journal: {e:#}");
        std::process::exit(1);
    }
}

fn answer(journal: &mut Journal, r: Request, inbox: &dataplane::control::Inbox) {
    match r.op() {
        "append" => {
            let value = r.body().get("value").cloned().unwrap_or(Value::Null);
            match journal.append(&value) {
                Ok(n) => {
                    inbox.publish(json!({"appended": n, "value": value}));
                    r.ok(json!({"index": n}));
                }
                Err(e) => r.err(format!("journal write failed: {e}")),
            }
        }
        "read" => r.ok(json!({"entries": journal.entries})),
        "health" => r.ok(json!("ok")),
        "counters" => r.ok(json!({"appended": journal.entries.len()})),
        other => {
            let msg = format!("unknown op {other:?}");
            r.err(msg)
        }
    }
}

struct Journal {
    file: std::fs::File,
    entries: Vec<Value>,
}

impl Journal {
    fn open(path: &PathBuf) -> Result<Self> {
        let entries = match std::fs::File::open(path) {
            Ok(f) => BufReader::new(f)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| serde_json::from_str(&l).ok())
                .collect(),
            Err(_) => vec![],
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Self { file, entries })
    }

    fn append(&mut self, v: &Value) -> std::io::Result<usize> {
        writeln!(self.file, "{v}")?;
        self.file.sync_data()?;
        self.entries.push(v.clone());
        Ok(self.entries.len() - 1)
    }
}

fn run(args: Args) -> Result<()> {
    let stop = Shutdown::on_signals().context("installing signal handlers")?;
    let mut journal_path = args.control.clone().into_os_string();
    journal_path.push(".journal");
    let mut journal = Journal::open(&journal_path.into())?;
    let (_sock, inbox) = ControlSocket::bind(&args.control)
        .with_context(|| format!("control socket {}", args.control.display()))?;
    let mut endpoint = Endpoint::open(&args.dataplane, args.port)?;
    let queues = std::mem::take(&mut endpoint.queues);
    // The journal is owned by this one thread: no lock, as in a real VNF.
    let stop2 = stop.clone();
    let control = std::thread::spawn(move || {
        while !stop2.is_triggered() {
            match inbox.try_next() {
                Some(r) => answer(&mut journal, r, &inbox),
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    });
    println!("READY");
    launch::run_workers(queues, &args.dataplane, &stop, |_| {
        |_, b: &mut Batch| vnf_echo::reflect(b)
    })?;
    stop.trigger();
    let _ = control.join();
    Ok(())
}
