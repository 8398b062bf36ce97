//! Configuration Agent: per-tenant virtual networks and session keys.
//!
//! Each tenant gets, on its first instance, a network namespace with one
//! veth link to the host: `veth0` inside at `198.19.x.(4k+2)/30`, the host
//! end at `…(4k+1)/30` in the daemon's namespace, so that applications on
//! the host reach the tenant's instances and nothing else shares the link.
//! The namespace goes away with the tenant's last instance.
//!
//! Names and addresses must not collide with another daemon on the same
//! host (parallel tests run several), so every name carries the daemon's
//! persistent id, and the /30 is drawn at random among those the host does
//! not use. Names are our own (`nfvt-…`) rather than `dataplane::netns`'s,
//! whose namespaces are reaped when their creating process dies: a tenant's
//! network must outlive a daemon restart, to be adopted by the next one.

use std::net::Ipv4Addr;
use std::process::Stdio;

use rand::Rng;
use rusqlite::{OptionalExtension, params};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::db::now_s;
use crate::error::ApiError;
use crate::state::AppState;

/// A tenant's virtual network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantNet {
    /// Namespace name (`None`: isolation off, the daemon's own namespace).
    pub netns: Option<String>,
    /// Interface the tenant's VNFs serve on.
    pub iface: String,
    /// The tenant side's address: where instances listen.
    pub tenant_addr: Ipv4Addr,
    /// The host side's address.
    pub host_addr: Ipv4Addr,
}

