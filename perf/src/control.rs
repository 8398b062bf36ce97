//! The control-plane scenario: `nfvinc serve` under its users.
//!
//! Starts its own daemon (a fresh data directory, a user and an API key;
//! each tenant in its own namespace when root, on loopback otherwise) and
//! measures three things on the failure-detector service:
//!
//! * `connect_ns`: from the create request to a usable instance, that is
//!   until the application's first request over the instance's direct
//!   channel is answered; instances are created, used and removed one
//!   after another (`--connects` of them, within a time bound) while the
//!   tenant holds another instance. `first_connect_ns` is the tenant's
//!   first, which also creates its virtual network.
//! * `rest_ops_per_s` and `latency_ns`: `--clients` concurrent clients,
//!   each with its own session and HTTP connection, run the `query`
//!   operation of one instance over REST in a closed loop for `--duration`
//!   seconds. They are tasks of one async runtime in this process, so that
//!   the load generator takes less of the machine than the daemon does.
//! * `direct_latency_ns`: the same query over the direct channel (the
//!   authenticated UDP messages of `libnfvinc::fd`), one client in a closed
//!   loop: what an application saves by taking the direct channel.
//!
//! The JSON report is one object with these fields, each latency as
//! `{count, mean, p50, p90, p99, p999, max}` in nanoseconds, failures by
//! kind (`rest_errors_by_kind`, `connect_errors_by_kind`), and the CPU
//! time per REST operation of the daemon, the VNF and the clients
//! (`rest_cpu_ns_per_op`), the figure to compare on a shared machine.

use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use hdrhistogram::Histogram;
use libnfvinc::direct::DirectAuth;
use libnfvinc::fd::FdClient;
use libnfvinc::rest::local::{LocalDaemon, LocalDaemonConfig};
use libnfvinc::rest::{Client, Instance};
use serde_json::{Value, json};
use vnf_fd::wire::Target;
use vnf_fd::{ProcessId, ProcessSpec};

/// Options of `nfvinc-perf control`.
#[derive(Debug, Clone, Args)]
pub struct ControlArgs {
    /// Concurrent REST clients, each with its own session.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub clients: u32,
    /// Seconds of REST load (and of direct-channel load).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub duration: u64,
    /// Instances to create, use and remove for `connect_ns` (at most 60 s
    /// in all).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub connects: u32,
    /// The `nfvinc` binary (default: beside nfvinc-perf).
    #[arg(long)]
    pub nfvinc: Option<PathBuf>,
    /// Run the daemon's instances on loopback, without per-tenant
    /// namespaces (the default when not root).
    #[arg(long)]
    pub no_isolation: bool,
    /// Write the JSON report here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Keep the daemon's data directory (its log is there) and say where.
    #[arg(long)]
    pub keep_data: bool,
}

/// Latency percentiles of a histogram, nanoseconds.
fn summary(h: &Histogram<u64>) -> Value {
    json!({
        "count": h.len(),
        "mean": h.mean().round() as u64,
        "p50": h.value_at_quantile(0.50),
        "p90": h.value_at_quantile(0.90),
        "p99": h.value_at_quantile(0.99),
        "p999": h.value_at_quantile(0.999),
        "max": h.max(),
    })
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 100 s at 3 significant digits; values outside are clamped.
    Histogram::new_with_bounds(1_000, 100_000_000_000, 3).expect("valid histogram bounds")
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record(d.as_nanos().min(u128::from(u64::MAX)) as u64);
}

/// What kind of failure an error is, for counting: the HTTP status and
/// problem title of an API error (`503 Service Unavailable`), else the
/// client-side kind (`HTTP timeout`, `HTTP connect`, ...).
fn error_kind(e: &libnfvinc::rest::Error) -> String {
    use libnfvinc::rest::Error;
    match e {
        Error::Api(p) => format!("{} {}", p.status, p.title),
        Error::Http(h) => http_error_kind(h),
        Error::Decode(_) => "unexpected answer".into(),
        Error::Timeout(_) => "timed out".into(),
    }
}

/// The kind of a failure below HTTP answers.
fn http_error_kind(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "HTTP timeout"
    } else if e.is_connect() {
        "HTTP connect"
    } else if e.is_request() {
        "HTTP request"
    } else if e.is_body() || e.is_decode() {
        "HTTP body"
    } else {
        "HTTP other"
    }
    .into()
}

/// Failures counted by kind, with the first message of each kind (the
/// figures of a run with errors are not those of a healthy daemon, so the
/// report says which errors there were, not only how many).
#[derive(Debug, Default)]
struct Errors {
    by_kind: std::collections::BTreeMap<String, (u64, String)>,
}

impl Errors {
    fn add(&mut self, kind: String, message: impl FnOnce() -> String) {
        self.by_kind.entry(kind).or_insert_with(|| (0, message())).0 += 1;
    }

