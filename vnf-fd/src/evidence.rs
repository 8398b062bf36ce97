//! The evidence sources of the binary: the passive-liveness XDP program and
//! netlink link events, both on the NFVI ports (in the VNF's namespace or
//! in `--ports-netns`).

use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Context, Result};
use ebpf::{AttachMode, LinkWatcher, Liveness, in_netns};
use vnf_fd::service::{LinkEvents, PassiveLiveness};

/// Runs `f` in `ns` when given, else where we are.
fn in_ports_ns<T>(ns: Option<&Path>, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    match ns {
        Some(path) => in_netns(path, f),
        None => f(),
    }
}

fn ifindex(name: &str) -> io::Result<u32> {
    let c = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name with NUL"))?;
    // SAFETY: a valid C string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface {name:?}"),
        )),
        i => Ok(i),
    }
}

/// The liveness program on every interface of `ifaces`.
pub fn passive(ifaces: &[String], ns: Option<&Path>) -> Result<Box<dyn PassiveLiveness>> {
    let mut live = Liveness::new();
    for name in ifaces {
        in_ports_ns(ns, || {
            let i = ifindex(name)?;
            live.attach(i, AttachMode::Auto)
                .map_err(|e| io::Error::other(e.to_string()))
        })
        .with_context(|| format!("attaching the liveness program to {name}"))?;
    }
    Ok(Box::new(Passive(live)))
}

struct Passive(Liveness);

impl PassiveLiveness for Passive {
    fn watch(&mut self, addr: Ipv4Addr) -> Result<u32, String> {
        self.0.watch(addr).map_err(|e| e.to_string())
    }

    fn unwatch(&mut self, addr: Ipv4Addr) {
        self.0.unwatch(addr);
    }

    fn last_seen(&self, slot: u32) -> Option<u64> {
        self.0.last_seen(slot)
    }

    fn last_port(&self, slot: u32) -> Option<u32> {
        self.0.last_port(slot).map(|(port, _)| port)
    }
}

/// Link events of the namespace's interfaces.
pub fn links(ns: Option<&Path>) -> Result<Box<dyn LinkEvents>> {
    let w = match ns {
        Some(path) => LinkWatcher::open_in(path),
        None => LinkWatcher::open(),
    }
    .context("subscribing to rtnetlink link notifications")?;
    Ok(Box::new(Links(w)))
}

struct Links(LinkWatcher);

impl LinkEvents for Links {
    fn poll(&mut self, on: &mut dyn FnMut(u32, bool)) {
        if let Err(e) = self.0.poll(|e| on(e.ifindex, e.up)) {
            tracing::warn!(error = %e, "reading link notifications failed");
        }
    }

    fn ifindex(&self, name: &str) -> Option<u32> {
        self.0.ifindex(name)
    }
}
