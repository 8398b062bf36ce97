//! `nfvinc serve`: opens the state, reconciles instances, starts the
//! Monitor and the Scheduler, and serves the API (HTTPS when a certificate
//! is configured) until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use rand::RngCore;
use tokio::sync::watch;

use crate::config::Config;
use crate::db::{self, Db};
use crate::metrics::Metrics;
use crate::state::{AppState, Registry};
use crate::vim::LocalVim;
use crate::{manager, monitor, routes, scheduler};

/// Longest wait for open connections (event streams) at shutdown.
const DRAIN: Duration = Duration::from_secs(2);

/// Builds the shared state from `config`: database (migrated), daemon id,
/// local VIM.
pub fn open_state(config: Config) -> anyhow::Result<AppState> {
    let db = Db::open(&config.data_dir)
        .with_context(|| format!("opening the database in {}", config.data_dir.display()))?;
    for sub in ["run", "logs"] {
        std::fs::create_dir_all(config.data_dir.join(sub))
            .with_context(|| format!("creating {}/{sub}", config.data_dir.display()))?;
    }
    let daemon_id = db.blocking(|c| {
        db::meta_get_or_init(c, "daemon_id", || {
            let mut b = [0u8; 3];
            rand::rng().fill_bytes(&mut b);
            hex::encode(b)
        })
    })?;
    let failed = db.blocking(|c| scheduler::fail_in_flight(c))?;
    if failed > 0 {
        tracing::warn!(
            failed,
            "requests interrupted mid-replay by the last stop marked failed"
        );
    }
    let vnf_dir: PathBuf = config.vim.resolved_vnf_dir();
    Ok(AppState {
        config: Arc::new(config),
        db,
        vim: Arc::new(LocalVim::new()),
        daemon_id: daemon_id.into(),
        vnf_dir: Arc::new(vnf_dir),
        net_lock: Arc::default(),
        registry: Arc::new(Registry::default()),
        metrics: Arc::new(Metrics::default()),
        scheduler_wake: Arc::default(),
    })
}

/// Runs the daemon until a signal asks it to stop.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    config.validate()?;
    if config.network.isolation {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            bail!(
                "per-tenant network namespaces need root (CAP_SYS_ADMIN, CAP_NET_ADMIN); \
                 run as root, or set network.isolation = false (--no-isolation) to run every \
                 instance on loopback without isolation"
            );
        }
    }
    let tls = match &config.tls {
        Some(t) => {
            // ring is the one provider compiled in; installing it can only
            // fail when another is installed already, which is fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
            Some(
                RustlsConfig::from_pem_file(&t.cert, &t.key)
                    .await
                    .with_context(|| {
                        format!(
                            "loading TLS certificate {} and key {}",
                            t.cert.display(),
                            t.key.display()
                        )
                    })?,
            )
        }
        None => None,
    };
    let listen = config.listen;
    if let Some((from, to)) = raise_open_files_limit() {
        tracing::info!(from, to, "open-files limit raised");
    }
    let state = open_state(config)?;
    tracing::info!(daemon = %state.daemon_id, vnf_dir = %state.vnf_dir.display(), "state opened");
    manager::reconcile(&state).await?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let monitor = tokio::spawn(monitor::run(state.clone(), stop_rx.clone()));
    let sched = tokio::spawn(scheduler::run(state.clone(), stop_rx));

    let handle = Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stopping");
        h.graceful_shutdown(Some(DRAIN));
    });
    let h = handle.clone();
    let scheme = if tls.is_some() { "https" } else { "http" };
    tokio::spawn(async move {
        if let Some(addr) = h.listening().await {
            tracing::info!(%addr, scheme, "serving");
            // The line scripts and tests wait for, like a VNF's READY.
            println!("READY {scheme}://{addr}");
        }
    });
    let app = routes::router(state.clone()).into_make_service();
    let served = match tls {
        Some(tls) => {
            axum_server::bind_rustls(listen, tls)
                .handle(handle)
                .serve(app)
                .await
        }
        None => axum_server::bind(listen).handle(handle).serve(app).await,
    };
    let _ = stop_tx.send(true);
    let _ = tokio::join!(monitor, sched);
    manager::stop_all(&state).await;
    served.with_context(|| format!("serving on {listen}"))?;
    tracing::info!("stopped");
    Ok(())
}

/// Raises the soft limit on open files to the hard limit; returns the
/// limits before and after when it changed anything. Every API client
/// holds a connection and every instance control connections, and the
/// usual soft default (1024) would refuse a thousand clients while the
/// hard limit allows far more; running out makes accept fail, which
/// clients see as hung or refused connections.
pub fn raise_open_files_limit() -> Option<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0
        || lim.rlim_cur >= lim.rlim_max
    {
        return None;
    }
    let from = lim.rlim_cur;
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: setrlimit reads the struct we own; raising the soft limit up
    // to the hard one needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return None;
    }
    Some((from, lim.rlim_max))
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_files_limit_is_raised_to_the_hard_limit() {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as in raise_open_files_limit.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        let hard = lim.rlim_max;
        // Lowered first (this test process only; far above what the other
        // tests use), so that raising has something to do.
        let low = hard.min(4096) / 2;
        lim.rlim_cur = low;
        // SAFETY: as above.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
        assert_eq!(raise_open_files_limit(), Some((low, hard)));
        // SAFETY: as above.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(lim.rlim_cur, hard);
        assert_eq!(raise_open_files_limit(), None, "nothing left to raise");
    }
}
