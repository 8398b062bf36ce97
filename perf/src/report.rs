//! Results of runs: the JSON report, latency percentiles from a histogram,
//! and the side-by-side table with ratios to the kernel-UDP baseline.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latency percentiles in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest value recorded.
    pub max: u64,
}

impl Latency {
    /// The percentiles of `h`; all zero when it is empty.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// A latency histogram with the range every scenario uses: 1 ns to 60 s at
/// three significant digits. Allocates its buckets here, once; recording
/// never allocates.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("static histogram bounds are valid")
}

/// The percentile curve of `h` for plotting: `(quantile, value_ns)` points
/// with quantiles in `[0, 1)`, denser towards the tail (HdrHistogram's
/// percentile iteration, 5 ticks per half distance). Empty for an empty
/// histogram.
pub fn curve(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut points: Vec<(f64, u64)> = h
        .iter_quantiles(5)
        .map(|v| (v.quantile_iterated_to(), v.value_iterated_to()))
        .filter(|&(q, _)| q < 1.0)
        .collect();
    // The last iteration reaches quantile 1.0, which a 1/(1-q) axis cannot
    // show; stand the maximum at the deepest quantile the sample count
    // resolves instead.
    let deepest = 1.0 - 1.0 / h.len() as f64;
    if points.last().is_none_or(|&(q, _)| q < deepest) {
        points.push((deepest, h.max()));
    }
    points
}

/// One scenario run on one backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Scenario name (`echo`).
    pub scenario: String,
    /// Backend under test (`afxdp`, `udp`, `mem`).
    pub backend: String,
    /// Length of the measured window in seconds (warm-up excluded).
    pub duration_s: f64,
    /// Packets sent in the measured window.
    pub sent: u64,
    /// Of those, distinct packets whose reply arrived within the window plus
    /// the drain period.
    pub received: u64,
    /// `sent - received`.
    pub lost: u64,
    /// `received / duration_s`.
    pub pps: f64,
    /// Latency percentiles, in nanoseconds (see `latency_kind`).
    pub latency_ns: Latency,
    /// What `latency_ns` measures.
    pub latency_kind: String,
    /// Pacing: `max`, `open-loop` or `closed-loop`.
    pub mode: String,
    /// Frame length in bytes (Ethernet header to end of payload, no FCS).
    pub size: usize,
    /// `sent / duration_s`.
    pub offered_pps: f64,
    /// Target rate of an open-loop run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_pps: Option<u64>,
    /// Packets kept in flight by a closed-loop run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<u32>,
    /// Wall time per packet (in-memory backend only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_per_packet: Option<f64>,
    /// Replies whose sequence number had already arrived.
    #[serde(default)]
    pub duplicates: u64,
    /// Replies that arrived after a later-sent one.
    #[serde(default)]
    pub reordered: u64,
    /// Warm-up in seconds, before the measured window.
    #[serde(default)]
    pub warmup_s: f64,
    /// Anything else worth keeping, free-form (e.g. how the UDP checksum of
    /// generated frames was kept valid), written as fields of the run.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// The percentile curve, for plots; not written to JSON.
    #[serde(skip)]
    pub curve: Vec<(f64, u64)>,
}

/// The JSON report: every run of one invocation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The runs, in the order they ran.
    pub runs: Vec<Run>,
}

/// A backend's figures relative to the kernel-UDP run of the same report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio {
    /// `pps / udp.pps` (higher is better); `None` when udp received nothing.
    pub pps: Option<f64>,
    /// `p99 / udp.p99` (lower is better); `None` without a udp p99.
    pub p99: Option<f64>,
}

impl Report {
    /// The first run on the `udp` backend, the baseline for ratios.
    pub fn baseline(&self) -> Option<&Run> {
        self.runs.iter().find(|r| r.backend == "udp")
    }

    /// Ratios of `run` to the baseline; `None` when there is no baseline.
    pub fn ratio(&self, run: &Run) -> Option<Ratio> {
        let base = self.baseline()?;
        let div = |a: f64, b: f64| (b > 0.0).then(|| a / b);
        Some(Ratio {
            pps: div(run.pps, base.pps),
            p99: div(run.latency_ns.p99 as f64, base.latency_ns.p99 as f64),
        })
    }