    fn merge(&mut self, other: Errors) {
        for (kind, (n, first)) in other.by_kind {
            self.by_kind.entry(kind).or_insert((0, first)).0 += n;
        }
    }

    fn total(&self) -> u64 {
        self.by_kind.values().map(|(n, _)| n).sum()
    }

    /// `{kind: {count, first}}`.
    fn json(&self) -> Value {
        Value::Object(
            self.by_kind
                .iter()
                .map(|(k, (n, first))| (k.clone(), json!({"count": n, "first": first})))
                .collect(),
        )
    }
}

/// CPU time (user and system) a process has used so far, from
/// `/proc/<pid>/stat` (clock-tick resolution); `None` once it is gone.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name, which may hold spaces;
    // utime and stime are fields 14 and 15 of the line, 11 and 12 here.
    let f: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_nanos(
        ticks.saturating_mul(1_000_000_000) / hz,
    ))
}

/// CPU time per operation of the processes named in `before` over a phase
/// of `ops` operations, in nanoseconds by role: what each costs whatever
/// else the (shared) machine runs meanwhile.
fn cpu_per_op(before: &[(&str, u32, Option<Duration>)], ops: u64) -> Value {
    Value::Object(
        before
            .iter()
            .filter_map(|&(role, pid, t0)| {
                let used = cpu_time(pid)?.checked_sub(t0?)?;
                let per_op = used.as_nanos() / u128::from(ops.max(1));
                Some((role.to_owned(), json!(per_op as u64)))
            })
            .collect(),
    )
}

/// Raises this process's soft limit on open files to the hard limit.
fn raise_open_files_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into, and setrlimit reads, a struct we own;
    // raising the soft limit up to the hard one needs no privilege.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The scenario's own daemon: a fresh data directory and a user `perf`.
fn start_daemon(nfvinc: &Path, isolation: bool, keep: bool) -> anyhow::Result<LocalDaemon> {
    let cfg = LocalDaemonConfig {
        nfvinc: nfvinc.to_owned(),
        data: std::env::temp_dir().join(format!("nfvinc-perf-control-{}", std::process::id())),
        user: "perf".into(),
        isolation,
        keep,
        env: vec![("RUST_LOG".into(), "info".into())],
    };
    Ok(LocalDaemon::start(&cfg)?)
}

/// The direct channel of a freshly created instance.
fn direct(i: &Instance) -> anyhow::Result<FdClient> {
    let at: SocketAddrV4 = format!("{}:{}", i.direct.addr, i.direct.port).parse()?;
    let mut c = FdClient::connect(at)?;
    if let Some(auth) = DirectAuth::of(&i.direct).transpose()? {
        c = c.with_auth(auth);
    }
    Ok(c)
}

/// One REST client: the `query` operation of process 1 in a closed loop
/// until `end`, over its own connection with its session's `token`.
async fn rest_client(
    url: String,
    token: String,
    end: Instant,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<(Histogram<u64>, Errors)> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let (mut h, mut errors) = (histogram(), Errors::default());
    let body = json!({"process": 1}).to_string();
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let resp = http
            .post(&url)
            .bearer_auth(&token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await;
        let (status, bytes) = match resp {
            Ok(r) => {
                let status = r.status();
                match r.bytes().await {
                    Ok(b) => (status, b),
                    Err(e) => {
                        errors.add(http_error_kind(&e), || e.to_string());
                        continue;
                    }
                }
            }
            Err(e) => {
                errors.add(http_error_kind(&e), || e.to_string());
                continue;
            }
        };
        if status == reqwest::StatusCode::OK {
            record(&mut h, t.elapsed());
            continue;
        }
        // A read is never logged for later (202), and anything else is a
        // problem document: counted by status and title.
        let (kind, detail) = match serde_json::from_slice::<libnfvinc::rest::Problem>(&bytes) {
            Ok(p) => (format!("{} {}", p.status, p.title), p.detail),
            Err(_) => (
                format!(
                    "{} {}",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("")
                ),
                String::from_utf8_lossy(&bytes).into_owned(),
            ),
        };
        errors.add(kind, || detail);
    }
    Ok((h, errors))
}

