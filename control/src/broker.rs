//! Broker: routes each operation either straight to the instance's control
//! socket or, while the instance is unavailable, to the Scheduler's log.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use dataplane::control::CallError;
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::catalog;
use crate::error::ApiError;
use crate::manager;
use crate::scheduler::{self, RequestStatus};
use crate::services;
use crate::state::{AppState, CONTROL_CALLS};

/// Where an instance's control socket is.
pub fn control_path(state: &AppState, instance_id: &str) -> PathBuf {
    state
        .config
        .data_dir
        .join("run")
        .join(format!("{instance_id}.sock"))
}

/// How sending to a VNF failed; the distinction decides whether a request
/// may be logged and replayed (it never reached the VNF) or not.
#[derive(Debug)]
pub enum SendError {
    /// The request did not reach the VNF (no socket, refused connection,
    /// shutting down): safe to schedule, and the instance is down.
    NotDelivered(String),
    /// The VNF is up but its control queue was full: the request did not
    /// reach it. Not a sign of failure: retry later, never flag.
    Busy(String),
    /// The VNF answered with an error: that is the request's outcome.
    Refused(String),
    /// The request may or may not have been applied.
    Lost(String),
}

/// Sends one operation to the instance: to the daemon's gateway member for
/// the operations it serves ([`services::is_gateway_op`]), else to the
/// VNF's control socket. A sequencer's member list, as its answers give it,
/// is recorded for heals.
pub async fn send(
    state: &AppState,
    instance_id: &str,
    op: &str,
    args: &Value,
) -> Result<Value, SendError> {
    let row = manager::load_any(state, instance_id)
        .await
        .map_err(|e| SendError::NotDelivered(e.to_string()))?
        .ok_or_else(|| SendError::NotDelivered("the instance was removed".into()))?;
    send_to(state, &row, op, args).await
}

/// [`send`] for an instance whose row the caller has.
pub async fn send_to(
    state: &AppState,
    row: &manager::InstanceRow,
    op: &str,
    args: &Value,
) -> Result<Value, SendError> {
    if services::is_gateway_op(&row.service, op) {
        return services::gateway_op(state, row, op, args).await;
    }
    let v = send_control(state, &row.id, op, args).await?;
    if row.service == "sequencer" {
        if let Some(members) = services::members_of(&v) {
            manager::record_members(state, &row.id, &members).await;
        }
    }
    Ok(v)
}

/// Sends one operation to the instance's control socket.
pub async fn send_control(
    state: &AppState,
    instance_id: &str,
    op: &str,
    args: &Value,
) -> Result<Value, SendError> {
    let path = control_path(state, instance_id);
    let mut request = Map::new();
    request.insert("op".into(), Value::String(op.to_owned()));
    if let Some(obj) = args.as_object() {
        for (k, v) in obj {
            request.insert(k.clone(), v.clone());
        }
    }
    let request = Value::Object(request);
    // One of the instance's call permits (none for an instance being
    // forgotten: registering it again here would resurrect it).
    let rt = state.registry.get(instance_id);
    let _permit = match &rt {
        Some(rt) => Some(
            match tokio::time::timeout(CALL_WAIT, rt.calls.acquire()).await {
                Ok(Ok(p)) => p,
                Ok(Err(_)) => return Err(SendError::NotDelivered("instance is closing".into())),
                Err(_) => {
                    return Err(SendError::Busy(format!(
                        "{CONTROL_CALLS} control calls in progress and no turn within {} s",
                        CALL_WAIT.as_secs()
                    )));
                }
            },
        ),
        None => None,
    };
    // A connection kept from an earlier call to the same process, if any.
    let pid = state.vim.pid(instance_id);
    let deadline = tokio::time::Instant::now() + CALL_WAIT;
    let mut backoff = Duration::from_millis(1);
    let mut kept = match (&rt, pid) {
        (Some(rt), Some(pid)) => rt.take_conn(pid),
        _ => None,
    };
    loop {
        let mut conn = match kept.take() {
            Some(c) => c,
            None => match VnfConn::connect(&path).await {
                Ok(c) => c,
                Err(e) => return Err(SendError::NotDelivered(format!("control socket: {e}"))),
            },
        };
        let result = conn.call(&request).await;
        // A whole reply leaves the connection ready for the next call;
        // after anything else it may be out of step: closed. (So is one
        // whose caller gave up mid-call: dropped with the future.)
        if matches!(result, Ok(_) | Err(CallError::Refused(_))) {
            kept = Some(conn);
        }
        let result = result.map_err(classify);
        match result {
            // "Busy" means the VNF queued nothing: safe to send again. Its
            // queue is full of calls from elsewhere (ours are bounded well
            // below it), which it serves in microseconds each, so a short
            // wait beats answering 503 to a client of a healthy instance.
            Err(SendError::Busy(m)) if tokio::time::Instant::now() + backoff < deadline => {
                tracing::debug!(instance = %instance_id, "VNF busy ({m}); trying again");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(100));
            }
            result => {
                if let (Some(rt), Some(pid), Some(c)) = (&rt, pid, kept) {
                    rt.put_conn(pid, c);
                }
                return result;
            }
        }
    }
}

/// Longest wait for a VNF's reply: the VNF answers "did not answer" itself
/// after 2 s with its worker; twice that means the VNF is stuck.
const REPLY_WAIT: Duration = Duration::from_secs(4);

/// A connection to a VNF's control socket driven by the async workers
/// (the dataplane's `ControlClient` blocks, and a trip through the
/// blocking pool per operation was a good part of the daemon's time): the
/// same JSON lines, one request and one reply at a time.
#[derive(Debug)]
pub struct VnfConn {
    stream: BufReader<UnixStream>,
}

