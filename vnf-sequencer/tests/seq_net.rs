//! The broadcast service as real processes on real namespaces (needs root:
//! it builds network namespaces and attaches XDP programs).
//!
//! Topology: a router namespace with one port per member host and an
//! uplink to the namespace where `vnf-sequencer` runs on AF_XDP (then on
//! kernel UDP; with the feature `dpdk`, then on DPDK through
//! `net_af_packet` on its veth). Eight members, each a process in its own
//! namespace running libnfvinc's `Broadcast`: five only receive, three
//! also send (atomic, FIFO-atomic and causal-atomic messages). An XDP fault injector on every
//! router port drops 1% of the UDP frames entering the router, both ways:
//! Data and NACKs from the members, batches, heartbeats and epoch messages
//! from the sequencer.
//!
//! A quarter and again half of the way through, the sequencer is killed
//! with SIGKILL and a replacement started at the same address in the next
//! epoch (2, then 3; `NFV_SEQ_KILLS` sets how many times). In the end every
//! member must have delivered the same sequence, holding every message sent
//! exactly once, each sender's messages in its send order.
//!
//! The whole runs again on a bridged topology (one subnet, the fault
//! injector on every bridge port), where the sequencer sends each group
//! frame once to an IP multicast group the members join, and the bridge
//! replicates it.
//!
//! Arguments name the backends to run, as a test filter would
//! (`cargo test -p vnf-sequencer --features dpdk --test seq_net -- dpdk`).
//!
//! The members are this test binary run again in a role (an environment
//! variable says which), so that they are separate processes.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dataplane::control::call;
use dataplane::netns::{End, Netns, check_privileges, veth};
use ebpf::{AttachMode, FaultInjector};
use libnfvinc::broadcast::{Broadcast, BroadcastConfig, Received};
use serde_json::json;
use vnf_sequencer::{Mode, ProcessId};

const SEQ_PORT: u16 = 7500;
const MEMBER_PORT: u16 = 7600;
/// The group's multicast address, in the bridged topology.
const MULTICAST: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 8, 0, 1), 7599);

/// Whether this run is on the bridged topology, the sequencer sending
/// group frames once to `MULTICAST`; children learn it from
/// `NFV_SEQ_MCAST`.
static BRIDGED: AtomicBool = AtomicBool::new(false);

fn bridged() -> bool {
    BRIDGED.load(Ordering::Relaxed)
}

fn seq_addr() -> Ipv4Addr {
    if bridged() {
        Ipv4Addr::new(10, 83, 0, 100)
    } else {
        Ipv4Addr::new(10, 81, 0, 2)
    }
}
const GROUP: u64 = 7;
const MEMBERS: u8 = 8;
/// Members 6, 7 and 8 send; all eight receive.
const SENDERS: [u8; 3] = [6, 7, 8];
/// Messages each sender sends.
const PER_SENDER: u64 = 2000;
const LOSS: f64 = 0.01;
const BIN: &str = env!("CARGO_BIN_EXE_vnf-sequencer");

fn host_addr(k: u8) -> Ipv4Addr {
    if bridged() {
        Ipv4Addr::new(10, 83, 0, k)
    } else {
        Ipv4Addr::new(10, 82, k, 2)
    }
}

fn member_addr(k: u8) -> SocketAddrV4 {
    SocketAddrV4::new(host_addr(k), MEMBER_PORT)
}

fn mode_of(k: u8) -> Mode {
    match k {
        6 => Mode::Atomic,
        7 => Mode::Fifo,
        _ => Mode::Causal,
    }
}

/// Backend and whether bridged (multicast), for each run. The DPDK
/// sequencer (feature `dpdk`) reads its veth through `net_af_packet`, on
/// the routed topology only: its frames and the kernel's are the same on
/// the wire, and one run keeps the test short.
const SCENARIOS: &[(&str, bool)] = &[
    ("afxdp", false),
    ("udp", false),
    ("afxdp", true),
    ("udp", true),
    #[cfg(feature = "dpdk")]
    ("dpdk", false),
];

