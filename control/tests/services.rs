//! The sequencer and consensus services through `libnfvinc` against a real
//! `nfvinc serve`: each used over REST and over the direct channel, in the
//! tenant's own network namespace, and healed after a VNF process dies.
//!
//! Needs root (network namespaces); each test says so when it is missing.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, add_user, require_root, wait_until};
use libnfvinc::broadcast::{Broadcast, BroadcastConfig, Received, RestBroadcast};
use libnfvinc::consensus::{Consensus, ConsensusConfig, RestConsensus};
use libnfvinc::direct::DirectAuth;
use libnfvinc::rest::Client;
use serde_json::{Value, json};
use vnf_sequencer::{Mode, ProcessId};

/// The VNFs are other packages' binaries: present beside `nfvinc` when the
/// workspace is built, absent when only this crate is.
fn installed(bin: &str) -> bool {
    let there = std::path::Path::new(common::NFVINC)
        .with_file_name(bin)
        .is_file();
    if !there {
        eprintln!("SKIPPED: {bin} is not built beside nfvinc (cargo build -p {bin})");
    }
    there
}

/// The payloads of the next `n` messages `recv` yields within `within`.
fn take(
    n: usize,
    within: Duration,
    mut recv: impl FnMut(Duration) -> Option<Received>,
) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        if let Some(Received::Message(m)) = recv(Duration::from_millis(200)) {
            got.push(String::from_utf8_lossy(&m.payload).into_owned());
        }
    }
    got
}

#[test]
fn sequencer_over_rest_and_the_direct_channel_delivers_one_order_to_all() {
    require_root();
    if !installed("vnf-sequencer") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = add_user(dir.path(), "alice");
    let d = Daemon::start(dir.path(), &["--monitor-interval-ms", "100"]);
    let c = Client::connect(&d.url, &key).unwrap();
    let inst = c.connect_service("sequencer").unwrap();
    assert!(inst.direct.group.is_some(), "{inst:?}");

    // Over REST: the daemon's member sends, the event stream delivers.
    let rest = RestBroadcast::new(c.clone(), &inst.id);
    let stream = rest.subscribe().unwrap();
    // Over the direct channel: two members of the group in this process.
    let a = Broadcast::join_instance(&c, &inst, ProcessId(1)).unwrap();
    let b = Broadcast::join_instance(&c, &inst, ProcessId(2)).unwrap();

    a.send(Mode::Atomic, b"direct-1", Duration::from_secs(2))
        .unwrap();
    rest.send(Mode::Atomic, "rest-1").unwrap();
    b.send(Mode::Atomic, b"direct-2", Duration::from_secs(2))
        .unwrap();
    rest.send(Mode::Fifo, "rest-2").unwrap();

    let within = Duration::from_secs(10);
    let at_a = take(4, within, |t| a.recv(t).unwrap());
    let at_b = take(4, within, |t| b.recv(t).unwrap());
    let at_rest = take(4, within, |t| stream.next(t).unwrap());
    assert_eq!(at_a.len(), 4, "{at_a:?}");
    assert_eq!(at_a, at_b, "one total order at every member");
    assert_eq!(at_a, at_rest, "and on the event stream");
    let mut sorted = at_a.clone();
    sorted.sort();
    assert_eq!(sorted, ["direct-1", "direct-2", "rest-1", "rest-2"]);
    assert!(
        at_a.iter().position(|m| m == "rest-1") < at_a.iter().position(|m| m == "rest-2"),
        "one sender's messages in its order: {at_a:?}"
    );

    // The sequencer dies: the Monitor heals it with the recorded members,
    // in a new epoch, and the group goes on where it was.
    let pid = inst.pid.unwrap();
    // SAFETY: killing a VNF process this test created.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert!(
        wait_until(Duration::from_secs(15), || {
            let i = c.instance(&inst.id).unwrap();
            i.available && i.restarts == 1
        }),
        "not healed: {:?}",
        c.instance(&inst.id)
    );
    a.send(Mode::Atomic, b"after-heal", Duration::from_secs(5))
        .unwrap();
    let at_b = take(1, within, |t| b.recv(t).unwrap());
    assert_eq!(at_b, ["after-heal"]);
    assert!(b.epoch() > 1, "a new epoch: {}", b.epoch());
    let at_rest = take(1, within, |t| stream.next(t).unwrap());
    assert_eq!(at_rest, ["after-heal"]);

    a.leave_instance(&c, &inst.id).unwrap();
    b.leave_instance(&c, &inst.id).unwrap();
    c.remove(&inst.id).unwrap();
    d.stop();
}

