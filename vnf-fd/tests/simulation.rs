//! Deterministic simulations of the detector: crashes, jitter, late
//! heartbeats, link failures, passive liveness and removal.

mod common;

use std::time::Duration;

use common::{Jitter, MS, Sim, Wake};

fn plain() -> ProcessSpec {
    Sim::plain()
}
use vnf_fd::{
    Cause, Config, Detector, Evidence, FdError, GroupId, LinkId, ProcessId, ProcessSpec, State,
    Time, Transition,
};

const INTERVAL: u64 = 10 * MS;
const MARGIN: u64 = 5 * MS;

fn config() -> Config {
    Config::new(Duration::from_millis(10), Duration::from_millis(5))
}

fn t(ns: u64) -> Time {
    Time::from_nanos(ns)
}

/// A process that stops is suspected after its next heartbeat was due,
/// within the margin plus the delay it would have had plus one tick; and
/// nobody else is suspected.
#[test]
fn a_crashed_process_is_suspected_within_its_bound() {
    let cases = [
        (Jitter::Fixed(0), Wake::Exact),
        (Jitter::Fixed(0), Wake::Tick(MS)),
        (
            Jitter::Uniform {
                min: 0,
                max: 4 * MS,
            },
            Wake::Exact,
        ),
        (
            Jitter::Extremes {
                min: 0,
                max: 4 * MS,
            },
            Wake::Tick(MS),
        ),
    ];
    for (seed, (jitter, wake)) in cases.into_iter().enumerate() {
        let tick = wake.lateness();
        let mut sim = Sim::new(seed as u64, config(), wake);
        sim.add_senders(0, 1000, INTERVAL, jitter, plain());
        let mut crashed = Vec::new();
        while crashed.len() < 50 {
            let i = sim.rng.below(1000) as usize;
            if sim.senders[i].crash_at.is_none() {
                sim.senders[i].crash_at = Some(sim.rng.between(1000 * MS, 4000 * MS));
                crashed.push(i);
            }
        }
        sim.run_until(5000 * MS);

        let mut suspected: Vec<ProcessId> = sim.events.iter().map(|e| e.process).collect();
        suspected.sort();
        let mut expected: Vec<ProcessId> = crashed.iter().map(|&i| sim.senders[i].id).collect();
        expected.sort();
        assert_eq!(
            suspected, expected,
            "exactly the crashed, each once ({jitter:?}, {wake:?})"
        );

        for &i in &crashed {
            let s = &sim.senders[i];
            let crash = s.crash_at.unwrap();
            let due = s.last_send.unwrap() + INTERVAL; // the heartbeat that never came
            assert!(due > crash);
            let [e] = sim.events_of(s.id)[..] else {
                panic!("one transition for {:?}", s.id)
            };
            assert_eq!(
                (e.from, e.to, e.cause),
                (State::Correct, State::Suspected, Cause::Timeout)
            );
            let at = e.at.as_nanos();
            // The estimate is the send time plus the mean delay, to the
            // nanosecond (the mean is an integer division).
            assert!(at + 1 >= due + MARGIN, "{at} before {due} + margin");
            assert!(at <= due + MARGIN + jitter.max() + tick, "{at} late");
            assert!(
                at - crash <= INTERVAL + MARGIN + jitter.max() + tick,
                "detected {} ms after the crash",
                (at - crash) as f64 / MS as f64
            );
            if let (Jitter::Fixed(0), Wake::Exact) = (jitter, wake) {
                assert_eq!(at, due + MARGIN, "exact timers fire at the deadline");
            }
        }
    }
}

/// Peak-to-peak delay variation below the margin (4 ms < 5 ms): over a
/// simulated minute of 1,000 processes, no suspicion at all, with timers
/// served at the exact deadline (the strictest shell).
#[test]
fn jitter_within_the_tolerance_never_suspects_1000_processes_for_a_minute() {
    for seed in 0..6 {
        let mut sim = Sim::new(1000 + seed, config(), Wake::Exact);
        sim.add_senders(
            0,
            500,
            INTERVAL,
            Jitter::Uniform {
                min: 0,
                max: 4 * MS,
            },
            plain(),
        );
        sim.add_senders(
            500,
            500,
            INTERVAL,
            Jitter::Extremes {
                min: 0,
                max: 4 * MS,
            },
            plain(),
        );
        sim.run_until(60_000 * MS);
        assert_eq!(sim.events, [], "seed {seed}");
        assert!(sim.det.counters().heartbeats > 5_990_000);
    }
}

