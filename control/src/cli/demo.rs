//! `nfvinc demo`: starts `nfvinc serve` on its embedded default (or uses a
//! running one), creates a user and an API key, and runs the example
//! applications against it, one per service, then shows the instances and
//! metrics through the client commands and cleans up.
//!
//! The examples are the `nfvinc-example-*` binaries of the `examples`
//! crate, looked up beside `nfvinc` like the VNFs are. Each one exits
//! non-zero when its service misbehaved, and so does the demo.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use libnfvinc::rest::local::{LocalDaemon, LocalDaemonConfig};

use super::{ClientArgs, ClientCommand};

/// Options of `nfvinc demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Use the daemon at --url with --api-key (or NFVINC_URL and
    /// NFVINC_API_KEY) instead of starting one.
    #[arg(long)]
    pub attach: bool,
    /// Run the demo's daemon without per-tenant namespaces (the default
    /// when not root).
    #[arg(long)]
    pub no_isolation: bool,
    /// Keep the demo daemon's data directory (its log is there).
    #[arg(long)]
    pub keep: bool,
}

/// An example: its binary, the service it needs, what it shows.
struct Example {
    binary: &'static str,
    service: &'static str,
    shows: &'static str,
    /// Not written yet: the demo names it and goes on.
    planned: bool,
}

/// The examples the demo runs, in order: one per service.
const EXAMPLES: &[Example] = &[
    Example {
        binary: "nfvinc-example-workers",
        service: "fd",
        shows: "a worker pool supervised by the failure detector",
        planned: false,
    },
    Example {
        binary: "nfvinc-example-kv",
        service: "consensus",
        shows: "a replicated key-value store on consensus",
        planned: false,
    },
    Example {
        binary: "nfvinc-example-chat",
        service: "sequencer",
        shows: "a group chat on atomic broadcast",
        planned: false,
    },
];

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Starts `nfvinc serve` with a fresh data directory and a user `demo`.
fn start_daemon(exe: &Path, a: &DemoArgs) -> anyhow::Result<LocalDaemon> {
    let isolation = is_root() && !a.no_isolation;
    let daemon = LocalDaemon::start(&LocalDaemonConfig {
        nfvinc: exe.to_owned(),
        data: std::env::temp_dir().join(format!("nfvinc-demo-{}", std::process::id())),
        user: "demo".into(),
        isolation,
        keep: a.keep,
        env: Vec::new(),
    })?;
    println!(
        "== nfvinc serve on {} (data {}, {}) ==",
        daemon.url(),
        daemon.data_dir().display(),
        if isolation {
            "each tenant in its own network namespace"
        } else {
            "no isolation: instances on loopback"
        }
    );
    Ok(daemon)
}

/// Runs the demo.
pub fn run(client: &ClientArgs, a: &DemoArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the nfvinc binary")?;
    let (own, url, key) = if a.attach {
        let key = client
            .api_key
            .clone()
            .context("--attach needs --api-key or NFVINC_API_KEY")?;
        (None, client.url.clone(), key)
    } else {
        let d = start_daemon(&exe, a)?;
        let (url, key) = (d.url().to_owned(), d.api_key().to_owned());
        (Some(d), url, key)
    };
    let args = ClientArgs {
        url: url.clone(),
        api_key: Some(key.clone()),
        ca_cert: client.ca_cert.clone(),
        json: false,
    };
    let c = super::connect(&args)?;

    println!("\n== discovery: nfvinc services ==");
    super::run_with(&c, false, &ClientCommand::Services)?;
    let catalog = c.discover()?;
    let installed = |name: &str| {
        catalog["services"].as_array().is_some_and(|a| {
            a.iter()
                .any(|s| s["name"] == name && s["installed"].as_bool() == Some(true))
        })
    };

    let mut failed = Vec::new();
    let mut ran = 0;
    for ex in EXAMPLES {
        println!("\n== {}: {} ==", ex.service, ex.shows);
        let bin = exe.with_file_name(ex.binary);
        if ex.planned && !bin.is_file() {
            println!("not shown yet: {} is planned, not written", ex.binary);
            continue;
        }
        if !bin.is_file() {
            println!(
                "not shown: {} is not built beside nfvinc (cargo build -p nfvinc-examples)",
                ex.binary
            );
            continue;
        }
        if !installed(ex.service) {
            println!(
                "not shown: the daemon does not offer service {}",
                ex.service
            );
            continue;
        }
        let t = Instant::now();
        let status = Command::new(&bin)
            .env("NFVINC_URL", &url)
            .env("NFVINC_API_KEY", &key)
            .status()
            .with_context(|| format!("running {}", bin.display()))?;
        ran += 1;
        if status.success() {
            println!("({} took {:.2} s)", ex.binary, t.elapsed().as_secs_f64());
        } else {
            failed.push(ex.binary);
        }
    }

    println!("\n== management: nfvinc connect fd, instances, metrics, remove ==");
    let fd = c.connect_service("fd")?;
    super::run_with(&c, false, &ClientCommand::Instances)?;
    // Give the Monitor one round to measure the new instance.
    std::thread::sleep(Duration::from_millis(300));
    super::run_with(&c, false, &ClientCommand::Metrics { id: None })?;
    super::run_with(&c, false, &ClientCommand::Remove { id: fd.id })?;
    let _ = c.close();
    drop(own);

    if ran == 0 {
        bail!("no example ran (build them: cargo build -p nfvinc-examples)");
    }
    if !failed.is_empty() {
        bail!("examples failed: {}", failed.join(", "));
    }
    println!("\ndemo: {ran} example(s) ran, every service behaved");
    Ok(())
}