impl VnfConn {
    /// Connects to the control socket at `path`.
    pub async fn connect(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            stream: BufReader::new(UnixStream::connect(path).await?),
        })
    }

    /// Sends `request` and returns the `result` of its reply.
    pub async fn call(&mut self, request: &Value) -> Result<Value, CallError> {
        let mut line = request.to_string();
        line.push('\n');
        self.stream.get_mut().write_all(line.as_bytes()).await?;
        line.clear();
        let n = tokio::time::timeout(REPLY_WAIT, self.stream.read_line(&mut line))
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no reply within {} s", REPLY_WAIT.as_secs()),
                )
            })??;
        if n == 0 {
            return Err(CallError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "VNF closed the socket",
            )));
        }
        dataplane::control::reply_result(serde_json::from_str(&line)?)
    }

    /// Whether this connection can carry another call: the VNF has not
    /// closed it (its process exited) and nothing unread waits on it (a
    /// stray reply would answer the next call). A syscall, not the
    /// reactor's view, which may not have seen a hang-up of a moment ago.
    pub fn is_reusable(&self) -> bool {
        if !self.stream.buffer().is_empty() {
            return false;
        }
        let mut b = 0u8;
        // SAFETY: a one-byte peek into a valid buffer on our own socket;
        // MSG_DONTWAIT keeps it from blocking.
        let n = unsafe {
            libc::recv(
                self.stream.get_ref().as_raw_fd(),
                (&raw mut b).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        // Nothing to read yet is the one healthy answer: 0 is the VNF's
        // hang-up, more is a stray reply.
        n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
    }
}

/// Longest wait of an operation for its turn at the instance's control
/// socket (behind [`CONTROL_CALLS`] calls in progress, or a VNF that says
/// its queue is full) before it is answered 503 with Retry-After. A burst
/// waits in line instead of being refused; a line so long that a turn
/// takes this long means an overloaded instance, which the client hears
/// about rather than holding its request open indefinitely.
pub const CALL_WAIT: Duration = Duration::from_secs(10);

/// What a failed control call means for the request.
fn classify(e: CallError) -> SendError {
    match e {
        CallError::Refused(m) if m.starts_with("VNF busy") => SendError::Busy(m),
        CallError::Refused(m) if m.starts_with("VNF is shutting down") => {
            SendError::NotDelivered(m)
        }
        CallError::Refused(m)
            if m.starts_with("VNF worker did not answer")
                || m.starts_with("VNF dropped the request") =>
        {
            SendError::Lost(m)
        }
        CallError::Refused(m) => SendError::Refused(m),
        other => SendError::Lost(other.to_string()),
    }
}

/// What became of an operation.
#[derive(Debug)]
pub enum Outcome {
    /// The VNF applied it and answered.
    Done(Value),
    /// It was logged for later; poll the request.
    Scheduled(RequestStatus),
}

/// The catalog entry of `service`, for its operations. The catalog is
/// fixed at build time; looking it up afresh for every operation (building
/// every entry and checking each binary on disk) was a tenth of the
/// daemon's time under load, so it is built once.
fn operations_of(vnf_dir: &std::path::Path, service: &str) -> Option<&'static catalog::Service> {
    static CATALOG: std::sync::OnceLock<Vec<catalog::Service>> = std::sync::OnceLock::new();
    CATALOG
        .get_or_init(|| catalog::services(vnf_dir, true))
        .iter()
        .find(|s| s.name == service)
}

/// Handles `POST /v1/instances/{id}/ops/{op}` for `user_id`.
pub async fn submit(
    state: &AppState,
    user_id: i64,
    instance_id: &str,
    op_name: &str,
    args: Value,
) -> Result<Outcome, ApiError> {
    let row = manager::load(state, user_id, instance_id).await?;
    let svc = operations_of(&state.vnf_dir, &row.service)
        .ok_or_else(|| ApiError::Internal(format!("service {:?} left the catalog", row.service)))?;
    let Some(op) = svc.operations.iter().find(|o| o.name == op_name) else {
        return Err(ApiError::NotFound(format!(
            "service {:?} has no operation {op_name:?} (it has: {})",
            svc.name,
            if svc.operations.is_empty() {
                "none over REST".to_string()
            } else {
                svc.operations
                    .iter()
                    .map(|o| o.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )));
    };
    op.validate(&args).map_err(ApiError::Unprocessable)?;
    let rt = state.registry.insert(&row.id, false);
    let _gate = rt.gate.read().await;
    if rt.is_available() && !scheduler::has_pending_for(state, &rt, &row.id).await? {
        match send_to(state, &row, op.name, &args).await {
            Ok(v) => {
                state.metrics.ops_direct.fetch_add(1, Ordering::Relaxed);
                return Ok(Outcome::Done(v));
            }
            Err(SendError::Refused(m)) => {
                return Err(ApiError::Unprocessable(format!(
                    "{} refused {op_name:?}: {m}",
                    svc.name
                )));
            }
            Err(SendError::Lost(m)) => {
                return Err(ApiError::BadGateway(format!(
                    "the VNF failed while applying {op_name:?}; it may or may not have been applied: {m}"
                )));
            }
            Err(SendError::Busy(m)) => {
                return Err(ApiError::Unavailable(format!(
                    "instance {} is busy ({m}); the request was not applied, retry later",
                    row.id
                )));
            }
            Err(SendError::NotDelivered(m)) => {
                manager::set_unavailable(state, &row.id, &m).await;
            }
        }
    }
    if !op.mutating {
        return Err(ApiError::Unavailable(format!(
            "instance {} is unavailable and {op_name:?} is a read, which is not scheduled; retry later",
            row.id
        )));
    }
    let logged = scheduler::enqueue(state, user_id, &row.id, op.name, &args).await?;
    Ok(Outcome::Scheduled(logged))
}
