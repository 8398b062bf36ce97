//! The failure detector as real processes on real namespaces.
//!
//! Topology: a router namespace `nfvi` (the NFVI host's switch) with one
//! port per process host (`p1`..`p3`, each a veth to host namespace
//! `h1`..`h3`) and an uplink to the namespace where `vnf-fd` runs on
//! AF_XDP (or kernel UDP). The VNF watches the ports' link state and, with
//! an XDP program on each port, the traffic of every monitored address.
//!
//! * `h1` and `h3` run heartbeating processes (libnfvinc's `Heartbeater`);
//!   killing `h1`'s leads to `suspected` within the configured bound.
//! * `ip link set p3 down` makes exactly process 3 `unreachable` within
//!   10 ms; up again, its heartbeats restore it.
//! * `h2` runs a process that only sends application traffic (to `h1`,
//!   not to the detector): passive liveness keeps it `correct`; silent, it
//!   is suspected.
//!
//! The processes are this test binary run again in a role (an environment
//! variable says which), so that they are separate processes that can be
//! killed. Event times are the detector's `CLOCK_MONOTONIC` stamps, the
//! same clock this test reads, so delays are measured where they happen,
//! not when the event reaches us.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use dataplane::control::{ControlClient, call};
use dataplane::netns::{End, Netns, Routed, check_privileges, veth};
use serde_json::{Value, json};
use vnf_fd::wire::Target;
use vnf_fd::{ProcessId, State};

const PORT: u16 = 7300;
const VNF_ADDR: Ipv4Addr = Ipv4Addr::new(10, 50, 0, 2);
const INTERVAL_MS: u64 = 10;
/// Generous for a loaded 2-core CI machine: a heartbeat may be this late
/// without a suspicion. The detection bound follows from it.
const MARGIN_MS: u64 = 20;

fn host_addr(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 60, i, 2)
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn main() {
    // Roles: this binary as a monitored process.
    if let Ok(id) = std::env::var("NFV_FD_HEARTBEAT") {
        die_with_parent();
        let id: u64 = id.parse().expect("process id");
        let hb = libnfvinc::fd::Heartbeater::start(
            SocketAddrV4::new(VNF_ADDR, PORT),
            ProcessId(id),
            Duration::from_millis(INTERVAL_MS),
        )
        .expect("heartbeater");
        println!("BEATING");
        std::thread::sleep(Duration::from_secs(60));
        drop(hb);
        return;
    }
    if let Ok(to) = std::env::var("NFV_FD_TRAFFIC") {
        die_with_parent();
        let s = UdpSocket::bind("0.0.0.0:0").expect("socket");
        println!("TALKING");
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            // Application traffic to a peer; the detector only sees it
            // pass. Errors (ICMP port unreachable) do not matter.
            let _ = s.send_to(b"application data", &to);
            std::thread::sleep(Duration::from_millis(3));
        }
        return;
    }

    if let Err(e) = check_privileges() {
        panic!("these tests build network namespaces and attach XDP programs: {e}");
    }
    for backend in ["afxdp", "udp"] {
        let started = Instant::now();
        println!("fd_net on {backend} ...");
        scenario(backend);
        println!("fd_net on {backend}: ok ({:.1?})", started.elapsed());
    }
}

/// Dies with the test, so that a failed run leaves no process behind.
fn die_with_parent() {
    // SAFETY: prctl with a signal number only changes this process.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
}

/// Three hosts behind the NFVI host's router (host `i` at
/// [`host_addr`]`(i)`, behind port `p{i}`), and the VNF's namespace on the
/// router's `uplink`.
struct Topology {
    nfvi: Netns,
    vnf: Netns,
    hosts: Vec<Netns>,
}

