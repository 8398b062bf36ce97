//! A typed client for the netServices REST API of `nfvinc serve`.
//!
//! Blocking (reqwest's blocking client) on purpose: the REST path is the
//! low-volume one (discovery, sessions, lifecycle, occasional operations),
//! the applications and tools that use it are mostly synchronous, and a
//! blocking client spares them an async runtime. It runs its own small
//! runtime thread inside, so it must not be called from within a tokio
//! runtime (use `spawn_blocking` there). Event streams are read on a thread
//! of their own and handed over through a channel, so that a caller can wait
//! for the next event with a timeout.
//!
//! ```no_run
//! use libnfvinc::rest::Client;
//! let c = Client::connect("http://127.0.0.1:8470", "nfvk_…")?;
//! let fd = c.connect_service("fd")?;
//! c.op(&fd.id, "add", serde_json::json!({"process": 7}))?;
//! # Ok::<(), libnfvinc::rest::Error>(())
//! ```

pub mod local;

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client as Http, RequestBuilder, Response};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// An RFC 9457 problem document, as the server sends for every error.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Problem {
    /// The kind of problem (`/problems/not-found`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What precisely went wrong.
    pub detail: String,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with a problem document.
    #[error("{} {}: {}", .0.status, .0.title, .0.detail)]
    Api(Problem),
    /// The server could not be reached, or the connection failed.
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    /// The answer was not what this client expects.
    #[error("unexpected answer: {0}")]
    Decode(String),
    /// A wait ran out of time.
    #[error("timed out: {0}")]
    Timeout(String),
}

impl Error {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api(p) => Some(p.status),
            _ => None,
        }
    }
}

/// Scaling bounds and size of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct Scale {
    /// Fewest workers.
    pub min: u32,
    /// Most workers.
    pub max: u32,
    /// Workers now.
    pub replicas: u32,
}

/// A change of scaling: any of the three.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ScaleRequest {
    /// New lower bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<u32>,
    /// New upper bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    /// New size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
}

/// Where an instance's direct channel is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct DirectEndpoint {
    /// IPv4 address in the tenant's network.
    pub addr: String,
    /// UDP port.
    pub port: u16,
    /// The session id direct-channel messages carry, with the key below.
    #[serde(default)]
    pub session_id: Option<u64>,
    /// Per-session key (hex), only in the answer that created the instance.
    pub session_key: Option<String>,
    /// Where applications on this host bind their end of the channel so
    /// that the instance can reach them (the host end of the tenant's
    /// link); empty from daemons that do not say.
    #[serde(default)]
    pub client_addr: String,
    /// A sequencer's group id.
    #[serde(default)]
    pub group: Option<u64>,
    /// Each process of the channel (sequencer; consensus coordinators,
    /// acceptors and learners).
    #[serde(default)]
    pub roles: Vec<RoleEndpoint>,
}

/// One process of an instance's direct channel.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct RoleEndpoint {
    /// `sequencer`, `coordinator`, `acceptor` or `learner`.
    pub role: String,
    /// Its position among its role's processes.
    pub index: u16,
    /// IPv4 address.
    pub addr: String,
    /// UDP port.
    pub port: u16,
}

impl DirectEndpoint {
    /// The UDP addresses of the processes of `role`, in index order.
    pub fn role_addrs(&self, role: &str) -> Result<Vec<std::net::SocketAddrV4>, Error> {
        let mut v: Vec<&RoleEndpoint> = self.roles.iter().filter(|r| r.role == role).collect();
        v.sort_by_key(|r| r.index);
        v.into_iter()
            .map(|r| {
                format!("{}:{}", r.addr, r.port)
                    .parse()
                    .map_err(|_| Error::Decode(format!("bad {role} address {}:{}", r.addr, r.port)))
            })
            .collect()
    }

    /// The address to bind a local socket to (port 0: any).
    pub fn client_bind(&self) -> Result<std::net::SocketAddrV4, Error> {
        let ip = if self.client_addr.is_empty() {
            &self.addr
        } else {
            &self.client_addr
        };
        format!("{ip}:0")
            .parse()
            .map_err(|_| Error::Decode(format!("bad client address {ip:?}")))
    }
}

/// An instance.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Instance {
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
    /// Whether operations reach the VNF now.
    pub available: bool,
    /// REST handle (a path on the server).
    pub rest: String,
    /// The direct channel.
    pub direct: DirectEndpoint,
    /// Scaling.
    pub scale: Scale,
    /// VNF options.
    pub config: Value,
    /// Restarts so far.
    pub restarts: u32,
    /// Process id of the VNF.
    pub pid: Option<u32>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Milliseconds from the create request to a ready VNF (create only).
    #[serde(default)]
    pub startup_ms: Option<f64>,
}

/// What to create.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CreateInstance {
    /// Service name.
    pub service: String,
    /// Version; the newest when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// A name of the user's choosing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// VNF options (`poll`, `burst`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<Value>,
    /// Initial scaling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale: Option<ScaleRequest>,
}

