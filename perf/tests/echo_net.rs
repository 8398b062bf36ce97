//! The real binary against the real VNF: `--backend afxdp,udp` in network
//! namespaces. Needs root (network namespaces, XDP); fails, never skips,
//! without it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Builds `vnf-echo` into the directory `nfvinc-perf` was built in, with the
/// matching profile, and returns its path.
fn vnf_echo() -> PathBuf {
    let perf = Path::new(env!("CARGO_BIN_EXE_nfvinc-perf"));
    let dir = perf.parent().expect("binary directory");
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("release") => "release",
        _ => "test",
    };
    let o = Command::new(env!("CARGO"))
        .args([
            "build",
            "-p",
            "vnf-echo",
            "--bin",
            "vnf-echo",
            "--profile",
            profile,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo");
    assert!(
        o.status.success(),
        "building vnf-echo failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let bin = dir.join("vnf-echo");
    assert!(bin.is_file(), "{} was not built", bin.display());
    bin
}

#[test]
fn echo_afxdp_and_udp_side_by_side() {
    if let Err(e) = dataplane::netns::check_privileges() {
        panic!("this test builds network namespaces and attaches XDP programs: {e}");
    }
    let vnf = vnf_echo();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("net.json");
    let child = Command::new(env!("CARGO_BIN_EXE_nfvinc-perf"))
        .args([
            "echo",
            "--backend",
            "afxdp,udp",
            "--duration",
            "1",
            "--warmup",
            "0.3",
        ])
        .arg("--json")
        .arg(&json)
        .arg("--vnf-bin")
        .arg(&vnf)
        .arg("--log-dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let all = format!(
        "status {}\n--- stdout\n{stdout}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{all}");
    for row in ["backend", "received", "p99", "pps / udp", "p99 / udp"] {
        assert!(
            stdout.lines().any(|l| l.starts_with(row)),
            "no {row} row: {all}"
        );
    }
    let header = stdout.lines().find(|l| l.starts_with("backend")).unwrap();
    assert!(header.contains("afxdp") && header.contains("udp"), "{all}");
    let udp_ratio = stdout.lines().find(|l| l.starts_with("pps / udp")).unwrap();
    assert!(
        udp_ratio.trim_end().ends_with("1.00x"),
        "udp is its own baseline: {all}"
    );

    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{v}");
    for (r, backend) in runs.iter().zip(["afxdp", "udp"]) {
        assert_eq!(r["backend"], backend);
        assert_eq!(r["scenario"], "echo");
        let (sent, received) = (r["sent"].as_u64().unwrap(), r["received"].as_u64().unwrap());
        assert!(received > 0, "{backend} received nothing: {r}");
        assert!(received <= sent, "{r}");
        assert_eq!(r["lost"].as_u64().unwrap(), sent - received);
        assert!(r["pps"].as_f64().unwrap() > 0.0);
        assert!(r["latency_ns"]["p50"].as_u64().unwrap() > 0, "{r}");
        assert_eq!(r["corrupt"], 0, "{r}");
        assert_eq!(
            r["vnf_exit"], "exit status: 0",
            "the VNF stops cleanly on SIGTERM: {r}"
        );
    }
    // Every namespace this run made is gone.
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let ns = String::from_utf8_lossy(&ns.stdout);
    let ours = format!("nfv-{pid}-");
    assert!(
        !ns.lines().any(|l| l.starts_with(&ours)),
        "left behind: {ns}"
    );
}
