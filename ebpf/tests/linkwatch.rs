//! Link-state notifications from another namespace: down and up of a veth
//! are seen within 10 ms, for that interface only.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::pair;
use ebpf::{LinkEvent, LinkWatcher};

/// Polls `w` until `want` holds for an event, at most `within`.
fn wait(w: &mut LinkWatcher, within: Duration, want: impl Fn(&LinkEvent) -> bool) -> LinkEvent {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let mut hit = None;
        w.poll(|e| {
            if hit.is_none() && want(&e) {
                hit = Some(e);
            }
        })
        .unwrap();
        if let Some(e) = hit {
            return e;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    panic!("no such link event within {within:?}");
}

#[test]
fn down_and_up_are_seen_from_outside_the_namespace() {
    let p = pair("lw");
    let path = Path::new("/run/netns").join(p.b.ns.name());
    let mut w = LinkWatcher::open_in(&path).unwrap();
    let ifindex = w.ifindex("veth0").expect("the snapshot knows veth0");
    assert!(w.snapshot().unwrap().iter().any(|e| e.name == "lo" && e.up));

    p.b.ns.ip(&["link", "set", "veth0", "down"]).unwrap();
    let t = Instant::now();
    let e = wait(&mut w, Duration::from_secs(2), |e| e.ifindex == ifindex);
    assert!(!e.up, "{e:?}");
    assert!(t.elapsed() < Duration::from_millis(10), "{:?}", t.elapsed());

    p.b.ns.ip(&["link", "set", "veth0", "up"]).unwrap();
    let e = wait(&mut w, Duration::from_secs(2), |e| e.ifindex == ifindex);
    assert!(e.up, "{e:?}");

    // The peer going down takes the carrier away: down here too.
    p.a.ns.ip(&["link", "set", "veth0", "down"]).unwrap();
    let e = wait(&mut w, Duration::from_secs(2), |e| e.ifindex == ifindex);
    assert!(!e.up, "no carrier counts as down: {e:?}");
    let mut others = Vec::new();
    w.poll(|e| others.push(e)).unwrap();
    assert!(others.iter().all(|e| e.ifindex == ifindex), "{others:?}");
}
