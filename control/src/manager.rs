//! Service Manager: the lifecycle of instances (create, remove, heal,
//! scale, reconfigure, and reconciliation after a daemon restart), on top of
//! the VIM and the tenant networks.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::RngCore;
use rusqlite::{OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::agent::{self, TenantNet};
use crate::catalog;
use crate::db::{now_s, record_event};
use crate::error::ApiError;
use crate::state::AppState;
use crate::vim::LaunchSpec;

/// Most workers (queues) one instance may scale to.
pub const MAX_REPLICAS: u32 = 8;

/// An instance as stored.
#[derive(Debug, Clone)]
pub struct InstanceRow {
    /// Its id.
    pub id: String,
    /// The owning tenant.
    pub user_id: i64,
    /// Service name.
    pub service: String,
    /// Service version.
    pub version: String,
    /// Optional user-given name.
    pub name: Option<String>,
    /// Lifecycle state: `starting`, `running`, `unavailable`.
    pub state: String,
    /// Last known process id.
    pub pid: Option<u32>,
    /// Direct-channel address.
    pub addr: String,
    /// Direct-channel port.
    pub port: u16,
    /// Control socket path.
    pub control_path: String,
    /// VNF options (`poll`, `burst`).
    pub config: Value,
    /// Scaling bounds and current size.
    pub scale_min: u32,
    /// Upper scaling bound.
    pub scale_max: u32,
    /// Current workers.
    pub replicas: u32,
    /// Restarts so far.
    pub restarts: u32,
    /// Creation time (Unix seconds).
    pub created_at: i64,
    /// Every process id of the instance (the first is `pid`).
    pub pids: Vec<u32>,
    /// A sequencer's members as its VNF last listed them.
    pub members: Vec<(u64, String)>,
}

const COLUMNS: &str = "id, user_id, service, version, name, state, pid, addr, port, control_path, \
                       config, scale_min, scale_max, replicas, restarts, created_at, pids, members";

fn from_row(r: &Row<'_>) -> rusqlite::Result<InstanceRow> {
    let config: String = r.get(10)?;
    Ok(InstanceRow {
        id: r.get(0)?,
        user_id: r.get(1)?,
        service: r.get(2)?,
        version: r.get(3)?,
        name: r.get(4)?,
        state: r.get(5)?,
        pid: r.get(6)?,
        addr: r.get(7)?,
        port: r.get(8)?,
        control_path: r.get(9)?,
        config: serde_json::from_str(&config).unwrap_or(Value::Null),
        scale_min: r.get(11)?,
        scale_max: r.get(12)?,
        replicas: r.get(13)?,
        restarts: r.get(14)?,
        created_at: r.get(15)?,
        pids: serde_json::from_str(&r.get::<_, String>(16)?).unwrap_or_default(),
        members: serde_json::from_str(&r.get::<_, String>(17)?).unwrap_or_default(),
    })
}

/// Scaling bounds and size.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    /// Fewest workers.
    pub min: u32,
    /// Most workers.
    pub max: u32,
    /// Workers now.
    pub replicas: u32,
}

/// An instance as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InstanceView {
    /// Instance id.
    pub id: String,
    /// Service name.
    pub service: String,
    /// Service version.
    pub version: String,
    /// User-given name.
    pub name: Option<String>,
    /// `starting`, `running` or `unavailable`.
    pub state: String,
    /// Whether operations reach the VNF now (otherwise they are scheduled).
    pub available: bool,
    /// The REST handle.
    pub rest: String,
    /// The direct-channel endpoint (UDP), inside the tenant's network.
    pub direct: DirectEndpoint,
    /// Scaling.
    pub scale: Scale,
    /// VNF options.
    #[schema(value_type = Object)]
    pub config: Value,
    /// Restarts (heals, scalings, reconfigurations) so far.
    pub restarts: u32,
    /// Process id of the VNF (for operators).
    pub pid: Option<u32>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

