//! The `nfvinc` client commands, run as a user would: the real binary
//! against a real `nfvinc serve`, credentials from the environment.
//!
//! The daemon runs without isolation (instances on loopback), so the test
//! needs no root; it uses the `journal` test service, whose operations and
//! events are deterministic.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{Daemon, NFVINC, add_user};
use serde_json::Value;

/// Runs `nfvinc ARGS` as the user with `key`.
fn nfvinc(d: &Daemon, key: &str, args: &[&str]) -> Output {
    Command::new(NFVINC)
        .args(args)
        .env("NFVINC_URL", &d.url)
        .env("NFVINC_API_KEY", key)
        .env_remove("NFVINC_DATA_DIR")
        .env_remove("NFVINC_CONFIG")
        .output()
        .expect("run nfvinc")
}

/// Runs it and returns stdout, failing the test with stderr on error.
fn ok(d: &Daemon, key: &str, args: &[&str]) -> String {
    let out = nfvinc(d, key, args);
    assert!(
        out.status.success(),
        "nfvinc {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs it expecting failure; returns stderr.
fn fails(d: &Daemon, key: &str, args: &[&str]) -> String {
    let out = nfvinc(d, key, args);
    assert!(
        !out.status.success(),
        "nfvinc {args:?} should have failed; it printed {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn the_cli_lists_connects_operates_scales_tails_and_removes() {
    let dir = tempfile::tempdir().unwrap();
    let key = add_user(dir.path(), "carol");
    let d = Daemon::start(
        dir.path(),
        &["--no-isolation", "--monitor-interval-ms", "50"],
    );

    // Discovery, as a table and as JSON.
    let table = ok(&d, &key, &["services"]);
    assert!(table.starts_with("SERVICE"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("journal ")), "{table}");
    assert!(table.contains("limits: 16 instances per tenant"), "{table}");
    let cat = json(&ok(&d, &key, &["services", "--json"]));
    assert!(cat["services"].as_array().unwrap().len() >= 4, "{cat}");

    // Connect: the table, the startup time and the direct channel.
    let out = ok(&d, &key, &["connect", "journal", "--name", "j1"]);
    assert!(out.contains("ready in"), "{out}");
    let created = json(&ok(
        &d,
        &key,
        &[
            "connect",
            "journal",
            "--name",
            "j2",
            "--json",
            "--options",
            "{\"burst\":16}",
        ],
    ));
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["name"], "j2");
    assert_eq!(created["config"]["burst"], 16);
    let list = json(&ok(&d, &key, &["instances", "--json"]));
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    let table = ok(&d, &key, &["instances"]);
    assert_eq!(table.lines().count(), 3, "header and two rows: {table}");
    assert!(table.contains(&id) && table.contains(" j1 "), "{table}");

    // Events: a tail started before the operation sees it.
    let mut tail = Command::new(NFVINC)
        .args(["events", &id, "--count", "1", "--timeout", "20", "--json"])
        .env("NFVINC_URL", &d.url)
        .env("NFVINC_API_KEY", &key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = tail.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The tail subscribes before its response starts; give it a moment
    // to connect, then append until it has seen something.
    let mut event = None;
    for i in 0..40 {
        let r = json(&ok(
            &d,
            &key,
            &[
                "op",
                &id,
                "append",
                &format!("{{\"value\": {i}}}"),
                "--json",
            ],
        ));
        assert_eq!(r["index"], i, "{r}");
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(250)) {
            event = Some(json(&line));
            break;
        }
    }
    let event = event.expect("the event tail printed nothing");
    assert_eq!(event["event"], "vnf", "{event}");
    assert!(event["data"]["appended"].is_u64(), "{event}");
    assert!(tail.wait().unwrap().success(), "--count 1 ends the tail");

    // Operations: a readable result, and problems printed readably.
    let read = ok(&d, &key, &["op", &id, "read"]);
    assert!(read.contains('0'), "{read}");
    let e = fails(&d, &key, &["op", &id, "nope"]);
    assert!(
        e.contains("404 Not found") && e.contains("has no operation \"nope\""),
        "{e}"
    );
    let e = fails(&d, &key, &["op", &id, "append", "{bad"]);
    assert!(e.contains("not valid JSON"), "{e}");
    let e = fails(&d, &key, &["op", &id, "append", "[1]"]);
    assert!(e.contains("must be a JSON object"), "{e}");

    // Metrics of one instance and of all.
    assert!(common::wait_until(Duration::from_secs(10), || {
        json(&ok(&d, &key, &["metrics", &id, "--json"]))["up"] == true
    }));
    let all = ok(&d, &key, &["metrics"]);
    assert!(all.starts_with("ID") && all.contains(&id), "{all}");

    // Scale: bounds and size; a size outside the bounds is refused.
    let scaled = json(&ok(
        &d,
        &key,
        &["scale", &id, "--max", "2", "--replicas", "2", "--json"],
    ));
    assert_eq!(scaled["scale"]["replicas"], 2, "{scaled}");
    let e = fails(&d, &key, &["scale", &id, "--replicas", "5"]);
    assert!(e.contains("422"), "{e}");
    let e = fails(&d, &key, &["scale", &id]);
    assert!(e.contains("--replicas"), "{e}");

    // Remove; then the instance is gone for every command.
    let out = ok(&d, &key, &["remove", &id]);
    assert!(out.contains(&format!("removed {id}")), "{out}");
    let e = fails(&d, &key, &["remove", &id]);
    assert!(e.contains("404 Not found") && e.contains(&id), "{e}");
    assert_eq!(
        json(&ok(&d, &key, &["instances", "--json"]))
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Another tenant sees none of carol's instances.
    let dave = add_user(dir.path(), "dave");
    assert_eq!(
        json(&ok(&d, &dave, &["instances", "--json"])),
        Value::Array(vec![])
    );
    let j1 = list
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "j1")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let e = fails(&d, &dave, &["op", &j1, "read"]);
    assert!(e.contains("404"), "{e}");

    // Credentials and reachability errors say what to do.
    let e = fails(&d, "nfvk_wrong", &["instances"]);
    assert!(e.contains("401") && e.contains("API key"), "{e}");
    let out = Command::new(NFVINC)
        .args(["instances"])
        .env("NFVINC_URL", &d.url)
        .env_remove("NFVINC_API_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("NFVINC_API_KEY"));
    let out = Command::new(NFVINC)
        .args([
            "--url",
            "http://127.0.0.1:1",
            "--api-key",
            &key,
            "instances",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach nfvinc"));
    d.stop();
}
