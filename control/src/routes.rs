//! The netServices REST API: the router, assembled in one place, and its
//! handlers, each a small function over typed extractors. The OpenAPI
//! document is generated from these same handlers and types.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use dataplane::control::ControlClient;
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::auth::{self, Caller};
use crate::broker::{self, Outcome};
use crate::catalog::{self, Service};
use crate::error::{ApiError, Problem};
use crate::manager::{self, CreateInstance, Created, InstanceView, Restart, ScaleRequest};
use crate::metrics::InstanceMetrics;
use crate::scheduler::{self, RequestStatus};
use crate::state::AppState;

/// `Json` whose rejections are problem documents.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// `Path` whose rejections are problem documents.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// Builds the whole application.
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/v1/services", get(list_services))
        .route("/v1/services/{name}", get(get_service))
        .route("/v1/sessions", post(create_session))
        .route(
            "/v1/sessions/current",
            axum::routing::delete(delete_session),
        )
        .route("/v1/instances", get(list_instances).post(create_instance))
        .route(
            "/v1/instances/{id}",
            get(get_instance)
                .patch(reconfigure_instance)
                .delete(delete_instance),
        )
        .route("/v1/instances/{id}/scale", put(scale_instance))
        .route("/v1/instances/{id}/heal", post(heal_instance))
        .route("/v1/instances/{id}/ops/{op}", post(operation))
        .route("/v1/instances/{id}/events", get(events))
        .route("/v1/instances/{id}/metrics", get(instance_metrics))
        .route("/v1/requests/{id}", get(get_request))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_responses,
        ))
        .with_state(state)
}

async fn count_responses(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    state.metrics.count_http(resp.status().as_u16());
    resp
}

async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound(format!("no route {} {}", req.method(), req.uri().path()))
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{} is not allowed on {}",
        req.method(),
        req.uri().path()
    ))
}

/// Liveness of the daemon.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "The daemon is up")))]
async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
async fn metrics(State(state): State<AppState>) -> Response {
    let pending = scheduler::pending_count(&state).await;
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        state.metrics.render(pending),
    )
        .into_response()
}

/// This API's OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "OpenAPI 3.1 document")))]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Limits that apply to every tenant.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Limits {
    /// Instances one tenant may hold.
    pub max_instances_per_tenant: u32,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Bearer token lifetime, seconds.
    pub session_ttl_s: u64,
    /// Most workers per instance.
    pub max_replicas: u32,
}

/// The discovery catalog.
#[derive(Debug, Serialize, ToSchema)]
pub struct Catalog {
    /// Services offered.
    pub services: Vec<Service>,
    /// Limits.
    pub limits: Limits,
}

/// Discovery: every service offered, with its operations and limits.
#[utoipa::path(get, path = "/v1/services", tag = "discovery",
    responses((status = 200, body = Catalog)))]
async fn list_services(State(state): State<AppState>) -> Json<Catalog> {
    let c = &state.config;
    Json(Catalog {
        services: catalog::services(&state.vnf_dir, c.test_services),
        limits: Limits {
            max_instances_per_tenant: c.max_instances_per_tenant,
            max_body_bytes: c.max_body_bytes,
            session_ttl_s: c.session_ttl_s,
            max_replicas: manager::MAX_REPLICAS,
        },
    })
}

/// Discovery: one service.
#[utoipa::path(get, path = "/v1/services/{name}", tag = "discovery",
    params(("name" = String, Path, description = "Service name")),
    responses((status = 200, body = Service), (status = 404, body = Problem)))]
async fn get_service(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Service>, ApiError> {
    catalog::find(&state.vnf_dir, state.config.test_services, &name)
        .map(Json)
        .ok_or_else(|| ApiError::not_found("service", &name))
}

/// Body of `POST /v1/sessions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// An API key from `nfvinc user add`.
    pub api_key: String,
}

/// A new session.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionResponse {
    /// The bearer token for `Authorization: Bearer …`.
    pub token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
    /// The user (tenant).
    pub user: String,
}