/// The /30 block number `k` of 198.19.0.0/16: (host, tenant) addresses.
fn block_addrs(k: u32) -> (Ipv4Addr, Ipv4Addr) {
    let base = u32::from(Ipv4Addr::new(198, 19, 0, 0)) + 4 * (k % 16384);
    (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
}

/// Names of a tenant's namespace and host-side interface (at most 15
/// bytes, the kernel's limit).
fn names(daemon_id: &str, user_id: i64) -> (String, String) {
    (
        format!("nfvt-{daemon_id}-u{user_id}"),
        format!("nh{daemon_id}{user_id:x}"),
    )
}

async fn ip_batch(netns: Option<&str>, script: &str) -> Result<(), ApiError> {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    cmd.args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| ApiError::Internal(format!("cannot run ip: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .await
            .map_err(|e| ApiError::Internal(format!("writing to ip: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| ApiError::Internal(format!("waiting for ip: {e}")))?;
    if !out.status.success() {
        return Err(ApiError::Internal(format!(
            "building the tenant network failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// IPv4 addresses in use in the daemon's namespace.
async fn host_addrs() -> Vec<Ipv4Addr> {
    let Ok(out) = Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .await
    else {
        return vec![];
    };
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|w| w.split('/').next()?.parse().ok())
        .collect()
}

/// The tenant's network, created if it does not exist yet (or if the
/// database knows it but the host lost it, after a reboot).
pub async fn ensure_network(state: &AppState, user_id: i64) -> Result<TenantNet, ApiError> {
    if !state.config.network.isolation {
        return Ok(TenantNet {
            netns: None,
            iface: "lo".into(),
            tenant_addr: Ipv4Addr::LOCALHOST,
            host_addr: Ipv4Addr::LOCALHOST,
        });
    }
    // One creation at a time: two first instances of a tenant racing must
    // not build two namespaces.
    let _guard = state.net_lock.lock().await;
    let known = state
        .db
        .call(move |c| {
            Ok(c.query_row(
                "SELECT netns, host_addr, tenant_addr FROM tenant_networks WHERE user_id = ?1",
                [user_id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                },
            )
            .optional()?)
        })
        .await?;
    if let Some((netns, host, tenant)) = known {
        let net = TenantNet {
            netns: Some(netns.clone()),
            iface: "veth0".into(),
            host_addr: host
                .parse()
                .map_err(|_| ApiError::Internal(format!("bad host address {host:?}")))?,
            tenant_addr: tenant
                .parse()
                .map_err(|_| ApiError::Internal(format!("bad tenant address {tenant:?}")))?,
        };
        if std::path::Path::new("/var/run/netns").join(&netns).exists() {
            return Ok(net);
        }
        let (_, host_if) = names(&state.daemon_id, user_id);
        build(&netns, &host_if, net.host_addr, net.tenant_addr).await?;
        tracing::info!(user_id, netns, "tenant network rebuilt");
        return Ok(net);
    }

    let (netns, host_if) = names(&state.daemon_id, user_id);
    let used = host_addrs().await;
    let taken: Vec<u32> = state
        .db
        .call(|c| {
            let mut st = c.prepare("SELECT subnet FROM tenant_networks")?;
            let v = st
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<u32>>>()?;
            Ok(v)
        })
        .await?;
    let mut pick = None;
    for _ in 0..64 {
        let k = rand::rng().random_range(0..16384u32);
        let (h, t) = block_addrs(k);
        if !taken.contains(&k) && !used.contains(&h) && !used.contains(&t) {
            pick = Some(k);
            break;
        }
    }
    let k = pick.ok_or_else(|| ApiError::Internal("no free tenant subnet".into()))?;
    let (host_addr, tenant_addr) = block_addrs(k);
    build(&netns, &host_if, host_addr, tenant_addr).await?;
    let (ns2, hi2) = (netns.clone(), host_if.clone());
    state
        .db
        .call(move |c| {
            c.execute(
                "INSERT INTO tenant_networks (user_id, netns, host_if, subnet, host_addr, tenant_addr, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![user_id, ns2, hi2, k, host_addr.to_string(), tenant_addr.to_string(), now_s()],
            )?;
            Ok(())
        })
        .await?;
    tracing::info!(user_id, netns, %tenant_addr, "tenant network created");
    Ok(TenantNet {
        netns: Some(netns),
        iface: "veth0".into(),
        tenant_addr,
        host_addr,
    })
}

/// Creates the namespace and its veth link; removes what it made on error.
async fn build(
    netns: &str,
    host_if: &str,
    host_addr: Ipv4Addr,
    tenant_addr: Ipv4Addr,
) -> Result<(), ApiError> {
    // Leftovers of a half-built network (a crash mid-way) would make the
    // batch fail; removing them first is idempotent.
    teardown(netns, host_if).await;
    // Three `ip` processes instead of eight: each costs milliseconds, and
    // tenant creation sits on the instance-creation latency path.
    let host_script = format!(
        "netns add {netns}\n\
         link add {host_if} numtxqueues 4 numrxqueues 4 type veth peer name veth0 numtxqueues 4 numrxqueues 4 netns {netns}\n\
         addr add {host_addr}/30 dev {host_if}\n\
         link set {host_if} up\n"
    );
    let ns_script = format!(
        "link set lo up\n\
         addr add {tenant_addr}/30 dev veth0\n\
         link set veth0 up\n"
    );
    let r = async {
        ip_batch(None, &host_script).await?;
        ip_batch(Some(netns), &ns_script).await
    }
    .await;
    if r.is_err() {
        teardown(netns, host_if).await;
    }
    r
}

/// Deletes a namespace and its host-side interface; missing ones are fine.
async fn teardown(netns: &str, host_if: &str) {
    for args in [vec!["link", "del", host_if], vec!["netns", "del", netns]] {
        let _ = Command::new("ip")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
}

/// Removes the tenant's network if it has no instance left.
pub async fn release_network_if_unused(state: &AppState, user_id: i64) -> Result<(), ApiError> {
    if !state.config.network.isolation {
        return Ok(());
    }
    let _guard = state.net_lock.lock().await;
    let row = state
        .db
        .call(move |c| {
            let n: i64 = c.query_row(
                "SELECT COUNT(*) FROM instances WHERE user_id = ?1",
                [user_id],
                |r| r.get(0),
            )?;
            if n > 0 {
                return Ok(None);
            }
            let row: Option<(String, String)> = c
                .query_row(
                    "SELECT netns, host_if FROM tenant_networks WHERE user_id = ?1",
                    [user_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            c.execute("DELETE FROM tenant_networks WHERE user_id = ?1", [user_id])?;
            Ok(row)
        })
        .await?;
    if let Some((netns, host_if)) = row {
        teardown(&netns, &host_if).await;
        tracing::info!(user_id, netns, "tenant network removed");
    }
    Ok(())
}

/// Tears down every tenant network of this daemon (graceful shutdown; the
/// database keeps them, and the next start rebuilds what instances need).
pub async fn teardown_all(state: &AppState) {
    let rows = state
        .db
        .call(|c| {
            let mut st = c.prepare("SELECT netns, host_if FROM tenant_networks")?;
            let v = st
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(v)
        })
        .await
        .unwrap_or_default();
    for (netns, host_if) in rows {
        teardown(&netns, &host_if).await;
    }
}

/// A fresh per-session key for the direct channel: 32 random bytes.
pub fn session_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut k);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_disjoint_slash_30s_and_names_fit_the_kernel() {
        let (h, t) = block_addrs(0);
        assert_eq!(
            (h, t),
            (Ipv4Addr::new(198, 19, 0, 1), Ipv4Addr::new(198, 19, 0, 2))
        );
        let (h, t) = block_addrs(16383);
        assert_eq!(
            (h, t),
            (
                Ipv4Addr::new(198, 19, 255, 253),
                Ipv4Addr::new(198, 19, 255, 254)
            )
        );
        let (_, host_if) = names("abcdef", 0xfffff);
        assert!(host_if.len() <= 15, "{host_if}");
        assert_ne!(session_key(), session_key());
    }
}
