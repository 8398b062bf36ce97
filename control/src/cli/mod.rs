//! The client commands of `nfvinc`: operators and users talk to a running
//! `nfvinc serve` through [`libnfvinc::rest`].
//!
//! The server and the credentials come from `--url` and `--api-key`, or
//! `NFVINC_URL` and `NFVINC_API_KEY`. Each command opens its own session
//! (one request) and closes it when done, so no token lies around on disk.
//! Output is a table for people, or JSON with `--json`; errors are the
//! server's problem documents, printed on one line with their status.

pub mod demo;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use libnfvinc::rest::{Client, CreateInstance, Instance, OpOutcome, ScaleRequest};
use serde_json::{Value, json};

/// Where the daemon is and who is asking.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Base URL of `nfvinc serve`.
    #[arg(
        long,
        global = true,
        env = "NFVINC_URL",
        default_value = "http://127.0.0.1:8470"
    )]
    pub url: String,
    /// API key (from `nfvinc user add NAME`).
    #[arg(long, global = true, env = "NFVINC_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// PEM certificate to trust for an HTTPS daemon (a private CA or a
    /// self-signed one).
    #[arg(long, global = true, env = "NFVINC_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The client commands.
#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// List the services of the catalog, their operations and limits.
    Services,
    /// Connect to a service: create an instance in your virtual network.
    Connect {
        /// Service name (see `nfvinc services`).
        service: String,
        /// A name of your choosing for the instance.
        #[arg(long)]
        name: Option<String>,
        /// Service version (the newest when absent).
        #[arg(long)]
        version: Option<String>,
        /// VNF options as a JSON object, e.g. '{"poll":"busy","burst":32}'.
        #[arg(long, value_name = "JSON")]
        options: Option<String>,
        /// Initial number of workers.
        #[arg(long)]
        replicas: Option<u32>,
    },
    /// List your instances.
    Instances,
    /// Show what the Monitor measured: of one instance, or of all yours.
    Metrics {
        /// Instance id (all instances when absent).
        id: Option<String>,
    },
    /// Scale an instance: new bounds and/or size.
    Scale {
        /// Instance id.
        id: String,
        /// Number of workers now.
        #[arg(long)]
        replicas: Option<u32>,
        /// Fewest workers (autoscaling lower bound).
        #[arg(long)]
        min: Option<u32>,
        /// Most workers (autoscaling upper bound).
        #[arg(long)]
        max: Option<u32>,
    },
    /// Restart an instance now and replay its logged requests.
    Heal {
        /// Instance id.
        id: String,
    },
    /// Remove an instance.
    Remove {
        /// Instance id.
        id: String,
    },
    /// Print an instance's events as they come (server-sent events).
    Events {
        /// Instance id.
        id: String,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
        /// Stop after this many seconds.
        #[arg(long)]
        timeout: Option<f64>,
    },
    /// Run an operation of an instance's service (see `nfvinc services`).
    Op {
        /// Instance id.
        id: String,
        /// Operation name.
        op: String,
        /// Its parameters as a JSON object (none when absent).
        args: Option<String>,
        /// When the instance is unavailable and the request is logged,
        /// wait this many seconds for its outcome (0: print the request id).
        #[arg(long, default_value_t = 10.0)]
        wait: f64,
    },
    /// Show a logged request and its outcome.
    Request {
        /// Request id (from an operation answered 202).
        id: String,
    },
}

/// Opens a session with the daemon of `args`.
pub fn connect(args: &ClientArgs) -> anyhow::Result<Client> {
    let Some(key) = args.api_key.as_deref() else {
        bail!(
            "no API key: pass --api-key or set NFVINC_API_KEY (`nfvinc user add NAME` on the daemon's host prints one)"
        );
    };
    let mut b = Client::builder(&args.url);
    if let Some(p) = &args.ca_cert {
        let pem = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        b = b.root_certificate_pem(&pem);
    }
    b.connect(key).map_err(|e| match e {
        libnfvinc::rest::Error::Http(e) => anyhow::anyhow!(
            "cannot reach nfvinc at {} (is `nfvinc serve` running there?): {e}",
            args.url
        ),
        e => anyhow::Error::new(e).context(format!("opening a session at {}", args.url)),
    })
}

/// Parses a JSON object given on the command line.
fn json_arg(what: &str, s: &str) -> anyhow::Result<Value> {
    let v: Value =
        serde_json::from_str(s).with_context(|| format!("{what}: not valid JSON: {s}"))?;
    if !v.is_object() {
        bail!("{what} must be a JSON object, like '{{\"process\": 7}}'");
    }
    Ok(v)
}

/// Prints rows as a table with aligned columns.
pub fn table(out: &mut impl Write, headers: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let mut width: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&width).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_owned()
    };
    writeln!(out, "{}", line(headers.to_vec()))?;
    for r in rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