/// `nfvinc serve` killed with SIGKILL and started again: the multi-process
/// consensus instance is adopted (the same processes) and serves REST
/// proposals again; its members' direct channels never stopped.
#[test]
fn a_restarted_daemon_adopts_every_process_of_a_consensus_instance() {
    require_root();
    if !installed("vnf-paxos") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = add_user(dir.path(), "alice");
    let d = Daemon::start(dir.path(), &["--monitor-interval-ms", "100"]);
    let c = Client::connect(&d.url, &key).unwrap();
    let inst = c.connect_service("consensus").unwrap();
    RestConsensus::new(c.clone(), &inst.id)
        .propose("before")
        .unwrap();
    let direct = Consensus::connect_instance(&inst).unwrap();
    d.kill();

    // With the daemon gone, the direct channel still decides.
    direct
        .propose(b"meanwhile", Duration::from_secs(5))
        .unwrap();
    let d = Daemon::start(dir.path(), &["--monitor-interval-ms", "100"]);
    let c = Client::connect(&d.url, &key).unwrap();
    let back = c.instance(&inst.id).unwrap();
    assert!(back.available, "{back:?}");
    assert_eq!(back.pid, inst.pid, "adopted, not restarted");
    assert_eq!(back.restarts, 0);
    let after = RestConsensus::new(c.clone(), &inst.id)
        .propose("after")
        .unwrap();
    assert!(
        after.instance >= 2 || after.instance == u64::MAX,
        "{after:?}"
    );
    // Every process is the daemon's again: removal stops them all.
    let pids: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                let needle = format!("NFVINC_INSTANCE={}", inst.id);
                env.split(|b| *b == 0).any(|v| v == needle.as_bytes())
            })
        })
        .collect();
    assert_eq!(pids.len(), 5, "five roles: {pids:?}");
    drop(direct);
    c.remove(&inst.id).unwrap();
    assert!(wait_until(Duration::from_secs(10), || pids
        .iter()
        .all(|p| !common::alive(*p))));
    d.stop();
}

#[test]
fn consensus_over_rest_and_the_direct_channel_and_healed_after_a_role_dies() {
    require_root();
    if !installed("vnf-paxos") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = add_user(dir.path(), "alice");
    let d = Daemon::start(dir.path(), &["--monitor-interval-ms", "100"]);
    let c = Client::connect(&d.url, &key).unwrap();
    let inst = c.connect_service("consensus").unwrap();
    let roles: Vec<&str> = inst.direct.roles.iter().map(|r| r.role.as_str()).collect();
    assert_eq!(
        roles,
        ["coordinator", "acceptor", "acceptor", "acceptor", "learner"]
    );

    let rest = RestConsensus::new(c.clone(), &inst.id);
    let decisions = rest.subscribe().unwrap();
    let x = rest.propose("x=1").unwrap();
    // The direct channel: submit and learn with libnfvinc's own cores.
    let direct = Consensus::connect_instance(&inst).unwrap();
    let y = direct.propose(b"y=2", Duration::from_secs(5)).unwrap();
    assert!(y.instance > x.instance, "{x:?} then {y:?}");

    // Every decision on the event stream, once, in instance order.
    let mut values = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = None;
    while values.len() < 2 && Instant::now() < deadline {
        if let Some(dl) = decisions.next(Duration::from_millis(200)).unwrap() {
            assert!(last < Some(dl.instance), "instance order");
            last = Some(dl.instance);
            values.extend(
                dl.commands
                    .iter()
                    .map(|c| String::from_utf8_lossy(&c.payload).into_owned()),
            );
        }
    }
    assert_eq!(values, ["x=1", "y=2"]);

    // One role dies: the Monitor heals the instance, which decides again.
    let pid = inst.pid.unwrap();
    // SAFETY: killing a VNF process this test created.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert!(
        wait_until(Duration::from_secs(15), || {
            let i = c.instance(&inst.id).unwrap();
            i.available && i.restarts == 1
        }),
        "not healed: {:?}",
        c.instance(&inst.id)
    );
    let z = direct.propose(b"z=3", Duration::from_secs(10)).unwrap();
    assert!(z.instance > y.instance || z.instance == u64::MAX, "{z:?}");
    let w = rest.propose("w=4").unwrap();
    assert!(w.seq >= 2, "{w:?}");
    drop(direct);
    c.remove(&inst.id).unwrap();
    d.stop();
}

/// The `auth` counters of an instance's VNF (its control socket's
/// `counters`: the sequencer's, or a consensus instance's coordinator's).
fn auth_counters(c: &Client, id: &str) -> Value {
    c.op_wait(id, "counters", json!({}), Duration::from_secs(10))
        .unwrap()["auth"]
        .clone()
}

