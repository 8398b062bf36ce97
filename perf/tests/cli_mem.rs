//! The real binary: argument errors, and the in-memory echo run end to end.

use std::process::{Command, Output};

fn perf() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nfvinc-perf"))
}

fn text(o: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn echo_mem_writes_the_json_report_and_the_plot() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("mem.json");
    let svg = dir.path().join("mem.svg");
    let o = perf()
        .args([
            "echo",
            "--backend",
            "mem",
            "--duration",
            "1",
            "--warmup",
            "0.2",
        ])
        .arg("--json")
        .arg(&json)
        .arg("--plot")
        .arg(&svg)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("no udp baseline in this run"),
        "{}",
        text(&o)
    );
    assert!(stdout.contains("ns/packet"), "{}", text(&o));

    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let runs = v["runs"].as_array().expect("runs array");
    assert_eq!(runs.len(), 1);
    let r = &runs[0];
    assert_eq!(r["scenario"], "echo");
    assert_eq!(r["backend"], "mem");
    let d = r["duration_s"].as_f64().unwrap();
    assert!((0.99..1.5).contains(&d), "duration_s {d}");
    let sent = r["sent"].as_u64().unwrap();
    assert!(sent > 10_000, "{r}");
    assert_eq!(r["received"].as_u64().unwrap(), sent);
    assert_eq!(r["lost"].as_u64().unwrap(), 0);
    let pps = r["pps"].as_f64().unwrap();
    assert!((pps - sent as f64 / d).abs() / pps < 1e-6, "{r}");
    let ns = r["ns_per_packet"].as_f64().unwrap();
    assert!(
        (ns * pps / 1e9 - 1.0).abs() < 1e-3,
        "ns_per_packet is wall time / packets: {r}"
    );
    let l = &r["latency_ns"];
    let p: Vec<u64> = ["p50", "p90", "p99", "p999", "max"]
        .iter()
        .map(|k| {
            l[k].as_u64()
                .unwrap_or_else(|| panic!("latency_ns.{k} in {r}"))
        })
        .collect();
    assert!(p[0] > 0 && p.windows(2).all(|w| w[0] <= w[1]), "{l}");
    assert_eq!(r["latency_kind"], "burst_time_per_packet");

    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<path ").count(), 1);
}

#[test]
fn bad_arguments_are_refused_before_anything_runs() {
    for (args, needle) in [
        (
            &["echo", "--backend", "mem", "--size", "32"][..],
            "64..=1500",
        ),
        (
            &["echo", "--backend", "mem", "--duration", "7200"],
            "at most 3600",
        ),
        (&["echo", "--backend", "bogus"], "bogus"),
        (
            &["echo", "--backend", "mem", "--core-gen", "4096"],
            "--core-gen 4096",
        ),
        (
            &[
                "echo",
                "--backend",
                "mem",
                "--json",
                "/nonexistent-dir/x.json",
            ],
            "does not exist",
        ),
        (
            &[
                "echo",
                "--backend",
                "udp",
                "--vnf-bin",
                "/nonexistent/vnf-echo",
            ],
            "/nonexistent/vnf-echo",
        ),
    ] {
        let o = perf().args(args).output().unwrap();
        assert!(!o.status.success(), "{args:?} was accepted: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{args:?}: {}", text(&o));
        assert!(o.stdout.is_empty() || !String::from_utf8_lossy(&o.stdout).contains("Mpps"));
    }
}

#[test]
fn help_documents_the_contract_flags() {
    let o = perf().args(["echo", "--help"]).output().unwrap();
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--backend",
        "--duration",
        "--size",
        "--json",
        "--plot",
        "--rate",
        "--closed-loop",
        "--warmup",
        "--core-gen",
        "--core-vnf",
        "--queues",
        "--vnf-bin",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}