impl Topology {
    fn new() -> Self {
        let Routed {
            router: nfvi,
            hosts,
            ..
        } = Routed::new("fdh", [10, 60], 3).unwrap();
        let vnf = Netns::new("fdvnf").unwrap();
        veth(
            End {
                ns: &nfvi,
                ifname: "uplink",
                cidr: "10.50.0.1/24",
            },
            End {
                ns: &vnf,
                ifname: "eth0",
                cidr: &format!("{VNF_ADDR}/24"),
            },
        )
        .unwrap();
        vnf.ip(&["route", "add", "default", "via", "10.50.0.1"])
            .unwrap();
        Self { nfvi, vnf, hosts }
    }

    fn nfvi_path(&self) -> PathBuf {
        Path::new("/run/netns").join(self.nfvi.name())
    }
}

/// A child process, killed and reaped on drop.
struct Proc(Child);

impl Proc {
    fn kill(&mut self) -> u64 {
        let _ = self.0.kill();
        // The kill is done once the process is gone.
        let _ = self.0.wait();
        monotonic_ns()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(ns: &Netns, program: &str, args: &[&str], env: (&str, &str), ready: &str) -> Proc {
    let mut child = ns
        .command(program)
        .args(args)
        .env(env.0, env.1)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), ready, "{program} did not come up");
    Proc(child)
}

/// Waits for the first event about `process` entering `to`.
fn wait_event(events: &mut ControlClient, process: u64, to: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if let Some(e) = events.next_event(left).unwrap()
            && e["process"] == process
            && e["to"] == to
        {
            return e;
        }
    }
    panic!("no event: process {process} to {to} within {within:?}");
}