fn main() {
    if let Ok(k) = std::env::var("NFV_SEQ_MEMBER") {
        die_with_parent();
        BRIDGED.store(std::env::var("NFV_SEQ_MCAST").is_ok(), Ordering::Relaxed);
        member(k.parse().expect("member number"));
        return;
    }
    if let Err(e) = check_privileges() {
        panic!("these tests build network namespaces and attach XDP programs: {e}");
    }
    // Like libtest's filter: arguments name the backends to run (`-- dpdk`
    // runs only the DPDK scenario); libtest's flags, and the values of
    // those that take one, are ignored.
    let mut filters: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        const VALUED: [&str; 6] = [
            "--test-threads",
            "--skip",
            "--format",
            "--color",
            "--logfile",
            "-Z",
        ];
        if VALUED.contains(&a.as_str()) {
            args.next();
        } else if !a.starts_with('-') {
            filters.push(a);
        }
    }
    let started = Instant::now();
    for &(backend, bridged) in SCENARIOS {
        if !filters.is_empty() && !filters.iter().any(|f| backend.contains(f.as_str())) {
            continue;
        }
        BRIDGED.store(bridged, Ordering::Relaxed);
        let how = if bridged {
            "bridge, multicast"
        } else {
            "router, unicast"
        };
        let t = Instant::now();
        println!("seq_net on {backend} ({how}) ...");
        scenario(backend);
        println!("seq_net on {backend} ({how}): ok ({:.1?})", t.elapsed());
    }
    println!("seq_net: all ok ({:.1?})", started.elapsed());
}

/// Dies with the test, so that a failed run leaves no process behind.
fn die_with_parent() {
    // SAFETY: prctl with a signal number only changes this process.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
}

/// A member process: joins, waits for `GO` on stdin (senders), sends its
/// messages paced, receives until it has all of them or its deadline, and
/// writes what it delivered (`seq sender sender_seq` lines) to the file
/// named by `NFV_SEQ_OUT`.
fn member(k: u8) {
    let out = PathBuf::from(std::env::var("NFV_SEQ_OUT").expect("NFV_SEQ_OUT"));
    let mut cfg = BroadcastConfig::new(
        ProcessId(u64::from(k)),
        GROUP,
        SocketAddrV4::new(seq_addr(), SEQ_PORT),
        member_addr(k),
    );
    cfg.sequencer_id = ProcessId(100);
    cfg.multicast = bridged().then_some(MULTICAST);
    cfg.peers = (1..=MEMBERS)
        .filter(|&j| j != k)
        .map(|j| (ProcessId(u64::from(j)), member_addr(j)))
        .collect();
    let b = Broadcast::join(cfg).expect("join");
    println!("JOINED");
    let total = PER_SENDER * SENDERS.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut got: Vec<(u64, u64, u64)> = Vec::with_capacity(total as usize);
    let mut rx = Vec::new();
    let mut take = |b: &Broadcast, got: &mut Vec<(u64, u64, u64)>| {
        rx.clear();
        b.recv_all(&mut rx).expect("recv");
        for r in rx.drain(..) {
            match r {
                Received::Message(m) => {
                    assert_eq!(
                        m.payload,
                        payload(m.sender.0, m.sender_seq),
                        "payload intact"
                    );
                    got.push((m.seq, m.sender.0, m.sender_seq));
                }
                Received::Lost { first, end } => panic!("member {k} lost {first}..{end}"),
            }
        }
    };
    if SENDERS.contains(&k) {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).expect("GO");
        let mode = mode_of(k);
        for q in 1..=PER_SENDER {
            b.send(mode, &payload(u64::from(k), q), Duration::from_secs(20))
                .expect("send");
            // Paced: about 2,000 messages a second per sender.
            if q % 8 == 0 {
                std::thread::sleep(Duration::from_millis(4));
                take(&b, &mut got);
            }
            assert!(
                Instant::now() < deadline,
                "member {k}: sending took too long"
            );
        }
    }
    while (got.len() as u64) < total && Instant::now() < deadline {
        if let Some(r) = b.recv(Duration::from_millis(50)).expect("recv") {
            match r {
                Received::Message(m) => got.push((m.seq, m.sender.0, m.sender_seq)),
                Received::Lost { first, end } => panic!("member {k} lost {first}..{end}"),
            }
        }
        take(&b, &mut got);
    }
    let mut text = String::with_capacity(got.len() * 16);
    for (g, s, q) in &got {
        text.push_str(&format!("{g} {s} {q}\n"));
    }
    std::fs::write(&out, text).expect("write deliveries");
    let c = b.counters();
    println!(
        "DONE {} nacks={} peer_nacks={} data_sent={} epoch={}",
        got.len(),
        c.nacks,
        c.peer_nacks,
        c.data_sent,
        b.epoch()
    );
    // Stay a member (peers may still ask for repairs) until killed.
    std::thread::sleep(Duration::from_secs(60));
}

