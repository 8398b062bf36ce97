//! Passive liveness on a veth in a namespace: packets from a watched source
//! stamp its slot with CLOCK_MONOTONIC, others leave nothing, unwatching
//! stops it, and traffic still passes.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::{drain, in_ns, pair, send_udp, udp_socket};
use ebpf::{AttachMode, Liveness};

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[test]
fn watched_sources_are_stamped_and_traffic_passes() {
    let p = pair("live");
    let ifindex = p.b.ifindex().unwrap();
    let mut live = in_ns(&p.b.ns, move || {
        let mut l = Liveness::new();
        l.attach(ifindex, AttachMode::Auto).map(|()| l)
    })
    .expect("attach liveness");
    assert_eq!(live.ports().collect::<Vec<_>>(), vec![ifindex]);

    let slot = live.watch(p.a.ip).unwrap();
    assert_eq!(
        live.watch(p.a.ip).unwrap(),
        slot,
        "watching twice keeps the slot"
    );
    let other = live.watch(Ipv4Addr::new(198, 18, 0, 99)).unwrap();
    assert_ne!(slot, other);
    assert_eq!(live.last_seen(slot), None, "nothing sent yet");

    let before = monotonic_ns();
    let rx = udp_socket(&p.b, 9000);
    send_udp(&p.a, p.b.ip, 9000, 10);
    let got = drain(&rx, 10, Duration::from_millis(500), Duration::from_secs(5));
    let after = monotonic_ns();
    assert_eq!(got, 10, "the program passes every frame");
    let seen = live.last_seen(slot).expect("the watched source was seen");
    assert!(
        (before..=after).contains(&seen),
        "stamp {seen} outside [{before}, {after}]: not CLOCK_MONOTONIC?"
    );
    assert_eq!(live.last_seen(other), None, "a silent source has no stamp");
    assert_eq!(
        live.last_port(slot),
        Some((ifindex, seen)),
        "learned: behind veth0"
    );
    let c = live.counters().unwrap();
    assert!(c.seen >= 10, "{c:?}");

    live.unwatch(p.a.ip);
    let slot2 = live.watch(Ipv4Addr::new(198, 18, 0, 77)).unwrap();
    assert_eq!(slot2, slot, "the slot is reused");
    assert_eq!(live.last_seen(slot2), None, "and starts clean");
    send_udp(&p.a, p.b.ip, 9000, 5);
    drain(&rx, 5, Duration::from_millis(500), Duration::from_secs(5));
    assert_eq!(
        live.last_seen(slot2),
        None,
        "an unwatched source is not stamped"
    );
    assert_eq!(
        live.last_seen(ebpf::MAX_WATCHED),
        None,
        "out of range is None"
    );
}