fn instance_rows(list: &[Instance]) -> Vec<Vec<String>> {
    list.iter()
        .map(|i| {
            vec![
                i.id.clone(),
                i.service.clone(),
                i.name.clone().unwrap_or_else(|| "-".into()),
                i.state.clone(),
                format!("{}:{}", i.direct.addr, i.direct.port),
                format!("{} [{}..{}]", i.scale.replicas, i.scale.min, i.scale.max),
                i.restarts.to_string(),
                i.pid.map_or("-".into(), |p| p.to_string()),
            ]
        })
        .collect()
}

const INSTANCE_HEADERS: [&str; 8] = [
    "ID", "SERVICE", "NAME", "STATE", "DIRECT", "WORKERS", "RESTARTS", "PID",
];

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn print_instance(json: bool, i: &Instance) -> anyhow::Result<()> {
    if json {
        return print_json(i);
    }
    table(
        &mut std::io::stdout().lock(),
        &INSTANCE_HEADERS,
        &instance_rows(std::slice::from_ref(i)),
    )?;
    Ok(())
}

fn metrics_row(id: &str, m: &Value) -> Vec<String> {
    let counters = m["vnf_counters"]
        .as_object()
        .map(|o| {
            let mut v: Vec<String> = o.iter().map(|(k, v)| format!("{k}={v}")).collect();
            v.sort();
            v.join(" ")
        })
        .unwrap_or_default();
    vec![
        id.to_owned(),
        if m["up"].as_bool() == Some(true) {
            "up"
        } else {
            "down"
        }
        .into(),
        format!("{:.2}", m["cpu_seconds"].as_f64().unwrap_or(0.0)),
        format!(
            "{:.1}",
            m["memory_bytes"].as_f64().unwrap_or(0.0) / (1 << 20) as f64
        ),
        if counters.is_empty() {
            "-".into()
        } else {
            counters
        },
    ]
}

/// Runs one client command.
pub fn run(args: &ClientArgs, cmd: &ClientCommand) -> anyhow::Result<()> {
    let c = connect(args)?;
    let result = run_with(&c, args.json, cmd);
    // The session was only for this command; a failure to end it changes
    // nothing for the user (it expires on its own).
    let _ = c.close();
    result
}