/// Opens a session: trade an API key for an expiring bearer token.
#[utoipa::path(post, path = "/v1/sessions", tag = "sessions",
    request_body = SessionRequest,
    responses((status = 201, body = SessionResponse), (status = 401, body = Problem), (status = 400, body = Problem)))]
async fn create_session(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SessionRequest>,
) -> Result<(StatusCode, Json<SessionResponse>), ApiError> {
    let ttl = state.config.session_ttl_s;
    let (token, expires_at, user) = state
        .db
        .call(move |c| auth::open_session(c, &req.api_key, ttl))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(SessionResponse {
            token,
            token_type: "Bearer".into(),
            expires_at,
            user,
        }),
    ))
}

/// Ends the caller's session (its token stops working).
#[utoipa::path(delete, path = "/v1/sessions/current", tag = "sessions",
    security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem)))]
async fn delete_session(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    state
        .db
        .call(move |c| {
            c.execute("DELETE FROM sessions WHERE id = ?1", [caller.session_id])?;
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's instances.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InstanceList {
    /// Instances, oldest first.
    pub instances: Vec<InstanceView>,
}

/// Lists the caller's instances (never another tenant's).
#[utoipa::path(get, path = "/v1/instances", tag = "instances",
    security(("bearer" = [])),
    responses((status = 200, body = InstanceList), (status = 401, body = Problem)))]
async fn list_instances(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<InstanceList>, ApiError> {
    let rows = manager::list(&state, Some(caller.user_id)).await?;
    Ok(Json(InstanceList {
        instances: rows.iter().map(|r| r.view(&state)).collect(),
    }))
}

/// Connects to a service: instantiates it in the caller's virtual network
/// and returns its REST handle and direct-channel endpoint with a fresh
/// per-session key.
#[utoipa::path(post, path = "/v1/instances", tag = "instances",
    security(("bearer" = [])),
    request_body = CreateInstance,
    responses((status = 201, body = Created), (status = 422, body = Problem),
               (status = 409, body = Problem), (status = 503, body = Problem), (status = 502, body = Problem)))]
async fn create_instance(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateInstance>,
) -> Result<Response, ApiError> {
    let created = manager::create(&state, caller.user_id, caller.session_id, req).await?;
    let location = HeaderValue::from_str(&created.instance.rest)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(created),
    )
        .into_response())
}

/// One of the caller's instances.
#[utoipa::path(get, path = "/v1/instances/{id}", tag = "instances",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Instance id")),
    responses((status = 200, body = InstanceView), (status = 404, body = Problem)))]
async fn get_instance(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<InstanceView>, ApiError> {
    Ok(Json(
        manager::load(&state, caller.user_id, &id)
            .await?
            .view(&state),
    ))
}

/// Body of `PATCH /v1/instances/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reconfigure {
    /// New VNF options (replace the old ones): `poll`, `burst`.
    #[schema(value_type = Object)]
    pub config: Value,
}