/// The same over many seeds, smaller and shorter, with delays that are
/// not centred on zero and ticks instead of exact timers.
///
/// A constant part of the delay beyond the margin can make a process miss
/// its first deadline (being added gives it `interval + margin` to show
/// itself): those first suspicions are allowed, none after.
#[test]
fn jitter_within_the_tolerance_never_suspects_over_many_seeds() {
    for seed in 0..40 {
        let wake = if seed % 2 == 0 {
            Wake::Exact
        } else {
            Wake::Tick(MS / 2)
        };
        let mut sim = Sim::new(seed, config(), wake);
        let base = seed % 7 * MS;
        let (min, max) = (base, base + 4 * MS + MS / 2);
        sim.add_senders(0, 50, INTERVAL, Jitter::Uniform { min, max }, plain());
        sim.add_senders(50, 50, INTERVAL, Jitter::Extremes { min, max }, plain());
        sim.run_until(10_000 * MS);
        for e in &sim.events {
            assert!(e.at.as_nanos() <= 2 * INTERVAL + MS, "seed {seed}: {e:?}");
        }
        if base + 4 * MS + MS / 2 <= MARGIN {
            assert_eq!(sim.events, [], "seed {seed}");
        }
    }
}

/// Jitter beyond the margin is what a larger margin is for: 4 ms of
/// variation suspects processes whose margin is 2 ms, and a group given a
/// 5 ms margin (or a process given its own) rides it out.
#[test]
fn margins_are_per_group_and_per_process() {
    let jitter = Jitter::Extremes {
        min: 0,
        max: 4 * MS,
    };
    let strict = Config::new(Duration::from_millis(10), Duration::from_millis(2));
    let mut sim = Sim::new(7, strict, Wake::Exact);
    sim.det.set_group_config(GroupId(1), config()).unwrap();
    let plain_ones = sim.add_senders(0, 50, INTERVAL, jitter, plain());
    // A group's configuration applies to members added later.
    let grouped = sim.add_senders(100, 50, INTERVAL, jitter, plain().in_group(GroupId(1)));
    let own = sim.add_senders(200, 50, INTERVAL, jitter, plain().with_config(config()));
    sim.run_until(5_000 * MS);
    let suspected = |r: &std::ops::Range<usize>, sim: &Sim| {
        r.clone()
            .filter(|&i| !sim.events_of(sim.senders[i].id).is_empty())
            .count()
    };
    assert!(
        suspected(&plain_ones, &sim) > 25,
        "4 ms of jitter exceeds a 2 ms margin"
    );
    assert_eq!(suspected(&grouped, &sim), 0, "the group's 5 ms margin");
    assert_eq!(suspected(&own, &sim), 0, "a process's own 5 ms margin");
    assert_eq!(sim.det.process(ProcessId(100)).unwrap().config, config());

    // A group change reaches current members that have no configuration
    // of their own, and no others.
    let tight = Config::new(Duration::from_millis(10), Duration::from_millis(1));
    assert_eq!(sim.det.set_group_config(GroupId(1), tight).unwrap(), 50);
    assert_eq!(sim.det.process(ProcessId(100)).unwrap().config, tight);
    assert_eq!(sim.det.process(ProcessId(200)).unwrap().config, config());
    let before = sim.events.len();
    sim.run_until(6_000 * MS);
    assert!(
        sim.events[before..].iter().all(|e| e.process.0 < 200),
        "own margins kept"
    );
    assert!(
        sim.events[before..]
            .iter()
            .any(|e| (100..150).contains(&e.process.0)),
        "the group's is tight now"
    );
}