/// Runs the scenario and returns its report.
pub fn run(a: &ControlArgs, stop: &Arc<AtomicBool>) -> anyhow::Result<Value> {
    let nfvinc = match &a.nfvinc {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("nfvinc"),
    };
    if !nfvinc.is_file() {
        bail!(
            "{} not found: build it (cargo build --release -p control -p vnf-fd) or pass --nfvinc",
            nfvinc.display()
        );
    }
    let isolation = is_root() && !a.no_isolation;
    // Each client holds a connection: up to --clients sockets here.
    raise_open_files_limit();
    let daemon = start_daemon(&nfvinc, isolation, a.keep_data)?;
    let (url, key) = (daemon.url().to_owned(), daemon.api_key().to_owned());
    let client = Client::connect(&url, &key)?;

    // The instance under load, monitoring one process. It is the tenant's
    // first, so its connect time includes creating the tenant's network.
    let t = Instant::now();
    let inst = client.connect_service("fd")?;
    let mut d = direct(&inst)?;
    d.query(Target::All)
        .with_context(|| format!("first direct request to {}", inst.id))?;
    let first_connect = t.elapsed();
    d.add(ProcessSpec::new(ProcessId(1)))?;

    // Connect: create, first direct answer, remove; one after another,
    // in the tenant's existing network (as an application that already
    // holds an instance sees it).
    let mut connect = histogram();
    let mut connect_errors = Errors::default();
    let bound = Instant::now() + Duration::from_secs(60);
    for n in 0..a.connects {
        if stop.load(Ordering::Relaxed) || Instant::now() > bound {
            tracing::warn!("connect phase stopped after {n} instances");
            break;
        }
        let t = Instant::now();
        let i = match client.connect_service("fd") {
            Ok(i) => i,
            Err(e) => {
                // Counted and reported, not fatal: the other figures stand.
                connect_errors.add(error_kind(&e), || e.to_string());
                continue;
            }
        };
        // An instance whose direct channel does not answer was not
        // usable: counted with the failed creates.
        match direct(&i).and_then(|mut d| Ok(d.query(Target::All)?)) {
            Ok(_) => record(&mut connect, t.elapsed()),
            Err(e) => connect_errors.add("direct channel".into(), || format!("{}: {e:#}", i.id)),
        }
        client.remove(&i.id)?;
    }
    tracing::info!(
        "connect: first {:.1} ms; then {} instances, p50 {:.1} ms, p99 {:.1} ms",
        first_connect.as_secs_f64() * 1e3,
        connect.len(),
        connect.value_at_quantile(0.5) as f64 / 1e6,
        connect.value_at_quantile(0.99) as f64 / 1e6
    );

    // REST: --clients sessions in a closed loop each.
    let sessions: Vec<Client> = (0..a.clients)
        .map(|_| Client::connect(&url, &key))
        .collect::<Result<_, _>>()
        .context("opening the clients' sessions")?;
    let cpu_before: Vec<(&str, u32, Option<Duration>)> = [
        ("daemon", daemon.pid()),
        ("vnf", inst.pid.unwrap_or(0)),
        ("clients", std::process::id()),
    ]
    .into_iter()
    .map(|(role, pid)| (role, pid, cpu_time(pid)))
    .collect();
    let go = Instant::now();
    let end = go + Duration::from_secs(a.duration);
    // The clients are tasks of one runtime, each with its session and its
    // own HTTP connection: a thread and a blocking client's runtime per
    // client cost more CPU than the daemon serving them, on the same cores.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the clients' runtime")?;
    let ops_url = format!(
        "{}/v1/instances/{}/ops/query",
        url.trim_end_matches('/'),
        inst.id
    );
    let (rest, rest_errors) = runtime.block_on(async {
        let tasks: Vec<_> = sessions
            .iter()
            .map(|c| {
                let (url, token, stop) = (ops_url.clone(), c.token().to_owned(), stop.clone());
                tokio::spawn(async move { rest_client(url, token, end, stop).await })
            })
            .collect();
        let (mut rest, mut errors) = (histogram(), Errors::default());
        for t in tasks {
            let (h, e) = t.await.context("a REST client failed")??;
            rest.add(&h).context("merging histograms")?;
            errors.merge(e);
        }
        anyhow::Ok((rest, errors))
    })?;
    drop(runtime);
    for (kind, (n, first)) in &rest_errors.by_kind {
        tracing::warn!("REST query: {n} errors {kind} (first: {first})");
    }
    let rest_s = go.elapsed().as_secs_f64();
    let rest_cpu = cpu_per_op(&cpu_before, rest.len());

    // Direct: the same query, one client in a closed loop.
    let mut direct_h = histogram();
    let end = Instant::now() + Duration::from_secs(a.duration.min(5));
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        d.query(Target::One(ProcessId(1)))?;
        record(&mut direct_h, t.elapsed());
    }
    let _ = client.remove(&inst.id);
    drop(daemon);

    Ok(json!({
        "scenario": "control",
        "service": "fd",
        "operation": "query",
        "isolation": isolation,
        "clients": a.clients,
        "duration_s": rest_s,
        "first_connect_ns": first_connect.as_nanos() as u64,
        "connect_ns": summary(&connect),
        "connect_errors": connect_errors.total(),
        "connect_errors_by_kind": connect_errors.json(),
        "rest_ops": rest.len(),
        "rest_ops_per_s": rest.len() as f64 / rest_s,
        // Operations not answered 200, by kind (status and problem title,
        // or the client-side failure), each with its first message.
        "rest_errors": rest_errors.total(),
        "rest_errors_by_kind": rest_errors.json(),
        "latency_ns": summary(&rest),
        // CPU time per REST operation of the daemon, the instance's VNF
        // and this process's clients: comparable across runs on a busy
        // machine, where rates and latencies are not.
        "rest_cpu_ns_per_op": rest_cpu,
        "direct_latency_ns": summary(&direct_h),
    }))
}

