//! Starts real `nfvinc serve` processes for the cross-process tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The daemon binary under test.
pub const NFVINC: &str = env!("CARGO_BIN_EXE_nfvinc");

/// Fails with the reason when the test cannot build namespaces.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        uid, 0,
        "this test runs VNFs in per-tenant network namespaces and needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN)"
    );
}

/// Creates a user in `data` and returns its API key.
pub fn add_user(data: &Path, name: &str) -> String {
    let out = Command::new(NFVINC)
        .args(["--data-dir"])
        .arg(data)
        .args(["user", "add", name])
        .output()
        .expect("run nfvinc user add");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A running daemon; stopped with SIGTERM when dropped.
pub struct Daemon {
    child: Option<Child>,
    /// Its base URL.
    pub url: String,
    /// Its data directory.
    pub data: PathBuf,
}

impl Daemon {
    /// Starts `nfvinc serve` on an ephemeral loopback port with the test
    /// services, plus `extra` flags; waits for its READY line.
    pub fn start(data: &Path, extra: &[&str]) -> Daemon {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data.join("daemon.log"))
            .or_else(|_| {
                std::fs::create_dir_all(data)?;
                std::fs::File::create(data.join("daemon.log"))
            })
            .unwrap();
        let mut child = Command::new(NFVINC)
            .arg("--data-dir")
            .arg(data)
            .args(["serve", "--listen", "127.0.0.1:0", "--test-services"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn nfvinc serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(url) = line.strip_prefix("READY ") {
                    let _ = tx.send(url.to_owned());
                }
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(u) => u,
            Err(_) => {
                let _ = child.kill();
                let log = std::fs::read_to_string(data.join("daemon.log")).unwrap_or_default();
                panic!("nfvinc serve did not print READY within 30 s; log:\n{log}");
            }
        };
        Daemon {
            child: Some(child),
            url,
            data: data.to_owned(),
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Stops it with SIGTERM and waits (at most 15 s).
    pub fn stop(mut self) {
        self.stop_inner(libc::SIGTERM);
    }

    /// Kills it with SIGKILL: no clean-up, VNFs keep running.
    pub fn kill(mut self) {
        self.stop_inner(libc::SIGKILL);
    }

    fn stop_inner(&mut self, sig: i32) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("nfvinc serve did not stop within 15 s of signal {sig}");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() && !std::thread::panicking() {
            self.stop_inner(libc::SIGTERM);
        } else if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

/// Waits until `f` is true, at most `timeout`.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    f()
}

/// Whether process `pid` exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

/// Whether namespace `name` exists.
pub fn netns_exists(name: &str) -> bool {
    Path::new("/var/run/netns").join(name).exists()
}