/// A heartbeat later than the margin makes the process suspected at its
/// deadline; its arrival makes it correct again; both transitions are
/// recorded with their time and cause, and the process does not flap
/// afterwards. A heartbeat late by less than the margin changes nothing.
#[test]
fn a_late_heartbeat_restores_correct() {
    let mut d = Detector::new(config()).unwrap();
    let p = ProcessId(42);
    d.add_process(ProcessSpec::new(p), t(0)).unwrap();
    // Sent every 10 ms from 0, 1 ms on the way.
    for k in 0..=10 {
        d.heartbeat(p, t(k * INTERVAL + MS)).unwrap();
        d.handle_timeout(t(k * INTERVAL + MS));
    }
    // 4 ms late: within the margin.
    d.handle_timeout(t(11 * INTERVAL + MS + 4 * MS));
    d.heartbeat(p, t(11 * INTERVAL + MS + 4 * MS)).unwrap();
    assert_eq!(d.poll_event(), None);
    // The heartbeat sent at 120 ms is 19 ms late; the estimate (mean of
    // the delays: 1 ms and one 5 ms among 12) expects it at 121.33 ms.
    let deadline = 12 * INTERVAL + MS + 4 * MS / 12 + MARGIN;
    assert_eq!(d.poll_timeout(), Some(t(deadline)));
    d.handle_timeout(t(deadline - 1));
    assert_eq!(d.state(p), Some(State::Correct));
    d.handle_timeout(t(deadline));
    assert_eq!(d.state(p), Some(State::Suspected));
    assert_eq!(d.poll_timeout(), None, "nothing to time while suspected");
    let late = 12 * INTERVAL + 19 * MS;
    d.heartbeat(p, t(late)).unwrap();
    assert_eq!(d.state(p), Some(State::Correct));
    let events: Vec<Transition> = std::iter::from_fn(|| d.poll_event()).collect();
    assert_eq!(
        events,
        [
            Transition {
                seq: 0,
                process: p,
                from: State::Correct,
                to: State::Suspected,
                at: t(deadline),
                cause: Cause::Timeout,
            },
            Transition {
                seq: 1,
                process: p,
                from: State::Suspected,
                to: State::Correct,
                at: t(late),
                cause: Cause::Heartbeat,
            },
        ]
    );
    let info = d.process(p).unwrap();
    assert_eq!((info.since, info.last_heartbeat), (t(late), Some(t(late))));
    // The history restarted at the late arrival: the next heartbeats (on
    // their old schedule, 8 ms "early" for the new phase) keep it correct.
    for k in 14..100 {
        let now = k * INTERVAL + MS;
        d.handle_timeout(t(now));
        d.heartbeat(p, t(now)).unwrap();
    }
    assert_eq!(d.poll_event(), None);
}