/// 64 bytes naming the message.
fn payload(sender: u64, q: u64) -> Vec<u8> {
    let mut p = vec![0u8; 64];
    p[..8].copy_from_slice(&sender.to_be_bytes());
    p[8..16].copy_from_slice(&q.to_be_bytes());
    for (i, b) in p[16..].iter_mut().enumerate() {
        *b = (sender as u8) ^ (q as u8) ^ i as u8;
    }
    p
}

struct Topology {
    router: Netns,
    vnf: Netns,
    hosts: Vec<Netns>,
}

impl Topology {
    /// Routed: a router with one port (and subnet) per host and an
    /// uplink to the sequencer. Bridged: a bridge joining every host and
    /// the sequencer on one subnet, where multicast reaches every member.
    fn new() -> Self {
        let router = Netns::new("sqsw").unwrap();
        let vnf = Netns::new("sqvnf").unwrap();
        let cidr = |k: u8, sw: bool| match (bridged(), sw) {
            // Switch ports are re-addressed below (a bridge port has none).
            (true, true) => format!("10.86.{k}.1/32"),
            (false, true) => format!("10.82.{k}.1/24"),
            (_, false) => format!("{}/24", host_addr(k)),
        };
        veth(
            End {
                ns: &router,
                ifname: "uplink",
                cidr: if bridged() {
                    "10.86.0.1/32"
                } else {
                    "10.81.0.1/24"
                },
            },
            End {
                ns: &vnf,
                ifname: "eth0",
                cidr: &format!("{}/24", seq_addr()),
            },
        )
        .unwrap();
        if bridged() {
            // Multicast leaves by eth0 (the kernel UDP backend needs a route).
            vnf.ip(&["route", "add", "224.0.0.0/4", "dev", "eth0"])
                .unwrap();
        } else {
            vnf.ip(&["route", "add", "default", "via", "10.81.0.1"])
                .unwrap();
        }
        let mut hosts = Vec::new();
        for k in 1..=MEMBERS {
            let h = Netns::new(&format!("sqh{k}")).unwrap();
            veth(
                End {
                    ns: &router,
                    ifname: &format!("p{k}"),
                    cidr: &cidr(k, true),
                },
                End {
                    ns: &h,
                    ifname: "eth0",
                    cidr: &cidr(k, false),
                },
            )
            .unwrap();
            if !bridged() {
                h.ip(&["route", "add", "default", "via", &format!("10.82.{k}.1")])
                    .unwrap();
            }
            hosts.push(h);
        }
        if bridged() {
            router
                .ip(&["link", "add", "br0", "type", "bridge"])
                .unwrap();
            let ports =
                std::iter::once("uplink".to_string()).chain((1..=MEMBERS).map(|k| format!("p{k}")));
            for port in ports {
                router.ip(&["addr", "flush", "dev", &port]).unwrap();
                router.ip(&["link", "set", &port, "master", "br0"]).unwrap();
            }
            router.ip(&["link", "set", "br0", "up"]).unwrap();
        } else {
            router
                .exec("sh", &["-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])
                .unwrap();
        }
        Self { router, vnf, hosts }
    }

    /// A fault injector dropping `LOSS` of the UDP frames entering the
    /// router on each of its ports.
    fn faults(&self) -> Vec<FaultInjector> {
        let mut ports = vec!["uplink".to_string()];
        ports.extend((1..=MEMBERS).map(|k| format!("p{k}")));
        ports
            .into_iter()
            .map(|port| {
                self.router
                    .spawn(move || {
                        let name = std::ffi::CString::new(port.clone()).unwrap();
                        // SAFETY: a NUL-terminated name.
                        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
                        assert!(ifindex > 0, "no interface {port}");
                        let mut f = FaultInjector::attach(ifindex, AttachMode::Auto)
                            .unwrap_or_else(|e| panic!("fault injector on {port}: {e}"));
                        f.set_drop(LOSS, None).unwrap();
                        f
                    })
                    .join()
                    .unwrap()
                    .unwrap()
            })
            .collect()
    }
}

/// A child process, killed and reaped on drop.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Proc {
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts a member; its stdout lines arrive on `lines` as (k, line).
fn start_member(topo: &Topology, k: u8, out: &Path, lines: &mpsc::Sender<(u8, String)>) -> Proc {
    let exe = std::env::current_exe().unwrap();
    let mut child = topo.hosts[usize::from(k) - 1]
        .command(exe)
        .env("NFV_SEQ_MEMBER", k.to_string())
        .env("NFV_SEQ_OUT", out)
        .env(
            if bridged() {
                "NFV_SEQ_MCAST"
            } else {
                "NFV_SEQ_UNICAST"
            },
            "1",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let tx = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send((k, line)).is_err() {
                return;
            }
        }
    });
    let stdin = child.stdin.take();
    Proc { child, stdin }
}

