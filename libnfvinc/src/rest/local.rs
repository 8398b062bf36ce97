//! An `nfvinc serve` of the caller's own, for tools that show or measure
//! the platform on a machine with no daemon running (`nfvinc demo`,
//! `nfvinc-perf control`): a fresh data directory, one user and its API
//! key, the daemon on an ephemeral loopback port, and all of it gone again
//! when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the daemon gets to print its `READY` line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the daemon gets to stop after SIGTERM before SIGKILL: it
/// stops its VNFs first, each with a grace period of its own.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// Why a daemon could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LocalDaemonError {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// `nfvinc user add` refused.
    #[error("`nfvinc user add {user}` failed: {stderr}")]
    UserAdd {
        /// The user it was to add.
        user: String,
        /// What it said.
        stderr: String,
    },
    /// The daemon exited, or did not announce its address in time.
    #[error(
        "nfvinc serve exited or stayed silent without printing READY (waited at most {timeout:?}); its log ({log_path}):\n{log}"
    )]
    NotReady {
        /// How long it was given.
        timeout: Duration,
        /// Where its log is.
        log_path: String,
        /// What its log said.
        log: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LocalDaemonError {
    let what = what.into();
    move |source| LocalDaemonError::Io { what, source }
}

/// How to start a [`LocalDaemon`].
#[derive(Debug, Clone)]
pub struct LocalDaemonConfig {
    /// The `nfvinc` binary.
    pub nfvinc: PathBuf,
    /// Its data directory, created if missing; its log is `daemon.log`
    /// there.
    pub data: PathBuf,
    /// The user to create, whose API key [`LocalDaemon::api_key`] gives.
    pub user: String,
    /// Each tenant's instances in a network namespace of its own (needs
    /// root); false: `--no-isolation`, instances on loopback.
    pub isolation: bool,
    /// Keep the data directory when dropped (and say where it is).
    pub keep: bool,
    /// Extra environment of the daemon (`RUST_LOG`, say).
    pub env: Vec<(String, String)>,
}

/// A running `nfvinc serve` of this process's own; stopped (SIGTERM, then
/// SIGKILL after a grace period) when dropped, and its data directory
/// removed unless it is to be kept.
#[derive(Debug)]
pub struct LocalDaemon {
    child: Child,
    data: PathBuf,
    keep: bool,
    url: String,
    api_key: String,
}

impl LocalDaemon {
    /// Creates the data directory and the user, starts the daemon and
    /// waits for its `READY` line.
    pub fn start(cfg: &LocalDaemonConfig) -> Result<Self, LocalDaemonError> {
        let data = &cfg.data;
        std::fs::create_dir_all(data).map_err(io(format!("creating {}", data.display())))?;
        let out = Command::new(&cfg.nfvinc)
            .arg("--data-dir")
            .arg(data)
            .args(["user", "add", &cfg.user])
            .output()
            .map_err(io(format!("running {} user add", cfg.nfvinc.display())))?;
        if !out.status.success() {
            return Err(LocalDaemonError::UserAdd {
                user: cfg.user.clone(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        let api_key = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let log_path = data.join("daemon.log");
        let log = std::fs::File::create(&log_path)
            .map_err(io(format!("creating {}", log_path.display())))?;
        let mut cmd = Command::new(&cfg.nfvinc);
        cmd.arg("--data-dir")
            .arg(data)
            .args(["serve", "--listen", "127.0.0.1:0"]);
        if !cfg.isolation {
            cmd.arg("--no-isolation");
        }
        let mut child = cmd
            .envs(cfg.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(io("starting nfvinc serve"))?;
        let stdout = child.stdout.take();
        // From here on, dropping it stops the daemon.
        let mut daemon = LocalDaemon {
            child,
            data: data.clone(),
            keep: cfg.keep,
            url: String::new(),
            api_key,
        };
        let (tx, rx) = mpsc::channel();
        if let Some(stdout) = stdout {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(url) = line.strip_prefix("READY ") {
                        let _ = tx.send(url.to_owned());
                    }
                }
            });
        }
        match rx.recv_timeout(READY_TIMEOUT) {
            Ok(url) => {
                daemon.url = url;
                Ok(daemon)
            }
            Err(_) => {
                // Its log outlives it: the reason is in there.
                daemon.keep = true;
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                Err(LocalDaemonError::NotReady {
                    timeout: READY_TIMEOUT,
                    log_path: log_path.display().to_string(),
                    log,
                })
            }
        }
    }

    /// Its base URL (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The API key of the user it was started with.
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// Its data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for LocalDaemon {
    fn drop(&mut self) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our
        // own child, not yet reaped, so it names no other process.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_GRACE;
        let mut stopped = false;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                stopped = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !stopped {
            tracing::warn!(
                pid = self.child.id(),
                "nfvinc serve ignored SIGTERM for {STOP_GRACE:?}; killing it"
            );
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if self.keep {
            eprintln!(
                "nfvinc serve's data directory kept: {}",
                self.data.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(nfvinc: &str, data: &Path) -> LocalDaemonConfig {
        LocalDaemonConfig {
            nfvinc: nfvinc.into(),
            data: data.to_owned(),
            user: "t".into(),
            isolation: false,
            keep: false,
            env: Vec::new(),
        }
    }

    fn scratch(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("libnfvinc-local-{name}-{}", std::process::id()))
    }

    #[test]
    fn a_missing_binary_is_an_error_that_names_it() {
        let data = scratch("missing");
        let e = LocalDaemon::start(&cfg("/nonexistent/nfvinc", &data)).unwrap_err();
        assert!(matches!(e, LocalDaemonError::Io { .. }), "{e}");
        assert!(e.to_string().contains("/nonexistent/nfvinc"), "{e}");
        let _ = std::fs::remove_dir_all(&data);
    }

    #[test]
    fn a_refused_user_add_is_an_error_before_any_daemon_runs() {
        let data = scratch("refused");
        let e = LocalDaemon::start(&cfg("/bin/false", &data)).unwrap_err();
        assert!(
            matches!(&e, LocalDaemonError::UserAdd { user, .. } if user == "t"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&data);
    }

    #[test]
    fn a_daemon_that_exits_without_ready_fails_at_once_and_keeps_its_log() {
        // `echo` "adds the user" (any output reads as a key) and then
        // "serves" by printing its arguments and exiting: no READY line.
        let data = scratch("exits");
        let t = Instant::now();
        let e = LocalDaemon::start(&cfg("/bin/echo", &data)).unwrap_err();
        // Its stdout closed, so there is no wait for the READY timeout.
        assert!(t.elapsed() < READY_TIMEOUT / 2, "{:?}", t.elapsed());
        assert!(matches!(e, LocalDaemonError::NotReady { .. }), "{e}");
        assert!(data.join("daemon.log").is_file(), "the log is kept");
        std::fs::remove_dir_all(&data).unwrap();
    }
}