/// Reconfigures an instance (its VNF restarts with the new options;
/// operations meanwhile are scheduled).
#[utoipa::path(patch, path = "/v1/instances/{id}", tag = "management",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Instance id")),
    request_body = Reconfigure,
    responses((status = 200, body = InstanceView), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn reconfigure_instance(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<Reconfigure>,
) -> Result<Json<InstanceView>, ApiError> {
    let mut row = manager::load(&state, caller.user_id, &id).await?;
    manager::validate_config(&req.config)?;
    row.config = req.config.clone();
    let (idc, cfg) = (id.clone(), req.config.to_string());
    state
        .db
        .call(move |c| {
            c.execute("UPDATE instances SET config = ?2 WHERE id = ?1", [idc, cfg])?;
            Ok(())
        })
        .await?;
    manager::restart(&state, &row, Restart::Reconfigure).await?;
    Ok(Json(
        manager::load(&state, caller.user_id, &id)
            .await?
            .view(&state),
    ))
}

/// Scales an instance by request: new bounds and/or size.
#[utoipa::path(put, path = "/v1/instances/{id}/scale", tag = "management",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Instance id")),
    request_body = ScaleRequest,
    responses((status = 200, body = InstanceView), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn scale_instance(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<ScaleRequest>,
) -> Result<Json<InstanceView>, ApiError> {
    let mut row = manager::load(&state, caller.user_id, &id).await?;
    let cur = row.view(&state).scale;
    let new = manager::apply_scale(&cur, &req)?;
    let most = catalog::find(&state.vnf_dir, true, &row.service).map_or(1, |s| s.max_replicas);
    if new.max > most {
        return Err(ApiError::Unprocessable(format!(
            "service {:?} scales to at most {most} worker(s) per instance; got max {}",
            row.service, new.max
        )));
    }
    row.scale_min = new.min;
    row.scale_max = new.max;
    let resize = new.replicas != row.replicas;
    row.replicas = new.replicas;
    let idc = id.clone();
    state
        .db
        .call(move |c| {
            c.execute(
                "UPDATE instances SET scale_min = ?2, scale_max = ?3, replicas = ?4 WHERE id = ?1",
                rusqlite::params![idc, new.min, new.max, new.replicas],
            )?;
            Ok(())
        })
        .await?;
    if resize {
        manager::restart(&state, &row, Restart::Scale).await?;
    }
    Ok(Json(
        manager::load(&state, caller.user_id, &id)
            .await?
            .view(&state),
    ))
}

/// Restarts an instance now (operator heal), then replays its log.
#[utoipa::path(post, path = "/v1/instances/{id}/heal", tag = "management",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Instance id")),
    responses((status = 200, body = InstanceView), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn heal_instance(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<InstanceView>, ApiError> {
    let row = manager::load(&state, caller.user_id, &id).await?;
    manager::restart(&state, &row, Restart::Heal).await?;
    Ok(Json(
        manager::load(&state, caller.user_id, &id)
            .await?
            .view(&state),
    ))
}

/// Removes an instance (and the tenant network with the last one).
#[utoipa::path(delete, path = "/v1/instances/{id}", tag = "management",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Instance id")),
    responses((status = 204), (status = 404, body = Problem)))]
async fn delete_instance(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let row = manager::load(&state, caller.user_id, &id).await?;
    manager::remove(&state, &row).await?;
    state.metrics.forget(&id);
    Ok(StatusCode::NO_CONTENT)
}

/// The answer to an operation the VNF applied.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OpResult {
    /// The VNF's result.
    #[schema(value_type = Object)]
    pub result: Value,
}

/// Runs an operation of the instance's service (see the catalog). While
/// the instance is unavailable, mutating operations are logged and
/// answered 202 with a request id to poll. On an available instance a
/// burst waits its turn (16 operations at a time reach the VNF); one that
/// gets no turn within 10 s is answered 503 with Retry-After, unapplied.
#[utoipa::path(post, path = "/v1/instances/{id}/ops/{op}", tag = "operations",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Instance id"), ("op" = String, Path, description = "Operation name")),
    request_body(content = Object, description = "The operation's parameters (may be empty)"),
    responses((status = 200, body = OpResult), (status = 202, body = RequestStatus),
              (status = 404, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
async fn operation(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, op)): ApiPath<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|r| match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(r.body_text()),
        _ => ApiError::BadRequest(r.body_text()),
    })?;
    // An empty body means no parameters, so `curl -X POST` works for ops
    // like `list`; a non-empty one must be JSON.
    let args = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        if let Some(ct) = headers.get(header::CONTENT_TYPE) {
            if !ct.to_str().unwrap_or("").starts_with("application/json") {
                return Err(ApiError::UnsupportedMediaType(
                    "expected a body with Content-Type: application/json".into(),
                ));
            }
        }
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))?
    };
    match broker::submit(&state, caller.user_id, &id, &op, args).await? {
        Outcome::Done(result) => Ok(Json(OpResult { result }).into_response()),
        Outcome::Scheduled(r) => {
            let location = HeaderValue::from_str(&format!("/v1/requests/{}", r.id))
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            Ok((
                StatusCode::ACCEPTED,
                [(header::LOCATION, location)],
                Json(r),
            )
                .into_response())
        }
    }
}