fn start_sequencer(topo: &Topology, backend: &str, control: &Path, epoch: Option<u32>) -> Proc {
    let _ = std::fs::remove_file(control);
    let members = (1..=MEMBERS)
        .map(|k| format!("{k}={}", member_addr(k)))
        .collect::<Vec<_>>()
        .join(",");
    let mut args: Vec<String> = [
        "--backend",
        backend,
        "--iface",
        "eth0",
        "--bind",
        "copy",
        "--port",
        &SEQ_PORT.to_string(),
        "--group",
        &GROUP.to_string(),
        "--members",
        &members,
        "--control",
        control.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if bridged() {
        args.extend(["--multicast".into(), MULTICAST.to_string()]);
    }
    match epoch {
        None => args.extend(["--id".into(), "100".into()]),
        Some(e) => args.extend(["--id".into(), "101".into(), "--epoch".into(), e.to_string()]),
    }
    let mut child = topo
        .vnf
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
    assert_eq!(line.trim(), "READY", "the sequencer did not come up");
    Proc { child, stdin: None }
}

/// Waits for one line from each of `who` starting with `prefix`.
fn wait_lines(
    lines: &mpsc::Receiver<(u8, String)>,
    who: &[u8],
    prefix: &str,
    within: Duration,
) -> Vec<(u8, String)> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    while seen.len() < who.len() {
        let left = deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_else(|| {
                panic!("only {seen:?} of members {who:?} said {prefix} within {within:?}")
            });
        match lines.recv_timeout(left) {
            Ok((k, l)) if l.starts_with(prefix) && who.contains(&k) => seen.push((k, l)),
            Ok(_) => {}
            Err(_) => panic!("only {seen:?} of members {who:?} said {prefix} within {within:?}"),
        }
    }
    seen
}