/// A request logged by the Scheduler, and its outcome once replayed.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RequestStatus {
    /// Request id.
    pub id: String,
    /// Instance id.
    pub instance: String,
    /// Operation.
    pub op: String,
    /// `pending`, `in_flight`, `done` or `failed`.
    pub status: String,
    /// The VNF's result once done.
    pub result: Option<Value>,
    /// Why it failed.
    pub error: Option<String>,
    /// When it was logged, Unix milliseconds.
    pub created_at_ms: i64,
    /// When it completed.
    pub completed_at_ms: Option<i64>,
}

impl RequestStatus {
    /// Whether it has an outcome.
    pub fn is_complete(&self) -> bool {
        self.status == "done" || self.status == "failed"
    }
}

/// What became of an operation.
#[derive(Debug, Clone)]
pub enum OpOutcome {
    /// Applied; the VNF's result.
    Done(Value),
    /// The instance is unavailable: logged, to be replayed; poll it.
    Scheduled(RequestStatus),
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `vnf` (from the VNF) or `lifecycle` (from the daemon).
    pub kind: String,
    /// Its JSON data.
    pub data: Value,
}

/// An instance's event stream.
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::Receiver<Result<Event, String>>,
}

impl EventStream {
    /// The next event, waiting at most `timeout`; `Ok(None)` on timeout.
    pub fn next_timeout(&self, timeout: Duration) -> Result<Option<Event>, Error> {
        match self.rx.recv_timeout(timeout) {
            Ok(Ok(e)) => Ok(Some(e)),
            Ok(Err(e)) => Err(Error::Decode(e)),
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err(Error::Decode("event stream ended".into()))
            }
        }
    }
}

/// Options for a [`Client`] before it connects.
#[derive(Debug, Clone)]
pub struct Builder {
    url: String,
    root_cert_pem: Option<Vec<u8>>,
    timeout: Duration,
}

impl Builder {
    /// Trusts this PEM certificate (a private CA or a self-signed server).
    pub fn root_certificate_pem(mut self, pem: &[u8]) -> Self {
        self.root_cert_pem = Some(pem.to_vec());
        self
    }

    /// Per-request timeout (default 30 s; event streams have none).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    fn http(&self, timeout: Option<Duration>) -> Result<Http, Error> {
        let mut b = Http::builder().timeout(timeout);
        if let Some(pem) = &self.root_cert_pem {
            b = b.add_root_certificate(reqwest::Certificate::from_pem(pem)?);
        }
        Ok(b.build()?)
    }

    /// Opens a session with `api_key`.
    pub fn connect(self, api_key: &str) -> Result<Client, Error> {
        let http = self.http(Some(self.timeout))?;
        let streams = self.http(None)?;
        let base = self.url.trim_end_matches('/').to_owned();
        let resp = http
            .post(format!("{base}/v1/sessions"))
            .json(&json!({"api_key": api_key}))
            .send()?;
        let s: Value = decode(resp)?;
        let token = s["token"]
            .as_str()
            .ok_or_else(|| Error::Decode("session without a token".into()))?
            .to_owned();
        Ok(Client {
            http,
            streams,
            base,
            token,
            expires_at: s["expires_at"].as_i64().unwrap_or(0),
        })
    }
}

/// A session with an `nfvinc serve` daemon.
#[derive(Debug, Clone)]
pub struct Client {
    http: Http,
    streams: Http,
    base: String,
    token: String,
    expires_at: i64,
}

fn decode<T: DeserializeOwned>(resp: Response) -> Result<T, Error> {
    let status = resp.status();
    let bytes = resp.bytes()?;
    if status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|e| Error::Decode(e.to_string()));
    }
    Err(match serde_json::from_slice::<Problem>(&bytes) {
        Ok(p) => Error::Api(p),
        Err(_) => Error::Api(Problem {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("error").into(),
            status: status.as_u16(),
            detail: String::from_utf8_lossy(&bytes).into_owned(),
        }),
    })
}

impl Client {
    /// Options for connecting to `url` (e.g. `https://host:8470`).
    pub fn builder(url: &str) -> Builder {
        Builder {
            url: url.to_owned(),
            root_cert_pem: None,
            timeout: Duration::from_secs(30),
        }
    }

    /// Opens a session at `url` with `api_key`.
    pub fn connect(url: &str, api_key: &str) -> Result<Self, Error> {
        Self::builder(url).connect(api_key)
    }

