//! DPDK's Environment Abstraction Layer, initialised once per process from
//! our configuration.

use std::ffi::{CString, c_char, c_int};
use std::sync::OnceLock;

use super::{DpdkError, ffi};

/// Whether EAL backs its memory with huge pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HugePages {
    /// Huge pages where free ones exist, else `--no-huge`.
    #[default]
    Auto,
    /// Require huge pages.
    On,
    /// Never (`--no-huge`): plain pages, for virtual devices and tests.
    Off,
}

/// How to start EAL: the few things we choose, plus raw extra arguments.
#[derive(Debug, Clone)]
pub struct EalConfig {
    /// EAL's core list (`-l`); default: the first core this process may run
    /// on. EAL pins the calling thread there, so we restore the thread's
    /// affinity afterwards and place workers ourselves.
    pub cores: Option<String>,
    /// Memory for EAL's own heap (mbuf headers, rings), in MiB (`-m`).
    pub memory_mb: u32,
    /// Huge pages or not.
    pub huge: HugePages,
    /// Virtual devices (`--vdev`), e.g. `net_null0` or
    /// `net_af_packet0,iface=veth0`.
    pub vdevs: Vec<String>,
    /// PCI devices to use (`-a`); none: `--no-pci`, so EAL touches no host
    /// device unless asked.
    pub pci: Vec<String>,
    /// Keep no runtime files (`--in-memory`): no secondary processes, no
    /// clash between processes.
    pub in_memory: bool,
    /// `--file-prefix`; default `nfvinc-<pid>`, unique per process so
    /// several DPDK processes (tests in parallel) never share state.
    pub file_prefix: Option<String>,
    /// Further EAL arguments, verbatim, last.
    pub extra: Vec<String>,
}

impl Default for EalConfig {
    fn default() -> Self {
        Self {
            cores: None,
            memory_mb: 256,
            huge: HugePages::Auto,
            vdevs: Vec::new(),
            pci: Vec::new(),
            in_memory: true,
            file_prefix: None,
            extra: Vec::new(),
        }
    }
}

impl EalConfig {
    /// The argument vector `rte_eal_init` gets (program name first).
    pub fn args(&self) -> Vec<String> {
        let mut a = vec!["nfvinc".to_string()];
        // EAL refuses a second core list or memory size: `extra` wins.
        let given = |opts: &[&str]| {
            self.extra.iter().any(|e| {
                opts.iter()
                    .any(|o| e == o || (e.starts_with(o) && e[o.len()..].starts_with('=')))
            })
        };
        if !given(&["-l", "-c", "--lcores"]) {
            let cores = self
                .cores
                .clone()
                .unwrap_or_else(|| first_allowed_core().to_string());
            a.extend(["-l".into(), cores]);
        }
        if !given(&["-m", "--socket-mem"]) {
            a.extend(["-m".into(), self.memory_mb.to_string()]);
        }
        let huge = match self.huge {
            HugePages::On => true,
            HugePages::Off => false,
            HugePages::Auto => free_huge_pages() > 0,
        };
        if !huge {
            a.push("--no-huge".into());
        }
        if self.in_memory {
            // --no-huge runs in legacy memory mode, which refuses
            // --in-memory; --no-shconf is the part of it that applies there.
            a.push(if huge { "--in-memory" } else { "--no-shconf" }.into());
        }
        let prefix = self
            .file_prefix
            .clone()
            .unwrap_or_else(|| format!("nfvinc-{}", std::process::id()));
        a.extend(["--file-prefix".into(), prefix]);
        a.push("--no-telemetry".into());
        if self.pci.is_empty() {
            a.push("--no-pci".into());
        }
        for p in &self.pci {
            a.extend(["-a".into(), p.clone()]);
        }
        for v in &self.vdevs {
            a.extend(["--vdev".into(), v.clone()]);
        }
        a.extend(self.extra.iter().cloned());
        a
    }
}

static EAL: OnceLock<Result<Vec<String>, String>> = OnceLock::new();