/// Where the direct channel of an instance is.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DirectEndpoint {
    /// IPv4 address.
    pub addr: String,
    /// UDP port.
    pub port: u16,
    /// The session id direct-channel messages carry. Only in the answer
    /// that created the channel, with its key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<u64>,
    /// The per-session key (hex, 32 bytes) under which direct-channel
    /// packets are authenticated. Only in the answer that created the
    /// channel: it is never shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
    /// The address applications on this host bind their end of the channel
    /// to, so that the instance can reach them (the host end of the
    /// tenant's link): a sequencer sends its group frames there.
    pub client_addr: String,
    /// A sequencer's group id (the session id its frames carry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<u64>,
    /// The processes of an instance that has several (consensus:
    /// coordinators, acceptors, learners), or the sequencer's one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<crate::services::RoleEndpoint>,
}

impl InstanceRow {
    /// The API view, with availability from the run-time registry.
    pub fn view(&self, state: &AppState) -> InstanceView {
        let available = state
            .registry
            .get(&self.id)
            .is_some_and(|rt| rt.is_available());
        InstanceView {
            id: self.id.clone(),
            service: self.service.clone(),
            version: self.version.clone(),
            name: self.name.clone(),
            state: self.state.clone(),
            available,
            rest: format!("/v1/instances/{}", self.id),
            direct: DirectEndpoint {
                addr: self.addr.clone(),
                port: self.port,
                session_id: None,
                session_key: None,
                client_addr: crate::services::client_addr(&self.addr),
                group: (self.service == "sequencer").then(|| crate::services::group_of(&self.id)),
                roles: crate::services::endpoints(self),
            },
            scale: Scale {
                min: self.scale_min,
                max: self.scale_max,
                replicas: self.replicas,
            },
            config: self.config.clone(),
            restarts: self.restarts,
            pid: self.pid,
            created_at: self.created_at,
        }
    }
}

/// Body of `POST /v1/instances`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInstance {
    /// Service to connect to (see `/v1/services`).
    pub service: String,
    /// Version; the newest when absent.
    pub version: Option<String>,
    /// A name for the user's own bookkeeping.
    pub name: Option<String>,
    /// VNF options: `poll` (`adaptive`|`busy`|`paced[:µs]`), `burst` (1–64).
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
    /// Scaling bounds and initial size (default 1, 1, 1).
    pub scale: Option<ScaleRequest>,
}

/// A change of scaling: any of the three.
#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScaleRequest {
    /// New lower bound.
    pub min: Option<u32>,
    /// New upper bound.
    pub max: Option<u32>,
    /// New size.
    pub replicas: Option<u32>,
}

/// Checks VNF options; they become command-line flags, so only known keys
/// with checked values pass.
pub fn validate_config(config: &Value) -> Result<Vec<String>, ApiError> {
    let Some(obj) = config.as_object() else {
        return Err(ApiError::Unprocessable(
            "config must be a JSON object".into(),
        ));
    };
    let mut args = Vec::new();
    for (k, v) in obj {
        match (k.as_str(), v) {
            ("poll", Value::String(s)) if s.parse::<dataplane::runtime::PollPolicy>().is_ok() => {
                args.extend(["--poll".into(), s.clone()]);
            }
            ("poll", _) => {
                return Err(ApiError::Unprocessable(
                    "config.poll must be \"adaptive\", \"adaptive:<microseconds>\", \"busy\", \"paced\" or \"paced:<microseconds>\"".into(),
                ));
            }
            ("burst", v) if v.as_u64().is_some_and(|b| (1..=64).contains(&b)) => {
                args.extend(["--burst".into(), v.to_string()]);
            }
            ("burst", _) => {
                return Err(ApiError::Unprocessable(
                    "config.burst must be an integer from 1 to 64".into(),
                ));
            }
            (k, _) => {
                return Err(ApiError::Unprocessable(format!(
                    "unknown config key {k:?} (known: poll, burst)"
                )));
            }
        }
    }
    Ok(args)
}