/// Link down: exactly the processes behind that link become unreachable,
/// at once, in the call; the others are untouched. While it is down their
/// heartbeats change nothing and they are not suspected. Once it is up,
/// each comes back with its first new evidence, and a stale passive
/// timestamp is not evidence.
#[test]
fn link_down_marks_exactly_the_processes_behind_it() {
    let mut sim = Sim::new(3, config(), Wake::Tick(MS));
    let jitter = Jitter::Uniform {
        min: 0,
        max: 2 * MS,
    };
    let behind = sim.add_senders(0, 100, INTERVAL, jitter, plain().behind(LinkId(1)));
    let other = sim.add_senders(1000, 100, INTERVAL, jitter, plain().behind(LinkId(2)));
    let unlinked = sim.add_senders(2000, 100, INTERVAL, jitter, plain());
    sim.run_until(1_000 * MS);
    assert_eq!(sim.events, []);
    // Passive liveness from before the failure, as the BPF map holds it.
    let id0 = sim.senders[behind.start].id;
    sim.det.traffic_seen(id0, t(990 * MS)).unwrap();

    let down_at = 1_000 * MS + 123;
    assert_eq!(sim.det.link_down(LinkId(1), t(down_at)), 100);
    assert_eq!(
        sim.det.link_down(LinkId(1), t(down_at + 1)),
        0,
        "already down"
    );
    assert!(!sim.det.is_link_up(LinkId(1)));
    sim.drain();
    let mut marked = sim.events.clone();
    assert_eq!(marked.len(), 100);
    marked.sort_by_key(|e| e.process);
    for (e, i) in marked.iter().zip(behind.clone()) {
        assert_eq!(e.process, sim.senders[i].id);
        assert_eq!(
            (e.from, e.to, e.at, e.cause),
            (
                State::Correct,
                State::Unreachable,
                t(down_at),
                Cause::LinkDown
            )
        );
    }
    // Heartbeats from behind the link still reach the detector in this
    // simulation; they are ignored, and nobody is suspected meanwhile.
    let ignored_before = sim.det.counters().ignored;
    sim.run_until(2_000 * MS);
    assert_eq!(
        sim.events.len(),
        100,
        "nothing but the link-down transitions"
    );
    assert!(sim.det.counters().ignored >= ignored_before + 100 * 99);
    for i in behind.clone() {
        assert_eq!(sim.det.state(sim.senders[i].id), Some(State::Unreachable));
    }
    for i in other.clone().chain(unlinked.clone()) {
        assert_eq!(sim.det.state(sim.senders[i].id), Some(State::Correct));
    }

    // Up again: still unreachable until evidence newer than that.
    let up_at = 2_000 * MS + 7;
    sim.det.link_up(LinkId(1), t(up_at));
    assert!(sim.det.is_link_up(LinkId(1)));
    sim.det.traffic_seen(id0, t(995 * MS)).unwrap();
    assert_eq!(
        sim.det.state(id0),
        Some(State::Unreachable),
        "stale traffic"
    );
    sim.det.traffic_seen(id0, t(up_at + 5)).unwrap();
    assert_eq!(sim.det.state(id0), Some(State::Correct));
    sim.run_until(2_100 * MS);
    assert_eq!(sim.events.len(), 200);
    for e in &sim.events[100..] {
        assert_eq!((e.from, e.to), (State::Unreachable, State::Correct));
        assert!(e.at.as_nanos() >= up_at);
        let cause = if e.process == id0 {
            Cause::LinkUp(Evidence::Traffic)
        } else {
            Cause::LinkUp(Evidence::Heartbeat)
        };
        assert_eq!(e.cause, cause);
    }
    sim.run_until(3_000 * MS);
    assert_eq!(sim.events.len(), 200, "and nothing after");
}

/// A process that crashed during the outage is not revived by the link
/// coming back: it stays unreachable, having given no evidence since.
#[test]
fn a_process_silent_through_the_outage_stays_unreachable() {
    let mut sim = Sim::new(4, config(), Wake::Exact);
    let r = sim.add_senders(
        0,
        10,
        INTERVAL,
        Jitter::Fixed(MS),
        plain().behind(LinkId(9)),
    );
    sim.run_until(500 * MS);
    sim.senders[r.start].crash_at = Some(600 * MS);
    sim.det.link_down(LinkId(9), t(550 * MS));
    sim.run_until(700 * MS);
    sim.det.link_up(LinkId(9), t(700 * MS));
    sim.run_until(2_000 * MS);
    assert_eq!(
        sim.det.state(sim.senders[r.start].id),
        Some(State::Unreachable)
    );
    assert_eq!(sim.not_correct(), [sim.senders[r.start].id]);
}

