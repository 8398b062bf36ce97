//! Scheduler: the durable log of requests for unavailable instances.
//!
//! A request is committed to SQLite (WAL, `synchronous = FULL`) before the
//! client gets its 202, so a crash right after the answer loses nothing.
//! When an instance is available again the Scheduler replays its log in
//! order (by `seq`), one request at a time, each marked `in_flight` before
//! it is sent and `done` (or `failed`) with its outcome after, each mark a
//! transaction of its own. A request is therefore applied once, unless the
//! daemon dies between sending it and recording the answer: that one is
//! marked `failed` with "outcome unknown" at the next start rather than
//! sent twice (at-most-once in that one window; the VNFs have no
//! deduplication to make it exactly-once).

use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::RngCore;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::broker::{self, SendError};
use crate::db::now_ms;
use crate::error::ApiError;
use crate::state::{AppState, InstanceRt};

/// A logged request as clients see it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RequestStatus {
    /// Request id.
    pub id: String,
    /// The instance it is for.
    pub instance: String,
    /// The operation.
    pub op: String,
    /// `pending`, `in_flight`, `done` or `failed`.
    pub status: String,
    /// The VNF's result, once `done`.
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// Why it failed, once `failed`.
    pub error: Option<String>,
    /// When it was logged, Unix milliseconds.
    pub created_at_ms: i64,
    /// When it completed, Unix milliseconds.
    pub completed_at_ms: Option<i64>,
}

fn status_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RequestStatus> {
    let result: Option<String> = r.get(4)?;
    Ok(RequestStatus {
        id: r.get(0)?,
        instance: r.get(1)?,
        op: r.get(2)?,
        status: r.get(3)?,
        result: result.and_then(|s| serde_json::from_str(&s).ok()),
        error: r.get(5)?,
        created_at_ms: r.get(6)?,
        completed_at_ms: r.get(7)?,
    })
}

/// Logs `body` for `instance_id`; returns once it is durable.
pub async fn enqueue(
    state: &AppState,
    user_id: i64,
    instance_id: &str,
    op: &str,
    body: &Value,
) -> Result<RequestStatus, ApiError> {
    let mut b = [0u8; 12];
    rand::rng().fill_bytes(&mut b);
    let id = format!("r-{}", hex::encode(b));
    let (idc, inst, opc, bodyc) = (
        id.clone(),
        instance_id.to_owned(),
        op.to_owned(),
        body.to_string(),
    );
    let now = now_ms();
    state
        .db
        .call(move |c| {
            c.execute(
                "INSERT INTO scheduled_requests (id, instance_id, user_id, op, body, status, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6)",
                params![idc, inst, user_id, opc, bodyc, now],
            )?;
            Ok(())
        })
        .await?;
    // Counted once durable: a look-up that found the log empty before
    // this commit then no longer passes for current.
    if let Some(rt) = state.registry.get(instance_id) {
        rt.logged.fetch_add(1, Ordering::AcqRel);
    }
    state.metrics.scheduled.fetch_add(1, Ordering::Relaxed);
    Ok(RequestStatus {
        id,
        instance: instance_id.to_owned(),
        op: op.to_owned(),
        status: "pending".into(),
        result: None,
        error: None,
        created_at_ms: now,
        completed_at_ms: None,
    })
}

/// A logged request of `user_id` (another tenant's is "not found").
pub async fn get(state: &AppState, user_id: i64, id: &str) -> Result<RequestStatus, ApiError> {
    let idc = id.to_owned();
    state
        .db
        .call(move |c| {
            Ok(c.query_row(
                "SELECT id, instance_id, op, status, result, error, created_at, completed_at
                 FROM scheduled_requests WHERE id = ?1 AND user_id = ?2",
                params![idc, user_id],
                status_from_row,
            )
            .optional()?)
        })
        .await?
        .ok_or_else(|| ApiError::not_found("request", id))
}

/// Whether `instance_id` has requests waiting in the log.
pub async fn has_pending(state: &AppState, instance_id: &str) -> Result<bool, ApiError> {
    let id = instance_id.to_owned();
    state
        .db
        .call(move |c| {
            Ok(c.query_row(
                "SELECT EXISTS (SELECT 1 FROM scheduled_requests WHERE instance_id = ?1 AND status = 'pending')",
                [id],
                |r| r.get(0),
            )?)
        })
        .await
}