/// Applies `req` to `cur` and checks `1 <= min <= replicas <= max <= MAX`.
pub fn apply_scale(cur: &Scale, req: &ScaleRequest) -> Result<Scale, ApiError> {
    let min = req.min.unwrap_or(cur.min);
    let max = req.max.unwrap_or(cur.max);
    // Moving the bounds drags the size along unless it is given.
    let replicas = req
        .replicas
        .unwrap_or(cur.replicas.clamp(min, max.max(min)));
    if min == 0 || min > max || max > MAX_REPLICAS {
        return Err(ApiError::Unprocessable(format!(
            "scale bounds must satisfy 1 <= min <= max <= {MAX_REPLICAS}; got min {min}, max {max}"
        )));
    }
    if replicas < min || replicas > max {
        return Err(ApiError::Unprocessable(format!(
            "replicas {replicas} is outside the bounds [{min}, {max}]"
        )));
    }
    Ok(Scale { min, max, replicas })
}

/// Loads an instance of `user_id`; another tenant's instance is "not
/// found", exactly like a missing one, so that ids reveal nothing.
pub async fn load(state: &AppState, user_id: i64, id: &str) -> Result<InstanceRow, ApiError> {
    let idc = id.to_owned();
    // Every REST operation runs this: on a reader, compiled once.
    state
        .db
        .read(|c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM instances WHERE id = ?1 AND user_id = ?2"
            ))?
            .query_row(params![idc, user_id], from_row)
            .optional()?)
        })?
        .ok_or_else(|| ApiError::not_found("instance", id))
}