    /// The side-by-side table: one column per run, one row per figure, with
    /// the ratios to `udp` at the bottom (or a line saying there is no
    /// baseline).
    pub fn table(&self) -> String {
        let mut rows: Vec<(String, Vec<String>)> = vec![
            ("backend".into(), self.col(|r| r.backend.clone())),
            ("mode".into(), self.col(|r| r.mode.clone())),
            ("frame bytes".into(), self.col(|r| r.size.to_string())),
            (
                "seconds".into(),
                self.col(|r| format!("{:.2}", r.duration_s)),
            ),
            ("sent".into(), self.col(|r| r.sent.to_string())),
            ("received".into(), self.col(|r| r.received.to_string())),
            ("lost".into(), self.col(|r| r.lost.to_string())),
            (
                "loss %".into(),
                self.col(|r| {
                    if r.sent == 0 {
                        "-".into()
                    } else {
                        format!("{:.3}", 100.0 * r.lost as f64 / r.sent as f64)
                    }
                }),
            ),
            ("offered Mpps".into(), self.col(|r| fmt_mpps(r.offered_pps))),
            ("Mpps".into(), self.col(|r| fmt_mpps(r.pps))),
            (
                "ns/packet".into(),
                self.col(|r| r.ns_per_packet.map_or("-".into(), |n| format!("{n:.1}"))),
            ),
            ("p50".into(), self.col(|r| fmt_ns(r.latency_ns.p50))),
            ("p90".into(), self.col(|r| fmt_ns(r.latency_ns.p90))),
            ("p99".into(), self.col(|r| fmt_ns(r.latency_ns.p99))),
            ("p99.9".into(), self.col(|r| fmt_ns(r.latency_ns.p999))),
            ("max".into(), self.col(|r| fmt_ns(r.latency_ns.max))),
        ];
        let has_base = self.baseline().is_some();
        if has_base {
            let ratio = |f: fn(&Ratio) -> Option<f64>| {
                self.col(|r| {
                    self.ratio(r)
                        .and_then(|x| f(&x))
                        .map_or("-".into(), |v| format!("{v:.2}x"))
                })
            };
            rows.push(("pps / udp".into(), ratio(|x| x.pps)));
            rows.push(("p99 / udp".into(), ratio(|x| x.p99)));
        }
        let label_w = rows
            .iter()
            .map(|(l, _)| l.chars().count())
            .max()
            .unwrap_or(0);
        let widths: Vec<usize> = (0..self.runs.len())
            .map(|i| {
                rows.iter()
                    .map(|(_, c)| c[i].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for (label, cells) in &rows {
            let _ = write!(out, "{label:<label_w$}");
            for (cell, w) in cells.iter().zip(&widths) {
                let _ = write!(out, "  {cell:>w$}");
            }
            out.push('\n');
        }
        if has_base {
            out.push_str("(pps / udp: higher is better; p99 / udp: lower is better)\n");
        } else {
            out.push_str("no udp baseline in this run\n");
        }
        out
    }

    fn col(&self, f: impl Fn(&Run) -> String) -> Vec<String> {
        self.runs.iter().map(f).collect()
    }
}

fn fmt_mpps(pps: f64) -> String {
    format!("{:.3}", pps / 1e6)
}

/// A latency in the unit that suits it: `850ns`, `12.3µs`, `4.56ms`, `1.20s`.
pub fn fmt_ns(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns}ns"),
        1_000..1_000_000 => format!("{:.1}µs", ns as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2}ms", ns as f64 / 1e6),
        _ => format!("{:.2}s", ns as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn run(backend: &str, pps: f64, p99: u64) -> Run {
        Run {
            scenario: "echo".into(),
            backend: backend.into(),
            duration_s: 5.0,
            sent: 1000,
            received: 990,
            lost: 10,
            pps,
            latency_ns: Latency {
                p50: p99 / 2,
                p90: p99 * 3 / 4,
                p99,
                p999: p99 * 2,
                max: p99 * 10,
            },
            latency_kind: "rtt".into(),
            mode: "max".into(),
            size: 64,
            offered_pps: pps,
            rate_pps: None,
            in_flight: None,
            ns_per_packet: None,
            duplicates: 0,
            reordered: 0,
            warmup_s: 1.0,
            extra: [("checksum".to_string(), serde_json::json!("zero"))]
                .into_iter()
                .collect(),
            curve: vec![(0.5, 1), (0.9, 2)],
        }
    }

    #[test]
    fn json_has_the_contract_fields() {
        let report = Report {
            runs: vec![run("afxdp", 2e6, 20_000), run("udp", 1e6, 40_000)],
        };
        let v: serde_json::Value = serde_json::to_value(&report).unwrap();
        let runs = v["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 2);
        for r in runs {
            for key in [
                "scenario",
                "backend",
                "duration_s",
                "sent",
                "received",
                "lost",
                "pps",
                "latency_ns",
            ] {
                assert!(r.get(key).is_some(), "missing {key} in {r}");
            }
            for key in ["p50", "p90", "p99", "p999", "max"] {
                assert!(r["latency_ns"][key].is_u64(), "latency_ns.{key} in {r}");
            }
            assert!(r.get("curve").is_none(), "the plot curve stays out of JSON");
            assert!(r.get("ns_per_packet").is_none(), "absent unless mem");
        }
        assert_eq!(runs[0]["backend"], "afxdp");
        assert_eq!(
            runs[0]["checksum"], "zero",
            "extra fields sit beside the others"
        );
        assert_eq!(runs[1]["latency_ns"]["p99"], 40_000);
        // And it reads back (the curve aside).
        let back: Report = serde_json::from_value(v).unwrap();
        assert_eq!(back.runs[0].pps, 2e6);
        assert_eq!(back.runs[0].extra["checksum"], "zero");
        assert!(back.runs[0].curve.is_empty());
    }

    #[test]
    fn ratios_are_to_the_udp_run() {
        let report = Report {
            runs: vec![run("afxdp", 3e6, 10_000), run("udp", 1e6, 40_000)],
        };
        let r = report.ratio(&report.runs[0]).unwrap();
        assert!((r.pps.unwrap() - 3.0).abs() < 1e-9);
        assert!((r.p99.unwrap() - 0.25).abs() < 1e-9);
        let t = report.table();
        assert!(t.contains("pps / udp"), "{t}");
        let pps_row = t.lines().find(|l| l.starts_with("pps / udp")).unwrap();
        assert!(
            pps_row.contains("3.00x") && pps_row.contains("1.00x"),
            "{t}"
        );
        let p99_row = t.lines().find(|l| l.starts_with("p99 / udp")).unwrap();
        assert!(p99_row.contains("0.25x"), "{t}");
        assert!(!t.contains("no udp baseline"));
    }

    #[test]
    fn without_udp_the_table_says_so() {
        let report = Report {
            runs: vec![run("afxdp", 3e6, 10_000)],
        };
        assert!(report.ratio(&report.runs[0]).is_none());
        let t = report.table();
        assert!(t.contains("no udp baseline in this run"), "{t}");
        assert!(!t.contains("pps / udp"));
    }

    #[test]
    fn a_silent_baseline_gives_no_ratio_not_infinity() {
        let mut udp = run("udp", 0.0, 0);
        udp.received = 0;
        let report = Report {
            runs: vec![run("afxdp", 3e6, 10_000), udp],
        };
        let r = report.ratio(&report.runs[0]).unwrap();
        assert_eq!(r.pps, None);
        assert_eq!(r.p99, None);
        assert!(report.table().lines().any(|l| l.starts_with("pps / udp")));
    }

    #[test]
    fn table_columns_line_up() {
        let report = Report {
            runs: vec![run("afxdp", 3e6, 10_000), run("udp", 1e6, 40_000)],
        };
        let t = report.table();
        let widths: Vec<usize> = t
            .lines()
            .filter(|l| !l.starts_with('('))
            .map(|l| l.chars().count())
            .collect();
        assert!(widths.windows(2).all(|w| w[0] == w[1]), "{t}");
    }

    #[test]
    fn percentiles_from_a_histogram() {
        let mut h = new_histogram();
        for v in 1..=10_000u64 {
            h.record(v * 100).unwrap();
        }
        let l = Latency::of(&h);
        let near = |a: u64, b: u64| (a as f64 - b as f64).abs() / b as f64 <= 0.002;
        assert!(near(l.p50, 500_000), "{l:?}");
        assert!(near(l.p90, 900_000), "{l:?}");
        assert!(near(l.p99, 990_000), "{l:?}");
        assert!(near(l.p999, 999_000), "{l:?}");
        assert!(near(l.max, 1_000_000), "{l:?}");
        assert_eq!(Latency::of(&new_histogram()), Latency::default());
    }

    #[test]
    fn curve_is_monotonic_and_stays_below_quantile_one() {
        let mut h = new_histogram();
        for v in 1..=100_000u64 {
            h.record(v).unwrap();
        }
        let c = curve(&h);
        assert!(c.len() > 20);
        assert!(c.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        assert!(c.iter().all(|&(q, _)| (0.0..1.0).contains(&q)));
        let (q, v) = *c.last().unwrap();
        assert!(q >= 0.9999, "{q}");
        assert!(v >= 99_000, "{v}");
        assert!(curve(&new_histogram()).is_empty());
    }

    #[test]
    fn latencies_print_in_fitting_units() {
        assert_eq!(fmt_ns(850), "850ns");
        assert_eq!(fmt_ns(12_345), "12.3µs");
        assert_eq!(fmt_ns(4_560_000), "4.56ms");
        assert_eq!(fmt_ns(1_200_000_000), "1.20s");
    }
}
