//! `nfvinc demo`: starts `nfvinc serve` on its embedded default (or uses a
//! running one), creates a user and an API key, and runs the example
//! applications against it, one per service, then shows the instances and
//! metrics through the client commands and cleans up.
//!
//! The examples are the `nfvinc-example-*` binaries of the `examples`
//! crate, looked up beside `nfvinc` like the VNFs are. Each one exits
//! non-zero when its service misbehaved, and so does the demo.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

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

/// A daemon the demo started; stopped with SIGTERM when dropped.
struct OwnDaemon {
    child: Child,
    data: PathBuf,
    keep: bool,
}

impl Drop for OwnDaemon {
    fn drop(&mut self) {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if self.keep {
            eprintln!("demo: data directory kept: {}", self.data.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.data);
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Starts `nfvinc serve` with a fresh data directory; returns it with its
/// URL and a new user's API key.
fn start_daemon(exe: &Path, a: &DemoArgs) -> anyhow::Result<(OwnDaemon, String, String)> {
    let data = std::env::temp_dir().join(format!("nfvinc-demo-{}", std::process::id()));
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let out = Command::new(exe)
        .arg("--data-dir")
        .arg(&data)
        .args(["user", "add", "demo"])
        .stderr(Stdio::null())
        .output()
        .context("running nfvinc user add")?;
    if !out.status.success() {
        bail!("nfvinc user add demo failed");
    }
    let key = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let log = std::fs::File::create(data.join("daemon.log"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("--data-dir")
        .arg(&data)
        .args(["serve", "--listen", "127.0.0.1:0"]);
    let isolation = is_root() && !a.no_isolation;
    if !isolation {
        cmd.arg("--no-isolation");
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .context("starting nfvinc serve")?;
    let stdout = child.stdout.take().context("the daemon's stdout")?;
    let daemon = OwnDaemon {
        child,
        data: data.clone(),
        keep: a.keep,
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some(url) = line.strip_prefix("READY ") {
                let _ = tx.send(url.to_owned());
            }
        }
    });
    let Ok(url) = rx.recv_timeout(Duration::from_secs(30)) else {
        let log = std::fs::read_to_string(data.join("daemon.log")).unwrap_or_default();
        bail!("nfvinc serve did not become ready within 30 s; its log:\n{log}");
    };
    println!(
        "== nfvinc serve on {url} (data {}, {}) ==",
        data.display(),
        if isolation {
            "each tenant in its own network namespace"
        } else {
            "no isolation: instances on loopback"
        }
    );
    Ok((daemon, url, key))
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
        let (d, url, key) = start_daemon(&exe, a)?;
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
