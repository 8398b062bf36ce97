//! The latency plot: one percentile curve per run on one SVG chart.
//!
//! The x axis is HdrHistogram's: `log10(1 / (1 - q))`, so 90%, 99%, 99.9%…
//! are evenly spaced and the tail gets the room. The y axis is logarithmic
//! too, since backends in one run can differ by orders of magnitude (the
//! in-memory backend's nanoseconds beside kernel UDP's tens of microseconds).
//! The SVG is written by hand: plain paths and text, no fonts to embed, no
//! system libraries.

use std::fmt::Write as _;

use crate::report::{Run, fmt_ns};

const W: f64 = 960.0;
const H: f64 = 540.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 230.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `log10(1 / (1 - q))`: 0 for the median's start, 1 at 90%, 2 at 99%…
fn x_of_quantile(q: f64) -> f64 {
    -(1.0 - q).max(1e-12).log10()
}

/// The label of the tick at `decade` on the x axis: `0%`, `90%`, `99%`,
/// `99.9%`, …
fn x_label(decade: u32) -> String {
    match decade {
        0 => "0%".into(),
        1 => "90%".into(),
        2 => "99%".into(),
        d => format!("99.{}%", "9".repeat(d as usize - 2)),
    }
}

/// The label of the tick at `10^e` ns on the y axis: `1ns`, `10µs`, `1s`…
fn fmt_decade(e: i32) -> String {
    let (unit, base) = match e {
        ..3 => ("ns", 0),
        3..6 => ("µs", 3),
        6..9 => ("ms", 6),
        _ => ("s", 9),
    };
    format!("{}{unit}", 10u64.pow((e - base).max(0) as u32))
}

