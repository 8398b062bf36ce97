//! Counters and gauges exported at `/metrics` in the Prometheus text format.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// Upper bounds (ms) of the instance start-up histogram's buckets.
const STARTUP_BUCKETS_MS: [f64; 8] = [10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0];

/// What the Monitor last measured of one instance.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct InstanceMetrics {
    /// 1 when its process runs and answers health checks.
    pub up: bool,
    /// CPU time used by the process, seconds.
    pub cpu_seconds: f64,
    /// Resident memory, bytes.
    pub memory_bytes: u64,
    /// Numeric counters the VNF reports (`counters` operation).
    #[schema(value_type = Object)]
    pub vnf_counters: HashMap<String, f64>,
}

/// The daemon's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// HTTP responses by status code.
    pub http: Mutex<HashMap<u16, u64>>,
    /// Instances created.
    pub instances_created: AtomicU64,
    /// Instance restarts (heal, scale, reconfigure).
    pub restarts: AtomicU64,
    /// Requests logged by the Scheduler.
    pub scheduled: AtomicU64,
    /// Logged requests replayed.
    pub replayed: AtomicU64,
    /// Operations sent straight to a VNF.
    pub ops_direct: AtomicU64,
    startup_buckets: [AtomicU64; STARTUP_BUCKETS_MS.len()],
    startup_count: AtomicU64,
    startup_sum_us: AtomicU64,
    /// Per-instance measurements, by id.
    pub instances: Mutex<HashMap<String, InstanceMetrics>>,
}

impl Metrics {
    /// Counts one HTTP response.
    pub fn count_http(&self, status: u16) {
        *self
            .http
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(status)
            .or_default() += 1;
    }

