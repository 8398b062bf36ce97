//! The fault injector on a veth in a namespace: random loss at the rate
//! asked for, port filtering, argument checks, and coexistence with the
//! steering program on the other end of the link.

mod common;

use std::time::Duration;

use common::{drain, in_ns, pair, send_udp, udp_socket};
use dataplane::netns::{Host, Pair};
use ebpf::{AttachMode, EbpfError, FaultCounters, FaultInjector, Steering};

fn attach(host: &Host) -> FaultInjector {
    let ifindex = host.ifindex().expect("ifindex");
    in_ns(&host.ns, move || {
        FaultInjector::attach(ifindex, AttachMode::Auto)
    })
    .expect("attach fault injector")
}

/// Sends `count` datagrams from a to b's `port` while a thread drains them
/// on b; returns how many arrived.
fn send_and_count(p: &Pair, port: u16, count: usize) -> usize {
    let rx = udp_socket(&p.b, port);
    let receiver = std::thread::spawn(move || {
        drain(
            &rx,
            count,
            Duration::from_millis(500),
            Duration::from_secs(20),
        )
    });
    send_udp(&p.a, p.b.ip, port, count);
    receiver.join().expect("receiver")
}

fn delta(after: FaultCounters, before: FaultCounters) -> (u64, u64) {
    (after.dropped - before.dropped, after.passed - before.passed)
}

#[test]
fn drops_about_half_at_one_half_and_none_at_zero() {
    let p = pair("fhalf");
    let mut f = attach(&p.b);
    const N: usize = 2000;

    f.set_drop(0.5, None).unwrap();
    let before = f.counters().unwrap();
    let got = send_and_count(&p, 6000, N);
    let (dropped, passed) = delta(f.counters().unwrap(), before);
    assert_eq!(dropped + passed, N as u64, "every datagram seen once");
    let rate = dropped as f64 / N as f64;
    assert!((0.35..=0.65).contains(&rate), "drop rate {rate}");
    assert_eq!(got as u64, passed, "what was spared arrived");

    f.set_drop(0.0, None).unwrap();
    let before = f.counters().unwrap();
    let got = send_and_count(&p, 6000, N);
    let (dropped, passed) = delta(f.counters().unwrap(), before);
    assert_eq!((dropped, passed), (0, N as u64));
    assert_eq!(got, N);
}

#[test]
fn drops_everything_at_one_but_only_on_its_port() {
    let p = pair("fport");
    let mut f = attach(&p.b);
    f.set_drop(1.0, Some(6001)).unwrap();
    assert_eq!(send_and_count(&p, 6001, 50), 0);
    assert_eq!(send_and_count(&p, 6002, 50), 50);
    let c = f.counters().unwrap();
    assert_eq!((c.dropped, c.passed), (50, 0), "{c:?}");
    assert!(c.ignored >= 50, "{c:?}");
}

#[test]
fn bad_arguments_are_refused() {
    let p = pair("fbad");
    let mut f = attach(&p.b);
    for bad in [-0.01, 1.01, f64::NAN, f64::INFINITY] {
        assert!(
            matches!(f.set_drop(bad, None), Err(EbpfError::BadProbability(_))),
            "{bad}"
        );
    }
    assert!(matches!(f.set_drop(0.5, Some(0)), Err(EbpfError::BadPort)));
    // A refused setting leaves the old one: nothing is dropped.
    assert_eq!(send_and_count(&p, 6003, 20), 20);
}

#[test]
fn goes_on_the_other_end_from_steering() {
    let p = pair("fboth");
    let b_if = p.b.ifindex().unwrap();
    let steer = in_ns(&p.b.ns, move || Steering::attach(b_if, AttachMode::Auto)).expect("steer");
    let same = in_ns(&p.b.ns, move || {
        FaultInjector::attach(b_if, AttachMode::Auto)
    });
    assert!(matches!(same, Err(EbpfError::Busy { .. })), "{same:?}");

    // On a's end it drops what b sends.
    let mut f = attach(&p.a);
    f.set_drop(1.0, Some(6004)).unwrap();
    let rx = udp_socket(&p.a, 6004);
    send_udp(&p.b, p.a.ip, 6004, 30);
    assert_eq!(
        drain(&rx, 1, Duration::from_millis(300), Duration::from_secs(5)),
        0
    );
    assert_eq!(f.counters().unwrap().dropped, 30);
    assert_eq!(steer.counters().unwrap().dropped, 0);
}