    /// The bearer token of this session.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// When the session expires, Unix seconds.
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }

    fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// The discovery catalog (`services` and `limits`).
    pub fn discover(&self) -> Result<Value, Error> {
        decode(self.req(Method::GET, "/v1/services").send()?)
    }

    /// Creates an instance.
    pub fn create_instance(&self, req: &CreateInstance) -> Result<Instance, Error> {
        decode(self.req(Method::POST, "/v1/instances").json(req).send()?)
    }

    /// Connects to `service`: a new instance with default options.
    pub fn connect_service(&self, service: &str) -> Result<Instance, Error> {
        self.create_instance(&CreateInstance {
            service: service.into(),
            ..CreateInstance::default()
        })
    }

    /// This tenant's instances.
    pub fn instances(&self) -> Result<Vec<Instance>, Error> {
        #[derive(Deserialize)]
        struct L {
            instances: Vec<Instance>,
        }
        Ok(decode::<L>(self.req(Method::GET, "/v1/instances").send()?)?.instances)
    }

    /// One instance.
    pub fn instance(&self, id: &str) -> Result<Instance, Error> {
        decode(
            self.req(Method::GET, &format!("/v1/instances/{id}"))
                .send()?,
        )
    }

    /// Removes an instance.
    pub fn remove(&self, id: &str) -> Result<(), Error> {
        let resp = self
            .req(Method::DELETE, &format!("/v1/instances/{id}"))
            .send()?;
        if resp.status() == StatusCode::NO_CONTENT {
            return Ok(());
        }
        decode::<Value>(resp).map(drop)
    }

    /// Runs an operation; see [`OpOutcome`].
    pub fn op(&self, id: &str, op: &str, args: Value) -> Result<OpOutcome, Error> {
        let resp = self
            .req(Method::POST, &format!("/v1/instances/{id}/ops/{op}"))
            .json(&args)
            .send()?;
        if resp.status() == StatusCode::ACCEPTED {
            return Ok(OpOutcome::Scheduled(decode(resp)?));
        }
        let v: Value = decode(resp)?;
        Ok(OpOutcome::Done(v["result"].clone()))
    }

    /// Runs an operation and, when it was scheduled (the instance was
    /// unavailable), waits up to `timeout` for its replayed outcome.
    pub fn op_wait(
        &self,
        id: &str,
        op: &str,
        args: Value,
        timeout: Duration,
    ) -> Result<Value, Error> {
        match self.op(id, op, args)? {
            OpOutcome::Done(v) => Ok(v),
            OpOutcome::Scheduled(r) => {
                let r = self.wait_request(&r.id, timeout)?;
                match (r.result, r.error) {
                    (Some(v), _) if r.status == "done" => Ok(v),
                    (_, e) => Err(Error::Api(Problem {
                        kind: "/problems/replay-failed".into(),
                        title: "Scheduled request failed".into(),
                        status: 502,
                        detail: e.unwrap_or_else(|| format!("request {} {}", r.id, r.status)),
                    })),
                }
            }
        }
    }

    /// A logged request.
    pub fn request(&self, id: &str) -> Result<RequestStatus, Error> {
        decode(
            self.req(Method::GET, &format!("/v1/requests/{id}"))
                .send()?,
        )
    }

    /// Polls a logged request until it has an outcome or `timeout` passes.
    pub fn wait_request(&self, id: &str, timeout: Duration) -> Result<RequestStatus, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.request(id)?;
            if r.is_complete() {
                return Ok(r);
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(format!("request {id} still {}", r.status)));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Scales an instance.
    pub fn scale(&self, id: &str, req: ScaleRequest) -> Result<Instance, Error> {
        decode(
            self.req(Method::PUT, &format!("/v1/instances/{id}/scale"))
                .json(&req)
                .send()?,
        )
    }

    /// Replaces an instance's VNF options (it restarts).
    pub fn reconfigure(&self, id: &str, config: Value) -> Result<Instance, Error> {
        decode(
            self.req(Method::PATCH, &format!("/v1/instances/{id}"))
                .json(&json!({"config": config}))
                .send()?,
        )
    }

    /// Restarts an instance now and replays its log.
    pub fn heal(&self, id: &str) -> Result<Instance, Error> {
        decode(
            self.req(Method::POST, &format!("/v1/instances/{id}/heal"))
                .send()?,
        )
    }

    /// What the Monitor last measured of an instance.
    pub fn instance_metrics(&self, id: &str) -> Result<Value, Error> {
        decode(
            self.req(Method::GET, &format!("/v1/instances/{id}/metrics"))
                .send()?,
        )
    }

    /// Subscribes to an instance's events.
    pub fn events(&self, id: &str) -> Result<EventStream, Error> {
        let resp = self
            .streams
            .get(format!("{}/v1/instances/{id}/events", self.base))
            .bearer_auth(&self.token)
            .send()?;
        if !resp.status().is_success() {
            return Err(decode::<Value>(resp).err().unwrap_or_else(|| {
                Error::Decode("event stream refused without a problem".into())
            }));
        }
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut kind = String::from("message");
            let mut data = String::new();
            for line in BufReader::new(resp).lines() {
                let Ok(line) = line else { return };
                if line.is_empty() {
                    if !data.is_empty() {
                        let ev = serde_json::from_str(&data)
                            .map(|data| Event {
                                kind: kind.clone(),
                                data,
                            })
                            .map_err(|e| format!("event data is not JSON: {e}"));
                        if tx.send(ev).is_err() {
                            return;
                        }
                    }
                    kind = "message".into();
                    data.clear();
                } else if let Some(k) = line.strip_prefix("event:") {
                    kind = k.trim().to_owned();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
        });
        Ok(EventStream { rx })
    }

    /// Ends the session on the server.
    pub fn close(self) -> Result<(), Error> {
        let resp = self.req(Method::DELETE, "/v1/sessions/current").send()?;
        if resp.status() == StatusCode::NO_CONTENT {
            return Ok(());
        }
        decode::<Value>(resp).map(drop)
    }
}