/// The chart for `runs` with `title` on top: one `<path>` per run that has a
/// curve, in run order, and a legend entry for every run.
pub fn svg(title: &str, runs: &[Run]) -> String {
    let plotted: Vec<&Run> = runs.iter().filter(|r| !r.curve.is_empty()).collect();
    let x_max = plotted
        .iter()
        .flat_map(|r| r.curve.iter().map(|&(q, _)| x_of_quantile(q)))
        .fold(2.0_f64, f64::max)
        .ceil()
        .min(12.0);
    let values = || {
        plotted
            .iter()
            .flat_map(|r| r.curve.iter().map(|&(_, v)| v.max(1)))
    };
    let y_lo = values().min().map_or(0.0, |v| (v as f64).log10().floor());
    let y_hi = values()
        .max()
        .map_or(3.0, |v| (v as f64).log10().ceil())
        .max(y_lo + 1.0);
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let px = |q: f64| LEFT + pw * x_of_quantile(q).min(x_max) / x_max;
    let py = |v: u64| TOP + ph * (1.0 - ((v.max(1) as f64).log10() - y_lo) / (y_hi - y_lo));

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="28" text-anchor="middle" font-size="{}">{}</text>"#,
        W / 2.0,
        if title.chars().count() > 90 { 13 } else { 16 },
        escape(title)
    );
    // Grid and ticks.
    for d in 0..=(x_max as u32) {
        let x = LEFT + pw * f64::from(d) / x_max;
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/>"##,
            TOP + ph
        );
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            TOP + ph + 18.0,
            x_label(d)
        );
    }
    for e in (y_lo as i32)..=(y_hi as i32) {
        let v = 10f64.powi(e) as u64;
        let y = py(v);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
            LEFT + pw
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            y + 4.0,
            fmt_decade(e)
        );
    }
    let _ = writeln!(
        s,
        r#"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile (log scale on 1/(1-p))</text>"#,
        LEFT + pw / 2.0,
        H - 18.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(20 {:.1}) rotate(-90)" text-anchor="middle">latency (log scale)</text>"#,
        TOP + ph / 2.0
    );
    // Curves.
    for (i, run) in runs.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        if !run.curve.is_empty() {
            let mut d = String::new();
            for (j, &(q, v)) in run.curve.iter().enumerate() {
                let _ = write!(
                    d,
                    "{}{:.1} {:.1}",
                    if j == 0 { "M" } else { " L" },
                    px(q),
                    py(v)
                );
            }
            let _ = writeln!(
                s,
                r#"<path d="{d}" fill="none" stroke="{colour}" stroke-width="2"><title>{}</title></path>"#,
                escape(&run.backend)
            );
        }
        // Legend entry.
        let ly = TOP + 10.0 + 22.0 * i as f64;
        let lx = W - RIGHT + 16.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{:.1}" y2="{ly}" stroke="{colour}" stroke-width="3"/>"#,
            lx + 24.0
        );
        let label = if run.curve.is_empty() {
            format!("{} (no samples)", run.backend)
        } else {
            format!("{} (p99 {})", run.backend, fmt_ns(run.latency_ns.p99))
        };
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 30.0,
            ly + 4.0,
            escape(&label)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Latency, curve, new_histogram};

    fn run_with(backend: &str, scale: u64) -> Run {
        let mut h = new_histogram();
        for v in 1..=50_000u64 {
            h.record(v * scale).unwrap();
        }
        Run {
            scenario: "echo".into(),
            backend: backend.into(),
            duration_s: 1.0,
            sent: 50_000,
            received: 50_000,
            lost: 0,
            pps: 50_000.0,
            latency_ns: Latency::of(&h),
            latency_kind: "rtt".into(),
            mode: "max".into(),
            size: 64,
            offered_pps: 50_000.0,
            rate_pps: None,
            in_flight: None,
            ns_per_packet: None,
            duplicates: 0,
            reordered: 0,
            warmup_s: 0.0,
            extra: serde_json::Map::new(),
            curve: curve(&h),
        }
    }

    /// A small well-formedness check: every tag is closed in order, every
    /// attribute is quoted, and no bare `&` or `<` appears in text.
    fn check_xml(s: &str) -> Result<(), String> {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = s;
        while let Some(start) = rest.find('<') {
            let text = &rest[..start];
            if text.contains('>') {
                return Err(format!("stray '>' in text {text:?}"));
            }
            for (i, _) in text.match_indices('&') {
                let ent = &text[i..];
                if !["&amp;", "&lt;", "&gt;", "&quot;"]
                    .iter()
                    .any(|e| ent.starts_with(e))
                {
                    return Err(format!("bare '&' in {text:?}"));
                }
            }
            let end = rest[start..].find('>').ok_or("unclosed tag")? + start;
            let tag = &rest[start + 1..end];
            if tag.matches('"').count() % 2 != 0 {
                return Err(format!("unbalanced quotes in <{tag}>"));
            }
            if let Some(name) = tag.strip_prefix('/') {
                let open = stack.pop().ok_or(format!("</{name}> closes nothing"))?;
                if open != name {
                    return Err(format!("</{name}> closes <{open}>"));
                }
            } else if !tag.ends_with('/') {
                let name = tag.split_whitespace().next().ok_or("empty tag")?;
                stack.push(name.to_string());
            }
            rest = &rest[end + 1..];
        }
        if !stack.is_empty() {
            return Err(format!("unclosed {stack:?}"));
        }
        Ok(())
    }

    #[test]
    fn one_path_per_run_and_well_formed() {
        let runs = [
            run_with("afxdp", 100),
            run_with("udp", 1000),
            run_with("mem", 1),
        ];
        let s = svg("echo <64 B> & friends", &runs);
        check_xml(&s).unwrap();
        assert!(s.starts_with("<svg"));
        assert_eq!(s.matches("<path ").count(), 3);
        for b in ["afxdp", "udp", "mem"] {
            assert!(
                s.contains(&format!("<title>{b}</title>")),
                "legend/title for {b}"
            );
        }
        assert!(s.contains("echo &lt;64 B&gt; &amp; friends"));
        assert!(s.contains(">99.9%<"));
    }

    #[test]
    fn a_run_without_samples_gets_a_legend_but_no_path() {
        let mut empty = run_with("udp", 10);
        empty.curve.clear();
        let s = svg("t", &[run_with("afxdp", 10), empty]);
        check_xml(&s).unwrap();
        assert_eq!(s.matches("<path ").count(), 1);
        assert!(s.contains("udp (no samples)"));
        let none = svg("t", &[]);
        check_xml(&none).unwrap();
        assert_eq!(none.matches("<path ").count(), 0);
    }

    #[test]
    fn points_stay_inside_the_plot_area() {
        let s = svg("t", &[run_with("afxdp", 7)]);
        let d = s
            .split("<path d=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        for pair in d.split(['M', 'L']).filter(|p| !p.trim().is_empty()) {
            let mut it = pair.split_whitespace().map(|n| n.parse::<f64>().unwrap());
            let (x, y) = (it.next().unwrap(), it.next().unwrap());
            assert!((LEFT - 0.1..=W - RIGHT + 0.1).contains(&x), "x {x}");
            assert!((TOP - 0.1..=H - BOTTOM + 0.1).contains(&y), "y {y}");
        }
    }

    #[test]
    fn x_axis_labels() {
        assert_eq!(x_label(0), "0%");
        assert_eq!(x_label(1), "90%");
        assert_eq!(x_label(2), "99%");
        assert_eq!(x_label(3), "99.9%");
        assert_eq!(x_label(5), "99.999%");
        assert!((x_of_quantile(0.99) - 2.0).abs() < 1e-9);
        let y: Vec<String> = [0, 1, 2, 3, 5, 6, 9, 10]
            .into_iter()
            .map(fmt_decade)
            .collect();
        assert_eq!(
            y,
            ["1ns", "10ns", "100ns", "1µs", "100µs", "1ms", "1s", "10s"]
        );
    }
}