fn scenario(backend: &str) {
    let topo = Topology::new();
    let faults = topo.faults();
    let dir = std::env::temp_dir().join(format!("nfv-seq-{}-{backend}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (tx, lines) = mpsc::channel();
    let all: Vec<u8> = (1..=MEMBERS).collect();
    let mut members: Vec<Proc> = all
        .iter()
        .map(|&k| start_member(&topo, k, &dir.join(format!("m{k}.txt")), &tx))
        .collect();
    wait_lines(&lines, &all, "JOINED", Duration::from_secs(10));

    let control = dir.join("seq.sock");
    let seq = start_sequencer(&topo, backend, &control, None);
    let t0 = Instant::now();
    for &k in &SENDERS {
        let m = &mut members[usize::from(k) - 1];
        writeln!(m.stdin.as_mut().unwrap(), "GO").unwrap();
    }

    // Part of the way through, the sequencer dies and a replacement takes
    // over, `kills` times (epochs 2, 3, ...).
    let total = PER_SENDER * SENDERS.len() as u64;
    let kills: u32 = std::env::var("NFV_SEQ_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(2);
    let mut control = control;
    let mut seqs = vec![seq];
    for i in 1..=kills {
        let deadline = Instant::now() + Duration::from_secs(10);
        let at = total * u64::from(i) / u64::from(kills + 2);
        loop {
            let e = call(&control, &json!({"op": "epoch"})).unwrap();
            if e["recovering"] == false && e["next_seq"].as_u64().unwrap() > at {
                println!(
                    "  sequencer of epoch {} killed at {}",
                    e["epoch"], e["next_seq"]
                );
                break;
            }
            assert!(Instant::now() < deadline, "stamping stalled: {e}");
            std::thread::sleep(Duration::from_millis(5));
        }
        seqs.last_mut().unwrap().kill();
        let t_kill = Instant::now();
        let epoch = i + 1;
        control = dir.join(format!("seq{epoch}.sock"));
        seqs.push(start_sequencer(&topo, backend, &control, Some(epoch)));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let e = call(&control, &json!({"op": "epoch"})).unwrap();
            if e["recovering"] == false {
                assert_eq!(e["epoch"], epoch);
                println!(
                    "  replacement took over epoch {epoch} at {} in {:.0?} after the kill",
                    e["next_seq"],
                    t_kill.elapsed()
                );
                break;
            }
            assert!(Instant::now() < deadline, "epoch change stalled: {e}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let control2 = control;

    let done = wait_lines(&lines, &all, "DONE", Duration::from_secs(45));
    println!("  all {} members done in {:.1?}", done.len(), t0.elapsed());
    for (k, l) in &done {
        println!("    member {k}: {l}");
    }
    let c = call(&control2, &json!({"op": "counters"})).unwrap();
    println!("  replacement: {c}");
    if bridged() {
        // One send per group frame: only repairs and epoch-change messages
        // go to single members (unicast copies would be 8 per frame).
        let (tx, frames) = (
            c["tx_frames"].as_u64().unwrap(),
            c["frames"].as_u64().unwrap(),
        );
        assert!(
            tx < 3 * frames + 100,
            "{tx} frames sent for {frames} group frames: not multicast"
        );
    }
    let mut dropped = 0;
    for f in &faults {
        dropped += f.counters().unwrap().dropped;
    }
    assert!(dropped > 0, "the fault injectors dropped nothing");
    println!("  fault injectors dropped {dropped} frames");

    // Agreement, integrity, validity, FIFO order.
    let logs: Vec<Vec<(u64, u64, u64)>> = all
        .iter()
        .map(|k| {
            std::fs::read_to_string(dir.join(format!("m{k}.txt")))
                .unwrap()
                .lines()
                .map(|l| {
                    let v: Vec<u64> = l.split(' ').map(|x| x.parse().unwrap()).collect();
                    (v[0], v[1], v[2])
                })
                .collect()
        })
        .collect();
    for (i, log) in logs.iter().enumerate() {
        let k = i + 1;
        let mut seen = HashSet::new();
        for &(_, s, q) in log {
            assert!(seen.insert((s, q)), "member {k} delivered ({s}, {q}) twice");
            assert!(
                SENDERS.contains(&(s as u8)) && (1..=PER_SENDER).contains(&q),
                "member {k} delivered ({s}, {q}), which nobody sent"
            );
        }
        assert_eq!(
            log.len() as u64,
            total,
            "member {k} delivered {} of {total}",
            log.len()
        );
        assert!(
            log.windows(2).all(|w| w[0].0 < w[1].0),
            "member {k}: sequence numbers not increasing"
        );
        for &s in &[7u64, 8] {
            let qs: Vec<u64> = log.iter().filter(|e| e.1 == s).map(|e| e.2).collect();
            assert!(
                qs.windows(2).all(|w| w[0] < w[1]),
                "member {k}: sender {s}'s FIFO messages out of order"
            );
        }
        assert_eq!(
            log, &logs[0],
            "member {k} delivered another sequence than member 1"
        );
    }
    println!(
        "  agreement: {} members delivered the same {total} messages, each once",
        logs.len()
    );
    for m in &mut members {
        m.kill();
    }
    drop(members);
    drop(faults);
    let _ = std::fs::remove_dir_all(&dir);
}
