//! Virtualised Infrastructure Manager: starts, stops and watches VNF
//! processes. [`Vim`] is what the Service Manager needs from any VIM, so a
//! remote one (another host's agent) can take the local one's place;
//! [`LocalVim`] runs `vnf-<service>` binaries on this host, inside the
//! tenant's network namespace.

use std::collections::HashMap;
use std::future::Future;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// A boxed future, so that [`Vim`] stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Everything needed to start one instance.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// The instance id (names the process in logs).
    pub instance_id: String,
    /// The VNF binary.
    pub binary: PathBuf,
    /// The tenant's namespace; `None` runs in the daemon's own.
    pub netns: Option<String>,
    /// Interface to serve on.
    pub iface: String,
    /// Address to serve on.
    pub addr: Ipv4Addr,
    /// UDP port of the direct channel.
    pub port: u16,
    /// Control socket path, for VNFs that have one.
    pub control: Option<PathBuf>,
    /// Dataplane backend (`udp`, `afxdp`).
    pub backend: String,
    /// Worker queues (the unit of scaling of one VNF process).
    pub queues: u32,
    /// Extra VNF options from the instance's configuration.
    pub extra_args: Vec<String>,
    /// Where the VNF's standard error and output go.
    pub log: PathBuf,
    /// Longest wait for `READY`.
    pub ready_timeout: Duration,
    /// The processes of a multi-process instance (the consensus service's
    /// roles), or of a VNF that needs arguments of its own (the
    /// sequencer's group); empty: one process with the common arguments.
    pub roles: Vec<RoleSpec>,
}

/// One process of an instance that has several, or arguments of its own.
#[derive(Debug, Clone)]
pub struct RoleSpec {
    /// Its name within the instance (`coordinator-0`, `acceptor-1`…).
    pub name: String,
    /// Its UDP port, given as `--port` (`None`: the VNF takes it from its
    /// own arguments, as `vnf-paxos` does from its member lists).
    pub port: Option<u16>,
    /// Its control socket; also what recognises the process after a daemon
    /// restart, so every role of an instance needs a distinct one.
    pub control: PathBuf,
    /// Its own arguments, after the common ones.
    pub args: Vec<String>,
}

/// One process to start: its name, arguments, and adoption marker.
#[derive(Debug, Clone)]
struct Command1 {
    name: String,
    args: Vec<String>,
    marker: String,
}

impl LaunchSpec {
    fn common(
        &self,
        port: Option<u16>,
        queues: u32,
        control: Option<&std::path::Path>,
    ) -> Vec<String> {
        let mut a = vec![
            "--backend".into(),
            self.backend.clone(),
            "--iface".into(),
            self.iface.clone(),
            "--addr".into(),
            self.addr.to_string(),
            "--queues".into(),
            queues.to_string(),
        ];
        if let Some(p) = port {
            a.push("--port".into());
            a.push(p.to_string());
        }
        if let Some(c) = control {
            a.push("--control".into());
            a.push(c.display().to_string());
        }
        a
    }

    /// The processes of the instance, in start order.
    fn commands(&self) -> Vec<Command1> {
        if self.roles.is_empty() {
            let mut args = self.common(Some(self.port), self.queues, self.control.as_deref());
            args.extend(self.extra_args.iter().cloned());
            return vec![Command1 {
                name: "vnf".into(),
                args,
                marker: marker(self),
            }];
        }
        self.roles
            .iter()
            .map(|r| {
                // One state machine per role: one queue each.
                let mut args = self.common(r.port, 1, Some(&r.control));
                args.extend(r.args.iter().cloned());
                args.extend(self.extra_args.iter().cloned());
                Command1 {
                    name: r.name.clone(),
                    args,
                    marker: r.control.display().to_string(),
                }
            })
            .collect()
    }
}

/// A started instance.
#[derive(Debug, Clone)]
pub struct Launched {
    /// Its (first) process id.
    pub pid: u32,
    /// Every process id, in start order.
    pub pids: Vec<u32>,
    /// Time from spawn to `READY` (of the last process to be ready).
    pub ready_after: Duration,
}