/// [`has_pending`] for an operation on a registered instance: answered
/// from memory when the log was found empty and nothing was logged for the
/// instance since (the steady state of a healthy instance), else from the
/// database. Only replays take requests out of the log, and they hold the
/// instance's gate alone, so a log found empty stays empty until the next
/// request is logged.
pub async fn has_pending_for(
    state: &AppState,
    rt: &InstanceRt,
    instance_id: &str,
) -> Result<bool, ApiError> {
    let logged = rt.logged.load(Ordering::Acquire);
    if rt.log_empty_at.load(Ordering::Acquire) == logged {
        return Ok(false);
    }
    let pending = has_pending(state, instance_id).await?;
    if !pending {
        rt.log_empty_at.store(logged, Ordering::Release);
    }
    Ok(pending)
}

/// Pending requests in the log, for `/metrics`.
pub async fn pending_count(state: &AppState) -> i64 {
    state
        .db
        .call(|c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM scheduled_requests WHERE status = 'pending'",
                [],
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap_or(-1)
}

/// At start-up: requests a dead daemon was applying have an unknown outcome.
pub fn fail_in_flight(conn: &rusqlite::Connection) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE scheduled_requests SET status = 'failed',
            error = 'the daemon stopped while this request was being applied; its outcome is unknown',
            completed_at = ?1
         WHERE status = 'in_flight'",
        [now_ms()],
    )
}

/// Replays the log of one instance; stops at the first request that finds
/// the instance down again (it stays pending).
async fn replay(state: &AppState, instance_id: &str) -> Result<usize, ApiError> {
    let Some(rt) = state.registry.get(instance_id) else {
        return Ok(0);
    };
    // Exclusive: direct operations wait until the log is drained, so none
    // overtakes a logged one.
    let _gate = rt.gate.write().await;
    let mut applied = 0;
    // Bounded: a log longer than this is finished on the next wake-up.
    for _ in 0..10_000 {
        if !rt.is_available() {
            break;
        }
        let id = instance_id.to_owned();
        let next: Option<(i64, String, String)> = state
            .db
            .call(move |c| {
                let tx = c.transaction()?;
                let row: Option<(i64, String, String)> = tx
                    .query_row(
                        "SELECT seq, op, body FROM scheduled_requests
                         WHERE instance_id = ?1 AND status = 'pending' ORDER BY seq LIMIT 1",
                        [&id],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()?;
                if let Some((seq, _, _)) = &row {
                    tx.execute(
                        "UPDATE scheduled_requests SET status = 'in_flight' WHERE seq = ?1",
                        [seq],
                    )?;
                }
                tx.commit()?;
                Ok(row)
            })
            .await?;
        let Some((seq, op, body)) = next else { break };
        let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let outcome = broker::send(state, instance_id, &op, &body).await;
        let (status, result, error) = match outcome {
            Ok(v) => ("done", Some(v.to_string()), None),
            Err(SendError::Refused(e)) => ("failed", None, Some(e)),
            Err(SendError::Busy(_)) => {
                // A healthy VNF with a full queue: back to pending, in its
                // place, and the next tick tries again.
                state
                    .db
                    .call(move |c| {
                        c.execute(
                            "UPDATE scheduled_requests SET status = 'pending' WHERE seq = ?1",
                            [seq],
                        )?;
                        Ok(())
                    })
                    .await?;
                break;
            }
            Err(SendError::NotDelivered(e)) => {
                // Never reached the VNF: back to pending, in its place.
                state
                    .db
                    .call(move |c| {
                        c.execute(
                            "UPDATE scheduled_requests SET status = 'pending' WHERE seq = ?1",
                            [seq],
                        )?;
                        Ok(())
                    })
                    .await?;
                crate::manager::set_unavailable(state, instance_id, &e).await;
                break;
            }
            Err(SendError::Lost(e)) => (
                "failed",
                None,
                Some(format!("the VNF failed while applying this request: {e}")),
            ),
        };
        state
            .db
            .call(move |c| {
                c.execute(
                    "UPDATE scheduled_requests SET status = ?2, result = ?3, error = ?4, completed_at = ?5 WHERE seq = ?1",
                    params![seq, status, result, error, now_ms()],
                )?;
                Ok(())
            })
            .await?;
        state.metrics.replayed.fetch_add(1, Ordering::Relaxed);
        applied += 1;
    }
    Ok(applied)
}

/// The Scheduler's loop: replays logs when woken (an instance came back)
/// and on a slow tick, as a safety net for a missed wake-up.
pub async fn run(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = state.scheduler_wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
        for id in state.registry.ids() {
            let available = state.registry.get(&id).is_some_and(|rt| rt.is_available());
            if !available || !has_pending(&state, &id).await.unwrap_or(false) {
                continue;
            }
            match replay(&state, &id).await {
                Ok(n) if n > 0 => {
                    tracing::info!(instance = %id, replayed = n, "scheduled requests replayed")
                }
                Ok(_) => {}
                Err(e) => tracing::error!(instance = %id, error = %e, "replay failed"),
            }
        }
    }
}