/// Every instance of `user_id` (all tenants' when `None`).
pub async fn list(state: &AppState, user_id: Option<i64>) -> Result<Vec<InstanceRow>, ApiError> {
    state
        .db
        .call(move |c| {
            let mut st = c.prepare(&format!(
                "SELECT {COLUMNS} FROM instances WHERE ?1 IS NULL OR user_id = ?1 ORDER BY created_at, id"
            ))?;
            let v = st
                .query_map([user_id], from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(v)
        })
        .await
}

/// How to start `row`'s VNF processes; `fresh` for a first start.
fn spec_for(
    state: &AppState,
    row: &InstanceRow,
    net: &TenantNet,
    fresh: bool,
) -> Result<LaunchSpec, ApiError> {
    let svc = catalog::find(&state.vnf_dir, true, &row.service)
        .ok_or_else(|| ApiError::Internal(format!("service {:?} left the catalog", row.service)))?;
    let mut extra_args = validate_config(&row.config)?;
    if svc.authenticated {
        extra_args.extend([
            "--auth".to_owned(),
            "required".to_owned(),
            "--auth-keys".to_owned(),
            keys_path(state, &row.id).display().to_string(),
        ]);
    }
    Ok(LaunchSpec {
        instance_id: row.id.clone(),
        binary: state.vnf_dir.join(svc.binary),
        netns: net.netns.clone(),
        iface: net.iface.clone(),
        addr: net.tenant_addr,
        port: row.port,
        control: svc.control_socket.then(|| row.control_path.clone().into()),
        backend: state.config.vim.backend.clone(),
        queues: row.replicas,
        extra_args,
        log: state
            .config
            .data_dir
            .join("logs")
            .join(format!("{}.log", row.id)),
        ready_timeout: Duration::from_millis(state.config.vim.ready_timeout_ms),
        roles: crate::services::roles(state, row, fresh),
    })
}

/// Records a sequencer's member list, as its VNF answered it.
pub async fn record_members(state: &AppState, id: &str, members: &[(u64, String)]) {
    let (idc, m) = (id.to_owned(), json!(members).to_string());
    let _ = state
        .db
        .call(move |c| {
            c.execute(
                "UPDATE instances SET members = ?2 WHERE id = ?1",
                params![idc, m],
            )?;
            Ok(())
        })
        .await;
}

/// The recorded process ids of `row` (older rows have only `pid`).
fn recorded_pids(row: &InstanceRow) -> Vec<u32> {
    if row.pids.is_empty() {
        row.pid.into_iter().collect()
    } else {
        row.pids.clone()
    }
}

/// The direct-channel credentials of instance `id` (its flow route's
/// session and key), for the daemon's own member of the instance; `None`
/// when it has none.
pub async fn channel_credentials(
    state: &AppState,
    id: &str,
) -> Result<Option<libnfvinc::direct::DirectAuth>, ApiError> {
    let idc = id.to_owned();
    let route: Option<(i64, Vec<u8>)> = state
        .db
        .call(move |c| {
            Ok(c.query_row(
                "SELECT session_id, session_key FROM flow_routes
                 WHERE instance_id = ?1 AND session_id IS NOT NULL ORDER BY id LIMIT 1",
                [idc],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
        })
        .await?;
    Ok(route.and_then(|(session, key)| {
        Some(libnfvinc::direct::DirectAuth {
            session: u64::try_from(session).ok()?,
            key: dataplane::auth::SessionKey::from_bytes(key.try_into().ok()?),
        })
    }))
}

/// Where an instance's session keys are handed to its VNF.
fn keys_path(state: &AppState, id: &str) -> std::path::PathBuf {
    state.config.data_dir.join("run").join(format!("{id}.keys"))
}

/// Writes the instance's direct-channel keys (those of its flow routes,
/// and `new` if given) where its VNF reads them at start: a file only the
/// daemon's user can read, replaced whole so a VNF never reads half of it.
async fn write_keys(
    state: &AppState,
    id: &str,
    new: Option<(i64, [u8; 32])>,
) -> Result<(), ApiError> {
    let idc = id.to_owned();
    let mut keys: Vec<(i64, Vec<u8>)> = state
        .db
        .call(move |c| {
            let mut st = c.prepare(
                "SELECT session_id, session_key FROM flow_routes WHERE instance_id = ?1 AND session_id IS NOT NULL",
            )?;
            let rows = st
                .query_map([idc], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await?;
    if let Some((s, k)) = new {
        keys.push((s, k.to_vec()));
    }
    let mut text = String::from("# direct-channel session keys: <session id> <key>\n");
    for (s, k) in keys {
        text.push_str(&format!("{s} {}\n", hex::encode(k)));
    }
    let path = keys_path(state, id);
    tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let tmp = path.with_extension("keys.tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("writing session keys: {e}")))?
    .map_err(|e| ApiError::Internal(format!("writing session keys: {e}")))
}

/// What creating an instance returns.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Created {
    /// The instance, with the direct channel's session key.
    #[serde(flatten)]
    pub instance: InstanceView,
    /// Milliseconds from the request to a ready VNF.
    pub startup_ms: f64,
}

/// Creates an instance of `req.service` in the tenant's network.
pub async fn create(
    state: &AppState,
    user_id: i64,
    session_id: i64,
    req: CreateInstance,
) -> Result<Created, ApiError> {
    let t0 = Instant::now();
    let svc = catalog::find(&state.vnf_dir, state.config.test_services, &req.service).ok_or_else(
        || {
            ApiError::Unprocessable(format!(
                "no service {:?} in the catalog (see GET /v1/services)",
                req.service
            ))
        },
    )?;
    let version = match req.version {
        None => svc.versions.last().copied().unwrap_or("0.1").to_owned(),
        Some(v) if svc.versions.contains(&v.as_str()) => v,
        Some(v) => {
            return Err(ApiError::Unprocessable(format!(
                "service {:?} has no version {v:?} (it has: {})",
                svc.name,
                svc.versions.join(", ")
            )));
        }
    };
    if !svc.installed {
        return Err(ApiError::Unavailable(format!(
            "service {:?} is not installed on this host ({} missing from {})",
            svc.name,
            svc.binary,
            state.vnf_dir.display()
        )));
    }
    if let Some(n) = &req.name {
        if n.len() > 64 {
            return Err(ApiError::Unprocessable(
                "name is longer than 64 bytes".into(),
            ));
        }
    }
    let config = req.config.unwrap_or_else(|| json!({}));
    validate_config(&config)?;
    let scale = apply_scale(
        &Scale {
            min: 1,
            max: 1,
            replicas: 1,
        },
        &req.scale.unwrap_or_default(),
    )?;
    if scale.max > svc.max_replicas {
        return Err(ApiError::Unprocessable(format!(
            "service {:?} scales to at most {} worker(s) per instance; got max {}",
            svc.name, svc.max_replicas, scale.max
        )));
    }

    let mut idb = [0u8; 8];
    rand::rng().fill_bytes(&mut idb);
    let id = format!("i-{}", hex::encode(idb));
    let control_path = state.config.data_dir.join("run").join(format!("{id}.sock"));
    if control_path.as_os_str().len() > 100 {
        return Err(ApiError::Internal(format!(
            "control socket path {} is too long for a Unix socket; use a shorter data_dir",
            control_path.display()
        )));
    }
    let net = agent::ensure_network(state, user_id).await?;

    // Reserve the row (and the port) first: a crash after this leaves a
    // record that reconciliation finishes or removes, never an orphan VNF.
    let max = state.config.max_instances_per_tenant;
    let base = state.config.vim.base_port;
    let shared_ns = net.netns.is_none();
    let row = {
        let (id, name, version, service) = (id.clone(), req.name.clone(), version, svc.name);
        let (addr, cp, cfg) = (
            net.tenant_addr.to_string(),
            control_path.display().to_string(),
            config.to_string(),
        );
        state
            .db
            .call(move |c| {
                let tx = c.transaction()?;
                let n: u32 = tx.query_row(
                    "SELECT COUNT(*) FROM instances WHERE user_id = ?1",
                    [user_id],
                    |r| r.get(0),
                )?;
                if n >= max {
                    return Err(ApiError::Conflict(format!(
                        "tenant limit reached: {max} instances; remove one first"
                    )));
                }
                // Ports are per tenant network; without isolation every
                // instance shares one namespace, so they are per daemon.
                // Each instance gets PORT_SPAN ports (the consensus
                // service's processes take consecutive ones).
                let port: u32 = tx.query_row(
                    "SELECT COALESCE(MAX(port) + ?4, ?1) FROM instances WHERE ?2 OR user_id = ?3",
                    params![base, shared_ns, user_id, crate::services::PORT_SPAN],
                    |r| r.get(0),
                )?;
                let port = u16::try_from(port)
                    .map_err(|_| ApiError::Conflict("no free port left".into()))?;
                tx.execute(
                    "INSERT INTO instances (id, user_id, service, version, name, state, available, pid,
                        addr, port, control_path, config, scale_min, scale_max, replicas, restarts,
                        created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'starting', 0, NULL, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 0, ?13, ?13)",
                    params![id, user_id, service, version, name, addr, port, cp, cfg,
                            scale.min, scale.max, scale.replicas, now_s()],
                )?;
                let row = tx.query_row(
                    &format!("SELECT {COLUMNS} FROM instances WHERE id = ?1"),
                    [&id],
                    from_row,
                )?;
                tx.commit()?;
                Ok(row)
            })
            .await?
    };
    let key = agent::session_key();
    // The session the channel's messages carry: the creating REST
    // session's, or the instance's own where its processes share one key
    // with all its clients (sequencer groups, consensus instances).
    let channel = crate::services::channel_session(svc.name, &id)
        .and_then(|s| i64::try_from(s).ok())
        .unwrap_or(session_id);
    write_keys(state, &id, Some((channel, key))).await?;
    let spec = spec_for(state, &row, &net, true)?;
    let launched = match state.vim.instantiate(&spec).await {
        Ok(l) => l,
        Err(e) => {
            let _ = std::fs::remove_file(keys_path(state, &id));
            let idc = id.clone();
            let _ = state
                .db
                .call(move |c| Ok(c.execute("DELETE FROM instances WHERE id = ?1", [idc])?))
                .await;
            let _ = agent::release_network_if_unused(state, user_id).await;
            return Err(ApiError::BadGateway(format!(
                "instance failed to start: {e}"
            )));
        }
    };
    let (idc, addr, port) = (id.clone(), row.addr.clone(), row.port);
    let pids = json!(launched.pids).to_string();
    let ready_ms = launched.ready_after.as_secs_f64() * 1e3;
    let row = state
        .db
        .call(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "UPDATE instances SET state = 'running', available = 1, pid = ?2, pids = ?4, updated_at = ?3 WHERE id = ?1",
                params![idc, launched.pid, now_s(), pids],
            )?;
            // The direct channel's flow route and key; the XDP program's
            // map is filled from this table by the dataplane integration.
            tx.execute(
                "INSERT INTO flow_routes (instance_id, session_id, dst_addr, dst_port, session_key, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![idc, channel, addr, port, key.to_vec(), now_s()],
            )?;
            record_event(
                &tx,
                Some(user_id),
                Some(&idc),
                "created",
                &json!({"pid": launched.pid, "ready_ms": ready_ms}),
            )?;
            let row = tx.query_row(
                &format!("SELECT {COLUMNS} FROM instances WHERE id = ?1"),
                [&idc],
                from_row,
            )?;
            tx.commit()?;
            Ok(row)
        })
        .await?;
    state.registry.insert(&id, true);
    state
        .metrics
        .instances_created
        .fetch_add(1, Ordering::Relaxed);
    let mut view = row.view(state);
    view.direct.session_id = u64::try_from(channel).ok();
    view.direct.session_key = Some(hex::encode(key));
    let startup_ms = t0.elapsed().as_secs_f64() * 1e3;
    state.metrics.observe_startup(startup_ms);
    tracing::info!(instance = %id, service = %row.service, pid = launched.pid, startup_ms, "instance created");
    Ok(Created {
        instance: view,
        startup_ms,
    })
}

/// Stops and forgets an instance; its logged requests that never ran are
/// failed, so that clients polling them get an answer.
///
/// It takes the instance's busy flag first, waiting (bounded) for a heal,
/// scale or reconfiguration in progress to finish: a restart running
/// beside a removal would start a VNF nobody manages any more, which would
/// keep the instance's port and make later creations fail. The row goes
/// before the processes, so that a restart that comes later finds it gone.
pub async fn remove(state: &AppState, row: &InstanceRow) -> Result<(), ApiError> {
    let rt = state.registry.insert(&row.id, false);
    let deadline = Instant::now() + REMOVE_WAIT;
    while rt.busy.swap(true, Ordering::AcqRel) {
        if Instant::now() > deadline {
            return Err(ApiError::Conflict(format!(
                "instance {} is being restarted; retry the removal",
                row.id
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rt.available.store(false, Ordering::Release);
    let (id, user_id) = (row.id.clone(), row.user_id);
    let deleted = state
        .db
        .call(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "UPDATE scheduled_requests SET status = 'failed', error = 'instance removed before the request could run', completed_at = ?2
                 WHERE instance_id = ?1 AND status IN ('pending', 'in_flight')",
                params![id, crate::db::now_ms()],
            )?;
            tx.execute("DELETE FROM instances WHERE id = ?1", [&id])?;
            record_event(&tx, Some(user_id), Some(&id), "removed", &json!({}))?;
            tx.commit()?;
            Ok(())
        })
        .await;
    if let Err(e) = deleted {
        rt.busy.store(false, Ordering::Release);
        return Err(e);
    }
    let _ = rt.lifecycle.send(json!({"lifecycle": "removed"}));
    *rt.gateway.lock().await = None;
    state.vim.terminate(&row.id, &recorded_pids(row)).await;
    kill_strays(&row.id);
    let _ = std::fs::remove_file(keys_path(state, &row.id));
    for f in crate::services::leftovers(state, row) {
        let _ = std::fs::remove_file(f);
    }
    // The entry stays busy until it is forgotten: nothing restarts it.
    state.registry.remove(&row.id);
    let _ = std::fs::remove_file(&row.control_path);
    agent::release_network_if_unused(state, row.user_id).await?;
    tracing::info!(instance = %row.id, "instance removed");
    Ok(())
}

/// Longest wait of a removal for a restart in progress.
const REMOVE_WAIT: Duration = Duration::from_secs(30);

/// An instance by id, whatever its tenant; `None` once it is removed.
pub async fn load_any(state: &AppState, id: &str) -> Result<Option<InstanceRow>, ApiError> {
    let idc = id.to_owned();
    state
        .db
        .call(move |c| {
            Ok(
                c.prepare_cached(&format!("SELECT {COLUMNS} FROM instances WHERE id = ?1"))?
                    .query_row([idc], from_row)
                    .optional()?,
            )
        })
        .await
}

/// Why an instance is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Found dead or unhealthy.
    Heal,
    /// Its size changed.
    Scale,
    /// Its options changed.
    Reconfigure,
}

/// Restarts an instance's VNF (with the row's current size and options).
/// Operations arriving meanwhile are scheduled, and the Scheduler replays
/// them once it is back.
pub async fn restart(state: &AppState, row: &InstanceRow, why: Restart) -> Result<(), ApiError> {
    let rt = state.registry.insert(&row.id, false);
    if rt.busy.swap(true, Ordering::AcqRel) {
        return Err(ApiError::Conflict(format!(
            "instance {} is already being restarted",
            row.id
        )));
    }
    // Removed meanwhile (a heal decided before the removal): nothing to
    // restart, and the entry this call registered is forgotten again.
    match load_any(state, &row.id).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            rt.busy.store(false, Ordering::Release);
            state.registry.remove(&row.id);
            return Err(ApiError::not_found("instance", &row.id));
        }
        Err(e) => {
            rt.busy.store(false, Ordering::Release);
            return Err(e);
        }
    }
    rt.available.store(false, Ordering::Release);
    let result = async {
        let net = agent::ensure_network(state, row.user_id).await?;
        write_keys(state, &row.id, None).await?;
        // The row as it is now (a sequencer's members may have changed
        // since the caller read it).
        let row = load_any(state, &row.id).await?.unwrap_or_else(|| row.clone());
        let spec = spec_for(state, &row, &net, false)?;
        let mut pids = state.vim.pids(&row.id);
        if pids.is_empty() {
            pids = recorded_pids(&row);
        }
        let launched = match why {
            Restart::Scale => state.vim.scale(&spec, &pids).await,
            _ => state.vim.heal(&spec, &pids).await,
        }
        .map_err(|e| ApiError::BadGateway(format!("instance failed to restart: {e}")))?;
        let (id, user_id) = (row.id.clone(), row.user_id);
        let kind = format!("{why:?}").to_lowercase();
        let pids = json!(launched.pids).to_string();
        state
            .db
            .call(move |c| {
                c.execute(
                    "UPDATE instances SET state = 'running', available = 1, pid = ?2, pids = ?4, restarts = restarts + 1, updated_at = ?3 WHERE id = ?1",
                    params![id, launched.pid, now_s(), pids],
                )?;
                record_event(c, Some(user_id), Some(&id), &kind, &json!({"pid": launched.pid}))?;
                Ok(())
            })
            .await?;
        Ok::<_, ApiError>(launched)
    }
    .await;
    rt.busy.store(false, Ordering::Release);
    match result {
        Ok(l) => {
            rt.restarts.fetch_add(1, Ordering::Relaxed);
            state.metrics.restarts.fetch_add(1, Ordering::Relaxed);
            rt.available.store(true, Ordering::Release);
            let _ = rt.lifecycle.send(json!({"lifecycle": "available", "reason": format!("{why:?}").to_lowercase(), "pid": l.pid}));
            state.scheduler_wake.notify_one();
            tracing::info!(instance = %row.id, ?why, pid = l.pid, "instance restarted");
            Ok(())
        }
        Err(e) => {
            set_unavailable(state, &row.id, &e.to_string()).await;
            Err(e)
        }
    }
}

/// Flags an instance unavailable (in memory, in the database, on its event
/// stream); later operations on it are scheduled.
pub async fn set_unavailable(state: &AppState, id: &str, reason: &str) {
    let rt = state.registry.insert(id, false);
    let was = rt.available.swap(false, Ordering::AcqRel);
    if !was {
        return;
    }
    tracing::warn!(instance = %id, reason, "instance unavailable");
    let _ = rt
        .lifecycle
        .send(json!({"lifecycle": "unavailable", "reason": reason}));
    let (idc, reason) = (id.to_owned(), reason.to_owned());
    let _ = state
        .db
        .call(move |c| {
            c.execute(
                "UPDATE instances SET state = 'unavailable', available = 0, updated_at = ?2 WHERE id = ?1",
                params![idc, now_s()],
            )?;
            record_event(c, None, Some(&idc), "unavailable", &json!({"reason": reason}))?;
            Ok(())
        })
        .await;
}

/// Brings the instances of the database back after a daemon (re)start:
/// processes that still run are adopted, the others restarted.
pub async fn reconcile(state: &AppState) -> Result<(), ApiError> {
    for row in list(state, None).await? {
        let net = match agent::ensure_network(state, row.user_id).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(instance = %row.id, error = %e, "cannot rebuild tenant network");
                state.registry.insert(&row.id, false);
                continue;
            }
        };
        let spec = spec_for(state, &row, &net, false)?;
        let pids = recorded_pids(&row);
        if let Some(&pid) = pids.first() {
            if state.vim.adopt(&spec, &pids) {
                tracing::info!(instance = %row.id, pid, processes = pids.len(), "adopted running instance");
                state.registry.insert(&row.id, row.state == "running");
                continue;
            }
        }
        state.registry.insert(&row.id, false);
        if let Err(e) = restart(state, &row, Restart::Heal).await {
            tracing::error!(instance = %row.id, error = %e, "cannot restart instance; the Monitor retries");
        }
    }
    state.scheduler_wake.notify_one();
    Ok(())
}

/// Stops every VNF of this daemon (graceful shutdown). The database keeps
/// them as they were, so the next start brings them back.
pub async fn stop_all(state: &AppState) {
    let rows = list(state, None).await.unwrap_or_default();
    // Heals the Monitor started just before the stop may still be starting
    // processes: wait for them (bounded), so that none outlives the daemon.
    for _ in 0..100 {
        let busy = rows.iter().any(|r| {
            state
                .registry
                .get(&r.id)
                .is_some_and(|rt| rt.busy.load(Ordering::Acquire))
        });
        if !busy {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for row in &rows {
        if let Some(rt) = state.registry.get(&row.id) {
            rt.available.store(false, Ordering::Release);
        }
        if let Some(rt) = state.registry.get(&row.id) {
            *rt.gateway.lock().await = None;
        }
        state.vim.terminate(&row.id, &recorded_pids(row)).await;
        kill_strays(&row.id);
    }
    agent::teardown_all(state).await;
}

/// SIGKILLs any process still carrying the instance's id in its environment
/// (`NFVINC_INSTANCE`): a safety net for a VNF the VIM lost track of, since
/// an orphan would keep serving in a namespace nobody manages.
fn kill_strays(instance_id: &str) {
    let needle = format!("NFVINC_INSTANCE={instance_id}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(|v| v == needle.as_bytes()) {
            tracing::warn!(instance = instance_id, pid, "killing a stray VNF process");
            // SAFETY: kill has no memory-safety preconditions; the process
            // carries this instance's id, so it is one of ours.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_becomes_checked_flags() {
        assert_eq!(
            validate_config(&json!({"poll": "busy", "burst": 32})).unwrap(),
            ["--burst", "32", "--poll", "busy"]
        );
        assert!(validate_config(&json!({"poll": "spin"})).is_err());
        assert!(validate_config(&json!({"poll": "paced:250"})).is_ok());
        assert!(validate_config(&json!({"burst": 0})).is_err());
        assert!(validate_config(&json!({"burst": "8"})).is_err());
        assert!(validate_config(&json!({"core": 1})).is_err());
        assert!(validate_config(&json!([])).is_err());
    }

    #[test]
    fn scale_bounds_are_enforced() {
        let cur = Scale {
            min: 1,
            max: 1,
            replicas: 1,
        };
        let s = apply_scale(
            &cur,
            &ScaleRequest {
                min: Some(1),
                max: Some(4),
                replicas: Some(3),
            },
        )
        .unwrap();
        assert_eq!((s.min, s.max, s.replicas), (1, 4, 3));
        let s = apply_scale(
            &s,
            &ScaleRequest {
                max: Some(2),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.replicas, 2, "shrinking max drags replicas along");
        assert!(
            apply_scale(
                &cur,
                &ScaleRequest {
                    replicas: Some(2),
                    ..Default::default()
                }
            )
            .is_err()
        );
        assert!(
            apply_scale(
                &cur,
                &ScaleRequest {
                    min: Some(0),
                    ..Default::default()
                }
            )
            .is_err()
        );
        assert!(
            apply_scale(
                &cur,
                &ScaleRequest {
                    max: Some(99),
                    ..Default::default()
                }
            )
            .is_err()
        );
    }
}