/// A logged request and, once replayed, its outcome.
#[utoipa::path(get, path = "/v1/requests/{id}", tag = "operations",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Request id")),
    responses((status = 200, body = RequestStatus), (status = 404, body = Problem)))]
async fn get_request(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RequestStatus>, ApiError> {
    Ok(Json(scheduler::get(&state, caller.user_id, &id).await?))
}

/// What the Monitor last measured of an instance.
#[utoipa::path(get, path = "/v1/instances/{id}/metrics", tag = "instances",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Instance id")),
    responses((status = 200, body = InstanceMetrics), (status = 404, body = Problem)))]
async fn instance_metrics(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<InstanceMetrics>, ApiError> {
    manager::load(&state, caller.user_id, &id).await?;
    Ok(Json(state.metrics.instance(&id).unwrap_or_default()))
}

/// Server-sent events of an instance: `vnf` events from its control socket
/// (state changes, decisions, deliveries) and `lifecycle` events from the
/// daemon (unavailable, available, removed).
#[utoipa::path(get, path = "/v1/instances/{id}/events", tag = "instances",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Instance id")),
    responses((status = 200, description = "An event stream", content_type = "text/event-stream", body = String),
              (status = 404, body = Problem)))]
async fn events(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let row = manager::load(&state, caller.user_id, &id).await?;
    let rt = state.registry.insert(&row.id, false);
    let (tx, rx) = mpsc::channel::<Event>(256);

    let mut lifecycle = rt.lifecycle.subscribe();
    let ltx = tx.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                ev = lifecycle.recv() => match ev {
                    Ok(v) => {
                        let gone = v["lifecycle"] == "removed";
                        let e = Event::default().event("lifecycle").data(v.to_string());
                        if ltx.send(e).await.is_err() || gone {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                },
                _ = ltx.closed() => return,
            }
        }
    });

    // The daemon's own member of a sequencer or consensus instance: its
    // deliveries and decisions are this stream's `vnf` events. Started now,
    // so that everything sent after the response is seen.
    if matches!(row.service.as_str(), "sequencer" | "consensus") && rt.is_available() {
        let mut events = rt.events.subscribe();
        if let Err(e) = crate::services::gateway(&state, &row).await {
            tracing::warn!(instance = %row.id, error = ?e, "cannot start the gateway member");
        }
        let etx = tx.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    ev = events.recv() => match ev {
                        Ok(v) => {
                            let e = Event::default().event("vnf").data(v.to_string());
                            if etx.send(e).await.is_err() {
                                return;
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => return,
                    },
                    _ = etx.closed() => return,
                }
            }
        });
    }
    let control =
        catalog::find(&state.vnf_dir, true, &row.service).is_some_and(|s| s.control_socket);
    if control {
        let path = broker::control_path(&state, &row.id);
        fn subscribe(path: &std::path::Path) -> Option<ControlClient> {
            let mut c = ControlClient::connect(path).ok()?;
            c.subscribe().ok()?;
            Some(c)
        }
        // Subscribed before the response starts, so that every event the
        // VNF publishes after the client sees the response reaches it.
        let p = path.clone();
        let first = tokio::task::spawn_blocking(move || subscribe(&p))
            .await
            .ok()
            .flatten();
        let (registry, iid) = (state.registry.clone(), row.id.clone());
        // The control client blocks; one thread per stream, which lives as
        // long as the HTTP client listens (checked every 500 ms) and the
        // instance exists. It resubscribes after a VNF restart.
        tokio::task::spawn_blocking(move || {
            let mut next = first;
            while !tx.is_closed() && registry.get(&iid).is_some() {
                let Some(mut client) = next.take().or_else(|| subscribe(&path)) else {
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                };
                loop {
                    match client.next_event(Duration::from_millis(500)) {
                        Ok(Some(ev)) => {
                            let e = Event::default().event("vnf").data(ev.to_string());
                            if tx.blocking_send(e).is_err() {
                                return;
                            }
                        }
                        Ok(None) if tx.is_closed() || registry.get(&iid).is_none() => return,
                        Ok(None) => {}
                        Err(_) => break,
                    }
                }
            }
        });
    }
    let stream = futures_util::StreamExt::map(ReceiverStream::new(rx), Ok);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(10))))
}

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Documents the error answers every handler shares, which the per-handler
/// annotations leave out: the problem documents of the extractors (a
/// malformed, oversized or non-JSON body; a missing or expired token; a
/// path parameter that is not UTF-8) and of restarting a VNF. It also
/// gives every error answer its real media type, `application/problem+json`.
struct ProblemResponses;