fn run_with(c: &Client, json: bool, cmd: &ClientCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match cmd {
        ClientCommand::Services => {
            let cat = c.discover()?;
            if json {
                return print_json(&cat);
            }
            let services = cat["services"].as_array().cloned().unwrap_or_default();
            let rows: Vec<Vec<String>> = services
                .iter()
                .map(|s| {
                    let strs = |k: &str| {
                        s[k].as_array()
                            .map(|a| {
                                a.iter()
                                    .map(|v| {
                                        v.as_str()
                                            .map_or_else(|| v["name"].to_string(), str::to_owned)
                                            .trim_matches('"')
                                            .to_owned()
                                    })
                                    .collect::<Vec<_>>()
                                    .join(",")
                            })
                            .unwrap_or_default()
                    };
                    vec![
                        s["name"].as_str().unwrap_or("?").to_owned(),
                        strs("versions"),
                        if s["installed"].as_bool() == Some(true) {
                            "yes"
                        } else {
                            "no"
                        }
                        .into(),
                        strs("modes"),
                        strs("operations"),
                        s["description"].as_str().unwrap_or("").to_owned(),
                    ]
                })
                .collect();
            table(
                &mut out,
                &[
                    "SERVICE",
                    "VERSIONS",
                    "INSTALLED",
                    "MODES",
                    "OPERATIONS",
                    "DESCRIPTION",
                ],
                &rows,
            )?;
            let l = &cat["limits"];
            writeln!(
                out,
                "\nlimits: {} instances per tenant, {} workers per instance, {} B bodies, sessions last {} s",
                l["max_instances_per_tenant"],
                l["max_replicas"],
                l["max_body_bytes"],
                l["session_ttl_s"]
            )?;
        }
        ClientCommand::Connect {
            service,
            name,
            version,
            options,
            replicas,
        } => {
            let config = options
                .as_deref()
                .map(|s| json_arg("--options", s))
                .transpose()?;
            let i = c.create_instance(&CreateInstance {
                service: service.clone(),
                version: version.clone(),
                name: name.clone(),
                config,
                scale: replicas.map(|r| ScaleRequest {
                    replicas: Some(r),
                    max: Some(r),
                    ..ScaleRequest::default()
                }),
            })?;
            if json {
                return print_json(&i);
            }
            print_instance(false, &i)?;
            if let Some(ms) = i.startup_ms {
                writeln!(out, "\nready in {ms:.1} ms; REST handle {}", i.rest)?;
            }
            if let (Some(s), Some(k)) = (i.direct.session_id, &i.direct.session_key) {
                writeln!(
                    out,
                    "direct channel {}:{}, session {s}, key {k} (shown once)",
                    i.direct.addr, i.direct.port
                )?;
            }
        }
        ClientCommand::Instances => {
            let list = c.instances()?;
            if json {
                return print_json(&list);
            }
            table(&mut out, &INSTANCE_HEADERS, &instance_rows(&list))?;
        }
        ClientCommand::Metrics { id } => {
            let ids: Vec<String> = match id {
                Some(id) => vec![id.clone()],
                None => c.instances()?.into_iter().map(|i| i.id).collect(),
            };
            let mut all = serde_json::Map::new();
            for id in ids {
                all.insert(id.clone(), c.instance_metrics(&id)?);
            }
            if json {
                return print_json(&match id {
                    Some(id) => all.remove(id).unwrap_or(Value::Null),
                    None => Value::Object(all),
                });
            }
            let rows: Vec<Vec<String>> = all.iter().map(|(id, m)| metrics_row(id, m)).collect();
            table(
                &mut out,
                &["ID", "UP", "CPU_S", "MEM_MIB", "VNF_COUNTERS"],
                &rows,
            )?;
        }
        ClientCommand::Scale {
            id,
            replicas,
            min,
            max,
        } => {
            if replicas.is_none() && min.is_none() && max.is_none() {
                bail!("say what to change: --replicas, --min and/or --max");
            }
            let i = c.scale(
                id,
                ScaleRequest {
                    min: *min,
                    max: *max,
                    replicas: *replicas,
                },
            )?;
            print_instance(json, &i)?;
        }
        ClientCommand::Heal { id } => {
            let i = c.heal(id)?;
            print_instance(json, &i)?;
        }
        ClientCommand::Remove { id } => {
            c.remove(id)?;
            if json {
                return print_json(&json!({"removed": id}));
            }
            writeln!(out, "removed {id}")?;
        }
        ClientCommand::Events { id, count, timeout } => {
            let stream = c.events(id)?;
            let deadline = timeout.map(|t| Instant::now() + Duration::from_secs_f64(t.max(0.0)));
            let mut seen = 0u64;
            while count.is_none_or(|n| seen < n) {
                let wait = match deadline {
                    Some(d) => match d.checked_duration_since(Instant::now()) {
                        Some(w) => w.min(Duration::from_millis(500)),
                        None => break,
                    },
                    None => Duration::from_millis(500),
                };
                let Some(e) = stream.next_timeout(wait)? else {
                    continue;
                };
                seen += 1;
                if json {
                    writeln!(out, "{}", json!({"event": e.kind, "data": e.data}))?;
                } else {
                    writeln!(out, "{:<9} {}", e.kind, e.data)?;
                }
                out.flush()?;
                if e.kind == "lifecycle" && e.data["lifecycle"] == "removed" {
                    break;
                }
            }
        }
        ClientCommand::Op { id, op, args, wait } => {
            let params = match args.as_deref() {
                Some(s) => json_arg("the operation's parameters", s)?,
                None => json!({}),
            };
            match c.op(id, op, params)? {
                OpOutcome::Done(v) => {
                    if json {
                        return print_json(&v);
                    }
                    writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
                }
                OpOutcome::Scheduled(r) if *wait > 0.0 => {
                    eprintln!(
                        "instance unavailable: request {} logged, waiting for its outcome",
                        r.id
                    );
                    let r = c.wait_request(&r.id, Duration::from_secs_f64(*wait))?;
                    if r.status == "failed" {
                        bail!("request {} failed: {}", r.id, r.error.unwrap_or_default());
                    }
                    let v = r.result.unwrap_or(Value::Null);
                    writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
                }
                OpOutcome::Scheduled(r) => {
                    if json {
                        return print_json(&r);
                    }
                    writeln!(
                        out,
                        "instance unavailable: request {} logged; `nfvinc request {}` shows its outcome",
                        r.id, r.id
                    )?;
                }
            }
        }
        ClientCommand::Request { id } => {
            let r = c.request(id)?;
            if json {
                return print_json(&r);
            }
            table(
                &mut out,
                &["ID", "INSTANCE", "OP", "STATUS", "OUTCOME"],
                &[vec![
                    r.id.clone(),
                    r.instance.clone(),
                    r.op.clone(),
                    r.status.clone(),
                    match (&r.result, &r.error) {
                        (Some(v), _) => v.to_string(),
                        (None, Some(e)) => e.clone(),
                        _ => "-".into(),
                    },
                ]],
            )?;
        }
    }
    Ok(())
}
