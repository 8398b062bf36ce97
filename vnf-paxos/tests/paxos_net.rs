//! The consensus service as real processes on real namespaces (needs root:
//! it builds network namespaces and attaches XDP programs).
//!
//! Topology: a router namespace with one port per process host; two
//! coordinators (a leader and a standby), three acceptors and two learners
//! run `vnf-paxos` on AF_XDP (or kernel UDP), each in its own namespace; a
//! client host runs libnfvinc's `Consensus` (submitting from four threads,
//! one of them in bursts of four, and learning; the handle coalesces its
//! values into multi-value submits). Scenarios, each under load:
//!
//! * write-ahead log: kill one acceptor → decisions continue; kill the
//!   leader → the standby takes over and decisions continue; kill a second
//!   acceptor → no decision at all while only one is left; restart it from
//!   its log → decisions resume.
//! * in memory: kill one acceptor → decisions continue; a replacement with
//!   a new identity joins and is admitted; kill another acceptor →
//!   decisions continue on the old and the new identity; kill the last old
//!   one → no decision at all.
//!
//! Every scenario ends by comparing what the two learner VNFs and the
//! client's own learner delivered: the same commands in the same instances
//! (agreement), each command once (integrity), only commands the client
//! submitted (validity), and every command the client was told decided.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dataplane::control::call;
use dataplane::netns::{Netns, Routed, check_privileges};
use libnfvinc::consensus::{Consensus, ConsensusConfig};
use serde_json::{Value, json};

const PORT: u16 = 7400;

/// A delivered command: (instance, client, seq).
type Delivered = (u64, u64, u64);
const BIN: &str = env!("CARGO_BIN_EXE_vnf-paxos");

/// Hosts: coordinators 1-2, acceptors 3-5, learners 6-7, client 8.
fn host_addr(k: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 71, k, 2)
}

fn addrs(ks: std::ops::RangeInclusive<u8>) -> Vec<SocketAddrV4> {
    ks.map(|k| SocketAddrV4::new(host_addr(k), PORT)).collect()
}