/// A process that only sends application traffic stays correct through
/// passive liveness (the shell polls the map every millisecond; an
/// unchanged value is not news), and is suspected once it falls silent,
/// then correct again when it talks.
#[test]
fn passive_traffic_keeps_a_process_correct_until_it_falls_silent() {
    let mut d = Detector::new(config()).unwrap();
    let p = ProcessId(5);
    let q = ProcessId(6); // heartbeats and traffic both
    d.add_process(ProcessSpec::new(p), t(0)).unwrap();
    d.add_process(ProcessSpec::new(q), t(0)).unwrap();
    let mut rng = common::Rng::new(11);
    let mut last_packet = 0;
    let mut next_packet = rng.between(MS, 9 * MS);
    let silent_from = 10_000 * MS;
    let mut now = 0;
    while now < 12_000 * MS {
        now += MS;
        while next_packet <= now && next_packet < silent_from {
            last_packet = next_packet;
            // Bursty: gaps up to 13 ms, beyond the 10 ms interval.
            next_packet += rng.between(10_000, 13 * MS);
        }
        if last_packet > 0 {
            d.traffic_seen(p, t(last_packet)).unwrap();
        }
        if now % INTERVAL == 0 {
            d.heartbeat(q, t(now)).unwrap();
            d.traffic_seen(q, t(now - MS)).unwrap();
        }
        d.handle_timeout(t(now));
        if now < silent_from {
            assert_eq!(d.poll_event(), None, "at {now}");
        }
    }
    let e = d.poll_event().expect("suspected once silent");
    assert_eq!(
        (e.process, e.to, e.cause),
        (p, State::Suspected, Cause::Timeout)
    );
    let deadline = last_packet + INTERVAL + MARGIN;
    assert!(e.at.as_nanos() >= deadline && e.at.as_nanos() <= deadline + MS);
    assert_eq!(d.poll_event(), None);
    assert!(
        d.counters().ignored > 1000,
        "repeated map values are ignored"
    );
    d.traffic_seen(p, t(now - 3)).unwrap();
    let e = d.poll_event().unwrap();
    assert_eq!(
        (e.from, e.to, e.at, e.cause),
        (State::Suspected, State::Correct, t(now - 3), Cause::Traffic)
    );
    let info = d.process(p).unwrap();
    assert_eq!(
        (info.last_heartbeat, info.last_traffic),
        (None, Some(t(now - 3)))
    );
}

/// Removing a process stops its events, even when it is then overdue;
/// evidence for it is refused; its id can be used again afresh; the
/// others carry on.
#[test]
fn removing_a_process_stops_its_events() {
    let mut sim = Sim::new(5, config(), Wake::Tick(MS));
    let jitter = Jitter::Uniform { min: 0, max: MS };
    let r = sim.add_senders(0, 20, INTERVAL, jitter, plain().behind(LinkId(3)));
    sim.run_until(200 * MS);
    let gone = sim.senders[r.start].id;
    let down = sim.senders[r.start + 1].id;
    // One removed while correct, and it stops sending: never suspected.
    sim.det.remove_process(gone).unwrap();
    sim.senders[r.start].removed = true;
    sim.senders[r.start].crash_at = Some(250 * MS);
    assert_eq!(
        sim.det.remove_process(gone),
        Err(FdError::UnknownProcess(gone))
    );
    assert_eq!(sim.det.state(gone), None);
    assert_eq!(sim.det.process(gone), None);
    assert_eq!(
        sim.det.traffic_seen(gone, t(210 * MS)),
        Err(FdError::UnknownProcess(gone))
    );
    // One crashed, suspected, then removed.
    sim.senders[r.start + 1].crash_at = Some(300 * MS);
    sim.run_until(400 * MS);
    assert_eq!(sim.events_of(down).len(), 1);
    sim.det.remove_process(down).unwrap();
    sim.senders[r.start + 1].removed = true;
    // A link failure reaches only those still there.
    assert_eq!(sim.det.link_down(LinkId(3), t(400 * MS)), 18);
    sim.det.link_up(LinkId(3), t(401 * MS));
    sim.run_until(1_000 * MS);
    assert!(sim.events_of(gone).is_empty());
    assert_eq!(sim.events_of(down).len(), 1);
    assert_eq!(sim.det.len(), 18);
    assert_eq!(sim.det.processes().count(), 18);

    // The id again: a new process, correct, with no past.
    sim.det
        .add_process(ProcessSpec::new(gone), t(1_000 * MS))
        .unwrap();
    assert_eq!(
        sim.det.add_process(ProcessSpec::new(gone), t(1_000 * MS)),
        Err(FdError::DuplicateProcess(gone))
    );
    let info = sim.det.process(gone).unwrap();
    assert_eq!(
        (info.state, info.since, info.link),
        (State::Correct, t(1_000 * MS), None)
    );
    sim.run_until(1_014 * MS);
    assert!(sim.events_of(gone).is_empty());
    sim.run_until(1_016 * MS);
    assert_eq!(
        sim.events_of(gone).len(),
        1,
        "suspected after its grace: it never sent"
    );
}

