//! `nfvinc demo` end to end: it starts its own daemon (each tenant in its
//! own namespace when root, on loopback otherwise), runs the example
//! applications against it, shows the management commands, stops the
//! daemon and removes its data.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::NFVINC;

/// The binaries the demo needs beyond `nfvinc`: built beside it by
/// `cargo build --workspace` / `./test`, absent when only this crate is.
const NEEDED: [&str; 6] = [
    "vnf-fd",
    "vnf-paxos",
    "vnf-sequencer",
    "nfvinc-example-workers",
    "nfvinc-example-kv",
    "nfvinc-example-chat",
];

#[test]
fn the_demo_runs_every_example_and_cleans_up() {
    let missing: Vec<&str> = NEEDED
        .iter()
        .copied()
        .filter(|b| !std::path::Path::new(NFVINC).with_file_name(b).is_file())
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "SKIPPED: {missing:?} not built beside nfvinc (cargo build -p vnf-fd -p vnf-paxos -p vnf-sequencer -p nfvinc-examples)"
        );
        return;
    }
    let started = Instant::now();
    let out = Command::new(NFVINC)
        .arg("demo")
        .env_remove("NFVINC_URL")
        .env_remove("NFVINC_API_KEY")
        .env_remove("NFVINC_DATA_DIR")
        .output()
        .expect("run nfvinc demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "nfvinc demo failed:\n{stdout}\n{stderr}"
    );
    for expected in [
        "== nfvinc serve on http://127.0.0.1:",
        "== discovery: nfvinc services ==",
        "OK failure detector: crashed worker suspected, the others correct, no job lost",
        "kv: 3 replicas applied the same 31 writes in the same order",
        "chat: 3 participants and the REST subscriber saw the same 16 lines in the same order",
        "== management:",
        "demo: 3 example(s) ran, every service behaved",
    ] {
        assert!(stdout.contains(expected), "no {expected:?} in:\n{stdout}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the demo took {:?}",
        started.elapsed()
    );
    // Its daemon is gone and so is its data directory.
    let data = stdout
        .split("(data ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .expect("the demo names its data directory");
    assert!(
        !std::path::Path::new(data).exists(),
        "{data} was left behind"
    );
}