/// What the VIM knows of an instance's process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// Running.
    Running,
    /// Gone, with the reason (exit status or "not running").
    Gone(String),
}

/// Why an instance could not be started.
#[derive(Debug, thiserror::Error)]
pub enum VimError {
    /// The binary is not installed.
    #[error("VNF binary {0} not found")]
    NoBinary(PathBuf),
    /// The process could not be spawned.
    #[error("cannot start {binary}: {source}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The process exited before `READY`.
    #[error("{binary} exited ({status}) before READY: {stderr}")]
    EarlyExit {
        /// The binary.
        binary: PathBuf,
        /// Its exit status.
        status: String,
        /// The end of its log.
        stderr: String,
    },
    /// The process did not print `READY` in time (it was killed).
    #[error("{binary} did not print READY within {ms} ms (killed); log: {stderr}")]
    Timeout {
        /// The binary.
        binary: PathBuf,
        /// The timeout.
        ms: u128,
        /// The end of its log.
        stderr: String,
    },
}

/// What the Service Manager needs from a VIM.
pub trait Vim: Send + Sync + 'static {
    /// Starts an instance (all its processes) and returns once it is ready
    /// to serve.
    fn instantiate<'a>(&'a self, spec: &'a LaunchSpec)
    -> BoxFuture<'a, Result<Launched, VimError>>;
    /// Stops an instance (SIGTERM, then SIGKILL after a grace period).
    /// `pids` are the recorded ones, for instances adopted after a restart.
    fn terminate<'a>(&'a self, instance_id: &'a str, pids: &'a [u32]) -> BoxFuture<'a, ()>;
    /// Takes charge of the processes started by an earlier daemon; false
    /// when `pids` are not (all) that instance's processes any more.
    fn adopt(&self, spec: &LaunchSpec, pids: &[u32]) -> bool;
    /// Whether the instance's processes run (all of them).
    fn liveness(&self, instance_id: &str) -> Liveness;
    /// The instance's first process id, if it runs.
    fn pid(&self, instance_id: &str) -> Option<u32> {
        self.pids(instance_id).first().copied()
    }
    /// Every process id of the instance.
    fn pids(&self, instance_id: &str) -> Vec<u32>;

    /// Replaces a dead or unhealthy instance by fresh processes.
    fn heal<'a>(
        &'a self,
        spec: &'a LaunchSpec,
        pids: &'a [u32],
    ) -> BoxFuture<'a, Result<Launched, VimError>> {
        Box::pin(async move {
            self.terminate(&spec.instance_id, pids).await;
            self.instantiate(spec).await
        })
    }

    /// Restarts the instance with `spec.queues` workers. A single VNF
    /// process scales by its queues; a multi-host VIM would add processes.
    fn scale<'a>(
        &'a self,
        spec: &'a LaunchSpec,
        pids: &'a [u32],
    ) -> BoxFuture<'a, Result<Launched, VimError>> {
        self.heal(spec, pids)
    }
}

#[derive(Debug)]
struct Proc {
    pid: u32,
    /// Our own child; `None` for a process adopted from an earlier daemon
    /// (init reaps it, so `/proc` tells whether it runs).
    child: Option<Child>,
    /// What `/proc/<pid>/cmdline` must contain for an adopted process to
    /// still be ours (pids are reused).
    marker: String,
    /// Its role's name, for messages.
    name: String,
}

/// Runs VNFs as local processes.
#[derive(Debug, Default)]
pub struct LocalVim {
    /// Each instance's processes, in start order.
    procs: Mutex<HashMap<String, Vec<Proc>>>,
}

fn tail_of(path: &std::path::Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().rev().take(5).collect();
    let t: Vec<&str> = lines.into_iter().rev().collect();
    let t = t.join(" | ");
    if t.is_empty() {
        "(no output)".into()
    } else {
        t
    }
}