/// 200 processes behind no link, half their heartbeats 9 ms late (past
/// the margin), twenty of them crashing 11 ms apart from 300 ms; run for
/// two seconds. Returns the simulation and the crashed senders.
fn crashes_amid_lateness(seed: u64) -> (Sim, Vec<usize>) {
    let mut sim = Sim::new(seed, config(), Wake::Tick(MS));
    let r = sim.add_senders(
        0,
        200,
        INTERVAL,
        Jitter::Extremes {
            min: 0,
            max: 9 * MS,
        },
        plain(),
    );
    let crashed: Vec<usize> = (0..20).map(|i| r.start + i * 7).collect();
    for (k, &i) in crashed.iter().enumerate() {
        sim.senders[i].crash_at = Some(300 * MS + k as u64 * 11 * MS);
    }
    sim.run_until(2_000 * MS);
    (sim, crashed)
}

/// The same seed gives the same run, transition for transition.
#[test]
fn simulations_are_deterministic() {
    let run = |seed| crashes_amid_lateness(seed).0.events;
    let a = run(99);
    assert!(a.len() >= 20, "enough happens to compare: {}", a.len());
    assert_eq!(a, run(99));
    assert_ne!(a, run(100));
}

/// Queries: one process, all of them, and links learned later.
#[test]
fn queries_and_learned_links() {
    let mut d = Detector::new(config()).unwrap();
    for k in 0..5 {
        d.add_process(ProcessSpec::new(ProcessId(k)).in_group(GroupId(2)), t(0))
            .unwrap();
    }
    d.heartbeat(ProcessId(1), t(3 * MS)).unwrap();
    let info = d.process(ProcessId(1)).unwrap();
    assert_eq!(info.state, State::Correct);
    assert_eq!(info.group, Some(GroupId(2)));
    assert_eq!(info.last_heartbeat, Some(t(3 * MS)));
    assert_eq!(info.expected, Some(t(13 * MS)));
    assert_eq!(info.deadline, Some(t(18 * MS)));
    assert_eq!(d.process(ProcessId(0)).unwrap().deadline, Some(t(15 * MS)));
    let mut ids: Vec<u64> = d.processes().map(|p| p.id.0).collect();
    ids.sort();
    assert_eq!(ids, [0, 1, 2, 3, 4]);

    // A link learned after the fact, which then fails.
    d.set_link(ProcessId(3), Some(LinkId(8)), t(MS)).unwrap();
    assert_eq!(d.link_down(LinkId(8), t(2 * MS)), 1);
    assert_eq!(d.state(ProcessId(3)), Some(State::Unreachable));
    // Moved behind a link that is down: unreachable at once.
    d.set_link(ProcessId(4), Some(LinkId(8)), t(3 * MS))
        .unwrap();
    assert_eq!(d.state(ProcessId(4)), Some(State::Unreachable));
    // Added behind it: unreachable from the start.
    d.add_process(ProcessSpec::new(ProcessId(9)).behind(LinkId(8)), t(4 * MS))
        .unwrap();
    assert_eq!(d.state(ProcessId(9)), Some(State::Unreachable));
    let causes: Vec<Cause> = std::iter::from_fn(|| d.poll_event())
        .map(|e| e.cause)
        .collect();
    assert_eq!(causes, [Cause::LinkDown, Cause::LinkDown]);
    assert_eq!(
        d.set_config(ProcessId(77), config()),
        Err(FdError::UnknownProcess(ProcessId(77)))
    );
    assert!(d.set_config(ProcessId(1), config().with_window(0)).is_err());
}