/// Operations that failed in the run (REST and connects): a run with any
/// did not measure a healthy daemon, and says so.
pub fn errors(r: &Value) -> u64 {
    r["rest_errors"].as_u64().unwrap_or(0) + r["connect_errors"].as_u64().unwrap_or(0)
}

/// The report as a few lines for a terminal.
pub fn table(r: &Value) -> String {
    let ms = |v: &Value| v.as_f64().unwrap_or(0.0) / 1e6;
    let mut s = format!(
        "connect (create -> first direct answer): {} instances, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} errors)\n\
         REST query at {} clients: {:.0} ops/s, p50 {:.2} ms, p99 {:.2} ms ({} errors); CPU per op: daemon {:.0} µs, VNF {:.0} µs, clients {:.0} µs\n\
         direct query, 1 client: p50 {:.1} µs, p99 {:.1} µs\n",
        r["connect_ns"]["count"],
        ms(&r["connect_ns"]["p50"]),
        ms(&r["connect_ns"]["p99"]),
        ms(&r["connect_ns"]["max"]),
        r["connect_errors"],
        r["clients"],
        r["rest_ops_per_s"].as_f64().unwrap_or(0.0),
        ms(&r["latency_ns"]["p50"]),
        ms(&r["latency_ns"]["p99"]),
        r["rest_errors"],
        r["rest_cpu_ns_per_op"]["daemon"].as_f64().unwrap_or(0.0) / 1e3,
        r["rest_cpu_ns_per_op"]["vnf"].as_f64().unwrap_or(0.0) / 1e3,
        r["rest_cpu_ns_per_op"]["clients"].as_f64().unwrap_or(0.0) / 1e3,
        r["direct_latency_ns"]["p50"].as_f64().unwrap_or(0.0) / 1e3,
        r["direct_latency_ns"]["p99"].as_f64().unwrap_or(0.0) / 1e3,
    );
    for (phase, field) in [
        ("connect", "connect_errors_by_kind"),
        ("REST query", "rest_errors_by_kind"),
    ] {
        if let Some(kinds) = r[field].as_object() {
            for (kind, v) in kinds {
                s += &format!(
                    "ERRORS in {phase}: {} x {kind} (first: {})\n",
                    v["count"],
                    v["first"].as_str().unwrap_or("")
                );
            }
        }
    }
    if errors(r) > 0 {
        s += "THIS RUN HAD ERRORS: its figures are not those of a healthy daemon\n";
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_counted_by_kind_and_a_run_with_any_says_so() {
        let problem = |status: u16, title: &str| {
            libnfvinc::rest::Error::Api(libnfvinc::rest::Problem {
                kind: "about:blank".into(),
                title: title.into(),
                status,
                detail: "details".into(),
            })
        };
        let (mut a, mut b) = (Errors::default(), Errors::default());
        for e in [
            problem(503, "Service Unavailable"),
            problem(502, "Bad Gateway"),
        ] {
            a.add(error_kind(&e), || e.to_string());
        }
        let e = problem(503, "Service Unavailable");
        b.add(error_kind(&e), || "second".into());
        a.merge(b);
        assert_eq!(a.total(), 3);
        let kinds = a.json();
        assert_eq!(kinds["503 Service Unavailable"]["count"], 2);
        assert_eq!(kinds["502 Bad Gateway"]["count"], 1);
        assert!(
            kinds["503 Service Unavailable"]["first"]
                .as_str()
                .unwrap()
                .contains("details"),
            "{kinds}"
        );

        let report = |rest: &Errors| {
            json!({
                "clients": 100, "connect_errors": 0, "rest_errors": rest.total(),
                "rest_errors_by_kind": rest.json(), "connect_errors_by_kind": {},
            })
        };
        let bad = report(&a);
        assert_eq!(errors(&bad), 3);
        let t = table(&bad);
        assert!(
            t.contains("ERRORS in REST query: 2 x 503 Service Unavailable"),
            "{t}"
        );
        assert!(t.contains("THIS RUN HAD ERRORS"), "{t}");
        let clean = report(&Errors::default());
        assert_eq!(errors(&clean), 0);
        assert!(!table(&clean).contains("ERRORS"));
    }
}