/// Another tenant reaches the host end of every tenant's link, hence the
/// instances behind it: its packets to the first tenant's sequencer and
/// consensus processes, with its own credentials, with its own key under
/// the first tenant's session, or with none, are dropped and counted, and
/// nothing of it is ever delivered or decided, while the first tenant's
/// direct channels go on working.
#[test]
fn another_tenants_direct_packets_never_reach_a_sequencer_or_consensus_instance() {
    require_root();
    if !installed("vnf-sequencer") || !installed("vnf-paxos") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let alice_key = add_user(dir.path(), "alice");
    let bob_key = add_user(dir.path(), "bob");
    let d = Daemon::start(dir.path(), &["--monitor-interval-ms", "100"]);
    let alice = Client::connect(&d.url, &alice_key).unwrap();
    let bob = Client::connect(&d.url, &bob_key).unwrap();
    let catalog = alice.discover().unwrap();
    for s in catalog["services"].as_array().unwrap() {
        if matches!(s["name"].as_str(), Some("sequencer" | "consensus")) {
            assert_eq!(s["authenticated"], true, "{s}");
        }
    }
    let seq = alice.connect_service("sequencer").unwrap();
    let cons = alice.connect_service("consensus").unwrap();
    let seq_auth = DirectAuth::of(&seq.direct).unwrap().unwrap();
    assert_eq!(
        Some(seq_auth.session),
        seq.direct.group,
        "the group's session"
    );
    let cons_auth = DirectAuth::of(&cons.direct).unwrap().unwrap();
    // Bob's credentials are good, for his own instance only.
    let own = bob.connect_service("sequencer").unwrap();
    let bob_auth = DirectAuth::of(&own.direct).unwrap().unwrap();
    assert_ne!(bob_auth.session, seq_auth.session);
    let bob_key_as = |session| DirectAuth {
        session,
        key: bob_auth.key.clone(),
    };
    let t = Duration::from_secs(5);

    // Sequencer. Bob's members send straight to alice's sequencer: in his
    // own session, in alice's group under his key, and untagged.
    let a = Broadcast::join_instance(&alice, &seq, ProcessId(1)).unwrap();
    let intruders = [
        (bob_auth.session, Some(bob_auth.clone())),
        (seq_auth.session, Some(bob_key_as(seq_auth.session))),
        (seq_auth.session, None),
    ];
    let sent: Vec<Broadcast> = intruders
        .into_iter()
        .map(|(group, auth)| {
            let mut cfg = BroadcastConfig::for_instance(&seq, ProcessId(66)).unwrap();
            cfg.member.group = group;
            cfg.auth = auth;
            let m = Broadcast::join(cfg).unwrap();
            m.send(Mode::Atomic, b"intruder", t).unwrap();
            m
        })
        .collect();
    assert!(
        wait_until(Duration::from_secs(10), || {
            let c = auth_counters(&alice, &seq.id);
            ["unknown_session", "bad_tag", "untagged"]
                .iter()
                .all(|k| c[k].as_u64().unwrap_or(0) >= 1)
        }),
        "refusals not counted: {}",
        auth_counters(&alice, &seq.id)
    );
    drop(sent);
    a.send(Mode::Atomic, b"alice-1", t).unwrap();
    assert_eq!(take(1, t, |w| a.recv(w).unwrap()), ["alice-1"]);
    assert_eq!(a.recv(Duration::from_millis(300)).unwrap(), None);
    let c = alice.op_wait(&seq.id, "counters", json!({}), t).unwrap();
    assert_eq!(c["stamped"], 1, "only alice's message stamped: {c}");
    assert_eq!(a.refused(), 0, "the sequencer's frames are tagged");

    // Consensus. Bob's handles submit to alice's coordinator and
    // subscribe to her acceptors and learner: nothing is decided.
    let direct = Consensus::connect_instance(&cons).unwrap();
    let x = direct.propose(b"alice-x", Duration::from_secs(10)).unwrap();
    for auth in [
        Some(bob_auth.clone()),
        Some(bob_key_as(cons_auth.session)),
        None,
    ] {
        let mut cfg = ConsensusConfig::for_instance(&cons).unwrap();
        cfg.auth = auth;
        let h = Consensus::connect(cfg).unwrap();
        assert!(h.propose(b"bob", Duration::from_millis(500)).is_err());
        assert!(
            h.next_delivery(Duration::from_millis(100))
                .unwrap()
                .is_none()
        );
    }
    let c = auth_counters(&alice, &cons.id);
    for k in ["unknown_session", "bad_tag", "untagged"] {
        assert!(c[k].as_u64().unwrap_or(0) >= 1, "{k}: {c}");
    }
    let y = direct.propose(b"alice-y", Duration::from_secs(10)).unwrap();
    assert!(y.instance > x.instance, "{x:?} then {y:?}");
    let mut decided = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while decided.len() < 2 && Instant::now() < deadline {
        if let Some(dl) = direct.next_delivery(Duration::from_millis(200)).unwrap() {
            decided.extend(
                dl.commands
                    .iter()
                    .map(|c| String::from_utf8_lossy(&c.payload).into_owned()),
            );
        }
    }
    assert_eq!(decided, ["alice-x", "alice-y"], "nothing of bob's decided");
    assert_eq!(direct.refused(), 0, "the processes' messages are tagged");

    drop((a, direct));
    for i in [&seq, &cons] {
        alice.remove(&i.id).unwrap();
    }
    bob.remove(&own.id).unwrap();
    d.stop();
}
