//! The VNF under test, as a separate process in its own namespace.
//!
//! Started with `ip netns exec <ns> <vnf-bin> --backend <b> --iface <if>
//! --port 7 --core <c>`; its standard error goes to a log file and its
//! standard output is copied there line by line while we watch for `READY`.
//! Stopped with SIGTERM, then SIGKILL after a grace period. Should this
//! process die first, the kernel sends the VNF SIGTERM (PR_SET_PDEATHSIG),
//! so no VNF is left spinning on a core.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use dataplane::netns::Host;

/// How long the VNF gets to exit after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// The line the VNF prints on standard output once it can receive.
pub const READY_LINE: &str = "READY";

/// How to start the VNF.
#[derive(Debug, Clone)]
pub struct VnfSpec {
    /// The binary.
    pub bin: PathBuf,
    /// Its `--backend` (`afxdp`, `udp`).
    pub backend: &'static str,
    /// UDP port to serve.
    pub port: u16,
    /// Core to pin to.
    pub core: usize,
    /// Extra arguments, appended.
    pub extra_args: Vec<String>,
    /// Where its output goes.
    pub log: PathBuf,
    /// How long to wait for READY.
    pub ready_timeout: Duration,
}

/// A running VNF process.
#[derive(Debug)]
pub struct Vnf {
    child: Option<Child>,
    log: PathBuf,
}

impl Vnf {
    /// Starts the VNF in `host`'s namespace on `host`'s interface and waits
    /// until it prints READY.
    pub fn start(host: &Host, spec: &VnfSpec) -> anyhow::Result<Self> {
        let mut cmd = host.ns.command(&spec.bin);
        cmd.args(["--backend", spec.backend, "--iface", &host.ifname])
            .args(["--port", &spec.port.to_string()])
            .args(["--core", &spec.core.to_string()])
            .args(&spec.extra_args);
        Self::spawn(cmd, &spec.log, spec.ready_timeout)
    }

    /// Runs `cmd` with its output going to `log`, and waits up to
    /// `ready_timeout` for it to print READY.
    pub fn spawn(mut cmd: Command, log: &Path, ready_timeout: Duration) -> anyhow::Result<Self> {
        let log_file =
            File::create(log).with_context(|| format!("creating VNF log {}", log.display()))?;
        let stderr = log_file.try_clone().context("duplicating the log handle")?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        // SAFETY: prctl is async-signal-safe, touches no memory of ours, and
        // is all this hook does between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let described = describe(&cmd);
        tracing::info!(command = %described, log = %log.display(), "starting VNF");
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting the VNF: {described}"))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        let mut log_out = log_file;
        std::thread::Builder::new()
            .name("vnf-stdout".into())
            .spawn(move || {
                let mut ready = Some(ready_tx);
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let _ = writeln!(log_out, "{line}");
                    if line.trim() == READY_LINE
                        && let Some(tx) = ready.take()
                    {
                        let _ = tx.send(());
                    }
                }
            })
            .context("spawning the VNF output reader")?;
        let mut vnf = Vnf {
            child: Some(child),
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + ready_timeout;
        loop {
            if ready_rx.recv_timeout(Duration::from_millis(20)).is_ok() {
                break;
            }
            if let Some(status) = vnf.exited()? {
                bail!(
                    "the VNF exited ({status}) before printing {READY_LINE}; its log {}:\n{}",
                    vnf.log.display(),
                    log_tail(&vnf.log)
                );
            }
            if Instant::now() >= deadline {
                let _ = vnf.stop();
                bail!(
                    "the VNF did not print {READY_LINE} within {ready_timeout:?}; its log {}:\n{}",
                    vnf.log.display(),
                    log_tail(&vnf.log)
                );
            }
        }
        tracing::info!(pid = vnf.pid(), "VNF ready");
        Ok(vnf)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The exit status if the VNF has exited.
    pub fn exited(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        match &mut self.child {
            Some(c) => c.try_wait().context("checking on the VNF"),
            None => Ok(None),
        }
    }

    /// Sends SIGTERM, waits up to [`STOP_GRACE`], then SIGKILLs; returns
    /// the exit status. Idempotent: a second call returns `None`.
    pub fn stop(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let pid = child.id() as libc::pid_t;
        // SAFETY: kill has no memory-safety preconditions; `pid` is our own
        // child, not yet reaped, so it cannot name another process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(Some(status));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        tracing::warn!(pid, "VNF ignored SIGTERM for {STOP_GRACE:?}; killing it");
        child.kill().context("killing the VNF")?;
        Ok(Some(child.wait().context("reaping the VNF")?))
    }
}

impl Drop for Vnf {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(error = %e, "could not stop the VNF");
        }
    }
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last lines of a log file, for error messages.
pub fn log_tail(path: &Path) -> String {
    const LINES: usize = 20;
    match std::fs::read_to_string(path) {
        Ok(s) if s.trim().is_empty() => "  (empty)".into(),
        Ok(s) => {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(LINES)..]
                .iter()
                .map(|l| format!("  | {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        }
        Err(e) => format!("  (cannot read: {e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    /// A log file in a directory of its own, removed with the returned
    /// guard.
    fn log(name: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        (dir, path)
    }

    #[test]
    fn ready_then_sigterm() {
        let (_dir, l) = log("ready.log");
        let mut v = Vnf::spawn(
            sh("echo starting; echo READY; exec sleep 100"),
            &l,
            Duration::from_secs(5),
        )
        .unwrap();
        assert!(v.exited().unwrap().is_none());
        let t = Instant::now();
        let status = v.stop().unwrap().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGTERM)
        );
        assert!(t.elapsed() < STOP_GRACE);
        assert!(v.stop().unwrap().is_none(), "stopping twice is harmless");
        let text = std::fs::read_to_string(&l).unwrap();
        assert!(
            text.contains("starting") && text.contains("READY"),
            "{text}"
        );
    }

    #[test]
    fn sigterm_ignored_means_sigkill_after_the_grace() {
        let (_dir, l) = log("stubborn.log");
        let mut v = Vnf::spawn(
            sh("trap '' TERM; echo READY; while :; do sleep 0.05; done"),
            &l,
            Duration::from_secs(5),
        )
        .unwrap();
        let t = Instant::now();
        let status = v.stop().unwrap().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
        assert!(t.elapsed() >= STOP_GRACE);
    }

    #[test]
    fn dying_before_ready_is_explained_with_the_log() {
        let (_dir, l) = log("dies.log");
        let e = Vnf::spawn(
            sh("echo 'no such interface: veth9' >&2; exit 3"),
            &l,
            Duration::from_secs(5),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("exited") && e.contains("no such interface: veth9"),
            "{e}"
        );
    }

    #[test]
    fn never_ready_times_out() {
        let (_dir, l) = log("slow.log");
        let t = Instant::now();
        let e = Vnf::spawn(
            sh("echo warming; exec sleep 100"),
            &l,
            Duration::from_millis(300),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("did not print READY") && e.contains("warming"),
            "{e}"
        );
        assert!(t.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn a_missing_binary_is_an_error() {
        let (_dir, l) = log("missing.log");
        let e = Vnf::spawn(Command::new("/nonexistent/vnf"), &l, Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/vnf"), "{e}");
    }
}