/// The path behind one link stalls for 40 ms (a host descheduled, its
/// softirqs deferred) and then delivers what it held: nobody behind it is
/// suspected, except the three that crashed during the stall, each within
/// one interval and margin of the link speaking again; a crash behind the
/// other link meanwhile is suspected within its usual bound.
#[test]
fn a_stalled_path_holds_judgement_until_it_speaks_again() {
    let jitter = Jitter::Uniform { min: 0, max: MS };
    for (seed, wake) in [(1, Wake::Exact), (2, Wake::Tick(MS))] {
        let mut sim = Sim::new(seed, config(), wake);
        let stalled = sim.add_senders(0, 250, INTERVAL, jitter, plain().behind(LinkId(1)));
        let flowing = sim.add_senders(1000, 250, INTERVAL, jitter, plain().behind(LinkId(2)));
        let (from, to) = (1000 * MS, 1040 * MS);
        sim.stalls.push((from..to, stalled.clone(), 0));
        let crashed_in_stall = [stalled.start + 3, stalled.start + 77, stalled.start + 200];
        for &i in &crashed_in_stall {
            sim.senders[i].crash_at = Some(from + 15 * MS);
        }
        let crashed_beside = flowing.start + 9;
        sim.senders[crashed_beside].crash_at = Some(from + 10 * MS);
        sim.run_until(3000 * MS);

        let mut suspected: Vec<usize> = sim
            .events
            .iter()
            .map(|e| sim.senders.iter().position(|s| s.id == e.process).unwrap())
            .collect();
        suspected.sort();
        let mut expected = crashed_in_stall.to_vec();
        expected.push(crashed_beside);
        expected.sort();
        assert_eq!(suspected, expected, "exactly the crashed ({wake:?})");
        let tick = wake.lateness();
        for &i in &crashed_in_stall {
            let [e] = sim.events_of(sim.senders[i].id)[..] else {
                panic!("one transition")
            };
            let at = e.at.as_nanos();
            assert!(at >= to, "suspected during the stall, at {at}");
            assert!(
                at <= to + INTERVAL + MARGIN + MS + tick,
                "suspected {} ms after the link spoke again",
                (at - to) as f64 / MS as f64
            );
        }
        let s = &sim.senders[crashed_beside];
        let [e] = sim.events_of(s.id)[..] else {
            panic!("one transition")
        };
        let due = s.last_send.unwrap() + INTERVAL;
        assert!(e.at.as_nanos() <= due + MARGIN + MS + tick, "usual bound");
        let c = sim.det.counters();
        assert_eq!(c.shared_silences, 1, "{c:?}");
        assert!(c.held >= 100, "{c:?}");
    }
}

/// Every process behind no link falls silent at once for 30 ms (the
/// detector's own ingress stalled), and what queued comes out at once or
/// spread over 25 ms (longer than an interval and margin): no suspicion.
#[test]
fn a_stalled_ingress_suspects_nobody() {
    for drain in [0, 25 * MS] {
        let jitter = Jitter::Uniform {
            min: 0,
            max: 2 * MS,
        };
        let mut sim = Sim::new(7, config(), Wake::Tick(MS));
        let all = sim.add_senders(0, 1000, INTERVAL, jitter, plain());
        for k in 0..5 {
            let from = (500 + 400 * k) * MS;
            sim.stalls.push((from..from + 30 * MS, all.clone(), drain));
        }
        sim.run_until(3000 * MS);
        assert!(
            sim.events.is_empty(),
            "drain {drain}: {:?}",
            &sim.events[..sim.events.len().min(3)]
        );
        assert_eq!(sim.det.counters().shared_silences, 5);
    }
}

/// A whole host behind one link dies: its processes are suspected once
/// the link has been silent for the hold limit (here 50 ms), or within
/// their usual bound when holding is turned off.
#[test]
fn a_dead_host_is_suspected_after_the_hold_limit() {
    for hold in [Duration::from_millis(50), Duration::ZERO] {
        let mut sim = Sim::new(3, config(), Wake::Exact);
        sim.det.set_max_hold(hold);
        let dead = sim.add_senders(
            0,
            100,
            INTERVAL,
            Jitter::Fixed(0),
            plain().behind(LinkId(4)),
        );
        sim.add_senders(
            1000,
            100,
            INTERVAL,
            Jitter::Fixed(0),
            plain().behind(LinkId(5)),
        );
        let crash = 700 * MS;
        for i in dead.clone() {
            sim.senders[i].crash_at = Some(crash);
        }
        sim.run_until(2000 * MS);
        assert_eq!(sim.events.len(), 100, "every process of the dead host");
        let last = sim.events.iter().map(|e| e.at.as_nanos()).max().unwrap();
        let hold_ns = hold.as_nanos() as u64;
        assert!(
            last <= crash + INTERVAL + MARGIN + hold_ns + MS,
            "last suspicion {} ms after the crash",
            (last - crash) as f64 / MS as f64
        );
        if hold.is_zero() {
            assert_eq!(sim.det.counters().held, 0);
        } else {
            assert!(last >= crash + hold_ns, "held for the limit");
        }
    }
}