fn proc_matches(pid: u32, marker: &str) -> bool {
    // A zombie still has a /proc entry but an empty cmdline and
    // environment: not running. The marker is the control socket path (in
    // the command line) or the instance id (in NFVINC_INSTANCE).
    ["cmdline", "environ"].iter().any(|f| {
        std::fs::read(format!("/proc/{pid}/{f}"))
            .map(|c| String::from_utf8_lossy(&c).contains(marker))
            .unwrap_or(false)
    })
}

fn signal(pid: u32, sig: i32) {
    if let Ok(p) = i32::try_from(pid) {
        // SAFETY: kill has no memory-safety preconditions; pid is one we
        // started or adopted after checking its command line.
        unsafe { libc::kill(p, sig) };
    }
}

fn marker(spec: &LaunchSpec) -> String {
    spec.control
        .as_ref()
        .map(|c| c.display().to_string())
        .unwrap_or_else(|| spec.instance_id.clone())
}

impl LocalVim {
    /// An empty VIM.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns one process and waits for its `READY`.
    async fn start_one(
        &self,
        spec: &LaunchSpec,
        cmd1: &Command1,
    ) -> Result<(Proc, Duration), VimError> {
        let t0 = Instant::now();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .map_err(|source| VimError::Spawn {
                binary: spec.log.clone(),
                source,
            })?;
        let mut cmd = match &spec.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&spec.binary);
                c
            }
            None => Command::new(&spec.binary),
        };
        cmd.args(&cmd1.args)
            // The instance id travels in the environment so that an adopted
            // process can be recognised even without a control socket.
            .env("NFVINC_INSTANCE", &spec.instance_id)
            .env("NFVINC_ROLE", &cmd1.name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            // Its own process group: a Ctrl-C meant for the daemon must not
            // reach the VNFs, whose fate the daemon decides.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|source| VimError::Spawn {
            binary: spec.binary.clone(),
            source,
        })?;
        let pid = child.id().unwrap_or(0);
        let Some(stdout) = child.stdout.take() else {
            return Err(VimError::Spawn {
                binary: spec.binary.clone(),
                source: std::io::Error::other("no stdout pipe"),
            });
        };
        let mut lines = BufReader::new(stdout).lines();
        let wait_ready = async {
            loop {
                match lines.next_line().await {
                    Ok(Some(l)) if l.trim() == "READY" => return true,
                    Ok(Some(_)) => continue,
                    _ => return false,
                }
            }
        };
        match tokio::time::timeout(spec.ready_timeout, wait_ready).await {
            Ok(true) => {}
            Ok(false) => {
                let status = child
                    .wait()
                    .await
                    .map_or_else(|e| e.to_string(), |s| s.to_string());
                return Err(VimError::EarlyExit {
                    binary: spec.binary.clone(),
                    status,
                    stderr: tail_of(&spec.log),
                });
            }
            Err(_) => {
                let _ = child.kill().await;
                return Err(VimError::Timeout {
                    binary: spec.binary.clone(),
                    ms: spec.ready_timeout.as_millis(),
                    stderr: tail_of(&spec.log),
                });
            }
        }
        let ready_after = t0.elapsed();
        // Keep draining standard output (VNFs print their counters when they
        // stop) into the log, so the VNF never blocks on a full pipe.
        let log_path = spec.log.clone();
        tokio::spawn(async move {
            let mut f = tokio::fs::OpenOptions::new()
                .append(true)
                .open(&log_path)
                .await
                .ok();
            while let Ok(Some(l)) = lines.next_line().await {
                if let Some(f) = f.as_mut() {
                    let _ = f.write_all(format!("{l}\n").as_bytes()).await;
                }
            }
        });
        Ok((
            Proc {
                pid,
                child: Some(child),
                marker: cmd1.marker.clone(),
                name: cmd1.name.clone(),
            },
            ready_after,
        ))
    }

    /// Starts every process of the instance at once (their start-ups
    /// overlap), and stops those that did start when one fails.
    async fn start(&self, spec: &LaunchSpec) -> Result<Launched, VimError> {
        if !spec.binary.is_file() {
            return Err(VimError::NoBinary(spec.binary.clone()));
        }
        let commands = spec.commands();
        let results =
            futures_util::future::join_all(commands.iter().map(|c| self.start_one(spec, c))).await;
        let mut procs = Vec::with_capacity(results.len());
        let mut failure = None;
        let mut ready_after = Duration::ZERO;
        for r in results {
            match r {
                Ok((p, t)) => {
                    ready_after = ready_after.max(t);
                    procs.push(p);
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failure {
            stop_procs(procs).await;
            return Err(e);
        }
        let pids: Vec<u32> = procs.iter().map(|p| p.pid).collect();
        self.procs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(spec.instance_id.clone(), procs);
        Ok(Launched {
            pid: pids.first().copied().unwrap_or(0),
            pids,
            ready_after,
        })
    }
}

/// Stops processes: SIGTERM to all at once, then each waited for (bounded)
/// and insisted on.
async fn stop_procs(procs: Vec<Proc>) {
    for p in &procs {
        if p.child.is_some() || proc_matches(p.pid, &p.marker) {
            signal(p.pid, libc::SIGTERM);
        }
    }
    for p in procs {
        match p {
            Proc {
                child: Some(mut child),
                ..
            } => {
                if tokio::time::timeout(Duration::from_secs(3), child.wait())
                    .await
                    .is_err()
                {
                    let _ = child.kill().await;
                }
            }
            Proc {
                pid,
                child: None,
                marker,
                ..
            } => {
                // Not our child: poll /proc, bounded, then insist.
                for _ in 0..60 {
                    if !proc_matches(pid, &marker) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                if proc_matches(pid, &marker) {
                    signal(pid, libc::SIGKILL);
                }
            }
        }
    }
}

impl Vim for LocalVim {
    fn instantiate<'a>(
        &'a self,
        spec: &'a LaunchSpec,
    ) -> BoxFuture<'a, Result<Launched, VimError>> {
        Box::pin(self.start(spec))
    }

    fn terminate<'a>(&'a self, instance_id: &'a str, pids: &'a [u32]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let procs = self
                .procs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(instance_id);
            match procs {
                Some(procs) => stop_procs(procs).await,
                None => {
                    // Unknown to this VIM (e.g. adoption failed): only pids
                    // whose environment names the instance are signalled.
                    for &pid in pids {
                        if proc_matches(pid, instance_id) {
                            signal(pid, libc::SIGKILL);
                        }
                    }
                }
            }
        })
    }

    fn adopt(&self, spec: &LaunchSpec, pids: &[u32]) -> bool {
        let commands = spec.commands();
        if commands.len() != pids.len()
            || !commands
                .iter()
                .zip(pids)
                .all(|(c, &pid)| proc_matches(pid, &c.marker))
        {
            return false;
        }
        let procs = commands
            .into_iter()
            .zip(pids)
            .map(|(c, &pid)| Proc {
                pid,
                child: None,
                marker: c.marker,
                name: c.name,
            })
            .collect();
        self.procs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(spec.instance_id.clone(), procs);
        true
    }

    fn liveness(&self, instance_id: &str) -> Liveness {
        let mut procs = self.procs.lock().unwrap_or_else(|p| p.into_inner());
        let Some(ps) = procs.get_mut(instance_id) else {
            return Liveness::Gone("not running".into());
        };
        let many = ps.len() > 1;
        for p in ps.iter_mut() {
            let gone = match p.child.as_mut() {
                Some(c) => match c.try_wait() {
                    Ok(None) => None,
                    Ok(Some(status)) => Some(format!("process exited: {status}")),
                    Err(e) => Some(format!("cannot wait for process: {e}")),
                },
                None if proc_matches(p.pid, &p.marker) => None,
                None => Some("adopted process is gone".into()),
            };
            if let Some(why) = gone {
                return Liveness::Gone(if many {
                    format!("{}: {why}", p.name)
                } else {
                    why
                });
            }
        }
        Liveness::Running
    }

    fn pids(&self, instance_id: &str) -> Vec<u32> {
        self.procs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(instance_id)
            .map(|ps| ps.iter().map(|p| p.pid).collect())
            .unwrap_or_default()
    }
}
