//! A replicated key-value store built on the consensus service, checked
//! for linearizability under faults.
//!
//! The service runs as real `vnf-paxos` processes on loopback (kernel UDP
//! backend, so no privileges are needed): two coordinators, three
//! acceptors with write-ahead logs, one learner. Six clients, each with
//! its own replica of the store (a libnfvinc `Consensus` handle that
//! submits and learns), run random gets, puts and compare-and-sets on three
//! keys while the leader is killed (the standby takes over) and an
//! acceptor is killed and restarted from its log. Every operation's
//! invocation and completion times and output are recorded, and the
//! history is checked with the checker of `kv/mod.rs` (whose own tests
//! show it rejecting non-linearizable histories).

mod kv;

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dataplane::control::call;
use dataplane::sim::Rng;
use kv::{Event, Op, Output, Store};
use libnfvinc::consensus::{Consensus, ConsensusConfig};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_vnf-paxos");
const CLIENTS: u64 = 6;
const KEYS: u8 = 3;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Loopback addresses on a port range of our own (from the process id, so
/// that parallel runs do not collide).
fn ports() -> [u16; 6] {
    let base = 20_000 + (std::process::id() % 2000) as u16 * 8;
    std::array::from_fn(|i| base + i as u16)
}

fn addr(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
}

fn csv(ps: &[u16]) -> String {
    ps.iter()
        .map(|p| addr(*p).to_string())
        .collect::<Vec<_>>()
        .join(",")
}

struct Service {
    dir: PathBuf,
    ports: [u16; 6],
    procs: Vec<Option<Proc>>,
}

impl Service {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("nfv-kv-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = Service {
            dir,
            ports: ports(),
            procs: (0..6).map(|_| None).collect(),
        };
        for i in [2, 3, 4, 5, 0, 1] {
            s.spawn(i);
        }
        s
    }

    fn control(&self, i: usize) -> PathBuf {
        self.dir.join(format!("p{i}.sock"))
    }

    /// Process `i`: coordinators 0-1, acceptors 2-4, learner 5.
    fn spawn(&mut self, i: usize) {
        let (role, index) = match i {
            0 | 1 => ("coordinator", i),
            2..=4 => ("acceptor", i - 2),
            _ => ("learner", 0),
        };
        let p = &self.ports;
        let control = self.control(i);
        let _ = std::fs::remove_file(&control);
        let wal = self.dir.join(format!("a{index}.wal"));
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(["--backend", "udp", "--iface", "lo", "--addr", "127.0.0.1"])
            .args(["--role", role, "--index", &index.to_string()])
            .args(["--coordinators", &csv(&p[0..2])])
            .args(["--acceptors", &csv(&p[2..5])])
            .args(["--learners", &csv(&p[5..6])])
            .arg("--control")
            .arg(&control)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if role == "acceptor" {
            cmd.arg("--wal").arg(&wal);
        }
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "READY", "{role} {index} did not come up");
        self.procs[i] = Some(Proc(child));
    }

    fn kill(&mut self, i: usize) {
        self.procs[i] = None;
    }

    fn leads(&self, i: usize) -> bool {
        call(&self.control(i), &json!({"op": "leader"})).is_ok_and(|v| v["is_leader"] == true)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.procs.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn now_ns(origin: Instant) -> u64 {
    origin.elapsed().as_nanos() as u64
}

/// One client: its replica applies the whole log; its own operations
/// complete when the replica applies them.
fn client(
    id: u64,
    cfg: ConsensusConfig,
    origin: Instant,
    stop: &AtomicBool,
    history: &Mutex<Vec<Event>>,
) -> usize {
    let handle = Consensus::connect(cfg).unwrap();
    let me = handle.client_id();
    let mut store = Store::default();
    let mut rng = Rng::new(id.wrapping_mul(0x1234_5678_9abc_def1));
    let mut done = 0;
    while !stop.load(Ordering::Relaxed) {
        let key = (rng.next_u64() % u64::from(KEYS)) as u8;
        // Values unique per client and operation.
        let value = id << 32 | done as u64;
        let op = match rng.next_u64() % 4 {
            0 | 1 => Op::Get(key),
            2 => Op::Put(key, value),
            _ => {
                let expected =
                    [None, Some(rng.next_u64() % 3 + (id << 32))][(rng.next_u64() % 2) as usize];
                // Often the value last seen, so that some succeed.
                let seen = match store.apply(Op::Get(key)) {
                    Output::Value(v) => v,
                    _ => None,
                };
                Op::Cas(
                    key,
                    if rng.next_u64() % 2 == 0 {
                        seen
                    } else {
                        expected
                    },
                    value,
                )
            }
        };
        let invoke = now_ns(origin);
        let seq = handle.submit(&op.encode()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut output = None;
        while output.is_none() && Instant::now() < deadline {
            let Some(d) = handle.next_delivery(Duration::from_millis(50)).unwrap() else {
                continue;
            };
            for c in d.commands {
                let Some(o) = Op::decode(&c.payload) else {
                    continue;
                };
                let out = store.apply(o);
                if c.client == me && c.seq == seq {
                    output = Some(out);
                }
            }
        }
        let complete = now_ns(origin);
        history.lock().unwrap().push(Event {
            op,
            output,
            invoke,
            complete,
        });
        if output.is_none() {
            // Never completed: its replica is behind; a fresh client
            // would be needed to go on without blocking on it.
            return done;
        }
        done += 1;
    }
    done
}

#[test]
fn the_replicated_store_is_linearizable_under_faults() {
    let mut service = Service::start();
    let p = service.ports;
    let cfg = ConsensusConfig {
        learners: vec![addr(p[5])],
        ..ConsensusConfig::new(
            vec![addr(p[0]), addr(p[1])],
            p[2..5].iter().map(|&q| addr(q)).collect(),
        )
    };
    let origin = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let history = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (cfg, stop, history) = (cfg.clone(), stop.clone(), history.clone());
            std::thread::spawn(move || client(id + 1, cfg, origin, &stop, &history))
        })
        .collect();
    let ops = || history.lock().unwrap().len();

    std::thread::sleep(Duration::from_millis(800));
    let leader = if service.leads(0) { 0 } else { 1 };
    service.kill(leader);
    let t = Instant::now();
    while !service.leads(1 - leader) {
        assert!(t.elapsed() < Duration::from_secs(3), "no standby took over");
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = ops();
    std::thread::sleep(Duration::from_millis(600));
    assert!(ops() > before + 20, "no progress after the leader change");

    service.kill(3);
    std::thread::sleep(Duration::from_millis(600));
    service.spawn(3);
    std::thread::sleep(Duration::from_millis(600));
    stop.store(true, Ordering::Relaxed);
    let done: Vec<usize> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let history = history.lock().unwrap().clone();
    let completed = history.iter().filter(|e| e.output.is_some()).count();
    println!(
        "history: {} operations ({completed} completed) by {CLIENTS} clients {done:?}",
        history.len()
    );
    assert!(
        completed > 200,
        "too little traffic to mean anything: {completed}"
    );
    let started = Instant::now();
    let verdict = kv::check(&history);
    println!("checked in {:.1?}", started.elapsed());
    assert_eq!(verdict, Ok(()), "not linearizable");

    // The same history with one read changed to a value never written is
    // caught: the check can fail on this data.
    let mut bad = history;
    let i = bad
        .iter()
        .rposition(|e| matches!(e.op, Op::Get(_)) && e.output.is_some())
        .expect("some reads");
    bad[i].output = Some(Output::Value(Some(u64::MAX)));
    assert!(kv::check(&bad).is_err(), "a corrupted read went unnoticed");
}
