//! Monitoring module: checks every instance periodically (process liveness,
//! then `health` over the control socket for VNFs that have one), measures
//! CPU, memory and the VNF's counters, flags instances unavailable, heals
//! dead ones, and tells the Scheduler when one is back.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use dataplane::control::ControlClient;
use serde_json::{Value, json};

use crate::broker::control_path;
use crate::catalog;
use crate::manager::{self, Restart};
use crate::metrics::{InstanceMetrics, flatten_counters, proc_usage};
use crate::state::AppState;
use crate::vim::Liveness;

/// Consecutive failed health checks of a running process before it is
/// restarted: one slow answer is not a failure.
const UNHEALTHY_LIMIT: u32 = 3;

/// Health and counters of a VNF with a control socket, within `timeout`.
async fn probe(state: &AppState, id: &str, timeout: Duration) -> Result<Option<Value>, String> {
    let path = control_path(state, id);
    let task = tokio::task::spawn_blocking(move || {
        let mut c = ControlClient::connect(&path).map_err(|e| e.to_string())?;
        c.call(&json!({"op": "health"}))
            .map_err(|e| e.to_string())?;
        Ok(c.call(&json!({"op": "counters"})).ok())
    });
    match tokio::time::timeout(timeout, task).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(format!("health check task failed: {e}")),
        Err(_) => Err(format!(
            "no health answer within {} ms",
            timeout.as_millis()
        )),
    }
}

/// The Monitor's loop, until `stop`.
pub async fn run(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let interval = Duration::from_millis(state.config.monitor.interval_ms);
    let mut failures: HashMap<String, u32> = HashMap::new();
    // Heals in progress (between the decision and the restart taking the
    // instance's busy flag), so that a tick does not start a second one.
    let mut healing: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        let rows = match manager::list(&state, None).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "monitor cannot list instances");
                continue;
            }
        };
        let live: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        failures.retain(|id, _| live.contains(id));
        healing.retain(|_, h| !h.is_finished());
        for row in rows {
            // Not registered yet: being created (its VNF is not started or
            // not handed to the VIM yet), or being removed. Not ours to judge.
            let Some(rt) = state.registry.get(&row.id) else {
                continue;
            };
            if rt.busy.load(Ordering::Acquire) || healing.contains_key(&row.id) {
                continue;
            }
            let control =
                catalog::find(&state.vnf_dir, true, &row.service).is_some_and(|s| s.control_socket);
            let mut m = InstanceMetrics::default();
            let verdict = match state.vim.liveness(&row.id) {
                Liveness::Gone(why) => Err((why, true)),
                Liveness::Running => {
                    if let Some((cpu, rss)) = state.vim.pid(&row.id).and_then(proc_usage) {
                        m.cpu_seconds = cpu;
                        m.memory_bytes = rss;
                    }
                    if control {
                        match probe(&state, &row.id, interval.max(Duration::from_millis(500))).await
                        {
                            Ok(counters) => {
                                if let Some(c) = counters {
                                    m.vnf_counters = flatten_counters(&c);
                                }
                                Ok(())
                            }
                            Err(e) => Err((format!("health check failed: {e}"), false)),
                        }
                    } else {
                        Ok(())
                    }
                }
            };
            m.up = verdict.is_ok();
            state.metrics.set_instance(&row.id, m);
            match verdict {
                Ok(()) => {
                    failures.remove(&row.id);
                    if !rt.is_available() {
                        mark_recovered(&state, &row.id).await;
                    }
                }
                Err((why, dead)) => {
                    let n = failures.entry(row.id.clone()).or_default();
                    *n += 1;
                    // A dead process is unavailable at once; a live one that
                    // answers slowly (a loaded host) only after several
                    // misses, so that one late answer does not send
                    // requests to the log.
                    if !dead && *n < UNHEALTHY_LIMIT {
                        tracing::debug!(instance = %row.id, why, misses = *n, "health check missed");
                        continue;
                    }
                    manager::set_unavailable(&state, &row.id, &why).await;
                    if state.config.monitor.auto_heal {
                        *n = 0;
                        let (state, delay) = (
                            state.clone(),
                            Duration::from_millis(state.config.monitor.heal_delay_ms),
                        );
                        // Healing takes a process start; the loop goes on
                        // checking the other instances meanwhile.
                        let id = row.id.clone();
                        let h = tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            // The row of the decision may be stale: the
                            // instance may have been removed, rescaled or
                            // reconfigured during the delay.
                            let row = match manager::load_any(&state, &row.id).await {
                                Ok(Some(r)) => r,
                                Ok(None) => {
                                    tracing::debug!(instance = %row.id, "removed before its heal");
                                    return;
                                }
                                Err(e) => {
                                    tracing::error!(instance = %row.id, error = %e, "heal failed");
                                    return;
                                }
                            };
                            if let Err(e) = manager::restart(&state, &row, Restart::Heal).await {
                                tracing::error!(instance = %row.id, error = %e, "heal failed");
                            }
                        });
                        healing.insert(id, h);
                    }
                }
            }
        }
    }
}

/// An instance found healthy while flagged unavailable (it answered again,
/// or an operator brought it back): available again, log replayed.
async fn mark_recovered(state: &AppState, id: &str) {
    let Some(rt) = state.registry.get(id) else {
        return;
    };
    if rt.busy.load(Ordering::Acquire) {
        return;
    }
    let idc = id.to_owned();
    let _ = state
        .db
        .call(move |c| {
            c.execute(
                "UPDATE instances SET state = 'running', available = 1 WHERE id = ?1",
                [&idc],
            )?;
            crate::db::record_event(
                c,
                None,
                Some(&idc),
                "available",
                &json!({"reason": "healthy"}),
            )?;
            Ok(())
        })
        .await;
    rt.available.store(true, Ordering::Release);
    let _ = rt
        .lifecycle
        .send(json!({"lifecycle": "available", "reason": "healthy"}));
    state.scheduler_wake.notify_one();
    tracing::info!(instance = %id, "instance available again");
}
