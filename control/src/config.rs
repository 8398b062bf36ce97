//! The daemon's configuration: a TOML file whose every field has a default,
//! so that `nfvinc serve` runs with no file at all, and command-line flags
//! that override single fields (see `main.rs`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Everything `nfvinc serve` can be told.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the REST API listens on; port 0 picks a free one (the daemon
    /// prints the one it got on its `READY` line).
    pub listen: SocketAddr,
    /// Directory of the SQLite database, control sockets and VNF logs.
    pub data_dir: PathBuf,
    /// Serve HTTPS with this certificate and key; plain HTTP when absent.
    pub tls: Option<TlsConfig>,
    /// Lifetime of a bearer token, in seconds.
    pub session_ttl_s: u64,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Instances one tenant may hold at once.
    pub max_instances_per_tenant: u32,
    /// The local VIM: how VNF processes are started.
    pub vim: VimConfig,
    /// The Monitoring module.
    pub monitor: MonitorConfig,
    /// Per-tenant virtual networks.
    pub network: NetworkConfig,
    /// Offer the test services (`echo`, `journal`) in the catalog.
    pub test_services: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8470)),
            data_dir: PathBuf::from("/var/lib/nfvinc"),
            tls: None,
            session_ttl_s: 3600,
            max_body_bytes: 64 * 1024,
            max_instances_per_tenant: 16,
            vim: VimConfig::default(),
            monitor: MonitorConfig::default(),
            network: NetworkConfig::default(),
            test_services: false,
        }
    }
}

/// A certificate chain and its private key, both PEM files.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// How the local VIM starts VNF processes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VimConfig {
    /// Directory holding the `vnf-<service>` binaries; by default the
    /// directory of the running `nfvinc` executable, where cargo puts them.
    pub vnf_dir: Option<PathBuf>,
    /// Dataplane backend given to VNFs (`udp` or `afxdp`).
    pub backend: String,
    /// Longest wait for a VNF's `READY` line, in milliseconds.
    pub ready_timeout_ms: u64,
    /// First UDP port handed to a tenant's instances.
    pub base_port: u16,
}

impl Default for VimConfig {
    fn default() -> Self {
        Self {
            vnf_dir: None,
            // Kernel UDP works on every host; AF_XDP is opt-in until the
            // flow-route integration lands (see the crate docs).
            backend: "udp".into(),
            ready_timeout_ms: 5000,
            base_port: 9000,
        }
    }
}

impl VimConfig {
    /// The directory VNF binaries are looked up in.
    pub fn resolved_vnf_dir(&self) -> PathBuf {
        if let Some(d) = &self.vnf_dir {
            return d.clone();
        }
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."))
    }
}

/// The Monitoring module's pace and healing policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorConfig {
    /// Time between two health checks of every instance, in milliseconds.
    pub interval_ms: u64,
    /// Restart instances found dead or unhealthy.
    pub auto_heal: bool,
    /// Wait this long after finding an instance down before restarting it,
    /// so that a crash loop does not spin the host.
    pub heal_delay_ms: u64,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            interval_ms: 250,
            auto_heal: true,
            heal_delay_ms: 100,
        }
    }
}

/// Per-tenant virtual networks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Give each tenant its own network namespace and veth link (needs
    /// root). When false every instance runs in the daemon's namespace on
    /// loopback: for hosts where namespaces are not allowed.
    pub isolation: bool,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self { isolation: true }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("invalid configuration in {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        source: toml::de::Error,
    },
    /// A value is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads `path`, or returns the defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Checks values that would otherwise fail later and less clearly.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !matches!(self.vim.backend.as_str(), "udp" | "afxdp") {
            return Err(ConfigError::Invalid(format!(
                "vim.backend must be \"udp\" or \"afxdp\", not {:?}",
                self.vim.backend
            )));
        }
        if self.session_ttl_s == 0 || self.monitor.interval_ms == 0 {
            return Err(ConfigError::Invalid(
                "session_ttl_s and monitor.interval_ms must be positive".into(),
            ));
        }
        if self.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "max_body_bytes must be at least 1024".into(),
            ));
        }
        Ok(())
    }

    /// The configuration as TOML, for `nfvinc config`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_and_partial_files_fill_in() {
        let d = Config::default();
        let back: Config = toml::from_str(&d.to_toml()).unwrap();
        assert_eq!(back.listen, d.listen);
        let c: Config =
            toml::from_str("listen = \"127.0.0.1:0\"\n[monitor]\nauto_heal = false\n").unwrap();
        assert_eq!(c.listen.port(), 0);
        assert!(!c.monitor.auto_heal);
        assert_eq!(c.monitor.interval_ms, 250);
        c.validate().unwrap();
    }

    #[test]
    fn unknown_fields_and_bad_values_are_rejected() {
        assert!(toml::from_str::<Config>("lisen = \"x\"").is_err());
        let mut c = Config::default();
        c.vim.backend = "dpdk".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("vim.backend")
        );
    }
}