/// Starts EAL with `config` the first time; later calls return what the
/// first one did (EAL cannot start twice in a process), so the first
/// caller's configuration wins. Devices can still be added later by
/// [`DpdkPort::open`](super::DpdkPort::open) with a devargs string.
pub fn init(config: &EalConfig) -> Result<(), DpdkError> {
    EAL.get_or_init(|| start(config.args()))
        .as_ref()
        .map(|_| ())
        .map_err(|e| DpdkError::Eal(e.clone()))
}

/// The arguments EAL was started with, if it was.
pub fn started_with() -> Option<&'static [String]> {
    EAL.get()
        .and_then(|r| r.as_ref().ok())
        .map(|v| v.as_slice())
}

fn start(args: Vec<String>) -> Result<Vec<String>, String> {
    let c: Vec<CString> = args
        .iter()
        .map(|s| CString::new(s.as_str()).map_err(|_| format!("EAL argument {s:?} has a NUL")))
        .collect::<Result<_, _>>()?;
    // EAL keeps pointers into argv (and permutes it): leak it, once per process.
    let argv: &'static mut [*mut c_char] = Vec::leak(
        c.into_iter()
            .map(|s| s.into_raw())
            .chain(std::iter::once(std::ptr::null_mut()))
            .collect(),
    );
    let affinity = current_affinity();
    tracing::info!(args = ?args, "starting DPDK EAL");
    // SAFETY: argv is a NUL-terminated array of NUL-terminated strings that
    // lives forever; the log stream call only sets a pointer.
    let r = unsafe {
        ffi::nfv_log_to_stderr();
        ffi::rte_eal_init((argv.len() - 1) as c_int, argv.as_mut_ptr())
    };
    if let Some(set) = affinity {
        // EAL pinned this thread to its main lcore; threads spawned later
        // would inherit that. Give the thread back its previous cores.
        // SAFETY: a valid cpu_set_t for the calling thread.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    }
    if r < 0 {
        return Err(format!(
            "rte_eal_init({}) failed: {}",
            args.join(" "),
            ffi::last_error()
        ));
    }
    Ok(args)
}

fn current_affinity() -> Option<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        (libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0)
            .then_some(set)
    }
}

fn first_allowed_core() -> usize {
    current_affinity()
        .and_then(|set| {
            // SAFETY: CPU_ISSET reads a bit of a valid set.
            (0..libc::CPU_SETSIZE as usize).find(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        })
        .unwrap_or(0)
}

/// Free huge pages of the default size, from /proc/meminfo.
pub fn free_huge_pages() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("HugePages_Free:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_follow_the_config() {
        let c = EalConfig {
            cores: Some("2".into()),
            huge: HugePages::Off,
            vdevs: vec!["net_null0".into()],
            file_prefix: Some("t".into()),
            extra: vec!["--log-level=8".into()],
            ..EalConfig::default()
        };
        let a = c.args().join(" ");
        assert_eq!(
            a,
            "nfvinc -l 2 -m 256 --no-huge --no-shconf --file-prefix t --no-telemetry \
             --no-pci --vdev net_null0 --log-level=8"
        );
        let pci = EalConfig {
            pci: vec!["0000:01:00.0".into()],
            huge: HugePages::On,
            ..EalConfig::default()
        };
        let a = pci.args();
        assert!(!a.contains(&"--no-pci".to_string()));
        assert!(!a.contains(&"--no-huge".to_string()));
        assert!(a.contains(&"--in-memory".to_string()));
        assert!(a.join(" ").contains("-a 0000:01:00.0"));
        assert!(
            a.join(" ")
                .contains(&format!("nfvinc-{}", std::process::id()))
        );
        let own = EalConfig {
            cores: Some("0".into()),
            extra: vec!["-l".into(), "3".into(), "--socket-mem=512".into()],
            ..EalConfig::default()
        };
        let a = own.args().join(" ");
        assert!(!a.contains("-l 0") && !a.contains("-m 256"), "{a}");
        assert!(a.ends_with("-l 3 --socket-mem=512"), "{a}");
    }
}