fn list(ks: std::ops::RangeInclusive<u8>) -> String {
    addrs(ks)
        .iter()
        .map(|a| a.ip().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn main() {
    if let Err(e) = check_privileges() {
        panic!("these tests build network namespaces and attach XDP programs: {e}");
    }
    let started = Instant::now();
    for backend in ["afxdp", "udp"] {
        let t = Instant::now();
        println!("paxos_net wal on {backend} ...");
        wal_scenario(backend);
        println!("paxos_net wal on {backend}: ok ({:.1?})", t.elapsed());
    }
    for backend in ["udp", "afxdp"] {
        let t = Instant::now();
        println!("paxos_net memory on {backend} ...");
        memory_scenario(backend);
        println!("paxos_net memory on {backend}: ok ({:.1?})", t.elapsed());
    }
    println!("paxos_net: all ok ({:.1?})", started.elapsed());
}

/// Eight hosts behind a router, host `k` at [`host_addr`]`(k)`.
struct Topology(Routed);

impl Topology {
    fn new() -> Self {
        Topology(Routed::new("pxh", [10, 71], 8).unwrap())
    }

    fn host(&self, k: u8) -> &Netns {
        &self.0.hosts[usize::from(k) - 1]
    }
}

/// A child process, killed and reaped on drop.
struct Proc(Child);

impl Proc {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One group of VNF processes and how to (re)start them.
struct Group {
    // Processes are stopped before their namespaces go.
    procs: Vec<Option<Proc>>,
    topo: Topology,
    backend: &'static str,
    dir: PathBuf,
    memory: bool,
}

impl Drop for Group {
    fn drop(&mut self) {
        self.procs.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Group {
    fn new(backend: &'static str, memory: bool) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "nfv-paxos-{}-{backend}-{}",
            std::process::id(),
            if memory { "mem" } else { "wal" }
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut g = Group {
            topo: Topology::new(),
            backend,
            dir,
            memory,
            procs: (0..8).map(|_| None).collect(),
        };
        // Acceptors and learners first, so that the leader's first
        // prepare finds them.
        for k in [3, 4, 5, 6, 7, 1, 2] {
            g.start(k, false);
        }
        g
    }

    fn control(&self, k: u8) -> PathBuf {
        self.dir.join(format!("h{k}.sock"))
    }

    fn start(&mut self, k: u8, join: bool) {
        let (role, index) = match k {
            1 | 2 => ("coordinator", k - 1),
            3..=5 => ("acceptor", k - 3),
            _ => ("learner", k - 6),
        };
        let control = self.control(k);
        let _ = std::fs::remove_file(&control);
        let wal = self.dir.join(format!("a{index}.wal"));
        let mut args: Vec<String> = [
            "--backend",
            self.backend,
            "--iface",
            "eth0",
            "--bind",
            "copy",
            "--role",
            role,
            "--index",
            &index.to_string(),
            "--coordinators",
            &list(1..=2),
            "--acceptors",
            &list(3..=5),
            "--learners",
            &list(6..=7),
            "--control",
            control.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if role == "acceptor" {
            if self.memory {
                args.extend(["--durability".into(), "memory".into()]);
                if join {
                    args.push("--join".into());
                }
            } else {
                args.extend(["--wal".into(), wal.to_str().unwrap().into()]);
            }
        }
        let mut child = self
            .topo
            .host(k)
            .command(BIN)
            .args(&args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "READY", "{role} {index} did not come up");
        self.procs[usize::from(k) - 1] = Some(Proc(child));
    }

    fn kill(&mut self, k: u8) {
        if let Some(mut p) = self.procs[usize::from(k) - 1].take() {
            p.kill();
        }
    }

    fn ask(&self, k: u8, op: &str) -> Value {
        call(&self.control(k), &json!({"op": op})).unwrap()
    }

    /// Every delivery of learner VNF `k`, as (instance, client, seq).
    fn deliveries(&self, k: u8) -> Vec<Delivered> {
        let mut all = Vec::new();
        loop {
            let page = call(
                &self.control(k),
                &json!({"op": "deliveries", "from": all.len(), "max": 50_000}),
            )
            .unwrap();
            let entries = page["entries"].as_array().unwrap();
            if entries.is_empty() {
                return all;
            }
            for e in entries {
                let f = |i: usize| e[i].as_u64().unwrap();
                all.push((f(0), f(1), f(2)));
            }
        }
    }
}

/// A client submitting from four threads, and learning.
struct Load {
    handle: Arc<Consensus>,
    stop: Arc<AtomicBool>,
    committed: Arc<AtomicU64>,
    seqs: Arc<Mutex<Vec<u64>>>,
    threads: Vec<JoinHandle<()>>,
    learned: Arc<Mutex<Vec<Delivered>>>,
}

impl Load {
    fn start(topo: &Topology) -> Self {
        let cfg = ConsensusConfig {
            learners: addrs(6..=7),
            ..ConsensusConfig::new(addrs(1..=2), addrs(3..=5))
        };
        let handle = Arc::new(
            topo.host(8)
                .spawn(move || Consensus::connect(cfg))
                .join()
                .unwrap()
                .unwrap()
                .unwrap(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let committed = Arc::new(AtomicU64::new(0));
        let seqs = Arc::new(Mutex::new(Vec::new()));
        let learned = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for t in 0..4 {
            let (h, stop, committed, seqs) = (
                handle.clone(),
                stop.clone(),
                committed.clone(),
                seqs.clone(),
            );
            threads.push(std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // Thread 0 hands over bursts of four (they leave
                    // together); the others one value at a time.
                    let burst: Vec<String> = (0..if t == 0 { 4 } else { 1 })
                        .map(|k| format!("t{t}-{}", n + k))
                        .collect();
                    n += burst.len() as u64;
                    for seq in h.submit_all(&burst).unwrap() {
                        // Waits out outages: the handle keeps retrying.
                        loop {
                            match h.wait(seq, Duration::from_millis(100)) {
                                Ok(_) => {
                                    committed.fetch_add(1, Ordering::Relaxed);
                                    seqs.lock().unwrap().push(seq);
                                    break;
                                }
                                Err(_) if stop.load(Ordering::Relaxed) => return,
                                Err(_) => {}
                            }
                        }
                    }
                }
            }));
        }
        let (h, stop2, l) = (handle.clone(), stop.clone(), learned.clone());
        threads.push(std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                if let Some(d) = h.next_delivery(Duration::from_millis(50)).unwrap() {
                    let mut l = l.lock().unwrap();
                    for c in d.commands {
                        l.push((d.instance, c.client.0, c.seq));
                    }
                }
            }
        }));
        Load {
            handle,
            stop,
            committed,
            seqs,
            threads,
            learned,
        }
    }

    fn committed(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }

    /// Waits until `more` further values are committed.
    fn progress(&self, more: u64, within: Duration, what: &str) {
        let start = self.committed();
        let t = Instant::now();
        while self.committed() < start + more {
            assert!(
                t.elapsed() < within,
                "{what}: only {} values decided in {within:?}",
                self.committed() - start
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        println!("  {what}: {more} values decided in {:.0?}", t.elapsed());
    }

    fn stop(mut self) -> (Vec<u64>, Vec<Delivered>, Arc<Consensus>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
        let seqs = std::mem::take(&mut *self.seqs.lock().unwrap());
        let learned = std::mem::take(&mut *self.learned.lock().unwrap());
        (seqs, learned, self.handle.clone())
    }
}

fn wait_for(within: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < within, "{what} not within {within:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Nothing is decided for a while: no value committed, nothing new at the
/// learners.
fn assert_stalled(g: &Group, load: &Load, what: &str) {
    std::thread::sleep(Duration::from_millis(300));
    let (c0, l0) = (load.committed(), g.ask(6, "counters")["commands"].clone());
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(load.committed(), c0, "{what}: decisions without a majority");
    assert_eq!(
        g.ask(6, "counters")["commands"],
        l0,
        "{what}: learner moved"
    );
    println!("  {what}: no decision for 700 ms");
}

fn leader_is(g: &Group, k: u8) -> bool {
    g.ask(k, "leader")["is_leader"] == true
}

/// Stops the load, lets the learners catch up and compares everything.
fn check_agreement(g: &Group, load: Load, learners: &[u8]) -> Vec<Delivered> {
    let (seqs, learned, handle) = load.stop();
    let me = handle.client_id().0;
    // Everything the client was told decided must reach every learner.
    let want: HashSet<u64> = seqs.iter().copied().collect();
    assert_eq!(
        want.len(),
        seqs.len(),
        "a value committed twice to the client"
    );
    let mut logs = Vec::new();
    for &k in learners {
        let mut log = Vec::new();
        wait_for(Duration::from_secs(5), "learner catch-up", || {
            log = g.deliveries(k);
            let have: HashSet<u64> = log.iter().map(|e| e.2).collect();
            want.is_subset(&have)
        });
        logs.push(log);
    }
    for log in &logs {
        let mut seen = HashSet::new();
        for &(_, client, seq) in log {
            assert_eq!(client, me, "validity: a command nobody submitted");
            assert!(seen.insert(seq), "integrity: seq {seq} delivered twice");
        }
    }
    let n = logs.iter().map(Vec::len).min().unwrap();
    for log in &logs[1..] {
        assert_eq!(&log[..n], &logs[0][..n], "agreement: learners differ");
    }
    println!(
        "  agreement: {} learners, {n} commands, identical; {} committed to the client",
        logs.len(),
        seqs.len()
    );
    drop(handle);
    learned
}

fn check_client_learner(learned: &[Delivered], vnf_log: &[Delivered]) {
    let n = learned.len().min(vnf_log.len());
    assert!(n > 100, "the client's learner delivered only {n}");
    assert_eq!(&learned[..n], &vnf_log[..n], "client learner disagrees");
}

fn wal_scenario(backend: &'static str) {
    let mut g = Group::new(backend, false);
    let load = Load::start(&g.topo);
    load.progress(200, Duration::from_secs(10), "start");

    g.kill(5);
    load.progress(300, Duration::from_secs(5), "one acceptor killed");

    // Usually the first coordinator leads; whichever does is killed.
    let (leader, standby) = if leader_is(&g, 1) { (1, 2) } else { (2, 1) };
    assert!(leader_is(&g, leader), "one coordinator leads");
    g.kill(leader);
    wait_for(Duration::from_secs(3), "standby takes over", || {
        leader_is(&g, standby)
    });
    load.progress(300, Duration::from_secs(5), "leader killed, standby leads");
    assert_eq!(
        g.ask(6, "leader")["leader_index"],
        standby - 1,
        "learner follows"
    );

    g.kill(4);
    assert_stalled(&g, &load, "two acceptors killed");

    g.start(4, false);
    load.progress(300, Duration::from_secs(5), "acceptor back from its log");
    let a = g.ask(4, "counters");
    assert!(a["wal_syncs"].as_u64().unwrap() > 0, "{a}");

    let learned = check_agreement(&g, load, &[6, 7]);
    check_client_learner(&learned, &g.deliveries(6));
}

fn memory_scenario(backend: &'static str) {
    let mut g = Group::new(backend, true);
    let load = Load::start(&g.topo);
    load.progress(200, Duration::from_secs(10), "start");

    g.kill(5);
    load.progress(200, Duration::from_secs(5), "one acceptor killed");

    // A replacement with a new identity: admitted, then it votes.
    let old = g.ask(1, "membership")["incarnations"][2].as_u64().unwrap();
    g.start(5, true);
    wait_for(
        Duration::from_secs(5),
        "the new identity is admitted",
        || g.ask(5, "membership")["acceptor"]["active"] == true,
    );
    let new = g.ask(1, "membership")["incarnations"][2].as_u64().unwrap();
    assert!(new > old, "slot 2's identity {old} -> {new}");
    load.progress(200, Duration::from_secs(5), "replacement admitted");

    g.kill(4);
    load.progress(
        300,
        Duration::from_secs(5),
        "second acceptor killed, replacement votes",
    );

    g.kill(3);
    assert_stalled(&g, &load, "only the replacement left");

    let learned = check_agreement(&g, load, &[6, 7]);
    check_client_learner(&learned, &g.deliveries(7));
}
