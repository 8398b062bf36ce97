//! Placeholder until the eBPF liveness and netlink link sources land.
use std::path::Path;

use vnf_fd::service::{LinkEvents, PassiveLiveness};

pub fn passive(_ifaces: &[String], _ns: Option<&Path>) -> anyhow::Result<Box<dyn PassiveLiveness>> {
    anyhow::bail!("passive liveness is not built yet")
}

pub fn links(_ns: Option<&Path>) -> anyhow::Result<Box<dyn LinkEvents>> {
    anyhow::bail!("link events are not built yet")
}