    /// Records one instance's request-to-ready time.
    pub fn observe_startup(&self, ms: f64) {
        for (i, b) in STARTUP_BUCKETS_MS.iter().enumerate() {
            if ms <= *b {
                self.startup_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.startup_count.fetch_add(1, Ordering::Relaxed);
        self.startup_sum_us
            .fetch_add((ms * 1e3) as u64, Ordering::Relaxed);
    }

    /// Stores the Monitor's measurement of an instance.
    pub fn set_instance(&self, id: &str, m: InstanceMetrics) {
        self.instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned(), m);
    }

    /// The last measurement of an instance.
    pub fn instance(&self, id: &str) -> Option<InstanceMetrics> {
        self.instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Forgets a removed instance.
    pub fn forget(&self, id: &str) {
        self.instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// The Prometheus text exposition; `pending` is the log's backlog.
    pub fn render(&self, pending: i64) -> String {
        let mut o = String::new();
        let c = |o: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        let _ = writeln!(
            o,
            "# HELP nfvinc_http_responses_total HTTP responses by status.\n# TYPE nfvinc_http_responses_total counter"
        );
        let mut http: Vec<_> = self
            .http
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        http.sort_unstable();
        for (code, n) in http {
            let _ = writeln!(o, "nfvinc_http_responses_total{{code=\"{code}\"}} {n}");
        }
        c(
            &mut o,
            "nfvinc_instances_created_total",
            "Instances created.",
            self.instances_created.load(Ordering::Relaxed),
        );
        c(
            &mut o,
            "nfvinc_instance_restarts_total",
            "Instance restarts (heal, scale, reconfigure).",
            self.restarts.load(Ordering::Relaxed),
        );
        c(
            &mut o,
            "nfvinc_requests_scheduled_total",
            "Requests logged for unavailable instances.",
            self.scheduled.load(Ordering::Relaxed),
        );
        c(
            &mut o,
            "nfvinc_requests_replayed_total",
            "Logged requests replayed.",
            self.replayed.load(Ordering::Relaxed),
        );
        c(
            &mut o,
            "nfvinc_operations_direct_total",
            "Operations sent straight to a VNF.",
            self.ops_direct.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            o,
            "# HELP nfvinc_requests_pending Requests waiting in the Scheduler's log.\n# TYPE nfvinc_requests_pending gauge\nnfvinc_requests_pending {pending}"
        );
        let _ = writeln!(
            o,
            "# HELP nfvinc_instance_startup_seconds Time from a create request to a ready instance.\n# TYPE nfvinc_instance_startup_seconds histogram"
        );
        for (i, b) in STARTUP_BUCKETS_MS.iter().enumerate() {
            let _ = writeln!(
                o,
                "nfvinc_instance_startup_seconds_bucket{{le=\"{}\"}} {}",
                b / 1e3,
                self.startup_buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.startup_count.load(Ordering::Relaxed);
        let _ = writeln!(
            o,
            "nfvinc_instance_startup_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            o,
            "nfvinc_instance_startup_seconds_sum {}\nnfvinc_instance_startup_seconds_count {count}",
            self.startup_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let inst = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        let mut ids: Vec<&String> = inst.keys().collect();
        ids.sort();
        for (name, help, kind) in [
            (
                "nfvinc_instance_up",
                "1 when the instance's process runs and is healthy.",
                "gauge",
            ),
            (
                "nfvinc_instance_cpu_seconds_total",
                "CPU time of the instance's process.",
                "counter",
            ),
            (
                "nfvinc_instance_memory_bytes",
                "Resident memory of the instance's process.",
                "gauge",
            ),
        ] {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for id in &ids {
                let m = &inst[*id];
                let v = match name {
                    "nfvinc_instance_up" => f64::from(u8::from(m.up)),
                    "nfvinc_instance_cpu_seconds_total" => m.cpu_seconds,
                    _ => m.memory_bytes as f64,
                };
                let _ = writeln!(o, "{name}{{instance=\"{id}\"}} {v}");
            }
        }
        let _ = writeln!(
            o,
            "# HELP nfvinc_vnf_counter Counters reported by the VNF.\n# TYPE nfvinc_vnf_counter gauge"
        );
        for id in &ids {
            let mut names: Vec<_> = inst[*id].vnf_counters.iter().collect();
            names.sort_by(|a, b| a.0.cmp(b.0));
            for (n, v) in names {
                let n: String = n
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                let _ = writeln!(
                    o,
                    "nfvinc_vnf_counter{{instance=\"{id}\",name=\"{n}\"}} {v}"
                );
            }
        }
        o
    }
}

/// The numeric leaves of a VNF's `counters` answer, flattened with `_`.
pub fn flatten_counters(v: &Value) -> HashMap<String, f64> {
    fn walk(prefix: &str, v: &Value, out: &mut HashMap<String, f64>) {
        match v {
            Value::Number(n) => {
                if let Some(f) = n.as_f64() {
                    out.insert(prefix.to_owned(), f);
                }
            }
            Value::Object(m) => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}_{k}")
                    };
                    walk(&key, v, out);
                }
            }
            _ => {}
        }
    }
    let mut out = HashMap::new();
    walk("", v, &mut out);
    out
}

/// CPU seconds and resident bytes of `pid`, from `/proc`.
pub fn proc_usage(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name, which may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 11 and 12 here.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let rss_pages: u64 = f.get(21)?.parse().ok()?;
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    Some((ticks as f64 / hz, rss_pages * page))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn render_is_prometheus_text() {
        let m = Metrics::default();
        m.count_http(200);
        m.observe_startup(42.0);
        m.set_instance(
            "i-1",
            InstanceMetrics {
                up: true,
                cpu_seconds: 0.5,
                memory_bytes: 4096,
                vnf_counters: flatten_counters(&json!({"rx": {"packets": 3}, "name": "x"})),
            },
        );
        let t = m.render(2);
        assert!(
            t.contains("nfvinc_http_responses_total{code=\"200\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("nfvinc_instance_startup_seconds_bucket{le=\"0.05\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("nfvinc_instance_startup_seconds_bucket{le=\"0.025\"} 0"),
            "{t}"
        );
        assert!(t.contains("nfvinc_requests_pending 2"));
        assert!(t.contains("nfvinc_instance_up{instance=\"i-1\"} 1"));
        assert!(t.contains("nfvinc_vnf_counter{instance=\"i-1\",name=\"rx_packets\"} 3"));
    }

    #[test]
    fn own_process_usage_is_readable() {
        let (cpu, rss) = proc_usage(std::process::id()).unwrap();
        assert!(cpu >= 0.0);
        assert!(rss > 0);
    }
}