fn state(control: &Path, process: u64) -> String {
    call(control, &json!({"op": "query", "process": process})).unwrap()["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn scenario(backend: &str) {
    let topo = Topology::new();
    let dir = std::env::temp_dir().join(format!("nfv-fd-{}-{backend}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let control = dir.join("control.sock");
    let nfvi = topo.nfvi_path();
    let _vnf = spawn(
        &topo.vnf,
        env!("CARGO_BIN_EXE_vnf-fd"),
        &[
            "--backend",
            backend,
            "--iface",
            "eth0",
            "--bind",
            "copy",
            "--control",
            control.to_str().unwrap(),
            "--interval-ms",
            &INTERVAL_MS.to_string(),
            "--margin-ms",
            &MARGIN_MS.to_string(),
            "--passive",
            "p1,p2,p3",
            "--links",
            "--ports-netns",
            nfvi.to_str().unwrap(),
        ],
        ("RUST_LOG", "warn"),
        "READY",
    );
    let mut events = ControlClient::connect(&control).unwrap();
    events.subscribe().unwrap();
    for i in 1..=3u64 {
        // Process 2 is added without its link: the detector learns it from
        // the port its traffic comes through.
        let link = (i != 2).then(|| format!("p{i}"));
        let added = call(
            &control,
            &json!({"op": "add", "process": i, "link": link,
                    "addr": host_addr(i as u8).to_string()}),
        )
        .unwrap();
        assert_eq!(added["state"], "correct");
    }
    let bad = call(&control, &json!({"op": "add", "process": 9, "link": "p9"})).unwrap_err();
    assert!(bad.to_string().contains("p9"), "{bad}");

    let me = std::env::current_exe().unwrap();
    let me = me.to_str().unwrap();
    let mut p1 = spawn(
        &topo.hosts[0],
        me,
        &[],
        ("NFV_FD_HEARTBEAT", "1"),
        "BEATING",
    );
    let mut p2 = spawn(
        &topo.hosts[1],
        me,
        &[],
        ("NFV_FD_TRAFFIC", &format!("{}:9", host_addr(1))),
        "TALKING",
    );
    let _p3 = spawn(
        &topo.hosts[2],
        me,
        &[],
        ("NFV_FD_HEARTBEAT", "3"),
        "BEATING",
    );

    // A healthy network for a while: nobody is suspected.
    let calm = Instant::now() + Duration::from_millis(800);
    while let Some(left) = calm.checked_duration_since(Instant::now()) {
        if let Some(e) = events.next_event(left).unwrap() {
            // Added processes may be suspected once before their first
            // heartbeat or packet arrives; after that, nothing.
            assert!(
                e["cause"] != "timeout" || Instant::now() + Duration::from_millis(600) < calm,
                "false suspicion on a healthy network: {e}"
            );
        }
    }
    for i in 1..=3 {
        assert_eq!(state(&control, i), "correct", "process {i}");
    }
    let p2_index: u64 = topo
        .nfvi
        .exec("cat", &["/sys/class/net/p2/ifindex"])
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let info = call(&control, &json!({"op": "query", "process": 2})).unwrap();
    assert_eq!(info["link"], p2_index, "link learned from traffic: {info}");
    let c = call(&control, &json!({"op": "counters"})).unwrap();
    assert!(c["heartbeats"].as_u64().unwrap() > 50, "{c}");
    assert!(c["traffic"].as_u64().unwrap() > 0, "passive liveness: {c}");

    // An application on the direct channel (from h3) subscribes to
    // process 1 and queries it, as libnfvinc does.
    let mut app = topo.hosts[2]
        .spawn(|| libnfvinc::fd::FdClient::connect(SocketAddrV4::new(VNF_ADDR, PORT)))
        .join()
        .unwrap()
        .unwrap()
        .unwrap();
    app.subscribe(Target::One(ProcessId(1))).unwrap();
    let entries = app.query(Target::All).unwrap();
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert!(
        entries.iter().all(|e| e.state == State::Correct),
        "{entries:?}"
    );

    // Crash of a heartbeating process: suspected within the bound (the
    // heartbeat due one interval later, plus the margin, plus one
    // housekeeping tick and scheduling slack).
    let killed = p1.kill();
    let e = wait_event(&mut events, 1, "suspected", Duration::from_secs(2));
    let delay = e["at_ns"].as_u64().unwrap().saturating_sub(killed);
    let bound = Duration::from_millis(2 * INTERVAL_MS + MARGIN_MS + 15);
    assert!(
        Duration::from_nanos(delay) <= bound,
        "suspected {delay} ns after the crash, bound {bound:?}"
    );
    assert_eq!(e["cause"], "timeout");
    println!("  crash suspected after {:.1} ms", delay as f64 / 1e6);
    let pushed = app
        .next_event(Duration::from_secs(2))
        .unwrap()
        .expect("the suspicion is pushed to the direct-channel subscriber");
    assert_eq!(
        (pushed.process, pushed.to, pushed.at.as_nanos()),
        (ProcessId(1), State::Suspected, e["at_ns"].as_u64().unwrap())
    );

    // Link down: exactly process 3 becomes unreachable, within 10 ms.
    let t = topo.nfvi.set_link_down("p3").unwrap();
    let e = wait_event(&mut events, 3, "unreachable", Duration::from_secs(2));
    let delay = e["at_ns"].as_u64().unwrap().saturating_sub(t);
    assert!(
        delay <= 10_000_000,
        "unreachable {delay} ns after the link went down"
    );
    assert_eq!(e["cause"], "link_down");
    println!(
        "  link down -> unreachable after {:.1} ms",
        delay as f64 / 1e6
    );
    assert_eq!(state(&control, 2), "correct", "process 2 is behind p2");
    topo.nfvi.ip(&["link", "set", "p3", "up"]).unwrap();
    let e = wait_event(&mut events, 3, "correct", Duration::from_secs(5));
    assert_eq!(e["cause"], "link_up_heartbeat");

    // The talking process stayed correct without one heartbeat; silent,
    // it is suspected.
    assert_eq!(state(&control, 2), "correct");
    let killed = p2.kill();
    let e = wait_event(&mut events, 2, "suspected", Duration::from_secs(2));
    let delay = e["at_ns"].as_u64().unwrap().saturating_sub(killed);
    assert!(
        Duration::from_nanos(delay) <= bound,
        "silent process suspected {delay} ns after it stopped, bound {bound:?}"
    );
    println!(
        "  silent process suspected after {:.1} ms",
        delay as f64 / 1e6
    );
    let _ = std::fs::remove_dir_all(&dir);
}