/// Processes that send in phase leave their link quiet between bursts: one
/// of them crashing is its own silence, suspected within the usual bound.
#[test]
fn a_crash_among_processes_in_phase_is_not_held() {
    let mut sim = Sim::new(4, config(), Wake::Exact);
    sim.phase = Some(3 * MS);
    let r = sim.add_senders(
        0,
        64,
        INTERVAL,
        Jitter::Uniform { min: 0, max: MS },
        plain(),
    );
    let i = r.start + 10;
    sim.senders[i].crash_at = Some(800 * MS);
    sim.run_until(1500 * MS);
    let s = &sim.senders[i];
    let [e] = sim.events_of(s.id)[..] else {
        panic!("one transition: {:?}", sim.events)
    };
    let due = s.last_send.unwrap() + INTERVAL;
    assert!(e.at.as_nanos() <= due + MARGIN + MS, "usual bound");
    assert_eq!(sim.det.counters().held, 0);
    assert_eq!(sim.events.len(), 1);
}

/// Heartbeats of 100 of the 250 processes behind a link are stuck on the
/// way for 25 ms (one CPU's backlog), while the link's other processes
/// are heard throughout: nobody is suspected but the one that crashed in
/// the meantime, within one interval and margin of the backlog coming
/// through.
#[test]
fn a_backlog_holds_judgement_while_the_rest_of_its_link_speaks() {
    let jitter = Jitter::Uniform { min: 0, max: MS };
    for (seed, wake) in [(11, Wake::Exact), (12, Wake::Tick(MS))] {
        let mut sim = Sim::new(seed, config(), wake);
        let link = sim.add_senders(0, 250, INTERVAL, jitter, plain().behind(LinkId(1)));
        let stuck = link.start..link.start + 100;
        let (from, to) = (1000 * MS, 1025 * MS);
        sim.stalls.push((from..to, stuck.clone(), 0));
        let crashed = stuck.start + 42;
        sim.senders[crashed].crash_at = Some(from + 5 * MS);
        sim.run_until(2000 * MS);
        let s = &sim.senders[crashed];
        let [e] = sim.events[..] else {
            panic!("only the crashed one ({wake:?}): {:?}", sim.events)
        };
        assert_eq!(e.process, s.id);
        let tick = wake.lateness();
        let at = e.at.as_nanos();
        assert!(
            at <= to + INTERVAL + MARGIN + MS + tick,
            "suspected {} ms after the backlog came through ({wake:?}, crashed at {} ms, last sent {} ms, {:?})",
            (at as f64 - to as f64) / MS as f64,
            (from + 5 * MS) / MS,
            s.last_send.unwrap() as f64 / MS as f64,
            sim.det.counters()
        );
        assert!(sim.det.counters().shared_silences >= 1);
    }
}

/// Heartbeats late past the margin all the time (half of them 9 ms late)
/// keep starting episodes of held judgement; twenty processes that crash
/// amid them are still each suspected within two hold limits, not held
/// from one episode to the next.
#[test]
fn crashes_amid_endless_lateness_are_judged_within_two_holds() {
    let (sim, crashed) = crashes_amid_lateness(5);
    let hold = vnf_fd::DEFAULT_MAX_HOLD.as_nanos() as u64;
    for &i in &crashed {
        let s = &sim.senders[i];
        let last = s.last_send.unwrap();
        let Some(e) = sim
            .events_of(s.id)
            .into_iter()
            .find(|e| e.to == State::Suspected && e.at.as_nanos() > last)
        else {
            panic!("{:?} never suspected", s.id)
        };
        let after = e.at.as_nanos() - last;
        assert!(
            after <= 2 * hold + INTERVAL + MARGIN + 2 * MS,
            "{:?} suspected {} ms after its last heartbeat",
            s.id,
            after / MS
        );
    }
    assert!(sim.det.counters().shared_silences >= 2);
}