impl ProblemResponses {
    fn problem(description: &str) -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
        utoipa::openapi::ResponseBuilder::new()
            .description(description)
            .content(
                "application/problem+json",
                utoipa::openapi::Content::new(Some(utoipa::openapi::Ref::from_schema_name(
                    "Problem",
                ))),
            )
            .into()
    }

    fn operation(path: &str, method: &str, op: &mut utoipa::openapi::path::Operation) {
        let mut add: Vec<(&str, &str)> = Vec::new();
        if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
            add.push(("401", "No bearer token, or an expired or unknown one"));
        }
        if path.contains('{') {
            add.push(("400", "A path parameter is malformed"));
        }
        if op.request_body.is_some() {
            add.extend([
                ("400", "The body is not JSON"),
                ("413", "The body is larger than max_body_bytes"),
                ("415", "The body is not application/json"),
                ("422", "The body is JSON of the wrong shape"),
            ]);
        }
        // Lifecycle changes restart VNFs: another restart may be under way,
        // and the VNF may fail to come back.
        let restarts = path.starts_with("/v1/instances/{id}")
            && matches!(method, "patch" | "put" | "post")
            && !path.contains("/ops/");
        if restarts {
            add.extend([
                ("409", "The instance is being restarted"),
                ("502", "The VNF failed to restart"),
                ("503", "The VNF is unavailable"),
            ]);
        }
        let responses = &mut op.responses.responses;
        for (code, description) in add {
            responses
                .entry(code.to_owned())
                .or_insert_with(|| Self::problem(description));
        }
        for (code, resp) in responses.iter_mut() {
            let is_error = code.starts_with('4') || code.starts_with('5');
            let description = match &*resp {
                utoipa::openapi::RefOr::T(r) if is_error => r.description.clone(),
                _ => continue,
            };
            *resp = Self::problem(&description);
        }
    }
}

impl Modify for ProblemResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let ops = [
                ("get", &mut item.get),
                ("put", &mut item.put),
                ("post", &mut item.post),
                ("delete", &mut item.delete),
                ("patch", &mut item.patch),
            ];
            for (method, op) in ops {
                if let Some(op) = op {
                    Self::operation(path, method, op);
                }
            }
        }
    }
}

/// The OpenAPI document, generated from the handlers above.
#[derive(OpenApi)]
#[openapi(
    info(title = "NFVinc netServices API", description = "Discovery, sessions, instances, operations, events and management of in-network distributed-systems services."),
    paths(healthz, metrics, openapi, list_services, get_service, create_session, delete_session,
          list_instances, create_instance, get_instance, reconfigure_instance, scale_instance,
          heal_instance, delete_instance, operation, get_request, instance_metrics, events),
    components(schemas(Problem, Catalog, Limits, Service, SessionRequest, SessionResponse,
                       InstanceList, InstanceView, Created, CreateInstance, ScaleRequest, Reconfigure,
                       OpResult, RequestStatus, InstanceMetrics, crate::services::RoleEndpoint)),
    modifiers(&BearerScheme, &ProblemResponses)
)]
pub struct ApiDoc;
